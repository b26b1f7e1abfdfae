"""Notebooks executed in a real Jupyter kernel (nbclient, as JupyterLab runs them; `nbdev_test` never looks at
outputs): every cell that draws must leave an `image/png` or `text/html` output, and every attention graph must
carry all the nodes of its graph."""
import ast, html, json, re, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts'))
from run_notebooks import execute, notebook_flags, skip_reason  # noqa: E402

# A call that draws: the kit's plot_* functions, its HTML pages, a widget's static figure, or showing a page inline.
DRAWN = {'image/png', 'text/html'}
VIS_NODES = re.compile(r'nodes\s*=\s*new vis\.DataSet\((\[.*?\])\);', re.S)
GRAPH_NODES = re.compile(r'<body data-hde-graph-nodes="(\d+)"')

DRAWING_NAME = re.compile(r'^(plot_\w+|show_html|attention_html|structure_html|iframe_html|figure)$')

def _is_drawing(node, assigned: dict) -> bool:
    "An expression whose value is a drawing: a call of a drawing function, a name bound to one, or a choice of them."
    if isinstance(node, ast.Call):
        f = node.func
        return bool(DRAWING_NAME.match(f.id if isinstance(f, ast.Name) else getattr(f, 'attr', '')))
    # `fig if data_present else None`: a drawing only when both branches draw (cells that need the real samples)
    if isinstance(node, ast.IfExp): return _is_drawing(node.body, assigned) and _is_drawing(node.orelse, assigned)
    if isinstance(node, ast.Name): return node.id in assigned and _is_drawing(assigned[node.id], {})
    return False

def draws(source: str) -> bool:
    "Whether a cell's value (its last statement, an expression) is a drawing, which the kernel must show."
    try: tree = ast.parse(source)
    except SyntaxError: return False   # cell magics and the like
    if not tree.body or not isinstance(tree.body[-1], ast.Expr): return False
    assigned = {t.id: st.value for st in tree.body if isinstance(st, ast.Assign) for t in st.targets if isinstance(t, ast.Name)}
    return _is_drawing(tree.body[-1].value, assigned)

def _mimes(cell) -> set:
    return {m for out in cell.get('outputs', []) for m in out.get('data', {})}

def _pages(cell) -> list[str]:
    "The HTML pages a cell shows (an iframe's srcdoc is unescaped to the page it holds)."
    pages = []
    for out in cell.get('outputs', []):
        text = out.get('data', {}).get('text/html', '')
        text = ''.join(text) if isinstance(text, list) else text
        pages += [html.unescape(m) for m in re.findall(r'srcdoc="(.*?)"', text, re.S)] or ([text] if text else [])
    return pages

def drawing_problems(nb, ran=lambda cell: cell.execution_count is not None) -> tuple[list[str], int]:
    "(what is wrong, number of attention graphs checked) for an executed notebook; `ran(cell)`: whether the cell ran."
    problems, graphs = [], 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != 'code' or not ran(cell): continue
        src = cell.source
        if draws(src) and not (_mimes(cell) & DRAWN):
            problems.append(f"cell {i} draws but shows {sorted(_mimes(cell)) or 'nothing'}: {src.splitlines()[-1][:90]!r}")
        for page in _pages(cell):
            declared, drawn = GRAPH_NODES.search(page), VIS_NODES.search(page)
            if not declared: continue
            graphs += 1
            ids = {n['id'] for n in json.loads(drawn.group(1))} if drawn else set()
            if len(ids) != int(declared.group(1)):
                problems.append(f"cell {i}: attention graph draws {len(ids)} of its {declared.group(1)} nodes")
    return problems, graphs

@pytest.mark.slow
@pytest.mark.parametrize('name, min_graphs', [('04_graph', 0), ('08_model', 1), ('11_viz', 1)])
def test_notebook_draws_in_a_kernel(name, min_graphs):
    nb, ran, _, _ = execute(ROOT / 'nbs' / f'{name}.ipynb', enabled=set(), all_flags=notebook_flags(), timeout=900)
    assert ran > 5, f"{name}: only {ran} cells ran"
    problems, graphs = drawing_problems(nb)
    assert not problems, f"{name}:\n" + '\n'.join(problems)
    assert graphs >= min_graphs, f"{name}: {graphs} attention graphs drawn, expected at least {min_graphs}"
    images = sum('image/png' in _mimes(c) for c in nb.cells if c.cell_type == 'code')
    assert images >= 1, f"{name}: no figure rendered as image/png"

