"""The attention-kernel grid and the pipeline throughput benchmarks of hde_kit (issue 8), from a plain script.

A thin wrapper over `hde bench attention|pipeline` (options: nbs/14_cli.ipynb; the work: nbs/12_bench.ipynb):

    python benchmarks/bench_grid.py attention --out benchmarks/results/cpu [--quick] [--nodes 128 512 ...]
                                              [--densities 0.001 0.01 ...] [--hde-graphs 1 4 16 64] [--dim 256]
                                              [--heads 4] [--repeats 5] [--max-step-ms 2000] [--max-memory-mb 3000]
                                              [--device cpu|cuda] [--threads 1] [--strict]
    python benchmarks/bench_grid.py pipeline --out benchmarks/results/cpu [--n 32] [--data FILE] [--batch-size 8]

The attention run writes attention.csv, time/memory/flops/hde/crossover/dispatch PNGs, machine.txt and summary.txt
(the printed acceptance checks) to --out.
"""
import sys

from hde_kit.cli import main

if __name__ == '__main__':
    sys.exit(main(['bench', *sys.argv[1:]]))
