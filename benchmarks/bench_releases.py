"""What a run's releases cost now that they are generated lazily (docs/CONTRACTS.md §arrivals):
the benchmark set (``benchmarks/u08_five_tasks.yaml``) at several horizons.

Per horizon, medians over the repeats (the repeats alternate horizons, so a change in the
machine's load hits each alike):

* ``first ms``: ``RunPlan.build`` and the first release out of a ``ReleaseCursor`` — what a
  run waits before its first instant (the eager plan built every release here);
* ``plan KiB``: the peak Python allocation (tracemalloc) of that, and ``list MiB`` that of the
  same releases held as a list (what the eager plan held);
* ``gen ns``: generating every release (iterating ``plan.releases``), per release;
* ``cursor ns``: taking every release through a ``ReleaseCursor`` (next_ns, take: what an
  engine does), per release.

Usage: ``python benchmarks/bench_releases.py [--repeats 3] [--hours 0.1,1,10]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from _host import cpu_name

from aegis_core.model.scenario import Scenario, load_scenario
from aegis_core.run.arrivals import releases
from aegis_core.run.cursor import ReleaseCursor
from aegis_core.run.plan import RunPlan

SCENARIO = Path(__file__).parent / "u08_five_tasks.yaml"
NS_PER_HOUR = 3_600 * 10**9


def first_release(scenario: Scenario) -> tuple[float, RunPlan]:
    t = time.perf_counter()
    plan = RunPlan.build(scenario)
    ReleaseCursor(plan.releases).next_ns()
    return time.perf_counter() - t, plan


def drain(plan: RunPlan) -> tuple[int, float]:
    cursor, n = ReleaseCursor(plan.releases), 0
    t = time.perf_counter()
    while (nxt := cursor.next_ns()) is not None:
        n += len(cursor.take(nxt))
    return n, time.perf_counter() - t


def generate(plan: RunPlan) -> float:
    t = time.perf_counter()
    n = sum(1 for _ in plan.releases)
    return (time.perf_counter() - t) / n * 1e9


def peak(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hours", default="0.1,1,10")
    args = ap.parse_args()
    hours = [float(h) for h in args.hours.split(",")]
    base = load_scenario(SCENARIO)
    scenarios = {h: dataclasses.replace(base, duration_ns=round(h * NS_PER_HOUR)) for h in hours}
    first: dict[float, list[float]] = {h: [] for h in hours}
    per: dict[float, list[float]] = {h: [] for h in hours}
    gen: dict[float, list[float]] = {h: [] for h in hours}
    count: dict[float, int] = {}
    for _ in range(args.repeats):
        for h, s in scenarios.items():
            secs, plan = first_release(s)
            first[h].append(secs)
            count[h], secs = drain(plan)
            per[h].append(secs / count[h] * 1e9)
            gen[h].append(generate(plan))
    print(f"# {SCENARIO.name} · {cpu_name()} · Python {platform.python_version()} · "
          f"medians of {args.repeats}, horizons alternating")  # fmt: skip
    print(f"{'horizon h':>9} {'releases':>11} {'first ms':>9} {'plan KiB':>9} {'list MiB':>9} "
          f"{'gen ns':>7} {'cursor ns':>9}")  # fmt: skip
    for h, s in scenarios.items():
        plan_peak = peak(lambda s=s: ReleaseCursor(RunPlan.build(s).releases).next_ns())
        list_peak = peak(lambda s=s: releases(s)) if count[h] <= 2_000_000 else None
        listed = "-" if list_peak is None else f"{list_peak / 2**20:.1f}"
        ms, ns = statistics.median(first[h]) * 1e3, statistics.median(per[h])
        print(f"{h:>9g} {count[h]:>11,} {ms:>9.2f} {plan_peak / 2**10:>9.0f} {listed:>9} "
              f"{statistics.median(gen[h]):>7.0f} {ns:>9.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
