"""HDE graphs: type vocabulary, every switch, twins, self loops, hetero view, size limits, statistics, graph cache,
k-hop reachability on synthetic data and sanity on the real WikiHop records (hde_kit.graph, nbs/04_graph.ipynb)."""
import json, warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, HealthCheck, strategies as st

from hde_kit.graph import (NodeType, EdgeType, NUM_FORWARD_EDGE_TYPES, type_vocabulary, check_type_vocabulary,
                           GraphOptions, graph_options, GraphBuildError, build_graph, build_graphs, drop_order, _prepare,
                           to_hetero, answer_hops, graph_stats, dataset_graph_stats, format_graph_stats, plot_graph_stats,
                           GraphCache, GraphCacheWarning, graph_cache_key, iter_graphs, fake_tokenised,
                           build_dataset_graphs)
from hde_kit.text import TokenisedExample, Mention

# ---------------------------------------------------------------- fixtures

TOY_MENTIONS = [(0, 0, 2, 'subject', 'juan rossell', -1), (0, 5, 6, 'candidate', 'havana', 2),
                (1, 0, 1, 'candidate', 'havana', 2), (1, 4, 5, 'candidate', 'cuba', 0), (1, 7, 8, 'coref', 'havana', -1),
                (2, 2, 3, 'candidate', 'spain', 1), (2, 6, 7, 'ner', 'madrid', -1)]
TOY_SENTENCES = [(0, 0, 5), (0, 5, 10), (1, 0, 6), (1, 6, 10), (2, 0, 10)]

def make_tok(mentions=TOY_MENTIONS, sentences=TOY_SENTENCES, coref=((2, 4),), n_sup=3, sup_len=10, answer=0,
             n_cand=3, id='toy'):
    ms = [Mention(s, a, b, 5 * a, 5 * b, kind, key, c) for s, a, b, kind, key, c in mentions]
    return TokenisedExample(
        id=id, query_ids=[101, 102, 103], support_ids=[list(range(sup_len))] * n_sup,
        support_offsets=[[(5 * i, 5 * i + 4) for i in range(sup_len)]] * n_sup, windows=[[(0, sup_len)]] * n_sup,
        candidate_ids=[[7 + c] * (c + 1) for c in range(n_cand)], candidates=[f"C{c}" for c in range(n_cand)],
        candidate_keys=[f"c{c}" for c in range(n_cand)], subject_key='juan rossell', mentions=ms,
        sentences=list(sentences), coref_clusters=[list(c) for c in coref], answer_index=answer)

ALL_ON = dict(use_codocument_edges=True, use_comention_edges=True, use_compliment_edges=True, use_sentence_nodes=True,
              connect_sent2doc=True, connect_sent2sent=True, use_coref_edges=True, use_query_node=True,
              use_subquery_nodes=True, add_self_loops=True, bidirectional_edge_types=False, max_nodes=None, max_edges=None)

def describe(data):
    "Each node as what it stands for, so graphs with different node numbering compare edge for edge."
    return [(NodeType(t).name, s, tuple(sp), c) for t, s, sp, c in zip(
        data.node_type.tolist(), data.node_support.tolist(), data.node_span.tolist(), data.node_candidate.tolist())]

def edges(data, names=None):
    d = describe(data)
    return Counter((EdgeType(t).name, d[a], d[b]) for (a, b), t in zip(data.edge_index.t().tolist(), data.edge_type.tolist())
                   if names is None or EdgeType(t).name in names)

def by_type(data):
    return Counter(EdgeType(t).name for t in data.edge_type.tolist())

# ---------------------------------------------------------------- vocabulary

def test_vocabulary_is_fixed():
    assert [t.name for t in NodeType] == ['document', 'entity', 'candidate', 'sentence', 'query', 'subquery']
    forward = ['candidate2document', 'document2entity', 'candidate2entity', 'codocument', 'comention',
               'candidate2candidate', 'complement', 'document2sentence', 'entity2sentence', 'sentence2sentence',
               'coref', 'query2node', 'subquery2node', 'self_loop']
    assert [t.name for t in EdgeType] == forward + [n + '_rev' for n in forward[:-1]]
    assert [t.value for t in EdgeType] == list(range(len(EdgeType)))
    assert NUM_FORWARD_EDGE_TYPES == 14
    vocab = json.loads(json.dumps(type_vocabulary()))
    check_type_vocabulary(vocab)
    vocab['node_types'] = vocab['node_types'][::-1]
    with pytest.raises(ValueError, match='node_types at index 0'): check_type_vocabulary(vocab)

