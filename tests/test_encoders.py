"""Encoders: window stitching, MiniLM training modes, attentions, static and scratch encoders, the token-state cache."""
import json, warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from hde_kit import text
from hde_kit.encoders import (HFEncoder, ScratchEncoder, StateCache, StaticEncoder, TokenEncoder,
                              cached_states, encode_candidates, encode_example, encode_examples, encode_pair, encode_query,
                              encode_subqueries, encode_supports, load_glove, make_encoder,
                              state_cache_key, window_coverage)
from hde_kit.text import TokenisedExample, get_tokenizer, make_windows

SUPPORTS = [
    "Juan Rossell was a Cuban sports shooter who competed at the 1904 Summer Olympics in St. Louis.",
    "Cuba is a country comprising the island of Cuba as well as Isla de la Juventud and several minor archipelagos.",
    "The 1904 Summer Olympics were an international multi-sport event held in St. Louis, Missouri, United States.",
    "Havana is the capital and largest city of Cuba, the country's main port and commercial center.",
    "St. Louis is an independent city and major U.S. port in the state of Missouri, on the Mississippi River.",
]


def make_tok(tokenizer, query, supports, candidates, window=254, overlap=64, id='toy'):
    "A TokenisedExample by hand (no mentions); windows as 03_text makes them."
    ids = lambda s: tokenizer(s, add_special_tokens=False)['input_ids']
    sup = [ids(s) for s in supports]
    return TokenisedExample(id=id, query_ids=ids(query), support_ids=sup, support_offsets=[[] for _ in sup],
                            windows=[make_windows(len(s), window, overlap) for s in sup], candidate_ids=[ids(c) for c in candidates],
                            candidates=list(candidates), candidate_keys=[c.lower() for c in candidates], subject_key='',
                            mentions=[], sentences=[], coref_clusters=[], answer_index=0)


class IdEncoder(TokenEncoder):
    "Test double: the state of a token is its id (context-free), so stitching must reproduce the ids exactly."
    def __init__(self, max_length=10): super().__init__(1, max_length, cls_id=1, sep_id=2, pad_id=0, name='id')
    def encode(self, ids, mask, types=None, output_attentions=False): return ids[..., None].float()


@pytest.fixture(scope='module')
def tokenizer(): return get_tokenizer('minilm')

@pytest.fixture(scope='module')
def minilm(tokenizer):
    enc = HFEncoder('minilm', tokenizer=tokenizer)
    yield enc
    assert not enc.trainable, "a test left the shared encoder trainable"

@pytest.fixture(scope='module')
def example(tokenizer): return make_tok(tokenizer, 'country_of_citizenship juan rossell', SUPPORTS[:3], ['cuba', 'united states'])


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(0, 40), min_size=1, max_size=4), max_length=st.integers(4, 12), overlap=st.floats(0, 0.99))
def test_stitching_reproduces_every_token(lengths, max_length, overlap):
    "Any windows text.make_windows makes (empty supports included): stitching a context-free encoder gives back every token."
    enc = IdEncoder(max_length)
    rng = np.random.default_rng(sum(lengths))
    sups = [rng.integers(3, 1000, n).tolist() for n in lengths]
    tok = TokenisedExample(id='h', query_ids=[5], support_ids=sups, support_offsets=[[] for _ in sups],
                           windows=[make_windows(len(s), max_length - 2, int(overlap * (max_length - 2))) for s in sups], candidate_ids=[[7]],
                           candidates=['c'], candidate_keys=['c'], subject_key='', mentions=[], sentences=[],
                           coref_clusters=[], answer_index=0)
    for got, ids in zip(encode_supports(enc, tok), sups):
        assert got.shape == (len(ids), 1) and got[:, 0].tolist() == [float(i) for i in ids]


def test_window_coverage_checks():
    target, counts = window_coverage([(0, 6), (4, 10)], 10)
    assert counts.tolist() == [1, 1, 1, 1, 2, 2, 1, 1, 1, 1] and len(target) == 12
    with pytest.raises(ValueError, match='uncovered'): window_coverage([(0, 3), (4, 6)], 6)
    with pytest.raises(ValueError, match='outside'): window_coverage([(0, 7)], 6)


def test_window_longer_than_encoder_is_an_error(tokenizer):
    tok = make_tok(tokenizer, 'q', [SUPPORTS[0]], ['c'], window=20, overlap=5)
    with pytest.raises(ValueError, match='longer than'): encode_supports(IdEncoder(max_length=12), tok)


