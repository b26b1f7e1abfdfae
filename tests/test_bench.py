"""Tests of hde_kit.bench (nbs/12_bench.ipynb) that belong outside the notebook: FLOP counts against
FlopCounterMode, a tiny sweep through the worker processes (every kernel x point gets a row or a skip reason),
the memory-fit and crossover helpers on hand-made data, the CSV round trip, the acceptance checks on hand-made
rows, a dying worker, and the command line. Small graphs only: the whole file takes well under a minute."""
from __future__ import annotations
import math

import numpy as np
import pytest
import torch

from hde_kit import bench, cli
from hde_kit.bench import (KERNELS, analytic_flops, counted_flops, crossover_density, fit_linear, make_step,
                           random_graph, hde_graph, read_csv, write_csv, acceptance_checks, attention_sweep)

@pytest.fixture(autouse=True, scope='module')
def one_thread():
    old = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

# ------------------------------------------------------------------------------------------------ FLOPs

@pytest.mark.parametrize('kernel', ['hde_dense', 'sdpa', 'sdpa_layer'])
@pytest.mark.parametrize('n,density', [(64, 0.1), (100, 0.5)])
def test_dense_flops_match_flop_counter(kernel, n, density):
    "Dense attention and SDPA: every product is a dense one, so the analytic total is what FlopCounterMode counts."
    dim, heads = 64, 4
    g = random_graph(n, density, seed=1)
    expected = analytic_flops(kernel, n, g.num_edges, dim, heads)
    assert expected['visible'] == expected['total']
    assert counted_flops(make_step(kernel, g, dim, heads).step) == expected['total']

def test_sdpa_attention_flops_formula():
    "SDPA's fused backward recomputes the scores: 14 N^2 d in all, also the plain hde dense kernel; typed (math path) 12 N^2 d."
    n, d = 128, 64
    assert analytic_flops('sdpa', n, 10, d, 4)['total'] == 14 * n * n * d
    assert analytic_flops('hde_dense', n, 10, d, 4)['attention'] == 14 * n * n * d
    assert analytic_flops('hde_dense', n, 10, d, 4, types=19)['attention'] == 12 * n * n * d
    assert analytic_flops('hde_dense', n, 10, d, 4)['projections'] == 3 * 8 * n * d * d

@pytest.mark.parametrize('kernel', ['hde_sparse', 'hde_sparse_csr', 'pyg_transformer', 'pyg_gat'])
def test_sparse_kernels_counter_sees_the_dense_products_only(kernel):
    "Sparse kernels: the counter sees the projections (and type tables / edge-feature linears), not the SDDMM/SpMM."
    g = hde_graph(1)
    fl = analytic_flops(kernel, g.num_nodes, g.num_edges, 32, 4, g.num_edge_types)
    assert counted_flops(make_step(kernel, g, 32, 4).step) == fl['visible'] < fl['total']

# ------------------------------------------------------------------------------------------------ the sweep

def test_tiny_sweep_has_a_row_for_every_kernel_and_point():
    "Through the two worker processes: every kernel x point is measured or carries its skip reason."
    rows = attention_sweep(nodes=(64, 128), densities=(0.05,), dim=32, heads=4, hde_graphs=(1,), repeats=2,
                           max_repeats=3, budget_s=0.02, max_memory_mb=0.5, progress=False)
    points = {(r['family'], r['n'], r['density']) for r in rows}
    assert len(points) == 3 and len(rows) == 3 * len(KERNELS)
    for r in rows:
        assert r['status'] in ('ok', 'skipped', 'failed')
        if r['status'] == 'ok':
            assert r['time_ms'] > 0 and r['repeats'] >= 2 and r['peak_mb'] is not None and r['flops'] > 0
            assert r['mem_method'].startswith('VmHWM') and 'in-process' not in r['mem_method']   # the memory worker
        else:
            assert r['reason'], r
    # the 0.5 MiB limit skips the big estimates, with the reason recorded
    assert any(r['status'] == 'skipped' and r['reason'].startswith('memory:') for r in rows)
    assert all(r['picked'] in ('sparse', 'sparse_csr', 'dense') for r in rows if r['kernel'] == 'hde_auto' and r['status'] == 'ok')

def test_sweep_rejects_unknown_kernels():
    with pytest.raises(ValueError, match='unknown kernel'):
        attention_sweep(nodes=(64,), densities=(0.1,), kernels=['hde_sparse', 'cuda_magic'], progress=False)

def test_dead_worker_is_reported():
    w = bench.Worker()
    w.proc.kill(); w.proc.wait()
    with pytest.raises(bench.WorkerDied, match='exited with code'):
        w.call('flex_support', device='cpu')
    w.close()

# ------------------------------------------------------------------------------------------------ helpers

def test_linear_fit_recovers_r2_of_one_on_linear_data():
    rng = np.random.default_rng(1)
    E = rng.integers(10, 10**7, 30)
    fit = fit_linear(12.5 + 3e-5 * E, E=E)
    assert fit['r2'] == pytest.approx(1.0, abs=1e-12)
    assert fit['coef']['E'] == pytest.approx(3e-5) and fit['intercept'] == pytest.approx(12.5)
    N = rng.integers(128, 8192, 30)
    two = fit_linear(1.0 + 2e-5 * E + 0.02 * N, E=E, N=N)
    assert two['r2'] == pytest.approx(1.0, abs=1e-12) and two['coef']['N'] == pytest.approx(0.02)
    assert fit_linear(np.sqrt(E), E=E)['r2'] < 0.98

