"""The ablation switches: each changes the graph or the model as documented, and each trains end to end on the
synthetic data (a tiny 1-hop run of one epoch)."""
from collections import Counter

import numpy as np
import pytest
import torch

from hde_kit.config import ConfigError, load_config
from hde_kit.graph import EdgeType, NodeType, build_graph, fake_tokenised

TINY = ['data.hops=1', 'data.num_candidates=3', 'data.n_train=16', 'data.n_dev=4', 'gnn.hidden_size=16', 'gnn.num_layers=1',
        'gnn.heads=2', 'train.epochs=1', 'train.batch_size=4', 'train.num_threads=1']


def pairs(g, types=None) -> Counter:
    keep = torch.ones(g.edge_type.numel(), dtype=torch.bool) if types is None else torch.isin(g.edge_type, torch.tensor(types))
    return Counter(zip(g.edge_index[0, keep].tolist(), g.edge_index[1, keep].tolist(), g.edge_type[keep].tolist()))


def test_random_edges_rewire_every_edge_but_self_loops_and_candidate_pairs():
    tok = next(fake_tokenised(1, num_supports=6, num_candidates=5, seed=3))
    base = build_graph(tok, use_sentence_nodes=True, use_query_node=True)
    rand = build_graph(tok, use_sentence_nodes=True, use_query_node=True, use_random_edges=True)
    kept = [int(EdgeType.self_loop), int(EdgeType.candidate2candidate)]
    assert torch.equal(rand.node_type, base.node_type)
    assert Counter(rand.edge_type.tolist()) == Counter(base.edge_type.tolist())            # types kept, counts kept
    assert pairs(rand, kept) == pairs(base, kept)                                           # these stay where they were
    moved = ~torch.isin(rand.edge_type, torch.tensor(kept))
    ei = rand.edge_index[:, moved]
    assert not (ei[0] == ei[1]).any()                                                       # no self loop
    assert len(set(zip(*rand.edge_index.tolist()))) == rand.edge_index.size(1)              # no duplicate edge
    same = sum((pairs(rand) & pairs(base)).values()) - sum(pairs(base, kept).values())
    assert same < 0.1 * int(moved.sum())                                                    # almost every edge moved
    again = build_graph(tok, use_sentence_nodes=True, use_query_node=True, use_random_edges=True)
    assert torch.equal(again.edge_index, rand.edge_index)                                   # seeded per example


def test_only_sentences_with_a_mention():
    tok = next(fake_tokenised(1, num_supports=8, num_candidates=5, sentences_per_support=8, mentions_per_support=3, seed=1))
    with_mention = {(s, a, b) for s, a, b in tok.sentences
                    if any(m.support == s and m.tok_start < b and a < m.tok_end for m in tok.mentions)}
    assert 0 < len(with_mention) < len(tok.sentences)       # the toy has sentences of both kinds
    all_s = build_graph(tok, use_sentence_nodes=True)
    some = build_graph(tok, use_sentence_nodes=True, use_all_sentences=False)
    sent = lambda g: {(int(g.node_support[i]), *map(int, g.node_span[i])) for i in torch.nonzero(g.node_type == NodeType.sentence).view(-1)}
    assert sent(all_s) == set(map(tuple, tok.sentences)) and sent(some) == with_mention
    assert int((some.edge_type == EdgeType.entity2sentence).sum()) == int((all_s.edge_type == EdgeType.entity2sentence).sum())
    assert build_graph(tok, use_all_sentences=False).num_nodes == build_graph(tok).num_nodes   # nothing without sentence nodes


@pytest.mark.parametrize('parts, key, value', [('kv', True, True), ('k', True, False), ('v', False, True)])
def test_key_only_and_value_only_edge_type_embeddings(parts, key, value):
    from hde_kit.gnn import GNNStack, GraphAttention
    cfg = load_config(overrides=[f'gnn.edge_type_embeddings={parts}', 'gnn.hidden_size=16', 'gnn.heads=2'])
    stack = GNNStack.from_config(cfg.gnn, num_edge_types=len(EdgeType))
    att = [m for m in stack.modules() if isinstance(m, GraphAttention)]
    assert att and all((m.key_type_emb is not None, m.value_type_emb is not None) == (key, value) for m in att)
    off = GNNStack.from_config(load_config(overrides=['gnn.use_edge_type_embeddings=false', f'gnn.edge_type_embeddings={parts}']).gnn,
                               num_edge_types=len(EdgeType))
    assert all(m.key_type_emb is None and m.value_type_emb is None for m in off.modules() if isinstance(m, GraphAttention))


def test_edge_type_embeddings_config_is_checked():
    with pytest.raises(ConfigError, match="gnn.edge_type_embeddings"): load_config(overrides=['gnn.edge_type_embeddings=q'])


@pytest.mark.parametrize('switch', ['graph.use_random_edges=true', 'graph.use_all_sentences=false', 'gnn.edge_type_embeddings=k',
                                    'gnn.edge_type_embeddings=v'])
def test_each_switch_trains_end_to_end(switch, tmp_path):
    from hde_kit.train import train
    extra = ['graph.use_sentence_nodes=true'] if 'sentences' in switch else []
    cfg = load_config(overrides=[*TINY, *extra, switch, f'train.cache_dir={tmp_path / "cache"}'])
    res = train(cfg, run_dir=tmp_path / 'run', progress=False)
    from hde_kit.train import read_metrics
    losses = [r['loss'] for r in read_metrics(res.run_dir) if r.get('kind') == 'train']
    assert res.dev is not None and res.dev.total == 4 and losses and all(np.isfinite(losses))
