"""Dispatch-ahead (docs/THEORY.md §ahead): the next decision taken while a job runs, chained
behind it, and every decision the one the policy takes without it."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from conftest import make_scenario
from test_random import random_tasks

from aegis_core.model.errors import InternalError
from aegis_core.model.policy import POLICIES
from aegis_core.model.status import JobStatus
from aegis_core.record.schema import AssumptionRecord, DispatchRecord
from aegis_core.record.sinks import MemoryTrace
from aegis_core.run.ahead import AHEAD_BROKEN, NEVER, AheadMode, Horizon
from aegis_core.run.cursor import Slots
from aegis_core.run.loop import run
from aegis_core.run.plan import RunPlan
from aegis_core.run.scheduler import Dispatch, Scheduler
from aegis_core.run.testing import FakeEngine, check_run
from aegis_exec.engine import ExecEngine
from aegis_exec.testing import SlowLaunch, VirtualClock
from aegis_sim import SimPyEngine

MS = 1_000_000
MODES = (AheadMode.OFF, AheadMode.SPORADIC, AheadMode.PLANNED)


def run_mode(scenario: Any, engine: Any, mode: AheadMode, **build: Any) -> tuple[Any, ...]:
    """A run under ``mode``: its records (as dicts), jobs, scheduler and loop stats."""
    plan = RunPlan.build(scenario, dispatch_ahead=mode, **build)
    trace = MemoryTrace()
    scheduler = Scheduler.for_plan(plan)
    stats = run(plan, scheduler, engine, sink=trace)
    return trace.records(), scheduler.jobs, scheduler, stats


def without_ahead(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records but ``decided_ahead_ns``, each ready set as a set behind its winner (a
    decision taken ahead lists the jobs released in between in another order)."""
    out = []
    for r in records:
        r = {k: v for k, v in r.items() if k != "decided_ahead_ns"}
        if r["kind"] == "dispatch":
            ready = r["rationale"]["ready"]
            rest = sorted(ready[1:], key=lambda e: e["seq"])
            r = {**r, "rationale": {**r["rationale"], "ready": [ready[0], *rest]}}
        out.append(r)
    return out


