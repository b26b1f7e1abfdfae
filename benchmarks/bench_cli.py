"""How fast the `hde` command answers when it has nothing heavy to do: every `--help`, `--version`, and the errors
that need no data (a config error, a WikiHop config without data). Each is timed in fresh processes (median of
--repeats), next to two peers measured in the same run: a bare `python -c pass` (the floor) and `import torch`
(what a command that imported before parsing would pay).

    python benchmarks/bench_cli.py [--repeats 5]

Target: every line under 1 s.
"""
import argparse, statistics, subprocess, sys, time

CLI = 'import sys; from hde_kit.cli import main; sys.exit(main(sys.argv[1:]))'   # what the `hde` entry point runs
COMMANDS = [['--help'], ['--version'], ['configs'],
            *[[c, '--help'] for c in ('data', 'graphs', 'train', 'pretrain', 'eval', 'viz', 'bench', 'sweep', 'report', 'cache', 'configs')],
            ['data', 'stats', '--help'], ['data', 'validate', '--help'], ['data', 'synth', '--help'],
            ['graphs', 'build', '--help'], ['graphs', 'stats', '--help'], ['viz', 'attention', '--help'], ['viz', 'flow', '--help'],
            ['bench', 'attention', '--help'], ['bench', 'pipeline', '--help'], ['bench', 'encoder', '--help'],
            ['cache', 'info', '--help'], ['cache', 'clear', '--help'],
            ['train', 'gnn.num_layer=2'], ['train', 'gnn.core=gatt'], ['train', 'minilm_wikihop']]

def seconds(argv, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); subprocess.run(argv, capture_output=True); times.append(time.perf_counter() - t0)
    return statistics.median(times)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0]); ap.add_argument('--repeats', type=int, default=5)
    n = ap.parse_args().repeats
    floor = seconds([sys.executable, '-c', 'pass'], n)
    torch_s = seconds([sys.executable, '-c', 'import torch'], n)
    print(f"peers: python -c pass {floor:.3f} s; python -c 'import torch' {torch_s:.3f} s (median of {n})")
    print(f"{'hde command':44} {'median s':>9} {'x python':>9} {'x torch':>8}")
    worst = 0.0
    for args in COMMANDS:
        s = seconds([sys.executable, '-c', CLI, *args], n); worst = max(worst, s)
        print(f"{'hde ' + ' '.join(args):44} {s:9.3f} {s / floor:9.1f} {s / torch_s:8.2f}")
    print(f"slowest: {worst:.3f} s ({'under' if worst < 1 else 'OVER'} the 1 s target)")

if __name__ == '__main__':
    main()
