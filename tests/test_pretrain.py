"""Masked-entity pretraining (hde_kit.pretrain) and the masked / anonymised variants: no masked mention leaks its
identity (token ids, node features before the GNN, string matching), every generated example has its answer among
its candidates, the masked QAngaroo files round-trip and train, and `hde pretrain` + `hde train init_from=` work
from the command line."""
from __future__ import annotations
import json, random, re

import pytest
import torch
from torch_geometric.data import Batch

from hde_kit.config import load_config
from hde_kit.data import Example, MASK_RE, read_examples, write_examples
from hde_kit.pretrain import find_entities, masked_entity_example, pretraining_examples
from hde_kit.synthetic import generate
from hde_kit.text import exact_char_spans, get_tokenizer, normalise, tokenise_example, word_spans

def _names_left(texts, names):
    "Exact-match occurrences of any of `names` in `texts` (the kit's own mention finder)."
    ws = [word_spans(t) for t in texts]
    return list(exact_char_spans([w[0] for w in ws], [w[1] for w in ws], [w[2] for w in ws],
                                 [(normalise(n).split(), n) for n in names if normalise(n)]))

@pytest.fixture(scope='module')
def synthetic_pretraining():
    sets = generate(60, hops=2, seed=7) + generate(30, hops=3, seed=8)
    exs, skipped = pretraining_examples(sets, load_config())
    cloze, _ = pretraining_examples(sets[:40], load_config(overrides=['pretrain.mode=cloze']))
    return sets, exs, cloze

def test_every_example_has_its_answer_among_candidates_and_no_name_left(synthetic_pretraining):
    sets, exs, cloze = synthetic_pretraining
    assert len(exs) >= 80 and len(cloze) >= 30
    mask_id = get_tokenizer('minilm').mask_token_id
    for ex in exs + cloze:
        assert ex.answer in ex.candidates and len(ex.candidates) >= 2 and len(set(ex.candidates)) == len(ex.candidates)
        assert _names_left(ex.supports + [ex.query], ex.candidates) == [], ex.id     # string matching finds no hidden name
        tok = tokenise_example(ex)
        hidden = [m for m in tok.mentions if m.kind == 'candidate']
        assert {m.candidate for m in hidden} == set(range(len(ex.candidates)))     # every candidate is mentioned, masked
        for m in hidden: assert tok.support_ids[m.support][m.tok_start:m.tok_end] == [mask_id]
        names = [get_tokenizer('minilm')(c, add_special_tokens=False)['input_ids'] for c in ex.candidates]
        for ids in tok.support_ids:   # no candidate's token sequence survives anywhere in the supports
            for n in names:
                assert not any(ids[i:i + len(n)] == n for i in range(len(ids) - len(n) + 1)), ex.id

def _rename(ex: Example, old: str, new: str) -> Example:
    sub = lambda t: re.sub(rf'\b{re.escape(old)}\b', new, t)
    meta = {**ex.meta, 'entities': [new if e == old else e for e in ex.meta.get('entities', [])]}
    return Example(ex.id, ex.query, [sub(s) for s in ex.supports], [new if c == old else c for c in ex.candidates],
                   None, meta=meta)

def test_node_features_before_the_gnn_do_not_depend_on_the_hidden_identity(tmp_path):
    "Two sets that differ only in the hidden entity's name give the same masked example up to that candidate's name."
    from hde_kit.model import HDEModel, prepare
    from hde_kit.encoders import make_encoder
    src = generate(1, hops=2, seed=21)[0]
    bridge = src.meta['bridges'][0]
    twin = _rename(src, bridge, 'Zorvakhelm')
    made = []
    for ex in (src, twin):
        ents = find_entities([ex])[0]
        m, why = masked_entity_example(ex, ents, random.Random(3), target=normalise(ex.meta['bridges'][0] if ex is src else 'Zorvakhelm'))
        assert m is not None, why
        made.append(m)
    a, b = made
    assert a.supports == b.supports and a.query == b.query and a.meta['masked_mentions'] == b.meta['masked_mentions']
    assert [c for c in a.candidates if c != bridge] == [c for c in b.candidates if c != 'Zorvakhelm']
    cfg = load_config(overrides=['encoder.cache_states=false'])
    enc = make_encoder(cfg.encoder)
    torch.manual_seed(0)
    model = HDEModel(cfg, enc.out_dim).eval()
    feats = []
    for ex in made:
        data = prepare([ex], cfg, enc, cache_dir=tmp_path, progress=False)
        states, batch = data.batch([0])
        with torch.no_grad(): feats.append((model.embedder(states, batch), batch))
    (xa, ga), (xb, gb) = feats
    assert torch.equal(ga.node_type, gb.node_type) and torch.equal(ga.edge_index, gb.edge_index)
    hidden_cand = a.candidates.index(bridge)
    differ = (xa - xb).abs().amax(-1) > 1e-6
    from hde_kit.graph import NodeType
    is_that_candidate = (ga.node_type == NodeType.candidate) & (ga.node_candidate == hidden_cand)
    assert not differ[~is_that_candidate].any(), "a node other than the hidden entity's own candidate node changed"
    assert differ[is_that_candidate].all()