def test_drawing_check_catches_a_figure_printed_as_text():
    "The check itself: a drawing cell whose only output is the text repr of a figure is reported."
    import nbformat
    nb = nbformat.v4.new_notebook()
    assert draws('fig = plot_graph_stats(stats)\nfig') and draws('plot_type_flow(flow);') and not draws('show_html(page) if ok else None')
    assert not draws('p = save_figure(plot_attention(view), path)') and not draws('def plot_x():\n    return fig')
    assert not draws("test_fail(lambda: save_figure(plot_attention(view), 'a.jpg'), contains='format')")
    cell = nbformat.v4.new_code_cell('fig = plot_graph_stats(stats)\nfig', execution_count=1)
    cell.outputs = [nbformat.v4.new_output('execute_result', data={'text/plain': '<Figure size 1500x420 with 3 Axes>'}, execution_count=1)]
    page = '<body data-hde-graph-nodes="3"><script>nodes = new vis.DataSet([{"id": 0}, {"id": 1}]);</script>'
    graph = nbformat.v4.new_code_cell('show_html(attention_html(view))', execution_count=2)
    graph.outputs = [nbformat.v4.new_output('display_data', data={'text/html': f'<iframe srcdoc="{html.escape(page, quote=True)}"></iframe>'})]
    nb.cells = [cell, graph]
    problems, graphs = drawing_problems(nb)
    assert graphs == 1 and len(problems) == 2, problems
    assert 'draws but shows' in problems[0] and '2 of its 3 nodes' in problems[1]



# The committed notebooks: each chapter shows its results to a reader who does not run it.
NOTEBOOKS_BUDGET_MB = 20        # all notebooks together, outputs included (vis-network is embedded once per graph)
ATTENTION_CHAPTERS = ('08_model', '09_train', '10_pretrain', '11_viz', '13_widgets', '14_cli')

def committed_notebooks() -> dict:
    import nbformat
    return {p.stem: nbformat.read(p, as_version=4) for p in sorted((ROOT / 'nbs').glob('*.ipynb'))}

def test_committed_notebooks_show_their_results():
    flags = notebook_flags()
    ran = lambda cell: skip_reason(cell.source, flags, set()) is None   # what scripts/run_notebooks.sh runs on a CPU
    nbs, sizes = committed_notebooks(), {}
    for name, nb in nbs.items():
        sizes[name] = (ROOT / 'nbs' / f'{name}.ipynb').stat().st_size
        if name == 'index': continue
        code = [c for c in nb.cells if c.cell_type == 'code' and ran(c)]
        assert any(c.get('outputs') for c in code), f"{name} is committed without outputs: run scripts/run_notebooks.sh {name}"
        problems, graphs = drawing_problems(nb, ran)
        assert not problems, f"{name}:\n" + '\n'.join(problems)
        if name in ATTENTION_CHAPTERS: assert graphs >= 1, f"{name} shows no attention graph of the model it trained"
    pages = [p for c in nbs['04_graph'].cells if c.cell_type == 'code' for p in _pages(c)]
    assert any('WH_train_' in p and 'vis.DataSet' in p for p in pages), "04_graph draws no real WikiHop record's graph"
    total = sum(sizes.values()) / 1e6
    assert total <= NOTEBOOKS_BUDGET_MB, f"notebooks take {total:.1f} MB, over the {NOTEBOOKS_BUDGET_MB} MB budget: {sizes}"

TEST_CALL = re.compile(r'^(test_\w+|assert_\w+|torch\.testing\.assert_\w+)$')

def _call_name(call: ast.Call) -> str:
    f, parts = call.func, []
    while isinstance(f, ast.Attribute): parts.append(f.attr); f = f.value
    if isinstance(f, ast.Name): parts.append(f.id)
    return '.'.join(reversed(parts))

def is_test_only(source: str) -> bool:
    "A cell that only checks (asserts, fastcore/torch test calls, imports of test helpers) and shows nothing to a reader."
    if source.lstrip().startswith('#|'): return False    # directives decide already (export, hide, slow, ...)
    try: tree = ast.parse(source)
    except SyntaxError: return False
    checks = 0
    for st in tree.body:
        if isinstance(st, (ast.Import, ast.ImportFrom)) and 'test' in (getattr(st, 'module', None) or st.names[0].name): continue
        if isinstance(st, ast.Assert) or (isinstance(st, ast.Expr) and isinstance(st.value, ast.Call) and TEST_CALL.match(_call_name(st.value))):
            checks += 1; continue
        return False
    return checks > 0

def test_test_only_cells_are_hidden():
    "The rendered chapters read as prose and examples: a cell that only tests carries `#| hide`."
    visible = [f"{name}: {c.source.splitlines()[0][:70]!r}" for name, nb in committed_notebooks().items()
               for c in nb.cells if c.cell_type == 'code' and is_test_only(c.source)]
    assert not visible, "test-only cells without #| hide:\n" + '\n'.join(visible)

def test_test_only_classifier():
    assert is_test_only("from fastcore.test import test_eq\ntest_eq(f(1), 2)\nassert g()")
    assert not is_test_only("x = f(1)\ntest_eq(x, 2)") and not is_test_only("#| hide\ntest_eq(1, 1)") and not is_test_only("print(1)")
