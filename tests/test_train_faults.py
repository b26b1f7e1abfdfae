"""`hde train` under faults a careless user or a bad disk causes: skipped records and shared ids reported, an empty dev
file refused, a NaN loss stopped, a damaged latest checkpoint and invalid UTF-8 in metrics.jsonl survived on resume,
an unusable cache or run folder, Ctrl-C; the synthetic-data and token-state caches repair themselves."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

from test_train import CLI, TINY, hde

SMALL = [*TINY, 'data.n_train=8', 'data.n_dev=4']


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    return dict(os.environ, HDE_CACHE=str(tmp_path_factory.mktemp('cache')), OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false')


def one_line_error(out) -> str:
    assert out.returncode == 1 and 'Traceback' not in out.stderr, out.stderr[-2000:]
    lines = [l for l in out.stderr.splitlines() if l.startswith('hde: error:')]
    assert len(lines) == 1, out.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    "A train file with one bad record, a dev file sharing two ids with it, an empty dev file."
    from hde_kit.synthetic import generate
    from hde_kit.data import example_to_record
    d = tmp_path_factory.mktemp('data')
    train = [example_to_record(e) for e in generate(8, hops=1, num_candidates=3, seed=1)]
    dev = train[:2] + [example_to_record(e) for e in generate(4, hops=1, num_candidates=3, seed=2)]
    for i, r in enumerate(dev[2:]): r['id'] = f'dev_{i}'
    lines = [json.dumps(r) for r in train] + ['{"id": "broken", "query": "r s", "supports": [], "candidates": ["a"], "answer": "a"}']
    (d / 'train.jsonl').write_text('\n'.join(lines) + '\n')
    (d / 'dev.jsonl').write_text('\n'.join(json.dumps(r) for r in dev) + '\n')
    (d / 'empty.jsonl').write_text('')
    return d


def test_resume_falls_back_warns_and_reports_data(tmp_path, env, files):
    run = tmp_path / 'run'
    over = [*SMALL, f'data.train={files}/train.jsonl', f'data.dev={files}/dev.jsonl', 'train.save_every_steps=1', 'train.keep_last=10']
    out = hde('train', *over, 'train.epochs=1', '--run-dir', run, '--quiet', env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'hde: warning: data.train=' in out.stderr and 'skipped 1 record(s) (empty_supports: 1)' in out.stderr
    assert 'share 2 example id(s)' in out.stderr
    cks = sorted((run / 'checkpoints').glob('step-*'))
    assert len(cks) >= 2
    with open(cks[-1] / 'model.safetensors', 'r+b') as f: f.seek(100); f.write(b'garbage!')       # the latest is damaged
    with open(run / 'metrics.jsonl', 'ab') as f: f.write(b'{"kind": "note", "text": "\xff\xfe"}\n')   # invalid UTF-8
    other_cache = dict(env, HDE_CACHE=str(tmp_path / 'other-cache'))
    out = hde('train', 'train.epochs=2', '--resume', run, '--quiet', env=other_cache)
    assert out.returncode == 0 and 'Traceback' not in out.stderr, out.stderr[-3000:]
    assert f'resuming from the older checkpoint {cks[-2].name}' in out.stderr
    assert 'token states now come from' in out.stderr      # a different state cache: said, since results can differ


def test_empty_dev_file_is_an_error(tmp_path, env, files):
    out = hde('train', *SMALL, f'data.train={files}/train.jsonl', f'data.dev={files}/empty.jsonl', '--run-dir', tmp_path / 'r',
              '--quiet', env=env)
    assert 'data.dev=' in one_line_error(out) and 'no readable examples (empty_file: 1' in out.stderr


def test_nan_loss_stops_with_one_line(tmp_path, env):
    out = hde('train', *SMALL, 'train.lr=1e30', 'train.grad_clip=0', 'train.optimizer=sgd', 'train.epochs=1',
              '--run-dir', tmp_path / 'r', '--quiet', env=env)
    assert 'training diverged' in one_line_error(out) and 'loss is nan' in out.stderr


def test_unusable_cache_or_run_dir(tmp_path, env):
    (tmp_path / 'afile').write_text('not a folder')
    out = hde('train', *SMALL, 'train.epochs=1', '--run-dir', tmp_path / 'r', '--quiet', env=dict(env, HDE_CACHE=str(tmp_path / 'afile')))
    assert out.returncode == 0 and 'Traceback' not in out.stderr, out.stderr[-3000:]
    assert 'hde: warning: cache' in out.stderr and 'running without caches' in out.stderr
    assert (tmp_path / 'afile').read_text() == 'not a folder' and (tmp_path / 'r' / 'checkpoints').exists()
    out = hde('train', *SMALL, '--run-dir', tmp_path / 'afile' / 'run', '--quiet', env=env)
    assert 'cannot be written' in one_line_error(out)


def test_ctrl_c_is_one_line_and_130(tmp_path, env):
    p = subprocess.Popen([sys.executable, '-c', CLI, 'train', *SMALL, 'train.epochs=100', '--run-dir', str(tmp_path / 'r'), '--quiet'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (tmp_path / 'r' / 'metrics.jsonl').exists() and time.time() < deadline: time.sleep(0.5)   # training has started
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and err.strip().splitlines()[-1] == 'hde: interrupted' and 'Traceback' not in err, err[-2000:]


def test_replaced_synthetic_cache_is_regenerated(tmp_path):
    from hde_kit.config import load_config
    from hde_kit.train import synthetic_splits
    d = load_config(overrides=['data.hops=1', 'data.n_train=6', 'data.n_dev=3', 'data.num_candidates=3']).data
    train, dev = synthetic_splits(d, tmp_path)
    f = next(tmp_path.rglob('train.json'))
    recs = json.loads(f.read_text())
    recs[0]['answer'] = recs[0]['candidates'][-1] if recs[0]['answer'] != recs[0]['candidates'][-1] else recs[0]['candidates'][0]
    f.write_text(json.dumps(recs))                       # still valid data, but not what the generator made
    with pytest.warns(UserWarning, match='altered'): again, _ = synthetic_splits(d, tmp_path)
    assert [e.answer for e in again] == [e.answer for e in train]


def test_state_cache_repairs_a_wrong_width_and_spares_a_live_writer(tmp_path):
    import numpy as np, torch
    from hde_kit.encoders import StateCache
    from hde_kit.graph import fake_tokenised
    tok = next(fake_tokenised(1))
    states = {'supports': [torch.ones(5, 4), torch.ones(5, 4)], 'query': torch.ones(2, 4), 'candidates': [torch.ones(1, 4)] * 2}
    c = StateCache(tmp_path, 'k', 'float32')
    c.put(tok, states); c.flush()
    index = json.loads(c.index_path.read_text()); index['dim'] = 3
    c.index_path.write_text(json.dumps(index))              # an index of the wrong width
    c2 = StateCache(tmp_path, 'k', 'float32')
    with pytest.warns(UserWarning, match='rebuilding'): c2.put(tok, states)
    c2.flush()
    assert torch.equal(c2.get(tok)['query'], states['query']) and json.loads(c2.index_path.read_text())['dim'] == 4
    # another process holds the writer lock and has data but no index yet: opening the cache must not delete it
    live = tmp_path / 'live'
    code = ("import sys, time; from hde_kit.encoders import StateCache; c = StateCache(sys.argv[1], 'k', 'float32'); "
            "c._may_write(); c.data_path.write_bytes(b'x' * 64); print('ready', flush=True); time.sleep(30)")
    p = subprocess.Popen([sys.executable, '-c', code, str(live)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == 'ready'
        with pytest.warns(UserWarning, match='being written by another process'):
            reader = StateCache(live, 'k', 'float32')
            reader.clear()
        assert (live / 'k' / 'states.bin').read_bytes() == b'x' * 64
    finally: p.kill(); p.wait()
