#!/usr/bin/env bash
# Install everything the tests need, then run the linters and the whole suite.
# This is the README's test command, and exactly what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
# 1. A virtual environment (Debian's python3 needs python3-venv for it).
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
    "$PY" -m venv .venv
  fi
fi
# 2. capplan itself and the test tools.
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

# 3. Lint and types (mypy is strict on the core; see pyproject.toml).
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

# 4. The suite.  pytest exits 5 when it collected no test: that is a failure here.
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "tests/run.sh: pytest collected no test" >&2
  exit 1
fi
exit "$rc"
