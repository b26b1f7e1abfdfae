"""CUDA checks (skipped without a GPU; CI has none): the attention kernels agree on the GPU with the CPU, the
dispatcher picks a kernel that runs there. Training on CUDA is checked by scripts/gpu_check.sh's `hde train` run."""
from __future__ import annotations
import pytest
import torch

from hde_kit.gnn import GraphAttention, choose_kernel

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (CI has none; scripts/gpu_check.sh runs these on a lent GPU)")]

def _graph(n, e, seed):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n * n, generator=g)[:e]
    return torch.stack([idx % n, idx // n]), torch.randint(0, 3, (e,), generator=g)

def _step(layer, kernel, x, ei, et):
    layer.kernel = kernel
    x = x.clone().requires_grad_(True)
    out = layer(x, ei, et)
    (out * torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)).sum().backward()
    grads = [x.grad] + [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    return [out.detach()] + grads

@pytest.mark.parametrize('kernel', ['sparse', 'sparse_csr', 'dense'])
@pytest.mark.parametrize('n,e', [(64, 300), (700, 9000)])
def test_kernels_on_cuda_match_cpu(kernel, n, e):
    torch.manual_seed(0)
    layer = GraphAttention(64, 4, 3)
    ei, et = _graph(n, e, seed=n)
    x = torch.randn(n, 64)
    cpu = _step(layer, 'sparse', x, ei, et)
    gpu = _step(layer.cuda(), kernel, x.cuda(), ei.cuda(), et.cuda())
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-4)

def test_dispatcher_choice_runs_on_cuda():
    for n, e in [(128, 16000), (4096, 40000)]:
        k = choose_kernel(n, n, e, 4, 16, 'cuda', typed=True)
        assert k in ('sparse', 'sparse_csr', 'dense')
        layer = GraphAttention(64, 4, 3).cuda()
        ei, et = _graph(n, e, seed=1)
        out = layer(torch.randn(n, 64, device='cuda'), ei.cuda(), et.cuda())
        assert layer.last_kernel == k and torch.isfinite(out).all()

def test_every_pipeline_stage_runs_on_cuda():
    "Tokenisation -> graphs -> encoder -> a training step with the graph and token states on the GPU."
    from hde_kit.bench import pipeline_bench
    rows = pipeline_bench(n=8, batch_size=4, train_steps=2, device='cuda')
    assert {r['stage'] for r in rows} >= {'encoder', 'training step'} and all(r['examples_per_s'] > 0 for r in rows)
