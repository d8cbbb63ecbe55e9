#!/usr/bin/env bash
# Sets up and runs the main job on a fresh machine: installs the project, then starts a local
# Apache Kafka and Redis, the stream worker and a traffic simulator, and shows progress.
# Ctrl-C stops every process it started. Extra arguments go to `credit-transport demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e .
exec "$PYTHON" -m streams.cli demo "$@"
