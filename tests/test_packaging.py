"""Packaging: settings.ini, environment.yml, README and .ci/run agree; the wheel installs and runs."""
import ast, configparser, os, re, subprocess, sys, venv
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

def test_wheel_installs_into_fresh_venv(tmp_path):
    "Build the wheel, install it (reusing the installed torch) into a fresh venv, import every module, run `hde --help`."
    dist = tmp_path / 'dist'
    subprocess.run([sys.executable, '-m', 'build', '--wheel', '--no-isolation', '--outdir', str(dist), str(ROOT)],
                   check=True, capture_output=True, cwd=ROOT)
    wheel = next(dist.glob('hde_kit-*.whl'))
    env_dir = tmp_path / 'venv'
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    py = env_dir / 'bin' / 'python'
    # --force-reinstall --no-deps: the venv sees the developer's editable install through the system site;
    # `pip check` then proves every runtime dependency of hde_kit is satisfied without downloading anything
    # (the venv's own old setuptools may upset other packages; only hde_kit's lines matter here).
    out = subprocess.run([str(py), '-m', 'pip', 'install', '--no-index', '--no-deps', '--force-reinstall', str(wheel)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([str(py), '-m', 'pip', 'check'], capture_output=True, text=True)
    assert not [l for l in out.stdout.splitlines() if l.lower().startswith(('hde-kit', 'hde_kit'))], out.stdout
    mods = [m.stem for m in (ROOT / 'hde_kit').glob('*.py') if not m.stem.startswith('_')]
    code = "import importlib, hde_kit, sys; [importlib.import_module('hde_kit.' + m) for m in sys.argv[1:]]; print(hde_kit.__file__)"
    out = subprocess.run([str(py), '-c', code, *mods], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert str(env_dir) in out.stdout, f"imported hde_kit from {out.stdout!r}, not from the venv"
    out = subprocess.run([str(env_dir / 'bin' / 'hde'), '--help'], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and 'usage: hde' in out.stdout, out.stderr
