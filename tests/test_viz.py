"""Visualisation: exact type-flow aggregation, attention HTML in a real browser (every node drawn, text stays text,
nothing loads from the network), static figures in every format, tolerant metric reading, the CLI functions."""
import json, shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.utils import softmax

from hde_kit.data import Example
from hde_kit.graph import NodeType, EdgeType, build_graph
from hde_kit.synthetic import generate
from hde_kit.text import tokenise_example
from hde_kit import viz

D, E, C = NodeType.document, NodeType.entity, NodeType.candidate
PAYLOAD = ('<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=1"> '
           '<a href="javascript:window.__pwned=1">link</a> <svg onload="window.__pwned=1"></svg>')


# ---------------------------------------------------------------- type flow on hand-built attention
def hand_graph():
    "Document 0, entities 1 and 2, candidate 3; two heads; every target's weights sum to 1."
    ei = torch.tensor([[0, 2, 1, 0, 1, 3, 0, 2, 3],
                       [1, 1, 1, 2, 2, 2, 0, 3, 3]])
    et = torch.tensor([EdgeType.document2entity, EdgeType.codocument, EdgeType.self_loop,
                       EdgeType.document2entity, EdgeType.codocument, EdgeType.candidate2entity,
                       EdgeType.self_loop, EdgeType.candidate2entity, EdgeType.self_loop])
    nt = torch.tensor([D, E, E, C])
    alpha = torch.tensor([[0.6, 0.2], [0.3, 0.5], [0.1, 0.3],
                          [0.2, 0.2], [0.3, 0.3], [0.5, 0.5],
                          [1.0, 1.0],
                          [0.25, 0.75], [0.75, 0.25]], dtype=torch.float64)
    return ei, et, nt, alpha


def test_type_flow_exact():
    ei, et, nt, alpha = hand_graph()
    f = viz.type_flow(ei, alpha, nt, et)
    # into the two entities: from the document (0.6+0.2)/2, entities (0.3+0.1+0.3)/2, the candidate 0.5/2
    np.testing.assert_allclose(f['node'][0, 0, E, [D, E, C]], [0.4, 0.35, 0.25], rtol=0, atol=1e-12)
    np.testing.assert_allclose(f['node'][0, 1, E, [D, E, C]], [0.2, 0.55, 0.25], rtol=0, atol=1e-12)
    np.testing.assert_allclose(f['node'][0, 0, C, [D, E, C]], [0.0, 0.25, 0.75], rtol=0, atol=1e-12)
    np.testing.assert_allclose(f['node'][0, 1, C, [D, E, C]], [0.0, 0.75, 0.25], rtol=0, atol=1e-12)
    np.testing.assert_allclose(f['node'][0, :, D, D], [1.0, 1.0])
    assert np.isnan(f['node'][0, :, NodeType.query]).all()           # no such target type: no row
    np.testing.assert_allclose(f['targets'][0, [D, E, C]], [1, 2, 1])
    by_type = [EdgeType.document2entity, EdgeType.codocument, EdgeType.candidate2entity, EdgeType.self_loop]
    np.testing.assert_allclose(f['edge'][0, 0, by_type], [0.8 / 4, 0.6 / 4, 0.75 / 4, 1.85 / 4], atol=1e-12)
    np.testing.assert_allclose(f['edge'][0, 1, by_type], [0.4 / 4, 0.8 / 4, 1.25 / 4, 1.55 / 4], atol=1e-12)
    np.testing.assert_allclose(f['edge_by_target'][0, 0, E, by_type], [0.4, 0.3, 0.25, 0.05], atol=1e-12)
    u = viz.type_flow(ei, alpha, nt, et, uniform=True)                # indegrees 1, 3, 3, 2
    np.testing.assert_allclose(u['node'][0, 0, E, [D, E, C]], [1 / 3, 1 / 2, 1 / 6])
    np.testing.assert_allclose(u['node'][0, 0, C, [E, C]], [1 / 2, 1 / 2])


