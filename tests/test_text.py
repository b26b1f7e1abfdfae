"""Tokenisation, mentions, sentences, coreference and the tokenisation cache (hde_kit.text, nbs/03_text.ipynb):
what the notebook does badly: every real record, multi-process runs, corrupted caches, properties over many inputs."""
import json, re, warnings
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from hde_kit import text
from hde_kit.text import (Mention, TokenisedExample, normalise, word_spans, make_windows, span_to_window, get_tokenizer,
                          tokenise_example, tokenise_batch, tokenise_examples, iter_tokenised, TokenCache, CacheWarning,
                          text_options, encode_rows, decode_rows, SpacyModelMissing, CorefUnavailable, resolve_spacy_model)
from hde_kit.data import Example, read_examples

TOY = Example(id='toy', query='country_of_citizenship juan rossell',
              supports=["Juan Rossell (born 1969) is a Cuban volleyball player. He competed at the 1996 Summer Olympics.",
                        "Cuba, officially the Republic of Cuba, is a country in the Caribbean. Rossell was born in Havana, Cuba."],
              candidates=['cuba', 'spain', 'united states'], answer='cuba')

@pytest.fixture(scope='module')
def tok(): return get_tokenizer('minilm')

@pytest.fixture(scope='module')
def wikihop(shared_data):
    exs = []
    for f in sorted((shared_data / 'wikihop').glob('*.json')): exs += read_examples(f).examples
    if not exs: pytest.skip(f"no WikiHop records in {shared_data / 'wikihop'}")
    return exs

@pytest.fixture(scope='module')
def wikihop_toks(wikihop, tok): return tokenise_batch(wikihop, tok)

def verbatim_count(candidate: str, text_: str) -> int:
    "Independent of hde_kit: case-insensitive matches on word boundaries in the raw characters."
    return len(re.findall(r'(?<!\w)' + re.escape(candidate) + r'(?!\w)', text_, flags=re.IGNORECASE))

def span_text(t: TokenisedExample, ex: Example, m: Mention) -> str:
    "The support text under a mention's token span, through the offsets."
    offs = t.support_offsets[m.support]
    return ex.supports[m.support][offs[m.tok_start][0]:offs[m.tok_end - 1][1]]

# ---------------------------------------------------------------- the real WikiHop records

def test_every_verbatim_candidate_is_found(wikihop, wikihop_toks):
    occurrences = 0
    for ex, t in zip(wikihop, wikihop_toks):
        for c, cand in enumerate(ex.candidates):
            for s, sup in enumerate(ex.supports):
                n = verbatim_count(cand, sup)
                got = sum(1 for m in t.mentions if m.candidate == c and m.support == s and m.kind == 'candidate')
                assert got >= n, f"{ex.id}: candidate {cand!r} occurs {n} times in support {s}, {got} mentions"
                occurrences += n
    assert occurrences > 100

def test_answer_mentions_are_linked(wikihop, wikihop_toks):
    linked = 0
    for ex, t in zip(wikihop, wikihop_toks):
        ans = [m for m in t.mentions if m.candidate == ex.answer_index]
        assert len({m.key for m in ans}) <= 1, ex.id
        if ans: assert ans[0].key == t.candidate_keys[ex.answer_index]
        linked += len({m.support for m in ans}) >= 2
    assert linked >= 1   # in some examples the answer is mentioned in several supports, all with one key

def test_offsets_map_mentions_back_to_their_text(wikihop, wikihop_toks):
    for ex, t in zip(wikihop, wikihop_toks):
        assert [len(i) for i in t.support_ids] == [len(o) for o in t.support_offsets]
        for m in t.mentions:
            assert 0 <= m.tok_start < m.tok_end <= len(t.support_ids[m.support])
            assert normalise(ex.supports[m.support][m.char_start:m.char_end]) == m.key
            assert normalise(span_text(t, ex, m)) == m.key, (ex.id, m)

def test_windows_cover_every_token_with_the_overlap(wikihop, tok):
    t = tokenise_batch(wikihop[:5], tok, max_length=64, stride=16)
    for x in t:
        for ids, ws in zip(x.support_ids, x.windows):
            covered = set()
            for s, e in ws: covered.update(range(s, e)); assert e - s <= 62
            assert covered == set(range(len(ids))) and ws[-1][1] == len(ids)
            assert all(a[1] - b[0] == 16 for a, b in zip(ws, ws[1:]))

