"""GraphExplorer and AttentionExplorer driven from Python, without a browser (tests/test_widgets_browser.py uses one).

Setting a widget's `value` from Python runs the same observers a click runs, so these tests exercise the widgets'
behaviour: every toggle rebuilds the graph `build_graph` builds with the same options, from a tokenisation made once;
export writes a config that loads and reproduces the graph; the attention explorer's graph and heatmap follow its
sliders and filters together.
"""
import dataclasses, json, re, shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hde_kit import text
from hde_kit.config import load_config, save_config
from hde_kit.graph import NodeType, EdgeType, build_graph, graph_options
from hde_kit.synthetic import generate
from hde_kit.widgets import (GraphExplorer, AttentionExplorer, SWITCHES, LIMITS, graph_counts, count_diff,
                             flow_matrix, export_graph_config, structure_html, attention_change)

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {k: (0 if v is None else v) for k, v in dataclasses.asdict(graph_options(load_config().graph)).items()}
ALL_ON = {**{n: True for n in SWITCHES}, 'bidirectional_edge_types': False, 'max_nodes': 0, 'max_edges': 0}
NO_CHANGE = {'num_nodes': 0, 'num_edges': 0, 'nodes': {}, 'edges': {}}


def dataset(page: str, name: str) -> list:
    "The node or edge list a vis-network page draws."
    return json.loads(re.search(rf'{name} = new vis\.DataSet\((\[.*?\])\);', page, re.S).group(1))


@pytest.fixture(scope='module')
def cache(tmp_path_factory): return tmp_path_factory.mktemp('cache')


@pytest.fixture(scope='module')
def syn(): return generate(3, hops=2, seed=21)


@pytest.fixture(scope='module')
def explorer(syn, cache):
    # rule-based coreference, so that use_coref_edges has clusters to draw on
    return GraphExplorer(syn, cfg=load_config(overrides=['text.coref=rules']), cache_dir=cache, draw=False)


def assert_matches_build_graph(ex: GraphExplorer):
    want = build_graph(ex.tok, **{k: w.value for k, w in ex.toggles.items()})
    for key in ('edge_index', 'edge_type', 'node_type', 'node_support', 'node_span'):
        assert torch.equal(ex.graph[key], want[key]), key
    assert ex.counts == graph_counts(want)
    assert ex.options == graph_options(None, **{k: w.value for k, w in ex.toggles.items()})


def test_switches_are_the_graph_options():
    assert set(SWITCHES) | set(LIMITS) == set(DEFAULTS)
    assert {'use_sentence_nodes', 'connect_sent2doc', 'connect_sent2sent', 'use_query_node', 'use_subquery_nodes',
            'use_codocument_edges', 'use_comention_edges', 'use_compliment_edges', 'bidirectional_edge_types',
            'add_self_loops', 'use_coref_edges', 'use_all_sentences', 'use_random_edges'} == set(SWITCHES)


@pytest.mark.parametrize('start', ['defaults', 'all_on'])
@pytest.mark.parametrize('name', SWITCHES)
def test_each_toggle_rebuilds_the_graph_build_graph_builds(explorer, start, name):
    explorer.select(0).set(**(ALL_ON if start == 'all_on' else DEFAULTS))
    assert_matches_build_graph(explorer)
    calls = text.TOKENIZER_CALLS
    for _ in range(2):   # flip and flip back
        before = explorer.counts
        explorer.toggles[name].value = not explorer.toggles[name].value
        assert_matches_build_graph(explorer)
        assert explorer.diff == count_diff(before, explorer.counts)
        inert = start == 'defaults' and name in ('connect_sent2doc', 'connect_sent2sent', 'use_all_sentences')   # no sentence nodes
        if name == 'use_coref_edges' and not explorer.tok.coref_clusters: inert = True
        if name == 'use_random_edges': inert = True     # rewiring moves edges, it does not change their counts by type
        if name == 'use_all_sentences' and start == 'all_on':   # inert when every sentence contains a mention
            inert = all(any(m.support == s and m.tok_start < e and b < m.tok_end for m in explorer.tok.mentions)
                        for s, b, e in explorer.tok.sentences)
        assert (explorer.diff == NO_CHANGE) == inert, (name, explorer.diff)
    assert text.TOKENIZER_CALLS == calls           # a toggle never tokenises