def test_reverse_twins():
    for t in EdgeType:
        assert EdgeType.reverse(t).reverse() == t
        assert EdgeType.reverse(int(t)) == t.reverse()
    assert EdgeType.self_loop.reverse() == EdgeType.self_loop
    assert EdgeType.comention.reverse() == EdgeType.comention_rev and EdgeType.comention_rev.is_reverse

# ---------------------------------------------------------------- the builder, switch by switch

SWITCHES = {  # switch -> (node types it adds, edge types it changes), starting from everything on
    'use_codocument_edges': (set(), {'codocument'}),
    'use_comention_edges': (set(), {'comention'}),
    'use_compliment_edges': (set(), {'complement'}),
    'use_sentence_nodes': ({'sentence'}, {'document2sentence', 'entity2sentence', 'sentence2sentence',
                                          'query2node', 'subquery2node', 'self_loop'}),
    'connect_sent2doc': (set(), {'document2sentence'}),
    'connect_sent2sent': (set(), {'sentence2sentence'}),
    'use_coref_edges': (set(), {'coref'}),
    'use_query_node': ({'query'}, {'query2node', 'self_loop'}),
    'use_subquery_nodes': ({'subquery'}, {'subquery2node', 'query2node', 'self_loop'}),
    'add_self_loops': (set(), {'self_loop'}),
}

@pytest.mark.parametrize('switch', list(SWITCHES))
def test_each_switch_changes_exactly_its_types(switch):
    tok = make_tok()
    on, off = build_graph(tok, **ALL_ON), build_graph(tok, **{**ALL_ON, switch: False})
    node_types, edge_types = SWITCHES[switch]
    added = Counter(describe(on)) - Counter(describe(off))
    assert {n[0] for n in added} == node_types
    assert not Counter(describe(off)) - Counter(describe(on))
    e_on, e_off = edges(on), edges(off)
    assert {e[0] for e in (e_on - e_off) + (e_off - e_on)} == edge_types
    assert all(by_type(on)[t] > 0 for t in edge_types)       # the toy exercises the rule
    assert not any(by_type(off)[t] for t in edge_types - {'query2node', 'subquery2node', 'self_loop'})

def test_switches_off_from_defaults():
    "From the config defaults too, each edge switch removes its type and nothing else."
    tok = make_tok()
    base = build_graph(tok)
    assert set(by_type(base)) == {'candidate2document', 'document2entity', 'candidate2entity', 'codocument',
                                  'comention', 'candidate2candidate', 'self_loop'}
    for switch, name in [('use_codocument_edges', 'codocument'), ('use_comention_edges', 'comention'),
                         ('add_self_loops', 'self_loop')]:
        off = build_graph(tok, **{switch: False})
        assert by_type(base) - by_type(off) == Counter({name: by_type(base)[name]})

def test_toy_counts_and_fields():
    g = build_graph(make_tok(), **ALL_ON)
    c = by_type(g)
    assert c['candidate2document'] == 2 * 4 and c['document2entity'] == 2 * 7 and c['candidate2entity'] == 2 * 4
    assert (c['codocument'], c['comention'], c['complement']) == (2 * 5, 2 * 2, 2 * 14)
    assert c['candidate2candidate'] == 2 * 3 and c['coref'] == 2 and c['entity2sentence'] == 2 * 7
    assert c['sentence2sentence'] == 2 * 2 and c['document2sentence'] == 2 * 5
    assert c['query2node'] == 2 * (g.num_nodes - 1) and c['self_loop'] == g.num_nodes
    assert c['subquery2node'] == 2 * ((1 + 2 + 2 + 3) + (1 + 3 + 2 + 3) + (1 + 2 + 1 + 3))
    nt = g.node_type
    assert g.node_support[nt == NodeType.subquery].tolist() == [0, 1, 2]
    assert g.node_span[nt == NodeType.candidate].tolist() == [[0, 1], [0, 2], [0, 3]]
    assert g.node_span[nt >= NodeType.query].tolist() == [[0, 3]] * 4
    assert (g.node_support[(nt == NodeType.candidate) | (nt == NodeType.query)] == -1).all()
    assert g.node_candidate[nt == NodeType.entity].tolist() == [-1, 2, 2, 0, -1, 1, -1]
    assert g.node_candidate[nt == NodeType.candidate].tolist() == [0, 1, 2]
    assert (g.num_candidates, g.y.tolist(), g.id) == (3, [0], 'toy')
    for k in ('node_type', 'edge_index', 'edge_type', 'node_support', 'node_span', 'node_candidate', 'y'):
        assert g[k].dtype == torch.long, k
    g.validate(raise_on_error=True)

