"""Execution contexts and budgets: overruns detected every time, ``skip-next`` protecting the
other tasks, faults isolated to their job — on the fake and SimPy engines and the executor's
mock and numpy backends."""

from __future__ import annotations

import random
from typing import Any

import pytest

from aegis_core.budget import budgets
from aegis_core.model.errors import ScenarioError
from aegis_core.model.scenario import parse_scenario
from aegis_core.model.status import JobStatus
from aegis_core.record.sinks import MemoryTrace
from aegis_core.run.contexts import ExecutionContext
from aegis_core.run.loop import run
from aegis_core.run.plan import RunPlan, WcetModel
from aegis_core.run.scheduler import Dispatch, Scheduler
from aegis_core.run.testing import FakeEngine, check_run, log, unexplained_misses
from aegis_exec.clock import WALL
from aegis_exec.engine import ExecEngine
from aegis_exec.testing import VirtualClock, faults
from aegis_sim.engine import SimPyEngine

MS = 1_000_000


def scenario(action: str, **b: Any) -> Any:
    """a (2 ms every 10 ms) and b (2 ms every 20 ms, deadline 11 ms: 1 ms of slack for the
    executor's wall clock)."""
    return parse_scenario({"name": "ctx", "duration_ms": 60, "tasks": [
        {"name": "a", "period_ms": 10, "wcet_ms": 2, "on_overrun": action},
        {"name": "b", "period_ms": 20, "wcet_ms": 2, "deadline_ms": 11, **b}]})  # fmt: skip


def run_with(s: Any, engine: Any, slow: dict[str, int]) -> tuple[list[dict[str, Any]], Any]:
    """Run ``s`` with the jobs in ``slow`` taking that many ns (injected overruns)."""
    base = WcetModel.of(budgets(s))

    def exec_time(d: Dispatch) -> int:
        return slow.get(d.job, base(d))

    plan = RunPlan.build(s, exec_time=exec_time)
    trace = MemoryTrace()
    scheduler = Scheduler.for_plan(plan)
    run(plan, scheduler, engine, sink=trace)
    return trace.records(), scheduler


def exec_mock() -> ExecEngine:
    """The executor's mock backend on a virtual clock: exact, whatever the host's load."""
    return ExecEngine("mock", clock=VirtualClock())


def test_overrun_with_continue_delays_the_others() -> None:
    """a#1 runs 18 ms instead of 2: a#2 (deadline 30) and b#1 (deadline 31), both released at
    20, wait; a#2 goes first, b#1 ends at 32: a miss caused by a's backlog."""
    records, sch = run_with(scenario("continue"), FakeEngine(), {"a#1": 18 * MS})
    assert [r for r in records if r["kind"] == "overrun"] == [
        {"rec": records[[r["kind"] for r in records].index("overrun")]["rec"], "t_ns": 28 * MS,
         "kind": "overrun", "seq": 2, "job": "a#1", "task": "a", "exec_ns": 18 * MS,
         "budget_ns": 2 * MS, "action": "continue"},
    ]  # fmt: skip
    assert log(records, {"dispatch", "complete", "miss", "overrun"})[:13] == [
        (0, "a#0", "dispatch"),
        (2 * MS, "a#0", "complete"),
        (2 * MS, "b#0", "dispatch"),
        (4 * MS, "b#0", "complete"),
        (10 * MS, "a#1", "dispatch"),
        (20 * MS, "a#1", "miss"),
        (28 * MS, "a#1", "complete"),
        (28 * MS, "a#1", "overrun"),
        (28 * MS, "a#2", "dispatch"),
        (30 * MS, "a#2", "complete"),
        (30 * MS, "b#1", "dispatch"),
        (31 * MS, "b#1", "miss"),
        (32 * MS, "b#1", "complete"),
    ]
    assert sum(j.missed for j in sch.jobs if j.task == "b") == 1
    assert [c.overruns for c in sch.contexts] == [1, 0]


def test_skip_next_protects_the_other_tasks() -> None:
    records, sch = run_with(scenario("skip-next"), FakeEngine(), {"a#1": 18 * MS})
    assert log(records, {"dispatch", "complete", "overrun", "skip", "miss"})[4:12] == [
        (10 * MS, "a#1", "dispatch"),
        (20 * MS, "a#1", "miss"),  # the overrunning job itself
        (28 * MS, "a#1", "complete"),
        (28 * MS, "a#1", "overrun"),
        (28 * MS, "a#2", "skip"),  # already waiting: dropped at once
        (28 * MS, "b#1", "dispatch"),
        (30 * MS, "b#1", "complete"),  # deadline 31: met
        (30 * MS, "a#3", "dispatch"),
    ]
    jobs = {j.id: j for j in sch.jobs}
    assert jobs["a#2"].status is JobStatus.SKIPPED and not jobs["a#2"].missed
    assert sum(j.missed for j in sch.jobs if j.task == "b") == 0
    assert (sch.contexts[0].overruns, sch.contexts[0].skipped) == (1, 1)
    assert jobs["a#3"].status is JobStatus.COMPLETED  # only one job is dropped


