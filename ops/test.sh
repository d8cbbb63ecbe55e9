#!/usr/bin/env bash
# Sets up and runs the whole test suite on a fresh machine: installs the project with its dev
# extras, then lint, format check, strict type check, and every test (unit, agent, and
# integration tests on a real Apache Kafka and a real Redis that the harness starts itself).
# Extra arguments go to pytest, e.g. `bash ops/test.sh -k workdays`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# The browser test renders the credit website in Debian's Chromium; CJK fonts make its Chinese
# legible in the kept screenshots. Installed here when missing and running as root.
if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "noto.*cjk"; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium and fonts-noto-cjk (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium fonts-noto-cjk >/dev/null
  else
    echo "warning: chromium or fonts-noto-cjk missing; the browser test will fail." >&2
    echo "         install them: sudo apt-get install chromium fonts-noto-cjk" >&2
  fi
fi

echo "== installing credit-transport with its dev extras"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[dev]"

echo "== ruff (lint and format)"
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .

echo "== mypy --strict"
"$PYTHON" -m mypy

echo "== pytest"
"$PYTHON" -m pytest "$@"
