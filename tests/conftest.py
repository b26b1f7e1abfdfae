import os, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/sync_readme.py and other helpers

@pytest.fixture(scope='session')
def shared_data() -> Path:
    "The real QAngaroo sample records in ../shared/data (not part of the package), or where $HDE_SHARED_DATA says (a clean clone elsewhere)."
    path = Path(os.environ.get('HDE_SHARED_DATA') or ROOT.parent / 'shared' / 'data')
    if not path.exists(): pytest.skip(f"{path} not present: the real QAngaroo samples live beside the repo, not in it")
    return path

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long-running test (still runs in CI unless deselected with -m "not slow")')
    config.addinivalue_line('markers', 'gpu: needs a CUDA device (skipped without one; scripts/gpu_check.sh runs them)')

# qangaroo_v1.1.zip's layout, filled with the real samples (the zip itself is not redistributable)
QANGAROO_LAYOUT = {'wikihop/train.json': 'wikihop/wikihop_train_first22_ml4g.json',
                   'wikihop/dev.json': 'wikihop/wikihop_train_tiny2_tgcnqa.json',
                   'wikihop/dev.masked.json': 'wikihop/wikihop_train_tiny2_tgcnqa.masked.json',
                   'medhop/train.json': 'medhop/medhop_train_first1_hfdummy.json',
                   'medhop/dev.json': 'medhop/medhop_dev_first1_hfdummy.json',
                   'medhop/dev.masked.json': 'medhop/medhop_dev_first1_hfdummy.masked.json'}

@pytest.fixture(scope='session')
def qangaroo_zip(shared_data, tmp_path_factory) -> Path:
    "A `qangaroo_v1.1.zip` as QAngaroo distributes it (members under qangaroo_v1.1/), built from the samples."
    import zipfile
    z = tmp_path_factory.mktemp('qangaroo') / 'qangaroo_v1.1.zip'
    with zipfile.ZipFile(z, 'w', zipfile.ZIP_DEFLATED) as zf:
        for member, src in QANGAROO_LAYOUT.items(): zf.write(shared_data / src, f'qangaroo_v1.1/{member}')
    return z
