"""Exact bounds (docs/THEORY.md §edf-response, §np-fp, §jitter, §worst-case): over random task
sets per policy, every admitted task's bound against the worst response of ``aegis check``'s
critical patterns, and against random sporadic runs at a 10x finer tick.

Generator (``taskgen.random_taskset``, seeded): n uniform in [2, 6], U uniform in [0.3, 0.9]
(UUniFast), periods log-uniform in 1-20 ms on a 1 µs grain, ``C = ceil(u T)`` in ns,
``D = max(C, f T)`` with f ~ U(0.5, 1); lp-edf jobs are chains of 1-5 kernels at random cut
points; each task has release jitter ``J ~ U{0, T/2 - 1}`` with probability 0.25.

Per set: ``admit`` (the exact analysis), then ``check(..., runs=0)`` on the pure
:class:`~aegis_core.run.testing.FakeEngine` (the real scheduler and loop, no SimPy): the critical
patterns of every admitted task. Then the scenario with every time multiplied by 10 (bounds x10,
asserted) and ``--runs`` random sporadic runs (random offsets and gaps, jitter drawn as the
scenario says), each response compared with its bound. The earlier analysis (interfering
releases counted in ``[0, s]`` also when a blocker is charged, jitter as a shorter separation
``T - J``) decides the same sets: schedulable sets old vs new.

Usage: ``python benchmarks/bench_exact.py [--sets 5000] [--runs 1] [--seed 0] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _host import cpu_name

from aegis_core.analysis.admission import admit
from aegis_core.analysis.bounds import (
    ATask,
    edf_demand_enumerate,
    edf_demand_qpa,
    edf_response_bound,
    fp_response,
    max_chunk_bounds,
    preemptive_edf_ok,
    split_chunks,
)
from aegis_core.analysis.taskgen import random_taskset, scaled, scenario_of
from aegis_core.model.policy import Analysis, get_policy
from aegis_core.run.testing import FakeEngine
from aegis_core.tools.check import check

MS = 1_000_000
POLICIES = ("np-edf", "lp-edf", "np-fp")
FINE = 10


def task_set(rng: random.Random, policy: str) -> list[ATask]:
    ts = random_taskset(rng, rng.randint(2, 6), rng.uniform(0.3, 0.9), period_ns=(MS, 20 * MS),
                        grain_ns=1_000, deadline_factor=(0.5, 1.0),
                        kernels=(1, 5) if get_policy(policy).chunked else None)  # fmt: skip
    return [
        dataclasses.replace(x, burst=rng.randrange(x.t // 2)) if rng.random() < 0.25 else x
        for x in ts
    ]


def old_schedulable(ts: Sequence[ATask], policy: str) -> bool:
    """The earlier analysis: separation ``T - J``, releases in ``[0, s]`` with any blocking."""
    old = [
        dataclasses.replace(x, t=x.t - x.burst, burst=0, prio=p)
        for p, x in enumerate(sorted(ts, key=lambda y: y.d))
    ]  # fmt: skip (DM order)
    analysis = get_policy(policy).analysis
    if analysis is Analysis.NP_FP:
        return all(fp_response(old, i, closed=True).bound <= x.d for i, x in enumerate(old))
    if analysis is Analysis.LP_EDF:
        if not preemptive_edf_ok(old):
            return False
        limits = max_chunk_bounds(old)
        chunked = []
        for x, limit in zip(old, limits, strict=True):
            chunks = split_chunks(x.chunks, limit)
            if chunks is None:
                return False
            chunked.append(dataclasses.replace(x, chunks=tuple(chunks)))
        if not edf_demand_enumerate(chunked).ok:
            return False
        old = chunked
    elif not edf_demand_qpa(old).ok:
        return False
    bounds = [edf_response_bound(old, i, closed=True) for i in range(len(old))]
    return all(b is not None and b[0] <= x.d for b, x in zip(bounds, old, strict=True))


def one_policy(policy: str, sets: int, runs: int, seed: int) -> dict[str, Any]:
    rng = random.Random(f"{seed}-{policy}")
    gaps: list[int] = []
    ratios: list[float] = []
    random_ratios: list[float] = []
    outside = above = jittered = new_sched = old_sched = 0
    t0 = time.perf_counter()
    for n in range(sets):
        ts = task_set(rng, policy)
        scenario = scenario_of(ts, policy)
        verdicts = admit(scenario)
        result = check(scenario, runs=0, engine=FakeEngine, admission=verdicts)
        burst = {x.name: x.burst for x in ts}
        for row in result.rows:
            gap = row.bound_ns - row.worst_sim_ns
            gaps.append(gap)
            outside += not 0 <= gap <= 1
            ratios.append(row.bound_ns / row.worst_sim_ns)
            jittered += burst[row.name] > 0
        new_sched += verdicts.schedulable
        old = old_schedulable(ts, policy)
        old_sched += old
        assert not old or verdicts.schedulable, ts  # the exact analysis admits a superset
        if runs:
            fine = dataclasses.replace(scaled(scenario, FINE), seed=n)
            fine_verdicts = admit(fine)
            assert [v.response_bound_ns for v in fine_verdicts.tasks] == [
                None if v.response_bound_ns is None else FINE * v.response_bound_ns
                for v in verdicts.tasks
            ]
            sim = check(fine, runs=runs, engine=FakeEngine, admission=fine_verdicts,
                        critical=False)  # fmt: skip
            above += sum(not r.ok for r in sim.rows)
            random_ratios += [r.bound_ns / r.worst_sim_ns for r in sim.rows if r.worst_sim_ns]
    return {
        "policy": policy,
        "sets": sets,
        "admitted_tasks": len(gaps),
        "jittered_tasks": jittered,
        "max_gap_ns": max(gaps, default=0),
        "outside_0_1ns": outside,
        "above_bound_fine": above,
        "ratio_min": min(ratios, default=1.0),
        "ratio_median": statistics.median(ratios) if ratios else 1.0,
        "random_ratio_median": statistics.median(random_ratios) if random_ratios else 1.0,
        "schedulable_old": old_sched,
        "schedulable_new": new_sched,
        "seconds": time.perf_counter() - t0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=5000, help="random task sets per policy")
    ap.add_argument("--runs", type=int, default=1, help="random runs per set at the 10x tick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    print(f"bench_exact · {cpu_name()} · Python {platform.python_version()} · "
          f"{args.sets} sets per policy, {args.runs} random run(s) each at a 1/{FINE} "
          "tick")  # fmt: skip
    head = (f"{'policy':8} {'sets':>6} {'admitted':>8} {'jittered':>8} {'max gap':>8} "
            f"{'outside':>7} {'above':>5} {'min b/w':>8} {'med b/w':>8} {'b/rand':>6} "
            f"{'sched old':>9} {'sched new':>9} {'gain':>5} {'s':>6}")  # fmt: skip
    print(head)
    rows = []
    for policy in POLICIES:
        r = one_policy(policy, args.sets, args.runs, args.seed)
        rows.append(r)
        gain = r["schedulable_new"] - r["schedulable_old"]
        print(f"{policy:8} {r['sets']:>6} {r['admitted_tasks']:>8} {r['jittered_tasks']:>8} "
              f"{r['max_gap_ns']:>5} ns {r['outside_0_1ns']:>7} {r['above_bound_fine']:>5} "
              f"{r['ratio_min']:>8.6f} {r['ratio_median']:>8.6f} {r['random_ratio_median']:>6.3f} "
              f"{r['schedulable_old']:>9} "
              f"{r['schedulable_new']:>9} {gain:>+5} {r['seconds']:>6.1f}")  # fmt: skip
    print(
        "max gap: max(bound - worst response of the critical patterns); outside: tasks with "
        "that gap outside [0, 1 ns]; above: tasks with a response above the bound in the "
        "random runs at the finer tick; b/w: bound / critical worst; b/rand: median bound / worst "
        "response of the random runs; sched: sets with every task admitted"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    bad = sum(r["outside_0_1ns"] + r["above_bound_fine"] for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
