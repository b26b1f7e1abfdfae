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
                                    'gnn.edge_type_embeddings=v', 'gnn.full_attention=true', 'gnn.core=sage_core',
                                    'gnn.core=linear2', 'gnn.share_core=true', 'gnn.similar_bidirectional_edge_types=true'])
def test_each_switch_trains_end_to_end(switch, tmp_path):
    from hde_kit.train import train
    extra = ['graph.use_sentence_nodes=true'] if 'sentences' in switch else ['graph.bidirectional_edge_types=true'] if 'similar' in switch else []
    cfg = load_config(overrides=[*TINY, *extra, switch, f'train.cache_dir={tmp_path / "cache"}'])
    res = train(cfg, run_dir=tmp_path / 'run', progress=False)
    from hde_kit.train import read_metrics
    losses = [r['loss'] for r in read_metrics(res.run_dir) if r.get('kind') == 'train']
    assert res.dev is not None and res.dev.total == 4 and losses and all(np.isfinite(losses))


def test_full_attention_adds_every_unconnected_pair_as_its_own_type():
    from torch_geometric.data import Batch
    from hde_kit.model import HDEModel, UNCONNECTED, with_full_attention
    graphs = [build_graph(t) for t in fake_tokenised(2, num_supports=3, num_candidates=3, mentions_per_support=2, seed=4)]
    batch = Batch.from_data_list(graphs)
    ei, et = with_full_attention(batch)
    n = [g.num_nodes for g in graphs]
    graph_of = torch.repeat_interleave(torch.arange(2), torch.tensor(n))
    assert bool((graph_of[ei[0]] == graph_of[ei[1]]).all())                          # never across graphs
    off_diagonal = ei[0] != ei[1]
    assert int(off_diagonal.sum()) == sum(k * (k - 1) for k in n)                    # every ordered pair of distinct nodes
    assert len(set(zip(*ei.tolist()))) == ei.size(1)                                 # each once
    assert torch.equal(ei[:, :batch.edge_index.size(1)], batch.edge_index)           # the graph's own edges first, as they were
    assert bool((et[batch.edge_index.size(1):] == UNCONNECTED).all()) and UNCONNECTED == len(EdgeType)
    cfg = load_config(overrides=['gnn.full_attention=true', 'gnn.hidden_size=16', 'gnn.heads=2', 'gnn.num_layers=1'])
    model = HDEModel(cfg, 8)
    assert model.gnn.num_edge_types == len(EdgeType) + 1


def test_encoder_freeze_epochs_keeps_the_encoder_still_then_trains_it(tmp_path):
    from hde_kit.train import train, read_checkpoint
    over = [*TINY, 'encoder.kind=scratch', 'encoder.hidden_size=16', 'encoder.num_layers=1', 'encoder.heads=2',
            'train.epochs=2', 'train.encoder_freeze_epochs=1', 'train.save_every_steps=1', 'train.keep_last=100',
            f'train.cache_dir={tmp_path / "cache"}']
    run = train(load_config(overrides=over), run_dir=tmp_path / 'run', progress=False).run_dir
    cks = sorted((run / 'checkpoints').glob('step-*'))                              # steps 1..8, 4 per epoch
    weights = [read_checkpoint(c, optimizer=False).weights for c in cks]
    enc = lambda w: {k: v for k, v in w.items() if k.startswith('encoder.')}
    rest = lambda w: {k: v for k, v in w.items() if k.startswith('model.')}
    assert enc(weights[0]) and len(weights) == 8
    first, end1, end2 = weights[0], weights[3], weights[7]
    assert all(torch.equal(first[k], end1[k]) for k in enc(first))                 # epoch 1: the encoder did not move
    assert not all(torch.equal(first[k], end1[k]) for k in rest(first))            # while the model did
    assert not all(torch.equal(end1[k], end2[k]) for k in enc(end1))               # epoch 2: the encoder trains


