#!/usr/bin/env bash
# Makes docs/dashboard.png from a real run: starts Prometheus on loopback (scraping every 5 s),
# runs the demo with a light query load on the API for a few minutes, then draws the Grafana
# dashboard's panels from what Prometheus recorded (ops/render_dashboard.py, matplotlib: not a
# Grafana screenshot) and stops everything. Extra arguments go to ops/dashboard_run.py, e.g.
# `bash ops/dashboard_run.sh --seconds 300`, or `--render-only` to redraw the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Debian's prometheus, and fonts-noto-cjk for the Chinese in the picture; installed when missing
# and running as root.
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
fc-list 2>/dev/null | grep -qi "noto.*cjk" || missing+=(fonts-noto-cjk)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    echo "error: install ${missing[*]} first (sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

# matplotlib is among the dev extras.
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
exec "$PYTHON" -m ops.dashboard_run "$@"