def test_undirected_and_bidirectional_twins():
    tok = make_tok()
    g = build_graph(tok, **ALL_ON)
    gb = build_graph(tok, **{**ALL_ON, 'bidirectional_edge_types': True})
    assert torch.equal(g.edge_index, gb.edge_index)
    for t in EdgeType:
        if t.is_reverse or t == EdgeType.self_loop: continue
        fwd = [(a, b) for (n, a, b) in edges(g, {t.name}).elements()]
        assert Counter(fwd) == Counter((b, a) for a, b in fwd), t          # same type both ways
        f2 = {(a, b) for (n, a, b) in edges(gb, {t.name})}
        r2 = {(b, a) for (n, a, b) in edges(gb, {t.name + '_rev'})}
        assert f2 == r2 and f2, t                                            # twin = the reverse direction
    # forward direction: from the first-named type, or from the lower index within one type
    ei, et = gb.edge_index, gb.edge_type
    same = (et == EdgeType.codocument) | (et == EdgeType.comention) | (et == EdgeType.complement) | \
           (et == EdgeType.coref) | (et == EdgeType.sentence2sentence) | (et == EdgeType.candidate2candidate)
    assert (ei[0, same] < ei[1, same]).all()
    assert (gb.node_type[ei[0, et == EdgeType.candidate2document]] == NodeType.candidate).all()
    assert (gb.node_type[ei[0, et == EdgeType.query2node]] == NodeType.query).all()
    assert (gb.node_type[ei[0, et == EdgeType.subquery2node_rev]] != NodeType.subquery).all()
    assert EdgeType.self_loop in et and not (et > EdgeType.subquery2node_rev).any()

def test_self_loops_once_per_node():
    g = build_graph(make_tok(), **ALL_ON)
    loops = g.edge_index[:, g.edge_type == EdgeType.self_loop]
    assert torch.equal(loops[0], loops[1]) and sorted(loops[0].tolist()) == list(range(g.num_nodes))
    nl = build_graph(make_tok(), **{**ALL_ON, 'add_self_loops': False})
    assert not (nl.edge_index[0] == nl.edge_index[1]).any()

def test_config_sources():
    from hde_kit.config import load_config
    cfg = load_config(overrides=['graph.use_query_node=true', 'graph.bidirectional_edge_types=true'])
    o = graph_options(cfg)
    assert o.use_query_node and o.bidirectional_edge_types and graph_options(cfg.graph) == o
    assert graph_options() == GraphOptions()
    with pytest.raises(TypeError, match='use_codocument_edges'): graph_options(use_codoc=True)
    assert build_graph(make_tok(), cfg).num_nodes == build_graph(make_tok()).num_nodes + 1

# ---------------------------------------------------------------- against brute force on random layouts

