"""A corpus of hostile inputs for the `hde` command line: what an attacker or a careless user hands it.

Each case builds its files in a folder of its own and names the `hde` arguments to run. `run_cases` runs a group of
cases in this process (the test runs it in a subprocess under a memory limit) and reports, per case, the exit status,
what was printed, the seconds it took and the peak resident memory so far. A case passes when the command exits
non-zero (or, where `rc='reported'`, exits 0 having printed the documented `ID: graph: reason` line of an example
it could not build), prints no traceback and no raw control character, and prints every string in `contains` (the
record id and field where there is one)."""
import contextlib, io, json, os, resource, struct, sys, time, traceback, warnings, zipfile
from pathlib import Path

CASES: dict = {}   # name -> (group, build(folder) -> argv, rc, contains)
RAW_CONTROL = ('\x1b', '\x07', '\x00', '\u202e', '\u2066', '\x9b')   # (progress bars print \r themselves)


def case(name, group='light', rc='error', contains=()):
    def register(build):
        CASES[name] = (group, build, rc, tuple(contains))
        return build
    return register


def rec(id='bad', **kw) -> dict:
    r = {'id': id, 'query': 'located_in the hague', 'answer': 'netherlands', 'candidates': ['netherlands', 'belgium'],
         'supports': ['The Hague is a city in the Netherlands .', 'Brussels is in Belgium .']}
    r.update(kw)
    return r


def write(folder: Path, name: str, data) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode('utf-8', 'surrogatepass'))
    return p


def records(folder: Path, *recs, raw: str = '', name: str = 'data.json') -> Path:
    "A JSON list of a good record, the given records and raw JSON text appended inside the list."
    items = [json.dumps(rec('ok_0'))] + [json.dumps(r) for r in recs] + ([raw] if raw else [])
    return write(folder, name, '[' + ',\n'.join(items) + ']')


def validate(path) -> list: return ['data', 'validate', str(path)]


# --- terminal injection: ids and text are printed escaped -----------------------------------------------------------
for i, (label, rid) in enumerate([('clear_screen', 'x\x1b[2J\x1b[Hall records ok'), ('bell', 'ding\x07\x07'),
                                  ('rlo', 'evil\u202etxt.exe'), ('isolate', 'a\u2066b'), ('csi8bit', 'c\x9b31m'),
                                  ('carriage_return', 'fake\rok'), ('nul', 'n\x00ul'), ('newline', 'line\nall ok')]):
    esc = repr(rid)[1:-1]
    case(f'id_{label}', contains=[f'{esc}: answer:'])(lambda d, rid=rid: validate(records(d, rec(rid, answer='germany'))))
case('id_1mb', contains=['... (1000000 characters): answer:'])(lambda d: validate(records(d, rec('y' * 1_000_000, answer='z'))))
case('answer_with_escape', contains=['bad: answer:', r'\x1b[31m'])(lambda d: validate(records(d, rec(answer='\x1b[31mred'))))
case('support_escape_dup_id', contains=[r'ok\x1b[0m: id: duplicate id'])(
    lambda d: validate(records(d, rec('ok\x1b[0m'), rec('ok\x1b[0m'))))

# --- JSON that Python reads but is not portable ---------------------------------------------------------------------
BASE = '{"id": "bad", "query": "located_in the hague", "candidates": ["netherlands", "belgium"], "supports": ["The Hague ."], '
case('int_5000_digits', contains=['bad: meta: non-standard JSON number: an integer of 5000 digits'])(
    lambda d: validate(records(d, raw=BASE + '"answer": "netherlands", "meta": {"n": ' + '9' * 5000 + '}}')))
case('int_5000_digits_id', contains=['#1: id: expected a string'])(
    lambda d: validate(records(d, raw='{"id": ' + '7' * 5000 + ', "query": "a b", "candidates": ["x"], "supports": ["s"], "answer": "x"}')))
for const in ('NaN', 'Infinity', '-Infinity'):
    case(f'constant_{const}', contains=[f'bad: meta: non-standard JSON number: {const}'])(
        lambda d, c=const: validate(records(d, raw=BASE + f'"answer": "netherlands", "meta": {{"x": [1, {c}]}}}}')))
