"""The seed's Scenario 2 (``scenarios/determinism.yaml``) end to end on the NumPy backend:
profile both models, admit with the profiles' WCETs, execute 1 000 invocations of each, and
report the latency distribution (``benchmarks/bench_wcet.py`` prints the same table)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from aegis_core.admission import admit
from aegis_core.profiling import profile_scenario
from aegis_core.runner import run_scenario
from aegis_core.scenario import load_scenario, with_profiles
from aegis_exec.engine import ExecEngine

ROOT = Path(__file__).resolve().parent.parent
INVOCATIONS = int(os.environ.get("AEGIS_DETERMINISM_INVOCATIONS", "1000"))


def determinism_report(summary: dict[str, object], wcets: dict[str, int]) -> list[str]:
    lines = [f"{'task':<10} {'exec CV':>8} {'resp CV':>8} {'misses':>6} {'max exec ms':>11} "
             f"{'WCET ms':>8} {'max resp ms':>11} {'bound ms':>9}"]  # fmt: skip
    for t in summary["tasks"]:  # type: ignore[attr-defined]
        e, r = t["exec_ns"], t["response_ns"]
        lines.append(
            f"{t['name']:<10} {e['cv'] * 100:>7.1f}% {r['cv'] * 100:>7.1f}% {t['misses']:>6} "
            f"{e['max'] / 1e6:>11.3f} {wcets[t['name']] / 1e6:>8.3f} {r['max'] / 1e6:>11.3f} "
            f"{t['bound_ns'] / 1e6:>9.3f}"
        )
    return lines


STALL_NS = 1_000_000
"""Host stall: a release handed over, or device idle while a job waited, this much late."""


def _assumption_broken(job: Any, jobs: list[Any], wcets: dict[str, int]) -> bool:
    """Did an overrun or a host stall touch ``job``'s wait or run (its busy window)?"""
    end = job.end_ns if job.end_ns is not None else job.deadline_ns
    window = [j for j in jobs if j.start_ns is not None and j.end_ns is not None
              and j.end_ns > job.release_ns - max(wcets.values()) and j.start_ns < end]  # fmt: skip
    if any(j.run_ns > wcets[j.task] for j in window):
        return True
    if job.lag_ns > STALL_NS:
        return True
    start = job.start_ns if job.start_ns is not None else end
    busy = sum(max(0, min(j.end_ns, start) - max(j.start_ns, job.release_ns)) for j in window)
    return (start - job.release_ns) - busy > STALL_NS


@pytest.mark.no_cover  # coverage's tracer slows the per-operator Python loop: timings would lie
def test_scenario_2_profile_admit_execute(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "scenarios" / "determinism.yaml")
    period = scenario.tasks[0].period_ns
    scenario = dataclasses.replace(scenario, duration_ns=INVOCATIONS * period)
    measured = profile_scenario(scenario, backend="numpy", out_dir=tmp_path, progress=None)
    assert [m.path.name for m in measured] == ["vision.json", "language.json"]
    profiled = with_profiles(scenario, tmp_path)
    wcets = {t.name: t.wcet_ns for t in profiled.tasks}
    assert all(wcets[m.profile.task] == m.profile.wcet_ns for m in measured)
    verdicts = admit(profiled)
    assert verdicts.schedulable, verdicts.as_dict()

    result = run_scenario(profiled, ExecEngine("numpy"), write=False)
    summary = result.summary
    print("\n" + "\n".join(determinism_report(summary, wcets)))
    print("overruns:", summary["exec"]["overruns"])
    assert summary["jobs"] == 2 * INVOCATIONS
    # admitted with profiled WCETs => no miss, as long as the analysis's assumptions held: a
    # miss is only acceptable where a job of its busy window overran its WCET or the host
    # stalled (woke late for the release, or left the device idle while it waited)
    unexplained = [
        j.id for j in result.jobs if j.missed and not _assumption_broken(j, result.jobs, wcets)
    ]
    print(f"misses: {summary['misses']} (unexplained: {unexplained})")
    assert unexplained == []
    assert summary["misses"] <= INVOCATIONS // 100
    for t in summary["tasks"]:
        assert t["completed"] == INVOCATIONS
        assert t["exec_ns"]["n"] == INVOCATIONS and t["bound_ns"] is not None
    # Overruns (a job above its profiled WCET) are reported, not asserted: on a shared CPU
    # host, back-to-back or paced profiling and the interleaved run see different cache and
    # clock states (docs/BENCHMARKS.md gives the counts measured).
