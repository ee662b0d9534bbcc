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
# 2. The real programs the tests run (Debian packages), when missing: the balancers the render
#    tests check configs with, the OpenSSH server the collection tests reach, Prometheus
#    (with promtool, which backfills the Prometheus collection tests' data), and Chromium, which
#    renders capplan report's page headless in tests/report/test_chromium.py.
export PATH="$PATH:/usr/sbin:/sbin"
# One BLAS thread: on two cores, OpenBLAS threads stall each other (and the forecast's ETS fits
# took 4× longer with other work running).
export OPENBLAS_NUM_THREADS=1
# Each program the tests run, and the Debian package it comes from.
missing=""
for pair in nginx:nginx haproxy:haproxy keepalived:keepalived sshd:openssh-server \
            groff:groff-base prometheus:prometheus promtool:prometheus chromium:chromium; do
  command -v "${pair%%:*}" >/dev/null || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
  # Install without starting their services (nothing may listen beyond loopback, a started
  # keepalived would speak VRRP, sshd on 0.0.0.0:22, prometheus and its recommended
  # node-exporter on :9090 and :9100): policy-rc.d 101 tells invoke-rc.d not to start them.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  apt-get update
  # shellcheck disable=SC2086  # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
  if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
# 3. capplan itself and the test tools.
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

# 4. Lint and types (mypy is strict on the core; see pyproject.toml).
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

# 5. The suite.  pytest exits 5 when it collected no test: that is a failure here.
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "tests/run.sh: pytest collected no test" >&2
  exit 1
fi
exit "$rc"
