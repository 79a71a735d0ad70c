"""Simulator throughput and decision overhead, side by side with SimSo 0.8.5 in one run.

Task set ``benchmarks/u08_five_tasks.yaml``: (C, T) = (2,10) (4,20) (5,25) (7,50) (6,100) ms,
NP-EDF, U = 0.8, 100 s simulated = 22 000 jobs.

Rows:
* ``aegis run``: in-process ``run_scenario`` end to end (scenario load, arrivals, shared loop on
  the SimPy engine, trace, ``jobs.csv`` + ``summary.json``), for each trace setting, and
  with ``--no-dispatch-ahead`` (what deciding ahead costs the simulator);
  compared with SimSo's in-process figure (Configuration + Model + ``run_model()``).
* ``whole process``: ``aegis sim`` (default options: ``trace.jsonl`` and ``trace.json`` on;
  and ``--no-perfetto``) / SimSo as a fresh interpreter, start-up and imports in, at the 100 s
  horizon and at 1 000 s (220 000 jobs), each against SimSo's whole process at the same horizon.
* decision overhead: ``Scheduler.schedule`` (pick + its dispatch record) with 64 ready jobs.

SimSo runs from ``.venv-simso`` (``bash benchmarks/setup_simso.sh``); without it its rows say
"not measured". Usage: ``python benchmarks/bench_sim.py [--repeat 5] [--long-repeat 3]
[--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "benchmarks" / "u08_five_tasks.yaml"
SIMSO_PY = ROOT / ".venv-simso" / "bin" / "python"


def aegis_in_process(
    repeat: int, trace: str, perfetto: bool = False, ahead: bool = True
) -> tuple[int, list[float]]:
    from aegis_core.model.scenario import load_scenario
    from aegis_core.tools.runner import run_scenario

    runs, jobs = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            t0 = time.perf_counter()
            scenario = load_scenario(SCENARIO)
            result = run_scenario(
                scenario,
                "sim",
                out_dir=Path(tmp),
                trace=trace != "off",
                trace_flush=trace if trace != "off" else "batch",
                perfetto=perfetto,
                dispatch_ahead=ahead,
            )
            runs.append(time.perf_counter() - t0)
            jobs = result.summary["jobs"]
            assert result.summary["misses"] == 0
    return jobs, runs


def whole_process(cmd: list[str], repeat: int) -> list[float]:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        runs.append(time.perf_counter() - t0)
    return runs


def simso(repeat: int) -> dict[str, Any] | None:
    if not SIMSO_PY.exists():
        return None
    cmd = [str(SIMSO_PY), str(ROOT / "benchmarks" / "simso_np_edf.py"), "--repeat", str(repeat)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def decision_overhead(ready: int = 64, decisions: int = 20_000) -> dict[str, float]:
    """p50/p99/max ns of one decision with ``ready`` jobs waiting (trace to a real file).

    Between decisions it does what the shared loop does between instants: take the completion
    and a new release (keeping ``ready`` jobs waiting), write the records to the trace and
    flush it, pace the GC.
    """
    import numpy as np

    from aegis_core.model.policy import NP_EDF
    from aegis_core.model.scenario import Task
    from aegis_core.record.sinks import JsonlTrace
    from aegis_core.run.events import Completion, Release
    from aegis_core.run.loop import GcPacer
    from aegis_core.run.scheduler import Scheduler

    ms = 1_000_000
    tasks = [
        Task(f"m{i}", period_ns=(10 + i) * ms, deadline_ns=(5 + 3 * i) * ms, wcet_ns=ms)
        for i in range(ready)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        trace = JsonlTrace.open(Path(tmp) / "trace.jsonl", flush="batch")
        s = Scheduler(tasks, NP_EDF)
        k = [0] * ready
        for i in range(ready):
            s.release(i, 0, 0)
        samples = np.empty(decisions, dtype=np.int64)
        clock = time.perf_counter_ns
        pace_gc = GcPacer()
        now = 0
        for n in range(decisions):
            now += 1000
            t0 = clock()
            d = s.schedule(now)
            samples[n] = clock() - t0
            assert d is not None and s.ready_count == ready - 1
            k[d.task_index] += 1
            s.step([Completion(now, d.seq), Release(now, d.task_index, k[d.task_index])], now)
            trace.write(s.drain())
            trace.flush()
            pace_gc()
        pace_gc.close()
        trace.close()
    return {
        "p50": float(np.percentile(samples, 50)),
        "p99": float(np.percentile(samples, 99)),
        "max": float(samples.max()),
        "n": decisions,
    }


def aegis_process(horizon_s: int, repeat: int, *extra: str) -> tuple[int, float]:
    """Jobs and median wall seconds of ``aegis sim`` as a fresh interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "aegis_core.tools.cli", "sim", str(SCENARIO), "--out", tmp,
               "--duration-ms", str(horizon_s * 1000), *extra]  # fmt: skip
        runs = whole_process(cmd, repeat)
        jobs = int(json.loads((Path(tmp) / "summary.json").read_text())["jobs"])
    return jobs, statistics.median(runs)