case('nan_answer', contains=['bad: answer:'])(lambda d: validate(records(d, raw=BASE + '"answer": NaN}')))
case('duplicate_key_answer', contains=["bad: answer: the record names 'answer' twice"])(
    lambda d: validate(records(d, raw=BASE + '"answer": "netherlands", "answer": "belgium"}')))
case('duplicate_key_in_meta', contains=["bad: meta: duplicate key 'k'"])(
    lambda d: validate(records(d, raw=BASE + '"answer": "netherlands", "meta": {"k": 1, "k": 2}}')))
for field, raw in (('supports', '"supports": ["d\\ud800x"]'), ('candidates', '"candidates": ["netherlands", "\\udfff"]'),
                   ('query', '"query": "located_in \\ud83d"')):
    case(f'lone_surrogate_in_{field}', contains=[f'bad: {field}: lone surrogate'])(
        lambda d, raw=raw: validate(records(d, raw=json.dumps(rec())[:-1] + ', ' + raw + '}')))
case('lone_surrogate_id', contains=[r'\ud800: id:'])(lambda d: validate(records(d, raw=json.dumps(rec())[:-1].replace('"bad"', '"\\ud800"') + '}')))
case('deep_meta', contains=['#1: (json): invalid JSON: nested too deeply'])(
    lambda d: validate(records(d, raw=BASE + '"answer": "netherlands", "meta": {"m": ' + '[' * 5000 + ']' * 5000 + '}}')))
case('deep_file', contains=['nested too deeply'])(lambda d: validate(write(d, 'deep.json', '[' * 100_000)))
case('deep_jsonl', contains=['nested too deeply'])(lambda d: validate(write(d, 'deep.jsonl', json.dumps(rec('a')) + '\n' + '[' * 100_000 + '\n')))

# --- records that would train on nothing ------------------------------------------------------------------------------
for name, kw, want in [('blank_candidate', dict(candidates=['netherlands', '  ']), 'bad: candidates: item 1 is blank'),
                       ('empty_candidate', dict(candidates=['', 'netherlands']), 'bad: candidates: item 0 is blank'),
                       ('blank_answer', dict(answer=' \t'), 'bad: answer: blank answer'),
                       ('empty_answer', dict(answer=''), 'bad: answer: blank answer'),
                       ('query_no_subject', dict(query='located_in'), 'bad: query: no subject'),
                       ('query_question_mark_only', dict(query='interacts_with ?'), 'bad: query: no subject'),
                       ('empty_support', dict(supports=['']), 'bad: supports: item 0 is blank'),
                       ('whitespace_support', dict(supports=['ok .', ' \n\t ']), 'bad: supports: item 1 is blank'),
                       ('support_too_long', dict(supports=['word ' * 220_000]), 'bad: supports: item 0 has 1100000 characters'),
                       ('query_too_long', dict(query='located_in ' + 'x' * 1_000_001), 'bad: query: 1000012 characters'),
                       ('no_supports', dict(supports=[]), 'bad: supports: empty list'),
                       ('no_candidates', dict(candidates=[], answer=None), 'bad: candidates: empty list'),
                       ('answer_not_candidate', dict(answer='\u202egermany'), r'bad: answer: ')]:
    case(name, contains=[want])(lambda d, kw=kw: validate(records(d, rec(**kw))))
case('top_level_record', contains=['solo: (file): the file holds this one record'])(
    lambda d: validate(write(d, 'one.json', json.dumps(rec('solo')))))
case('top_level_record_strict', contains=['solo: (file):'])(lambda d: ['data', 'validate', '--strict', str(write(d, 'one.json', json.dumps(rec('solo'))))])

# --- files that are not what they claim -------------------------------------------------------------------------------
def _link(d: Path, target: str, name='data.json') -> Path:
    d.mkdir(parents=True, exist_ok=True); (d / name).symlink_to(target); return d / name

def _fifo(d: Path, name='data.json') -> Path:
    d.mkdir(parents=True, exist_ok=True); os.mkfifo(d / name); return d / name

def _sparse(d: Path, size: int) -> Path:
    p = write(d, 'huge.json', b'[')
    os.truncate(p, size)          # a sparse file: nothing is written, the size is what the reader sees
    return p

