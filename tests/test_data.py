"""hde_kit.data: a corpus of malformed files for `validate` (strict and lenient), the real QAngaroo samples
(counts computed here with plain json), round trips (JSON, JSON lines, HF datasets), directory and zip readers."""
import json, re, statistics, tempfile, zipfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hde_kit.data import (DataError, Example, Problem, dataset_stats, format_stats, from_hf_dataset, iter_records,
                          read_examples, to_hf_dataset, validate, write_examples)

MASK = re.compile(r'^___MASK\d+___$')

def rec(id='bad', **kw) -> dict:
    "A valid record; keyword arguments replace fields (value DROP removes one)."
    r = {'id': id, 'query': 'located_in the hague', 'answer': 'netherlands',
         'candidates': ['netherlands', 'belgium', 'france'],
         'supports': ['The Hague is a city in the Netherlands .', 'Brussels is the capital of Belgium .']}
    for k, v in {'id': id, **kw}.items():
        if v is DROP: r.pop(k)
        else: r[k] = v
    return r

DROP = object()
OK = json.dumps(rec('ok_0')).encode()          # a good record that precedes the bad one in most files

def jlist(*items) -> bytes:
    "A JSON list of a good record and the given records (dicts or raw bytes)."
    return b'[' + b',\n'.join([OK] + [i if isinstance(i, bytes) else json.dumps(i, ensure_ascii=False).encode() for i in items]) + b']'

def with_bad_byte(raw: bytes, after: bytes) -> tuple[bytes, int]:
    "Insert an invalid UTF-8 byte right after the first `after` in the record 'bad' (or 'b'); return the bytes and its offset."
    start = raw.index(b'"id": "b')
    at = raw.index(after, start) + len(after)
    return raw[:at] + b'\xff' + raw[at:], at

def jsonl(*lines) -> bytes:
    return b'\n'.join(l if isinstance(l, bytes) else json.dumps(l).encode() for l in lines) + b'\n'

