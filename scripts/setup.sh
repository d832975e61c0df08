#!/usr/bin/env bash
# Creates .venv with every framework (once; again when requirements.txt changes).
# torch 2.13.0 is asked for exactly and first: it is the CPU build, and nothing
# later may pull a newer (multi-GB CUDA) release.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # TORCH_INDEX_URL (hosted CI: the CPU wheel index) is where that one install looks
  .venv/bin/python -m pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
if [ "${1:-}" = "--browser" ] && [ ! -x /usr/bin/chromium ]; then
  # the report's browser tests drive Debian's chromium (playwright cannot download one here)
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "note: /usr/bin/chromium is missing; the browser tests will be skipped (apt-get install chromium)" >&2
  fi
fi
