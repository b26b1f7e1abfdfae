"""The explorers in a real front end: JupyterLab 4 + ipywidgets 8 in headless Chromium (Playwright).

A small widgets notebook is written to a temporary folder, JupyterLab serves it on a free localhost port (no token, no
browser, settings and workspaces in the temporary folder, no news or update checks), Chromium opens it, runs all cells
from the Run menu, clicks the `use_query_node` checkbox, and checks that the drawn graph changed: the node count in the
counts table (data attribute) and the number of nodes in the vis-network DataSet inside the graph's iframe both grow by
one. Then it unticks `use_codocument_edges` in an AttentionExplorer of a briefly trained model and checks that the
change from the trained structure appears: the attention moved and each probability shows its change. The server is shut down (and killed if it does not stop) in a `finally`.

Needs Debian's `chromium` (`apt-get install chromium`; .ci/run installs it), the `playwright` package and JupyterLab;
skips with the reason when one is missing.
"""
import json, os, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

NOTEBOOK_CELLS = [
    "from hde_kit.synthetic import generate\n"
    "from hde_kit.widgets import GraphExplorer\n"
    "explorer = GraphExplorer(generate(2, hops=2, seed=0), cache_dir='hde_cache')",
    "explorer",
    "import torch\n"
    "from hde_kit.config import load_config\n"
    "from hde_kit.encoders import make_encoder\n"
    "from hde_kit.model import HDEModel, prepare\n"
    "from hde_kit.widgets import AttentionExplorer\n"
    "cfg = load_config(overrides=['gnn.hidden_size=16', 'gnn.num_layers=2', 'gnn.heads=2', 'gnn.dropout=0.0'])\n"
    "encoder = make_encoder(cfg.encoder)\n"
    "data = prepare(generate(3, hops=2, seed=0), cfg, encoder, cache_dir='hde_cache', progress=False)\n"
    "torch.manual_seed(0); model = HDEModel(cfg, encoder.out_dim)\n"
    "opt = torch.optim.AdamW(model.parameters(), lr=5e-3); states, batch = data.batch([0, 1, 2])\n"
    "for _ in range(3): loss = model(states, batch).loss; opt.zero_grad(); loss.backward(); opt.step()\n"
    "attention = AttentionExplorer(model.eval(), cfg, data, cache_dir='hde_cache')",
    "attention",
]
TIMEOUT_MS = 120_000      # generous: a loaded CI machine imports torch in the kernel slowly


def _requirements():
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    if chromium is None: pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.skip("the playwright package is not installed (pip install playwright)")
    try: import jupyterlab, ipywidgets  # noqa: F401
    except ImportError: pytest.skip("JupyterLab or ipywidgets is not installed")
    return chromium, sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _write_notebook(folder: Path) -> Path:
    cells = [{'cell_type': 'code', 'id': f'cell{i}', 'metadata': {}, 'source': src, 'execution_count': None, 'outputs': []}
             for i, src in enumerate(NOTEBOOK_CELLS)]
    nb = {'cells': cells, 'nbformat': 4, 'nbformat_minor': 5,
          'metadata': {'kernelspec': {'display_name': 'Python 3 (ipykernel)', 'language': 'python', 'name': 'python3'}}}
    path = folder / 'widgets.ipynb'
    path.write_text(json.dumps(nb))
    return path


def _kernelspec(data_dir: Path):
    "A python3 kernelspec for this interpreter (the one with hde_kit installed), ahead of any other on the path."
    spec = data_dir / 'kernels' / 'python3'
    spec.mkdir(parents=True)
    (spec / 'kernel.json').write_text(json.dumps({
        'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
        'display_name': 'Python 3 (ipykernel)', 'language': 'python'}))


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r: return json.load(r)


def _wait_for_server(url: str, server, log: Path, timeout: float = 90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None: pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try: _get_json(url + '/api/status'); return
        except OSError: time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def _wait_for_kernel_idle(url: str, timeout: float = 120):
    "The notebook's kernel is started, connected to the page, and idle (JupyterLab may start and replace one first)."
    deadline = time.time() + timeout
    while time.time() < deadline:
        kernels = [s['kernel'] for s in _get_json(url + '/api/sessions') if s['path'].endswith('widgets.ipynb')]
        if kernels and all(k['execution_state'] == 'idle' and k['connections'] >= 1 for k in kernels): return
        time.sleep(0.5)
    pytest.fail(f"the notebook's kernel was not idle within {timeout} s")


def _graph_frame_nodes(page, timeout: float = 60) -> int:
    "Nodes in the vis-network DataSet of the graph's iframe, once its page has drawn (the iframe is replaced on redraw)."
    deadline = time.time() + timeout
    while time.time() < deadline:
        element = page.query_selector('iframe.hde-graph')
        frame = element.content_frame() if element else None
        if frame is not None:
            try:
                n = frame.evaluate('typeof nodes !== "undefined" && nodes ? nodes.length : -1')
                if n > 0: return n
            except Exception: pass    # the frame was replaced meanwhile: look again
        time.sleep(0.25)
    raise AssertionError("the graph's iframe never drew a vis-network graph")


def _stop(url: str, server):
    try: urllib.request.urlopen(urllib.request.Request(url + '/api/shutdown', method='POST'), timeout=10)
    except OSError: pass
    try: server.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)     # the server's own process group, started by this test
        server.wait(10)


