"""The documentation site in a real browser: `scripts/build_docs.py` builds `_docs/` offline from the notebooks' stored
outputs; headless Chromium (Playwright, Debian's chromium) opens the model chapter and finds a rendered figure (an
`<img>` that loaded, with a non-zero size) and the interactive attention graph (vis-network's `<canvas>` inside the
graph's iframe). Skips with the reason when chromium or playwright is missing."""
import shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking']

@pytest.fixture(scope='module')
def site() -> Path:
    done = subprocess.run([sys.executable, 'scripts/build_docs.py'], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return ROOT / '_docs'

def test_site_has_a_page_per_notebook_with_its_api(site):
    for nb in sorted((ROOT / 'nbs').glob('[0-9]*.ipynb')):
        page = site / f'{nb.stem}.html'
        assert page.exists(), f"no page for {nb.name}"
    text = (site / '04_graph.html').read_text(encoding='utf-8')
    assert 'API of' in text and 'build_graph' in text, "the graph chapter lacks its module's API"
    assert '#| export' not in text and '#| hide' not in text, "nbdev directives leak into the site"

@pytest.mark.slow
def test_model_page_renders_figure_and_attention_graph(site):
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    if chromium is None: pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.skip("the playwright package is not installed (pip install playwright)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.goto((site / '08_model.html').as_uri(), wait_until='load', timeout=120_000)
            sizes = page.eval_on_selector_all('img', 'imgs => imgs.filter(i => i.complete).map(i => [i.naturalWidth, i.naturalHeight])')
            assert any(w > 0 and h > 0 for w, h in sizes), f"no figure rendered on the model page: {sizes}"
            page.wait_for_timeout(1500)   # vis-network draws into its canvas once its script has run in the iframe
            canvases = [f for f in page.frames if f != page.main_frame and f.query_selector('#mynetwork canvas')]
            assert canvases, "the attention graph's canvas was not drawn on the model page"
        finally:
            browser.close()