def build_corpus():
    "(file name, content, (record, field, reason, keyword), number of good examples) for every problem."
    C = []
    def add(name, data, expect, good): C.append((name, data, expect, good))
    # --- missing fields
    for f in ('query', 'supports', 'candidates', 'answer'):
        add(f'missing_{f}.json', jlist(rec(**{f: DROP})), ('bad', f, 'missing_field', 'missing field'), 1)
    add('missing_id.json', jlist(rec(id=DROP)), ('#1', 'id', 'missing_field', 'missing field'), 1)
    # --- wrong types
    add('id_number.json', jlist(rec(id=17)), ('#1', 'id', 'wrong_type', 'expected a string, got a number'), 1)
    add('query_list.json', jlist(rec(query=['located_in', 'x'])), ('bad', 'query', 'wrong_type', 'got a list'), 1)
    add('supports_string.json', jlist(rec(supports='one document')), ('bad', 'supports', 'wrong_type', 'expected a list of strings, got a string'), 1)
    add('candidates_object.json', jlist(rec(candidates={'a': 1})), ('bad', 'candidates', 'wrong_type', 'got an object'), 1)
    add('answer_number.json', jlist(rec(answer=3)), ('bad', 'answer', 'wrong_type', 'expected a string or null, got a number'), 1)
    add('answer_list.json', jlist(rec(answer=['netherlands'])), ('bad', 'answer', 'wrong_type', 'got a list'), 1)
    add('meta_string.json', jlist(rec(meta='x')), ('bad', 'meta', 'wrong_type', 'expected an object'), 1)
    add('empty_query.json', jlist(rec(query='  ')), ('bad', 'query', 'empty_field', 'empty query'), 1)
    # --- empty lists, answer, duplicates, non-string items
    add('empty_supports.json', jlist(rec(supports=[])), ('bad', 'supports', 'empty_supports', 'empty list'), 1)
    add('empty_candidates.json', jlist(rec(candidates=[])), ('bad', 'candidates', 'empty_candidates', 'empty list'), 1)
    add('answer_not_candidate.json', jlist(rec(answer='germany')), ('bad', 'answer', 'answer_not_in_candidates', 'not among the 3 candidates'), 1)
    add('answer_case.json', jlist(rec(answer='Netherlands')), ('bad', 'answer', 'answer_not_in_candidates', 'differs only in case'), 1)
    add('duplicate_id.json', jlist(rec('ok_0')), ('ok_0', 'id', 'duplicate_id', 'duplicate id: record #1 repeats record #0'), 1)
    add('duplicate_candidates.json', jlist(rec(candidates=['netherlands', 'belgium', 'netherlands'])),
        ('bad', 'candidates', 'duplicate_candidates', "duplicate candidate 'netherlands'"), 1)
    add('supports_number_item.json', jlist(rec(supports=['doc', 42])), ('bad', 'supports', 'non_string_item', 'item 1 is a number'), 1)
    add('candidates_null_item.json', jlist(rec(candidates=[None, 'netherlands'])), ('bad', 'candidates', 'non_string_item', 'item 0 is null'), 1)
    add('supports_nested_item.json', jlist(rec(supports=[['a', 'b']])), ('bad', 'supports', 'non_string_item', 'item 0 is a list'), 1)
    # --- invalid UTF-8 (exact byte offsets)
    for field, after in (('supports', b'The Hague'), ('candidates', b'"belgi'), ('query', b'"located')):
        data, at = with_bad_byte(jlist(rec()), after)
        add(f'utf8_in_{field}.json', data, ('bad', field, 'invalid_utf8', f'invalid UTF-8 at byte {at}'), 1)
    data, at = with_bad_byte(jlist(rec()), b'"id": "ba')
    add('utf8_in_id.json', data, ('#1', 'id', 'invalid_utf8', f'byte {at}'), 1)
    data = jlist(rec())
    at = data.index(b',\n') + 2
    data = data[:at] + b'\xff' + data[at:]                     # between two records: breaks the JSON itself
    add('utf8_structural.json', data, ('#1', '(json)', 'invalid_utf8', f'invalid UTF-8 at byte {at}'), 1)
    # --- empty, truncated and invalid files
    add('empty.json', b'', ('-', '(file)', 'empty_file', 'empty file'), 0)
    add('blank.json', b' \n\t\n', ('-', '(file)', 'empty_file', 'only whitespace'), 0)
    full = jlist(rec(supports=['ééé àà ' * 5, 'a support that the file ends inside']))
    cut = full[:full.index(b'the file ends')]
    add('truncated_in_string.json', cut, ('bad', '(json)', 'truncated_json', f'ends at byte {len(cut)} inside record #1'), 1)
    data = b'[' + OK + b', {"que'
    add('truncated_before_id.json', data, ('#1', '(json)', 'truncated_json', f'ends at byte {len(data)} inside record #1'), 1)
    add('truncated_after_bracket.json', b'[', ('#0', '(json)', 'truncated_json', 'ends at byte 1'), 0)
    add('truncated_no_close.json', b'[' + OK, ('-', '(json)', 'truncated_json', f'after record #0'), 1)
    data = jlist() [:-1] + b',]'
    add('trailing_comma.json', data, ('#1', '(json)', 'invalid_json', f'invalid JSON at byte {len(data) - 1}'), 1)
    data = jlist(b'{"id": "bad", \'query\': "x"}')
    at = data.index(b"'query'")
    add('single_quotes.json', data, ('bad', '(json)', 'invalid_json', f'invalid JSON at byte {at}'), 1)
    data = jlist(rec('ok_1', supports=['ünïcödé ' * 20]), b'{"id": "bad" "query": 1}')
    at = data.index(b'"query": 1')                  # the byte offset, not the character offset
    add('invalid_after_multibyte.json', data, ('bad', '(json)', 'invalid_json', f"invalid JSON at byte {at},"), 2)
    add('jsonl_named_json.json', jsonl(rec('a'), rec('b')), ('-', '(json)', 'invalid_json', 'name the file .jsonl'), 0)
    # --- top level and record shapes
    add('top_object.json', OK, ('ok_0', '(file)', 'not_a_list', 'holds this one record, not a list of records'), 0)
    add('top_other_object.json', b'{"records": []}', ('-', '(file)', 'not_a_list', 'top level is an object, expected a list'), 0)
    add('top_string.json', b'"records"', ('-', '(file)', 'not_a_list', 'top level is a string'), 0)
    add('top_number.json', b'42', ('-', '(file)', 'not_a_list', 'top level is a number'), 0)
    add('record_string.json', jlist('WH_train_0'), ('#1', '(record)', 'not_an_object', 'record is a string, expected an object'), 1)
    add('record_null.json', jlist(None), ('#1', '(record)', 'not_an_object', 'record is null'), 1)
    add('record_list.json', jlist([rec()]), ('#1', '(record)', 'not_an_object', 'record is a list'), 1)
    # --- JSON lines
    add('bad_line.jsonl', jsonl(rec('a'), b'{"id": "b", "query": oops}', rec('c')), ('b', '(json)', 'invalid_json', 'line 2: invalid JSON at byte'), 2)
    add('bad_line_no_id.jsonl', jsonl(rec('a'), b'not json at all', rec('c')), ('#1', '(json)', 'invalid_json', 'line 2:'), 2)
    add('truncated_last_line.jsonl', jsonl(rec('a'), rec('b'))[:-20], ('b', '(json)', 'truncated_json', 'line 2: truncated'), 1)
    add('line_not_object.jsonl', jsonl(rec('a'), [1, 2]), ('#1', '(record)', 'not_an_object', 'record is a list, expected an object (line 2)'), 1)
    add('line_missing_field.jsonl', jsonl(rec('a'), rec('b', answer=DROP)), ('b', 'answer', 'missing_field', '(line 2)'), 1)
    add('line_duplicate_id.jsonl', jsonl(rec('a'), rec('b'), rec('a')), ('a', 'id', 'duplicate_id', 'record #2 repeats record #0 (line 3)'), 2)
    data, at = with_bad_byte(jsonl(rec('a'), rec('b', supports=['only in line two'])), b'only in')
    add('utf8_line.jsonl', data, ('b', 'supports', 'invalid_utf8', f'invalid UTF-8 at byte {at} (line 2)'), 1)
    add('empty.jsonl', b'', ('-', '(file)', 'empty_file', 'empty file'), 0)
    add('blank_lines.jsonl', b'\n\n  \n', ('-', '(file)', 'empty_file', 'empty file'), 0)
    return C