def chunked(tasks: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """lp-edf: each task's WCET as 1-4 kernels (the chunk chain admission would merge)."""
    for t in tasks:
        w = t["wcet_ms"]
        n = max(1, min(rng.randint(1, 4), int(w / 0.002)))
        parts = [round(w / n, 3)] * (n - 1)
        t["kernels_ms"] = [*parts, round(w - sum(parts), 3)]
        t["wcet_ms"] = round(sum(t["kernels_ms"]), 3)
    return tasks


def random_scenario(seed: int, policy: str) -> Any:
    rng = random.Random(seed)
    tasks = random_tasks(rng)
    if policy == "lp-edf":
        tasks = chunked(tasks, rng)
    return make_scenario(tasks, policy=policy, duration_ms=200, seed=seed)


@pytest.mark.parametrize("engine", [FakeEngine, SimPyEngine], ids=["fake", "sim"])
@pytest.mark.parametrize("policy", ["np-edf", "np-fp", "lp-edf"])
def test_every_decision_is_the_one_taken_without_ahead(engine: Any, policy: str) -> None:
    """Random task sets and seeds: with dispatch-ahead (either horizon) the trace is the
    trace without it, record for record, but for ``decided_ahead_ns`` (and the order of a
    ready set behind its winner); the same jobs start at the same instants; and many
    decisions were taken ahead."""
    ahead = total = 0
    for seed in range(12):
        scenario = random_scenario(seed * 7 + len(policy), policy)
        base, base_jobs, base_sched, _ = run_mode(scenario, engine(), AheadMode.OFF)
        assert base_sched.decided_ahead == 0
        assert all("decided_ahead_ns" not in r for r in base)
        for mode in (AheadMode.SPORADIC, AheadMode.PLANNED):
            eng = engine()
            records, jobs, sched, stats = run_mode(scenario, eng, mode)
            assert without_ahead(records) == without_ahead(base), (seed, mode)
            assert [(j.id, j.start_ns, j.end_ns) for j in jobs] == [
                (j.id, j.start_ns, j.end_ns) for j in base_jobs
            ]
            check_run(records, jobs, slots=1)
            flagged = [r for r in records if r.get("decided_ahead_ns")]
            assert len(flagged) == sched.decided_ahead == len(stats.ahead_ns)
            assert all(0 < r["decided_ahead_ns"] <= r["t_ns"] for r in flagged)
            assert not [r for r in records if r["kind"] == "assumption"]  # none broke
            ahead += sched.decided_ahead
            total += sched.dispatched
    assert total > 500 and ahead > 0.2 * total  # the rule does apply, often


def test_the_planned_horizon_decides_ahead_at_least_as_often_as_the_sporadic_one() -> None:
    counts = {}
    for mode in (AheadMode.SPORADIC, AheadMode.PLANNED):
        n = 0
        for seed in range(10):
            n += run_mode(random_scenario(seed, "np-edf"), FakeEngine(), mode)[2].decided_ahead
        counts[mode] = n
    assert counts[AheadMode.PLANNED] >= counts[AheadMode.SPORADIC] > 0


def test_policies_that_do_not_decide_ahead_never_do() -> None:
    assert {p.name for p in POLICIES.values() if p.decides_ahead} == {"np-edf", "np-fp", "lp-edf"}
    for policy in ("fifo", "unscheduled", "stream-priority"):
        scenario = random_scenario(3, policy)
        plan = RunPlan.build(scenario)
        assert plan.dispatch_ahead is AheadMode.OFF
        records, _, sched, stats = run_mode(scenario, SimPyEngine(), AheadMode.PLANNED)
        assert sched.decided_ahead == 0 and len(stats.ahead_ns) == 0
        assert all("decided_ahead_ns" not in r for r in records)


BACKLOG = [  # every job released at 0: each end is followed by a waiting job
    {"name": "a", "period_ms": 100, "deadline_ms": 90, "wcet_ms": 2},
    {"name": "b", "period_ms": 100, "deadline_ms": 80, "wcet_ms": 3},
    {"name": "c", "period_ms": 100, "deadline_ms": 70, "wcet_ms": 1},
    {"name": "d", "period_ms": 100, "deadline_ms": 60, "wcet_ms": 4},
]


def test_a_backlog_starts_each_job_at_the_previous_end_a_worked_example() -> None:
    """One job per task at 0, EDF order d, c, b, a. Decided at once, each launch after the
    first pays the host's 50 µs launch path (SlowLaunch on a virtual clock); chained, a job
    starts at the previous job's end: every start moves earlier by the gaps removed."""
    scenario = make_scenario(BACKLOG, duration_ms=50)
    delay = 50_000
    starts = {}
    for mode in (AheadMode.OFF, AheadMode.PLANNED):
        clock = VirtualClock()
        delays = {f"{t['name']}#0": delay for t in BACKLOG}
        eng = ExecEngine("mock", clock=clock,
                         wrap=lambda b, c=clock, d=delays: SlowLaunch(b, c, d))  # fmt: skip
        records, jobs, sched, _ = run_mode(scenario, eng, mode)
        check_run(records, jobs, slots=1)
        starts[mode] = [(j.id, j.start_ns) for j in sorted(jobs, key=lambda j: j.start_ns)]
        assert [d["job"] for d in records if d["kind"] == "dispatch"] == [
            "d#0", "c#0", "b#0", "a#0"]  # fmt: skip
        assert sched.decided_ahead == (3 if mode is AheadMode.PLANNED else 0)
        gaps = eng.report()["dispatch_gap_ns"]
        assert gaps["n"] == 3
        assert gaps["max"] == (delay if mode is AheadMode.OFF else 0)
    off, on = starts[AheadMode.OFF], starts[AheadMode.PLANNED]
    assert [j for j, _ in off] == [j for j, _ in on]  # the same decisions, in the same order
    assert [s for _, s in on] == [delay, delay + 4 * MS, delay + 5 * MS, delay + 8 * MS]
    assert [a - b for (_, a), (_, b) in zip(off, on, strict=True)] == [0, delay, 2 * delay,
                                                                       3 * delay]  # fmt: skip


@pytest.mark.parametrize("policy", ["np-edf", "lp-edf"])
def test_the_mock_executor_on_a_virtual_clock_takes_the_same_decisions(policy: str) -> None:
    for seed in range(4):
        scenario = random_scenario(seed + 40, policy)
        out = {}
        for mode in (AheadMode.OFF, AheadMode.PLANNED):
            records, jobs, sched, _ = run_mode(scenario, ExecEngine("mock", clock=VirtualClock()),
                                               mode)  # fmt: skip
            check_run(records, jobs, slots=1)
            out[mode] = ([(j.id, j.start_ns, j.status) for j in jobs], sched.decided_ahead)
        assert out[AheadMode.OFF][0] == out[AheadMode.PLANNED][0]
        assert out[AheadMode.OFF][1] == 0 < out[AheadMode.PLANNED][1]


class _Overrun:
    """Execution times: every job its WCET but ``job``, which runs ``ns``."""

    def __init__(self, plan: RunPlan, job: str, ns: int) -> None:
        self.plan, self.job, self.ns = plan, job, ns

    def __call__(self, d: Dispatch) -> int:
        if d.job == self.job:
            return self.ns
        return self.plan.budgets[d.task_index].chunks_ns[d.chunk]


def overrun_plan() -> tuple[Any, RunPlan]:
    """a (WCET 4 ms) at 0, b waiting behind it, c (deadline 10 ms) released at 5 ms; a#0
    runs 6 ms. The scenario and its plan."""
    scenario = make_scenario([
        {"name": "a", "period_ms": 100, "deadline_ms": 50, "wcet_ms": 4},
        {"name": "b", "period_ms": 100, "deadline_ms": 60, "wcet_ms": 1},
        {"name": "c", "period_ms": 100, "deadline_ms": 10, "wcet_ms": 1, "offset_ms": 5},
    ], duration_ms=20)  # fmt: skip
    plan = RunPlan.build(scenario)
    return scenario, RunPlan(**{**plan.__dict__, "exec_time": _Overrun(plan, "a#0", 6 * MS)})


def test_an_overrun_past_a_release_breaks_the_ahead_decision_and_says_so() -> None:
    """a#0 (WCET 4 ms) runs at 0 and b#0 is chained behind it: c's first release, at 5 ms,
    lies after a's latest end. a#0 overruns to 6 ms: c#0 (earlier deadline) came in between,
    yet b#0 was already on the device. The trace says so: an ``assumption`` record
    (``dispatch-ahead``) for b#0, observed 6 ms against the 4 ms assumed."""
    _, plan = overrun_plan()
    trace = MemoryTrace()
    sched = Scheduler.for_plan(plan)
    eng = FakeEngine()
    run(plan, sched, eng, sink=trace)
    assert [(t, j) for t, j, _ in eng.dispatches] == [(0, "a#0"), (6 * MS, "b#0"), (7 * MS, "c#0")]
    records = trace.records()
    broken = [r for r in records if r["kind"] == "assumption"]
    assert len(broken) == 1
    b = broken[0]
    assert (b["job"], b["what"], b["observed_ns"], b["bound_ns"]) == (
        "b#0", AHEAD_BROKEN, 6 * MS, 4 * MS)  # fmt: skip
    dispatch_b = next(r for r in records if r["kind"] == "dispatch" and r["job"] == "b#0")
    assert dispatch_b["decided_ahead_ns"] == 6 * MS
    assert {e["job"] for e in dispatch_b["rationale"]["ready"]} == {"b#0", "c#0"}  # that instant's
    assert AHEAD_BROKEN in next(j for j in sched.jobs if j.id == "b#0").broken


def test_a_fault_ends_the_job_and_its_chained_next_chunk_never_runs() -> None:
    scenario = make_scenario([
        {"name": "a", "period_ms": 100, "deadline_ms": 50, "kernels_ms": [1, 1, 1]},
    ], policy="lp-edf", duration_ms=20)  # fmt: skip
    records, jobs, sched, _ = run_mode(scenario, FakeEngine(faults={"a#0": "boom"}),
                                       AheadMode.PLANNED)  # fmt: skip
    assert [j.status for j in jobs] == [JobStatus.FAILED]
    assert [r["kind"] for r in records if r.get("job") == "a#0"] == [
        "release", "dispatch", "fault"]  # fmt: skip
    assert sched.decided_ahead == 0
    check_run(records, jobs, slots=1)


def test_a_job_s_own_next_chunk_is_chained_behind_it() -> None:
    scenario = make_scenario([
        {"name": "a", "period_ms": 100, "deadline_ms": 50, "kernels_ms": [1, 2, 3]},
    ], policy="lp-edf", duration_ms=20)  # fmt: skip
    eng = FakeEngine()
    records, jobs, sched, _ = run_mode(scenario, eng, AheadMode.PLANNED)
    assert [(t, j) for t, j, _ in eng.dispatches] == [(0, "a#0"), (MS, "a#0"), (3 * MS, "a#0")]
    ahead = [(r["t_ns"], r.get("chunk", 0), r.get("decided_ahead_ns")) for r in records
             if r["kind"] == "dispatch"]  # fmt: skip
    assert ahead == [(0, 0, None), (MS, 1, MS), (3 * MS, 2, 2 * MS)]
    assert jobs[0].end_ns == 6 * MS and sched.decided_ahead == 2


def test_the_sporadic_horizon() -> None:
    tasks = make_scenario([
        {"name": "a", "period_ms": 10, "wcet_ms": 1, "offset_ms": 3},
        {"name": "b", "period_ms": 20, "wcet_ms": 1, "jitter_ms": 5},
        {"name": "r", "period_ms": 5, "wcet_ms": 1},
    ]).tasks  # fmt: skip
    h = Horizon(tasks, rejected={2})
    assert h.bound() == 0  # b may release at 0
    h.released(1, 2 * MS)  # b's first, 2 ms late: its next no earlier than 2 + 20 - 5
    assert h.bound() == 3 * MS  # a's offset
    h.released(0, 3 * MS)
    assert h.bound() == 13 * MS
    h.released(1, 17 * MS)
    assert h.bound() == 13 * MS
    assert h.earliest[2] == NEVER  # rejected: never a ready job
    h.released(2, 0)
    assert h.earliest[2] == NEVER


def test_slots_chain_one_job_behind_the_one_running() -> None:
    s = Slots(1)
    with pytest.raises(InternalError):
        s.chain("x")  # nothing runs
    s.take("a")
    s.chain("b")
    with pytest.raises(InternalError):
        s.chain("c")  # one chained at most
    assert s.free() == 0
    s.handover()
    assert (s.running, s.chained, s.free()) == (1, 0, 0)
    with pytest.raises(InternalError):
        Slots(None).chain("x")


def test_a_stop_between_decision_and_effect_leaves_the_job_ready() -> None:
    scenario = make_scenario(BACKLOG, duration_ms=50)
    plan = RunPlan.build(scenario)
    sched = Scheduler.for_plan(plan)
    calls = iter(range(100))
    stats = run(plan, sched, FakeEngine(), stop=lambda: "SIGINT" if next(calls) >= 0 else None)
    assert stats.stopped == "SIGINT"
    pending = {j.id: j.status for j in sched.pending()}
    assert pending == {"d#0": JobStatus.RUNNING, "c#0": JobStatus.READY, "b#0": JobStatus.READY,
                       "a#0": JobStatus.READY}  # fmt: skip
    assert sched.decided_ahead == 0 and sched.dispatched == 1


def test_dispatch_records_carry_decided_ahead_ns_only_when_taken_ahead() -> None:
    records, _, _, _ = run_mode(make_scenario(BACKLOG, duration_ms=50), FakeEngine(),
                                AheadMode.PLANNED)  # fmt: skip
    from aegis_core.record.schema import decode_all

    typed = [r for r in decode_all(records) if isinstance(r, DispatchRecord)]
    assert [r.decided_ahead_ns for r in typed] == [0, 4 * MS, MS, 3 * MS]
    assert not any(isinstance(r, AssumptionRecord) for r in decode_all(records))


def test_a_chained_job_that_starts_late_breaks_the_launch_bound() -> None:
    """b#0 is chained behind a#0 at 0, but its launch takes the host 3 ms (a runs 2 ms): the
    device idles 1 ms after a's end. A chained job's launch figure is that gap; above the
    charged 50 µs it is an ``assumption`` record, as a slow launch of any job."""
    import dataclasses

    from aegis_core.analysis.admission import admit
    from aegis_core.model.overheads import Overhead, Overheads

    US = 1000
    sc = dataclasses.replace(make_scenario([
        {"name": "a", "period_ms": 10, "deadline_ms": 10, "wcet_ms": 2},
        {"name": "b", "period_ms": 20, "deadline_ms": 20, "wcet_ms": 1},
    ], duration_ms=5), overheads=Overheads.of_bounds(dict.fromkeys(Overhead, 50 * US)))  # fmt: skip
    clock = VirtualClock()
    eng = ExecEngine("mock", clock=clock, wrap=lambda b: SlowLaunch(b, clock, {"b#0": 3 * MS}))
    records, jobs, sched, _ = run_mode(sc, eng, AheadMode.PLANNED, admission=admit(sc))
    assert sched.decided_ahead == 1
    by_id = {j.id: j for j in jobs}
    assert (by_id["a#0"].end_ns, by_id["b#0"].start_ns) == (2 * MS + 0, 3 * MS)
    broken = [(r["job"], r["what"], r["observed_ns"]) for r in records if r["kind"] == "assumption"]
    # (the host, busy launching, also saw a's end 1 ms late: its completion figure)
    assert broken == [("a#0", "completion", 1 * MS), ("b#0", "launch", 1 * MS)]
    assert eng.report()["dispatch_gap_chained_ns"]["max"] == 1 * MS


def test_a_release_handed_over_late_into_a_window_breaks_it() -> None:
    """With a release lag charged, a release planned inside a window may be handed over after
    the window took effect: the scheduler keeps checking for the lag bound, then stops."""
    from aegis_core.run.events import Completion, Release

    tasks = make_scenario([
        {"name": "a", "period_ms": 100, "deadline_ms": 50, "wcet_ms": 4},
        {"name": "b", "period_ms": 100, "deadline_ms": 60, "wcet_ms": 1},
        {"name": "c", "period_ms": 100, "deadline_ms": 10, "wcet_ms": 1, "offset_ms": 5},
    ]).tasks  # fmt: skip
    for late, broken in ((1 * MS, True), (3 * MS, False)):
        s = Scheduler(tasks, POLICIES["np-edf"], ahead=AheadMode.PLANNED, lag_bound_ns=2 * MS)
        s.step([Release(0, 0, 0), Release(0, 1, 0)], 0)
        assert s.schedule(0) is not None
        d = s.schedule_ahead(0, 7 * MS)  # (a planned release at 7 ms: after a's latest end)
        assert d is not None and d.job == "b#0" and d.after == 0
        s.step([Completion(6 * MS, 0)], 6 * MS)  # a overran to 6 ms; nothing seen yet
        assert not [r for r in s.drain() if isinstance(r, AssumptionRecord)]
        # c#0, planned at 5 ms (inside the window 0-6 ms), handed over `late` after 6 ms
        s.step([Release(5 * MS, 2, 0)], 6 * MS + late)
        got = [(r.job, r.what) for r in s.drain() if isinstance(r, AssumptionRecord)]
        assert [g for g in got if g[1] == AHEAD_BROKEN] == ([("b#0", AHEAD_BROKEN)] * broken)
        assert (("c#0", "release-lag") in got) == (not broken)  # beyond the bound: its own


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_a_backlog_on_worker_threads_chains_every_job_behind_the_one_before(backend: str) -> None:
    """Real kernels on worker threads (wall clock): every job after the first of a backlog is
    decided ahead and queued on the worker running the job before it; the run keeps every
    invariant, whatever the host's timing (nothing here is timed)."""
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    tasks = [{"name": f"m{i}", "model": "mlp", "input_shape": [64], "period_ms": 200,
              "deadline_ms": 190, "wcet_ms": 5} for i in range(4)]  # fmt: skip
    scenario = make_scenario(tasks, duration_ms=150)
    eng = ExecEngine(backend)
    records, jobs, sched, _ = run_mode(scenario, eng, AheadMode.PLANNED)
    check_run(records, jobs, slots=1)
    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * 4
    starts = sorted(jobs, key=lambda j: j.start_ns)
    assert all(a.end_ns <= b.start_ns for a, b in itertools.pairwise(starts))
    # m1 is always chained (decided right after m0's launch, no host step between); later
    # ones are, unless the job before had ended too by the time the host saw an end
    assert 1 <= sched.decided_ahead <= 3 and sched.dispatched == 4
    report = eng.report()
    assert report["dispatch_gap_chained_ns"]["n"] == sched.decided_ahead


def test_past_its_latest_end_only_a_pick_no_later_job_can_beat_is_decided_ahead() -> None:
    """a#0 (WCET 4 ms) still runs at 6 ms: it overran (or started late), its end is unknown.
    b#0 (absolute deadline 100 ms) is decided ahead only if no job to come can rank before
    it: c#0, due at 8 ms, has deadline 8 + 100 ms (it cannot) or 8 + 50 ms (it can). Before
    a's latest end (3 ms), c's release lies after it: decided either way. No window is
    negative: the broken record's bound is never past its effect."""
    for c_deadline, past in ((100, True), (50, False)):
        tasks = make_scenario([
            {"name": "a", "period_ms": 200, "deadline_ms": 100, "wcet_ms": 4},
            {"name": "b", "period_ms": 200, "deadline_ms": 100, "wcet_ms": 1},
            {"name": "c", "period_ms": 200, "deadline_ms": c_deadline, "wcet_ms": 1,
             "offset_ms": 8},
        ]).tasks  # fmt: skip
        for mode in (AheadMode.SPORADIC, AheadMode.PLANNED):
            for now, decided in ((6 * MS, past), (4 * MS, past), (3 * MS, True)):
                s = Scheduler(tasks, POLICIES["np-edf"], ahead=mode)
                s.release(0, 0, 0)
                s.release(1, 0, 0)
                assert s.schedule(0) is not None
                d = s.schedule_ahead(now, 8 * MS)
                assert (d is not None) == decided, (c_deadline, mode, now)
                assert d is None or d.job == "b#0"


@pytest.mark.parametrize("policy", ["np-edf", "np-fp"])
def test_a_release_that_cannot_be_picked_does_not_hold_the_decision_back(policy: str) -> None:
    """a#0 runs 0-4 ms, b#0 is released at 0.5 ms (deadline 10.5 ms, priority 1). c's first
    job comes at 2 ms, before a can end, but it can never rank before b#0 (deadline 2 + 50
    ms; priority 2): b#0 is decided at 0.5 ms, and c#0, released in between, is in its ready
    set at 4 ms. With c due earlier (deadline 2 + 5 ms; priority 0) the decision waits for
    c#0, and picks it."""
    for c_deadline, c_prio, chained_at, first in ((50, 2, MS // 2, "b#0"), (5, 0, 2 * MS, "c#0")):
        scenario = make_scenario([
            {"name": "a", "period_ms": 100, "deadline_ms": 90, "wcet_ms": 4, "priority": 3},
            {"name": "b", "period_ms": 100, "deadline_ms": 10, "wcet_ms": 1, "priority": 1,
             "offset_ms": 0.5},
            {"name": "c", "period_ms": 100, "deadline_ms": c_deadline, "wcet_ms": 1,
             "offset_ms": 2, "priority": c_prio},
        ], policy=policy, duration_ms=20)  # fmt: skip
        for mode in (AheadMode.SPORADIC, AheadMode.PLANNED):
            records, jobs, _, _ = run_mode(scenario, FakeEngine(), mode)
            check_run(records, jobs, slots=1)
            d = [r for r in records if r["kind"] == "dispatch"]
            assert [r["job"] for r in d][:2] == ["a#0", first]
            assert d[1]["t_ns"] - d[1]["decided_ahead_ns"] == chained_at
            assert {e["job"] for e in d[1]["rationale"]["ready"]} == {"b#0", "c#0"}
            assert not [r for r in records if r["kind"] == "assumption"]


@pytest.mark.parametrize("policy", ["np-edf", "lp-edf"])
def test_a_job_failing_at_launch_passes_its_slot_to_the_one_chained_behind_it(
    policy: str,
) -> None:
    """d#0's launch fails at once; c#0, decided ahead behind it in that same instant, starts
    at once: the slot passes to it, and every later decision is taken ahead as usual."""
    from aegis_exec.testing import faults

    tasks = [dict(t) for t in BACKLOG]
    if policy == "lp-edf":
        for t in tasks:
            w = t.pop("wcet_ms")
            t["kernels_ms"] = [w / 2, w / 2]
    scenario = make_scenario(tasks, policy=policy, duration_ms=50)
    for at in ("launch", "end"):
        eng = ExecEngine("mock", clock=VirtualClock(), wrap=faults({"d#0": "boom"}, at))
        records, jobs, sched, _ = run_mode(scenario, eng, AheadMode.PLANNED)
        check_run(records, jobs, slots=1)
        by_id = {j.id: j.status for j in jobs}
        assert by_id.pop("d#0") is JobStatus.FAILED
        assert set(by_id.values()) == {JobStatus.COMPLETED}
        assert sched.decided_ahead >= 2
        assert [r["job"] for r in records if r["kind"] == "fault"] == ["d#0"]


def test_a_chained_lp_edf_job_that_reaches_a_boundary_in_its_effect_step_is_listed_once() -> None:
    """A host that sees a#0's end and b#0's first chunk's end in one instant (b chained behind
    a): b's dispatch record lists it once, with c#0 released in between behind it."""
    from aegis_core.run.events import Completion, Release

    tasks = make_scenario([
        {"name": "a", "period_ms": 100, "deadline_ms": 50, "wcet_ms": 4},
        {"name": "b", "period_ms": 100, "deadline_ms": 60, "kernels_ms": [1, 1]},
        {"name": "c", "period_ms": 100, "deadline_ms": 90, "wcet_ms": 1, "offset_ms": 2},
    ], policy="lp-edf").tasks  # fmt: skip
    s = Scheduler(tasks, POLICIES["lp-edf"], ahead=AheadMode.PLANNED)
    s.step([Release(0, 0, 0), Release(0, 1, 0)], 0)
    assert s.schedule(0) is not None
    d = s.schedule_ahead(0, 2 * MS)
    assert d is not None and (d.job, d.chunk, d.after) == ("b#0", 0, 0)
    s.drain()
    s.step([Release(2 * MS, 2, 0)], 2 * MS)
    s.step([Completion(4 * MS, 0), Completion(5 * MS, 1, 4 * MS)], 5 * MS)
    got = [(r.t_ns, r.job, [e.job for e in r.ready]) for r in s.drain()
           if isinstance(r, DispatchRecord)]  # fmt: skip
    assert got == [(4 * MS, "b#0", ["b#0", "c#0"])]


def test_a_deadline_passed_unseen_before_the_effect_is_missed_waiting_before_it() -> None:
    """A late host sees a#0's end (4 ms) only at 4.6 ms, with c#0's release (4.5 ms); b#0's
    deadline (3.5 ms) passed while it waited: its miss (state ready) comes before its
    dispatch at 4 ms, and c#0's release after it; so too when b#0 also ended by then."""
    from aegis_core.record.schema import MissRecord, ReleaseRecord
    from aegis_core.run.events import Completion, Release

    tasks = make_scenario([
        {"name": "a", "period_ms": 100, "deadline_ms": 50, "wcet_ms": 4},
        {"name": "b", "period_ms": 100, "deadline_ms": 3, "wcet_ms": 1, "offset_ms": 0.5},
        {"name": "c", "period_ms": 100, "deadline_ms": 90, "wcet_ms": 1, "offset_ms": 4.5},
    ]).tasks  # fmt: skip
    for b_ended in (False, True):
        s = Scheduler(tasks, POLICIES["np-edf"], ahead=AheadMode.PLANNED)
        s.step([Release(0, 0, 0)], 0)
        assert s.schedule(0) is not None
        s.step([Release(MS // 2, 1, 0)], MS // 2)
        assert s.schedule_ahead(MS // 2, 4_500_000) is not None
        s.drain()
        ends = [Completion(4 * MS, 0)] + ([Completion(4_400_000, 1, 4 * MS)] if b_ended else [])
        s.step([*ends, Release(4_500_000, 2, 0)], 4_600_000)
        got = [(type(r).__name__, r.job, getattr(r, "state", "")) for r in s.drain()
               if isinstance(r, MissRecord | DispatchRecord | ReleaseRecord)]  # fmt: skip
        want = [("MissRecord", "b#0", "ready"), ("DispatchRecord", "b#0", ""),
                ("ReleaseRecord", "c#0", "")]  # fmt: skip
        assert got == want, b_ended


def test_a_release_before_the_effect_handed_over_after_the_chained_job_s_end_comes_first() -> None:
    """A late host sees, at 5.1 ms, a#0's end (4 ms), b#0's end (5 ms; chained behind a) and
    c#0's release (3.9 ms; it ranks after b#0), ends first: c's release record comes before
    b's dispatch, which lists it, and b's end after both (explain --verify replays this)."""
    from aegis_core.record.replay import Replay
    from aegis_core.record.schema import CompleteRecord, ReleaseRecord
    from aegis_core.run.events import Completion, Release

    tasks = make_scenario([
        {"name": "a", "period_ms": 100, "deadline_ms": 50, "wcet_ms": 4},
        {"name": "b", "period_ms": 100, "deadline_ms": 60, "wcet_ms": 1},
        {"name": "c", "period_ms": 100, "deadline_ms": 90, "wcet_ms": 1, "offset_ms": 3.9},
    ]).tasks  # fmt: skip
    s = Scheduler(tasks, POLICIES["np-edf"], ahead=AheadMode.PLANNED)
    s.step([Release(0, 0, 0), Release(0, 1, 0)], 0)
    assert s.schedule(0) is not None
    assert s.schedule_ahead(0, 3_900_000) is not None  # c cannot rank before b
    head = s.drain()
    s.step([Completion(4 * MS, 0), Completion(5 * MS, 1, 4 * MS), Release(3_900_000, 2, 0)],
           5_100_000)  # fmt: skip
    step = s.drain()
    got = [(type(r).__name__, r.job) for r in step
           if isinstance(r, CompleteRecord | ReleaseRecord | DispatchRecord)]  # fmt: skip
    assert got == [("CompleteRecord", "a#0"), ("ReleaseRecord", "c#0"), ("DispatchRecord", "b#0"),
                   ("CompleteRecord", "b#0")]  # fmt: skip
    rp = Replay()
    for r in [*head, *step]:
        if isinstance(r, DispatchRecord):
            assert {e.job for e in r.ready} == set(rp.ready), r.job
        rp.apply(r)