case('symlink_dev_zero', contains=['not a regular file'])(lambda d: validate(_link(d, '/dev/zero')))
case('symlink_dev_urandom_jsonl', contains=['not a regular file'])(lambda d: validate(_link(d, '/dev/urandom', 'data.jsonl')))
case('named_pipe', contains=['not a regular file'])(lambda d: validate(_fifo(d)))
case('named_pipe_strict', contains=['not a regular file'])(lambda d: ['data', 'validate', '--strict', str(_fifo(d))])
case('named_pipe_stats', contains=['not a regular file'])(lambda d: ['data', 'stats', str(_fifo(d))])
case('named_pipe_in_directory', contains=['not a regular file'])(lambda d: validate(_fifo(d / 'qangaroo' / 'wikihop', 'dev.json').parent.parent))
case('sparse_3gb', contains=['larger than data.MAX_FILE_BYTES'])(lambda d: validate(_sparse(d, 3 << 30)))
case('dangling_symlink', contains=['no such file'])(lambda d: validate(_link(d, '/no/such/target')))
case('binary_garbage', contains=['-: (json): invalid'])(lambda d: validate(write(d, 'data.json', bytes(range(256)) * 20)))
case('utf16', contains=['invalid UTF-8'])(lambda d: validate(write(d, 'data.json', json.dumps([rec()]).encode('utf-16'))))
case('latin1_text', contains=['bad: supports: invalid UTF-8'])(lambda d: validate(write(d, 'd.json', json.dumps([rec()]).encode().replace(b'Hague', b'Hagu\xe9'))))
case('empty_file', contains=['-: (file): empty file'])(lambda d: validate(write(d, 'data.json', b'')))
case('bom_then_garbage', contains=['-: (json):'])(lambda d: validate(write(d, 'data.json', b'\xef\xbb\xbf\x00\x01')))
case('jsonl_control_line', contains=['#1: (json): line 2'])(lambda d: validate(write(d, 'd.jsonl', json.dumps(rec('a')) + '\n\x1b[2J{oops\n')))
case('many_tiny_records', contains=['#'])(lambda d: validate(write(d, 'd.json', '[' + ','.join(['{}'] * 200_000) + ']')))


