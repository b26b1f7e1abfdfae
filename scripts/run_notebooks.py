#!/usr/bin/env python
"""Execute the notebooks in a real Jupyter kernel and save them with their outputs.

    python scripts/run_notebooks.py                   # every notebook in nbs/, slow and gpu cells skipped
    python scripts/run_notebooks.py 08 11             # notebooks whose name starts with 08 or 11
    python scripts/run_notebooks.py --flags slow      # also the `#| slow` cells (`gpu` is added when CUDA is present)
    python scripts/run_notebooks.py --check-only 04   # execute, report, do not write

Cells carrying a flag of `settings.ini`'s `tst_flags` (`#| slow`, `#| gpu`) run only when that flag is enabled, as
under `nbdev_test`; a skipped cell keeps no output. `#| eval: false` cells never run. The kernel starts in `nbs/`,
as Jupyter does, with OMP_WAIT_POLICY=PASSIVE (the notebooks set it too). One line per notebook: name, cells run,
seconds, outputs and size; then the total.
"""
from __future__ import annotations
import argparse, configparser, json, os, re, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
DIRECTIVE = re.compile(r'^\s*#\s*\|\s*(.+?)\s*$')

def cell_directives(source: str) -> list[str]:
    "The nbdev directives (`#| ...` lines) at the top of a cell."
    out = []
    for line in source.splitlines():
        m = DIRECTIVE.match(line)
        if not m: break
        out.append(m.group(1))
    return out

def skip_reason(source: str, all_flags: set, enabled: set):
    "Why a cell must not run (a disabled test flag or `eval: false`), else None."
    for d in cell_directives(source):
        word = d.split()[0].rstrip(':')
        if d.replace(' ', '') == 'eval:false': return 'eval: false'
        if word in all_flags and word not in enabled: return f'#| {word}'
    return None

def notebook_flags() -> set:
    cfg = configparser.ConfigParser(); cfg.read(ROOT / 'settings.ini')
    return set(cfg['DEFAULT'].get('tst_flags', '').split())

def cuda_present() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception: return False

def select(patterns: list[str]) -> list[Path]:
    nbs = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))
    if not patterns: return nbs
    chosen = [p for p in nbs if any(p.name.startswith(pat) or p.stem == pat for pat in patterns)]
    if not chosen: sys.exit(f"run_notebooks: no notebook in {NBS} matches {' '.join(patterns)}")
    return chosen

def execute(path: Path, enabled: set, all_flags: set, timeout: int = 1800):
    "Execute one notebook cell by cell in a fresh kernel; returns (notebook with outputs, cells run, cells skipped, seconds)."
    import nbformat
    from nbclient import NotebookClient
    from tqdm.auto import tqdm
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}})
    ran = skipped = 0
    t0 = time.perf_counter()
    with client.setup_kernel():
        code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == 'code']
        for i, cell in tqdm(code, desc=path.stem, leave=False, unit='cell'):
            cell.outputs, cell.execution_count = [], None
            if skip_reason(cell.source, all_flags, enabled): skipped += 1; continue
            client.execute_cell(cell, i)
            ran += 1
    return nb, ran, skipped, time.perf_counter() - t0

def run_notebook(path: Path, enabled: set, all_flags: set, timeout: int, write: bool) -> dict:
    "Execute one notebook and save it with its outputs when `write`; returns a one-line summary as a dict."
    import nbformat
    nb, ran, skipped, seconds = execute(path, enabled, all_flags, timeout)
    if write: nbformat.write(nb, path)
    outputs = sum(len(c.get('outputs', [])) for c in nb.cells if c.cell_type == 'code')
    return dict(name=path.name, ran=ran, skipped=skipped, seconds=seconds, outputs=outputs,
                bytes=len(json.dumps(nb, ensure_ascii=False).encode()))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='*', help='name prefixes (e.g. 08 11_viz); default: all')
    ap.add_argument('--flags', nargs='*', default=[], help='test flags to enable (slow, gpu); gpu is added when CUDA is present')
    ap.add_argument('--timeout', type=int, default=1800, help='seconds per cell')
    ap.add_argument('--check-only', action='store_true', help='execute without writing the notebooks')
    args = ap.parse_args(argv)
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    all_flags, enabled = notebook_flags(), set(args.flags)
    if cuda_present(): enabled.add('gpu')
    print(f"run_notebooks: flags enabled: {', '.join(sorted(enabled)) or 'none'} (skipped: {', '.join(sorted(all_flags - enabled)) or 'none'})", flush=True)
    total, t0 = 0, time.perf_counter()
    for path in select(args.notebooks):
        s = run_notebook(path, enabled, all_flags, args.timeout, not args.check_only)
        total += s['bytes']
        print(f"{s['name']:<24} {s['ran']:>3} cells run, {s['skipped']:>2} skipped  {s['seconds']:7.1f} s  "
              f"{s['outputs']:>3} outputs  {s['bytes'] / 1e6:6.2f} MB", flush=True)
    print(f"run_notebooks: total {time.perf_counter() - t0:.0f} s, {total / 1e6:.2f} MB of notebooks", flush=True)

if __name__ == '__main__': main()