def simso_process(horizon_s: int, repeat: int) -> float | None:
    if not SIMSO_PY.exists():
        return None
    cmd = [str(SIMSO_PY), str(ROOT / "benchmarks" / "simso_np_edf.py"), "--repeat", "1",
           "--duration-s", str(horizon_s)]  # fmt: skip
    return statistics.median(whole_process(cmd, repeat))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--long-repeat", type=int, default=3, help="repeats of the 1 000 s rows")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()

    rows: list[tuple[str, int, float, float | None]] = []  # name, jobs, s, SimSo jobs/s
    figures: dict[str, Any] = {"repeat": args.repeat, "long_repeat": args.long_repeat}
    ref = simso(max(3, args.repeat // 2))
    figures["simso"] = ref
    ref_rate = ref["jobs"] / ref["median_s"] if ref else None
    if ref:
        rows.append(("SimSo 0.8.5 NP-EDF (in-process)", ref["jobs"], ref["median_s"], ref_rate))
    for trace in ("off", "batch", "instant", "record"):
        jobs, runs = aegis_in_process(args.repeat, trace)
        med = statistics.median(runs)
        figures[f"aegis_trace_{trace}"] = {"jobs": jobs, "runs_s": runs, "median_s": med}
        rows.append((f"aegis run, trace {trace}", jobs, med, ref_rate))
    jobs, runs = aegis_in_process(args.repeat, "batch", ahead=False)
    figures["aegis_trace_batch_no_ahead"] = {"jobs": jobs, "runs_s": runs,
                                             "median_s": statistics.median(runs)}  # fmt: skip
    rows.append(("aegis run, trace batch, --no-dispatch-ahead", jobs, statistics.median(runs),
                 ref_rate))  # fmt: skip
    jobs, runs = aegis_in_process(args.repeat, "batch", perfetto=True)
    figures["aegis_trace_batch_perfetto"] = {"jobs": jobs, "runs_s": runs,
                                             "median_s": statistics.median(runs)}  # fmt: skip
    rows.append(("aegis run, trace batch + trace.json", jobs, statistics.median(runs), ref_rate))
    for horizon, repeat in ((100, 3), (1000, args.long_repeat)):
        simso_s = simso_process(horizon, repeat)
        simso_rate = 22_000 * horizon / 100 / simso_s if simso_s else None
        if simso_s:
            rows.append((f"SimSo, whole process, {horizon} s", 220 * horizon, simso_s, simso_rate))
        for label, extra in (("both traces (default)", ()), ("--no-perfetto", ("--no-perfetto",))):
            jobs, sec = aegis_process(horizon, repeat, *extra)
            rows.append((f"aegis sim, whole process, {horizon} s, {label}", jobs, sec, simso_rate))
            figures[f"aegis_process_{horizon}s_{extra[0][2:] if extra else 'default'}"] = sec
        figures[f"simso_process_{horizon}s"] = simso_s

    print(f"{'configuration':<52} {'jobs':>7} {'median s':>9} {'jobs/s':>9} {'x SimSo':>8}")
    for name, jobs, sec, base in rows:
        rate = jobs / sec
        ratio = f"{rate / base:.1f}" if base else "n/a"
        print(f"{name:<52} {jobs:>7} {sec:>9.3f} {rate:>9.0f} {ratio:>8}")
    if not ref:
        print("SimSo: not measured (run benchmarks/setup_simso.sh)")

    d = decision_overhead()
    figures["decision_64_ready_ns"] = d
    print(
        f"\ndecision with 64 ready jobs (pick + its record), n={d['n']}: "
        f"p50 {d['p50'] / 1e3:.2f} µs, p99 {d['p99'] / 1e3:.2f} µs, max {d['max'] / 1e3:.1f} µs"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
