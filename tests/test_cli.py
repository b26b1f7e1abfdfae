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
