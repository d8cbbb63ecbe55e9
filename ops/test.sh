#!/usr/bin/env bash
# Sets up and runs the whole test suite on a fresh machine: installs the project with its dev
# extras, then lint, format check, strict type check, and every test (unit, agent, and
# integration tests on a real Apache Kafka and a real Redis that the harness starts itself).
# Extra arguments go to pytest, e.g. `bash ops/test.sh -k workdays`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

echo "== installing credit-transport with its dev extras"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[dev]"

echo "== ruff (lint and format)"
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .

echo "== mypy --strict"
"$PYTHON" -m mypy

echo "== pytest"
"$PYTHON" -m pytest "$@"
