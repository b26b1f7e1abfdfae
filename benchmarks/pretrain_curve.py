"""Masked-entity pretraining in a low-label regime (issue 6's acceptance): prints figures, asserts nothing.

For each seed: pretrain on masked-entity examples made from the supports of `--sets` unlabelled synthetic 2-hop
examples (`hde pretrain`), then, for each number of labelled 2-hop training examples, fine-tune twice with the same
budget (`--steps` optimiser steps of batch 16, cosine schedule), once from scratch and once from the pretrained run
(`hde train init_from=RUN_DIR`), and record the best dev accuracy on 200 2-hop dev examples. Writes JSON lines and
a figure (dev accuracy against labelled examples, with and without pretraining, mean and range over seeds).

    python benchmarks/pretrain_curve.py                       # the committed run (3 seeds, 50/100/400 labels)
    python benchmarks/pretrain_curve.py --seeds 0 --labels 100 --sets 1000   # a quick look
"""
import argparse, json, math, tempfile, time
from pathlib import Path

from hde_kit.config import load_config
from hde_kit.pretrain import pretrain, label_curve_summary, plot_label_curve
from hde_kit.train import train

RESULTS = Path(__file__).resolve().parent / 'results'

def finetune_overrides(n: int, seed: int, steps: int, batch: int = 16) -> list:
    return [f'data.n_train={n}', 'data.n_dev=200', 'data.mix_hops=false', 'data.hops=2', f'data.synth_seed={seed}',
            f'train.seed={seed}', f'train.epochs={math.ceil(steps * batch / n)}', f'train.batch_size={batch}',
            'train.schedule=cosine', 'train.keep_last=1']

def run(args):
    root = Path(args.work or tempfile.mkdtemp(prefix='pretrain_curve_'))
    common = [f'train.cache_dir={root / "cache"}'] + list(args.overrides)
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(l) for l in out.read_text().splitlines()] if args.resume and out.exists() else []
    done = {(r['seed'], r['labels'], r['init']) for r in rows}
    for seed in args.seeds:
        t0 = time.time()
        pre_dir = root / f'pretrain_s{seed}'
        if not (pre_dir / 'checkpoints').exists():
            pre = pretrain(load_config(overrides=common + [f'pretrain.num_sets={args.sets}', 'pretrain.dev_sets=200',
                                                           f'pretrain.seed={seed}', f'train.seed={seed}',
                                                           f'train.epochs={args.pretrain_epochs}', 'train.keep_last=1']),
                           run_dir=pre_dir, progress=False)
            print(f"seed {seed}: pretrained on {args.sets} sets in {time.time() - t0:.0f} s; "
                  f"masked-entity dev accuracy {pre.best['dev_accuracy']:.1%}", flush=True)
        for n in args.labels:
            for init in ('scratch', 'pretrained'):
                if (seed, n, init) in done: continue
                ov = common + finetune_overrides(n, seed, args.steps) + ([f'init_from={pre_dir}'] if init == 'pretrained' else [])
                t1 = time.time()
                res = train(load_config(overrides=ov), run_dir=root / f'ft_s{seed}_n{n}_{init}', progress=False)
                row = dict(seed=seed, labels=n, init=init, dev_accuracy=res.best['dev_accuracy'], steps=res.step,
                           seconds=round(time.time() - t1, 1), pretrain_sets=args.sets)
                rows.append(row)
                with out.open('a') as f: f.write(json.dumps(row) + '\n')
                print(f"  seed {seed}, {n:>4} labels, {init:>10}: dev {row['dev_accuracy']:.1%} ({row['seconds']:.0f} s)", flush=True)
    return rows

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--labels', type=int, nargs='+', default=[50, 100, 400])
    ap.add_argument('--sets', type=int, default=5000, help='unlabelled support sets for pretraining')
    ap.add_argument('--pretrain-epochs', type=int, default=1)
    ap.add_argument('--steps', type=int, default=150, help='fine-tuning optimiser steps (batch 16), the same for both')
    ap.add_argument('--out', default=str(RESULTS / 'pretrain_curve.jsonl'))
    ap.add_argument('--work', default=None, help='folder for runs and caches (default: a new temporary one)')
    ap.add_argument('--resume', action='store_true', help='keep the rows already in --out and skip them')
    ap.add_argument('overrides', nargs='*', help='config overrides for every run (e.g. train.num_threads=1)')
    args = ap.parse_args()
    rows = run(args)
    print('\n' + label_curve_summary(rows))
    plot_label_curve(rows).savefig(Path(args.out).with_suffix('.png'), dpi=110)
    print(f"\nrows: {args.out}; figure: {Path(args.out).with_suffix('.png')}")

if __name__ == '__main__': main()
