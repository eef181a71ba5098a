#!/usr/bin/env bash
# Evidently's data-drift report vs `inferwatch baseline build` + `compare` on the same
# 1,000,000-row reference and current data (bench/evidently_compare.py says what is timed).
#   bench/evidently.sh [ROWS]
# Builds the release binary and a Python venv with Evidently (PyPI) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
venv="${INFERWATCH_EVIDENTLY_VENV:-$HOME/.cache/inferwatch/evidently-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  # Evidently 0.7 imports a pandas helper that pandas 3 removed.
  "$venv/bin/pip" install -q "evidently==0.7.23" "pandas<3" pyarrow
fi
machine
INFERWATCH="$bin" "$venv/bin/python" bench/evidently_compare.py "${1:-1000000}"