def test_single_window_equals_direct_encoding(minilm, example):
    for sup, ids in zip(encode_supports(minilm, example), example.support_ids):
        x = torch.tensor([[101, *ids, 102]])
        torch.testing.assert_close(sup, minilm(x, torch.ones_like(x))[0, 1:-1], atol=1e-4, rtol=1e-4)
    q = torch.tensor([[101, *example.query_ids, 102]])
    torch.testing.assert_close(encode_query(minilm, example), minilm(q, torch.ones_like(q))[0, 1:-1], atol=1e-4, rtol=1e-4)
    assert [c.shape[0] for c in encode_candidates(minilm, example)] == [len(c) for c in example.candidate_ids]


def test_long_support_windows_close_to_direct(minilm, tokenizer):
    tok = make_tok(tokenizer, 'q', [' '.join(SUPPORTS * 2)], ['c'], window=96, overlap=32)
    assert len(tok.windows[0]) >= 3
    stitched = encode_supports(minilm, tok)[0]
    x = torch.tensor([[101, *tok.support_ids[0], 102]])
    direct = minilm(x, torch.ones_like(x))[0, 1:-1]
    assert torch.nn.functional.cosine_similarity(stitched, direct, dim=-1).mean() > 0.85


def test_pairs_and_one_batched_example(minilm, example):
    pair = encode_pair(minilm, example.query_ids, example.support_ids[1])
    subq = encode_subqueries(minilm, example)
    assert subq.shape == (3, len(example.query_ids), 384)
    torch.testing.assert_close(subq[1], pair, atol=1e-4, rtol=1e-4)
    minilm.forward_calls = 0
    ex = encode_example(minilm, example, subqueries=True)
    assert minilm.forward_calls <= 3 and set(ex) == {'supports', 'query', 'candidates', 'subqueries'}
    both = encode_examples(minilm, [example, example], subqueries=True)
    for got in both:
        torch.testing.assert_close(got['subqueries'], ex['subqueries'], atol=1e-4, rtol=1e-4)
        for a, b in zip(got['supports'], ex['supports']): torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_training_modes():
    enc = HFEncoder('minilm')
    assert not enc.trainable and not enc.model.training
    enc.train(); assert not enc.model.training, "a frozen encoder keeps dropout off"
    enc.set_trainable(bert_fine_tune_layers=2).train()
    names = {k for k, p in enc.named_parameters() if p.requires_grad}
    assert names == {k for k, _ in enc.named_parameters() if k.startswith(('model.encoder.layer.4.', 'model.encoder.layer.5.'))}
    assert enc.layers[4].training and not enc.layers[3].training and not enc.model.embeddings.training
    enc.set_trainable(fine_tune_embedder=True).train()
    x = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    enc(x, torch.ones_like(x), torch.zeros_like(x)).square().mean().backward()
    missing = [k for k, p in enc.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"   # the unused pooler is removed
    with pytest.raises(ValueError, match='has 6 layers'): enc.set_trainable(bert_fine_tune_layers=7)


def test_attentions_with_eager():
    enc = HFEncoder('minilm', attn_implementation='eager')
    x = torch.tensor([[101, 2023, 2003, 102, 0], [101, 2023, 2003, 1037, 102]])
    with warnings.catch_warnings():
        warnings.simplefilter('error')   # already eager: no switch warning
        states, attn = enc(x, (x != 0).long(), output_attentions=True)
    assert states.shape == (2, 5, 384) and len(attn) == 6 and attn[0].shape == (2, 12, 5, 5)
    torch.testing.assert_close(attn[2].sum(-1), torch.ones(2, 12, 5))
    assert attn[2][0, :, :4, 4].abs().max() < 1e-6


def test_static_encoder_oov_goes_through_char_cnn(tokenizer, tmp_path):
    rng = np.random.default_rng(0)
    glove = tmp_path / 'glove.txt'
    glove.write_text('6 8\n' + ''.join(f"{w} {' '.join(map(str, rng.normal(size=8).round(4)))}\n"
                                       for w in ['the', 'cat', 'sat', 'on', 'mat', 'a']))
    words, vecs = load_glove(glove, {'cat', 'dog'})
    assert words == ['cat'] and vecs.shape == (1, 8)
    enc = StaticEncoder.from_tokenizer(tokenizer, glove, hidden_size=16, num_layers=2).eval()
    ids = torch.tensor([tokenizer('the cat sat on the zyzzyva mat', add_special_tokens=False)['input_ids']])
    mask = torch.ones_like(ids)
    oov = ~enc.in_vocab[ids[0]]
    assert oov.any() and not oov.all()
    before = enc.embed_tokens(ids, mask)[0]
    with torch.no_grad(): enc.char_encoder.emb.weight.add_(1.0)
    after = enc.embed_tokens(ids, mask)[0]
    assert (after[oov] != before[oov]).any(-1).all() and torch.equal(after[~oov], before[~oov])
    # padding is packed away: a row's states do not depend on the batch it is in
    short = torch.tensor([[101, *ids[0, :3].tolist(), 102]])
    batch = torch.zeros(2, ids.shape[1] + 2, dtype=torch.long)
    batch[0, :short.shape[1]] = short[0]; batch[1] = torch.tensor([101, *ids[0].tolist(), 102])
    torch.testing.assert_close(enc(batch, (batch != 0).long())[0, :short.shape[1]], enc(short, torch.ones_like(short))[0])
    assert enc.trainable and enc.out_dim == 16


def test_scratch_encoder_trains():
    torch.manual_seed(0)
    enc = ScratchEncoder(vocab_size=12, hidden_size=32, num_layers=1, heads=2, max_length=16, dropout=0., cls_id=1, sep_id=2)
    head = torch.nn.Linear(32, 12)
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=3e-3)
    losses = []
    for _ in range(40):   # each token predicts the row's first real token: needs attention across positions
        ids = torch.randint(3, 12, (32, 8)); ids[:, 0] = 1
        loss = torch.nn.functional.cross_entropy(head(enc(ids, torch.ones_like(ids))).flatten(0, 1), ids[:, 1:2].expand(32, 8).flatten())
        opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_make_encoder(tokenizer, tmp_path):
    from types import SimpleNamespace
    from hde_kit.config import load_config
    enc = make_encoder(load_config(overrides=['encoder.kind=scratch', 'encoder.hidden_size=32', 'encoder.num_layers=1']).encoder, tokenizer)
    assert isinstance(enc, ScratchEncoder) and enc.out_dim == 32 and (enc.cls_id, enc.sep_id, enc.pad_id) == (101, 102, 0)
    with pytest.raises(ValueError, match='glove_path is required'): make_encoder(SimpleNamespace(kind='static', glove_path=None), tokenizer)
    with pytest.raises(ValueError, match='file not found'): make_encoder(SimpleNamespace(kind='static', glove_path=str(tmp_path / 'no.txt')), tokenizer)
    with pytest.raises(ValueError, match='expected one of'): make_encoder(SimpleNamespace(kind='elmo'), tokenizer)