def test_switches_that_add_nodes(explorer):
    explorer.select(0).set(**DEFAULTS)
    for name, node_type in [('use_query_node', 'query'), ('use_subquery_nodes', 'subquery'), ('use_sentence_nodes', 'sentence')]:
        explorer.toggles[name].value = True
        assert explorer.diff['nodes'] == {node_type: explorer.counts['nodes'][node_type]} and explorer.diff['num_nodes'] > 0
        explorer.toggles[name].value = False
        assert explorer.counts['nodes'][node_type] == 0
    explorer.toggles['use_sentence_nodes'].value = True
    assert not explorer.toggles['connect_sent2doc'].disabled
    explorer.toggles['use_sentence_nodes'].value = False
    assert explorer.toggles['connect_sent2doc'].disabled and explorer.toggles['connect_sent2sent'].disabled
    assert explorer.toggles['use_all_sentences'].disabled


def test_limits(explorer):
    explorer.select(1).set(**DEFAULTS)
    full = explorer.counts['num_nodes']
    explorer.toggles['max_nodes'].value = full - 5
    assert_matches_build_graph(explorer)
    assert explorer.graph.num_dropped_supports > 0 and explorer.graph.num_nodes <= full - 5
    explorer.toggles['max_edges'].value = 30
    assert explorer.graph is None and 'graph too large' in explorer.error and explorer.diff is None
    last = explorer.counts
    explorer.set(max_nodes=0, max_edges=0)
    assert_matches_build_graph(explorer)
    assert explorer.diff == count_diff(last, explorer.counts) and explorer.graph.num_dropped_supports == 0


def test_tokenised_once_per_example_then_from_the_cache(syn, tmp_path):
    calls = text.TOKENIZER_CALLS
    ex = GraphExplorer(syn, cache_dir=tmp_path, draw=False)
    assert text.TOKENIZER_CALLS == calls + 1                  # the first example
    ex.step(); ex.step(); ex.step()                           # examples 1, 2, then 0 again
    assert ex.example.id == syn[0].id and text.TOKENIZER_CALLS == calls + 3
    for name in SWITCHES: ex.toggles[name].value = not ex.toggles[name].value
    assert text.TOKENIZER_CALLS == calls + 3
    again = GraphExplorer(syn, cache_dir=tmp_path, draw=False)  # a new session: the tokenisation cache has them
    again.select(2)
    assert text.TOKENIZER_CALLS == calls + 3
    assert torch.equal(again.graph.edge_index, build_graph(ex._toks[syn[2].id], again.options).edge_index)


def test_picking_examples(explorer, syn):
    explorer.picker.value = syn[2].id                         # typing an id in the combobox
    assert explorer.example.id == syn[2].id and explorer.position == 2
    explorer.picker.value = 'not an id'                        # half-typed text: nothing happens
    assert explorer.example.id == syn[2].id
    explorer.prev_button.click()
    assert explorer.example.id == syn[1].id and explorer.picker.value == syn[1].id
    assert explorer.diff is None                               # another example: no comparison
    with pytest.raises(KeyError, match='not found'): explorer.select('nope')
    with pytest.raises(IndexError): explorer.select(3)


