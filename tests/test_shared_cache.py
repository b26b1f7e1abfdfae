"""Two processes preparing the same data against one cold cache (HDE_CACHE shared by two `hde train` runs), 20 times:
no state-cache entry is corrupted, and both get exactly the token states a process alone gets. Each round starts both
processes' work together (a file barrier) on an empty cache folder; the encoder is loaded once per process."""
import hashlib, json, os, subprocess, sys, zlib
from pathlib import Path

import numpy as np
import pytest

ROUNDS = 20

WORKER = r'''
import hashlib, json, sys, time, warnings
from pathlib import Path
root, rounds, tag, other = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
from hde_kit.config import load_config
from hde_kit.synthetic import generate
from hde_kit.encoders import make_encoder
from hde_kit.train import prepare_split
warnings.simplefilter('ignore')
cfg = load_config(overrides=['data.hops=1', 'data.num_candidates=3'])
examples = generate(6, hops=1, num_candidates=3, seed=3)
encoder = make_encoder(cfg.encoder)
digests = []
for k in range(rounds):
    d = root / f'round{k:02d}'
    d.mkdir(parents=True, exist_ok=True)
    (d / f'ready-{tag}').touch()
    while other != '-' and not (d / f'ready-{other}').exists(): time.sleep(0.005)   # start together, cold
    prep = prepare_split(examples, cfg, encoder, cache_dir=d, progress=False)
    h = hashlib.sha256()
    for s in prep.states:
        for t in [*s['supports'], s['query'], *s['candidates']]: h.update(t.numpy().tobytes())
    digests.append(h.hexdigest())
print(json.dumps(digests))
'''


def _workers(root: Path, pairs: list, rounds: int) -> list:
    env = dict(os.environ, OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false')
    procs = [subprocess.Popen([sys.executable, '-c', WORKER, str(root), str(rounds), tag, other], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for tag, other in pairs]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs): assert p.returncode == 0, err[-3000:]
    return [json.loads(out) for out, _ in outs]


def _check_state_cache(folder: Path) -> int:
    "Verify every entry of every state cache under `folder` against its checksum; the number of entries checked."
    n = 0
    for index_path in folder.rglob('states/*/index.json'):
        index = json.loads(index_path.read_text())
        dtype = {'float16': np.float16, 'float32': np.float32}[index['dtype']]
        data = np.fromfile(index_path.parent / 'states.bin', dtype=dtype)
        d = index['dim']
        for id_, e in index['entries'].items():
            flat = data[e['offset'] * d:(e['offset'] + e['nrows']) * d]
            assert zlib.crc32(flat) == e['crc'], f"{index_path.parent}: entry {id_} is corrupted"
            n += 1
    return n


@pytest.mark.slow
def test_two_cold_runs_sharing_a_cache(tmp_path):
    solo = _workers(tmp_path / 'solo', [('solo', '-')], 1)[0][0]
    a, b = _workers(tmp_path / 'shared', [('a', 'b'), ('b', 'a')], ROUNDS)
    assert a == b == [solo] * ROUNDS          # both runs, every round: exactly the states of a run alone
    checked = sum(_check_state_cache(tmp_path / 'shared' / f'round{k:02d}') for k in range(ROUNDS))
    assert checked >= ROUNDS * 6              # every round cached all 6 examples, none corrupted
    leftovers = [p for p in (tmp_path / 'shared').rglob('*') if p.name.endswith('.tmp')]
    assert not leftovers, leftovers