def _examples(tokenizer):
    return [make_tok(tokenizer, 'country_of_citizenship juan rossell', SUPPORTS[i:i + 3], ['cuba', 'france'], id=f'ex{i}') for i in range(3)]


def test_state_cache_second_epoch_never_runs_encoder(minilm, tokenizer, tmp_path):
    toks = _examples(tokenizer)
    minilm.forward_calls = 0
    first = cached_states(minilm, toks, StateCache.for_encoder(minilm, tmp_path), subqueries=True, progress=False)
    first = [first[i] for i in range(len(toks))]
    assert minilm.forward_calls > 0
    minilm.forward_calls = 0
    cache = StateCache.for_encoder(minilm, tmp_path)   # a new epoch / a new process
    again = cached_states(minilm, toks, cache, subqueries=True, progress=False)
    assert minilm.forward_calls == 0
    for a, b in zip(first, again):
        for key in ('supports', 'candidates'):
            assert all(torch.equal(x, y) for x, y in zip(a[key], b[key]))
        assert torch.equal(a['query'], b['query']) and torch.equal(a['subqueries'], b['subqueries'])
    mm = cache.memmap()
    assert isinstance(mm, np.memmap) and mm.dtype == np.float16 and mm.size == cache.index['rows'] * 384
    direct = encode_example(minilm, toks[2])
    torch.testing.assert_close(again[2]['supports'][1], direct['supports'][1], atol=2e-2, rtol=1e-2)
    import pickle
    assert len(pickle.dumps(cache)) < 100_000 and torch.equal(pickle.loads(pickle.dumps(again))[0]['query'], first[0]['query'])
    # the key follows the encoder's weights and the dtype
    assert state_cache_key(minilm) != state_cache_key(minilm, 'float32')


