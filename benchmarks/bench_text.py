"""Benchmark of hde_kit.text: tokenisation + mentions (no NER) in 1 and 2 processes, and loading from the cache.

Prints examples/s on WikiHop-shaped examples (14 supports of ~100 tokens, 20 candidates). Not a timed test:
the figures depend on the machine (and on what else runs on it).

    python benchmarks/bench_text.py [--n 2000] [--procs 1 2]
"""
from __future__ import annotations
import argparse, os, random, resource, shutil, tempfile, time
from pathlib import Path

from hde_kit import text
from hde_kit.data import Example

def wikihop_shaped(n: int, seed: int = 0, supports: int = 14, candidates: int = 20, tokens: int = 100) -> list[Example]:
    "Examples shaped like WikiHop's averages: from hde_kit.synthetic when it exists, padded to ~`tokens` tokens per support."
    rng = random.Random(seed)
    try:
        from hde_kit.synthetic import generate
        exs = generate(n, hops=2, num_docs=supports, num_candidates=candidates, seed=seed)
    except ImportError:
        words = [''.join(rng.choice('bcdfgklmnprstv') + rng.choice('aeiou') for _ in range(rng.randint(2, 4))).title() for _ in range(5000)]
        exs = []
        for i in range(n):
            cands = [' '.join(rng.sample(words, rng.randint(1, 2))) for _ in range(candidates)]
            sup = [' '.join(rng.choice(words + cands) for _ in range(60)) + '.' for _ in range(supports)]
            exs.append(Example(id=f"bench_{i}", query=f"country {cands[0]}", supports=sup, candidates=cands, answer=cands[0]))
    # pad supports with sentences of other examples to ~`tokens` tokens (WordPiece counts add up over whitespace)
    tok = text._backend('minilm')
    filler = [x for ex in exs[-50:] for s in ex.supports for x in s.split('. ') if x][:2000]
    filler_len = [len(e.ids) for e in tok.encode_batch(filler, add_special_tokens=False)]
    for ex in exs:
        padded = []
        for s, enc in zip(ex.supports, tok.encode_batch(ex.supports, add_special_tokens=False)):
            ntok = len(enc.ids)
            while ntok < tokens - 5:
                j = rng.randrange(len(filler)); s += ' ' + filler[j] + '.'; ntok += filler_len[j] + 1
            padded.append(s)
        ex.supports = padded
    return exs

def cpu_seconds() -> float:
    "CPU time of this process and of its finished children (pool workers are reaped when the pool closes)."
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

class Timer:
    "Wall and CPU time of a block; the machine may be shared, so the CPU cost per example is printed too."
    def __enter__(self): self.wall, self.cpu = time.perf_counter(), cpu_seconds(); return self
    def __exit__(self, *exc): self.wall, self.cpu = time.perf_counter() - self.wall, cpu_seconds() - self.cpu

def report(what: str, n: int, t: Timer, procs: int, extra: str = '') -> None:
    "Wall rate, CPU cost (all processes and threads), and for several processes the rate their CPU cost allows on idle cores."
    ms = 1000 * t.cpu / n
    ideal = f" (= {procs * 1000 / ms:5.1f} ex/s on {procs} idle cores)" if procs > 1 else ''
    print(f"{what:50s} {n / t.wall:7.1f} ex/s wall | {ms:5.2f} CPU-ms/ex{ideal}" + (f" | {extra}" if extra else ''))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=2000, help='examples')
    ap.add_argument('--procs', type=int, nargs='+', default=[1, 2])
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    exs = wikihop_shaped(args.n)
    backend = text._backend('minilm')
    ntok = [len(e.ids) for e in backend.encode_batch(exs[0].supports + exs[1].supports, add_special_tokens=False)]
    print(f"{len(exs)} WikiHop-shaped examples: {len(exs[0].supports)} supports of ~{sum(ntok) / len(ntok):.0f} tokens, "
          f"{len(exs[0].candidates)} candidates (made in {time.perf_counter() - t0:.1f} s); "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before the runs")
    text.tokenise_batch(exs[:16], backend)   # warm up: spaCy's blank pipeline, the tokenizer
    for p in args.procs:
        with Timer() as t: toks = text.tokenise_examples(exs, num_proc=p, use_cache=False, progress=False)
        report(f"tokenise + mentions (no NER), {p} process{'es' if p > 1 else ''}", len(toks), t, p,
               f"{sum(len(x.mentions) for x in toks) / len(toks):.0f} mentions/ex")
        del toks
    root = Path(tempfile.mkdtemp(prefix='hde_bench_'))
    try:
        p = max(args.procs)
        with Timer() as t: text.tokenise_examples(exs, cache_dir=root, num_proc=p, progress=False)
        size = sum(f.stat().st_size for f in root.rglob('*.arrow'))
        report(f"tokenise + write the cache, {p} processes", len(exs), t, p, f"{size / 2**20:.1f} MiB, {size / len(exs) / 1024:.1f} KiB/ex")
        calls = text.TOKENIZER_CALLS
        with Timer() as t: loaded = text.tokenise_examples(exs, cache_dir=root, progress=False)
        assert text.TOKENIZER_CALLS == calls, "a cache hit called the tokenizer"
        report("load from the cache (hashing included), 1 process", len(loaded), t, 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}. Wall rates drop when other work shares the cores; CPU-ms/ex "
          "less so. In 1 process the tokenizer's own Rust threads use every core.")

if __name__ == '__main__': main()
