"""The `hde` command as a user runs it: a subprocess, real files, exit codes, no tracebacks."""
import json, subprocess, sys
from collections import Counter

import pytest

def hde(*args, cwd=None):
    code = 'import sys; from hde_kit.cli import main; sys.exit(main(sys.argv[1:]))'  # what the `hde` entry point runs
    return subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, cwd=cwd)

def test_help_lists_subcommands():
    out = hde('--help')
    assert out.returncode == 0 and 'data' in out.stdout and 'graphs' in out.stdout

def test_data_stats_counts_every_shared_file(shared_data):
    files = sorted(shared_data.rglob('*.json'))
    assert len(files) >= 6
    for path in files:
        records = json.loads(path.read_text(encoding='utf-8'))  # independent count with plain json
        out = hde('data', 'stats', path, '--json')
        assert out.returncode == 0, out.stderr
        stats = json.loads(out.stdout)
        assert stats['examples'] == len(records), path.name
        assert stats['supports']['total'] == sum(len(r['supports']) for r in records), path.name
        assert stats['candidates']['total'] == sum(len(r['candidates']) for r in records), path.name
        assert stats['supports']['max'] == max(len(r['supports']) for r in records), path.name
        assert stats['tokens_per_support']['total'] == sum(len(s.split()) for r in records for s in r['supports'])
        assert stats['masked'] == path.name.endswith('.masked.json'), path.name
        relations = Counter(r['query'].split()[0].rstrip('?') for r in records)
        assert stats['num_relations'] == len(relations), path.name
        assert {rel: relations[rel] for rel in stats['relations']} == stats['relations'], path.name

def test_data_stats_table_is_readable(shared_data):
    out = hde('data', 'stats', shared_data / 'wikihop' / 'wikihop_train_first22_ml4g.json')
    assert out.returncode == 0 and out.stdout.startswith('examples            22')

def test_validate_strict_prints_one_problem_line(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps([{'id': 'q1', 'query': 'r s', 'supports': [], 'candidates': ['x'], 'answer': 'x'}]))
    for flags in ([], ['--strict']):
        out = hde('data', 'validate', bad, *flags)
        assert out.returncode == 1 and out.stdout.splitlines()[0].startswith('q1: supports: '), out.stdout + out.stderr
        assert 'Traceback' not in out.stderr

def test_synth_writes_file_that_validates(tmp_path):
    path = tmp_path / 'synth.json'
    out = hde('data', 'synth', '--hops', 3, '--n', 50, '--seed', 1, '--out', path)
    assert out.returncode == 0, out.stderr
    records = json.loads(path.read_text())
    assert len(records) == 50 and all(r['answer'] in r['candidates'] for r in records)
    assert hde('data', 'validate', path).returncode == 0

# ------------------------------------------------------------------ a discoverable command line that answers at once

def test_version():
    from hde_kit import __version__
    out = hde('--version')
    assert out.returncode == 0 and out.stdout.strip() == f'hde_kit {__version__}'

NO_TORCH = [  # (argv, exit status): help, usage and config errors answer without importing torch
    (['--help'], 0), (['train', '--help'], 0), (['pretrain', '--help'], 0), (['eval', '--help'], 0),
    (['bench', '--help'], 0), (['bench', 'attention', '--help'], 0), (['bench', 'pipeline', '--help'], 0),
    (['viz', 'attention', '--help'], 0), (['viz', 'flow', '--help'], 0), (['graphs', 'stats', '--help'], 0),
    (['data', 'validate', '--help'], 0), (['cache', 'clear', '--help'], 0), (['configs'], 0),
    (['train', 'gnn.num_layer=2'], 1),                       # unknown key
    (['train', 'gnn.core=gatt'], 1),                         # a value outside its choices, before any data is read
    (['train', 'no_such_config'], 1),                        # neither a file nor a packaged config
    (['train', 'minilm_wikihop'], 1),                        # a WikiHop config without data
    (['eval', 'RUN', '--data', 'x.json', 'gnn.nope=1'], 1),  # an eval override checked before the checkpoint is read
    (['data', 'synth', '--hops', '0', '--out', 'x.json'], 2),
    (['viz', 'attention', 'RUN', '--head', 'third'], 2),
    (['bench', 'attention', '--kernels'], 2),
]

def test_help_and_errors_never_import_torch(tmp_path):
    code = ("import json, sys; from hde_kit.cli import main\n"
            "try: rc = main(json.loads(sys.argv[1]))\n"
            "except SystemExit as e: rc = e.code\n"
            "print(json.dumps([rc, 'torch' in sys.modules]))")
    for argv, status in NO_TORCH:
        out = subprocess.run([sys.executable, '-c', code, json.dumps(argv)], capture_output=True, text=True, cwd=tmp_path)
        rc, torch_loaded = json.loads(out.stdout.strip().splitlines()[-1])
        assert (rc, torch_loaded) == (status, False), (argv, out.stderr[-2000:])
        assert 'Traceback' not in out.stderr, (argv, out.stderr)

def test_wikihop_config_without_data_says_where_to_get_it(tmp_path):
    out = hde('train', 'minilm_wikihop', '--quiet', cwd=tmp_path)
    assert out.returncode == 1 and 'data.train is not set' in out.stderr and 'qangaroo_v1.1.zip' in out.stderr
    assert 'http://qangaroo.cs.ucl.ac.uk' in out.stderr and not (tmp_path / 'runs').exists()