def test_export_writes_a_config_that_reproduces_the_graph(explorer, syn, tmp_path, cache):
    explorer.select(0).set(use_query_node=True, use_sentence_nodes=True, use_coref_edges=True, add_self_loops=False,
                           bidirectional_edge_types=True, max_edges=5000)
    explorer.export_path.value = str(tmp_path / 'exp' / 'chosen.yaml')
    explorer.export_base.value = str(ROOT / 'configs' / 'base.yaml')
    explorer.export_button.click()
    assert 'wrote' in explorer.export_message.value, explorer.export_message.value
    path = tmp_path / 'exp' / 'chosen.yaml'
    doc = yaml.safe_load(path.read_text())
    assert (path.parent / doc['base']).resolve() == (ROOT / 'configs' / 'base.yaml').resolve()
    no_limit = {k for k in ('max_nodes', 'max_edges') if not getattr(explorer.options, k)}   # not a config value: the base's applies
    assert set(doc['graph']) == set(DEFAULTS) - no_limit
    cfg = load_config(path)
    assert cfg.name == 'base' and cfg.text.coref == 'rules'   # from the base, and the explorer's text options
    assert set(doc) == {'base', 'graph', 'text'}
    # reproduce from scratch: tokenise with the loaded text options, build with the loaded graph options
    tok = text.tokenise_examples([syn[0]], cfg.text, cache_dir=cache, progress=False)[0]
    again = build_graph(tok, cfg.graph)
    assert torch.equal(again.edge_index, explorer.graph.edge_index) and torch.equal(again.edge_type, explorer.graph.edge_type)
    # without a base: the same graph from the schema defaults
    plain = load_config(explorer.export(tmp_path / 'plain.yaml'))
    assert torch.equal(build_graph(tok, plain.graph).edge_index, explorer.graph.edge_index)