def test_sentences_partition_tokens(wikihop, wikihop_toks):
    for ex, t in zip(wikihop, wikihop_toks):
        for s in range(len(ex.supports)):
            spans = [(a, b) for sup, a, b in t.sentences if sup == s]
            assert all(a < b for a, b in spans) and all(x[1] <= y[0] for x, y in zip(spans, spans[1:]))
            if t.support_ids[s]: assert spans[0][0] == 0 and spans[-1][1] == len(t.support_ids[s])

@given(n=st.integers(0, 3000), window=st.integers(1, 600), data=st.data())
@settings(max_examples=200, deadline=None)
def test_make_windows_property(n, window, data):
    stride = data.draw(st.integers(0, window - 1))
    ws = make_windows(n, window, stride)
    assert ws[0][0] == 0 and ws[-1][1] == n and all(0 <= e - s <= window for s, e in ws)
    assert all(a[1] - b[0] == stride for a, b in zip(ws, ws[1:]))
    assert all(b[0] > a[0] for a, b in zip(ws, ws[1:]))
    for s, e in ws[:3]:
        if e > s:
            w, a, b = span_to_window(ws, s, e)
            assert ws[w][0] + a == s and ws[w][0] + b == e

# ---------------------------------------------------------------- robustness of exact matching

@pytest.mark.parametrize('candidate,support,expected', [
    ('cuba', 'CUBA and Cuba; cuba!', 3),
    ('cuba', 'Cuban cubism', 0),                         # word boundaries
    ('u.s.', 'The U.S. and the U.S navy, and the US.', 2),  # punctuation collapsed; "US" is another word
    ('new  york', 'New\nYork and new york.', 2),          # any whitespace
    ('tokyo', 'Ｔｏｋｙｏ is full-width', 1),             # NFKC
    ('strasse', 'Hauptstraße', 0),
    ('hauptstrasse', 'HAUPTSTRASSE and Hauptstraße', 2),  # casefold
    ('são paulo', 'SÃO PAULO, São Paulo, Sao Paulo', 2),  # accents are kept
    ('sa\u0303o', 'São', 1),                              # composed == decomposed
    ('___MASK3___', 'a ___MASK3___ b ___MASK31___', 1),    # masked QAngaroo candidates
    ("o'brien", "O'Brien and O Brien and OBrien", 2),
])
def test_exact_matching_robustness(tok, candidate, support, expected):
    ex = Example(id='r', query='rel someone', supports=[support], candidates=[candidate, 'zzz'], answer=candidate)
    t = tokenise_example(ex, tok)
    ms = [m for m in t.mentions if m.candidate == 0]
    assert len(ms) == expected, [(m, support[m.char_start:m.char_end]) for m in ms]
    for m in ms: assert normalise(span_text(t, ex, m)) == normalise(candidate)

def test_subject_and_overlapping_candidates(tok):
    ex = Example(id='o', query='participant_of juan rossell', answer='1996 summer olympics',
                 supports=['Juan Rossell played at the 1996 Summer Olympics and other Olympics.'],
                 candidates=['1996 summer olympics', 'olympics', 'sport'])
    t = tokenise_example(ex, tok)
    assert sorted((m.kind, m.key) for m in t.mentions) == [
        ('candidate', '1996 summer olympics'), ('candidate', 'olympics'), ('candidate', 'olympics'), ('subject', 'juan rossell')]
    assert t.mentions == sorted(t.mentions, key=lambda m: (m.support, m.tok_start, m.tok_end))

def test_empty_and_odd_supports(tok):
    ex = Example(id='e', query='rel x', supports=['', '   ', '!!!', 'x'], candidates=['x', '!!!'], answer='x')
    t = tokenise_example(ex, tok)
    assert t.support_ids[0] == [] and t.windows[0] == [(0, 0)]
    assert [(m.support, m.candidate) for m in t.mentions] == [(3, 0)]   # '!!!' has no words: no key, no mention
    assert t.candidate_keys == ['x', '']

@given(st.text(max_size=80))
@settings(max_examples=200, deadline=None)
def test_normalise_is_idempotent_and_spans_are_words(s):
    assert normalise(normalise(s)) == normalise(s)
    words, starts, ends = word_spans(s)
    assert len(words) == len(starts) == len(ends)
    for w, a, b in zip(words, starts, ends):
        assert 0 <= a < b <= len(s) and w and ' ' not in w and w in normalise(s[a:b]).split()

# ---------------------------------------------------------------- NER, sentences, coreference