CORPUS = build_corpus()

def test_corpus_is_large_and_covers_every_reason():
    assert len(CORPUS) >= 30
    assert len({name for name, *_ in CORPUS}) == len(CORPUS)
    reasons = {exp[2] for _, _, exp, _ in CORPUS}
    assert reasons >= {'missing_field', 'wrong_type', 'empty_supports', 'empty_candidates', 'answer_not_in_candidates',
                       'duplicate_id', 'duplicate_candidates', 'non_string_item', 'invalid_utf8', 'empty_file',
                       'truncated_json', 'invalid_json', 'not_a_list', 'not_an_object'}

@pytest.fixture(scope='module')
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('malformed')
    for name, data, _, _ in CORPUS: (d/name).write_bytes(data)
    return d

@pytest.mark.parametrize('name,expect', [(n, e) for n, _, e, _ in CORPUS], ids=[n for n, *_ in CORPUS])
def test_validate_gives_the_expected_line(corpus_dir, name, expect):
    record, field, reason, keyword = expect
    problems = validate(corpus_dir/name)                   # never raises
    assert len(problems) == 1, [str(p) for p in problems]
    p = problems[0]
    assert isinstance(p, Problem) and p.file.endswith(name)
    assert (p.record, p.field, p.reason) == (record, field, reason), str(p)
    line = str(p)
    assert line.startswith(f"{record}: {field}: ") and keyword in p.message, line
    assert '\n' not in line and 'Traceback' not in line