def test_configs_lists_the_packaged_configs():
    out = hde('configs')
    names = [l.split()[0] for l in out.stdout.splitlines()]
    assert out.returncode == 0 and {'base', 'minilm_wikihop', 'medhop'} <= set(names)

# ------------------------------------------------------------------ the QAngaroo zip in every data command

def test_data_stats_and_validate_read_the_zip(qangaroo_zip, shared_data):
    out = hde('data', 'stats', qangaroo_zip, '--dataset', 'wikihop', '--split', 'train', '--json')
    assert out.returncode == 0, out.stderr
    want = json.loads((shared_data / 'wikihop' / 'wikihop_train_first22_ml4g.json').read_text())
    assert json.loads(out.stdout)['examples'] == len(want)
    out = hde('data', 'stats', qangaroo_zip, '--dataset', 'medhop', '--split', 'dev', '--masked', '--json')
    assert out.returncode == 0 and json.loads(out.stdout)['masked'] == 1, out.stderr
    out = hde('data', 'validate', qangaroo_zip, '--dataset', 'wikihop', '--split', 'dev')
    assert out.returncode == 0 and out.stdout.strip() == f"{qangaroo_zip}: ok", out.stdout + out.stderr
    out = hde('data', 'validate', qangaroo_zip, '--split', 'dev', '--strict')   # two datasets have a dev split
    assert out.returncode == 1 and 'wikihop/dev' in out.stdout and 'medhop/dev' in out.stdout
    out = hde('data', 'stats', qangaroo_zip)
    assert out.returncode == 1 and '--dataset' in out.stderr and 'Traceback' not in out.stderr

def test_data_validate_names_a_missing_file(tmp_path):
    out = hde('data', 'validate', tmp_path / 'missing.json')
    assert out.returncode == 1 and out.stdout.startswith(str(tmp_path / 'missing.json')), out.stdout

def test_graphs_stats_and_build_read_the_zip(qangaroo_zip, tmp_path):
    out = hde('graphs', 'stats', qangaroo_zip, 'base', '--dataset', 'wikihop', '--split', 'dev', '--json',
              '--cache-dir', tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    stats = json.loads(out.stdout)
    assert stats['num_graphs'] + stats['failed'] == 2 and stats['labelled'] == 2, stats
    out = hde('graphs', 'build', qangaroo_zip, '--dataset', 'medhop', '--split', 'dev', '--cache-dir', tmp_path)
    assert out.returncode == 0 and out.stdout.startswith('built 1 graphs'), out.stdout + out.stderr[-2000:]

# ------------------------------------------------------------------ the per-user cache

def test_cache_info_and_clear_keep_a_cache_being_written(tmp_path):
    import fcntl
    for kind, entry in (('tokens', 'a1'), ('graphs', 'b2'), ('states', 'c3'), ('states', 'd4')):
        (tmp_path / kind / entry).mkdir(parents=True)
        (tmp_path / kind / entry / 'data.bin').write_bytes(b'x' * 1000)
    held = open(tmp_path / 'states' / 'd4' / 'writer.lock', 'a'); fcntl.flock(held, fcntl.LOCK_EX)   # a running writer
    info = json.loads(hde('cache', 'info', '--json', '--cache-dir', tmp_path).stdout)
    assert info['bytes'] == 4000 and info['kinds']['states']['entries'] == 2 and info['kinds']['tokens']['files'] == 1
    out = hde('cache', 'clear', 'tokens', '--cache-dir', tmp_path)
    assert out.returncode == 0 and not (tmp_path / 'tokens' / 'a1').exists() and (tmp_path / 'graphs' / 'b2').exists()
    out = hde('cache', 'clear', '--cache-dir', tmp_path)
    assert out.returncode == 0 and 'kept' in out.stdout and str(tmp_path / 'states' / 'd4') in out.stdout
    assert (tmp_path / 'states' / 'd4' / 'data.bin').exists() and not (tmp_path / 'states' / 'c3').exists()
    held.close()
    assert hde('cache', 'clear', 'nonsense', '--cache-dir', tmp_path).returncode == 2

def test_failed_train_leaves_no_run_folder(tmp_path):
    "A run that fails before any work (here: no readable training record) leaves no folder holding only config.yaml."
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps([{'id': 'q1', 'query': 'r s', 'supports': [], 'candidates': ['x'], 'answer': 'x'}]))
    out = hde('train', f'data.train={bad}', '--run-dir', tmp_path / 'run', '--quiet')
    assert out.returncode == 1 and 'no readable examples' in out.stderr and 'Traceback' not in out.stderr
    assert not (tmp_path / 'run').exists()

def test_help_and_readme_name_every_gnn_core():
    "The cores a user can choose are listed where a newcomer looks: `hde --help` and the README."
    from hde_kit.gnn import CORES
    from sync_readme import ROOT
    listed = hde('--help').stdout.split('GNN cores', 1)[1].split('.\n', 1)[0]
    readme = (ROOT / 'README.md').read_text(encoding='utf-8')
    for core in CORES: assert core in listed and f"`{core}`" in readme, core