def test_toggle_redraws_the_graph_in_jupyterlab(tmp_path):
    chromium, sync_playwright = _requirements()
    started = time.time()
    root = tmp_path / 'lab'; root.mkdir()
    _write_notebook(root)
    _kernelspec(tmp_path / 'data')
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / 'config'), JUPYTER_DATA_DIR=str(tmp_path / 'data'),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / 'settings'), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / 'workspaces'),
               HDE_CACHE=str(tmp_path / 'cache'), PYTHONUNBUFFERED='1')
    port = _free_port()
    url = f'http://127.0.0.1:{port}'
    log = tmp_path / 'server.log'
    with open(log, 'w') as out:
        server = subprocess.Popen(
            [sys.executable, '-m', 'jupyterlab', '--no-browser', '--allow-root', f'--port={port}', '--ip=127.0.0.1',
             '--ServerApp.port_retries=0', '--ServerApp.token=', '--ServerApp.password=', f'--ServerApp.root_dir={root}',
             '--ServerApp.disable_check_xsrf=True',     # lets the test POST /api/shutdown; localhost only, temporary server
             '--LabApp.news_url=None', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate'],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_server(url, server, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=['--no-sandbox', '--disable-gpu', '--disable-background-networking'])
            try:
                page = browser.new_page(viewport={'width': 1600, 'height': 1000})
                page.set_default_timeout(TIMEOUT_MS)
                try:
                    page.goto(f'{url}/lab/tree/widgets.ipynb')
                    page.wait_for_selector('.jp-Notebook')
                    _wait_for_kernel_idle(url)
                    # Run > Run All Cells (clicked again if the first click raced the kernel's start)
                    for attempt in range(2):
                        page.get_by_role('menuitem', name='Run', exact=True).click()
                        page.get_by_role('menuitem', name='Run All Cells', exact=True).click()
                        try:
                            page.wait_for_selector('.jp-InputArea-prompt:has-text("[1]")', timeout=30_000)
                            break
                        except Exception:
                            if attempt: raise
                    # the GraphExplorer's switch (the AttentionExplorer below has the same switches: the first is this one)
                    box = page.locator('.widget-checkbox', has_text='use_query_node').first.locator('input[type=checkbox]')
                    box.wait_for()
                    counts = page.locator('.hde-counts')
                    counts.wait_for()
                    nodes_before = int(counts.get_attribute('data-num-nodes'))
                    drawn_before = _graph_frame_nodes(page)
                    assert drawn_before == nodes_before > 0
                    assert not box.is_checked()

                    box.click()
                    page.wait_for_function(f'() => document.querySelector(".hde-counts")?.dataset.numNodes === "{nodes_before + 1}"')
                    assert box.is_checked()
                    assert _graph_frame_nodes(page) == nodes_before + 1                       # the drawing changed
                    assert 'query' in page.locator('table.hde-nodes').inner_text()            # and the table says what

                    # the AttentionExplorer: removing an edge type re-runs the model and shows what changed
                    edge_box = page.locator('.widget-checkbox', has_text='use_codocument_edges').last.locator('input[type=checkbox]')
                    edge_box.wait_for()
                    probs = page.locator('table.hde-probs')
                    probs.wait_for()
                    assert edge_box.is_checked() and page.locator('.hde-change').count() == 0
                    assert 'Δp' not in probs.inner_text()
                    edge_box.click()
                    page.wait_for_selector('.hde-change')
                    assert not edge_box.is_checked()
                    assert 'use_codocument_edges=off' in page.locator('.hde-change').inner_text()
                    assert float(page.locator('.hde-change').get_attribute('data-mean-abs')) > 0   # attention moved
                    assert 'Δp' in probs.inner_text() and page.locator('td.hde-dp').count() >= 2    # beside the probabilities
                except Exception:
                    page.screenshot(path=str(tmp_path / 'failure.png'), full_page=True)
                    print(f"screenshot: {tmp_path / 'failure.png'}; server log:\n{log.read_text()[-3000:]}")
                    raise
            finally:
                browser.close()
    finally:
        _stop(url, server)
    print(f"browser test: {time.time() - started:.0f} s")
