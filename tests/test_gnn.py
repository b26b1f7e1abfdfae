"""Tests of hde_kit.gnn that a notebook does badly: property-based fuzzing of kernel equivalence over random
graphs (duplicates, isolated targets, self loops, empty graphs), float32 tolerances, and every core x wrapper
combination learning. The notebook nbs/07_gnn.ipynb shows the same properties on fixed examples."""
from __future__ import annotations
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st, HealthCheck

import hde_kit.gnn as gnn
from hde_kit.gnn import (CORES, RELATIONAL_CORES, EdgeLayout, GNNStack, GraphAttention, PyGCore, choose_kernel,
                         make_layer)

@pytest.fixture(autouse=True, scope='module')
def one_thread():
    "Tiny graphs: one thread avoids OpenMP stragglers on a shared machine (restored afterwards)."
    old = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

KERNELS = ('sparse', 'sparse_csr', 'dense', 'padded')

def random_graph(n, e, seed, duplicates=False, isolated=0):
    "e random edges on n nodes; distinct pairs unless `duplicates`; targets 0..isolated-1 get no incoming edge."
    g = torch.Generator().manual_seed(seed)
    if duplicates: idx = torch.randint(0, n * n, (e,), generator=g)
    else: idx = torch.randperm(n * n, generator=g)[:min(e, n * n)]
    ei = torch.stack([idx % n, idx // n])
    return ei[:, ei[1] >= isolated]

def run(layer, kernel, x, ei, et, seed=0, return_attention=True):
    "Outputs, attention and every gradient of one forward+backward (fixed dropout seed)."
    layer.kernel = kernel
    torch.manual_seed(seed)
    x = x.clone().requires_grad_(True)
    res = layer(x, ei, et, return_attention=return_attention)
    out, alpha = (res[0], res[1][1]) if return_attention else (res, None)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    grads = [g if g is not None else torch.zeros_like(t)        # no edges: nothing reaches the projections
             for g, t in [(x.grad, x)] + [(p.grad, p) for p in layer.parameters()]]
    layer.zero_grad()
    return [t.detach() for t in ([out] if alpha is None else [out, alpha]) + grads]

def rel_err(a, b):
    return max(float((u - v).abs().max() / max(1.0, float(v.abs().max()))) if u.numel() else 0.0 for u, v in zip(a, b))

def make_attention(dim, heads, types, kv, relational, dropout, dtype, seed=0):
    torch.manual_seed(seed)
    layer = GraphAttention(dim, heads, types, kv, dropout=dropout, relational=relational).to(dtype)
    with torch.no_grad():
        for p in layer.parameters(): p.add_(0.3 * torch.randn_like(p))
    return layer

# ------------------------------------------------------------------------------------------ kernel equivalence

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 30), density=st.floats(0.0, 0.6), seed=st.integers(0, 10**6),
       types=st.sampled_from([0, 1, 3]), kv=st.sampled_from([True, 'k', 'v', False]), relational=st.booleans(),
       duplicates=st.booleans(), isolated=st.integers(0, 3), train=st.booleans(), heads=st.sampled_from([1, 2, 4]))
def test_kernels_agree_float64(n, density, seed, types, kv, relational, duplicates, isolated, train, heads):
    relational = relational and types > 0
    ei = random_graph(n, int(density * n * n), seed, duplicates, isolated)
    et = torch.randint(0, max(types, 1), (ei.size(1),), generator=torch.Generator().manual_seed(seed))
    layer = make_attention(8, heads, types, kv, relational, 0.25, torch.float64, seed).train(train)
    x = torch.randn(n, 8, dtype=torch.float64)
    ref = run(layer, 'sparse', x, ei, et, seed)
    assert rel_err(run(layer, 'sparse_csr', x, ei, et, seed), ref) < 1e-10
    simple = not EdgeLayout(ei, et, n, types).has_duplicates(relational)
    if simple:
        assert rel_err(run(layer, 'dense', x, ei, et, seed), ref) < 1e-10
        if not train:   # SDPA path
            assert rel_err(run(layer, 'dense', x, ei, et, seed, False), run(layer, 'sparse', x, ei, et, seed, False)) < 1e-10
    else:
        with pytest.raises(ValueError, match='duplicate edges'): run(layer, 'dense', x, ei, et, seed)
    # attention sums to one over each target's incoming edges; isolated targets: zero aggregation
    layer.eval(); layer.kernel = 'auto'
    out, (_, alpha) = layer(x, ei, et, return_attention=True)
    sums = torch.zeros(n, heads, dtype=x.dtype).index_add_(0, ei[1], alpha)
    has_in = torch.zeros(n, dtype=torch.bool); has_in[ei[1]] = True
    assert torch.allclose(sums[has_in], torch.ones(1, dtype=x.dtype))
    assert torch.allclose(out[~has_in], layer.out_proj.bias.expand(int((~has_in).sum()), -1))