@st.composite
def random_tok(draw):
    n_sup = draw(st.integers(0, 4)); n_cand = draw(st.integers(1, 4))
    keys = ['juan rossell', 'a', 'b', 'c']
    mentions = []
    if n_sup:
        for _ in range(draw(st.integers(0, 9))):
            s = draw(st.integers(0, n_sup - 1)); a = draw(st.integers(0, 8)); b = draw(st.integers(a + 1, 10))
            key = draw(st.sampled_from(keys)); c = draw(st.integers(-1, n_cand - 1))
            mentions.append((s, a, b, 'ner', key, c))
    sentences = [(s, a, b) for s in range(n_sup) for a, b in ((0, 4), (4, 10))]
    coref = draw(st.lists(st.lists(st.integers(0, len(mentions) - 1), min_size=2, max_size=3), max_size=2)) if len(mentions) > 1 else []
    return make_tok(mentions, sentences, coref, n_sup=n_sup, n_cand=n_cand, answer=draw(st.integers(0, n_cand - 1)))

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_tok(), st.booleans())
def test_rules_match_brute_force(tok, bidirectional):
    g = build_graph(tok, **{**ALL_ON, 'bidirectional_edge_types': bidirectional})
    ms = tok.mentions
    want = Counter()
    for a in range(len(ms)):
        for b in range(a + 1, len(ms)):
            want['codocument' if ms[a].support == ms[b].support else 'comention' if ms[a].key == ms[b].key else 'complement'] += 1
    want['candidate2document'] = len({(m.candidate, m.support) for m in ms if m.candidate >= 0})
    want['candidate2entity'] = sum(m.candidate >= 0 for m in ms)
    want['document2entity'] = len(ms)
    want['entity2sentence'] = sum(1 for m in ms for s, a, b in tok.sentences if s == m.support and m.tok_start < b and a < m.tok_end)
    want['coref'] = sum(len(set(c)) * (len(set(c)) - 1) // 2 for c in tok.coref_clusters)
    c = len(tok.candidates); want['candidate2candidate'] = c * (c - 1) // 2
    got = by_type(g)
    for name, n in want.items():
        assert got[name] + got[name + '_rev'] == 2 * n, name
        assert got[name + '_rev'] == (n if bidirectional else 0), name
    assert g.num_nodes == len(tok.support_ids) * 2 + len(ms) + c + len(tok.sentences) + 1
    if g.num_edges: assert int(g.edge_index.max()) < g.num_nodes
    g.validate(raise_on_error=True)

# ---------------------------------------------------------------- hetero view

def test_to_hetero():
    g = build_graph(make_tok(), **ALL_ON)
    h = to_hetero(g)
    assert sum(h[t.name].num_nodes for t in NodeType) == g.num_nodes
    assert sum(h[r].edge_index.shape[1] for r in h.edge_types) == g.num_edges
    for (src, rel, dst) in h.edge_types:
        ei = h[src, rel, dst].edge_index
        assert int(ei[0].max()) < h[src].num_nodes and int(ei[1].max()) < h[dst].num_nodes
    assert ('document', 'document2entity', 'entity') in h.edge_types and ('entity', 'document2entity', 'document') in h.edge_types
    assert h['candidate'].node_candidate.tolist() == [0, 1, 2] and h.y.tolist() == [0] and h.id == 'toy'
    h.validate(raise_on_error=True)
    tiny = to_hetero(build_graph(make_tok(mentions=[], sentences=[], coref=[], n_sup=0, n_cand=1)))
    assert tiny['candidate'].num_nodes == 1 and tiny['document'].num_nodes == 0 and tiny.y.tolist() == [0]

# ---------------------------------------------------------------- size limits

def test_size_limit_policy():
    tok = make_tok()
    assert drop_order(_prepare(tok)).tolist() == [2, 1]           # support 0 mentions the subject: kept
    full = build_graph(tok)
    g = build_graph(tok, max_nodes=full.num_nodes - 1)
    assert g.num_nodes <= full.num_nodes - 1 and g.num_dropped_supports == 1
    assert set(g.node_support.tolist()) - {-1} == {0, 1}
    assert build_graph(tok, max_edges=full.num_edges - 1).num_edges <= full.num_edges - 1
    with pytest.raises(GraphBuildError, match='graph too large') as e: build_graph(tok, max_nodes=5)
    assert 'do not mention the subject' in e.value.reason
    assert build_graph(tok, max_nodes=0, max_edges=None).num_dropped_supports == 0     # 0 / None: no limit

def test_size_limit_drops_the_fewest_supports():
    for tok in fake_tokenised(5, seed=3):
        full = build_graph(tok, max_nodes=None, max_edges=None)
        limit = full.num_edges * 2 // 3
        g = build_graph(tok, max_edges=limit)
        assert g.num_edges <= limit and g.num_dropped_supports >= 1
        subj = {m.support for m in tok.mentions if m.key == tok.subject_key}
        assert subj <= set(g.node_support.tolist())
        # one support fewer dropped would not fit (the policy drops the smallest number)
        order = drop_order(_prepare(tok))
        from hde_kit.graph import _assemble, graph_options as go
        keep = np.ones(len(tok.support_ids), bool); keep[order[:g.num_dropped_supports - 1]] = False
        assert _assemble(_prepare(tok), go(max_edges=limit), keep).num_edges > limit

def test_bad_examples_fail_with_reasons():
    import dataclasses
    tok = make_tok()
    cases = [(dataclasses.replace(tok, candidates=[], candidate_ids=[], candidate_keys=[]), 'no candidates'),
             (make_tok(mentions=[(0, 5, 12, 'ner', 'x', -1)], coref=[]), 'outside support 0'),
             (make_tok(mentions=[(7, 0, 1, 'ner', 'x', -1)], coref=[]), 'support 7'),
             (make_tok(mentions=[(0, 0, 1, 'ner', 'x', 5)], coref=[]), 'candidate 5'),
             (make_tok(coref=[[0, 99]]), 'coreference'),
             (make_tok(sentences=[(0, 5, 20)]), 'sentence span'),
             (make_tok(answer=9), 'answer_index 9')]
    for bad, reason in cases:
        with pytest.raises(GraphBuildError, match=reason): build_graph(bad)
    res = build_graphs([tok] + [dataclasses.replace(b, id=f"bad{i}") for i, (b, _) in enumerate(cases)], progress=False)
    assert [g.id for g in res.graphs] == ['toy'] and len(res.failed) == len(cases)
    assert res.failed['bad0'] == 'no candidates'
    assert build_graph(make_tok(answer=None)).y.tolist() == [-1]

def test_build_graphs_two_processes_same_result():
    toks = list(fake_tokenised(40, seed=5))
    one, two = build_graphs(toks, progress=False), build_graphs(toks, num_proc=2, progress=False)
    assert [g.id for g in one.graphs] == [g.id for g in two.graphs] == [t.id for t in toks]
    for a, b in zip(one.graphs, two.graphs):
        assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_type, b.edge_type)