def test_skip_next_drops_the_next_release_when_none_waits() -> None:
    """a#1 overruns mildly (3 ms, ends at 13): nothing of a waits, so a#2 (released at 20)
    is the one dropped."""
    records, sch = run_with(scenario("skip-next"), FakeEngine(), {"a#1": 3 * MS})
    assert (20 * MS, "a#2", "skip") in log(records, {"skip"})
    assert [j.id for j in sch.jobs if j.status is JobStatus.SKIPPED] == ["a#2"]


@pytest.mark.parametrize("engine", ["fake", "sim", "exec-mock"])
def test_injected_overruns_are_detected_every_time(engine: str) -> None:
    rng = random.Random(5)
    s = scenario("continue")
    jobs = [f"a#{k}" for k in range(6)] + [f"b#{k}" for k in range(3)]
    slow = {j: int(rng.uniform(2.1, 6) * MS) for j in rng.sample(jobs, 4)}
    make = {"fake": FakeEngine, "sim": SimPyEngine, "exec-mock": exec_mock}
    records, sch = run_with(s, make[engine](), slow)
    flagged = sorted(r["job"] for r in records if r["kind"] == "overrun")
    assert flagged == sorted(slow)
    assert sorted(j.id for j in sch.jobs if j.overrun) == sorted(slow)
    assert sum(c.overruns for c in sch.contexts) == len(slow)
    check_run(records, sch.jobs, 1)


@pytest.mark.parametrize("engine", ["sim", "exec-mock"])
def test_skip_next_on_engines(engine: str) -> None:
    make = {"sim": SimPyEngine, "exec-mock": exec_mock}
    _, sch = run_with(scenario("skip-next"), make[engine](), {"a#1": 18 * MS})
    assert [j.id for j in sch.jobs if j.status is JobStatus.SKIPPED] == ["a#2"]
    assert sum(j.missed for j in sch.jobs if j.task == "b") == 0


@pytest.mark.parametrize("backend", ["mock", "numpy"])
def test_a_kernel_fault_fails_its_job_and_the_others_go_on(backend: str) -> None:
    a = {"name": "a", "model": "mlp", "input_shape": [64], "period_ms": 20, "wcet_ms": 8}
    b = {"name": "b", "model": "tiny_cnn", "period_ms": 20, "wcet_ms": 8, "offset_ms": 1}
    s = parse_scenario({"name": "f", "duration_ms": 200, "tasks": [a, b]})
    plan = RunPlan.build(s)
    trace = MemoryTrace()
    scheduler = Scheduler.for_plan(plan)
    clock = VirtualClock() if backend == "mock" else WALL  # numpy runs real kernels
    engine = ExecEngine(backend, clock=clock, wrap=faults({"a#2": "injected kernel error"}))
    run(plan, scheduler, engine, sink=trace)
    jobs = {j.id: j for j in scheduler.jobs}
    assert jobs["a#2"].status is JobStatus.FAILED
    assert "injected kernel error" in (jobs["a#2"].error or "")
    assert next(r["job"] for r in trace.records() if r["kind"] == "fault") == "a#2"
    others = [j for j in scheduler.jobs if j.task == "b"]
    assert all(j.status is JobStatus.COMPLETED for j in others)
    assert unexplained_misses(scheduler.jobs) == []  # numpy: a loaded host may stall a job
    assert scheduler.contexts[0].faults >= 1 and scheduler.contexts[1].faults == 0


def test_contexts_in_the_summary_and_budget_setting() -> None:
    from aegis_core.tools.runner import run_scenario

    s = scenario("skip-next", budget={"memory_mb": 4})
    summary = run_scenario(s, "sim", write=False).summary
    assert summary["contexts"][0] == {
        "task": "a", "budget": {"memory_bytes": None, "time_ns": 2 * MS, "on_overrun": "skip-next"},
        "overruns": 0, "skipped": 0, "faults": 0,
    }  # fmt: skip
    assert summary["contexts"][1]["budget"]["memory_bytes"] == 4 << 20
    assert summary["tasks"][0]["overruns"] == 0 and summary["tasks"][0]["skipped"] == 0
    b = budgets(s)[0]
    ctx = ExecutionContext(0, "a", b)
    assert ctx.over_budget(b.wcet_ns + 1) and not ctx.over_budget(b.wcet_ns)
    assert b.time_budget_ns == b.wcet_ns == 2 * MS


def test_bad_on_overrun_is_named() -> None:
    with pytest.raises(
        ScenarioError, match="field 'on_overrun': must be one of continue, skip-next"
    ):
        scenario("drop")
