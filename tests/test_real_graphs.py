"""Real-data graphs (nbs/03_text.ipynb, nbs/04_graph.ipynb): aliases, junk candidates, coreference that links,
answer reachability on the real WikiHop records."""
import csv
from pathlib import Path

import pytest

from hde_kit.data import Example, read_examples
from hde_kit.text import tokenise_example, tokenise_batch, get_tokenizer, is_junk_candidate, fold

FIXTURES = Path(__file__).parent / 'fixtures'

@pytest.fixture(scope='module')
def tok(): return get_tokenizer('minilm')

@pytest.fixture(scope='module')
def wikihop(shared_data):
    path = shared_data / 'wikihop' / 'wikihop_train_first22_ml4g.json'
    if not path.exists(): pytest.skip(f"{path} not present")
    return read_examples(path).examples

def _spans(ex, t, kind):
    return {(m.support, ex.supports[m.support][m.char_start:m.char_end], m.key) for m in t.mentions if m.kind == kind}

# ---------------------------------------------------------------- aliases

def test_each_alias_rule(tok):
    ex = Example(id='a', query='member_of_sports_team thomas l woolwine', answer='manchester united f c',
                 candidates=['manchester united f c', 'crocodile', 'zurich', 'family'],
                 supports=["Thomas Lee Woolwine played for Manchester United. Crocodiles and families live in Zürich.",
                           "The Chinese Maze Murders. manchester united won. Thomas Woolwine, Thomas Allan Lee Woolwine."])
    t = tokenise_example(ex, tok, alias_matching=True)
    assert _spans(ex, t, 'alias') == {
        (0, 'Thomas Lee Woolwine', 'thomas l woolwine'), (0, 'Manchester United', 'manchester united f c'),
        (0, 'Crocodiles', 'crocodile'), (0, 'families', 'family'), (0, 'Zürich', 'zurich'),
        (1, 'Thomas Woolwine', 'thomas l woolwine'), (1, 'Thomas Allan Lee Woolwine', 'thomas l woolwine')}
    assert {m.candidate for m in t.mentions if m.key == 'manchester united f c'} == {0}
    assert _spans(ex, tokenise_example(ex, tok), 'alias') == set()              # off by default

def test_aliases_that_must_not_fire(tok):
    ex = Example(id='n', query='author the chinese lake murders', answer='record',
                 candidates=['record', 'sport', 'crocodile', 'crocodiles'],
                 supports=["She signed with Columbia Records. The Pan American Sports Organization. The Chinese Maze Murders.",
                           "Crocodiles are reptiles."])
    t = tokenise_example(ex, tok, alias_matching=True)
    assert _spans(ex, t, 'alias') == set()   # names ('Columbia Records'), a replaced middle word, a plural that is a candidate
    assert fold('łódź') == 'lodz' and fold('zürich') == 'zurich'

def test_every_alias_on_the_wikihop_sample_was_checked_by_hand(wikihop, tok):
    rows = [r for r in csv.reader((l for l in open(FIXTURES / 'wikihop_aliases_checked.tsv') if not l.startswith('#')),
                                  delimiter='\t')]
    checked = {(r[0], int(r[1]), int(r[2]), int(r[3]), r[4], r[5]) for r in rows if r[6] == 'correct'}
    got = set()
    for ex, t in zip(wikihop, tokenise_batch(wikihop, tok, alias_matching=True, skip_junk_candidates=True)):
        for m in t.mentions:
            if m.kind == 'alias':
                got.add((ex.id, m.support, m.char_start, m.char_end, ex.supports[m.support][m.char_start:m.char_end], m.key))
                assert m.candidate == (ex.candidates.index(next(c for c in ex.candidates if c.lower() == m.key))
                                       if m.candidate >= 0 else -1)
    assert got - checked == set(), f"alias mentions nobody checked: {sorted(got - checked)[:5]}"
    assert checked - got == set(), f"checked alias mentions no longer found: {sorted(checked - got)[:5]}"

# ---------------------------------------------------------------- junk candidates

def test_junk_candidates_get_no_mentions_but_keep_their_node(tok):
    ex = Example(id='j', query='located_in paris', candidates=['france', 'of', 'an', 'r', 'four'], answer='france',
                 supports=["Paris is the capital of France, one of four big cities of an old country."])
    assert [is_junk_candidate(c) for c in ex.candidates] == [False, True, True, True, False]
    plain, junk = tokenise_example(ex, tok), tokenise_example(ex, tok, skip_junk_candidates=True)
    assert {m.candidate for m in plain.mentions} >= {1, 2}
    assert {m.candidate for m in junk.mentions if m.candidate >= 0} == {0, 4}
    assert junk.candidates == ex.candidates and junk.answer_index == 0

# ---------------------------------------------------------------- hde graphs stats

import json, os
from types import SimpleNamespace

from hde_kit.cli import main

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture
def hde(capsys, monkeypatch):
    "Run `hde ARGS` in this process (as the entry point does) from the repository root: returncode, stdout, stderr."
    monkeypatch.chdir(ROOT)
    def run(*args):
        capsys.readouterr()
        code = main(list(map(str, args)))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return run

def test_wikihop_config_reaches_the_answer_in_three_quarters_of_the_sample(shared_data, tmp_path, hde):
    data = shared_data / 'wikihop' / 'wikihop_train_first22_ml4g.json'
    out = hde('graphs', 'stats', data, 'configs/wikihop.yaml', '--json', '--cache-dir', tmp_path)
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats['num_graphs'] == 22 and stats['unbuildable'] == {} and stats['unreadable'] == {}
    assert stats['answer_reachable'] >= 0.75, stats['answer_reachable']
    assert sum(v for k, v in stats['answer_hops'].items() if k != 'unreachable') == round(22 * stats['answer_reachable'])
    assert stats['junk_candidates']['candidates'] > 0
    text = hde('graphs', 'stats', data, 'configs/wikihop.yaml', '--cache-dir', tmp_path).stdout
    assert 'reachable from the subject: 86.4%' in text and 'junk candidates without mention nodes' in text

def test_graphs_stats_names_unreadable_and_unbuildable_records(tmp_path, hde):
    good = {'id': 'ok1', 'query': 'country juan rossell', 'answer': 'cuba', 'candidates': ['cuba', 'spain'],
            'supports': ["Juan Rossell is from Cuba. " * 8, "Spain is a country. " * 8]}
    bad = {'id': 'bad1', 'query': 'country x', 'answer': 'cuba', 'candidates': 'cuba', 'supports': ['Cuba.']}
    path = tmp_path / 'mixed.json'; path.write_text(json.dumps([good, bad]))
    out = hde('graphs', 'stats', path, 'graph.max_nodes=3', '--json', '--cache-dir', tmp_path)
    assert out.returncode == 1, out.stdout                                       # nothing could be built
    stats = json.loads(out.stdout)
    assert list(stats['unbuildable']) == ['ok1'] and 'graph too large' in stats['unbuildable']['ok1']
    assert list(stats['unreadable']) == ['bad1'] and 'candidates' in stats['unreadable']['bad1']
    out = hde('graphs', 'stats', path, '--cache-dir', tmp_path)
    assert out.returncode == 0 and 'records that could not be read: 1' in out.stdout and 'bad1: candidates' in out.stdout
    allbad = tmp_path / 'allbad.json'; allbad.write_text(json.dumps([bad]))
    out = hde('graphs', 'stats', allbad, '--cache-dir', tmp_path)
    assert out.returncode == 1 and 'no record could be read' in out.stderr and 'bad1' in out.stderr
    assert 'Traceback' not in out.stderr
