#!/usr/bin/env bash
# Runs the project's own tests: golden cases, planted faults, the report in a
# real browser, and the whole conformance suite in the ci profile.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
export TF_CPP_MIN_LOG_LEVEL=3
exec .venv/bin/python -m pytest tests "$@"