# ---------------------------------------------------------------- statistics

def test_graph_stats_and_hops():
    tok = make_tok()
    g = build_graph(tok)
    s = graph_stats(g)
    assert (s['answer_hops'], s['answer_reachable'], s['answer_mentioned']) == (2, True, True)
    assert s['nodes']['entity'] == 7 and s['edges']['comention'] == 4 and s['num_edges'] == g.num_edges
    assert s['cross_document_ratio'] == pytest.approx(1 / 5)
    assert answer_hops(g, target=2) == 1 and answer_hops(g, target=1) is None   # spain: no shared key with the chain
    assert answer_hops(build_graph(tok, use_comention_edges=False)) is None
    assert graph_stats(build_graph(make_tok(mentions=[(1, 4, 5, 'candidate', 'cuba', 0)], coref=[])))['answer_hops'] is None
    lone = graph_stats(build_graph(make_tok(mentions=[(0, 0, 2, 'subject', 'juan rossell', -1)], coref=[])))
    assert lone['candidates_without_mention'] == 3 and lone['answer_mentioned'] is False

def test_dataset_stats_format_and_plot(tmp_path):
    graphs = build_graphs(list(fake_tokenised(30, seed=1)) + [make_tok(answer=None, id='u')], progress=False).graphs
    ds = dataset_graph_stats(graphs)
    assert ds['num_graphs'] == 31 and ds['labelled'] == 30 and sum(ds['answer_hops'].values()) == 30
    assert ds['nodes']['min'] <= ds['nodes']['median'] <= ds['nodes']['max']
    assert json.loads(json.dumps(ds)) == ds
    assert set(ds['edges_by_type']) >= {'codocument', 'comention', 'self_loop'}
    text = format_graph_stats({**ds, 'failed': 2})
    assert 'answer hops' in text and '2 could not be built' in text and 'comention' in text
    fig = plot_graph_stats(ds, path=tmp_path / 'stats.png')
    assert len(fig.axes) == 3 and (tmp_path / 'stats.png').stat().st_size > 1000

# ---------------------------------------------------------------- graph cache

