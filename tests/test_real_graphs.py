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
