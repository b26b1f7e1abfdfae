"""Every experiment config in configs/ resolves against the schema, and its base chain is applied."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hde_kit.config import ConfigError, load_config, read_yaml

CONFIGS = sorted((Path(__file__).resolve().parents[1] / 'configs').glob('*.yaml'))

@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_config_resolves(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert OmegaConf.is_config(cfg) and cfg.gnn.num_layers >= 1

def test_inheritance_chain():
    cfg = load_config(CONFIGS[0].parent / 'medhop.yaml')
    # from medhop, minilm_wikihop, graph_transformer_base and base respectively
    assert (cfg.data.dataset, cfg.gnn.hidden_size, cfg.gnn.use_transformer_block, cfg.data.hops) == ('medhop', 384, True, 2)
    assert 'base' not in read_yaml(CONFIGS[0].parent / 'medhop.yaml')

def test_bad_key_names_file_and_valid_keys(tmp_path):
    (tmp_path / 'x.yaml').write_text(f"base: {CONFIGS[0]}\ngnn: {{num_layer: 2}}\n")
    with pytest.raises(ConfigError, match=r"x\.yaml.*gnn\.num_layer'.*num_layers"):
        load_config(tmp_path / 'x.yaml')


# --- every value checked before anything runs: one case per class of field -------------------------------------------
BAD_VALUES = [
    ('gnn.hidden_size=0', 'positive integer'), ('train.batch_size=0', 'positive integer'),
    ('train.epochs=-1', 'positive integer'), ('graph.max_nodes=0', 'positive integer'),
    ('data.max_examples=0', 'positive integer'),                        # optional positive
    ('train.grad_clip=-1', '>= 0'), ('text.stride=-3', '>= 0'),          # non-negative
    ('train.lr=-1', 'positive finite'), ('train.lr=.nan', 'positive finite'), ('train.lr_decay_fac=.inf', 'positive finite'),
    ('gnn.dropout=1.5', r'\[0, 1\)'), ('train.momentum=-0.1', r'\[0, 1\)'),   # fractions
    ('gnn.core=gcn', 'must be one of'), ('train.optimizer=lbfgs', 'must be one of'), ('embedder.pooling=sum', 'must be one of'),
    ('data.dataset=squad', 'must be one of'), ('encoder.kind=rnn', 'must be one of'), ('gnn.kernel=fast', 'must be one of'),
    ('train.device=tpu', 'cuda:N'), ('name=../../etc', 'no path'),
    ('text.stride=300', 'smaller than'), ('gnn.heads=3', 'divisible'), ('bench.nodes=[0]', 'positive integers'),
    ('gnn.num_layers=many', 'gnn.num_layers'),                           # wrong type (OmegaConf)
]

@pytest.mark.parametrize('override,message', BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_every_field_class_is_validated(override, message):
    with pytest.raises(ConfigError, match=message) as e: load_config(overrides=[override])
    assert override.split('=')[0] in str(e.value) and '\n' not in str(e.value)


def test_all_bad_keys_named_in_one_line():
    with pytest.raises(ConfigError) as e: load_config(overrides=['gnn.hidden_size=0', 'train.lr=-1'])
    assert 'gnn.hidden_size' in str(e.value) and 'train.lr' in str(e.value)


def test_choices_match_the_modules():
    "The closed choices the config checks are exactly what the modules accept."
    from hde_kit.config import _CHOICES
    from hde_kit.gnn import CORES, KERNELS
    from hde_kit.train import LRSchedule
    assert _CHOICES['gnn.core'] == CORES and _CHOICES['gnn.kernel'] == KERNELS
    assert _CHOICES['train.schedule'] == LRSchedule.KINDS


def test_interpolation_is_off_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv('HDE_TEST_SECRET', 'hunter2')
    monkeypatch.delenv('HDE_ALLOW_INTERPOLATION', raising=False)
    (tmp_path / 'x.yaml').write_text("train: {wandb_project: '${oc.env:HDE_TEST_SECRET}'}\n")
    for call in (lambda: load_config(tmp_path / 'x.yaml'), lambda: load_config(overrides=['name=${oc.env:HDE_TEST_SECRET}']),
                 lambda: load_config(train={'run_dir': '${oc.env:HOME}'})):
        with pytest.raises(ConfigError, match='interpolation .* is off'): call()
    cfg = load_config(tmp_path / 'x.yaml', allow_interpolation=True)
    assert cfg.train.wandb_project == 'hunter2'
    from hde_kit.config import to_dict, save_config
    assert to_dict(cfg, resolve=False)['train']['wandb_project'] == '${oc.env:HDE_TEST_SECRET}'
    assert 'hunter2' not in save_config(cfg, tmp_path / 'saved.yaml').read_text()
    with pytest.raises(ConfigError, match="'gnn.hidden_size'.*interpolation failed|gnn.hidden_size"):
        load_config(overrides=['gnn.hidden_size=${oc.env:HDE_NO_SUCH_VAR}'], allow_interpolation=True)


HOSTILE_FILES = {
    'base_int.yaml': (b"base: 42\n", "'base:' must name a YAML file"),
    'base_list.yaml': (b"base: [a.yaml, b.yaml]\n", "'base:' must name a YAML file"),
    'latin1.yaml': (b"name: caf\xe9\n", 'not UTF-8'),
    'list.yaml': (b"- 1\n- 2\n", 'must be a mapping'),
    'laughs.yaml': (("a: &a [" + ",".join(['"lol"'] * 9) + "]\n" + "".join(
        f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip('abcdefgh', 'bcdefghi'))).encode(), 'aliases are expanded'),
    'int_key.yaml': (b"1: 2\n", 'config keys are names'),
    'bad_yaml.yaml': (b"gnn: {num_layers: [\n", 'not valid YAML'),
}

@pytest.mark.parametrize('name', sorted(HOSTILE_FILES))
def test_hostile_config_files(tmp_path, name):
    import time
    data, message = HOSTILE_FILES[name]
    (tmp_path / name).write_bytes(data)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=message): load_config(tmp_path / name)
    assert time.perf_counter() - t0 < 5          # the billion-laughs file is refused without expanding it


def test_config_that_is_not_a_regular_file(tmp_path):
    with pytest.raises(ConfigError, match='not a regular file'): load_config('/dev/zero')
    with pytest.raises(ConfigError, match='not a regular file'): load_config(tmp_path)
