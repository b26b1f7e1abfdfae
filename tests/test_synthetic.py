"""Property tests of the synthetic k-hop generator: the chain guarantee, no shortcut, determinism, masking."""
import re
from functools import lru_cache

import pytest
from hypothesis import given, settings, strategies as st

from hde_kit.synthetic import generate, relation_paths, query_relation, MAX_HOPS


@lru_cache(maxsize=None)
def _pattern(name: str) -> re.Pattern:
    return re.compile(r'\b' + re.escape(name) + r'\b')


def mentions(name: str, text: str) -> bool:
    "Whole-word occurrence (a name inside a longer word does not count)."
    return _pattern(name).search(text) is not None


def doc_count(name: str, supports) -> int:
    return sum(mentions(name, s) for s in supports)


sizes = dict(seed=st.integers(0, 2**32 - 1), hops=st.integers(1, MAX_HOPS),
             extra_docs=st.integers(0, 12), num_candidates=st.integers(1, 9), n=st.integers(1, 3))


@settings(max_examples=50, deadline=None)
@given(**sizes)
def test_chain_guarantee_and_no_shortcut(seed, hops, extra_docs, num_candidates, n):
    num_docs = hops + extra_docs          # from fewer documents than facts (shared) to more (noise documents)
    exs = generate(n, hops=hops, num_docs=num_docs, num_candidates=num_candidates, seed=seed)
    assert len(exs) == n
    for ex in exs:
        assert len(ex.supports) == num_docs and len(ex.candidates) == num_candidates
        assert len(set(ex.candidates)) == num_candidates
        assert ex.answer in ex.candidates and ex.candidates[ex.answer_index] == ex.answer
        assert f"{ex.relation} {ex.subject}" == ex.query
        assert ex.relation == query_relation(ex.meta['relations'])
        chain, bridges = ex.meta['chain'], ex.meta['bridges']
        assert ex.meta['hops'] == hops and len(chain) == hops and len(set(chain)) == hops
        assert all(0 <= i < num_docs for i in chain)
        assert len(bridges) == hops - 1
        docs = [ex.supports[i] for i in chain]
        # the bridge chain: doc 1 names the subject, doc k the answer, consecutive docs share a bridge
        assert mentions(ex.subject, docs[0])
        assert mentions(ex.answer, docs[-1])
        for i, b in enumerate(bridges):
            assert mentions(b, docs[i]) and mentions(b, docs[i + 1]), (i, b)
        if hops == 1:
            assert mentions(ex.answer, docs[0])          # answerable from one document
        else:                                            # only by chaining: no document has subject and answer
            assert not any(mentions(ex.subject, s) and mentions(ex.answer, s) for s in ex.supports)
        # no shortcut: every candidate sits in as many documents as the answer does
        n_answer = doc_count(ex.answer, ex.supports)
        assert n_answer >= 1
        assert all(doc_count(c, ex.supports) == n_answer for c in ex.candidates), ex.candidates


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), hops=st.integers(1, MAX_HOPS), num_candidates=st.integers(1, 8))
def test_deterministic(seed, hops, num_candidates):
    kw = dict(hops=hops, num_docs=2 * hops + 3, num_candidates=num_candidates, seed=seed)
    a, b = generate(4, **kw), generate(4, **kw)
    assert a == b
    assert generate(2, **kw) == a[:2]       # one stream: a prefix of a longer run is the shorter run


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), hops=st.integers(1, MAX_HOPS), num_candidates=st.integers(1, 8),
       extra_docs=st.integers(0, 6))
def test_masked_variant_consistent(seed, hops, num_candidates, extra_docs):
    kw = dict(hops=hops, num_docs=hops + extra_docs, num_candidates=num_candidates, seed=seed)
    plain, masked = generate(3, **kw), generate(3, masked=True, **kw)
    for p, m in zip(plain, masked):
        names = m.meta['masks']                                  # mask -> name
        assert all(re.fullmatch(r'___MASK\d+___', c) for c in m.candidates)
        assert len(set(m.candidates)) == num_candidates
        assert sorted(names) == sorted(m.candidates)
        assert [names[c] for c in m.candidates] == p.candidates  # same order, mask by mask
        assert names[m.answer] == p.answer
        assert (m.query, m.meta['chain'], m.meta['bridges']) == (p.query, p.meta['chain'], p.meta['bridges'])
        for c in p.candidates:                                   # no candidate name survives in the supports
            assert not any(mentions(c, s) for s in m.supports)
        unmasked = m.supports
        for mask, name in names.items():
            unmasked = [re.sub(re.escape(mask), name, s) for s in unmasked]
        assert unmasked == p.supports                            # masking changed the candidates and nothing else
        n_answer = doc_count(m.answer, m.supports)
        assert all(doc_count(c, m.supports) == n_answer for c in m.candidates)


def test_seeds_differ_and_paths_cover_all_hops():
    assert generate(3, seed=0) != generate(3, seed=1)
    for k in range(1, MAX_HOPS + 1):
        assert relation_paths(k)
        rels = {e.relation for e in generate(200, hops=k, num_candidates=2, num_docs=2 * k, seed=k)}
        assert rels == {query_relation(p) for p in relation_paths(k)}   # every path of that length is used


def test_bad_arguments():
    with pytest.raises(ValueError, match='hops'): generate(1, hops=0)
    with pytest.raises(ValueError, match='hops'): generate(1, hops=MAX_HOPS + 1)
    with pytest.raises(ValueError, match='num_docs'): generate(1, hops=3, num_docs=2)
    with pytest.raises(ValueError, match='num_candidates'): generate(1, num_candidates=0)


def test_synth_to_file_roundtrip(tmp_path):
    from hde_kit.synthetic import synth_to_file
    import json
    out = tmp_path / 'synth.json'
    exs = synth_to_file(out, n=5, hops=3, num_docs=7, seed=2)
    recs = json.loads(out.read_text())
    assert [(r['query'], r['answer'], r['candidates'], r['supports']) for r in recs] == \
           [(e.query, e.answer, e.candidates, e.supports) for e in exs]
