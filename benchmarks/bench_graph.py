"""Graph-building benchmark (hde_kit.graph): prints figures, asserts nothing.

On WikiHop-shaped examples (14 supports of ~100 tokens, 20 candidates, ~70 candidate/subject mentions):

1. graph building from the tokenisation cache, one core: examples/s (target >= 300), also split into
   reading the tokenisation cache and building the graphs;
2. tokenisation + mentions + graphs with 2 processes, from empty caches: examples/s (target >= 150);
3. peak memory (RSS) while building 1k and 10k examples (must stay flat: everything streams).

Each measurement runs in a fresh subprocess, so peak RSS is per run. Examples are generated lazily by index,
so the input itself takes no memory. The machine may be shared: rerun when figures look noisy.

    python benchmarks/bench_graph.py            # 1k and 10k examples (about 2 minutes on 2 cores)
    python benchmarks/bench_graph.py --quick    # 300 and 1k
"""
import argparse, json, os, random, subprocess, sys, tempfile, threading, time
from collections.abc import Sequence
from pathlib import Path

WORDS = ("the of and in to was is for on as by with from at his an which that were its also first after had "
         "has other new their who film two been one are born years known national university such during while "
         "later team state world war album city this series season game used between into more under became most "
         "album released league song group district based award music played where when over area member early "
         "several since including called only river church school village county government company party record "
         "station family house career public population north south east west century small large number film "
         "second third professional football club novel author president minister published written director").split()
SYLLABLES = "ka lo mi ra ven to sul bar den fi gor hal ist jun kel mar nor pel quin ros tav ul vor wen yas zel".split()
RELATIONS = ("country_of_citizenship", "place_of_birth", "located_in_the_administrative_territorial_entity",
             "record_label", "member_of_sports_team", "publisher")

def _name(rng: random.Random) -> str:
    return ' '.join(''.join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize() for _ in range(rng.randint(1, 2)))

def wikihop_shaped(i: int, seed: int = 0, num_supports: int = 14, num_candidates: int = 20):
    "Example i of a deterministic WikiHop-shaped set."
    from hde_kit.data import Example
    rng = random.Random(seed * 1_000_003 + i)
    names = list(dict.fromkeys(_name(rng) for _ in range(num_candidates + 4)))
    cands, subject = names[:num_candidates], names[-1]
    subject_docs = set(rng.sample(range(num_supports), 2))
    supports = []
    for s in range(num_supports):
        words = rng.choices(WORDS, k=62)      # one call: the input's generation must not rival what is measured
        for j in range(12, len(words), 13): words[j] += '.'
        inserts = [rng.choice(cands) for _ in range(rng.randint(3, 7))] + ([subject] if s in subject_docs else [])
        for name in inserts: words.insert(rng.randrange(len(words)), name)
        supports.append(' '.join(words).capitalize() + '.')
    answer = rng.choice(cands)
    return Example(id=f"WHS_{seed}_{i}", query=f"{rng.choice(RELATIONS)} {subject.lower()}", supports=supports,
                   candidates=cands, answer=answer)

class LazyExamples(Sequence):
    "n WikiHop-shaped examples, made on access (the input costs no memory)."
    def __init__(self, n, seed=0): self.n, self.seed = n, seed
    def __len__(self): return self.n
    def __getitem__(self, i):
        if isinstance(i, slice): return [self[j] for j in range(*i.indices(self.n))]
        if not 0 <= i < self.n: raise IndexError(i)
        return wikihop_shaped(i, self.seed)

class RSSSampler:
    "Peak RSS of this process and of its children (summed), sampled every 20 ms."
    def __init__(self):
        import psutil
        self.proc, self.peak, self.children_peak, self._stop = psutil.Process(), 0, 0, threading.Event()
        self.base = self.proc.memory_info().rss
    def _run(self):
        import psutil
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
                kids = sum(c.memory_info().rss for c in self.proc.children(recursive=True))
                self.children_peak = max(self.children_peak, kids)
            except psutil.Error: pass
            time.sleep(0.02)
    def __enter__(self): self.thread = threading.Thread(target=self._run, daemon=True); self.thread.start(); return self
    def __exit__(self, *a): self._stop.set(); self.thread.join()

# ---------------------------------------------------------------- child processes

def child_full(n, cache, seed):
    "Tokenisation + mentions + graphs from empty caches, 2 processes, streaming."
    from hde_kit.config import load_config
    from hde_kit.graph import build_dataset_graphs
    exs = LazyExamples(n, seed)
    with RSSSampler() as rss:
        t0 = time.perf_counter()
        res = build_dataset_graphs(exs, load_config(), cache_dir=cache, num_proc=2, progress=False)
        n_graphs = sum(1 for _ in res.graphs)       # read every graph back from the cache (streaming)
        dt = time.perf_counter() - t0
    return dict(n=n, seconds=dt, rate=n / dt, graphs=n_graphs, failed=len(res.failed),
                rss_base_mb=rss.base / 2**20, rss_peak_mb=rss.peak / 2**20, workers_peak_mb=rss.children_peak / 2**20)

