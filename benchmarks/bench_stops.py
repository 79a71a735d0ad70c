"""What the loop's stop and progress hooks cost per instant (issue 14: well under 0.1 µs).

    python benchmarks/bench_stops.py [--horizon-s 100] [--repeats 7]

The simulator benchmark's task set (``u08_five_tasks.yaml``) on the core's FakeEngine (the
cheapest instant: the hooks' share is largest there), no trace, three ways, interleaved
repeats, medians: no hook; the runner's ``stop`` check (no stop requested); that and the
progress hook of a terminal run (redrawn at most every 0.1 s, on a stream that discards).
Then the poll itself, timed alone.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _host import cpu_name

from aegis_core.model.scenario import load_scenario, replace_scenario
from aegis_core.run import stop as stop_mod
from aegis_core.run.loop import POLL, run
from aegis_core.run.plan import RunPlan
from aegis_core.run.scheduler import Scheduler
from aegis_core.run.testing import FakeEngine
from aegis_core.tools.progress import run_progress

ROOT = Path(__file__).resolve().parent.parent


class _Sink(io.StringIO):
    def isatty(self) -> bool:
        return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--horizon-s", type=float, default=100)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    s = load_scenario(ROOT / "benchmarks" / "u08_five_tasks.yaml")
    plan = RunPlan.build(replace_scenario(s, duration_ns=int(a.horizon_s * 1e9)))
    ways = ("no hook", "stop", "stop + progress")
    times: dict[str, list[float]] = {w: [] for w in ways}
    instants = 0
    for _ in range(a.repeats):
        for way in ways:
            sched = Scheduler.for_plan(plan)
            hooks: dict = {}
            bar = None
            if way != "no hook":
                hooks["stop"] = stop_mod.requested
            if way == "stop + progress":
                hooks["progress"], bar = run_progress(
                    _Sink(), "sim", plan.scenario.duration_ns, sched
                )
            t0 = time.perf_counter_ns()
            stats = run(plan, sched, FakeEngine(), **hooks)
            times[way].append((time.perf_counter_ns() - t0) / stats.instants)
            instants = stats.instants
            if bar is not None:
                bar.close()
    print(f"machine: {cpu_name()}; {instants} instants per run, {a.repeats} repeats, medians")
    base = statistics.median(times["no hook"])
    print(f"{'hooks':<18} {'ns / instant':>13} {'vs no hook':>11}")
    for way in ways:
        m = statistics.median(times[way])
        print(f"{way:<18} {m:>13.1f} {m - base:>+11.1f}")
    sched = Scheduler.for_plan(plan)
    tick, bar = run_progress(_Sink(), "sim", plan.scenario.duration_ns, sched)
    check = stop_mod.requested
    n = 200_000
    poll = min(timeit.repeat(lambda: (tick(0), check()), number=n, repeat=5)) / n * 1e9
    bar.close()
    print(
        f"one poll (progress + stop, not redrawn): {poll:.0f} ns, every {POLL} instants: "
        f"{poll / POLL:.1f} ns per instant amortized"
    )


if __name__ == "__main__":
    main()