@pytest.mark.parametrize('types,kv,relational', [(0, False, False), (5, True, False), (5, True, True)])
def test_kernels_agree_float32(types, kv, relational):
    "The acceptance tolerance: 1e-5 in float32 (relative to each tensor's scale, for sums of many gradients)."
    n = 200
    ei = random_graph(n, 2000, 1, isolated=2)
    et = torch.randint(0, max(types, 1), (ei.size(1),))
    layer = make_attention(64, 4, types, kv, relational, 0.1, torch.float32).train()
    x = torch.randn(n, 64)
    ref = run(layer, 'sparse', x, ei, et)
    for kernel in ('sparse_csr', 'dense', 'padded'):
        assert rel_err(run(layer, kernel, x, ei, et), ref) < 1e-5, kernel

def test_empty_graph_and_single_node():
    layer = GraphAttention(8, 2, 3).eval()
    for kernel in ('auto',) + KERNELS:
        layer.kernel = kernel
        out, (_, alpha) = layer(torch.randn(4, 8), torch.empty(2, 0, dtype=torch.long),
                                torch.empty(0, dtype=torch.long), return_attention=True)
        assert alpha.shape == (0, 2) and torch.allclose(out, layer.out_proj.bias.expand(4, -1))
        out = layer(torch.randn(1, 8), torch.tensor([[0], [0]]), torch.tensor([1]))
        assert out.shape == (1, 8) and torch.isfinite(out).all()

def test_equals_multihead_attention_on_complete_graph():
    n, dim, heads = 17, 24, 3
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    with torch.no_grad(): mha.in_proj_bias.normal_(); mha.out_proj.bias.normal_()
    layer = GraphAttention(dim, heads).eval()
    with torch.no_grad():
        layer.in_proj.weight.copy_(mha.in_proj_weight); layer.in_proj.bias.copy_(mha.in_proj_bias)
        layer.out_proj.weight.copy_(mha.out_proj.weight); layer.out_proj.bias.copy_(mha.out_proj.bias)
    x = torch.randn(n, dim)
    ei = torch.cartesian_prod(torch.arange(n), torch.arange(n)).T[:, torch.randperm(n * n)]   # any edge order
    ref, w = mha(x[None], x[None], x[None], average_attn_weights=False)
    for kernel in ('auto',) + KERNELS:
        layer.kernel = kernel
        out, (_, alpha) = layer(x, ei, None, return_attention=True)
        assert torch.allclose(out, ref[0], atol=1e-5), kernel
        assert torch.allclose(alpha, w[0][:, ei[1], ei[0]].T, atol=1e-6), kernel

def test_low_precision_inputs():
    "bf16 (autocast-style) inputs: the CSR kernel computes in float32 and returns bf16; all kernels stay close."
    n = 60
    ei = random_graph(n, 400, 3); et = torch.randint(0, 3, (ei.size(1),))
    layer = make_attention(32, 4, 3, True, False, 0.0, torch.bfloat16).eval()
    x = torch.randn(n, 32).bfloat16()
    outs = {}
    for kernel in KERNELS:
        layer.kernel = kernel
        outs[kernel] = layer(x, ei, et)
        assert outs[kernel].dtype == torch.bfloat16
    for kernel in ('sparse_csr', 'dense', 'padded'):
        assert (outs[kernel].float() - outs['sparse'].float()).abs().max() < 0.1