def test_state_cache_refuses_trainable_and_recomputes_stale(minilm, tokenizer, tmp_path):
    toks = _examples(tokenizer)
    cache = StateCache.for_encoder(minilm, tmp_path)
    cached_states(minilm, toks, cache, progress=False)
    minilm.set_trainable(bert_fine_tune_layers=1)
    try:
        with pytest.raises(ValueError, match='cannot be cached'): cached_states(minilm, toks, cache)
    finally: minilm.set_trainable().eval()
    changed = make_tok(tokenizer, 'q', SUPPORTS[:1], ['cuba'], id='ex0')   # same id, new tokens
    assert changed not in cache and toks[1] in cache
    minilm.forward_calls = 0
    assert cached_states(minilm, changed, cache)['supports'][0].shape[0] == len(changed.support_ids[0])
    assert minilm.forward_calls > 0


def test_state_cache_corruption_is_rebuilt(minilm, tokenizer, tmp_path):
    toks = _examples(tokenizer)
    cache = StateCache.for_encoder(minilm, tmp_path)
    ref = [cached_states(minilm, t, cache) for t in toks]
    cache.index_path.write_text('{"version": 1, "entr')            # a garbled index
    with pytest.warns(text.CacheWarning, match='rebuilding'): cache = StateCache.for_encoder(minilm, tmp_path)
    assert len(cache) == 0
    minilm.forward_calls = 0
    got = cached_states(minilm, toks, cache, progress=False)
    assert minilm.forward_calls > 0
    close = lambda a, b: torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)   # recomputed in other batches: float16 rounding may differ
    for i in range(3): close(got[i]['query'], ref[i]['query'])

    index = json.loads(cache.index_path.read_text()); index['key'] = 'other'
    cache.index_path.write_text(json.dumps(index))                 # a foreign cache in our directory
    with pytest.warns(text.CacheWarning, match='foreign'): cache = StateCache.for_encoder(minilm, tmp_path)
    cached_states(minilm, toks, cache, progress=False)

    e = cache.index['entries']['ex1']                              # flipped bytes inside one entry
    with open(cache.data_path, 'r+b') as f: f.seek(e['offset'] * 384 * 2 + 6); f.write(b'\x00\x7c\x00\x7c')
    cache = StateCache.for_encoder(minilm, tmp_path)
    minilm.forward_calls = 0; encode_example(minilm, toks[1]); per_example = minilm.forward_calls
    minilm.forward_calls = 0
    lazy = cached_states(minilm, toks, cache, progress=False)   # the index is intact: nothing computed yet
    assert minilm.forward_calls == 0
    with pytest.warns(text.CacheWarning, match="'ex1' fails its checksum"): got = [lazy[i] for i in range(3)]
    assert minilm.forward_calls == per_example                  # only ex1 recomputed, and rewritten
    close(got[0]['query'], ref[0]['query']); assert cache.get(toks[1]) is not None

    with open(cache.data_path, 'ab') as f: f.write(b'\1' * 999)    # bytes of a writer killed before its index flush
    cache = StateCache.for_encoder(minilm, tmp_path)
    extra = make_tok(tokenizer, 'q', SUPPORTS[3:], ['havana'], id='extra')
    cached_states(minilm, extra, cache)
    assert cache.data_path.stat().st_size == cache.index['rows'] * 384 * 2
    close(StateCache.for_encoder(minilm, tmp_path).get(toks[2])['query'], ref[2]['query'])

    cache.data_path.write_bytes(b'')                               # data file truncated behind the index's back
    with pytest.warns(text.CacheWarning, match='the index expects'): cache = StateCache.for_encoder(minilm, tmp_path)
    assert len(cache) == 0


def test_real_wikihop_example(minilm, tokenizer, shared_data):
    if not hasattr(text, 'tokenise_example'): pytest.skip('hde_kit.text.tokenise_example not available yet')
    from hde_kit.config import load_config
    from hde_kit.data import read_examples
    files = sorted((shared_data / 'wikihop').glob('*.json'))
    if not files: pytest.skip('no WikiHop sample records')
    ex = read_examples(files[0]).examples[0]
    tok = text.tokenise_example(ex, tokenizer, load_config().text)
    states = encode_example(minilm, tok)
    assert [s.shape[0] for s in states['supports']] == [len(s) for s in tok.support_ids]
    assert len(states['candidates']) == len(ex.candidates)
