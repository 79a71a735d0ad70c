"""Long seeded randomized runs checked by the invariant checker of ``aegis_core.run.testing``."""

from __future__ import annotations

import random
from typing import Any

import pytest
from conftest import engines, make_scenario

from aegis_core.run.testing import FakeEngine, check_run, run_in_memory
from aegis_sim import SimPyEngine

POLICIES = ("np-edf", "fifo", "np-fp", "unscheduled")


def random_tasks(rng: random.Random) -> list[dict[str, Any]]:
    n = rng.randint(2, 6)
    utilisation = rng.uniform(0.3, 1.15)  # some sets overload: misses must be caught too
    shares = [rng.random() for _ in range(n)]
    tasks = []
    for i, s in enumerate(shares):
        period = round(10 ** rng.uniform(0, 2), 3)  # log-uniform 1..100 ms
        deadline = round(period * rng.uniform(0.4, 1.3), 3)
        wcet = round(max(0.001, min(deadline, period * utilisation * s / sum(shares))), 3)
        task: dict[str, Any] = {
            "name": f"t{i}",
            "period_ms": period,
            "deadline_ms": deadline,
            "wcet_ms": wcet,
            "arrival": rng.choice(("periodic", "sporadic", "poisson")),
            "offset_ms": rng.choice((0, round(rng.uniform(0, period), 3))),
        }
        if rng.random() < 0.3:
            task["jitter_ms"] = round(rng.uniform(0, period * 0.5), 3)
        if rng.random() < 0.5:
            task["priority"] = rng.randint(1, 4)
        tasks.append(task)
    return tasks


def test_long_randomized_runs_keep_every_invariant() -> None:
    rng = random.Random(20261126)
    total_jobs = total_decisions = total_misses = 0
    seen_policies = set()
    while total_jobs < 12_000:
        policy = rng.choice(POLICIES)
        scenario = make_scenario(
            random_tasks(rng), policy=policy, duration_ms=300, seed=rng.randint(0, 99)
        )
        engine = SimPyEngine() if rng.random() < 0.7 else FakeEngine()
        records, jobs = run_in_memory(scenario, engine)
        slots = None if policy == "unscheduled" else 1
        total_decisions += check_run(records, jobs, slots)
        total_jobs += len(jobs)
        total_misses += sum(j.missed for j in jobs)
        seen_policies.add(policy)
    assert total_decisions == total_jobs
    assert seen_policies == set(POLICIES)
    assert total_misses > 0  # the generator does produce overload: the checker saw misses


@pytest.mark.parametrize("seed", range(8))
def test_fake_and_simpy_engines_agree_exactly(seed: int) -> None:
    """The engine-contract property for serial policies: identical traces on every engine."""
    rng = random.Random(seed)
    scenario = make_scenario(
        random_tasks(rng), policy=POLICIES[seed % 3], duration_ms=200, seed=seed
    )
    traces = [run_in_memory(scenario, cls())[0] for cls in (FakeEngine, SimPyEngine)]
    assert traces[0] == traces[1]


def test_checker_catches_a_wrong_pick() -> None:
    scenario = make_scenario(
        [
            {"name": "a", "period_ms": 10, "wcet_ms": 2},
            {"name": "b", "period_ms": 10, "deadline_ms": 5, "wcet_ms": 1, "offset_ms": 1},
            {"name": "c", "period_ms": 10, "deadline_ms": 9, "wcet_ms": 1, "offset_ms": 1},
        ],
        duration_ms=10,
    )
    records, jobs = run_in_memory(scenario, FakeEngine())
    check_run(records, jobs, 1)
    tampered = [dict(r) for r in records]
    d = next(r for r in tampered if r["kind"] == "dispatch" and r["job"] == "b#0")
    d["job"] = "c#0"
    with pytest.raises(AssertionError, match="rule picks b#0"):
        check_run(tampered, jobs, 1)


def test_checker_catches_two_jobs_on_one_slot() -> None:
    scenario = make_scenario(
        [
            {"name": "a", "period_ms": 10, "wcet_ms": 2},
            {"name": "b", "period_ms": 10, "wcet_ms": 2},
        ],
        duration_ms=10,
        policy="unscheduled",
    )
    records, jobs = run_in_memory(scenario, FakeEngine())
    check_run(records, jobs, None)
    with pytest.raises(AssertionError, match="at once"):
        check_run(records, jobs, 1)


def test_checker_catches_a_wrong_miss_flag() -> None:
    scenario = make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 2}], duration_ms=10)
    records, jobs = run_in_memory(scenario, FakeEngine())
    jobs[0].missed = True
    with pytest.raises(AssertionError, match="missed=True"):
        check_run(records, jobs, 1)


@pytest.mark.parametrize("engine", engines())
def test_every_released_job_ends(engine: Any) -> None:
    """Releases stop at the horizon, then the run drains: nothing is left running."""
    scenario = make_scenario(
        [
            {"name": "a", "period_ms": 3, "wcet_ms": 2.9},
            {"name": "b", "period_ms": 4, "wcet_ms": 2},
        ],
        duration_ms=50,
    )
    records, jobs = run_in_memory(scenario, engine())
    check_run(records, jobs, 1)
    assert max(j.release_ns for j in jobs) < 50_000_000 < max(j.end_ns or 0 for j in jobs)
    assert len(jobs) == 17 + 13