def test_sage_core_and_linear2_cores():
    from hde_kit.gnn import GNNStack, MeanNeighbours, ReluMessages
    x = torch.randn(6, 8)
    ei = torch.tensor([[0, 1, 2, 4, 5], [3, 3, 3, 0, 0]])
    for core, cls in (('sage_core', MeanNeighbours), ('linear2', ReluMessages)):
        stack = GNNStack.from_config(load_config(overrides=[f'gnn.core={core}', 'gnn.hidden_size=8', 'gnn.num_layers=2']).gnn,
                                     num_edge_types=len(EdgeType))
        assert all(isinstance(l.core, cls) for l in stack.layers)
    mean = MeanNeighbours()(x, ei)
    assert torch.allclose(mean[3], x[:3].mean(0)) and torch.allclose(mean[0], x[[4, 5]].mean(0)) and not mean[1].any()
    lin = ReluMessages(8)
    assert torch.allclose(lin(x, ei)[3], torch.relu(lin.message(x[:3])).mean(0), atol=1e-6)


@pytest.mark.parametrize('part', ['core', 'gate', 'block'])
def test_separate_weight_sharing(part):
    from hde_kit.gnn import GNNStack
    over = ['gnn.hidden_size=16', 'gnn.heads=2', 'gnn.num_layers=3', 'gnn.use_transformer_block=true']
    free = GNNStack.from_config(load_config(overrides=over).gnn, num_edge_types=len(EdgeType))
    tied = GNNStack.from_config(load_config(overrides=[*over, f'gnn.share_{part}=true']).gnn, num_edge_types=len(EdgeType))
    attr = {'core': 'core', 'gate': 'gate', 'block': 'ffn'}[part]
    others = [a for a in ('core', 'gate', 'ffn') if a != attr]
    assert all(getattr(l, attr) is getattr(tied.layers[0], attr) for l in tied.layers)            # tied
    assert all(getattr(l, a) is not getattr(tied.layers[0], a) for l in tied.layers[1:] for a in others)   # the rest free
    size = lambda m: sum(p.numel() for p in m.parameters())
    part_size = sum(size(getattr(free.layers[0], a)) for a in ([attr] if part != 'block' else ['norm1', 'norm2', 'ffn']))
    assert size(free) - size(tied) == 2 * part_size                                             # two copies fewer
    x, ei = torch.randn(5, 16), torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 0]])
    tied(x, ei, torch.zeros(5, dtype=torch.long)).sum().backward()
    assert all(p.grad is not None for p in getattr(tied.layers[0], attr).parameters())            # the shared part learns


def test_similar_bidirectional_edge_types_tie_each_reverse_type_to_its_forward_type():
    from hde_kit.gnn import GraphAttention
    from hde_kit.model import HDEModel
    cfg = load_config(overrides=['gnn.similar_bidirectional_edge_types=true', 'graph.bidirectional_edge_types=true',
                                 'gnn.hidden_size=16', 'gnn.heads=2', 'gnn.num_layers=1'])
    model = HDEModel(cfg, 8)
    att = next(m for m in model.modules() if isinstance(m, GraphAttention))
    with torch.no_grad():
        for p in model.parameters(): p.add_(torch.randn_like(p))          # any weights: the tie is structural
    for table in (att.key_type_emb, att.value_type_emb):
        for t in EdgeType:
            if t.is_reverse:
                gap = table[int(t)] - table[int(t.reverse())]
                assert torch.allclose(gap, table[int(EdgeType.comention_rev)] - table[int(EdgeType.comention)])   # one shared vector
        assert not torch.allclose(table[int(EdgeType.comention)], table[int(EdgeType.codocument)])   # forward types free
    plain = HDEModel(load_config(overrides=['gnn.hidden_size=16', 'gnn.heads=2', 'gnn.num_layers=1']), 8)
    size = lambda m: sum(p.numel() for p in m.parameters())
    assert size(model) == size(plain) + 2 * 16                             # one direction vector for keys, one for values