def test_type_flow_batch_and_aggregate():
    ei, et, nt, alpha = hand_graph()
    # graph 0: the hand graph; graph 1: the same with entity 2's weights changed; graph 2: a lone document
    alpha2 = alpha.clone(); alpha2[3:6] = torch.tensor([[0.6, 0.6], [0.3, 0.3], [0.1, 0.1]], dtype=torch.float64)
    big_ei = torch.cat([ei, ei + 4, torch.tensor([[8], [8]])], 1)
    big_alpha = torch.cat([alpha, alpha2, torch.ones(1, 2, dtype=torch.float64)])
    big_et = torch.cat([et, et, torch.tensor([EdgeType.self_loop])])
    big_nt = torch.cat([nt, nt, torch.tensor([D])])
    batch = torch.tensor([0] * 4 + [1] * 4 + [2])
    f = viz.type_flow(big_ei, big_alpha, big_nt, big_et, batch, 3)
    np.testing.assert_allclose(f['node'][1, 0, E, [D, E, C]], [(0.6 + 0.6) / 2, (0.3 + 0.1 + 0.3) / 2, 0.1 / 2])
    assert np.isnan(f['node'][2, :, E]).all() and np.isnan(f['node'][2, :, C]).all()
    np.testing.assert_allclose(f['node'][2, :, D, D], 1.0)
    # FlowStats over these 3 examples (one layer): the mean and std ignore examples without that target type
    stack = lambda a: a[:, None]
    fs = viz.FlowStats(stack(f['node']), stack(f['edge']), stack(f['edge_by_target']), f['node'][:, 0], f['edge'][:, 0], f['targets'])
    np.testing.assert_allclose(fs.mean()[0, 0, E, D], (0.4 + 0.6) / 2)
    np.testing.assert_allclose(fs.std()[0, 0, E, D], 0.1)
    np.testing.assert_allclose(fs.mean()[0, 0, D, D], 1.0)
    assert [t.name for t in fs.node_types()] == ['document', 'entity', 'candidate']
    s = fs.summary()
    assert s['num_examples'] == 3 and s['node_types'] == ['document', 'entity', 'candidate']
    json.dumps(s)


def test_keep_edges_and_rollout():
    ei = torch.tensor([[0, 1, 2, 3, 0, 1, 2], [3, 3, 3, 3, 1, 0, 0]])
    w = torch.tensor([0.1, 0.5, 0.3, 0.1, 1.0, 0.6, 0.4])
    assert viz.keep_edges(ei, w, top_k=2).tolist() == [False, True, True, False, True, True, True]
    assert viz.keep_edges(ei, w, top_k=1, threshold=0.5).tolist() == [False, True, False, False, True, True, False]
    assert not viz.keep_edges(ei, w, threshold=2.0).any() and not viz.keep_edges(ei, w, top_k=2, threshold=2.0).any()
    chain = [(torch.tensor([[0, 0, 1], [0, 1, 2]]), torch.ones(3, 1))] * 2
    np.testing.assert_allclose(viz.rollout_from(chain, [2], 3, residual=0.5)[0], [0.25, 0.5, 0.25])
    np.testing.assert_allclose(viz.rollout_from(chain, [2], 3, residual=0.0)[0], [1.0, 0.0, 0.0])


# ---------------------------------------------------------------- a view without a trained model
def make_view(num_docs=8, num_candidates=6, payload=True, seed=0):
    "An attention view of a synthetic example (payload in a support, a candidate and the id), with random attention."
    ex = generate(1, hops=2, num_docs=num_docs, num_candidates=num_candidates, seed=seed)[0]
    if payload:
        cands = ex.candidates[:-1] + ['<img src=x onerror=window.__pwned=1>']
        ex = Example(id='x<b>"' + ex.id, query=ex.query, supports=[ex.supports[0] + ' ' + PAYLOAD] + ex.supports[1:],
                     candidates=cands, answer=ex.answer if ex.answer in cands else cands[0], meta=ex.meta)
    tok = tokenise_example(ex)
    g = build_graph(tok)
    gen = torch.Generator().manual_seed(seed)
    att = [(g.edge_index, softmax(torch.randn(g.num_edges, 2, generator=gen), g.edge_index[1], num_nodes=g.num_nodes))
           for _ in range(2)]
    probs = torch.randn(len(ex.candidates), generator=gen).softmax(0).numpy()
    return viz.AttentionView(g, ex, tok, att, probs)


def test_html_is_self_contained_and_escaped():
    view = make_view()
    page = viz.attention_html(view, top_k=None)
    assert '<script>window.__pwned' not in page and 'onerror="window' not in page
    assert '\\u003cscript\\u003ewindow.__pwned=1\\u003c/script\\u003e' in page      # the support, as escaped JSON
    assert 'x&lt;b&gt;&quot;' in page                                             # the caption, HTML-escaped
    assert 'innerHTML = nodeData' not in page                                      # pyvis' HTML popup is off
    assert not any(tag in page for tag in ('<script src="http', '<link href="http', '<link rel="stylesheet" href="http'))
    assert len(page) < 2_000_000


