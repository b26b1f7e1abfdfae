"""Every config in configs/ trains and evaluates end to end on the QAngaroo sample files, with tiny overrides so that
all of them together take about a minute on a CPU: one epoch, a 32-wide GNN of one layer, the packaged MiniLM kept
(the sample files' supports are short, so encoding is quick), the WikiHop fixture of two trimmed records (MedHop:
its one-record dev file)."""
import json
from pathlib import Path

import pytest

from hde_kit.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (ROOT / 'configs').glob('*.yaml'))
TINY = ['train.epochs=1', 'train.batch_size=2', 'train.eval_batch_size=2', 'train.num_threads=1', 'train.keep_last=1',
        'gnn.hidden_size=32', 'gnn.num_layers=1', 'gnn.heads=2', 'encoder.max_tokens=2048']

def _data(shared_data, name):
    if name == 'medhop.yaml':
        f = shared_data / 'medhop' / 'medhop_dev_first1_hfdummy.json'
        return f, [f'data.train={f}', f'data.dev={f}', 'text.max_length=128', 'text.stride=32', 'graph.max_nodes=300']
    f = shared_data / 'wikihop' / 'wikihop_train_tiny2_tgcnqa.json'
    return f, [f'data.train={f}', f'data.dev={f}', 'data.dataset=auto']

def test_every_config_has_a_recipe_test():
    assert {'wikihop.yaml', 'entity_gcn.yaml', 'hde_paper.yaml', 'graph_transformer_best.yaml'} <= set(CONFIGS)

@pytest.mark.parametrize('name', CONFIGS)
def test_config_trains_and_evaluates_on_the_samples(name, shared_data, tmp_path):
    from hde_kit.train import train, evaluate_run
    data, overrides = _data(shared_data, name)
    cfg = load_config(ROOT / 'configs' / name, TINY + overrides + [f'train.cache_dir={tmp_path / "cache"}'])
    if cfg.pretrain.source and name.startswith('pretrain'):
        from hde_kit.pretrain import pretrain
        cfg = load_config(ROOT / 'configs' / name, TINY + [f'pretrain.source={data}', 'pretrain.num_sets=2',
                          'pretrain.dev_sets=1', 'pretrain.min_documents=1', f'train.cache_dir={tmp_path / "cache"}'])
        res = pretrain(cfg, run_dir=tmp_path / 'run', progress=False)
    else:
        res = train(cfg, run_dir=tmp_path / 'run', progress=False)
        n = len(json.loads(data.read_text()))
        assert res.dev is not None and res.dev.total == n and not res.dev.failed, name
    assert res.best is not None and (tmp_path / 'run' / 'config.yaml').exists()
    if name.startswith('pretrain'): return
    ev, out = evaluate_run(tmp_path / 'run', data, cache_dir=tmp_path / 'cache', progress=False)
    preds = json.loads((out / 'predictions.json').read_text())
    records = json.loads(data.read_text())
    assert set(preds) == {r['id'] for r in records}
    assert all(p in r['candidates'] for r in records for p in [preds[r['id']]])
