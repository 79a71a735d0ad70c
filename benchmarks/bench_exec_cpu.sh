#!/usr/bin/env bash
# The executor on the CPU (NumPy backend), side by side in one run:
#   benchmarks/bench_exec_cpu.sh [OUTDIR]
# scenarios/three_models_cpu.yaml under np-edf and under `unscheduled` (no scheduler), plus
# the simulator on the same scenario; prints the figures table (benchmarks/exec_report.py);
# then dispatch-ahead on and off, interleaved, on the backlog scenarios (mock and numpy:
# benchmarks/bench_ahead.py, runs and table under OUTDIR/ahead/).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/aegis-bench-exec-cpu}
S=scenarios/three_models_cpu.yaml
aegis exec $S --backend numpy --out "$OUT/exec-numpy" >/dev/null
aegis exec $S --backend numpy --policy unscheduled --out "$OUT/exec-numpy-unscheduled" >/dev/null
aegis sim $S --out "$OUT/sim" >/dev/null
python benchmarks/exec_report.py "$OUT/exec-numpy" "$OUT/exec-numpy-unscheduled" "$OUT/sim"
python - "$OUT" <<'PY'
import json, sys
s = json.load(open(f"{sys.argv[1]}/exec-numpy-unscheduled/summary.json"))
cv = ", ".join(f"{t['name']} {t['exec_ns']['cv'] * 100:.1f} %" for t in s["tasks"] if t["exec_ns"])
print(f"unscheduled execution-time CV: {cv}")
PY
python benchmarks/bench_ahead.py --out "$OUT/ahead"