def test_exported_config_is_accepted_by_the_cli(explorer, syn, tmp_path, capsys):
    "The command line loads configs with load_config; `hde graphs stats DATA CONFIG` builds with the exported options."
    from hde_kit import cli
    from hde_kit.data import write_examples
    explorer.select(0).set(**DEFAULTS)
    explorer.set(use_query_node=True, use_sentence_nodes=True)
    path = explorer.export(tmp_path / 'chosen.yaml')
    data = write_examples(syn, tmp_path / 'syn.json')
    capsys.readouterr()
    assert cli.main(['graphs', 'stats', str(data), str(path), '--json', '--cache-dir', str(tmp_path / 'c')]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats['nodes_by_type']['query']['max'] == 1 and stats['nodes_by_type']['sentence']['min'] > 0
    if 'train' in cli.build_parser()._subparsers._group_actions[0].choices:   # the trainer's command, once it exists
        args = cli.build_parser().parse_args(['train', str(path)])
        assert args is not None


def test_export_errors_show_beside_the_button(explorer, tmp_path):
    explorer.export_path.value = str(tmp_path / 'x.yaml')
    explorer.export_base.value = str(tmp_path / 'missing.yaml')
    explorer.export_button.click()
    assert 'not found' in explorer.export_message.value


def test_drawing_and_static_fallback(syn, cache):
    ex = GraphExplorer(syn, cache_dir=cache)
    nodes = dataset(ex.page, 'nodes')
    assert len(nodes) == ex.graph.num_nodes
    assert 'sandbox="allow-scripts"' in ex.view.value and 'srcdoc=' in ex.view.value
    assert f'data-num-nodes="{ex.graph.num_nodes}"' in ex.table.value
    ex.toggles['use_query_node'].value = True
    assert len(dataset(ex.page, 'nodes')) == len(nodes) + 1
    bundle = ex._repr_mimebundle_()
    assert bundle['application/vnd.jupyter.widget-view+json']['model_id'] == ex.widget.model_id
    assert '<img' in bundle['text/html'] and 'hde-counts' in bundle['text/html']
    assert '<img' in ex.static().data
    assert len(ex.figure().axes) >= 1


def test_text_is_escaped_in_the_drawing(cache):
    ex0 = generate(1, seed=5)[0]
    evil = dataclasses.replace(ex0, id='e<b>', query=ex0.query + ' </script><script>alert(1)</script>',
                               supports=[ex0.supports[0] + ' <img src=x onerror=alert(2)>'] + ex0.supports[1:])
    g = GraphExplorer([evil], cache_dir=cache)
    assert '<script>alert(1)' not in g.page and '<img src=x' not in g.page
    assert '<script' not in g.view.value.split('srcdoc=', 1)[1]     # the whole page is attribute-escaped in the iframe
    assert '<script>' not in g.info.value and '&lt;/script&gt;&lt;script&gt;alert(1)' in g.info.value


def test_drawing_is_capped_but_counts_are_not(syn, cache):
    ex = GraphExplorer(syn, cache_dir=cache, max_drawn_edges=50)
    ex.set(use_compliment_edges=True, use_query_node=True)
    assert len(dataset(ex.page, 'edges')) <= 50
    assert ex.counts['num_edges'] > 100 and 'of' in ex.page
    page = structure_html(ex.graph, ex.example, ex.tok, max_drawn_edges=None)
    assert len(dataset(page, 'edges')) == (ex.graph.num_edges - ex.graph.num_nodes) // 2


def test_wikihop_rebuild_latency(shared_data, tmp_path):
    path = shared_data / 'wikihop' / 'wikihop_train_first22_ml4g.json'
    ex = GraphExplorer(path, cache_dir=tmp_path, example='WH_train_7')   # the largest sample record
    times = []
    for state in (DEFAULTS, ALL_ON):
        ex.set(**state)
        for name in SWITCHES:
            ex.toggles[name].value = not ex.toggles[name].value
            assert_matches_build_graph(ex)
            times.append((name, ex.timing['rebuild_ms'], ex.timing['update_ms']))
            ex.toggles[name].value = not ex.toggles[name].value
    worst = max(times, key=lambda t: t[1])
    assert worst[1] < 200, times
    assert max(t[2] for t in times) < 2000, times     # with the redraw; generous for a loaded CI machine


# ---- AttentionExplorer ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def small_model(cache):
    from hde_kit.encoders import make_encoder
    from hde_kit.model import HDEModel, prepare
    cfg = load_config(overrides=['gnn.hidden_size=16', 'gnn.num_layers=2', 'gnn.heads=2', 'gnn.dropout=0.0'])
    encoder = make_encoder(cfg.encoder)
    data = prepare(generate(3, hops=2, seed=3), cfg, encoder, cache_dir=cache, progress=False)
    torch.manual_seed(0)
    return HDEModel(cfg, encoder.out_dim).eval(), cfg, data


def test_attention_explorer_controls_move_graph_and_heatmap_together(small_model, cache):
    from hde_kit.model import predict
    model, cfg, data = small_model
    ae = AttentionExplorer(model, cfg, data, cache_dir=cache)
    assert (ae.layer, ae.head, ae.top_k) == (1, 'mean', 3)
    preds = predict(model, data)
    assert np.allclose(list(ae.probs.values()), preds[ae.view.example.id][1], atol=1e-5)
    assert 'hde-probs' in ae.probs_view.value
    seen = set()
    for layer in (0, 1):
        for head in (0, 1, 'mean'):
            ae.set(layer=layer, head=head)
            np.testing.assert_allclose(ae.flow, flow_matrix(ae.view, layer, head))
            assert ae.head_slider.disabled == (head == 'mean')
            seen.add((ae.page, ae.png))
    assert len({p for p, _ in seen}) == 6 and len({png for _, png in seen}) == 6   # both redrawn every time
    ae.layer_slider.value = 0                                  # a slider alone redraws too
    np.testing.assert_allclose(ae.flow, flow_matrix(ae.view, 0, 'mean'))
    ae.top_k_slider.value = 1; one = len(dataset(ae.page, 'edges'))
    ae.top_k_slider.value = 0; every = len(dataset(ae.page, 'edges'))
    assert one < every
    ae.type_toggles['entity'].value = False
    kept = ae.view.graph.node_type != NodeType.entity
    assert len(dataset(ae.page, 'nodes')) == int(kept.sum()) == ae.shown.graph.num_nodes
    assert NodeType.entity not in ae.flow_types and 'node types shown' in ae.page
    for t in NodeType: ae.type_toggles[t.name].value = False
    assert ae.page == '' and 'no node type' in ae.graph_view.value
    ae.set(node_types=['document', 'entity', 'candidate'], relative=True)
    np.testing.assert_allclose(ae.flow, flow_matrix(ae.view, 0, 'mean', relative=True))
    ae.picker.value = data.examples[2].id
    assert ae.view.example.id == data.examples[2].id
    bundle = ae._repr_mimebundle_()
    assert 'application/vnd.jupyter.widget-view+json' in bundle and bundle['text/html'].count('<img') == 2


def test_attention_explorer_from_examples_and_from_run(small_model, cache, tmp_path):
    from safetensors.torch import save_file
    model, cfg, data = small_model
    direct = AttentionExplorer(model, cfg, data.examples[:2], cache_dir=cache, draw=False)
    assert len(direct.data) == 2 and direct.page == ''
    save_config(cfg, tmp_path / 'config.yaml')
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / 'model.safetensors'))
    run = AttentionExplorer.from_run(tmp_path, data.examples[:2], example=data.examples[1].id, cache_dir=cache)
    assert run.view.example.id == data.examples[1].id
    np.testing.assert_allclose(list(run.probs.values()), list(direct.select(1).probs.values()), atol=1e-5)


