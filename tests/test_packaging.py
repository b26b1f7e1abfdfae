"""Packaging: settings.ini, environment.yml, README and .ci/run agree; the wheel installs and runs."""
import ast, configparser, os, re, shlex, shutil, subprocess, sys, venv, zipfile
from pathlib import Path

import pytest, yaml
from packaging.requirements import Requirement

from sync_readme import ROOT, render_readme

def settings():
    cp = configparser.ConfigParser(delimiters=['=']); cp.read(ROOT / 'settings.ini'); return cp['DEFAULT']

def requirements(key):
    return {Requirement(r).name.lower(): Requirement(r) for r in settings()[key].split()}

def test_readme_is_index_notebook():
    assert (ROOT / 'README.md').read_text(encoding='utf-8') == render_readme(), \
        "README.md differs from nbs/index.ipynb: run `python tests/sync_readme.py`"

def test_readme_has_two_setup_commands_pinning_cpu_torch():
    block = re.findall(r"```sh\n(.*?)```", (ROOT / 'README.md').read_text(), re.S)
    setup = [b.strip() for b in block[:2]]
    assert len(setup) == 2 and all('\n' not in s and s.startswith('pip install torch==2.13.0 -e ') for s in setup)
    assert 'nbdev_test' in setup[1] and 'pytest' in setup[1] and '.[dev]' in setup[1]
    ci = (ROOT / '.ci' / 'run').read_text()
    assert 'grep -m1' in ci and 'eval "$test_cmd"' in ci and 'torch==2.13.0' in ci

