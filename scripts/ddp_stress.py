"""Run the 2-process DDP `hde train` (torchrun, gloo on the CPU) many times, in a row and several at a time, and
report any run that does not exit: the check that a DDP run always ends. Each run is its own process group; on a
timeout the whole group (launcher and every rank) is killed and the run counts as a hang.

    python scripts/ddp_stress.py --runs 20 --parallel 1      # 20 in a row
    python scripts/ddp_stress.py --runs 3 --parallel 3       # 3 at a time
"""
import argparse, os, signal, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TINY = ['data.hops=1', 'data.num_candidates=3', 'data.n_train=32', 'data.n_dev=8', 'gnn.hidden_size=32', 'gnn.num_layers=1',
        'train.epochs=1', 'train.batch_size=8', 'train.num_threads=1']
CLI = 'import sys\nfrom hde_kit.cli import main\nsys.exit(main(sys.argv[1:]))\n'

def run_group(cmd, timeout: float, **kw) -> tuple:
    "(exit status or 'hang', seconds, stderr tail) of `cmd` in its own session; on a timeout the whole group is killed."
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)
    try:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, time.time() - t0, err[-1500:]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the launcher and every rank: nothing survives a hang
        proc.communicate()
        return 'hang', time.time() - t0, ''

def one_run(i: int, root: Path, env: dict, timeout: float) -> tuple:
    script = root / 'hde_main.py'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(script), 'train',
           *TINY, '--run-dir', str(root / f'run{i}'), '--quiet']
    return run_group(cmd, timeout, env=env)

def survivors(root: Path) -> list:
    "Processes still running a command of this stress test (matched by its temporary folder)."
    out = subprocess.run(['pgrep', '-f', str(root)], capture_output=True, text=True).stdout.split()
    return [p for p in out if int(p) != os.getpid()]

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--runs', type=int, default=20); ap.add_argument('--parallel', type=int, default=1)
    ap.add_argument('--timeout', type=float, default=300, help='seconds before a run counts as hung')
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix='hde-ddp-stress-'))
    (root / 'hde_main.py').write_text(CLI)
    env = dict(os.environ, HDE_CACHE=str(root / 'cache'), OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false')
    one_run(-1, root, env, args.timeout)   # warm the caches once, so that every counted run does the same work
    t0 = time.time()
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda i: one_run(i, root, env, args.timeout), range(args.runs)))
    for i, (rc, s, err) in enumerate(results):
        print(f"run {i:2}: {'HANG' if rc == 'hang' else 'exit ' + str(rc)} after {s:.0f} s" + (f"\n{err}" if rc not in (0,) else ''))
    hangs = sum(rc == 'hang' for rc, _, _ in results); fails = sum(rc not in (0, 'hang') for rc, _, _ in results)
    left = survivors(root)
    print(f"{args.runs} runs, {args.parallel} at a time, {time.time() - t0:.0f} s: {hangs} hung, {fails} failed, "
          f"{len(left)} processes left over{': ' + ' '.join(left) if left else ''}")
    return 1 if hangs or fails or left else 0

if __name__ == '__main__':
    sys.exit(main())
