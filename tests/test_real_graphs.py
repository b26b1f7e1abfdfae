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

# ---------------------------------------------------------------- annotated records: MHQA reader and coreference

from hde_kit.config import load_config
from hde_kit.data import DataError
from hde_kit.graph import build_graph, EdgeType

def _mhqa():
    return read_examples(FIXTURES / 'mhqa_sample.jsonl', strict=True, format='mhqa').examples

def test_mhqa_reader_converts_the_hand_annotated_records():
    exs = _mhqa()
    assert [(e.id, e.query, e.answer) for e in exs] == [
        ('MHQA_fix_0', 'conflict steven roberts', 'iraq war'),
        ('MHQA_fix_1', 'date_of_death archie cochrane', '1988'),                 # underscores restored
        ('MHQA_fix_2', 'country_of_citizenship juan rossell', 'cuba')]
    assert exs[1].candidates == ['1988', '1909', 'cochrane library', 'dorset']
    first = exs[0].annotations['coref'][1]            # "The Iraq War" (head "War"), "The war", "It"
    assert [exs[0].supports[1][a:b] for _, a, b, _, _ in first] == ['The Iraq War', 'The war', 'It']
    assert [exs[0].supports[1][h:k] for *_, h, k in first] == ['War', 'war', 'It']
    assert read_examples(FIXTURES / 'mhqa_sample.jsonl').examples == exs        # format auto detects it

def test_mhqa_reader_names_record_and_field(tmp_path):
    rec = json.loads((FIXTURES / 'mhqa_sample.jsonl').read_text().splitlines()[0])
    bad = dict(rec, candidates=['0:1', '9:0'])
    path = tmp_path / 'bad.jsonl'; path.write_text(json.dumps(bad) + '\n')
    res = read_examples(path)
    assert [str(p) for p in res.problems] == ['MHQA_fix_0: candidates[1]: pointer 9:0 names no mention (5 snippets) (line 1)']
    with pytest.raises(DataError, match=r'MHQA_fix_0: candidates\[1\]'): read_examples(path, strict=True)
    broken = dict(rec, web_snippets=[{**rec['web_snippets'][0], 'annotations': {**rec['web_snippets'][0]['annotations'], 'positions': '0-0-x'}}])
    path.write_text(json.dumps(broken) + '\n')
    assert str(read_examples(path).problems[0]).startswith('MHQA_fix_0: web_snippets[0].annotations.positions:')

# every coreference link the recommended text options add on the annotated sample, checked by hand:
# (record, support, mention text, key, candidate index)
COREF_LINKS = {
    ('MHQA_fix_0', 0, 'He', 'steven roberts', -1),                      # the subject
    ('MHQA_fix_0', 1, 'The war', 'iraq war', 0), ('MHQA_fix_0', 1, 'It', 'iraq war', 0),
    ('MHQA_fix_0', 2, 'It', 'war in afghanistan', 1), ('MHQA_fix_0', 2, 'it', 'war in afghanistan', 1),
    ('MHQA_fix_0', 3, 'They', 'they @3:0', -1), ('MHQA_fix_0', 3, 'they', 'they @3:0', -1),   # pronoun-only chains:
    ('MHQA_fix_0', 4, 'it', 'it @4:5', -1), ('MHQA_fix_0', 4, 'its', 'it @4:5', -1),          # a key per document
    ('MHQA_fix_1', 0, 'Cochrane', 'archibald leman cochrane', -1), ('MHQA_fix_1', 0, 'his', 'archibald leman cochrane', -1),
    ('MHQA_fix_1', 0, 'He', 'archibald leman cochrane', -1),
    ('MHQA_fix_1', 1, 'It', 'cochrane library', 2), ('MHQA_fix_1', 2, 'Its', 'dorset', 3),
    ('MHQA_fix_2', 0, 'He', 'juan rossell', -1),                        # through the alias "Juan Miguel Rossell"
    ('MHQA_fix_2', 1, 'the capital of Cuba', 'havana', -1), ('MHQA_fix_2', 1, 'The capital of Cuba', 'havana', -1),
    ('MHQA_fix_2', 1, 'its', 'cuba', 0), ('MHQA_fix_2', 1, 'it', 'cuba', 0)}