def _chromium():
    path = shutil.which('chromium') or shutil.which('chromium-browser')
    if path is None: pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.skip("the playwright package is not installed")
    return path, sync_playwright


@pytest.mark.parametrize('size', ['small', 'wikihop'])
def test_attention_html_in_browser(tmp_path, size):
    path, sync_playwright = _chromium()
    view = make_view() if size == 'small' else make_view(num_docs=26, num_candidates=20, seed=3)
    n = int(view.graph.num_nodes)
    if size == 'wikihop': assert n >= 100
    out = tmp_path / 'attention.html'
    viz.attention_html(view, top_k=3, path=out)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=['--no-sandbox', '--disable-gpu', '--disable-background-networking'])
        try:
            context = browser.new_context(offline=True)
            page = context.new_page()
            requests, errors, dialogs = [], [], []
            page.on('request', lambda r: requests.append(r.url))
            page.on('pageerror', lambda e: errors.append(str(e)))
            page.on('dialog', lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(out.as_uri())
            page.wait_for_function('typeof network !== "undefined" && network && network.body', timeout=15000)
            # every node is in the data set and got a position on the canvas
            assert page.evaluate('network.body.data.nodes.length') == n
            assert page.evaluate('Object.keys(network.body.nodes).length') == n
            assert page.evaluate('Object.keys(network.getPositions()).length') == n
            assert page.evaluate('network.body.data.edges.length') > 0
            # hover the payload document: its tooltip shows the markup as characters and holds no elements but <br>
            target = 0 if size == 'small' else None
            if target is not None:
                xy = page.evaluate('''(id) => { const p = network.canvasToDOM(network.getPositions([id])[id]);
                                      const r = document.getElementById("mynetwork").getBoundingClientRect();
                                      return [r.x + p.x, r.y + p.y]; }''', target)
                page.mouse.move(*xy)
                page.wait_for_function('document.querySelector("div.vis-tooltip") && '
                                       'document.querySelector("div.vis-tooltip").style.visibility === "visible"', timeout=5000)
                tip = page.evaluate('''() => { const t = document.querySelector("div.vis-tooltip");
                                       return [t.innerText, Array.from(t.querySelectorAll("*")).map(e => e.tagName)]; }''')
                assert '<script>window.__pwned=1</script>' in tip[0] and 'onerror="window.__pwned=1"' in tip[0]
                assert set(tip[1]) <= {'BR'}
                label = page.evaluate('network.body.data.nodes.get(%d).label' % [i for i, t in enumerate(view.graph.node_type.tolist())
                                                                                 if t == C][-1])
                assert label.startswith('<img src=x onerror')                   # the candidate's label is its text
            page.wait_for_timeout(300)
            assert page.evaluate('window.__pwned') is None
            assert page.evaluate('document.querySelectorAll("#mynetwork img, body > img, body script[src]").length') == 0
            assert requests == [out.as_uri()], requests                         # nothing but the page itself
            assert errors == [] and dialogs == []
        finally:
            browser.close()


# ---------------------------------------------------------------- static figures
def test_static_figures(tmp_path):
    view = make_view(payload=False)
    for fmt in viz.FIGURE_FORMATS:
        p = viz.save_figure(viz.plot_attention(view, top_k=2), tmp_path / f"a.{fmt}")
        assert p.stat().st_size > 2000
    p = viz.plot_attention(view, focus='gold', hops=2, path=tmp_path / 'focus.png')
    with pytest.raises(ValueError, match='unknown figure format'): viz.save_figure(p, tmp_path / 'a.gif')
    fs = viz.FlowStats(**{k: np.concatenate([v, v]) for k, v in viz._stack_flows(view.attention, _as_batch(view.graph), 1).items()})
    for make, name in ((viz.plot_type_flow, 'flow'), (viz.plot_edge_flow, 'edge'), (viz.plot_flow_sankey, 'sankey'),
                       (lambda s, path: viz.plot_type_flow(s, relative=True, path=path), 'relative'),
                       (lambda s, path: viz.plot_type_flow(s, heads=False, spread=False, path=path), 'compact')):
        out = tmp_path / f"{name}.svg"
        make(fs, path=out)
        assert out.stat().st_size > 2000
    viz.plot_document_rollout(view, path=tmp_path / 'rollout.pdf')
    assert (tmp_path / 'rollout.pdf').stat().st_size > 1000


def _as_batch(g):
    from torch_geometric.data import Batch
    return Batch.from_data_list([g])


def test_training_curves_tolerant(tmp_path):
    lines = [{'epoch': 0, 'train_loss': 1.0, 'dev/accuracy': 0.3, 'lr': 1e-3},
             {'epoch': 1, 'train_loss': 0.5, 'dev/accuracy': 0.6, 'lr': 9e-4, 'name': 'x', 'ok': True},
             {'iteration': 7, 'split': 'eval', 'acc': 0.7, 'loss': float('nan')}]
    f = tmp_path / 'metrics.jsonl'
    f.write_text('\n'.join(json.dumps(r) for r in lines) + '\n\n[1, 2]\n{"epoch": 2, "train_lo')
    with pytest.warns(UserWarning, match='skipped 2 line'):
        recs = viz.read_metrics(f)
    series = viz.metric_series(recs)
    assert series[('train', 'loss')] == ([0, 1], [1.0, 0.5])
    assert series[('dev', 'accuracy')] == ([0, 1], [0.3, 0.6])
    assert series[('eval', 'acc')] == ([7], [0.7]) and ('eval', 'loss') not in series
    viz.plot_training_curves(recs, path=tmp_path / 'curves.png')
    assert (tmp_path / 'curves.png').stat().st_size > 2000
    with pytest.raises(ValueError, match='no numeric'): viz.plot_training_curves([{'note': 'x'}])


def test_accuracy_by_size():
    from types import SimpleNamespace as NS
    exs = [NS(id=str(i), answer='a', candidates=['a'] * c, supports=['s'] * 2) for i, c in enumerate([2, 2, 5, 5, 5])]
    rows = viz.accuracy_by_size(exs, {'0': ('a', [1.0]), '2': 'a', '3': ('b', [0.1])})   # '1', '4' missing: wrong
    assert [(r['lo'], r['count'], r['accuracy']) for r in rows] == [(2, 2, 0.5), (5, 3, 1 / 3)]
    assert all(r['ci'][0] <= r['accuracy'] <= r['ci'][1] for r in rows)
    rows = viz.accuracy_by_size(exs, {}, by='supports')
    assert rows == [{'lo': 2.0, 'hi': 3.0, 'count': 5, 'accuracy': 0.0, 'ci': viz._wilson(0, 5)}]


# ---------------------------------------------------------------- CLI functions on a run directory
def test_cli_functions(tmp_path):
    from safetensors.torch import save_file
    from hde_kit.config import load_config, save_config
    from hde_kit.data import write_examples
    from hde_kit.model import HDEModel
    cfg = load_config(overrides=['gnn.hidden_size=32', 'gnn.num_layers=2', 'gnn.heads=2', f'train.cache_dir={tmp_path / "cache"}'])
    run = tmp_path / 'run'; run.mkdir()
    save_config(cfg, run / 'config.yaml')
    torch.manual_seed(0)
    model = HDEModel(cfg, 384)
    (run / 'ckpt').mkdir()
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(run / 'ckpt' / 'weights.safetensors'))
    loaded, cfg2, encoder = viz.load_run_model(run)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    examples = generate(3, hops=2, num_candidates=3, seed=1)
    data = write_examples(examples, tmp_path / 'dev.json')
    out = viz.viz_attention_cli(run, examples[2].id, data, layer=0, head='1', out=tmp_path / 'a.html', top_k=2)
    assert out == [tmp_path / 'a.html'] and 'vis.Network' in out[0].read_text()
    out = viz.viz_attention_cli(run, examples[2].id, data, out=tmp_path / 'a.png', focus='predicted')
    assert out[0].stat().st_size > 2000
    paths = viz.viz_flow_cli(run, data, tmp_path / 'flow', formats=('png', 'pdf'), progress=False)
    assert len(paths) == 9 and all(p.stat().st_size > 500 for p in paths)
    stats = json.loads((tmp_path / 'flow' / 'flow_stats.json').read_text())
    assert stats['num_examples'] == 3 and stats['num_layers'] == 2 and stats['num_heads'] == 2
    with pytest.raises(KeyError, match='not found'): viz.viz_attention_cli(run, 'nope', data)
    with pytest.raises(ValueError, match='.html, .png'): viz.viz_attention_cli(run, examples[0].id, data, out=tmp_path / 'a.txt')
    with pytest.raises(FileNotFoundError, match='config.yaml'): viz.load_run_model(tmp_path / 'flow')
