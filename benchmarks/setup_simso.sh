#!/usr/bin/env bash
# Create/refresh .venv-simso (repo root) with SimSo 0.8.5 for the
# benchmarks/simso_np_edf.py anchor. Idempotent: re-running only re-checks.
#
# SimSo 0.8.5 pins SimPy==2.3.1 (pure Python, old "SimPy.Simulation" API) and
# numpy>=1.6; both install from PyPI on Python 3.11. simso imports the `imp`
# module, which exists on 3.11 (removed in 3.12), so use Python <= 3.11.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv-simso"
PY="${PYTHON:-python3}"

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info < (3, 12) else 1)'; then
    echo "setup_simso: $PY is >= 3.12; simso 0.8.5 needs the 'imp' module (Python <= 3.11)" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi

if ! "$VENV/bin/python" -c 'import simso, SimPy; assert simso.__version__ == "0.8.5"' 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "simso==0.8.5"
fi

"$VENV/bin/python" -c 'import simso, SimPy.Simulation; print("simso", simso.__version__, "ready in", "'"$VENV"'")'
