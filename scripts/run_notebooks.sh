#!/usr/bin/env bash
# Re-execute every notebook (or those named) in a real Jupyter kernel and save them with their outputs,
# then clean their metadata with nbdev_clean (outputs are kept). See scripts/run_notebooks.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
python scripts/run_notebooks.py "$@"
nbdev_clean