@pytest.mark.parametrize('name,expect', [(n, e) for n, _, e, _ in CORPUS], ids=[n for n, *_ in CORPUS])
def test_strict_raises_naming_file_record_field(corpus_dir, name, expect):
    record, field, reason, _ = expect
    with pytest.raises(DataError) as e: read_examples(corpus_dir/name, strict=True)
    assert (e.value.problem.record, e.value.problem.field, e.value.problem.reason) == (record, field, reason)
    assert str(e.value).startswith(f"{corpus_dir/name}: {record}: {field}: ")

@pytest.mark.parametrize('name,expect,good', [(n, e, g) for n, _, e, g in CORPUS], ids=[n for n, *_ in CORPUS])
def test_lenient_skips_and_counts(corpus_dir, name, expect, good):
    res = read_examples(corpus_dir/name)
    assert len(res.examples) == good
    assert res.skipped == Counter({expect[2]: 1})
    assert [str(p) for p in res.problems] == [str(p) for p in validate(corpus_dir/name)]
    assert all(isinstance(ex, Example) and ex.answer_index is not None for ex in res.examples)

def test_all_problems_of_a_record_are_reported(tmp_path):
    f = tmp_path/'many.json'
    f.write_text(json.dumps([rec(query=DROP, supports=[], candidates=['a', 'a', 1], answer=2)]))
    lines = [str(p) for p in validate(f)]
    assert lines == ['bad: query: missing field',
                     'bad: supports: empty list: an example needs at least one support document',
                     'bad: candidates: item 2 is a number, expected a string',
                     'bad: answer: expected a string or null, got a number']
    assert read_examples(f).skipped == Counter(missing_field=1)

def test_sources_that_cannot_be_read(tmp_path):
    (tmp_path/'broken.zip').write_bytes(b'PK\x03\x04 not really a zip')
    for src, field, word in ((tmp_path/'nope.json', '(source)', 'no such file'), (tmp_path/'broken.zip', '(file)', 'not a valid zip'),
                             (tmp_path, '(source)', 'no QAngaroo files')):
        (p,) = validate(src)
        assert (p.record, p.field) == ('-', field) and word in p.message
        with pytest.raises(DataError): read_examples(src)

def test_bom_unlabelled_and_extra_keys(tmp_path):
    f = tmp_path/'bom.json'
    f.write_bytes(b'\xef\xbb\xbf' + json.dumps([rec('a', answer=None, source='x')]).encode())
    (ex,) = read_examples(f, strict=True).examples
    assert (ex.answer, ex.answer_index, ex.meta) == (None, None, {'source': 'x'})
    g = tmp_path/'unlabelled.jsonl'
    g.write_text(json.dumps(rec('b', answer=DROP)) + '\n')
    assert validate(g, require_answer=False) == [] and len(validate(g)) == 1

def test_iter_records_streams_jsonl(tmp_path):
    f = tmp_path/'stream.jsonl'
    f.write_bytes(jsonl(rec('a'), b'garbage', rec('c')))
    it = iter_records(f)
    first = next(it)                                # the bad line has not been looked at yet
    assert (first.index, first.line, first.record['id']) == (0, 1, 'a')
    rest = list(it)
    assert isinstance(rest[0], Problem) and rest[1].record['id'] == 'c' and rest[1].line == 3

@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mangled_files_never_raise(data):
    "Truncations, byte flips and insertions: validate returns problems, never raises; a clean result reads strictly."
    raw = bytearray(jlist(rec('a'), rec('b', supports=['é ü ' * 3])))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(['cut', 'flip', 'insert']))
        i = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == 'cut': raw = raw[:i]
        elif op == 'flip' and raw: raw[i] = data.draw(st.integers(0, 255))
        else: raw[i:i] = data.draw(st.binary(min_size=1, max_size=3))
    suffix = data.draw(st.sampled_from(['.json', '.jsonl']))
    with tempfile.TemporaryDirectory() as d:
        f = Path(d)/f'x{suffix}'
        f.write_bytes(bytes(raw))
        problems = validate(f)
        assert all(isinstance(p, Problem) and str(p).count(': ') >= 2 for p in problems)
        res = read_examples(f)
        assert sum(res.skipped.values()) >= (1 if problems else 0)
        if not problems: read_examples(f, strict=True)