def test_padded_kernel_on_a_batch_of_graphs():
    "A PyG-style batch (graphs of different sizes, consecutive node ids): the padded kernel matches the reference."
    from hde_kit.gnn import graph_segments
    sizes, parts, off = [30, 7, 25, 60], [], 0
    for i, s in enumerate(sizes):
        parts.append(random_graph(s, s * s // 4, 20 + i, isolated=1 if i == 2 else 0) + off); off += s
    ei = torch.cat(parts, 1); et = torch.randint(0, 3, (ei.size(1),))
    assert graph_segments(ei, off).tolist() == sizes
    for kv, rel in ((False, False), (True, False), (True, True)):
        layer = make_attention(32, 4, 3, kv, rel, 0.2, torch.float32).train()
        x = torch.randn(off, 32)
        for ret in (True, False):
            ref = run(layer, 'sparse', x, ei, et, return_attention=ret)
            assert rel_err(run(layer, 'padded', x, ei, et, return_attention=ret), ref) < 1e-5, (kv, rel, ret)

# ------------------------------------------------------------------------------------------ dispatcher

def test_dispatcher_choice_matches_kernels():
    layer = make_attention(64, 4, 3, True, False, 0.0, torch.float32).eval()
    seen = set()
    for n, num_edges in [(64, 40), (400, 800), (400, 5000), (300, 60000)]:
        ei = random_graph(n, num_edges, 7); et = torch.randint(0, 3, (ei.size(1),))
        x = torch.randn(n, 64)
        expected = choose_kernel(n, n, ei.size(1), 4, 16, 'cpu', typed=True)
        out = run(layer, 'auto', x, ei, et, return_attention=False)
        assert layer.last_kernel == expected
        seen.add(expected)
        assert rel_err(out, run(layer, 'sparse', x, ei, et, return_attention=False)) < 1e-5
    assert 'dense' in seen and seen & {'sparse', 'sparse_csr'}

def test_cost_model_extremes():
    "Whatever the fitted constants: tiny graphs go sparse, large sparse graphs CSR, nearly complete ones dense."
    assert choose_kernel(2048, 2048, 41943, 4, 64) == 'sparse_csr'
    assert choose_kernel(2048, 2048, int(0.9 * 2048**2), 4, 64) == 'dense'
    assert choose_kernel(32, 32, 5, 4, 64) in ('sparse', 'sparse_csr', 'dense')
    assert choose_kernel(2048, 2048, int(0.9 * 2048**2), 4, 64, dense_ok=False) != 'dense'

def test_dispatcher_never_dense_with_duplicates(monkeypatch):
    "Even when the cost model wants dense, a graph with duplicate edges goes to a sparse kernel."
    monkeypatch.setattr(gnn, 'choose_kernel', lambda *a, dense_ok=True, **k: 'dense' if dense_ok else 'sparse_csr')
    layer = GraphAttention(16, 2, 2).eval()
    ei = random_graph(20, 60, 0); et = torch.randint(0, 2, (60,))
    layer(torch.randn(20, 16), ei, et); assert layer.last_kernel == 'dense'
    ei2, et2 = torch.cat([ei, ei[:, :3]], 1), torch.cat([et, et[:3]])
    layer(torch.randn(20, 16), ei2, et2); assert layer.last_kernel == 'sparse_csr'

def test_dispatcher_memory_guard():
    assert choose_kernel(100_000, 100_000, 10**9, 4, 32, 'cpu') != 'dense'

# ------------------------------------------------------------------------------------------ cores and wrappers

@pytest.mark.parametrize('core', CORES)
def test_every_parameter_learns(core):
    n, types = 20, 3
    ei = random_graph(n, 80, 5); et = torch.arange(ei.size(1)) % types
    for relational in ((False, True) if core in RELATIONAL_CORES and core != 'rgcn' else (False,)):
        for gate in (False, True):
            for block in (False, True):
                for share in (False, True):
                    torch.manual_seed(0)
                    stack = GNNStack(16, num_layers=2, core=core, heads=2, dropout=0.0, num_edge_types=types,
                                     use_gating=gate, use_transformer_block=block, share_weights=share,
                                     relational=relational).train()
                    if core == 'sage_core' and not (gate or block):   # a parameter-free core alone: nothing to learn
                        assert not list(stack.parameters()); continue
                    opt = torch.optim.SGD(stack.parameters(), lr=0.1)
                    x = torch.randn(n, 16)
                    before = [p.detach().clone() for p in stack.parameters()]
                    readout = torch.randn(n, 16)      # a loss that LayerNorm's output does not make constant
                    (stack(x, ei, et) * readout).sum().backward()
                    no_grad = [k for k, p in stack.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
                    assert not no_grad, (core, relational, gate, block, share, no_grad)
                    opt.step()
                    assert all(not torch.equal(b, p) for b, p in zip(before, stack.parameters()))

@pytest.mark.parametrize('core', ['gat', 'gatv2', 'transformer'])
def test_pyg_attention_in_input_order(core):
    n = 25
    ei = random_graph(n, 120, 9); et = torch.randint(0, 3, (ei.size(1),))
    layer = PyGCore(core, 16, heads=2, num_edge_types=3).eval()
    out, (ei_back, alpha) = layer(torch.randn(n, 16), ei, et, return_attention=True)
    assert ei_back is ei and alpha.shape == (ei.size(1), 2)
    sums = torch.zeros(n, 2).index_add_(0, ei[1], alpha)[ei[1].unique()]
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)

def test_stack_attention_per_layer_and_config():
    from hde_kit.config import load_config
    cfg = load_config(overrides=['gnn.hidden_size=32', 'gnn.num_layers=2', 'gnn.heads=2', 'gnn.relational=true',
                                 'gnn.use_transformer_block=true', 'gnn.share_weights=true'])
    stack = GNNStack.from_config(cfg.gnn, num_edge_types=4).eval()
    assert len(stack.layers) == 1 and stack.num_layers == 2
    assert stack.layers[0].core.relational and stack.layers[0].block
    ei = random_graph(30, 90, 2); et = torch.randint(0, 4, (ei.size(1),))
    h, atts = stack(torch.randn(30, 32), ei, et, return_attention=True)
    assert h.shape == (30, 32) and len(atts) == 2 and all(a[1].shape == (ei.size(1), 2) for a in atts)

def test_errors_name_the_problem():
    with pytest.raises(ValueError, match='core must be one of'): make_layer('gcn', 8)
    with pytest.raises(ValueError, match='relational mode is available'): make_layer('gat', 8, relational=True, num_edge_types=2)
    with pytest.raises(ValueError, match='divisible'): GraphAttention(10, 4)
    with pytest.raises(ValueError, match='kernel must be one of'): GraphAttention(8, 2, kernel='flash')
    with pytest.raises(ValueError, match='pass edge_type'): GraphAttention(8, 2, 3)(torch.randn(3, 8), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match='edge_type values'):
        GraphAttention(8, 2, 3)(torch.randn(3, 8), torch.tensor([[0], [1]]), torch.tensor([3]))
