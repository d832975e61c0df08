#!/usr/bin/env bash
# Runs the conformance suite over every built-in adapter and writes
# reports/latest/{results.jsonl,run.json,index.html}. Extra arguments go to pytest
# (e.g. --adapters torch, --adapter mypkg:MyAdapter, --hypothesis-profile thorough).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
exec .venv/bin/python -m pytest suites "$@"