# --- the real samples in ../shared/data: counts computed here with plain json

def sample_files(shared_data):
    files = sorted(shared_data.rglob('*.json'))
    assert files, f"no .json files under {shared_data}"
    return files

def test_stats_agree_with_independent_counts(shared_data):
    for f in sample_files(shared_data):
        raw = json.loads(f.read_bytes())
        stats = dataset_stats(read_examples(f, strict=True).examples)
        n_sup = [len(r['supports']) for r in raw]
        n_cand = [len(r['candidates']) for r in raw]
        toks = [len(s.split()) for r in raw for s in r['supports']]
        assert stats['examples'] == len(raw), f
        assert (stats['supports']['total'], stats['supports']['max']) == (sum(n_sup), max(n_sup)), f
        assert (stats['candidates']['total'], stats['candidates']['max']) == (sum(n_cand), max(n_cand)), f
        assert stats['supports']['mean'] == pytest.approx(statistics.mean(n_sup))
        assert stats['candidates']['median'] == statistics.median(n_cand)
        assert stats['tokens_per_support']['total'] == sum(toks) and stats['tokens_per_support']['max'] == max(toks)
        assert stats['tokens_per_example']['max'] == max(sum(len(s.split()) for s in r['supports']) for r in raw)
        rels = Counter(r['query'].split(' ', 1)[0] for r in raw)
        assert stats['num_relations'] == len(rels) and all(rels[k] == v for k, v in stats['relations'].items())
        assert stats['masked'] == all(MASK.match(c) for r in raw for c in r['candidates']) == f.name.endswith('.masked.json')
        assert stats['labelled'] == len(raw)
        assert str(len(raw)) in format_stats(stats).splitlines()[0]

def test_samples_validate_clean(shared_data):
    for f in sample_files(shared_data):
        assert validate(f) == [], f

def test_wikihop_sample_matches_sources_md(shared_data):
    stats = dataset_stats(read_examples(shared_data/'wikihop'/'wikihop_train_first22_ml4g.json'))
    assert stats['examples'] == 22
    assert round(stats['supports']['mean'], 1) == 15.0 and round(stats['candidates']['mean'], 1) == 17.4
    assert round(stats['tokens_per_example']['mean']) == 1379

def test_round_trips(shared_data, tmp_path):
    for f in sample_files(shared_data):
        exs = read_examples(f, strict=True).examples
        for suffix in ('.json', '.jsonl'):
            out = write_examples(exs, tmp_path/(f.stem + suffix))
            assert read_examples(out, strict=True).examples == exs, (f, suffix)
        assert from_hf_dataset(to_hf_dataset(exs)) == exs
        assert read_examples(to_hf_dataset(exs), strict=True).examples == exs
    masked = [f for f in sample_files(shared_data) if f.name.endswith('.masked.json')]
    assert masked and all(e.masked for f in masked for e in read_examples(f).examples)

def test_hf_round_trip_keeps_annotations_and_meta():
    exs = [Example('a', 'r s', ['d'], ['x', 'y'], 'x', annotations=[['follows', 'multiple'], ['likely']], meta={'hops': 2, 'chain': [0, 3]}),
           Example('b', 'interacts_with DB1?', ['d'], ['DB2'], None)]
    ds = to_hf_dataset(exs)
    assert ds.column_names == ['id', 'query', 'supports', 'candidates', 'answer', 'annotations_json', 'meta_json']
    assert from_hf_dataset(ds) == exs and exs[1].subject == 'DB1'

