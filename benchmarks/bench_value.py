"""The value, shown (docs/TUTORIAL.md §5b): ``scenarios/value.yaml`` under np-edf and the
baselines, in the simulator (every job runs for its WCET: deterministic, one run) and on a
backend (``--repeats`` fresh runs: the host decides, so this is measured, not asserted).

Prints per task per policy the sim misses and p99, and over the repeats the exec misses (each
run's count) and the median of the runs' p99, then the totals per policy and the host's
1-minute load average. A policy the backend refuses (``stream-priority`` without stream
priorities) shows its sim columns only.

Usage: ``python benchmarks/bench_value.py [--backend numpy] [--repeats 3]
[--policies np-edf,fifo,unscheduled,stream-priority] [--scenario scenarios/value.yaml]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _host import cpu_name

from aegis_core.model.scenario import load_scenario
from aegis_core.model.types import fmt_ms
from aegis_core.tools.compare import PolicyComparison, compare_policies

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--policies", default="np-edf,fifo,unscheduled,stream-priority")
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "value.yaml"))
    args = ap.parse_args()
    scenario = load_scenario(args.scenario)
    policies = args.policies.split(",")
    runs: list[PolicyComparison] = []
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            print(f"run {i + 1}/{args.repeats} ...", file=sys.stderr, flush=True)
            runs.append(compare_policies(scenario, policies, backend=args.backend,
                                         results=Path(tmp), rerun=True))  # fmt: skip
            loads.append(os.getloadavg()[0])
    first = runs[0]
    print(f"# {scenario.name} · {cpu_name()} · {os.cpu_count()} cores · Python "
          f"{platform.python_version()} · exec-{first.backend} x{args.repeats} · load avg "
          f"{', '.join(f'{x:.2f}' for x in loads)}")  # fmt: skip
    print("| task | policy | deadline | bound | sim misses | sim p99 | exec misses per run "
          "| exec p99 (median of runs) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for k, r in enumerate(first.rows):
        ex = [run.rows[k] for run in runs]
        misses = "-" if r["exec_misses"] is None else ", ".join(
            f"{e['exec_misses']}" for e in ex)  # fmt: skip
        p99s = [e["exec_p99_ns"] for e in ex if e["exec_p99_ns"] is not None]
        p99 = fmt_ms(statistics.median(p99s)) if p99s else "-"
        print(f"| {r['task']} | {r['policy']} | {fmt_ms(r['deadline_ns'])} | "
              f"{fmt_ms(r['bound_ns'])} | {r['sim_misses']}/{r['sim_jobs']} | "
              f"{fmt_ms(r['sim_p99_ns'])} | {misses} (of {r['sim_jobs']}) | {p99} |")  # fmt: skip
    for p in first.policies:
        ex = [run.misses(p, "exec") for run in runs]
        shown = "refused: " + first.refused[p] if p in first.refused else ", ".join(map(str, ex))
        print(f"* {p}: sim {first.misses(p)} misses; exec per run: {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