def test_ner_mentions(tok):
    try: resolve_spacy_model('en_core_web_sm')
    except SpacyModelMissing as e: pytest.skip(str(e))
    t = tokenise_example(TOY, tok, use_detected_entities=True)
    ner = {(m.key, m.candidate) for m in t.mentions if m.kind == 'ner'}
    assert ('havana', -1) in ner or ('cuban', -1) in ner
    exact = {(m.support, m.tok_start, m.tok_end) for m in t.mentions if m.kind != 'ner'}
    assert not any((m.support, m.tok_start, m.tok_end) in exact for m in t.mentions if m.kind == 'ner')

def test_missing_spacy_model_says_how_to_install(tok):
    with pytest.raises(SpacyModelMissing, match='spacy download'):
        tokenise_example(TOY, tok, use_detected_entities=True, ner_model='xx_not_installed_model')

def test_coref_rules_baseline(tok):
    ex = Example(id='c', query='occupation marie curie', candidates=['physicist', 'poland'], answer='physicist',
                 supports=["Marie Curie was born in Warsaw, Poland. She was a physicist. Curie won two Nobel prizes.",
                           "Poland is a country. It borders Germany. Curie left it in 1891."])
    t = tokenise_example(ex, tok, coref='rules')
    by = {(m.support, ex.supports[m.support][m.char_start:m.char_end]): m for m in t.mentions}
    assert by[0, 'She'].kind == 'coref' and by[0, 'She'].key == 'marie curie'     # subject preference, not "Poland"
    assert by[0, 'Curie'].key == 'marie curie'                                    # repeated last name
    assert by[1, 'Curie'].key == 'marie curie'                                    # ... in another support
    assert by[1, 'It'].key == 'poland' and by[1, 'It'].candidate == 1             # takes the antecedent's candidate
    for c in t.coref_clusters:
        assert len({t.mentions[i].key for i in c if t.mentions[i].kind == 'coref'}) == 1

def test_coref_annotations(tok):
    i, h = TOY.supports[1].index('a country'), TOY.supports[0].index('He ')
    ex = Example(id='a', query=TOY.query, supports=TOY.supports, candidates=TOY.candidates, answer='cuba',
                 annotations={'coref': [[[1, 0, 4], [1, i, i + 9]], [[0, h, h + 2], [0, 0, 12]]]})
    t = tokenise_example(ex, tok, coref='annotations')
    assert [[(t.mentions[j].kind, t.mentions[j].key, t.mentions[j].candidate) for j in c] for c in t.coref_clusters] == [
        [('candidate', 'cuba', 0), ('coref', 'cuba', 0)], [('subject', 'juan rossell', -1), ('coref', 'juan rossell', -1)]]
    assert tokenise_example(TOY, tok, coref='annotations').coref_clusters == []          # no annotations: no clusters
    qangaroo_dev = Example(id='d', query=TOY.query, supports=TOY.supports, candidates=TOY.candidates, answer='cuba',
                           annotations=[['follows', 'single'], ['follows', 'multiple']])
    assert tokenise_example(qangaroo_dev, tok, coref='annotations').coref_clusters == []
    bad = Example(id='bad', query=TOY.query, supports=TOY.supports, candidates=TOY.candidates, answer='cuba',
                  annotations={'coref': [[[0, 5, 500]]]})
    with pytest.raises(ValueError, match='bad: annotations.coref'): tokenise_example(bad, tok, coref='annotations')

def test_coref_spacy_without_a_component_is_a_clear_error(tok):
    try:
        import coreferee  # noqa: F401
        pytest.skip('coreferee is installed')
    except ImportError: pass
    with pytest.raises(CorefUnavailable, match='coreferee'): tokenise_example(TOY, tok, coref='spacy')

def test_unknown_options_are_errors():
    with pytest.raises(ValueError, match='text.coref'): text_options(coref='neuralcoref')
    with pytest.raises(TypeError, match='unknown text option'): text_options(strid=3)

# ---------------------------------------------------------------- the cache

def test_cache_hit_makes_no_tokenizer_call(tmp_path, wikihop):
    first = tokenise_examples(wikihop, cache_dir=tmp_path, progress=False)
    calls = text.TOKENIZER_CALLS
    again = tokenise_examples(list(reversed(wikihop)), cache_dir=tmp_path, progress=False)   # order does not matter
    assert text.TOKENIZER_CALLS == calls
    assert again == list(reversed(first))
    assert not list(tmp_path.rglob('*.tmp'))

