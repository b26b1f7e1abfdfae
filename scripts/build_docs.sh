#!/usr/bin/env bash
# Build the documentation site into _docs/ from the notebooks and their stored outputs (offline; see build_docs.py).
set -euo pipefail
cd "$(dirname "$0")/.."
python scripts/build_docs.py "$@"