def test_masked_qangaroo_files_round_trip(shared_data, tmp_path):
    files = sorted(shared_data.glob('*/*.masked.json'))
    assert len(files) == 2, files
    for f in files:
        exs = read_examples(f, strict=True).examples
        assert exs and all(e.masked and e.answer in e.candidates for e in exs)
        assert any(c in s for e in exs for c in e.candidates for s in e.supports)   # the masks stand in the text too
        out = write_examples(exs, tmp_path / f.name)
        again = read_examples(out, strict=True).examples
        assert [(e.id, e.query, e.supports, e.candidates, e.answer) for e in again] == \
               [(e.id, e.query, e.supports, e.candidates, e.answer) for e in exs]
        raw = json.loads(f.read_text())
        assert [r['candidates'] for r in json.loads(out.read_text())] == [r['candidates'] for r in raw]

def test_training_on_masked_and_anonymised_data(shared_data, tmp_path):
    from hde_kit.train import train, load_splits
    masked = shared_data / 'wikihop' / 'wikihop_train_tiny2_tgcnqa.masked.json'
    common = ['train.epochs=1', 'gnn.num_layers=2', f'train.cache_dir={tmp_path / "cache"}']
    res = train(load_config(overrides=common + [f'data.train={masked}', f'data.dev={masked}', 'data.masked=true']),
                run_dir=tmp_path / 'masked', progress=False)
    preds = json.loads((tmp_path / 'masked' / 'predictions-dev.json').read_text())
    assert len(preds) == 2 and all(MASK_RE.match(p) for p in preds.values())
    plain = shared_data / 'wikihop' / 'wikihop_train_first22_ml4g.json'
    cfg = load_config(overrides=common + [f'data.train={plain}', f'data.dev={plain}', 'data.anonymise=true',
                                          'data.max_examples=4'])
    splits = load_splits(cfg)
    for ex in splits.train:
        assert ex.masked and ex.answer in ex.candidates
        assert _names_left(ex.supports, ex.meta['masks'].values()) == []
    assert [e.candidates for e in load_splits(cfg).train] == [e.candidates for e in splits.train]   # consistent
    train(cfg, run_dir=tmp_path / 'anon', progress=False)
    assert len(json.loads((tmp_path / 'anon' / 'predictions-dev.json').read_text())) == 4

def test_pretraining_on_a_qangaroo_split_ignores_its_labels(shared_data):
    exs = read_examples(shared_data / 'wikihop' / 'wikihop_train_first22_ml4g.json').examples
    unlabelled = [Example(e.id, e.query, e.supports, e.candidates, None) for e in exs]
    made, skipped = pretraining_examples(unlabelled, load_config())
    assert len(made) >= 10, skipped
    for m in made:
        assert m.answer in m.candidates and _names_left(m.supports + [m.query], m.candidates) == []

def test_cli_pretrain_then_finetune(tmp_path, capsys):
    from hde_kit.cli import main
    cache = f'train.cache_dir={tmp_path / "cache"}'
    assert main(['pretrain', 'pretrain.num_sets=24', 'pretrain.dev_sets=8', 'train.epochs=1', 'gnn.num_layers=2',
                 cache, '--run-dir', str(tmp_path / 'pre'), '--quiet']) == 0
    assert (tmp_path / 'pre' / 'checkpoints').is_dir()
    assert main(['train', 'data.n_train=16', 'data.n_dev=8', 'train.epochs=1', 'gnn.num_layers=2', cache,
                 f'init_from={tmp_path / "pre"}', '--run-dir', str(tmp_path / 'ft'), '--quiet']) == 0
    out = capsys.readouterr().out
    assert re.search(r'init_from .*: loaded \d+ tensors, 0 new', out), out
