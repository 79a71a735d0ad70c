"""The Engine protocol's contract, checked on every engine there is.

Each engine is driven by hand (start, advance, dispatch, free_slots, now, close) with a plan
from :meth:`RunPlan.build` and a :class:`Scheduler`; every call is logged and the log is
checked against the protocol: releases handed back once, in plan order, never early;
completions before releases within an instant; a clock that never goes back; one slot under
a serialized policy; exactly one end (Completion or Fault) per dispatch, inside its own
dispatch-to-end window. The executor on mock runs on a virtual clock (exact, like the
simulators); on numpy and, on a GPU, cupy it runs on the wall clock, short scenarios (tens of
ms), and deadline misses there must each have a recorded cause (a loaded host stalls jobs).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import MS, make_scenario

from aegis_core.model.errors import InternalError
from aegis_core.model.scenario import Scenario
from aegis_core.model.status import JobStatus
from aegis_core.record.sinks import MemoryTrace
from aegis_core.run.engine import Engine
from aegis_core.run.events import Completion, EngineEvent, Fault, Release
from aegis_core.run.plan import RunPlan
from aegis_core.run.scheduler import Dispatch, Scheduler
from aegis_core.run.testing import FakeEngine, check_run, run_in_memory, unexplained_misses
from aegis_exec.backends import usable
from aegis_exec.engine import ExecEngine
from aegis_exec.testing import VirtualClock
from aegis_exec.testing import faults as faults_

GPU = usable("cupy")
WALL_CLOCK = ("numpy", "cupy")
EXEC_IDS = ("exec-mock", "exec-numpy", "exec-cupy")


def engine_params(*, faults: bool = True) -> list[Any]:
    """One pytest param per engine (cupy: marked gpu, skipped without one)."""
    marks: dict[str, list[Any]] = {i: [] for i in ("fake", "sim", *EXEC_IDS)}
    marks["exec-cupy"] += [
        pytest.mark.gpu,
        pytest.mark.skipif(not GPU, reason="needs CuPy and a usable CUDA GPU"),
    ]
    kinds = [("fake", "fake"), ("sim", "sim"), ("mock", "exec-mock"), ("numpy", "exec-numpy")]
    kinds.append(("cupy", "exec-cupy"))
    return [
        pytest.param(kind, id=i, marks=marks[i])
        for kind, i in kinds
        if faults or kind != "sim"  # the simulator has no fault injection
    ]


def make_engine(kind: str, faults: Mapping[str, str] | None = None) -> Engine:
    if kind == "fake":
        return FakeEngine(faults=faults)
    if kind == "sim":
        from aegis_sim import SimPyEngine  # here: a GPU box may run the gpu tests without simpy

        assert not faults
        return SimPyEngine()
    options: dict[str, Any] = {"wrap": faults_(faults)} if faults else {}
    if kind not in WALL_CLOCK:
        options["clock"] = VirtualClock()
    return ExecEngine(kind, **options)


# ------------------------------------------------------------------------------ the driver


@dataclass
class Step:
    until: int | None
    before: int  # now() just before advance
    events: list[EngineEvent] | None
    after: int  # now() just after advance returned
    free: int  # free_slots() just after advance returned


@dataclass
class Launch:
    d: Dispatch
    at: int  # now() just before dispatch
    free_before: int
    free_after: int


@dataclass
class Drive:
    plan: RunPlan
    steps: list[Step] = field(default_factory=list)
    launches: dict[int, Launch] = field(default_factory=dict)
    ends: dict[int, list[tuple[Completion | Fault, Step]]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    scheduler: Scheduler | None = None
    final: Any = "not called"  # what one more advance(None) returned after the None
    clock: list[int] = field(default_factory=list)  # every now() reading, in call order


def drive(engine: Engine, plan: RunPlan) -> Drive:
    """The shared loop, written out with every engine call logged."""
    trace = MemoryTrace()
    sched = Scheduler.for_plan(plan)
    log = Drive(plan, scheduler=sched)

    def now() -> int:
        log.clock.append(engine.now())
        return log.clock[-1]

    engine.start(plan)
    try:
        while True:
            until = sched.next_timer()
            before = now()
            events = engine.advance(until)
            step = Step(until, before, events, now(), engine.free_slots())
            log.steps.append(step)
            if events is None:
                log.final = engine.advance(None)
                break
            for ev in events:
                if not isinstance(ev, Release):
                    log.ends.setdefault(ev.seq, []).append((ev, step))
            sched.step(events, step.after)
            while engine.free_slots() > 0:
                d = sched.schedule(step.after)
                if d is None:
                    break
                free, at = engine.free_slots(), now()
                engine.dispatch(d)
                log.launches[d.seq] = Launch(d, at, free, engine.free_slots())
            trace.write(sched.drain())
            trace.flush()
            assert len(log.steps) < 10_000, "runaway: the engine never ran out of events"
    finally:
        engine.close()
    log.records = trace.records()
    return log


# A serialized np-edf plan. a#0 completes at 4 ms exactly when b#0 is released (fake/sim)
# and b#0 (abs deadline 484 ms) beats the waiting c#0 (501 ms); c is sporadic. Deadlines are
# far beyond the periods on purpose: the contract is not about timeliness, and the numpy
# backend's jobs can stall for tens of ms on a busy 2-core host (see the report).
SERIAL = make_scenario(
    [
        {"name": "a", "model": "tiny_cnn", "period_ms": 10, "deadline_ms": 500, "wcet_ms": 4},
        {"name": "b", "model": "mlp", "input_shape": [256], "period_ms": 20,
         "deadline_ms": 480, "wcet_ms": 2, "offset_ms": 4},
        {"name": "c", "model": "tiny_cnn", "arrival": "sporadic", "period_ms": 25,
         "slack_ms": 5, "deadline_ms": 500, "wcet_ms": 3, "offset_ms": 1},
    ],
    duration_ms=60,
)  # fmt: skip


@pytest.fixture(scope="module", params=engine_params())
def driven(request: pytest.FixtureRequest) -> tuple[str, Drive]:
    kind = request.param
    return kind, drive(make_engine(kind), RunPlan.build(SERIAL))


def all_events(log: Drive) -> list[tuple[EngineEvent, Step]]:
    return [(ev, s) for s in log.steps for ev in (s.events or [])]


def test_the_serialized_plan_is_what_the_tests_think() -> None:
    plan = RunPlan.build(SERIAL)
    assert plan.slots == 1
    assert [r for r in plan.releases if r.t_ns < 25 * MS] == [
        Release(0, 0, 0),
        Release(1 * MS, 2, 0),
        Release(4 * MS, 1, 0),
        Release(10 * MS, 0, 1),
        Release(20 * MS, 0, 2),
        Release(24 * MS, 1, 1),
    ]
    assert len(plan.releases) == 6 + 3 + 3  # a, b, c


def test_fake_and_sim_hand_back_the_hand_computed_instants() -> None:
    # a#0 (seq 0) runs 0-4; c#0 (seq 1, D 501) waits; at 4 a#0 ends and b#0 (seq 2, D 484)
    # arrives in the same instant, completion first, and wins: 4-6; then c#0: 6-9.
    want = [
        [Release(0, 0, 0)],
        [Release(1 * MS, 2, 0)],
        [Completion(4 * MS, 0), Release(4 * MS, 1, 0)],
        [Completion(6 * MS, 2)],
        [Completion(9 * MS, 1)],
        [Release(10 * MS, 0, 1)],
    ]
    for kind in ("fake", "sim"):
        log = drive(make_engine(kind), RunPlan.build(SERIAL))
        assert [s.events for s in log.steps[:6]] == want, kind
        assert [(s.before, s.after) for s in log.steps[:3]] == [
            (0, 0), (0, 1 * MS), (1 * MS, 4 * MS),
        ]  # fmt: skip


def test_advance_returns_none_exactly_when_nothing_is_left(driven: tuple[str, Drive]) -> None:
    _, log = driven
    *body, last = log.steps
    assert last.events is None and last.until is None
    assert log.final is None, "advance(None) after the end must stay None"
    assert all(s.events is not None for s in body)
    # at the None: every release handed back, every dispatched job ended
    n_released = sum(isinstance(ev, Release) for ev, _ in all_events(log))
    assert n_released == len(log.plan.releases)
    assert set(log.ends) == set(log.launches)
    # an empty answer only ever means "woken at until"
    for s in body:
        if s.events == []:
            assert s.until is not None and s.after >= s.until


def test_releases_come_back_once_in_plan_order_never_early(driven: tuple[str, Drive]) -> None:
    _, log = driven
    got = [(ev, s) for ev, s in all_events(log) if isinstance(ev, Release)]
    assert [ev for ev, _ in got] == list(log.plan.releases)  # planned t_ns, plan order, once
    for ev, s in got:
        assert ev.t_ns <= s.after, f"{ev} handed back at now={s.after}"


def test_completions_come_before_releases_within_an_instant(driven: tuple[str, Drive]) -> None:
    kind, log = driven
    mixed = 0
    for s in log.steps:
        kinds = [isinstance(ev, Release) for ev in s.events or []]
        assert kinds == sorted(kinds), f"release before an end in {s.events}"
        mixed += 0 < sum(kinds) < len(kinds)
    if kind in ("fake", "sim"):
        assert mixed >= 1  # the 4 ms instant exercised the rule


def test_now_never_decreases(driven: tuple[str, Drive]) -> None:
    _, log = driven
    assert len(log.clock) == 2 * len(log.steps) + len(log.launches)
    assert log.clock[0] >= 0
    assert log.clock == sorted(log.clock)


def test_one_slot_for_a_serialized_plan(driven: tuple[str, Drive]) -> None:
    _, log = driven
    assert log.launches
    for seq, x in log.launches.items():
        assert (x.free_before, x.free_after) == (1, 0), x.d.job
        (_, step), *_ = log.ends[seq]
        assert step.free == 1, f"{x.d.job}: free_slots {step.free} after its completion"
    # and never two in flight: each dispatch comes after the previous job's end
    order = sorted(log.launches.values(), key=lambda x: x.at)
    for prev, nxt in itertools.pairwise(order):
        (end, _), *_ = log.ends[prev.d.seq]
        assert nxt.at >= end.t_ns


def test_every_dispatch_ends_exactly_once_inside_its_window(driven: tuple[str, Drive]) -> None:
    kind, log = driven
    assert set(log.ends) == set(log.launches)
    for seq, x in log.launches.items():
        ends = log.ends[seq]
        assert len(ends) == 1, f"{x.d.job} ended {len(ends)} times"
        (ev, step), *_ = ends
        assert isinstance(ev, Completion), ev
        assert x.at <= ev.t_ns <= step.after, (x.d.job, x.at, ev, step.after)
        if ev.started_ns is not None:
            assert x.at <= ev.started_ns <= ev.t_ns, (x.d.job, x.at, ev)
        if kind in ("fake", "sim", "mock"):  # planned durations (mock: on the virtual clock)
            started = x.at if ev.started_ns is None else ev.started_ns
            wcet = log.plan.chunks[x.d.task_index][0]
            assert ev.t_ns - started == wcet


def test_the_driven_run_is_a_valid_schedule_without_misses(driven: tuple[str, Drive]) -> None:
    kind, log = driven
    assert log.scheduler is not None
    jobs = log.scheduler.jobs
    assert check_run(log.records, jobs, slots=1) == len(jobs) == len(log.plan.releases)
    assert all(j.status is JobStatus.COMPLETED for j in jobs)
    if kind in WALL_CLOCK:  # a loaded host may stall a job: never without a recorded cause
        assert unexplained_misses(jobs) == []
    else:
        assert not any(j.missed for j in jobs)


# --------------------------------------------------------------------- single-call properties


def _start(engine: Engine, scenario: Scenario) -> tuple[RunPlan, Scheduler]:
    plan = RunPlan.build(scenario)
    engine.start(plan)
    return plan, Scheduler.for_plan(plan)


@pytest.mark.parametrize("kind", engine_params())
def test_advance_until_before_the_first_release_wakes_empty(kind: str) -> None:
    # the release is 30 ms after the second `until`: a wall-clock engine wakes on time
    scenario = make_scenario(
        [{"name": "a", "model": "tiny_cnn", "period_ms": 50, "wcet_ms": 2, "offset_ms": 40}],
        duration_ms=50,
    )
    engine = make_engine(kind)
    try:
        _start(engine, scenario)
        assert engine.advance(3 * MS) == []
        woke = engine.now()
        assert woke >= 3 * MS
        assert kind in WALL_CLOCK or woke == 3 * MS
        assert engine.advance(9 * MS) == []
        assert engine.now() >= 9 * MS
        assert kind in WALL_CLOCK or engine.now() == 9 * MS
        assert engine.advance(None) == [Release(40 * MS, 0, 0)]
        assert engine.now() >= 40 * MS
    finally:
        engine.close()


LONG_MODEL = {  # a job that surely outlasts 50 us on each backend (numpy: ~10 ms)
    "numpy": {"model": "mlp", "batch": 128, "input_shape": [2048]},
    "cupy": {"model": "mlp", "batch": 2048, "input_shape": [4096]},
}


@pytest.mark.parametrize("kind", engine_params())
def test_advance_until_while_a_job_runs_wakes_empty(kind: str) -> None:
    model = LONG_MODEL.get(kind, {"model": "tiny_cnn"})
    scenario = make_scenario(
        [{"name": "a", **model, "period_ms": 40, "wcet_ms": 30}], duration_ms=40
    )
    engine = make_engine(kind)
    try:
        _, sched = _start(engine, scenario)
        events = engine.advance(None)
        assert events == [Release(0, 0, 0)]
        now = engine.now()
        sched.step(events, now)
        d = sched.schedule(now)
        assert d is not None
        at = engine.now()
        engine.dispatch(d)
        until = at + 50_000
        assert engine.advance(until) == []  # the job is still running at `until`
        assert engine.now() >= until
        assert engine.free_slots() == 0
        end = engine.advance(None)
        assert end is not None and len(end) == 1
        (done,) = end
        assert isinstance(done, Completion) and done.seq == d.seq
        assert done.t_ns >= until
        if kind in ("fake", "sim"):
            assert done == Completion(at + 30 * MS, d.seq)
        elif kind == "mock":  # exactly the WCET after its start
            assert done.started_ns is not None and done.t_ns - done.started_ns == 30 * MS
        assert engine.free_slots() == 1
        assert engine.advance(None) is None
    finally:
        engine.close()


@pytest.mark.parametrize("kind", engine_params())
def test_unscheduled_plans_run_several_jobs_at_once(kind: str) -> None:
    model = LONG_MODEL.get(kind, {"model": "tiny_cnn"})
    scenario = make_scenario(
        [
            {"name": "a", **model, "period_ms": 30, "wcet_ms": 5},
            {"name": "b", **model, "period_ms": 30, "wcet_ms": 5},
            {"name": "c", **model, "period_ms": 30, "wcet_ms": 5},
        ],
        duration_ms=30,
        policy="unscheduled",
    )
    engine = make_engine(kind)
    try:
        plan, sched = _start(engine, scenario)
        assert plan.slots is None
        events = engine.advance(None)
        assert events == [Release(0, 0, 0), Release(0, 1, 0), Release(0, 2, 0)]
        now = engine.now()
        sched.step(events, now)
        at = {}
        while (d := sched.schedule(now)) is not None:
            at[d.seq] = engine.now()
            engine.dispatch(d)
            assert engine.free_slots() >= 2**31  # still "unlimited" with jobs in flight
        assert len(at) == 3  # three in flight, none has ended yet
        ends: dict[int, Completion] = {}
        while (events := engine.advance(None)) is not None:
            for ev in events:
                assert isinstance(ev, Completion) and ev.seq not in ends
                ends[ev.seq] = ev
            assert engine.free_slots() >= 2**31
        assert sorted(ends) == [0, 1, 2]
        spans = [(ends[s].started_ns or at[s], ends[s].t_ns) for s in range(3)]
        assert all(at[s] <= b <= e for s, (b, e) in enumerate(spans))
        # some two of them overlap in time
        assert any(
            max(b1, b2) < min(e1, e2)
            for i, (b1, e1) in enumerate(spans)
            for (b2, e2) in spans[i + 1 :]
        ), spans
        if kind == "fake":  # every job at full speed on its own slot
            assert [ends[s].t_ns for s in range(3)] == [5 * MS] * 3
        elif kind == "sim":  # processor sharing: three jobs at a third of the speed each
            assert [ends[s].t_ns for s in range(3)] == [15 * MS] * 3
    finally:
        engine.close()


@pytest.mark.parametrize("kind", engine_params())
def test_dispatch_without_a_free_slot_is_an_internal_error(kind: str) -> None:
    scenario = make_scenario(
        [
            {"name": "a", "model": "tiny_cnn", "period_ms": 20, "wcet_ms": 2},
            {"name": "b", "model": "tiny_cnn", "period_ms": 20, "wcet_ms": 2},
        ],
        duration_ms=20,
    )
    engine = make_engine(kind)
    try:
        _, sched = _start(engine, scenario)
        events = engine.advance(None)
        assert events is not None and len(events) == 2
        sched.step(events, engine.now())
        first, second = sched.schedule(engine.now()), sched.schedule(engine.now())
        assert first is not None and second is not None
        engine.dispatch(first)
        assert engine.free_slots() == 0
        with pytest.raises(InternalError, match="no free slot"):
            engine.dispatch(second)
        while engine.advance(None) is not None:
            pass
    finally:
        engine.close()


@pytest.mark.parametrize("kind", engine_params(faults=False))
def test_a_fault_is_the_one_end_of_its_job(kind: str) -> None:
    scenario = make_scenario(
        [{"name": "a", "model": "tiny_cnn", "period_ms": 10, "wcet_ms": 2}], duration_ms=30
    )
    log = drive(make_engine(kind, faults={"a#1": "boom"}), RunPlan.build(scenario))
    assert sorted(log.ends) == sorted(log.launches) == [0, 1, 2]
    kinds = {}
    for seq, x in log.launches.items():
        ((ev, step),) = log.ends[seq]
        assert x.at <= ev.t_ns <= step.after
        assert step.free == 1
        kinds[x.d.job] = type(ev).__name__
    # only the injected job fails; the task's next job runs
    assert kinds == {"a#0": "Completion", "a#1": "Fault", "a#2": "Completion"}
    ((fault, _),) = log.ends[1]
    assert isinstance(fault, Fault) and "boom" in fault.error


@pytest.mark.parametrize("kind", engine_params())
def test_simultaneous_releases_come_back_in_plan_order(kind: str) -> None:
    plan = RunPlan.build(
        make_scenario(
            [
                {"name": "a", "model": "tiny_cnn", "period_ms": 10, "wcet_ms": 1},
                {"name": "b", "model": "tiny_cnn", "period_ms": 10, "wcet_ms": 1},
            ],
            duration_ms=10,
        )
    )
    swapped = [Release(0, 1, 0), Release(0, 0, 0)]  # a valid plan: same instant, b first
    plan = dataclasses.replace(plan, releases=swapped)
    engine = make_engine(kind)
    try:
        engine.start(plan)
        assert engine.advance(None) == swapped
        assert engine.advance(None) is None
    finally:
        engine.close()


@pytest.mark.parametrize("kind", engine_params())
def test_an_engine_can_be_started_again_with_another_plan(kind: str) -> None:
    one = make_scenario(
        [{"name": "a", "model": "tiny_cnn", "period_ms": 10, "wcet_ms": 1}], duration_ms=10
    )
    two = make_scenario(
        [
            {"name": "x", "model": "mlp", "input_shape": [256], "period_ms": 10,
             "deadline_ms": 500, "wcet_ms": 3},
            {"name": "y", "model": "tiny_cnn", "period_ms": 10, "deadline_ms": 500,
             "wcet_ms": 2, "offset_ms": 1},
        ],
        duration_ms=20,
    )  # fmt: skip
    engine = make_engine(kind)
    _, first = run_in_memory(one, engine)
    assert [j.id for j in first] == ["a#0"]
    records, jobs = run_in_memory(two, engine)
    assert [j.id for j in jobs] == ["x#0", "y#0", "x#1", "y#1"]
    assert check_run(records, jobs, slots=1) == 4
    assert all(j.status is JobStatus.COMPLETED for j in jobs)
    if kind in ("fake", "sim", "mock"):  # the second plan's durations, not the first's
        assert [j.run_ns >= (3 if j.task == "x" else 2) * MS for j in jobs] == [True] * 4


# ------------------------------------------------------------------------ a whole easy run

EASY = make_scenario(
    [
        {"name": "cnn", "model": "tiny_cnn", "period_ms": 20, "deadline_ms": 500,
         "wcet_ms": 5},
        {"name": "mlp", "model": "mlp", "input_shape": [256], "period_ms": 25,
         "deadline_ms": 500, "wcet_ms": 1, "offset_ms": 2},
        {"name": "spo", "model": "tiny_cnn", "arrival": "sporadic", "period_ms": 30,
         "slack_ms": 10, "deadline_ms": 500, "wcet_ms": 1, "offset_ms": 5},
    ],
    duration_ms=100,
)  # fmt: skip


@pytest.mark.parametrize("kind", engine_params())
def test_an_easy_run_through_the_loop_completes_every_job(kind: str) -> None:
    # utilisation ~0.32 at the WCETs (mock runs each job for exactly its WCET); numpy and
    # cupy take well under a millisecond per job, but a busy 2-core host can stall a numpy
    # job for tens of ms: deadlines of 500 ms keep the test about the loop, not the host
    records, jobs = run_in_memory(EASY, make_engine(kind))
    ids = [j.id for j in jobs]
    assert ids[:6] == ["cnn#0", "mlp#0", "spo#0", "cnn#1", "mlp#1", "cnn#2"]
    assert len(jobs) == len(RunPlan.build(EASY).releases) == 5 + 4 + 3
    assert check_run(records, jobs, slots=1) == len(jobs)
    assert [j.id for j in jobs if j.status is not JobStatus.COMPLETED] == []
    if kind in WALL_CLOCK:  # a loaded host may stall a job: never without a recorded cause
        assert unexplained_misses(jobs) == []
    else:
        assert sum(j.missed for j in jobs) == 0
        assert not [r for r in records if r["kind"] == "miss"]


def test_the_engine_ids_cover_every_registered_engine() -> None:
    from aegis_core.run.engine import engine_names

    assert engine_names() == ["exec", "sim"]
    assert {p.id for p in engine_params()} == {"fake", "sim", *EXEC_IDS}