def test_cache_round_trip_streams_and_detects_damage(tmp_path):
    toks = list(fake_tokenised(40, seed=2))
    items = list(iter_graphs(toks)) + [('broken', 'no candidates')]
    cache = GraphCache(graph_cache_key('tok'), tmp_path, shard_size=16)
    assert cache.load() is None
    res = cache.write(iter(items))
    assert res.from_cache and len(res.graphs) == 40 and res.failed == {'broken': 'no candidates'}
    assert len(res.graphs.shards) == 3 and not list((tmp_path / 'graphs').glob('.*'))
    for (id_, want), got in zip(items, res.graphs):
        assert got.id == id_
        for k in ('edge_index', 'edge_type', 'node_type', 'node_support', 'node_span', 'node_candidate', 'node_key', 'y'):
            assert torch.equal(got[k], want[k]) and got[k].dtype == torch.long, k
    assert res.graphs[33].id == toks[33].id and res.graphs[-1].id == toks[-1].id
    assert not any(p.suffix == '.pkl' for p in cache.dir.iterdir())
    # corrupted shard
    shard = cache.dir / 'shard_00002.safetensors'
    shard.write_bytes(shard.read_bytes()[:-3] + b'xyz')
    with pytest.warns(GraphCacheWarning, match='corrupted'): assert cache.load() is None
    assert not cache.dir.exists()
    # foreign / old index
    cache.write(iter(items))
    ix = json.loads((cache.dir / 'index.json').read_text()); ix['version'] = 99
    (cache.dir / 'index.json').write_text(json.dumps(ix))
    with pytest.warns(GraphCacheWarning, match='version 99'): assert cache.load() is None
    cache.write(iter(items)); (cache.dir / 'index.json').write_text('{not json')
    with pytest.warns(GraphCacheWarning, match='unreadable'): assert cache.load() is None

def test_interrupted_write_leaves_no_cache(tmp_path):
    def items():
        yield from iter_graphs(list(fake_tokenised(5)))
        raise KeyboardInterrupt
    cache = GraphCache('k', tmp_path, shard_size=2)
    with pytest.raises(KeyboardInterrupt): cache.write(items())
    assert cache.load() is None and not list((tmp_path / 'graphs').iterdir())

def test_cache_key_shaped_by_graph_options_only():
    from hde_kit.config import load_config
    base = graph_cache_key('t')
    assert graph_cache_key('t', load_config(overrides=['graph.num_proc=8'])) == base
    for opt in GraphOptions.__dataclass_fields__:
        v = getattr(GraphOptions(), opt)
        assert graph_cache_key('t', {opt: (not v) if isinstance(v, bool) else 7}) != base, opt
    assert graph_cache_key('u') != base

# ---------------------------------------------------------------- through the tokenisation cache

def test_switching_a_graph_option_never_retokenises(tmp_path):
    from hde_kit import text
    from hde_kit.config import load_config
    from hde_kit.synthetic import generate
    exs = generate(12, hops=2, seed=4)
    first = build_dataset_graphs(exs, load_config(), cache_dir=tmp_path, progress=False)
    assert len(first) == 12 and not first.failed
    calls = text.TOKENIZER_CALLS
    for over in (['graph.use_sentence_nodes=true'], ['graph.use_query_node=true', 'graph.bidirectional_edge_types=true'], []):
        res = build_dataset_graphs(exs, load_config(overrides=over), cache_dir=tmp_path, progress=False)
        assert len(res) == 12
    assert text.TOKENIZER_CALLS == calls
    assert len(list((tmp_path / 'graphs').iterdir())) == 3
    changed = build_dataset_graphs(exs, load_config(overrides=['text.stride=32']), cache_dir=tmp_path, progress=False)
    assert text.TOKENIZER_CALLS > calls and changed.cache_key != first.cache_key   # a text option does re-tokenise

@pytest.mark.parametrize('k', [1, 2, 3])
def test_synthetic_answer_is_exactly_k_hops(k, tmp_path):
    from hde_kit.synthetic import generate
    res = build_dataset_graphs(generate(25, hops=k, num_docs=2 * k + 3, seed=20 + k), cache_dir=tmp_path, progress=False)
    assert not res.failed
    assert Counter(answer_hops(g) for g in res.graphs) == {k: 25}

# ---------------------------------------------------------------- the real WikiHop records

def test_real_wikihop_graphs(shared_data, tmp_path):
    from hde_kit.data import read_examples
    files = sorted((shared_data / 'wikihop').glob('*.json'))
    if not files: pytest.skip(f"no WikiHop records in {shared_data / 'wikihop'}")
    for f in files:
        exs = read_examples(f).examples
        res = build_dataset_graphs(exs, cache_dir=tmp_path, progress=False)
        assert not res.failed and len(res) == len(exs)
        ds = dataset_graph_stats(res.graphs)
        assert ds['nodes']['min'] >= 2 and ds['edges']['min'] > ds['nodes']['min']
        assert 0 < ds['density']['mean'] < 1
        for g, ex in zip(res.graphs, exs):
            assert g.id == ex.id and int(g.y) == ex.answer_index and g.num_candidates == len(ex.candidates)
            assert (g.node_type == NodeType.document).sum() == len(ex.supports)
            g.validate(raise_on_error=True)
        if 'first22' in f.name:
            assert ds['num_graphs'] == 22 and ds['answer_mentioned'] >= 0.8   # trimmed fixtures may lose the answer
            assert 0 < ds['answer_reachable'] <= ds['answer_mentioned']
            assert ds['cross_document_ratio']['mean'] > 0.1