def test_csv_round_trip(tmp_path):
    rows = [dict(family='random', n=128, density=0.001, edges=16, graphs=None, typed=False, kernel='hde_dense',
                 status='ok', reason=None, time_ms=1 / 3, peak_mb=1e-7, flops=12 * 128 ** 2 * 64, picked=None),
            dict(family='hde', n=104, density=0.10724852071005918, edges=1160, graphs=1, typed=True, kernel='flex',
                 status='skipped', reason='unsupported: "quoted", with commas, and: colons', time_ms=None)]
    back = read_csv(write_csv(rows, tmp_path / 'r.csv'))
    assert back == [{k: r.get(k) for k in back[0]} for r in rows]
    assert isinstance(back[0]['flops'], int) and back[1]['typed'] is True and back[0]['time_ms'] == 1 / 3

def test_crossover_on_hand_made_curves():
    d = [0.001, 0.01, 0.1, 1.0]
    assert crossover_density(d, [1, 10, 100, 1000], [10] * 4) == pytest.approx(0.01)
    assert crossover_density(d, [2, 20, 200, 2000], [100] * 4) == pytest.approx(0.05)       # sparse = 2000 d
    assert crossover_density(d, [1, 2, 3, 4], [5] * 4) == math.inf
    assert crossover_density(d, [9, 9, 9, 9], [1, 2, 3, 4]) == 0.0
    assert math.isnan(crossover_density(d, [None] * 4, [1] * 4))
    # a noisy curve that dips back under: the first crossing counts
    assert crossover_density(d, [1, 20, 8, 200], [10] * 4) == pytest.approx(10 ** (-3 + 1 / math.log10(20)))

def _row(n, density, kernel, t, mb, edges=None, picked=None, family='random'):
    return dict(family=family, n=n, density=density, edges=edges or round(density * n * n), graphs=None, dim=64,
                heads=4, num_edge_types=0, kernel=kernel, status='ok', time_ms=t, peak_mb=mb, picked=picked)

def test_acceptance_checks_on_hand_made_rows():
    rows = []
    for n in (512, 1024, 2048):
        for d in (0.01, 0.1, 0.5):
            e = round(d * n * n)
            rows += [_row(n, d, 'pyg_transformer', 100.0, 50.0 + e * 1e-3),
                     _row(n, d, 'hde_sparse', 90.0, 40.0),
                     _row(n, d, 'hde_sparse_csr', 30.0, 1.0 + e * 2e-4),     # exactly linear in E at each N
                     _row(n, d, 'hde_dense', 60.0, 80.0),
                     _row(n, d, 'hde_auto', 31.0, 1.0, picked='sparse_csr'),
                     _row(n, d, 'pyg_gat', 35.0, 20.0), _row(n, d, 'sdpa_layer', 65.0, 20.0)]
    checks = acceptance_checks(rows)
    assert [c['passed'] for c in checks] == [True] * 7
    assert checks[4]['value'] == pytest.approx(31 / 35)               # hde auto vs the fastest peer layer (GAT)
    assert checks[5]['value'] == pytest.approx(0.31)                  # vs TransformerConv where attention dominates
    assert checks[6]['value'] == pytest.approx(60 / 65)               # plain dense vs the SDPA layer
    assert checks[0]['value'] == pytest.approx(0.3) and len(checks[0]['points']) == 4   # N >= 1024, density <= 10%
    assert checks[2]['value'] == pytest.approx(31 / 30)
    assert 'hde_sparse_csr' in checks[3]['name'] and checks[3]['value'] == pytest.approx(1.0)
    rows[-3]['time_ms'] = 40.0                                                          # dispatcher now 1.33x
    rows[0]['time_ms'] = 40.0                                                           # N=512: outside the region
    checks = acceptance_checks(rows)
    assert not checks[2]['passed'] and checks[0]['passed']

# ------------------------------------------------------------------------------------------------ command line

def test_cli_writes_every_file(tmp_path, capsys):
    rc = cli.main(['bench', 'attention', '--out', str(tmp_path), '--nodes', '64', '--densities', '0.1', '--hde-graphs',
                     '--dim', '16', '--repeats', '2', '--budget', '0.01', '--max-repeats', '2', '--in-process',
                     '--kernels', 'hde_sparse', 'hde_sparse_csr', 'hde_dense', 'hde_auto', 'pyg_transformer'])
    assert rc == 0
    out = capsys.readouterr().out
    assert 'acceptance' in out and ('[PASS]' in out or '[FAIL]' in out)
    assert out.rstrip().splitlines()[-1] == f"results: {tmp_path}"                    # where the results went, said
    names = {p.name for p in tmp_path.iterdir()}
    assert {'attention.csv', 'summary.txt', 'machine.txt', 'run.json', 'time.png', 'crossover.png', 'dispatch.png'} <= names
    assert 'hde.png' not in names                                                       # no HDE batches asked for
    assert len(read_csv(tmp_path / 'attention.csv')) == 5
    again = bench.report_from_dir(tmp_path)                                             # re-made from the CSV
    assert again['summary'] == (tmp_path / 'summary.txt').read_text()

def test_pipeline_cli_in_a_worker(tmp_path, capsys):
    "The pipeline benchmark through its CLI function: a worker process, every stage, CSV and text written."
    res = bench.bench_pipeline_cli(tmp_path, n=2, batch_size=2, name='pipe')
    assert [r['stage'] for r in res['rows']] == ['tokenisation', 'graph building', 'encoder', 'training step', 'all stages']
    assert all(r['examples_per_s'] > 0 and r['peak_rss_mb'] is not None for r in res['rows'])
    assert read_csv(tmp_path / 'pipe.csv')[2]['stage'] == 'encoder'
    assert 'examples/s' in (tmp_path / 'pipe.txt').read_text() and 'examples/s' in capsys.readouterr().out
