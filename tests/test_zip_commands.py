"""A model trained on `qangaroo_v1.1.zip` is evaluated, drawn, pretrained on and benchmarked from the same zip:
every command that takes data reads a QAngaroo zip, its member chosen by --dataset / --split / --masked (or by the
run's config). The zip is built from the real samples (conftest's `qangaroo_zip`)."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

CLI = 'import sys; from hde_kit.cli import main; sys.exit(main(sys.argv[1:]))'   # what the `hde` entry point runs
# WikiHop from the zip, cut to 4 training examples, and a small GNN: seconds on a CPU
SMALL = ['data.dataset=wikihop', 'data.max_examples=4', 'gnn.hidden_size=32', 'gnn.num_layers=1', 'train.epochs=1',
         'train.batch_size=2', 'train.num_threads=1']


def hde(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, '-c', CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    return dict(os.environ, HDE_CACHE=str(tmp_path_factory.mktemp('cache')), OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false')


@pytest.fixture(scope='module')
def run(qangaroo_zip, env, tmp_path_factory):
    "`hde train` on the zip's WikiHop train and dev members."
    run = tmp_path_factory.mktemp('zip') / 'run'
    out = hde('train', 'base', f'data.train={qangaroo_zip}', f'data.dev={qangaroo_zip}', *SMALL, '--run-dir', run, '--quiet', env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'dev accuracy' in out.stdout and '/2;' in out.stdout   # the 2 examples of wikihop/dev.json
    return run


def dev_ids(shared_data, masked=False):
    name = 'wikihop_train_tiny2_tgcnqa' + ('.masked' if masked else '') + '.json'
    return [r['id'] for r in json.loads((shared_data / 'wikihop' / name).read_text())]


def test_eval_reads_the_zip_and_keys_its_outputs(run, qangaroo_zip, env, shared_data):
    folders = []
    for extra in ([], ['--masked'], ['--checkpoint', 'latest']):
        out = hde('eval', run, '--data', qangaroo_zip, '--split', 'dev', *extra, '--quiet', env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        preds = Path(out.stdout.strip().splitlines()[-1].split(': ', 1)[1])
        assert sorted(json.loads(preds.read_text())) == sorted(dev_ids(shared_data, masked=bool(extra[:1] == ['--masked'])))
        source = json.loads((preds.parent / 'source.json').read_text())
        assert source['read'].endswith('qangaroo_v1.1/wikihop/dev' + ('.masked' if extra[:1] == ['--masked'] else '') + '.json')
        folders.append(preds.parent)
    assert folders[0].name == 'wikihop-dev' and folders[1].name == 'wikihop-dev.masked'
    assert folders[0] != folders[1]   # plain and masked never overwrite each other
    assert folders[0].parent.parent == run / 'eval'


def test_eval_predictions_name_every_id(run, env, tmp_path, shared_data):
    "A record the reader rejects still gets an entry (null, counted wrong): a leaderboard file names every id."
    records = json.loads((shared_data / 'wikihop' / 'wikihop_train_tiny2_tgcnqa.json').read_text())
    broken = dict(records[0], id='broken-1', supports=[])          # no supports: rejected by validation
    (tmp_path / 'dev.json').write_text(json.dumps(records + [broken]))
    out = hde('eval', run, '--data', tmp_path / 'dev.json', '--quiet', '--json', env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    preds = json.loads(Path(out.stdout.strip().splitlines()[-1].split(': ', 1)[1]).read_text())
    assert sorted(preds) == sorted([r['id'] for r in records] + ['broken-1']) and preds['broken-1'] is None
    # the same file name in another folder is another source: a new folder, nothing overwritten
    (tmp_path / 'other').mkdir(); (tmp_path / 'other' / 'dev.json').write_text(json.dumps(records))
    again = hde('eval', run, '--data', tmp_path / 'other' / 'dev.json', '--quiet', env=env)
    where = Path(again.stdout.strip().splitlines()[-1].split(': ', 1)[1]).parent
    assert again.returncode == 0 and where.name == 'dev-2', again.stdout + again.stderr[-2000:]
    assert len(json.loads((where.parent / 'dev' / 'predictions.json').read_text())) == len(records) + 1


def test_viz_reads_the_zip(run, qangaroo_zip, env, tmp_path, shared_data):
    out = hde('viz', 'attention', run, '--list', env=env)               # default data: the run's dev member of the zip
    assert out.returncode == 0 and out.stdout.split() == dev_ids(shared_data), out.stderr[-3000:]
    out = hde('viz', 'attention', run, env=env)                          # no --example: the ids, and how to choose
    assert out.returncode == 2 and '--example' in out.stderr and out.stdout.split() == dev_ids(shared_data)
    first = dev_ids(shared_data)[0]
    out = hde('viz', 'attention', run, '--example', first, '--out', tmp_path / 'a.png', env=env)
    assert out.returncode == 0 and (tmp_path / 'a.png').stat().st_size > 1000, out.stderr[-3000:]
    out = hde('viz', 'attention', run, '--example', 'nope', '--out', tmp_path / 'b.png', env=env)
    assert out.returncode == 2 and '--list' in out.stderr and 'Traceback' not in out.stderr
    out = hde('viz', 'flow', run, '--data', qangaroo_zip, '--split', 'dev', '--out', tmp_path / 'flow', env=env)
    assert out.returncode == 0 and (tmp_path / 'flow' / 'flow_stats.json').exists(), out.stderr[-3000:]


def test_pretrain_reads_the_zip(qangaroo_zip, env, tmp_path):
    out = hde('pretrain', 'pretrain_synthetic', f'pretrain.source={qangaroo_zip}', 'data.dataset=wikihop',
              'pretrain.num_sets=6', 'pretrain.dev_sets=2', 'gnn.hidden_size=32', 'gnn.num_layers=1', 'train.epochs=1',
              'train.batch_size=4', 'train.num_threads=1', '--run-dir', tmp_path / 'pre', '--quiet', env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'run directory' in out.stdout


def test_bench_pipeline_reads_the_zip(qangaroo_zip, env, tmp_path):
    out = hde('bench', 'pipeline', '--data', qangaroo_zip, '--dataset', 'wikihop', '--split', 'dev', '--n', 2,
              '--batch-size', 2, '--out', tmp_path / 'b', env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'wikihop' in (tmp_path / 'b' / 'pipeline.txt').read_text() or 'qangaroo' in (tmp_path / 'b' / 'pipeline.txt').read_text()
    assert out.stdout.rstrip().splitlines()[-1] == f"results: {tmp_path / 'b'}"


def test_run_files_have_the_users_mode(run):
    "config.yaml and checkpoint files get the mode any file the user writes gets (umask), not mkstemp's / safetensors' 0600."
    mask = os.umask(0); os.umask(mask)
    want = 0o666 & ~mask
    files = [run / 'config.yaml', *sorted((run / 'checkpoints').glob('step-*/*'))]
    assert len(files) >= 3
    for f in files: assert f.stat().st_mode & 0o777 == want, (f, oct(f.stat().st_mode))
