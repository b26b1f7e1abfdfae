#!/usr/bin/env python
"""Build the documentation site into `_docs/` from the notebooks, offline, with Sphinx + myst-nb.

    python scripts/build_docs.py            # then open _docs/index.html

Why not nbdev's own `nbdev_docs`: it renders with Quarto, whose binary cannot be installed from PyPI (the
`quarto-cli` package downloads it from GitHub at install time) nor from Debian. Sphinx, myst-nb and
sphinx-book-theme install from PyPI with the development extras and render the notebooks' stored outputs
(figures as images, attention graphs as interactive pages) without executing anything.

What the script does, per notebook of `nbs/`: applies the nbdev directives a reader of the site should not see
(`#| hide` cells are removed, `#| echo: false` hides a cell's code, `#| output: false` its output, directive
lines are dropped from the code shown), and appends an "API" section that documents the notebook's module
(`#| default_exp`) with Sphinx autodoc. The processed copies go to `_docs_src/` with `docs/conf.py`, then
`sphinx-build -b html _docs_src _docs`.
"""
from __future__ import annotations
import json, re, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, SRC, OUT = ROOT / 'nbs', ROOT / '_docs_src', ROOT / '_docs'
DIRECTIVE = re.compile(r'^\s*#\s*\|\s*(.*?)\s*$')

def directives(source: list[str]) -> tuple[list[str], list[str]]:
    "(directives at the top of a cell, the remaining source lines)."
    found, i = [], 0
    while i < len(source) and DIRECTIVE.match(source[i]):
        found.append(DIRECTIVE.match(source[i]).group(1)); i += 1
    return found, source[i:]

def process_cell(cell: dict):
    "The cell as the site shows it, or None when it is hidden."
    if cell['cell_type'] != 'code': return cell
    src = cell['source'] if isinstance(cell['source'], list) else cell['source'].splitlines(keepends=True)
    found, rest = directives(src)
    flat = {d.replace(' ', '') for d in found}
    if 'hide' in flat or 'default_exp' in {d.split()[0] for d in found if d}: return None
    tags = []
    if 'echo:false' in flat: tags.append('remove-input')
    if 'output:false' in flat: tags.append('remove-output')
    if not rest and not cell.get('outputs'): return None
    out = dict(cell, source=rest)
    out['metadata'] = {**cell.get('metadata', {}), **({'tags': tags} if tags else {})}
    return out

def module_of(nb: dict):
    for c in nb['cells']:
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', src, re.M)
        if c['cell_type'] == 'code' and m: return m.group(1)
    return None

def api_cell(module: str) -> dict:
    # autodoc writes reStructuredText, so the directive sits in an eval-rst block; `set` is matplotlib's generated setter
    text = (f"## API of `hde_kit.{module}`\n\n"
            f"```{{eval-rst}}\n.. automodule:: hde_kit.{module}\n   :members:\n   :show-inheritance:\n   :exclude-members: set\n```\n")
    return {'cell_type': 'markdown', 'id': f'api-{module}', 'metadata': {}, 'source': text.splitlines(keepends=True)}

def process_notebook(path: Path) -> dict:
    nb = json.loads(path.read_text(encoding='utf-8'))
    nb['cells'] = [c for c in map(process_cell, nb['cells']) if c is not None]
    module = module_of(json.loads(path.read_text(encoding='utf-8')))
    if module: nb['cells'].append(api_cell(module))
    return nb

def index_page(notebooks: list[Path]) -> str:
    chapters = '\n'.join(p.stem for p in notebooks if p.stem != 'index')
    return f"""```{{include}} ../README.md
```

```{{toctree}}
:maxdepth: 1
:caption: Chapters

design
{chapters}
```
"""

def prepare() -> list[Path]:
    if SRC.exists(): shutil.rmtree(SRC)
    SRC.mkdir()
    shutil.copy(ROOT / 'docs' / 'conf.py', SRC / 'conf.py')
    notebooks = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))
    for p in notebooks:
        if p.stem == 'index': continue   # the README is generated from it; the site's home page includes the README
        (SRC / p.name).write_text(json.dumps(process_notebook(p)), encoding='utf-8')   # ASCII: docutils splits lines at U+2028 and friends
    for md in NBS.glob('*.md'): shutil.copy(md, SRC / md.name)
    (SRC / 'index.md').write_text(index_page(notebooks), encoding='utf-8')
    return notebooks

def main():
    notebooks = prepare()
    print(f"build_docs: {len(notebooks)} notebooks processed into {SRC.relative_to(ROOT)}/", flush=True)
    # myst-nb writes helper files beside the output folder (`jupyter_execute/`): build inside _docs_src, then move
    html = SRC / '_html'
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-j', '2', str(SRC), str(html)]
    done = subprocess.run(cmd, cwd=ROOT)
    if done.returncode: sys.exit(f"build_docs: sphinx-build failed (exit {done.returncode})")
    if OUT.exists(): shutil.rmtree(OUT)
    shutil.move(str(html), str(OUT))
    print(f"build_docs: site written to {OUT.relative_to(ROOT)}/index.html", flush=True)

if __name__ == '__main__': main()
