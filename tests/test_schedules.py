"""Hand-computed schedules, asserted as time-stamped logs on every engine."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import MS, engines, make_scenario

from aegis_core.model.status import JobStatus
from aegis_core.run.testing import FakeEngine, check_run, log, run_in_memory
from aegis_sim import SimPyEngine

EVENTS = ("release", "dispatch", "complete", "miss")


def sched_log(engine_cls: Any, tasks: list[dict[str, Any]], **top: Any) -> list[Any]:
    scenario = make_scenario(tasks, **top)
    records, jobs = run_in_memory(scenario, engine_cls())
    check_run(records, jobs, slots=None if scenario.policy.concurrent else 1)
    return log(records, EVENTS)


@pytest.mark.parametrize("engine", engines())
def test_non_preemption_earlier_deadline_waits(engine: Any) -> None:
    # a (C=4) starts at 0; b (D=4, abs 5) arrives at 1 and must wait for a to finish:
    # it completes exactly at its deadline, 5, which is not a miss.
    tasks = [
        {"name": "a", "period_ms": 10, "wcet_ms": 4},
        {"name": "b", "period_ms": 10, "deadline_ms": 4, "wcet_ms": 1, "offset_ms": 1},
    ]
    assert sched_log(engine, tasks, duration_ms=10) == [
        (0, "a#0", "release"),
        (0, "a#0", "dispatch"),
        (1 * MS, "b#0", "release"),
        (4 * MS, "a#0", "complete"),
        (4 * MS, "b#0", "dispatch"),
        (5 * MS, "b#0", "complete"),
    ]


@pytest.mark.parametrize("engine", engines())
def test_miss_detected_at_the_deadline_instant(engine: Any) -> None:
    # b's absolute deadline is 4 ms; a blocks it until 4 ms, so the miss is flagged at 4 ms,
    # before b is dispatched, and b still runs to completion (recorded late).
    tasks = [
        {"name": "a", "period_ms": 10, "wcet_ms": 4},
        {"name": "b", "period_ms": 10, "deadline_ms": 3, "wcet_ms": 1, "offset_ms": 1},
    ]
    scenario = make_scenario(tasks, duration_ms=10)
    records, jobs = run_in_memory(scenario, engine())
    assert log(records, EVENTS) == [
        (0, "a#0", "release"),
        (0, "a#0", "dispatch"),
        (1 * MS, "b#0", "release"),
        (4 * MS, "a#0", "complete"),
        (4 * MS, "b#0", "miss"),
        (4 * MS, "b#0", "dispatch"),
        (5 * MS, "b#0", "complete"),
    ]
    b = jobs[1]
    assert (b.id, b.missed, b.status, b.response_ns) == ("b#0", True, JobStatus.COMPLETED, 4 * MS)
    complete = next(r for r in records if r["kind"] == "complete" and r["job"] == "b#0")
    assert complete["missed"] is True


@pytest.mark.parametrize("engine", engines())
def test_miss_of_a_running_job_is_flagged_while_it_runs(engine: Any) -> None:
    # b is dispatched at 2 (after a) with abs deadline 3.5 and runs until 4.
    tasks = [
        {"name": "a", "period_ms": 10, "wcet_ms": 2},
        {"name": "b", "period_ms": 10, "deadline_ms": 3, "wcet_ms": 2, "offset_ms": 0.5},
    ]
    assert sched_log(engine, tasks, duration_ms=10) == [
        (0, "a#0", "release"),
        (0, "a#0", "dispatch"),
        (MS // 2, "b#0", "release"),
        (2 * MS, "a#0", "complete"),
        (2 * MS, "b#0", "dispatch"),
        (3 * MS + MS // 2, "b#0", "miss"),
        (4 * MS, "b#0", "complete"),
    ]


THREE = [
    {"name": "a", "period_ms": 20, "wcet_ms": 2},
    {"name": "y", "period_ms": 20, "deadline_ms": 15, "wcet_ms": 3, "offset_ms": 0.5},
    {"name": "z", "period_ms": 20, "deadline_ms": 4, "wcet_ms": 1, "offset_ms": 1},
]


@pytest.mark.parametrize("engine", engines())
def test_edf_picks_earliest_deadline(engine: Any) -> None:
    assert sched_log(engine, THREE, duration_ms=20) == [
        (0, "a#0", "release"),
        (0, "a#0", "dispatch"),
        (MS // 2, "y#0", "release"),
        (1 * MS, "z#0", "release"),
        (2 * MS, "a#0", "complete"),
        (2 * MS, "z#0", "dispatch"),  # abs deadline 5 beats y's 15.5
        (3 * MS, "z#0", "complete"),
        (3 * MS, "y#0", "dispatch"),
        (6 * MS, "y#0", "complete"),
    ]


@pytest.mark.parametrize("engine", engines())
def test_fifo_runs_in_release_order_and_misses(engine: Any) -> None:
    assert sched_log(engine, THREE, duration_ms=20, policy="fifo") == [
        (0, "a#0", "release"),
        (0, "a#0", "dispatch"),
        (MS // 2, "y#0", "release"),
        (1 * MS, "z#0", "release"),
        (2 * MS, "a#0", "complete"),
        (2 * MS, "y#0", "dispatch"),  # released first
        (5 * MS, "y#0", "complete"),
        (5 * MS, "z#0", "miss"),
        (5 * MS, "z#0", "dispatch"),
        (6 * MS, "z#0", "complete"),
    ]


@pytest.mark.parametrize("engine", engines())
def test_np_fp_follows_priorities_not_deadlines(engine: Any) -> None:
    tasks = [{**t, "priority": p} for t, p in zip(THREE, (1, 2, 3), strict=True)]
    got = sched_log(engine, tasks, duration_ms=20, policy="np-fp")
    assert [e for e in got if e[2] == "dispatch"] == [
        (0, "a#0", "dispatch"),
        (2 * MS, "y#0", "dispatch"),
        (5 * MS, "z#0", "dispatch"),
    ]


@pytest.mark.parametrize("engine", engines())
def test_release_when_gpu_frees_up_competes(engine: Any) -> None:
    # c waits since 1 ms (abs deadline 9); b is released at 3 ms exactly when a completes,
    # with abs deadline 5: it must win the slot.
    tasks = [
        {"name": "a", "period_ms": 10, "wcet_ms": 3},
        {"name": "c", "period_ms": 10, "deadline_ms": 8, "wcet_ms": 1, "offset_ms": 1},
        {"name": "b", "period_ms": 10, "deadline_ms": 2, "wcet_ms": 1, "offset_ms": 3},
    ]
    assert sched_log(engine, tasks, duration_ms=10) == [
        (0, "a#0", "release"),
        (0, "a#0", "dispatch"),
        (1 * MS, "c#0", "release"),
        (3 * MS, "a#0", "complete"),
        (3 * MS, "b#0", "release"),
        (3 * MS, "b#0", "dispatch"),
        (4 * MS, "b#0", "complete"),
        (4 * MS, "c#0", "dispatch"),
        (5 * MS, "c#0", "complete"),
    ]


@pytest.mark.parametrize("engine", engines())
def test_offsets_and_ties_follow_task_list_order(engine: Any) -> None:
    # Identical deadlines and releases: seq (task-list order) breaks the tie, every period.
    tasks = [
        {"name": "p", "period_ms": 5, "wcet_ms": 1, "offset_ms": 2},
        {"name": "q", "period_ms": 5, "wcet_ms": 1, "offset_ms": 2},
    ]
    assert sched_log(engine, tasks, duration_ms=8) == [
        (2 * MS, "p#0", "release"),
        (2 * MS, "q#0", "release"),
        (2 * MS, "p#0", "dispatch"),
        (3 * MS, "p#0", "complete"),
        (3 * MS, "q#0", "dispatch"),
        (4 * MS, "q#0", "complete"),
        (7 * MS, "p#1", "release"),
        (7 * MS, "q#1", "release"),
        (7 * MS, "p#1", "dispatch"),
        (8 * MS, "p#1", "complete"),
        (8 * MS, "q#1", "dispatch"),
        (9 * MS, "q#1", "complete"),
    ]


SHARED = [
    {"name": "a", "period_ms": 10, "wcet_ms": 4},
    {"name": "b", "period_ms": 10, "wcet_ms": 2, "offset_ms": 1},
]


def test_unscheduled_in_simpy_shares_the_gpu() -> None:
    # a alone 0..1 (1 ms of work done), then a and b share: b's 2 ms of work take 4 ms (done
    # at 5); a has 1 ms left, alone again: done at 6.
    assert sched_log(SimPyEngine, SHARED, duration_ms=10, policy="unscheduled") == [
        (0, "a#0", "release"),
        (0, "a#0", "dispatch"),
        (1 * MS, "b#0", "release"),
        (1 * MS, "b#0", "dispatch"),
        (5 * MS, "b#0", "complete"),
        (6 * MS, "a#0", "complete"),
    ]


def test_unscheduled_sharing_rounds_up_to_whole_ns() -> None:
    # Three equal jobs released together: each gets 1/3 of the GPU.
    tasks = [{"name": n, "period_ms": 10, "wcet_ms": 0.000001} for n in "abc"]
    scenario = make_scenario(tasks, duration_ms=10, policy="unscheduled")
    records, jobs = run_in_memory(scenario, SimPyEngine())
    assert [(j.id, j.end_ns) for j in jobs] == [("a#0", 3), ("b#0", 3), ("c#0", 3)]
    check_run(records, jobs, slots=None)


def test_fake_engine_runs_unscheduled_jobs_in_parallel_at_full_speed() -> None:
    got = sched_log(FakeEngine, SHARED, duration_ms=10, policy="unscheduled")
    assert [e for e in got if e[2] == "complete"] == [
        (3 * MS, "b#0", "complete"),
        (4 * MS, "a#0", "complete"),
    ]


@pytest.mark.parametrize("engine", engines())
def test_dispatch_rationale_records_the_ready_set(engine: Any) -> None:
    records, _ = run_in_memory(make_scenario(THREE, duration_ms=20), engine())
    d = [r for r in records if r["kind"] == "dispatch"][1]
    assert d["t_ns"] == 2 * MS and d["job"] == "z#0" and d["task"] == "z"
    assert d["rationale"] == {
        "rule": "np-edf: earliest absolute deadline, then release, then seq",
        "key": ["deadline_ns", "release_ns", "seq"],
        "ready": [
            {"job": "z#0", "task": "z", "deadline_ns": 5 * MS, "release_ns": 1 * MS, "seq": 2},
            {"job": "y#0", "task": "y", "deadline_ns": 15_500_000, "release_ns": MS // 2, "seq": 1},
        ],
    }
    assert [r["rec"] for r in records] == list(range(len(records)))
    assert d["seq"] == 2  # the job's release sequence number, as in its ready entry


def test_fault_marks_the_job_failed_and_others_continue() -> None:
    scenario = make_scenario(THREE, duration_ms=20)
    records, jobs = run_in_memory(scenario, FakeEngine(faults={"y#0": "kernel raised"}))
    assert [(j.id, j.status) for j in jobs] == [
        ("a#0", JobStatus.COMPLETED),
        ("y#0", JobStatus.FAILED),
        ("z#0", JobStatus.COMPLETED),
    ]
    fault = [r for r in records if r["kind"] == "fault"]
    assert fault == [
        {"rec": fault[0]["rec"], "t_ns": 6 * MS, "kind": "fault", "seq": 1, "job": "y#0",
         "task": "y", "error": "kernel raised"}
    ]  # fmt: skip
    check_run(records, jobs, slots=1)


def test_the_loop_pauses_and_freezes_gc_only_during_the_run() -> None:
    import gc

    from aegis_core.run.loop import run
    from aegis_core.run.plan import RunPlan
    from aegis_core.run.scheduler import Scheduler
    from aegis_core.run.testing import FakeEngine

    seen: list[tuple[bool, int]] = []

    class Probe(FakeEngine):
        def advance(self, until: int | None) -> Any:
            seen.append((gc.isenabled(), gc.get_freeze_count()))
            return super().advance(until)

    sc = make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 1}], duration_ms=30)
    plan = RunPlan.build(sc)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    run(plan, Scheduler.for_plan(plan), Probe())
    assert seen and all(not on and frozen > 0 for on, frozen in seen)
    assert gc.isenabled() and gc.get_freeze_count() == 0  # restored


def test_a_completion_handed_over_after_the_deadline_writes_its_miss() -> None:
    """A wall-clock engine may hand a job's completion over after its deadline passed with no
    timer in between: the job is missed and its ``miss`` record sits at the deadline, before
    the ``complete`` record (the invariant checker and Perfetto read it)."""
    from aegis_core.run.events import Completion, Release
    from aegis_core.run.plan import RunPlan
    from aegis_core.run.scheduler import Scheduler

    s = make_scenario([{"name": "a", "period_ms": 10, "deadline_ms": 5, "wcet_ms": 2}])
    sch = Scheduler.for_plan(RunPlan.build(s))
    sch.step([Release(0, 0, 0)], 0)
    assert sch.schedule(0) is not None
    sch.drain()
    sch.step([Completion(7 * MS, 0, 0)], 7 * MS)  # the deadline (5 ms) passed unseen
    kinds = [(r.kind, r.t_ns) for r in sch.drain()]
    assert kinds[:2] == [("miss", 5 * MS), ("complete", 7 * MS)]
    assert sch.jobs[0].missed and sch.jobs[0].status is JobStatus.COMPLETED