# --- zip archives -----------------------------------------------------------------------------------------------------
def _zip(d: Path, method=zipfile.ZIP_DEFLATED, data=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / 'data.zip'
    with zipfile.ZipFile(p, 'w', method) as zf: zf.writestr('wikihop/dev.json', data or json.dumps([rec(f'r{i}') for i in range(50)]))
    return p

def _patch(p: Path, local: int, central: int, fmt: str, value) -> Path:
    "Set a field at offset `local` of the local header and `central` of the central directory entry."
    raw = bytearray(p.read_bytes())
    cd = raw.rfind(b'PK\x01\x02')
    struct.pack_into(fmt, raw, local, value); struct.pack_into(fmt, raw, cd + central, value)
    p.write_bytes(bytes(raw)); return p

def _flip_data(p: Path) -> Path:
    raw = bytearray(p.read_bytes())
    start = 30 + len('wikihop/dev.json')
    for k in range(start + 5, start + 40): raw[k] ^= 0x5a
    p.write_bytes(bytes(raw)); return p

case('zip_encrypted', contains=['encrypted'])(lambda d: validate(_patch(_zip(d), 6, 8, '<H', 0x1)))
case('zip_unknown_compression', contains=['compressed with method 99'])(lambda d: validate(_patch(_zip(d), 8, 10, '<H', 99)))
case('zip_bad_crc', contains=['cannot read', 'CRC'])(lambda d: validate(_patch(_zip(d, zipfile.ZIP_STORED), 14, 16, '<I', 0xDEADBEEF)))
case('zip_corrupt_deflate', contains=['cannot read'])(lambda d: validate(_flip_data(_zip(d))))
case('zip_corrupt_bzip2', contains=['cannot read'])(lambda d: validate(_flip_data(_zip(d, zipfile.ZIP_BZIP2))))
case('zip_corrupt_lzma', contains=['cannot read'])(lambda d: validate(_flip_data(_zip(d, zipfile.ZIP_LZMA))))
case('zip_declares_3gb', contains=['expands to'])(lambda d: validate(_patch(_zip(d), 22, 24, '<I', 3 << 30)))
case('zip_truncated', contains=['not a valid zip file'])(lambda d: validate(write(d, 'data.zip', _zip(d / 'src').read_bytes()[:200])))
case('zip_not_a_zip', contains=['not a valid zip file'])(lambda d: validate(write(d, 'data.zip', b'PK\x03\x04 nope')))
case('zip_hostile_member_name', contains=['no QAngaroo files'])(
    lambda d: validate(_zip_named(d, '../../\x1b[2Jevil.txt')))

def _zip_named(d: Path, name: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / 'data.zip'
    with zipfile.ZipFile(p, 'w') as zf: zf.writestr(name, 'x')
    return p


# --- configs --------------------------------------------------------------------------------------------------------
def train(*args) -> list: return ['train', *map(str, args), '--quiet']
LAUGHS = "a: &a [" + ",".join(['"lol"'] * 9) + "]\n" + "".join(f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip('abcdefgh', 'bcdefghi'))

for name, text, want in [('base_int', 'base: 42\n', "'base:' must name a YAML file"), ('base_list', 'base: [a.yaml]\n', "'base:' must name"),
                         ('base_dict', 'base: {x: 1}\n', "'base:' must name"), ('base_missing', 'base: nowhere.yaml\n', 'config file not found'),
                         ('base_self', 'base: c.yaml\n', "'base:' cycle"), ('billion_laughs', LAUGHS, 'YAML aliases are expanded'),
                         ('recursive_alias', 'a: &a [*a]\n', 'YAML aliases are expanded'), ('top_list', '- 1\n', 'must be a mapping'),
                         ('int_key', '1: 2\n', 'config keys are names'), ('tab_yaml', 'gnn:\n\t- x\n', 'not valid YAML'),
                         ('deep_yaml', '[' * 5000 + ']' * 5000, 'not valid YAML'), ('env_interpolation', "train: {run_dir: '${oc.env:HOME}'}\n", "'train.run_dir': interpolation"),
                         ('section_scalar', 'gnn: 5\n', "'gnn' is a section"), ('unknown_key', 'gnn: {layers: 3}\n', "unknown key 'gnn.layers'"),
                         ('wrong_type', 'train: {batch_size: many}\n', "'train.batch_size'"), ('escape_in_value', "gnn: {core: \"\\e[2J\"}\n", "'gnn.core' must be one of")]:
    case(f'config_{name}', contains=[want])(lambda d, text=text: train(write(d, 'c.yaml', text)))
case('config_latin1', contains=['not UTF-8'])(lambda d: train(write(d, 'c.yaml', b'name: caf\xe9\n')))
case('config_dev_zero', contains=['not a regular file'])(lambda d: train('/dev/zero'))
case('config_directory', contains=['not a regular file'])(lambda d: train(write(d, 'x', b'').parent))
case('config_2mb', contains=['larger than 1 MB'])(lambda d: train(write(d, 'c.yaml', '#' * (2 << 20))))
for override, want in [('gnn.hidden_size=0', "'gnn.hidden_size' must be a positive integer"), ('train.batch_size=0', "'train.batch_size'"),
                       ('train.lr=-1', "'train.lr' must be a positive finite"), ('train.lr=.nan', "'train.lr'"),
                       ('train.epochs=-1', "'train.epochs'"), ('train.grad_clip=-1', "'train.grad_clip' must be >= 0"),
                       ('graph.max_nodes=0', "'graph.max_nodes'"), ('gnn.core=gcn', "'gnn.core' must be one of"),
                       ('name=../../etc', "'name' names the run directory"), ('train.device=tpu', "'train.device'"),
                       ('gnn.dropout=2', "'gnn.dropout' must be in [0, 1)"), ('name=${oc.env:HOME}', "'name': interpolation"),
                       ('a..b=1', 'is not a dotted key')]:
    case(f'override_{override}', contains=[want])(lambda d, o=override: train(o))
case('override_then_section', contains=["'gnn' was given a value"])(lambda d: train('gnn=1', 'gnn.x=2'))
case('config_error_before_data', contains=["'gnn.core'"])(lambda d: ['graphs', 'build', str(d / 'missing.json'), 'gnn.core=gcn'])

# --- other command-line arguments ---------------------------------------------------------------------------------------
for name, argv, want in [('synth_negative_n', ['--n', '-5'], '--n: -5 is below 1'), ('synth_zero_hops', ['--hops', '0'], '--hops: 0 is below 1'),
                         ('synth_too_many_hops', ['--n', '2', '--hops', '9'], 'hops=9'), ('synth_one_candidate', ['--num-candidates', '1'], 'below 2'),
                         ('synth_not_a_number', ['--n', 'lots'], "'lots' is not an integer")]:
    case(name, contains=[want])(lambda d, argv=argv: ['data', 'synth', *argv, '--out', str(d / 'x.json')])
case('synth_out_device', contains=['not a regular file; refusing to replace it'])(lambda d: ['data', 'synth', '--n', '2', '--out', '/dev/null'])

# --- heavy: these import torch and run the tokenizer / graph builder ---------------------------------------------------
ITEM2 = {'repeat_candidate_20000': ['paris france ' * 20000], 'support_900kb': ['paris is in france . ' * 45000],
         'supports_10000': [f'paris is near france {i} .' for i in range(10000)]}
for name, supports in ITEM2.items():
    case(f'graph_{name}', group='torch', rc='reported', contains=['g1: graph: graph too large'])(
        lambda d, s=supports: ['graphs', 'build', str(records(d, {'id': 'g1', 'query': 'located_in paris', 'supports': s,
                                                                   'candidates': ['france', 'spain'], 'answer': 'france'}))])
case('graph_candidates_5000', group='torch', rc='reported', contains=['g1: graph: graph too large'])(
    lambda d: ['graphs', 'build', str(records(d, {'id': 'g1', 'query': 'located_in paris', 'supports': ['paris is in france .'] * 3,
                                                   'candidates': ['france'] + [f'c{i}' for i in range(4999)], 'answer': 'france'}))])
case('graph_escaped_id', group='torch', rc='reported', contains=[r'g\x1b[2J: graph: graph too large'])(
    lambda d: ['graphs', 'build', str(records(d, {'id': 'g\x1b[2J', 'query': 'located_in paris', 'supports': ['paris france ' * 3000],
                                                   'candidates': ['france', 'spain'], 'answer': 'france'}))])
case('eval_not_a_run', group='torch', contains=['no checkpoint found'])(lambda d: ['eval', str(write(d, 'x', b'').parent), '--data', str(records(d))])
case('viz_not_a_run', group='torch', contains=['hde: error:', 'nothing'])(lambda d: ['viz', 'attention', str(d / 'nothing'), '--example', 'x'])
def _only_bad(d: Path) -> list:
    bad = write(d, 'only_bad.json', '[' + json.dumps(rec())[:-1] + ', "supports": ["\\ud800"]}]')
    return train(f'data.train={bad}')
case('train_lone_surrogate_data', group='torch', contains=['data.train=', 'no readable examples'])(_only_bad)
case('train_empty_dev', group='torch', contains=['data.dev=', 'no readable examples'])(
    lambda d: train(f'data.train={records(d, rec("t1"), rec("t2"))}', f"data.dev={write(d, 'dev.json', b'')}"))


def run_cases(group: str, root) -> dict:
    "Run every case of `group` in this process; {name: {rc, out, seconds, maxrss_mb, traceback}}."
    from hde_kit.cli import main
    warnings.simplefilter('always')
    results = {}
    for name, (g, build, _, _) in CASES.items():
        if g != group: continue
        folder = Path(root) / name
        argv = build(folder)
        out, err = io.StringIO(), io.StringIO()
        t0, tb = time.perf_counter(), None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: rc = main(argv)
            except SystemExit as e: rc = e.code if isinstance(e.code, int) else 1
            except BaseException: rc, tb = -1, traceback.format_exc()
        results[name] = {'rc': rc, 'out': (out.getvalue() + err.getvalue())[-20000:], 'traceback': tb,
                         'seconds': time.perf_counter() - t0,
                         'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return results


if __name__ == '__main__':
    group, root, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if limit: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))   # the memory bound, enforced
    res = run_cases(group, root)
    sys.__stdout__.write(json.dumps(res))
