"""How fast the synthetic generator is: seconds and examples/s for N k-hop examples (default 10,000 2-hop).

    python benchmarks/bench_synthetic.py [--n 10000] [--hops 2] [--num-docs 8] [--num-candidates 6] [--repeat 3]

Prints the best of `--repeat` runs (the name pools are built once, before timing, and reported separately).
"""
import argparse
import platform
import time

import hde_kit.synthetic as synthetic


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=10_000)
    p.add_argument('--hops', type=int, default=2)
    p.add_argument('--num-docs', type=int, default=8)
    p.add_argument('--num-candidates', type=int, default=6)
    p.add_argument('--masked', action='store_true')
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)

    t = time.perf_counter(); synthetic.name_pools(); pools_s = time.perf_counter() - t
    times = []
    for r in range(args.repeat):
        t = time.perf_counter()
        exs = synthetic.generate(args.n, hops=args.hops, num_docs=args.num_docs, num_candidates=args.num_candidates,
                                 seed=args.seed + r, masked=args.masked)
        times.append(time.perf_counter() - t)
    best = min(times)
    chars = sum(len(s) for e in exs for s in e.supports) / max(len(exs), 1)
    print(f"synthetic: {args.n:,} {args.hops}-hop examples (num_docs={args.num_docs}, "
          f"num_candidates={args.num_candidates}, masked={args.masked}) on {platform.python_implementation()} "
          f"{platform.python_version()}, {platform.machine()}")
    print(f"  name pools (once): {pools_s:.3f} s;  mean support text per example: {chars:,.0f} chars")
    print(f"  best of {args.repeat}: {best:.2f} s  ->  {args.n / best:,.0f} examples/s"
          f"   (all runs: {', '.join(f'{x:.2f}' for x in times)} s)")


if __name__ == '__main__':
    main()
