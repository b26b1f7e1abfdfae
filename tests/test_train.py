"""Training as a user runs it: `hde train` / `hde eval` in subprocesses, a run killed with SIGKILL and resumed,
two DDP processes against one, the WikiHop samples end to end, and checkpoint errors."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

# a 1-hop world of 3 candidates and a small GNN: encoding and training take seconds on a CPU
TINY = ['data.hops=1', 'data.num_candidates=3', 'data.n_train=48', 'data.n_dev=16', 'gnn.hidden_size=32',
        'gnn.num_layers=2', 'train.batch_size=4', 'train.lr=0.003', 'train.num_threads=1', 'train.log_every_steps=1']
CLI = 'import sys; from hde_kit.cli import main; sys.exit(main(sys.argv[1:]))'   # what the `hde` entry point runs
TIMING = ('seconds', 'examples_per_s', 'elapsed')


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    "Subprocess environment with a cache shared by the tests of this file."
    e = dict(os.environ, HDE_CACHE=str(tmp_path_factory.mktemp('cache')), OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false')
    return e


def hde(*args, env=None, cwd=None, timeout=300):
    return subprocess.run([sys.executable, '-c', CLI, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def metrics(run_dir):
    recs = [json.loads(l) for l in (Path(run_dir) / 'metrics.jsonl').read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in recs]


def final_weights(run_dir):
    from hde_kit.train import read_checkpoint
    return read_checkpoint(Path(run_dir) / 'checkpoints' / sorted(p.name for p in (Path(run_dir) / 'checkpoints').glob('step-*'))[-1],
                           optimizer=False).weights


def test_train_then_eval_cli(tmp_path, env):
    run = tmp_path / 'run'
    out = hde('train', *TINY, 'train.epochs=2', '--run-dir', run, '--quiet', env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'dev accuracy' in out.stdout and str(run) in out.stdout
    for name in ('config.yaml', 'metrics.jsonl', 'predictions-dev.json', 'probabilities-dev.json', 'eval-dev.json',
                 'checkpoints/best.json'):
        assert (run / name).exists(), name
    recs = metrics(run)
    assert [r['kind'] for r in recs if r['kind'] != 'train'] == ['start', 'epoch', 'epoch', 'end']
    # the same run dir again without --resume is refused in one line
    again = hde('train', *TINY, '--run-dir', run, '--quiet', env=env)
    assert again.returncode == 1 and 'already holds checkpoints' in again.stderr and 'Traceback' not in again.stderr
    # eval on a file: a prediction for every id, the official accuracy equal to the one training reported
    from hde_kit.synthetic import generate
    from hde_kit.data import write_examples
    write_examples(generate(10, hops=1, num_candidates=3, seed=99), tmp_path / 'extra.json')
    ev = hde('eval', run, '--data', tmp_path / 'extra.json', '--json', '--quiet', env=env)
    assert ev.returncode == 0, ev.stderr[-3000:]
    where = Path(ev.stdout.strip().splitlines()[-1].split(': ', 1)[1])   # "predictions for N examples: PATH"
    assert where.parent.parent.parent == run / 'eval' and where.parent.name == 'extra'   # RUN/eval/<checkpoint>/extra
    preds = json.loads(where.read_text())
    assert len(preds) == 10
    # a graph that cannot be built counts as wrong: every graph fails under a node limit of 3
    ev = hde('eval', run, '--data', tmp_path / 'extra.json', 'graph.max_nodes=3', '--out', tmp_path / 'nodes3', '--quiet', env=env)
    assert ev.returncode == 0, ev.stderr[-3000:]
    res = json.loads((tmp_path / 'nodes3' / 'eval.json').read_text())
    assert (res['accuracy'], res['total'], res['built'], len(res['failed'])) == (0.0, 10, 0, 10)
    assert len(json.loads((tmp_path / 'nodes3' / 'predictions.json').read_text())) == 10


def test_damaged_or_foreign_checkpoint_is_one_line_error(tmp_path, env):
    run = tmp_path / 'run'
    assert hde('train', *TINY, 'train.epochs=1', '--run-dir', run, '--quiet', env=env).returncode == 0
    data = tmp_path / 'd.json'
    from hde_kit.synthetic import generate
    from hde_kit.data import write_examples
    write_examples(generate(3, hops=1, num_candidates=3, seed=5), data)
    ck = next((run / 'checkpoints').glob('step-*'))
    with open(ck / 'model.safetensors', 'r+b') as f: f.seek(100); f.write(b'garbage!')
    out = hde('eval', run, '--data', data, env=env)
    assert out.returncode == 1 and 'does not match its checksum' in out.stderr and 'Traceback' not in out.stderr
    foreign = tmp_path / 'foreign'; foreign.mkdir()
    (foreign / 'pytorch_model.bin').write_bytes(b'\x80\x04pickle')
    out = hde('eval', foreign, '--data', data, env=env)
    assert out.returncode == 1 and 'no checkpoint found' in out.stderr and 'Traceback' not in out.stderr


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(tmp_path, env):
    over = [*TINY, 'train.epochs=3', 'train.save_every_steps=3', 'gnn.dropout=0.1']   # dropout: RNG state matters
    ref = hde('train', *over, '--run-dir', tmp_path / 'ref', '--quiet', env=env)
    assert ref.returncode == 0, ref.stderr[-3000:]
    steps_per_epoch = 12   # 48 examples / 4
    run = tmp_path / 'killed'
    proc = subprocess.Popen([sys.executable, '-c', CLI, 'train', *over, '--run-dir', str(run), '--quiet'], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at, deadline = None, time.time() + 240
    try:
        while proc.poll() is None and time.time() < deadline:
            names = [p.name for p in (run / 'checkpoints').glob('step-*')] if (run / 'checkpoints').exists() else []
            steps = [int(n.split('-')[1]) for n in names]
            if any(steps_per_epoch < s < 2 * steps_per_epoch for s in steps):   # a checkpoint in the middle of epoch 2
                os.kill(proc.pid, signal.SIGKILL); killed_at = max(steps); break
            time.sleep(0.005)
    finally:
        if proc.poll() is None and killed_at is None: proc.kill()
        proc.wait()
    assert killed_at is not None, f"the run ended (rc {proc.returncode}) before it could be killed mid-epoch"
    assert not (run / 'checkpoints' / 'step-00000036').exists()
    out = hde('train', '--resume', run, '--quiet', env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = final_weights(tmp_path / 'ref'), final_weights(run)
    assert a.keys() == b.keys()
    import torch
    for k in a: assert torch.equal(a[k], b[k]), k
    assert metrics(run) == metrics(tmp_path / 'ref')
    assert json.loads((run / 'predictions-dev.json').read_text()) == json.loads((tmp_path / 'ref' / 'predictions-dev.json').read_text())


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path, env):
    script = tmp_path / 'hde_main.py'
    script.write_text(CLI.replace('; ', '\n'))
    over = [*TINY, 'data.n_train=32', 'train.epochs=2', 'train.batch_size=8', 'gnn.dropout=0.0']
    one = hde('train', *over, '--run-dir', tmp_path / 'one', '--quiet', env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    # its own session: on a timeout the launcher and both ranks are killed together (a hung rank never survives the test)
    two = subprocess.Popen([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(script),
                            'train', *over, '--run-dir', str(tmp_path / 'two'), '--quiet'],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try: _, err = two.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(two.pid, signal.SIGKILL); two.communicate()
        pytest.fail("the 2-process DDP run did not exit within 300 s (every rank killed)")
    assert two.returncode == 0, err[-3000:]
    start = [r for r in metrics(tmp_path / 'two') if r['kind'] == 'start'][0]
    assert start['world_size'] == 2
    losses = lambda run: [(r['step'], r['loss'], r['examples']) for r in metrics(run) if r['kind'] == 'train']
    l1, l2 = losses(tmp_path / 'one'), losses(tmp_path / 'two')
    assert [s for s, _, _ in l1] == [s for s, _, _ in l2] == list(range(1, 9))
    assert [n for *_, n in l1] == [n for *_, n in l2]   # every example counted once
    assert l1[0][1] == pytest.approx(l2[0][1], rel=1e-5)
    for (_, a, _), (_, b, _) in zip(l1, l2): assert a == pytest.approx(b, rel=1e-3, abs=1e-4)
    d1 = [r['dev_accuracy'] for r in metrics(tmp_path / 'one') if r['kind'] == 'epoch']
    d2 = [r['dev_accuracy'] for r in metrics(tmp_path / 'two') if r['kind'] == 'epoch']
    assert d1 == d2


@pytest.mark.slow
def test_wikihop_samples_end_to_end(tmp_path, env, shared_data):
    root = Path(__file__).resolve().parents[1]
    train_file = shared_data / 'wikihop' / 'wikihop_train_first22_ml4g.json'
    dev_file = shared_data / 'wikihop' / 'wikihop_train_tiny2_tgcnqa.json'
    run = tmp_path / 'wikihop'
    out = hde('train', root / 'configs' / 'minilm_wikihop.yaml', f'data.train={train_file}', f'data.dev={dev_file}',
              'train.epochs=1', 'data.max_examples=6', 'train.batch_size=2', 'train.num_threads=1', '--run-dir', run,
              '--quiet', env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    epoch = [r for r in metrics(run) if r['kind'] == 'epoch']
    assert len(epoch) == 1 and epoch[0]['step'] == 3
    ev = hde('eval', run, '--data', train_file, '--quiet', env=env, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    ids = [r['id'] for r in json.loads(train_file.read_text())]
    where = Path(ev.stdout.strip().splitlines()[-1].split(': ', 1)[1]).parent   # RUN/eval/<checkpoint>/<data name>
    assert where.name.endswith('wikihop_train_first22_ml4g')   # <dataset>-<file stem>
    preds = json.loads((where / 'predictions.json').read_text())
    assert sorted(preds) == sorted(ids)
    records = {r['id']: r for r in json.loads(train_file.read_text())}
    assert all(preds[i] in records[i]['candidates'] for i in ids)
    res = json.loads((where / 'eval.json').read_text())
    assert res['total'] == 22 and res['built'] + len(res['failed']) == 22


def test_viz_cli_draws_a_trained_run(tmp_path, env):
    "`hde viz attention` and `hde viz flow` on a run that `hde train` left."
    run = tmp_path / 'run'
    assert hde('train', *TINY, 'train.epochs=1', '--run-dir', run, '--quiet', env=env).returncode == 0
    data = tmp_path / 'd.json'
    from hde_kit.synthetic import generate
    from hde_kit.data import write_examples
    exs = generate(4, hops=1, num_candidates=3, seed=7)
    write_examples(exs, data)
    for out in ('att.html', 'att.png'):
        res = hde('viz', 'attention', run, '--example', exs[0].id, '--data', data, '--out', tmp_path / out, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        assert (tmp_path / out).stat().st_size > 1000
    assert exs[0].candidates[0] in (tmp_path / 'att.html').read_text(encoding='utf-8')
    res = hde('viz', 'flow', run, '--data', data, '--out', tmp_path / 'flow', env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / 'flow' / 'flow_stats.json').exists() and list((tmp_path / 'flow').glob('*.png'))


def test_config_secret_never_reaches_the_run(tmp_path, env):
    "Interpolation is refused by default; allowed, the run folder stores the `${...}` text, never the value."
    secret = 'hunter2-' + os.urandom(4).hex()
    over = [*TINY, 'data.n_train=8', 'data.n_dev=4', 'train.epochs=1', 'train.wandb_project=${oc.env:HDE_TEST_SECRET}']
    e = dict(env, HDE_TEST_SECRET=secret)
    e.pop('HDE_ALLOW_INTERPOLATION', None)
    refused = hde('train', *over, '--run-dir', tmp_path / 'no', '--quiet', env=e)
    assert refused.returncode == 1 and 'interpolation' in refused.stderr and 'Traceback' not in refused.stderr
    assert not (tmp_path / 'no').exists()
    run = tmp_path / 'run'
    out = hde('train', *over, '--run-dir', run, '--quiet', env=dict(e, HDE_ALLOW_INTERPOLATION='1'))
    assert out.returncode == 0, out.stderr
    files = [p for p in run.rglob('*') if p.is_file()]
    assert any(p.name == 'state.json' for p in files)
    assert not [p for p in files if secret.encode() in p.read_bytes()]


def test_bad_config_stops_before_data_and_torch(tmp_path):
    "A bad value is reported (key named) before the data file is looked at and before torch is imported."
    code = ('import sys; from hde_kit.cli import main; rc = main(sys.argv[1:]); '
            'print("torch" in sys.modules); sys.exit(rc)')
    out = subprocess.run([sys.executable, '-c', code, 'train', f'data.train={tmp_path}/missing.json', 'gnn.core=gcn',
                          'train.batch_size=0'], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stdout.strip() == 'False'
    err = out.stderr.strip()
    assert len(err.splitlines()) == 1 and 'gnn.core' in err and 'train.batch_size' in err and 'missing.json' not in err
