"""The hostile-input corpus (tests/hostile_cases.py) through the `hde` command line: every case ends in a non-zero exit
(or the documented `ID: graph: reason` line of `hde graphs build`), with no traceback, no raw control character, the record id and field named where there
is one, within 30 s and 2 GiB. The light group (data files, zips, configs, arguments: no torch) runs in one subprocess
under RLIMIT_AS = 2 GiB; the torch group (tokenizer, graph builder, train/eval/viz) in another, its peak RSS measured."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from hostile_cases import CASES, RAW_CONTROL

LIMIT = 2 << 30           # bytes of address space (light) / resident memory (torch)
SECONDS = 30              # per case
HERE = Path(__file__).resolve().parent


def _run_group(group: str, root: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false', HDE_CACHE=str(root / 'cache'),
               PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get('PYTHONPATH', '')]))
    env.pop('HDE_ALLOW_INTERPOLATION', None)
    out = subprocess.run([sys.executable, str(HERE / 'hostile_cases.py'), group, str(root), str(LIMIT if group == 'light' else 0)],
                         capture_output=True, text=True, env=env, cwd=root, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    return {}, tmp_path_factory


def _result(results, name):
    cache, factory = results
    group = CASES[name][0]
    if group not in cache: cache[group] = _run_group(group, factory.mktemp(group))
    return cache[group][name]


def test_corpus_size():
    assert len(CASES) >= 80, len(CASES)


@pytest.mark.parametrize('name', list(CASES))
def test_hostile_input(results, name):
    group, _, rc, contains = CASES[name]
    r = _result(results, name)
    out = r['out']
    assert r['traceback'] is None, r['traceback']
    assert 'Traceback' not in out, out[-3000:]
    if rc == 'error': assert r['rc'] != 0, out[-3000:]
    else: assert r['rc'] == 0 and ': graph: ' in out, out[-3000:]     # 'reported': the documented per-example line
    for s in contains: assert s in out, (s, out[-3000:])
    shown = out.replace('\x1b[A', '')          # tqdm moves its nested bars with cursor-up; nothing else may print ESC
    assert not [c for c in RAW_CONTROL if c in shown], repr(out[-2000:])
    assert r['seconds'] < SECONDS, r['seconds']
    assert r['maxrss_mb'] * (1 << 20) < LIMIT, r['maxrss_mb']


def test_bounds_summary(results, capsys):
    "The measured worst case per group (printed with -s): the figures the bounds above are checked against."
    for group in ('light', 'torch'):
        rs = [_result(results, n) for n, c in CASES.items() if c[0] == group]
        worst = max(rs, key=lambda r: r['seconds'])
        print(f"{group}: {len(rs)} cases, slowest {worst['seconds']:.1f} s, peak RSS {max(r['maxrss_mb'] for r in rs):.0f} MB "
              f"(bounds: {SECONDS} s, {LIMIT >> 20} MB)")
        assert len(rs) and worst['seconds'] < SECONDS
