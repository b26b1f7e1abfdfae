import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/sync_readme.py and other helpers

@pytest.fixture(scope='session')
def shared_data() -> Path:
    "The real QAngaroo sample records in ../shared/data (not part of the package)."
    path = ROOT.parent / 'shared' / 'data'
    if not path.exists(): pytest.skip(f"{path} not present: the real QAngaroo samples live beside the repo, not in it")
    return path

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long-running test (still runs in CI unless deselected with -m "not slow")')
    config.addinivalue_line('markers', 'gpu: needs a CUDA device (skipped without one; scripts/gpu_check.sh runs them)')
