"""README.md is written from nbs/index.ipynb (nbdev_readme needs Quarto, which is not available here).

Run `python tests/sync_readme.py` after editing the index notebook; tests/test_packaging.py fails while
the two differ."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def render_readme(nb_path=ROOT / 'nbs' / 'index.ipynb') -> str:
    "Markdown cells as they are, code cells as fenced Python (nbdev directive cells left out)."
    cells = json.loads(Path(nb_path).read_text(encoding='utf-8'))['cells']
    parts = []
    for cell in cells:
        src = ''.join(cell['source']).strip()
        if not src or src.startswith('#|'): continue
        parts.append(src if cell['cell_type'] == 'markdown' else f"```python\n{src}\n```")
    return '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    (ROOT / 'README.md').write_text(render_readme(), encoding='utf-8')
    print('README.md written from nbs/index.ipynb')
