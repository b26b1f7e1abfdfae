"""`hde sweep` and `hde report` as a user runs them: a 2 x 2 x 2-seed sweep on synthetic data, its process killed with
SIGKILL, restarted (finished runs not repeated), and the report checked against every run's own metrics."""
import csv, json, os, signal, statistics, subprocess, sys, time
from pathlib import Path

import pytest

CLI = 'import sys; from hde_kit.cli import main; sys.exit(main(sys.argv[1:]))'   # what the `hde` entry point runs
TINY = ['data.hops=1', 'data.num_candidates=3', 'data.n_train=24', 'data.n_dev=8', 'train.epochs=1', 'train.batch_size=4',
        'train.num_threads=1', 'train.save_every_steps=2']
GRID = ['gnn.hidden_size=8,16', 'gnn.num_layers=1,2']


def hde(*args, env, timeout=600):
    return subprocess.run([sys.executable, '-c', CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


def snapshot(run: Path) -> dict:
    "What must not change when a finished run is skipped: its files' bytes and modification times."
    files = [p for p in run.rglob('*') if p.is_file()]
    return {str(p.relative_to(run)): (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


def test_sweep_survives_sigkill_and_report_matches_runs(tmp_path):
    env = dict(os.environ, HDE_CACHE=str(tmp_path / 'cache'), OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false')
    root = tmp_path / 'sweep'
    cmd = ['sweep', *GRID, *TINY, '--seeds', 2, '--run-root', root, '--quiet']
    # the first attempt runs two child processes at a time (--jobs 2) and is killed once three runs have finished
    proc = subprocess.Popen([sys.executable, '-c', CLI, *map(str, cmd), '--jobs', '2'], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done_before, deadline = [], time.time() + 300
    try:
        while proc.poll() is None and time.time() < deadline:
            done_before = sorted(p.parent.name for p in root.glob('*/sweep-done.json'))
            if len(done_before) >= 3:
                os.kill(proc.pid, signal.SIGKILL); break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and len(done_before) < 3: proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the sweep ended (rc {proc.returncode}) before it could be killed"
    done_before = sorted(p.parent.name for p in root.glob('*/sweep-done.json'))   # a fourth may have landed meanwhile
    assert 3 <= len(done_before) < 8
    time.sleep(1.0)   # the children die with the sweep (PR_SET_PDEATHSIG): nothing may write into the runs any more
    before = {name: snapshot(root / name) for name in done_before}
    # the restart (in one process this time) skips the finished runs and trains the rest
    out = hde(*cmd, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    skipped = sorted(l.split('] ')[1].split(':')[0] for l in out.stdout.splitlines() if 'finished before, skipped' in l)
    assert skipped == done_before
    assert f"{8 - len(done_before)} runs finished now, {len(done_before)} before" in out.stdout
    for name in done_before: assert snapshot(root / name) == before[name], f"{name} was touched by the restart"
    runs = sorted(p.parent for p in root.glob('*/sweep-done.json'))
    assert len(runs) == 8
    # the report: printed, written, and every number the mean / sample std of the runs' own metrics.jsonl
    rep = hde('report', root, env=env)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert rep.stdout.startswith('| gnn.hidden_size | gnn.num_layers | runs | dev acc. (%) | parameters |')
    for name in ('report.csv', 'report.md', 'report.tex', 'seeds.png', 'parameters.png'):
        assert (root / name).stat().st_size > 100, name
        assert f"wrote {root / name}" in rep.stdout
    own = {}
    for run in runs:
        recs = [json.loads(l) for l in (run / 'metrics.jsonl').read_text().splitlines()]
        point = dict(kv.split('=') for kv in run.name.split('__'))
        key = (point['hidden_size'], point['num_layers'])
        own.setdefault(key, {'acc': [], 'params': set()})
        own[key]['acc'].append([r for r in recs if r['kind'] == 'end'][-1]['best_dev_accuracy'])
        own[key]['params'].add([r for r in recs if r['kind'] == 'start'][0]['parameters'])
    rows = list(csv.DictReader((root / 'report.csv').open()))
    assert sorted((r['gnn.hidden_size'], r['gnn.num_layers']) for r in rows) == sorted(own)
    for r in rows:
        mine = own[(r['gnn.hidden_size'], r['gnn.num_layers'])]
        assert int(r['runs']) == 2 and r['seeds'] == '0;1'
        assert float(r['dev_accuracy_mean']) == pytest.approx(statistics.mean(mine['acc']), abs=1e-12)
        assert float(r['dev_accuracy_std']) == pytest.approx(statistics.stdev(mine['acc']), abs=1e-12)
        assert {int(r['parameters'])} == mine['params']
        line = next(l for l in rep.stdout.splitlines() if l.startswith(f"| {r['gnn.hidden_size']} | {r['gnn.num_layers']} |"))
        assert f"{100 * statistics.mean(mine['acc']):.1f} ± {100 * statistics.stdev(mine['acc']):.1f}" in line
    tex = (root / 'report.tex').read_text()
    assert '\\toprule' in tex and tex.count('\\\\') == 1 + len(rows)


def test_sweep_bad_key_is_one_line_error(tmp_path):
    env = dict(os.environ, HDE_CACHE=str(tmp_path / 'cache'))
    out = hde('sweep', 'gnn.hiden_size=8,16', '--run-root', tmp_path / 's', env=env, timeout=120)
    assert out.returncode == 1 and "unknown key 'gnn.hiden_size'" in out.stderr and 'Traceback' not in out.stderr
    assert not (tmp_path / 's').exists()   # nothing started
    out = hde('report', tmp_path, env=env, timeout=120)
    assert out.returncode == 1 and 'neither a run directory' in out.stderr and 'Traceback' not in out.stderr