def test_cli_graphs_stats(shared_data, tmp_path, capsys):
    from hde_kit.cli import main
    f = shared_data / 'wikihop' / 'wikihop_train_first22_ml4g.json'
    if not f.exists(): pytest.skip(f"{f} not present")
    assert main(['graphs', 'stats', str(f), '--cache-dir', str(tmp_path), '--json']) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats['num_graphs'] == 22 and stats['failed'] == 0
    assert main(['graphs', 'stats', str(f), 'graph.use_query_node=true', '--cache-dir', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert 'query2node' in out and 'answer hops' in out

def test_batching_and_dataloader_over_the_cache(tmp_path):
    from torch_geometric.data import Batch
    from torch_geometric.loader import DataLoader
    toks = list(fake_tokenised(20, seed=9))
    res = GraphCache('b', tmp_path, shard_size=8).write(iter_graphs(toks))
    batch = Batch.from_data_list(res.graphs[:3])
    assert batch.num_graphs == 3 and batch.y.shape == (3,) and batch.id == [t.id for t in toks[:3]]
    assert int(batch.edge_index.max()) == batch.num_nodes - 1
    seen = []
    for b in DataLoader(res.graphs, batch_size=6, shuffle=True):
        assert (b.node_candidate[b.node_type == NodeType.candidate] < b.num_candidates[b.batch[b.node_type == NodeType.candidate]]).all()
        seen += b.id
    assert sorted(seen) == sorted(t.id for t in toks)


def test_graph_size_counts_exactly_what_assemble_builds():
    "The size check counts nodes and edges without building pairs; it must agree with the built graph for every switch."
    import dataclasses, random
    import numpy as np
    from hde_kit.graph import _prepare, _assemble, graph_size
    switches = [k for k, v in ALL_ON.items() if isinstance(v, bool)]
    rng = random.Random(0)
    for tok in fake_tokenised(12, seed=11):
        n = len(tok.mentions)   # coreference clusters (with a repeated index) and sentences overlapping mentions
        clusters = [rng.sample(range(n), rng.randint(2, 6)) + [0] for _ in range(3)]
        sents = tok.sentences + [(s, a, a + 3) for s, a, _ in tok.sentences[:5]]
        p = _prepare(dataclasses.replace(tok, coref_clusters=clusters, sentences=sents))
        for _ in range(8):
            o = graph_options(None, **{s: rng.random() < 0.6 for s in switches})
            keep = np.array([rng.random() < 0.7 for _ in range(p.num_supports)])
            g = _assemble(p, o, keep)
            assert graph_size(p, o, keep) == (g.num_nodes, g.edge_index.shape[1]), o


ITEM2 = {   # inputs that pass validation and used to exhaust memory before the size check
    'one support repeating a candidate 20,000 times': ['paris france ' * 20000],
    'a 900 KB support': [('paris is in france . ' * 45000)],
    '10,000 supports': [f'paris is near france {i} .' for i in range(10000)],
}

@pytest.mark.parametrize('name', list(ITEM2) + ['5,000 candidates'])
def test_graph_building_memory_is_bounded_by_the_limits(name):
    "Peak memory (tracemalloc: numpy and Python allocations) of build_graph stays small however large the input."
    import tracemalloc
    from hde_kit.data import Example
    from hde_kit.text import tokenise_example
    cands = ['france'] + ([f'c{i}' for i in range(4999)] if name == '5,000 candidates' else ['spain'])
    ex = Example('x', 'located_in paris', ITEM2.get(name, ['paris is in france .'] * 3), cands, 'france')
    tok = tokenise_example(ex)
    tracemalloc.start()
    try:
        with pytest.raises(GraphBuildError, match='graph too large'): build_graph(tok, max_nodes=2000, max_edges=200_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally: tracemalloc.stop()
    assert peak < 100e6, f"{peak / 1e6:.0f} MB"       # before the size check counted, these asked for 2.4 GB to 121 GiB
