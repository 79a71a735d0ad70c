#!/usr/bin/env bash
# The whole GPU check in one go (docs/CONTRACTS.md §gpu-check), < 5 minutes on one H100/H200:
#   benchmarks/gpu_validate.sh OUTDIR
# 1. environment (GPU, driver, CuPy), 2. the gpu-marked tests, 3. scenarios/three_models.yaml
# on the CuPy backend (admitted, np-edf), 4. the same under `unscheduled` (no scheduler,
# every job launched at release on its own stream), 5. the simulator on the same scenario,
# 6. the figures table (execution-time CV, misses, dispatch gap, p99 vs unscheduled),
# 7. one short `aegis exec` under compute-sanitizer memcheck --leak-check full,
# 8. WCET: the three models profiled on cupy alone and with contention (OUTDIR/profiles), sim
# and exec with those profiles, and the builtin zoo profiled then checked on held-out runs,
# 9. memory: scenarios/memory.yaml planned (aegis memory) and executed on cupy in the planned
# arena with --check-memory, and without the plan (each buffer its own allocation),
# 10. aegis compare on cupy (sim vs GPU per task) and explain --verify on the GPU trace,
# 11. host overheads: aegis calibrate on cupy, the demo admitted, executed and compared with
# the GPU profiles and the overheads charged (bound / observed, unattributed exceedances).
# 12. ONNX models: cupy eager vs CUDA graph, outputs vs onnxruntime CPU, numpy vs onnxruntime
# CPU on this host (benchmarks/bench_onnx.py), scenarios/onnx_demo.yaml executed on cupy.
# 13. dispatch-ahead: benchmarks/gpu_backlog.yaml on cupy with and without it, interleaved
# (benchmarks/bench_ahead.py: OUTDIR/ahead.md, the runs under OUTDIR/ahead/).
# Every step runs even if an earlier one failed; each step's status is in OUTDIR/steps.txt.
# Offline machine: install with `pip install --no-build-isolation --no-deps -e .`; simpy may
# come as a wheel in .whl/ (PYTHONPATH /tmp/site): benchmarks/device_wheels.sh fetches simpy, onnx
# and onnxruntime for python 3.12 there (carry .whl).
set -u
OUT=${1:?usage: benchmarks/gpu_validate.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
: >"$OUT/steps.txt"

step() {  # step NAME TIMEOUT_S COMMAND...: run, log to OUT/NAME.log, record status and time
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name: $*"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc ${SECONDS}s-${t0}s=$((SECONDS - t0))s" | tee -a "$OUT/steps.txt"
  tail -n 25 "$OUT/$name.log"
}

if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -m pip install -q --no-build-isolation --no-deps -e . >"$OUT/install.log" 2>&1 \
  || echo "install rc=$? (see install.log)" | tee -a "$OUT/steps.txt"
AEGIS=("$PY" -m aegis_core.tools.cli)
S=scenarios/three_models.yaml

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  $PY -c "import cupy, sys; print('python', sys.version.split()[0]); print('cupy', cupy.__version__, 'available', cupy.is_available()); print('cuda runtime', cupy.cuda.runtime.runtimeGetVersion())"
  nproc; uname -a
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step pytest_gpu 150 $PY -m pytest -p no:cacheprovider -o addopts= -q -m gpu -rs tests/
step exec_cupy 90 "${AEGIS[@]}" exec $S --backend cupy --out "$OUT/exec-cupy"
step exec_cupy_unscheduled 90 "${AEGIS[@]}" exec $S --backend cupy --policy unscheduled \
  --out "$OUT/exec-cupy-unscheduled"
step exec_cupy_eager 90 "${AEGIS[@]}" exec $S --backend cupy --no-cuda-graphs --no-trace \
  --out "$OUT/exec-cupy-eager"
step exec_backlog 60 "${AEGIS[@]}" exec benchmarks/gpu_backlog.yaml --backend cupy \
  --out "$OUT/exec-backlog"
step exec_backlog_unscheduled 60 "${AEGIS[@]}" exec benchmarks/gpu_backlog.yaml --backend cupy \
  --policy unscheduled --out "$OUT/exec-backlog-unscheduled"
step sim 60 "${AEGIS[@]}" sim $S --out "$OUT/sim"
step report 30 $PY benchmarks/exec_report.py "$OUT/exec-cupy" "$OUT/exec-cupy-unscheduled" "$OUT/sim"
cp "$OUT/report.log" "$OUT/report.md" 2>/dev/null
step report_eager 30 $PY benchmarks/exec_report.py "$OUT/exec-cupy-eager"
step report_backlog 30 $PY benchmarks/exec_report.py "$OUT/exec-backlog" \
  "$OUT/exec-backlog-unscheduled"
# --- issue 18: dispatch-ahead on the backlog scenario, cupy, with and without it, interleaved
# (3 repetitions of 1 s each way; target: dispatch gap p99 <= 10 us with it, 0 misses): the
# table in OUTDIR/ahead.md (also OUTDIR/ahead/ahead.md, medians in OUTDIR/ahead/ahead.json),
# each run's summary.json, jobs.csv and trace.jsonl in
# OUTDIR/ahead/gpu_backlog/exec-cupy[-no-ahead]/r<i>/.
step ahead 120 $PY benchmarks/bench_ahead.py --case cupy:benchmarks/gpu_backlog.yaml --reps 3 \
  --out "$OUT/ahead"
cp "$OUT/ahead.log" "$OUT/ahead.md" 2>/dev/null
if command -v compute-sanitizer >/dev/null; then
  step sanitizer 120 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 3 \
    "${AEGIS[@]}" exec scenarios/tiny_gpu.yaml --backend cupy --no-trace --out "$OUT/exec-sanitizer"
else
  echo "sanitizer skipped: compute-sanitizer not found" | tee -a "$OUT/steps.txt"
fi
step profile 150 "${AEGIS[@]}" profile $S --backend cupy --contention --out "$OUT/profiles"
step sim_profiles 60 "${AEGIS[@]}" sim $S --profiles "$OUT/profiles" --out "$OUT/sim-profiles"
step exec_profiles 90 "${AEGIS[@]}" exec $S --backend cupy --profiles "$OUT/profiles" \
  --out "$OUT/exec-cupy-profiles"
step wcet_heldout 150 $PY benchmarks/bench_wcet.py --parts 2 --backend cupy --reps 1 \
  --held-out 3000
cp "$OUT/wcet_heldout.log" "$OUT/wcet_heldout.md" 2>/dev/null
step memory_plan 30 "${AEGIS[@]}" memory scenarios/memory.yaml --json
step exec_memory 90 "${AEGIS[@]}" exec scenarios/memory.yaml --backend cupy --check-memory \
  --out "$OUT/exec-memory"
step exec_memory_unplanned 90 "${AEGIS[@]}" exec scenarios/memory.yaml --backend cupy \
  --no-memory-plan --out "$OUT/exec-memory-unplanned"
step compare 120 "${AEGIS[@]}" compare $S --backend cupy --results "$OUT/compare-results"
step explain_verify 60 "${AEGIS[@]}" explain "$OUT/exec-cupy" --verify
# ---- host overheads (issue 13): calibrate on cupy, then admit, execute and compare the demo
# with the GPU profiles (step profile above) and the overheads charged; the report gives per
# task bound / observed max (goal <= 1.5), misses and unattributed exceedances.
step calibrate 60 "${AEGIS[@]}" calibrate $S --backend cupy --out "$OUT/overheads-cupy.json"
step admit_charged 30 "${AEGIS[@]}" admit $S --profiles "$OUT/profiles" \
  --overheads "$OUT/overheads-cupy.json"
step exec_charged 90 "${AEGIS[@]}" exec $S --backend cupy --profiles "$OUT/profiles" \
  --overheads "$OUT/overheads-cupy.json" --out "$OUT/exec-cupy-charged"
step report_charged 30 $PY benchmarks/bench_overheads.py --report "$OUT/exec-cupy-charged"
step compare_charged 120 "${AEGIS[@]}" compare $S --backend cupy --profiles "$OUT/profiles" \
  --overheads "$OUT/overheads-cupy.json" --results "$OUT/compare-charged"

# --- issue 13, point 5: the value, shown (docs/TUTORIAL.md "Is it worth it?") --------------
# scenarios/value.yaml under np-edf and the baselines a CUDA user would pick instead, on cupy
# and in sim, side by side: OUTDIR/value-results/value/compare/policies.{csv,png}; the
# stream-priority run's summary names each stream's CUDA priority (exec.stream_priorities).
step value_compare 300 "${AEGIS[@]}" compare scenarios/value.yaml --backend cupy \
  --policies np-edf,fifo,unscheduled,stream-priority --results "$OUT/value-results"
step profile_value 150 "${AEGIS[@]}" profile scenarios/value.yaml --backend cupy \
  --out "$OUT/profiles-value"
step admit_value_charged 30 "${AEGIS[@]}" admit scenarios/value.yaml \
  --profiles "$OUT/profiles-value" --overheads "$OUT/overheads-cupy.json"
step exec_value_charged 90 "${AEGIS[@]}" exec scenarios/value.yaml --backend cupy \
  --profiles "$OUT/profiles-value" --overheads "$OUT/overheads-cupy.json" \
  --out "$OUT/exec-value-charged"
step report_value_charged 30 $PY benchmarks/bench_overheads.py --report "$OUT/exec-value-charged"
# --- end of the value block -----------------------------------------------------------------

# --- issue 16: imported ONNX models (benchmarks/onnx_models.py) ------------------------------
# each model on cupy eager and as one CUDA graph replay, device times, every output checked
# against onnxruntime CPU on this machine (rtol 1e-3, atol 1e-4; exit 1 on a mismatch or a model
# that does not import); then the numpy-vs-onnxruntime CPU table on this host. Needs onnx and
# onnxruntime importable: offline, carry their wheels (and protobuf, flatbuffers, ml_dtypes,
# sympy, mpmath, packaging if the device's python lacks them) in .whl/.
if $PY -c "import onnx, onnxruntime" >/dev/null 2>&1; then
  step onnx_cupy 180 $PY benchmarks/bench_onnx.py --backend cupy
  cp "$OUT/onnx_cupy.log" "$OUT/onnx_cupy.md" 2>/dev/null
  step onnx_numpy 180 $PY benchmarks/bench_onnx.py --backend numpy
  cp "$OUT/onnx_numpy.log" "$OUT/onnx_numpy.md" 2>/dev/null
  step exec_onnx_demo 90 "${AEGIS[@]}" exec scenarios/onnx_demo.yaml --backend cupy \
    --out "$OUT/exec-onnx-demo"
else
  echo "onnx steps skipped: onnx/onnxruntime not importable (carry their wheels in .whl/)" \
    | tee -a "$OUT/steps.txt"
fi
echo "done; outputs in $OUT"
