"""Benchmark of hde_kit's GraphAttention kernels against PyG TransformerConv, and of the kernel dispatcher.

Part 1 (acceptance of issue 4): at N = 2048 nodes, 1% density, d = 256, 4 heads, forward+backward of one
layer, for each hde_kit kernel ('sparse' = PyG MessagePassing, 'sparse_csr' = torch sparse CSR ops,
'dense' = SDPA with a mask, 'auto' = the dispatcher) and for PyG TransformerConv of the same size:
time (warm-up, then repeats interleaved across kernels, median and [min-max]) and peak memory, with ratios
to TransformerConv measured in the same run. Targets: best sparse kernel <= 0.6x the time and <= 1.0x the
peak memory of TransformerConv. Rows for a typed layer (edge-type key/value embeddings; TransformerConv gets
the types as one-hot edge features) follow the plain ones.

Part 2: the dispatcher against the fastest kernel over N in {128, 512, 2048} x density in {0.2%, 1%, 10%, 50%}
(target: within 1.15x everywhere).

Calibration: `--calibrate` times every kernel over a finer grid (plain and typed layers) and writes JSON lines;
`--fit FILE...` fits the dispatcher's cost model (per kernel: a + b*X*H/1e6 + c*X*d/1e6 ms, X = E, or N*M for
dense) by non-negative least squares and prints it in the form of hde_kit.gnn.DISPATCH, with its regret.

Peak memory. On CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus what was allocated
before. On the CPU torch has no allocator statistics, and tracemalloc does not see torch's allocations
(they bypass Python's allocator), so each kernel runs in a fresh subprocess: it builds its inputs, runs one
warm-up step (one-time allocations: thread pools, oneDNN caches), resets the kernel's resident-set high-water
mark (`echo 5 > /proc/self/clear_refs`, Linux >= 4.0), notes the resident set, runs one forward+backward and
reads the high-water mark (VmHWM) again: peak = VmHWM - VmRSS before. The child runs with
MALLOC_MMAP_THRESHOLD_=65536 so that glibc serves every tensor above 64 KiB from mmap and unmaps it on free;
otherwise freed memory stays in the heap, the resident set stops tracking live tensors, and the peak of a later
step hides inside memory an earlier step freed. Where clear_refs is not writable the child falls back to the
ru_maxrss growth of the step (a lower bound; said in the output).

The measuring machinery (random graphs, interleaved timing, clocks, the resident-set and CUDA peak methods, the
glibc settings of the memory child) lives in hde_kit.bench (nbs/12_bench.ipynb), which the full grid of issue 8
(`benchmarks/bench_grid.py`, `hde bench attention`) uses too; this script keeps issue 4's headline table, the
dispatcher grid and the calibration of the dispatcher's cost model.

Time. Timings depend on the machine and on what else runs on it: compare the ratios of one run, where the
kernels run interleaved round-robin. By default each measurement uses one thread and the process's CPU time
(time.process_time): on a shared, oversubscribed machine wall time also counts the slices the OS gives to other
processes (it doubled a 15 ms step at random here), while CPU time counts the work the kernel does. With two
threads every OpenMP barrier also waits for a thread the OS has descheduled. `--clock wall --threads T` measures
wall time instead (always on CUDA, synchronised).

    python benchmarks/bench_attention.py [--quick] [--threads 1] [--clock auto|cpu|wall] [--device cpu|cuda]
    python benchmarks/bench_attention.py --calibrate [--dim 256] [--out FILE];  ... --fit FILE [FILE ...]
"""
from __future__ import annotations
import argparse, gc, json, os, statistics, subprocess, sys, time
from typing import Callable

import torch
import torch.nn.functional as F
from torch_geometric.nn import TransformerConv

from hde_kit.gnn import GraphAttention, DISPATCH
from hde_kit import bench

KERNELS = ('sparse', 'sparse_csr', 'dense', 'auto')
LABEL = {'tc': 'PyG TransformerConv', 'sparse': 'hde sparse (MessagePassing)', 'sparse_csr': 'hde sparse_csr (CSR ops)',
         'dense': 'hde dense (SDPA + mask)', 'auto': 'hde auto (dispatcher)'}
MAX_GATHER_ELEMENTS = 64 * 2**20     # skip the E x d gathering kernels (MessagePassing, TransformerConv) above this