@pytest.fixture(scope='module')
def wikihop_text():
    return load_config(ROOT / 'configs' / 'wikihop.yaml').text

def test_every_coreference_link_on_the_annotated_sample_is_correct(tok, wikihop_text):
    got = set()
    for ex in _mhqa():
        t = tokenise_example(ex, tok, wikihop_text)
        got |= {(ex.id, m.support, ex.supports[m.support][m.char_start:m.char_end], m.key, m.candidate)
                for m in t.mentions if m.kind == 'coref'}
    assert got == COREF_LINKS

def test_clusters_join_the_candidate_or_subject_mention_they_contain(tok, wikihop_text):
    for ex in _mhqa():
        t = tokenise_example(ex, tok, wikihop_text)
        special = [i for i, m in enumerate(t.mentions) if m.kind in ('candidate', 'subject', 'alias')]
        for chain in ex.annotations['coref']:
            for s, a, b, h, k in chain:
                # a candidate/subject mention that is the chain span's head, or one name with it, must be in the cluster
                def one_name(m):   # holds the head, or ends before it with only capitalised words up to it
                    return (m.char_start <= h and k <= m.char_end) or (m.char_end <= h and all(
                        w[0].isupper() for w in ex.supports[s][m.char_end:k].split()))
                inside = [i for i in special if t.mentions[i].support == s and a <= t.mentions[i].char_start
                          and t.mentions[i].char_end <= b and one_name(t.mentions[i])]
                for i in inside:
                    assert any(i in c for c in t.coref_clusters), (ex.id, ex.supports[s][a:b])
        # "the capital of Cuba" holds the candidate Cuba after its head: another entity, not joined
        if ex.id == 'MHQA_fix_2':
            cuba = [i for i, m in enumerate(t.mentions) if m.kind == 'candidate' and m.char_start > 0 and m.support == 1
                    and ex.supports[1][m.char_start - 3:m.char_start] == 'of ']
            havana = next(c for c in t.coref_clusters if t.mentions[c[0]].key == 'havana')
            assert cuba and not set(cuba) & set(havana)

def test_no_pronoun_key_links_two_documents(tok, wikihop_text):
    for ex in _mhqa():
        t = tokenise_example(ex, tok, wikihop_text)
        g = build_graph(t, use_coref_edges=True)
        docs_of_key = {}
        for m in t.mentions: docs_of_key.setdefault(m.key, set()).add(m.support)
        for c in t.coref_clusters:
            texts = [ex.supports[t.mentions[i].support][t.mentions[i].char_start:t.mentions[i].char_end].lower() for i in c]
            if all(w in {'it', 'its', 'he', 'his', 'him', 'she', 'her', 'they', 'them', 'their'} for w in texts):
                assert len(docs_of_key[t.mentions[c[0]].key]) == 1, (ex.id, texts)
        # no comention edge touches a pronoun-only mention
        key, mention = g.node_key.numpy(), g.node_mention.numpy()
        pron = {i for i, m in enumerate(t.mentions) if ' @' in m.key}
        ei, et = g.edge_index.numpy(), g.edge_type.numpy()
        com = ei[:, (et == EdgeType.comention) | (et == EdgeType.comention_rev)]
        assert not any(mention[n] in pron for n in com.ravel())

def test_rule_surnames_need_a_person_when_ner_runs(tok):
    ex = Example(id='s', query='instance_of sms braunschweig', candidates=['ship', 'city'], answer='ship',
                 supports=["SMS Braunschweig was a pre-dreadnought battleship of the German navy.",
                           "Braunschweig is a city in Lower Saxony, Germany. Braunschweig was founded in the 9th century."])
    linked = lambda t: {ex.supports[m.support][m.char_start:m.char_end] for m in t.mentions if m.kind == 'coref'}
    assert 'Braunschweig' in linked(tokenise_example(ex, tok, coref='rules'))               # capitalisation only: a false link
    ner = tokenise_example(ex, tok, coref='rules', use_detected_entities=True)
    assert not any(m.key == 'sms braunschweig' for m in ner.mentions if m.kind == 'coref')  # NER: not a person, no surname rule