def test_cache_key_follows_exactly_the_shaping_options(tmp_path):
    key = lambda **kw: TokenCache(tmp_path, 'minilm', text_options(**kw)).key
    base = key()
    assert key(num_proc=4) == base
    for kw in [dict(stride=8), dict(max_length=128), dict(use_special_entities=False), dict(coref='rules'),
               dict(use_detected_entities=True)]:
        assert key(**kw) != base, kw
    c = TokenCache(tmp_path, 'minilm', text_options(coref='annotations'))
    ann = Example(id='toy', query=TOY.query, supports=TOY.supports, candidates=TOY.candidates, answer='cuba', annotations={'coref': []})
    assert c.example_hash(ann) != c.example_hash(TOY)
    assert TokenCache(tmp_path, 'minilm', text_options()).example_hash(ann) == TokenCache(tmp_path).example_hash(TOY)

def _corrupt_truncate(p: Path): p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])
def _corrupt_flip(p: Path):
    b = bytearray(p.read_bytes()); b[len(b) // 2] ^= 0xFF; p.write_bytes(bytes(b))
def _corrupt_garbage(p: Path): p.write_bytes(b'not an arrow file')

@pytest.mark.parametrize('corrupt', [_corrupt_truncate, _corrupt_flip, _corrupt_garbage])
def test_corrupted_cache_is_rebuilt_with_a_message(tmp_path, corrupt, tok):
    exs = [TOY, Example(id='t2', query='rel cuba', supports=['Cuba is big.'], candidates=['cuba'], answer='cuba')]
    first = tokenise_examples(exs, cache_dir=tmp_path, progress=False)
    shard, = tmp_path.rglob('*.arrow')
    corrupt(shard)
    calls = text.TOKENIZER_CALLS
    with pytest.warns(CacheWarning, match='corrupted'):
        again = tokenise_examples(exs, cache_dir=tmp_path, progress=False)
    assert again == first and text.TOKENIZER_CALLS > calls
    calls = text.TOKENIZER_CALLS
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert tokenise_examples(exs, cache_dir=tmp_path, progress=False) == first   # rebuilt: a clean hit now
    assert text.TOKENIZER_CALLS == calls

def test_cache_from_another_format_version_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setattr(text, 'TOKCACHE_VERSION', 0)
    first = tokenise_examples([TOY], cache_dir=tmp_path, progress=False)
    monkeypatch.undo()
    with pytest.warns(CacheWarning, match='format version 0'):
        assert tokenise_examples([TOY], cache_dir=tmp_path, progress=False) == first
    assert len(list(tmp_path.rglob('*.arrow'))) == 1

def test_cache_never_unpickles(tmp_path):
    tokenise_examples([TOY], cache_dir=tmp_path, progress=False)
    shard, = tmp_path.rglob('*.arrow')
    assert shard.read_bytes()[:6] == b'ARROW1'
    opts = json.loads(next(tmp_path.rglob('options.json')).read_text())
    assert opts['tokenizer'] == 'minilm' and opts['stride'] == 64

def test_encode_decode_roundtrip(tok):
    ts = tokenise_batch([TOY, TOY], tok, coref='rules')
    assert decode_rows(encode_rows(['a', 'b'], ts)) == ts
    assert decode_rows(encode_rows(['a', 'b'], ts), [1]) == ts[1:]

# ---------------------------------------------------------------- processes and streaming

def test_two_processes_equal_one(tmp_path, wikihop, wikihop_toks):
    exs = wikihop * 3
    calls = text.TOKENIZER_CALLS
    par = tokenise_examples(exs, cache_dir=tmp_path, num_proc=2, progress=False, chunk_size=4)
    assert par == wikihop_toks * 3
    assert text.TOKENIZER_CALLS > calls          # the workers' calls are counted in the parent
    calls = text.TOKENIZER_CALLS
    assert tokenise_examples(exs, cache_dir=tmp_path, num_proc=2, progress=False) == par
    assert text.TOKENIZER_CALLS == calls

def test_iter_tokenised_streams_a_generator(monkeypatch):
    monkeypatch.setattr(text, 'SHARD_SIZE', 3)
    exs = [Example(id=f'g{i}', query='rel cuba', supports=[f'Cuba {i}.'], candidates=['cuba'], answer='cuba') for i in range(7)]
    out = list(iter_tokenised((e for e in exs), use_cache=False, progress=False))
    assert [t.id for t in out] == [e.id for e in exs]