def child_graphs(n, cache, seed):
    "Graphs from a warm tokenisation cache on one core (a graph option changed, so the graph cache misses)."
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import torch; torch.set_num_threads(1)
    from hde_kit.config import load_config
    from hde_kit.graph import build_dataset_graphs, build_graph, graph_options
    from hde_kit import text
    exs = LazyExamples(n, seed)[:]                  # materialised: generating them is not graph building
    cfg = load_config(overrides=['graph.use_query_node=true'])
    calls = text.TOKENIZER_CALLS
    with RSSSampler() as rss:
        t0 = time.perf_counter()
        res = build_dataset_graphs(exs, cfg, cache_dir=cache, num_proc=1, progress=False)
        dt = time.perf_counter() - t0
    assert text.TOKENIZER_CALLS == calls, "the tokenisation cache should have every example"
    # the two parts: reading the tokenisation cache, and building from TokenisedExamples in memory
    m = min(n, 2000)
    t0 = time.perf_counter(); toks = list(text.iter_tokenised(exs[:m], cfg.text, cache, 1, False)); t_read = time.perf_counter() - t0
    o = graph_options(cfg)
    t0 = time.perf_counter(); graphs = [build_graph(t, o) for t in toks]; t_build = time.perf_counter() - t0
    tokens = sum(len(s) for t in toks for s in t.support_ids) / sum(len(t.support_ids) for t in toks)
    return dict(n=n, seconds=dt, rate=n / dt, tokenizer_calls=text.TOKENIZER_CALLS - calls, failed=len(res.failed),
                read_rate=m / t_read, build_rate=m / t_build, rss_base_mb=rss.base / 2**20, rss_peak_mb=rss.peak / 2**20,
                shape=dict(supports=sum(len(t.support_ids) for t in toks) / m, tokens_per_support=tokens,
                           candidates=sum(len(t.candidates) for t in toks) / m, mentions=sum(len(t.mentions) for t in toks) / m,
                           nodes=sum(g.num_nodes for g in graphs) / m, edges=sum(g.num_edges for g in graphs) / m))

def run_child(kind, n, cache, seed):
    out = subprocess.run([sys.executable, __file__, '--child', kind, '--n', str(n), '--cache', str(cache), '--seed', str(seed)],
                         capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1', 'TOKENIZERS_PARALLELISM': 'false'})
    if out.returncode: raise SystemExit(f"child {kind} n={n} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true', help='300 and 1k examples instead of 1k and 10k')
    ap.add_argument('--child'); ap.add_argument('--n', type=int); ap.add_argument('--cache'); ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args()
    if args.child:
        print(json.dumps({'full': child_full, 'graphs': child_graphs}[args.child](args.n, args.cache, args.seed))); return
    small, large = (300, 1000) if args.quick else (1000, 10000)
    root = Path(tempfile.mkdtemp(prefix='bench_graph_'))
    print(f"hde_kit graph benchmark: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, caches under {root}")
    full = {n: run_child('full', n, root / f"cache_{n}", seed=n) for n in (small, large)}
    g = run_child('graphs', large, root / f"cache_{large}", seed=large)
    sh = g['shape']
    print(f"\nexample shape: {sh['supports']:.1f} supports x {sh['tokens_per_support']:.0f} tokens, {sh['candidates']:.0f} candidates, "
          f"{sh['mentions']:.0f} mentions -> {sh['nodes']:.0f} nodes, {sh['edges']:.0f} edges (default graph options + query node)")
    print(f"\n1. graphs from the tokenisation cache, one core ({large} examples, {g['tokenizer_calls']} tokenizer calls): "
          f"{g['rate']:.0f} examples/s  (target >= 300)")
    print(f"   of which: reading + decoding the tokenisation cache {g['read_rate']:.0f} ex/s, build_graph alone {g['build_rate']:.0f} ex/s")
    print("\n2. tokenisation + mentions + graphs, 2 processes, empty caches:")
    for n, r in full.items():
        print(f"   {n:>6} examples: {r['rate']:.0f} examples/s ({r['seconds']:.1f} s)  (target >= 150)")
    print("\n3. peak memory while building (main process; tokenizer workers separately):")
    for n, r in full.items():
        print(f"   {n:>6} examples: peak RSS {r['rss_peak_mb']:.0f} MiB (start {r['rss_base_mb']:.0f} MiB, "
              f"+{r['rss_peak_mb'] - r['rss_base_mb']:.0f} MiB); workers {r['workers_peak_mb']:.0f} MiB")
    print(f"   graphs from the tokenisation cache, {large} examples: peak RSS {g['rss_peak_mb']:.0f} MiB "
          f"(start {g['rss_base_mb']:.0f} MiB with the {large} examples in memory)")
    a, b = full[small], full[large]
    grow = (b['rss_peak_mb'] - b['rss_base_mb']) - (a['rss_peak_mb'] - a['rss_base_mb'])
    print(f"   growth from {small} to {large} examples: {grow:+.0f} MiB")
    import shutil; shutil.rmtree(root, ignore_errors=True)

if __name__ == '__main__': main()
