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
    if isinstance(node, ast.IfExp): return _is_drawing(node.body, assigned) or _is_drawing(node.orelse, assigned)
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
    assert draws('fig = plot_graph_stats(stats)\nfig') and draws('plot_type_flow(flow);') and draws('show_html(page) if ok else None')
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