def test_runtime_requirements_exclude_dev_tools():
    req = requirements('requirements')
    assert not {'nbdev', 'fastcore', 'execnb', 'ghapi', 'pytest'} & set(req)
    assert req['torch'].specifier.contains('2.13.0')
    dev = requirements('dev_requirements')
    assert str(dev['nbdev'].specifier) == '==2.4.14' and dev['fastcore'].specifier.contains('1.14.5')
    for mod in (ROOT / 'hde_kit').glob('*.py'):
        tree = ast.parse(mod.read_text())
        names = {a.name.split('.')[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or '').split('.')[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {'fastcore', 'nbdev', 'execnb'} & names, f"{mod.name} imports a dev-only package"

def test_environment_yml_agrees_with_settings():
    env = yaml.safe_load((ROOT / 'environment.yml').read_text())
    deps = env['dependencies']
    python = next(d for d in deps if isinstance(d, str) and d.startswith('python='))
    assert tuple(map(int, python.split('=')[1].split('.'))) >= tuple(map(int, settings()['min_python'].split('.')))
    pip = next(d['pip'] for d in deps if isinstance(d, dict))
    assert '-e ".[dev]"' in pip, "environment.yml must install the project with its dev extras"
    allreq = {**requirements('requirements'), **requirements('dev_requirements')}
    for line in pip:
        if line.startswith('-e'): continue
        r = Requirement(line)
        assert r.name.lower() in allreq, f"environment.yml pins {r.name}, which settings.ini does not require"
        for spec in r.specifier:
            assert allreq[r.name.lower()].specifier.contains(spec.version), f"{line} is outside settings.ini's range"

LAYER = ['config', 'figures', 'data', 'synthetic', 'text', 'graph', 'encoders', 'embedder', 'gnn', 'model', 'train',
         'pretrain', 'viz', 'bench', 'widgets', 'sweep', 'cli']
LATE = {'viz', 'bench', 'widgets'}  # may import model (DESIGN.md); cli imports anything

def test_modules_import_only_earlier_modules():
    for mod in (ROOT / 'hde_kit').glob('*.py'):
        name = mod.stem
        if name not in LAYER: continue
        tree = ast.parse(mod.read_text())
        used = {n.module.split('.')[1] for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith('hde_kit.')}
        used |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module}
        for other in used:
            if name == 'cli' or other not in LAYER: continue
            ok = LAYER.index(other) < LAYER.index(name) or (name in LATE and other == 'model')
            assert ok, f"hde_kit/{name}.py imports hde_kit.{other}, which comes later in the data flow"

def _quickstart(readme: str) -> tuple[str, list[list[str]]]:
    "The README Quickstart's Python block and its `hde` command lines (comments dropped)."
    quick = readme.split('## Quickstart', 1)[1].split('\n## ', 1)[0]
    python = re.findall(r"```python\n(.*?)```", quick, re.S)[0]
    lines = [l.split('  #')[0].strip() for b in re.findall(r"```sh\n(.*?)```", quick, re.S) for l in b.splitlines()]
    return python, [shlex.split(l) for l in lines if l.startswith('hde ')]

# what the test adds to the Quickstart's training commands so that they take seconds (the README runs them as written)
QUICK_TINY = ['data.n_train=24', 'data.n_dev=8', 'data.max_examples=4', 'train.epochs=1', 'gnn.hidden_size=32',
              'gnn.num_layers=1', 'train.batch_size=4', 'train.num_threads=1', 'pretrain.num_sets=8', 'pretrain.dev_sets=4',
              'text.max_length=128']

@pytest.mark.slow
def test_wheel_installs_into_fresh_venv(tmp_path, qangaroo_zip):
    """Build the wheel; install it with its dependencies into a fresh venv (no system site packages: pip takes them
    from its index or a local wheel directory, $HDE_WHEELHOUSE); from a directory outside the repository run
    `hde --version`, `hde train` with a packaged config by name, and the README Quickstart end to end (its training
    commands made tiny)."""
    dist = tmp_path / 'dist'
    subprocess.run([sys.executable, '-m', 'build', '--wheel', '--no-isolation', '--outdir', str(dist), str(ROOT)],
                   check=True, capture_output=True, cwd=ROOT)
    wheel = next(dist.glob('hde_kit-*.whl'))
    names = zipfile.ZipFile(wheel).namelist()
    assert 'hde_kit/configs/minilm_wikihop.yaml' in names and any(n.endswith('/LICENSE') for n in names), names
    env_dir = tmp_path / 'venv'
    venv.EnvBuilder(system_site_packages=False, with_pip=True).create(env_dir)
    py, bin_ = env_dir / 'bin' / 'python', env_dir / 'bin'
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    env.update(PATH=f"{bin_}{os.pathsep}{env['PATH']}", HDE_CACHE=str(tmp_path / 'cache'), OMP_NUM_THREADS='1',
               TOKENIZERS_PARALLELISM='false', MPLBACKEND='Agg')
    try:
        extra = ['--find-links', os.environ['HDE_WHEELHOUSE']] if os.environ.get('HDE_WHEELHOUSE') else []
        out = subprocess.run([str(py), '-m', 'pip', 'install', '-q', 'torch==2.13.0', str(wheel), *extra],
                             capture_output=True, text=True, env=env, timeout=1800)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        out = subprocess.run([str(py), '-m', 'pip', 'check'], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stdout   # every dependency is in the venv itself
        outside = tmp_path / 'elsewhere'; outside.mkdir()
        shutil.copy(qangaroo_zip, outside / 'qangaroo_v1.1.zip')   # "download it into the directory you run from"
        run = lambda *args, **kw: subprocess.run(list(map(str, args)), capture_output=True, text=True, env=env,
                                                 cwd=outside, timeout=900, **kw)
        out = run(py, '-c', 'import hde_kit, sys; print(hde_kit.__file__); print("torch" in sys.modules)')
        assert out.stdout.startswith(str(env_dir)), out.stdout + out.stderr
        assert run(bin_ / 'hde', '--version').stdout.strip() == f"hde_kit {settings()['version']}"
        out = run(bin_ / 'hde', 'train', 'base', *QUICK_TINY, '--run-dir', 'runs/by-name', '--quiet')
        assert out.returncode == 0 and 'dev accuracy' in out.stdout, out.stderr[-3000:]
        python, commands = _quickstart((ROOT / 'README.md').read_text(encoding='utf-8'))
        (outside / 'quickstart.py').write_text(python)
        out = run(py, 'quickstart.py')
        assert out.returncode == 0, out.stderr[-3000:]
        assert len(commands) >= 10
        for cmd in commands:
            if cmd[1] in ('train', 'pretrain'): cmd = cmd + QUICK_TINY + ['--quiet']
            if cmd[1] == 'sweep': cmd = cmd + [o for o in QUICK_TINY if not o.startswith('gnn.num_layers')] + ['--seeds', '1', '--quiet']
            out = run(bin_ / cmd[0], *cmd[1:])
            assert out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-3000:])
            assert 'Traceback' not in out.stderr, (cmd, out.stderr[-3000:])
    finally:
        shutil.rmtree(env_dir, ignore_errors=True)   # about 2 GB