def test_attention_explorer_structure_edits_on_a_trained_run(cache, tmp_path):
    "A run trained by `train` (1 epoch, 1-hop world): removing an edge type re-runs it and moves attention and probabilities."
    from hde_kit.train import train
    from hde_kit.model import Prepared, predict
    cfg = load_config(overrides=['data.hops=1', 'data.num_candidates=3', 'data.n_train=24', 'data.n_dev=6', 'train.epochs=1',
                                 'train.batch_size=4', 'gnn.hidden_size=16', 'gnn.num_layers=2', 'gnn.heads=2',
                                 f'train.cache_dir={cache}'])
    run = train(cfg, run_dir=tmp_path / 'run', progress=False).run_dir
    ae = AttentionExplorer.from_run(run, max_examples=4)
    before = ae.view
    n_codoc = int((before.graph.edge_type == EdgeType.codocument).sum())
    assert n_codoc > 0 and not ae.edited and ae.change_view.value == ''
    ae.top_k_slider.value = 0                                               # every attention edge drawn
    drawn = lambda: {e['title'].split(':')[0] for e in dataset(ae.page, 'edges')}
    assert 'codocument' in drawn()
    ae.structure_toggles['use_codocument_edges'].value = False          # what a click does
    assert ae.edited and int((ae.view.graph.edge_type == EdgeType.codocument).sum()) == 0
    edited = build_graph(before.tok, graph_options(ae.cfg.graph, use_codocument_edges=False))
    own = predict(ae.model, Prepared([edited], [ae.data.states[0]], [before.example]))[before.example.id][1]
    np.testing.assert_allclose(ae.view.probs, own, atol=1e-6)            # the model's own answer on the edited graph
    assert np.abs(ae.view.probs - before.probs).max() > 1e-4              # probabilities moved
    att = ae.change['attention']
    assert att['removed'] == n_codoc and att['added'] == 0 and att['mean_abs'] > 1e-3   # and the attention that is left
    assert 'Δp' in ae.probs_view.value and 'use_codocument_edges=off' in ae.change_view.value
    assert drawn() and 'codocument' not in drawn()                         # the drawing follows
    ae.layer_slider.value = 0                                               # the change follows the layer shown
    assert ae.change['attention'] == attention_change(before, ae.view, 0, 'mean')
    ae.picker.value = ae.data.examples[1].id                                # the edit stays on for the next example
    assert ae.edited and int((ae.view.graph.edge_type == EdgeType.codocument).sum()) == 0
    ae.edit(use_query_node=True)                                            # a node switch: relations added, none lost
    assert ae.change['attention']['added'] > 0 and ae.view.graph.num_nodes == ae.original.graph.num_nodes + 1
    ae.reset_button.click()
    assert not ae.edited and ae.view is ae.original and ae.change is None
    with pytest.raises(TypeError, match='use_subquery_nodes'): ae.edit(use_subquery_nodes=True)