LAYOUT = {'wikihop/train.json': 'wikihop/wikihop_train_first22_ml4g.json',
          'wikihop/train.masked.json': 'wikihop/wikihop_train_tiny2_tgcnqa.masked.json',
          'wikihop/dev.json': 'wikihop/wikihop_train_tiny2_tgcnqa.json',
          'medhop/train.json': 'medhop/medhop_train_first1_hfdummy.json',
          'medhop/dev.json': 'medhop/medhop_dev_first1_hfdummy.json',
          'medhop/dev.masked.json': 'medhop/medhop_dev_first1_hfdummy.masked.json'}

@pytest.fixture
def qangaroo(shared_data, tmp_path):
    "A qangaroo_v1.1 tree and the zip it is distributed as, built from the samples."
    root = tmp_path/'qangaroo_v1.1'
    for dst, src in LAYOUT.items():
        (root/dst).parent.mkdir(parents=True, exist_ok=True)
        (root/dst).write_bytes((shared_data/src).read_bytes())
    z = tmp_path/'qangaroo_v1.1.zip'
    with zipfile.ZipFile(z, 'w', zipfile.ZIP_DEFLATED) as zf:
        zf.writestr('qangaroo_v1.1/', '')
        for dst in LAYOUT: zf.write(root/dst, f'qangaroo_v1.1/{dst}')
        zf.writestr('__MACOSX/qangaroo_v1.1/wikihop/._train.json', b'\x00\x05junk')
    return root, z

def test_directory_and_zip_readers(shared_data, qangaroo):
    root, z = qangaroo
    for dst, src in LAYOUT.items():
        dataset, name = dst.split('/')
        split, masked = name.split('.')[0], '.masked.' in name
        want = read_examples(shared_data/src, strict=True).examples
        for source in (root, root.parent, root/dataset, z):
            res = read_examples(source, strict=True, dataset=dataset, split=split, masked=masked)
            assert res.examples == want, (source, dst)
            assert res.file.endswith(dst)
    assert read_examples(z, dataset='medhop', split='train').file == f"{z}:qangaroo_v1.1/medhop/train.json"
    assert len(read_examples(root/'medhop', split='train')) == 1

def test_directory_and_zip_selection_errors(qangaroo):
    root, z = qangaroo
    for source in (root, z):
        with pytest.raises(DataError, match='choose dataset= and split='): read_examples(source)
        with pytest.raises(DataError, match='available: .*medhop/dev.masked'): read_examples(source, dataset='medhop', split='train', masked=True)
        (p,) = validate(source, dataset='wikihop', split='test')
        assert p.field == '(source)' and 'no QAngaroo file fits' in p.message

def test_zip_member_problems_name_the_member(qangaroo, tmp_path):
    root, _ = qangaroo
    z = tmp_path/'broken.zip'
    data = (root/'wikihop/dev.json').read_bytes()
    with zipfile.ZipFile(z, 'w') as zf: zf.writestr('qangaroo_v1.1/wikihop/dev.json', data[:len(data) // 2])
    (p,) = validate(z)
    assert p.file == f"{z}:qangaroo_v1.1/wikihop/dev.json" and p.reason == 'truncated_json'
    assert f"ends at byte {len(data) // 2}" in p.message

def test_cli_validate_prints_one_line_per_problem(corpus_dir, capsys):
    cli = pytest.importorskip('hde_kit.cli')
    if not hasattr(cli, 'main'): pytest.skip('hde_kit.cli has no main yet')
    for name, _, (record, field, _, keyword), _ in CORPUS:
        assert cli.main(['data', 'validate', str(corpus_dir/name)]) == 1
        out = capsys.readouterr()
        first = out.out.strip().splitlines()[0]
        if record == '-': first = first.removeprefix(f"{corpus_dir/name}: ")   # a whole-file problem names its file first
        assert first.startswith(f"{record}: {field}: ") and keyword in out.out, out.out
        assert 'Traceback' not in out.out + out.err
