"""Training-throughput benchmark (hde_kit.train): prints figures, asserts nothing.

On WikiHop-shaped examples (`hde_kit.graph.fake_tokenised`: 14 supports x 100 tokens, 20 candidates, ~70 mentions),
with the frozen MiniLM encoder's token states served from the memory-mapped StateCache, and a GNN of width 384:
examples/s of the full training loop (DataLoader, PyG batching, forward, backward, optimiser step) in the epochs
after the first. Target: >= 10 examples/s on a 2-core CPU with the default 3-layer core; on a GPU, a
WikiHop-size epoch (43,738 examples) in under 5 minutes (>= 146 examples/s).

The states in the cache are random numbers of the right shapes: the encoder is frozen, so training only reads
them, and their values do not change the cost (`--encode` runs MiniLM over the fake tokens instead; slow on a
CPU, and done once: the cache persists in $HDE_CACHE).

    python benchmarks/bench_train.py                 # 128 examples, 3 epochs, the default core (graph_attention)
    python benchmarks/bench_train.py --cores graph_attention,gat,transformer --threads 1
    python benchmarks/bench_train.py --n 2048 --epochs 2 --workers 4     # on a GPU machine
"""
import argparse, os, sys, tempfile, time


def make_data(n: int, cache_dir: str, encode: bool, seed: int = 0):
    "A `Prepared` split of n fake WikiHop-shaped examples, states in a StateCache under `cache_dir`."
    import torch
    from hde_kit.config import load_config
    from hde_kit.encoders import make_encoder, StateCache, CachedStates, cached_states
    from hde_kit.graph import fake_tokenised, build_graph
    from hde_kit.model import Prepared
    cfg = load_config()
    toks = list(fake_tokenised(n, seed=seed))
    encoder = make_encoder(cfg.encoder)
    cache = StateCache.for_encoder(encoder, cache_dir)
    t0 = time.time()
    if encode: states = cached_states(encoder, toks, cache, progress=True)
    else:
        g = torch.Generator().manual_seed(seed)
        d = encoder.out_dim
        for t in toks:
            if t in cache: continue
            cache.put(t, {'supports': [torch.randn(len(s), d, generator=g) for s in t.support_ids],
                          'query': torch.randn(len(t.query_ids), d, generator=g),
                          'candidates': [torch.randn(len(c), d, generator=g) for c in t.candidate_ids]})
        cache.flush()
        states = CachedStates(encoder, cache, toks)
    fill = time.time() - t0
    graphs = [build_graph(t, cfg.graph) for t in toks]
    return Prepared(graphs, states, [], {}), encoder, fill


def run(data, encoder, overrides, epochs: int) -> dict:
    "Train for `epochs` and return examples/s of each epoch."
    import torch
    from hde_kit.config import load_config
    from hde_kit.train import Trainer, seed_everything
    cfg = load_config(overrides=overrides)
    seed_everything(0)
    trainer = Trainer(cfg, data, encoder=encoder, progress=False)
    res = trainer.fit()
    rates = [h['examples_per_s'] for h in res.history]
    params = sum(p.numel() for p in trainer.net.parameters())
    return {'rates': rates, 'params': params, 'device': str(trainer.device)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=128, help='examples per epoch')
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--workers', type=int, default=0, help='DataLoader workers')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    p.add_argument('--encode', action='store_true', help='encode the fake tokens with MiniLM instead of random states')
    p.add_argument('--cores', default='graph_attention', help='comma-separated gnn.core names')
    p.add_argument('--cache-dir', default=None, help='default: a temporary folder ($HDE_CACHE with --encode)')
    args = p.parse_args(argv)
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')   # before torch: idle OpenMP threads sleep (see hde train)
    import torch
    if args.threads: torch.set_num_threads(args.threads)
    cache_dir = args.cache_dir or (None if args.encode else tempfile.mkdtemp(prefix='bench_train_'))
    data, encoder, fill = make_data(args.n, cache_dir, args.encode)
    nodes = sum(g.num_nodes for g in data.graphs) / len(data.graphs)
    edges = sum(g.edge_index.shape[1] for g in data.graphs) / len(data.graphs)
    print(f"{args.n} WikiHop-shaped examples: {nodes:.0f} nodes and {edges:.0f} edges per graph on average; "
          f"state cache filled in {fill:.1f} s ({'MiniLM' if args.encode else 'random states'})")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}")
    base = [f'train.epochs={args.epochs}', f'train.batch_size={args.batch_size}', f'train.num_workers={args.workers}',
            'gnn.hidden_size=384', 'gnn.num_layers=3', 'train.eval_batch_size=32']
    for core in args.cores.split(','):
        over = base + [f'gnn.core={core}']
        out = run(data, encoder, over, args.epochs)
        later = out['rates'][1:] or out['rates']
        rate = sum(later) / len(later)
        epoch_min = 43_738 / rate / 60
        print(f"core {core:16s} {out['params'] / 1e6:5.2f} M parameters on {out['device']}: "
              f"{' / '.join(f'{r:.1f}' for r in out['rates'])} examples/s per epoch -> {rate:.1f} examples/s after the "
              f"first epoch (target >= 10 on CPU); a WikiHop epoch (43,738) would take {epoch_min:.1f} min")


if __name__ == '__main__':
    main()