# ----------------------------------------------------------------------------------------------- cases

def random_graph(n: int, density: float, seed: int = 0, device='cpu') -> torch.Tensor:
    "A random simple directed graph with round(density * n^2) edges (distinct (source, target) pairs)."
    return bench.random_graph(n, density, seed).edge_index.to(device)

def make_case(kind: str, n: int, density: float, dim: int, heads: int, types: int, device: str, seed: int = 0):
    """A forward+backward step of one layer as a closure, and the layer. kind: 'tc' or a GraphAttention kernel;
    types > 0 gives edge-type embeddings (hde) / one-hot edge features (TransformerConv)."""
    torch.manual_seed(seed)
    ei = random_graph(n, density, seed, device)
    et = torch.randint(0, max(types, 1), (ei.size(1),), device=device)
    x = torch.randn(n, dim, device=device, requires_grad=True)
    grad = torch.randn(n, dim, device=device)
    if kind == 'tc':
        layer = TransformerConv(dim, dim // heads, heads=heads, edge_dim=types or None).to(device)
        attr = F.one_hot(et, types).float() if types else None
        def step():
            layer(x, ei, edge_attr=attr).backward(grad)
    else:
        layer = GraphAttention(dim, heads, types, edge_type_kv=bool(types), kernel=kind).to(device)
        def step():
            layer(x, ei, et).backward(grad)
    return step, layer

def feasible(kind: str, n: int, density: float, dim: int) -> bool:
    "MessagePassing and TransformerConv materialise E x d tensors; skip them where those would not fit comfortably."
    return kind not in ('sparse', 'tc') or density * n * n * dim <= MAX_GATHER_ELEMENTS

# ----------------------------------------------------------------------------------------------- timing

sync = bench.sync
_clock = ['wall']

def time_interleaved(steps: dict[str, Callable], device: str, warmup: int, repeats: int) -> dict[str, list[float]]:
    """ms per call for each step, the steps interleaved round-robin so that background load hits them alike.
    The clock is wall time, or with `--clock cpu` (the default for one CPU thread) the process's CPU time."""
    if repeats < 1:   # warm-up only
        for _ in range(warmup):
            for f in steps.values(): f(); sync(device)
        return {k: [] for k in steps}
    return bench.time_steps(steps, device, warmup, repeats, _clock[0])

# ----------------------------------------------------------------------------------------------- memory

def _memory_child(spec: dict) -> dict:
    "Runs in a fresh process: peak resident-set growth (MiB) of one forward+backward step."
    torch.set_num_threads(spec['threads'])
    step, _ = make_case(spec['kind'], spec['n'], spec['density'], spec['dim'], spec['heads'], spec['types'], 'cpu')
    step(); gc.collect()                                      # warm-up: one-time allocations are not the kernel's
    peak, method = bench.rss_step_peak_mb(step)
    return dict(peak_mb=peak, method=method)

def peak_memory_mb(kind, n, density, dim, heads, types, device, threads) -> tuple[float, str]:
    if device.startswith('cuda'):
        step, _ = make_case(kind, n, density, dim, heads, types, device)
        step(); torch.cuda.synchronize(); gc.collect()
        return bench.cuda_step_peak_mb(step, device)
    spec = dict(kind=kind, n=n, density=density, dim=dim, heads=heads, types=types, threads=threads)
    env = dict(os.environ, **bench.MALLOC_ENV)
    out = subprocess.run([sys.executable, __file__, '--_memory-child', json.dumps(spec)], env=env,
                         capture_output=True, text=True, check=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    return res['peak_mb'], res['method']

# ----------------------------------------------------------------------------------------------- part 1

def fmt_time(ts): return f"{statistics.median(ts):8.1f} [{min(ts):.0f}-{max(ts):.0f}]"

def headline(args):
    n, density, dim, heads = 2048, 0.01, 256, 4
    e = round(density * n * n)
    print(f"\n== Part 1: one layer, forward+backward: N={n}, density={density:.1%} (E={e}), d={dim}, heads={heads}, "
          f"device={args.device}, threads={torch.get_num_threads()}, warm-up {args.warmup}, repeats {args.repeats} ==")
    verdicts = []
    for types in ((0, 16) if not args.quick else (0,)):
        kinds = ['tc', 'sparse', 'sparse_csr', 'dense', 'auto']
        cases = {k: make_case(k, n, density, dim, heads, types, args.device) for k in kinds}
        times = time_interleaved({k: c[0] for k, c in cases.items()}, args.device, args.warmup, args.repeats)
        med = {k: statistics.median(v) for k, v in times.items()}
        mem, method = {}, ''
        if not args.no_memory:
            for k in kinds:
                mem[k], method = peak_memory_mb(k, n, density, dim, heads, types, args.device, args.threads)
        title = 'plain (no edge types)' if not types else f'typed ({types} edge types: hde key/value type embeddings, TC one-hot edge features)'
        print(f"\n{title}")
        print(f"{'kernel':34s} {'time ms median [min-max]':>26s} {'x TC':>6s} {'peak MiB':>9s} {'x TC':>6s}")
        for k in kinds:
            label = LABEL[k] + (f" -> {cases[k][1].last_kernel}" if k == 'auto' else '')
            m = f"{mem[k]:9.1f} {mem[k] / mem['tc']:6.2f}" if mem else f"{'-':>9s} {'-':>6s}"
            print(f"{label:34s} {fmt_time(times[k]):>26s} {med[k] / med['tc']:6.2f} {m}")
        best = min(('sparse', 'sparse_csr'), key=med.get)
        t_ratio = med[best] / med['tc']
        m_ratio = mem[best] / mem['tc'] if mem else float('nan')
        ok = t_ratio <= 0.6 and (not mem or m_ratio <= 1.0)
        verdicts.append(ok)
        print(f"best sparse kernel: {best}: {t_ratio:.2f}x TransformerConv time (target <= 0.6), "
              f"{m_ratio:.2f}x its peak memory (target <= 1.0): {'PASS' if ok else 'FAIL'}")
        if mem: print(f"peak memory method: {method}")
        del cases; gc.collect()
    return all(verdicts)

# ----------------------------------------------------------------------------------------------- part 2

def _features(kind: str, n: int, e: int, heads: int, dim: int) -> list[float]:
    "The cost model's features (units of 1e6): 1, X*H, X*d with X = E (sparse kernels) or N*M (dense)."
    x = n * n if kind == 'dense' else e
    return [1.0, x * heads / 1e6, x * dim / 1e6]

def _nnls(A: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    "Non-negative least squares for a handful of columns: the best unconstrained fit over every column subset."
    best = None
    for mask in range(1, 2 ** A.size(1)):
        cols = [i for i in range(A.size(1)) if mask >> i & 1]
        sol = torch.linalg.lstsq(A[:, cols], y[:, None]).solution.flatten()
        if (sol < 0).any(): continue
        full = torch.zeros(A.size(1), dtype=A.dtype); full[cols] = sol
        res = float(((A @ full - y) ** 2).sum())
        if best is None or res < best[0]: best = (res, full)
    return best[1]

def fit_dispatch(paths: list[str]) -> dict:
    """Fit cost(kernel) = a + b*X*H/1e6 + c*X*d/1e6 ms to calibration JSON lines (minimum times), minimising
    relative error, separately for plain and typed layers; print it as a DISPATCH entry and its regret."""
    rows = [json.loads(line) for p in paths for line in open(p) if line.strip()]
    model = {}
    for typed in (False, True):
        model[typed] = {}
        for kind in ('sparse', 'sparse_csr', 'dense'):
            pts = [(_features(kind, r['N'], r['E'], r['H'], r['d']), r['min'][kind])
                   for r in rows if bool(r['types']) == typed and kind in r['min']]
            A = torch.tensor([[f / t for f in fs] for fs, t in pts], dtype=torch.float64)
            model[typed][kind] = tuple(round(float(v), 4) for v in _nnls(A, torch.ones(len(pts), dtype=torch.float64)))
    cost = lambda typed, k, r: sum(a * f for a, f in zip(model[typed][k], _features(k, r['N'], r['E'], r['H'], r['d'])))
    regrets = []
    for r in rows:
        typed = bool(r['types'])
        pick = min(model[typed], key=lambda k: cost(typed, k, r) if k in r['min'] else float('inf'))
        regrets.append((r['min'][pick] / min(r['min'].values()), r['N'], r['E'], r['d'], typed, pick))
    regrets.sort(reverse=True)
    print("fitted cost model (ms = a + b*X*H/1e6 + c*X*d/1e6; X = E, or N*M for dense):")
    print("  {'plain': %s,\n   'typed': %s}" % (model[False], model[True]))
    print(f"regret of the fitted dispatcher on these {len(rows)} points (time of its pick / fastest, minimum times): "
          f"geometric mean {statistics.geometric_mean([x[0] for x in regrets]):.3f}, "
          f"{sum(x[0] > 1.15 for x in regrets)} points above 1.15; worst: "
          + ', '.join(f"{x[0]:.2f} (N={x[1]} E={x[2]} d={x[3]} {'typed' if x[4] else 'plain'} -> {x[5]})" for x in regrets[:4]))
    return model

def dispatcher_grid(args):
    """auto vs the fastest kernel at each grid point: medians of interleaved rounds (more rounds for cheap points),
    and the ratio of minimum times alongside."""
    dim, heads = 256, 4
    ns = (128, 512, 2048) if not args.quick else (128, 512)
    densities = (0.002, 0.01, 0.1, 0.5)
    print(f"\n== Part 2: dispatcher vs fastest kernel, forward+backward, d={dim}, heads={heads}, plain layer, "
          f"device={args.device}, threads={torch.get_num_threads()}, clock={args.clock}; median of >= {args.grid_repeats} "
          f"interleaved rounds (up to 200 for cheap points, ~{args.budget:.1f} s per point) ==")
    print(f"{'N':>5s} {'density':>8s} {'E':>8s} {'rounds':>6s} | {'sparse':>7s} {'csr':>7s} {'dense':>7s} | {'auto':>7s} "
          f"{'auto picks':>10s} {'fastest':>10s} | {'auto/fastest':>12s} {'(minima)':>8s}")
    worst, worst_min = 0.0, 0.0
    for n in ns:
        for density in densities:
            e = max(1, round(density * n * n))
            kinds = [k for k in KERNELS if feasible(k, n, density, dim)]
            cases = {k: make_case(k, n, density, dim, heads, 0, args.device) for k in kinds}
            steps = {k: c[0] for k, c in cases.items()}
            first = time_interleaved(steps, args.device, 1, 1)        # warm-up, then size the rounds to the budget
            reps = int(min(200, max(args.grid_repeats, args.budget / (sum(v[0] for v in first.values()) / 1000))))
            times = time_interleaved(steps, args.device, 0, reps)
            med = {k: statistics.median(v) for k, v in times.items()}
            low = {k: min(v) for k, v in times.items()}
            others = [k for k in kinds if k != 'auto']
            fastest = min(others, key=med.get)
            ratio = med['auto'] / med[fastest]
            ratio_min = low['auto'] / low[min(others, key=low.get)]
            worst, worst_min = max(worst, ratio), max(worst_min, ratio_min)
            cell = lambda k: f"{med[k]:7.1f}" if k in med else f"{'skip':>7s}"
            print(f"{n:5d} {density:8.1%} {e:8d} {reps:6d} | {cell('sparse')} {cell('sparse_csr')} {cell('dense')} | "
                  f"{med['auto']:7.1f} {cases['auto'][1].last_kernel:>10s} {fastest:>10s} | {ratio:11.2f}x "
                  f"{ratio_min:7.2f}x {'ok' if ratio <= 1.15 else 'SLOW'}")
            del cases, steps; gc.collect()
    print(f"dispatcher: worst auto/fastest = {worst:.2f}x (target <= 1.15): {'PASS' if worst <= 1.15 else 'FAIL'}"
          f"  (on minimum times: {worst_min:.2f}x)")
    print(f"('sparse' = MessagePassing is skipped where its E x d gathers exceed {MAX_GATHER_ELEMENTS // 2**20}M "
          "elements; in the calibration data it is >= 5x slower than 'sparse_csr' long before that.)")
    dev = 'cuda' if args.device.startswith('cuda') else 'cpu'
    print(f"cost model in use: DISPATCH[{dev!r}] (re-fit with --calibrate, then --fit FILE)")
    return worst <= 1.15

# ----------------------------------------------------------------------------------------------- calibration

def calibrate(args):
    """Time every kernel over a fine grid (plain and typed layers) and write min and median per kernel as JSON
    lines (the minimum is the better estimate of a kernel's own cost under background load); the lead then fits
    hde_kit.gnn.DISPATCH to them (see the notebook's dispatcher section)."""
    dim, heads = args.dim, 4
    ns = (64, 128, 256, 512, 1024, 2048)
    densities = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    with open(args.out, 'a') as f:
        for types in (0, 16):
            for n in ns:
                for density in densities:
                    e = max(1, round(density * n * n))
                    if e < 8: continue
                    kinds = [k for k in ('sparse', 'sparse_csr', 'dense') if k != 'sparse' or e <= 60_000]
                    cases = {k: make_case(k, n, density, dim, heads, types, args.device) for k in kinds}
                    steps = {k: c[0] for k, c in cases.items()}
                    first = time_interleaved(steps, args.device, 1, 1)       # warm-up + one timed round
                    rounds = int(min(25, max(3, args.budget / (sum(v[0] for v in first.values()) / 1000))))
                    times = time_interleaved(steps, args.device, 0, rounds)
                    row = dict(N=n, E=e, d=dim, H=heads, types=types, threads=torch.get_num_threads(),
                               device=args.device, rounds=rounds,
                               min={k: min(v) for k, v in times.items()},
                               median={k: statistics.median(v) for k, v in times.items()})
                    print(json.dumps(row), flush=True); f.write(json.dumps(row) + '\n')
                    del cases, steps; gc.collect()

# ----------------------------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='fewer repeats, plain layer only, N <= 512 in the grid')
    ap.add_argument('--threads', type=int, default=1, help='torch.set_num_threads for every measurement')
    ap.add_argument('--clock', choices=('auto', 'cpu', 'wall'), default='auto',
                    help='auto: process CPU time on the CPU with one thread, else wall time')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--repeats', type=int, default=None, help='timed repeats per kernel in part 1')
    ap.add_argument('--grid-repeats', type=int, default=None, help='timed repeats per kernel and grid point')
    ap.add_argument('--no-memory', action='store_true', help='skip the peak-memory measurements')
    ap.add_argument('--part', choices=('1', '2', 'all'), default='all')
    ap.add_argument('--calibrate', action='store_true', help='time all kernels over a fine grid; write JSON lines to --out')
    ap.add_argument('--out', default='benchmarks/results/attention_calibration.jsonl')
    ap.add_argument('--dim', type=int, default=256, help='layer width for --calibrate')
    ap.add_argument('--fit', nargs='+', default=None, metavar='FILE', help='fit DISPATCH constants to calibration files')
    ap.add_argument('--budget', type=float, default=None, help='seconds of timed rounds per grid point (part 2, --calibrate)')
    ap.add_argument('--_memory-child', dest='child', default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_memory_child(json.loads(args.child)))); return 0
    torch.set_num_threads(args.threads)
    if args.clock == 'auto': args.clock = 'cpu' if args.device == 'cpu' and args.threads == 1 else 'wall'
    if args.clock == 'cpu' and (args.device != 'cpu' or args.threads != 1):
        ap.error('--clock cpu measures one CPU thread only (use --threads 1 on the CPU)')
    _clock[0] = args.clock
    args.warmup = 1 if args.quick else 2
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.grid_repeats = args.grid_repeats or (3 if args.quick else 7)
    args.budget = args.budget or (0.5 if args.quick else 2.0)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"{torch.cuda.get_device_name() if args.device.startswith('cuda') else 'CPU'}; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}; clock: "
          + ("process CPU time (one thread: the time the kernel computes, not the time other processes hold the cores)"
             if args.clock == 'cpu' else "wall time" + (", synchronised" if args.device.startswith('cuda') else '')))
    if args.fit:
        fit_dispatch(args.fit); return 0
    if args.calibrate:
        os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True); calibrate(args); return 0
    ok = True
    if args.part in ('1', 'all'): ok &= headline(args)
    if args.part in ('2', 'all'): ok &= dispatcher_grid(args)
    print(f"\noverall: {'PASS' if ok else 'FAIL'}")
    return 0

if __name__ == '__main__':
    sys.exit(main())
