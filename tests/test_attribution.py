"""Every exception attributed: a job above its bound is explained by an overrun or a broken
assumption in its busy window, or it is an analysis bug (aegis_core.record.attribution)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import make_scenario

from aegis_core.analysis.admission import admit
from aegis_core.model.overheads import Overhead, Overheads
from aegis_core.model.scenario import Scenario, replace_scenario
from aegis_core.model.status import JobStatus
from aegis_core.record.attribution import (
    HOST,
    MAX_LISTED,
    OVERRUN,
    Attribution,
    Cause,
    RunJob,
    Stretches,
    attribute,
    attribute_trace,
    busy_period,
    cause_counts,
    trace_jobs,
)
from aegis_core.record.schema import admission_records
from aegis_core.record.sinks import MemoryTrace
from aegis_core.run.events import Assumption, Completion, EngineEvent, Release
from aegis_core.run.scheduler import Job, Scheduler
from aegis_core.tools import perfetto
from aegis_core.tools.explain import explain_job, verify
from aegis_core.tools.results import task_summaries

MS = 1_000_000
BOUNDS = {"a": 5 * MS, "b": 8 * MS}


def rj(name: str, release: float, start: float, end: float, deadline: float, **kw: Any) -> RunJob:
    """A finished job of task ``name[0]`` (times in ms)."""
    r, s, e, d = (int(x * MS) for x in (release, start, end, deadline))
    return RunJob(name, name[0], r, d, s, e, e > d, kw.pop("lag", 0), **kw)


# b#0 waits for a#0 and ends 9 ms after its release: above its 8 ms bound, before its deadline
A0, B0 = rj("a#0", 0, 0, 4, 10), rj("b#0", 1, 4, 10, 12)


def test_an_exceedance_with_nothing_in_its_window_is_unattributed() -> None:
    (a,) = attribute([A0, B0], BOUNDS)
    assert a == Attribution("b#0", "b", 9 * MS, 8 * MS, False, (0, 10 * MS), ())
    assert a.exceeded and not a.attributed
    assert str(a) == (
        "unattributed: response 9.000 ms > bound 8.000 ms with no overrun or broken "
        "assumption in its busy window — an analysis bug, please report"
    )


def test_a_broken_assumption_in_the_window_attributes_it() -> None:
    (a,) = attribute([A0._replace(broken=("launch",)), B0], BOUNDS)
    assert a.causes == (Cause("a#0", "launch"),) and a.attributed
    # its own broken bound counts too, once per record
    (a,) = attribute([A0, B0._replace(broken=("release-lag", "release-lag"))], BOUNDS)
    assert a.causes == (Cause("b#0", "release-lag"),) * 2


def test_an_overrun_of_another_job_in_the_window_attributes_it() -> None:
    (a,) = attribute([A0._replace(overrun=True), B0], BOUNDS)
    assert a.causes == (Cause("a#0", OVERRUN),)
    # the overran job ids may come from a trace instead of the flags
    assert attribute([A0, B0], BOUNDS, overran={"a#0"})[0].causes == (Cause("a#0", OVERRUN),)
    assert attribute([A0._replace(overrun=True), B0], BOUNDS, overran=())[0].causes == ()


def test_causes_outside_the_window_explain_nothing() -> None:
    early = rj("z#0", 0, 0, 2, 30, broken=("completion",), overrun=True)  # its own stretch
    a0, b0 = rj("a#0", 3, 3, 7, 13), rj("b#0", 4, 7, 13, 15)  # b#0: 9 ms > 8 ms
    later = rj("z#1", 13, 13, 14, 30, broken=("launch",))  # released at b#0's end
    waiter = rj("c#0", 5, 13, 15, 40, broken=("release-lag",))  # ran only after b#0 ended
    jobs = [early, a0, b0, later, waiter]
    assert busy_period(b0, jobs) == (3 * MS, 13 * MS)
    (a,) = attribute(jobs, BOUNDS)  # z and c have no bound: not accounted for themselves
    assert (a.job, a.window, a.causes) == ("b#0", (3 * MS, 13 * MS), ())


def test_what_is_accounted_for() -> None:
    late = rj("a#0", 0, 0, 11, 10)  # a miss (and 11 ms > 5 ms)
    fine = rj("b#0", 1, 11, 12, 20)  # 11 ms > 8 ms: exceeded, no miss
    inside = rj("b#1", 30, 30, 38, 50)  # exactly its bound: fine
    got = attribute([late, fine, inside], BOUNDS)
    assert [(a.job, a.missed, a.exceeded) for a in got] == [("a#0", True, True),
                                                             ("b#0", False, True)]  # fmt: skip
    # a task without a bound promised nothing: only misses count, and only without bounds
    assert [a.job for a in attribute([late, fine, inside], {"b": 8 * MS})] == ["b#0"]
    assert [a.job for a in attribute([late, fine, inside])] == ["a#0"]


def test_an_ideal_host_run_blames_the_host_time_it_lost() -> None:
    # the device idle 2 ms (4 -> 6) while b#0 waited: 2 ms lost >= its 1 ms excess
    gap = [A0, rj("b#0", 1, 6, 10, 12)]
    (a,) = attribute(gap, BOUNDS, ideal_host=True)
    assert a.causes == (Cause("b#0", HOST, 2 * MS, 0),)
    assert str(a.causes[0]).startswith("the host lost 2.000 ms in the busy window")
    assert attribute(gap, BOUNDS)[0].causes == ()  # with overheads charged: records only
    # lost less than the excess and than the stall threshold: the analysis's
    short = [A0, rj("b#0", 1, 4.5, 11, 12)]
    assert attribute(short, BOUNDS, ideal_host=True)[0].causes == ()
    assert attribute(short, BOUNDS, ideal_host=True, stall_ns=MS // 2)[0].attributed
    # the recorded release lag counts as lost host time
    lagged = [A0, B0._replace(lag_ns=MS)]
    assert attribute(lagged, BOUNDS, ideal_host=True)[0].causes == (Cause("b#0", HOST, MS, 0),)


def test_a_crowded_window_lists_its_first_causes_and_every_kind() -> None:
    over = [rj(f"z#{k}", k, 2 * k, 2 * k + 2, 100, overrun=True) for k in range(30)]  # no bound
    last = rj("b#0", 30, 60, 70, 100, broken=("launch",))  # 40 ms > 8 ms
    (a,) = attribute([*over, last], BOUNDS)
    assert a.causes == (*(Cause(f"z#{k}", OVERRUN) for k in range(MAX_LISTED)),
                        Cause("b#0", "launch"))  # fmt: skip
    assert cause_counts([a]) == {OVERRUN: 1, "launch": 1}


def test_cause_texts() -> None:
    assert str(Cause("cam#12", "release-lag", 3_100_000, 800_000)) == (
        "release-lag of cam#12 took 3.100 ms > bound 0.800 ms"
    )
    assert str(Cause("cam#12", "launch")) == "launch of cam#12 broke its bound"
    assert str(Cause("cam#3", OVERRUN, 5 * MS, 4 * MS)) == (
        "cam#3 overran its WCET: ran 5.000 ms > budget 4.000 ms"
    )
    causes = (Cause("a#0", OVERRUN), Cause("a#0", "launch"), Cause("b#0", "launch"))
    two = Attribution("b#0", "b", 9 * MS, 8 * MS, False, (0, 10 * MS), causes)
    assert cause_counts([two, two._replace(causes=(Cause("x", "launch"),))]) == {
        OVERRUN: 1, "launch": 2
    }  # fmt: skip


def _reference_busy_start(job: RunJob, jobs: list[RunJob]) -> int:
    """The stretch start by its definition: the earliest b <= release such that at every
    instant of [b, release] some job released by then had not ended."""
    b = job.release_ns
    while True:
        earlier = [j for j in jobs if j.release_ns < b and (j.end_ns or j.release_ns) >= b]
        if not earlier:
            return b
        b = min(j.release_ns for j in earlier)


def test_busy_period_matches_its_definition_on_random_job_sets() -> None:
    rng = random.Random(13)
    for _ in range(300):
        jobs = []
        for k in range(rng.randint(1, 12)):
            r = rng.randint(0, 40)
            s = r + rng.randint(0, 5)
            jobs.append(RunJob(f"t#{k}", "t", r, r + 50, s, s + rng.randint(0, 6), False, 0))
        for j in jobs:
            assert busy_period(j, jobs)[0] == _reference_busy_start(j, jobs), jobs


def _reference(jobs: list[RunJob], bounds: dict[str, int], stall: int) -> list[Any]:
    """Attribution by its definition, quadratic: per job to account for, its window's causes
    (sorted) and the host time lost (the device idle while a job was pending, plus lag)."""
    out = []
    for job in sorted(jobs, key=lambda j: j.release_ns):
        bound, response = bounds[job.task], job.end_ns - job.release_ns  # type: ignore[operator]
        if not (job.missed or response > bound):
            continue
        b, e = _reference_busy_start(job, jobs), job.end_ns
        assert e is not None
        window = [j for j in jobs if b <= j.release_ns < e or j is job]
        causes = sorted((j.id, w) for j in window if j is job or j.start_ns < e  # type: ignore[operator]
                        for w in ([OVERRUN] * j.overrun + list(j.broken)))  # fmt: skip
        busy = set()
        for j in jobs:
            busy |= set(range(max(j.start_ns, b), min(j.end_ns, e)))  # type: ignore[type-var]
        first = min((j for j in jobs if j.release_ns == b), key=lambda j: j.start_ns or 0)
        before = [j for j in jobs if j.end_ns is not None and j.end_ns <= b]
        if before and first.start_ns is not None and first.start_ns > b:
            t_last = max(j.end_ns for j in before)  # type: ignore[type-var]
            causes += [(j.id, w) for j in before if j.end_ns == t_last
                       for w in j.broken if w == "completion"]  # fmt: skip
        causes.sort()
        lost = (e - b) - len(busy) + sum(j.lag_ns for j in window)
        if lost > 0 and (lost >= stall or lost >= response - bound):
            causes.append((job.id, HOST))
        out.append((job.id, sorted(causes)))
    return out


def test_attribution_matches_its_definition_on_random_runs() -> None:
    rng = random.Random(7)
    kinds = ("launch", "release-lag", "completion")
    seen: dict[str, int] = {}
    for _ in range(300):
        jobs, t = [], 0
        for k in range(rng.randint(1, 14)):
            r = rng.randint(0, 40)
            t = max(t, r) + rng.choice((0, 0, 1, 3))  # one device: runs never overlap
            s, t = t, t + rng.randint(1, 6)
            jobs.append(RunJob(f"t#{k}", "t", r, r + rng.randint(3, 12), s, t, t > r + 12,
                               rng.choice((0, 0, 1)), rng.random() < 0.15,
                               tuple(rng.sample(kinds, rng.choice((0, 0, 0, 1))))))  # fmt: skip
        jobs = [j._replace(missed=j.end_ns > j.deadline_ns) for j in jobs]  # type: ignore[operator]
        bounds = {"t": rng.randint(2, 9)}
        got = attribute(jobs, bounds, ideal_host=True, stall_ns=4)
        assert [(a.job, sorted((c.job, c.what) for c in a.causes)) for a in got] == _reference(
            jobs, bounds, 4
        ), jobs
        for a in got:
            for what in {c.what for c in a.causes} or {"unattributed"}:
                seen[what] = seen.get(what, 0) + 1
    assert set(seen) == {*kinds, OVERRUN, HOST, "unattributed"}, seen  # every case exercised


def test_stretch_by_stretch_attribution_equals_the_whole_run() -> None:
    """A run's jobs attributed as they come (one pending stretch kept) give exactly the
    whole-run attribution: the same jobs, windows and causes."""
    rng = random.Random(11)
    kinds = ("launch", "release-lag", "completion")
    stretches = 0
    for _ in range(400):
        jobs, t = [], 0
        for k in range(rng.randint(1, 30)):
            r = rng.randint(0, 120)
            t = max(t, r) + rng.choice((0, 0, 1, 3))
            s, t = t, t + rng.randint(0, 6)
            skipped = rng.random() < 0.05  # never ran: no start nor end
            cut = not skipped and rng.random() < 0.03  # a stopped run's: started, never ended
            jobs.append(RunJob(f"{rng.choice('tu')}#{k}", "", r, r + rng.randint(3, 12),
                               None if skipped else s, None if skipped or cut else t, cut,
                               rng.choice((0, 0, 1)), rng.random() < 0.15,
                               tuple(rng.sample(kinds, rng.choice((0, 0, 0, 1))))))  # fmt: skip
        jobs = [j._replace(task=j.id[0], missed=j.missed or (j.end_ns is not None
                                                               and j.end_ns > j.deadline_ns))
                for j in jobs]  # fmt: skip
        jobs.sort(key=lambda j: j.release_ns)
        bounds = {"t": rng.randint(2, 9), "u": rng.randint(2, 9)}
        ideal = rng.random() < 0.5
        whole = attribute(jobs, bounds, ideal_host=ideal, stall_ns=4)
        feed = Stretches(bounds, ideal_host=ideal, stall_ns=4)
        for j in jobs:
            feed.add(j)
        got = feed.close()
        assert got == whole, jobs
        assert not feed.rejected_ran
        stretches += len({a.window[0] for a in got})
    assert stretches > 300  # many runs had several stretches with something to account for


# ----------------------------------------------------------------- a run's jobs and its trace

OVERHEADS = Overheads.of_bounds(
    {Overhead.RELEASE_LAG: MS // 2, Overhead.DECISION: MS // 10, Overhead.LAUNCH: MS // 5,
     Overhead.COMPLETION: MS // 5}
)  # fmt: skip


def _scenario() -> Scenario:
    s = make_scenario(
        [{"name": "a", "period_ms": 20, "deadline_ms": 10, "wcet_ms": 4},
         {"name": "b", "period_ms": 20, "deadline_ms": 12, "wcet_ms": 4, "offset_ms": 1}],
        duration_ms=40,
    )  # fmt: skip
    return replace_scenario(s, overheads=OVERHEADS)


def _drive() -> tuple[Scenario, list[dict[str, Any]], list[Job]]:
    """A hand-driven executor run: b#0's release is handed over 2 ms late (a release-lag
    assumption, written by the scheduler) and its launch takes 5 ms (the engine's assumption
    event); b#1's launch is as slow, but nothing reports it. Both end 12 ms after release,
    above their 9.5 ms bound (0.5 ms of it the release lag, as jitter)."""
    scenario = _scenario()
    adm = admit(scenario)
    assert [v.response_bound_ns for v in adm.tasks] == [9_500_000, 9_500_000]
    sch = Scheduler(scenario.tasks, scenario.policy, lag_bound_ns=OVERHEADS.release_lag_ns)
    script: list[tuple[int, list[EngineEvent]]] = [
        (0, [Release(0, 0, 0)]),
        (3 * MS, [Release(1 * MS, 1, 0)]),  # 2 ms late
        (4 * MS, [Completion(4 * MS, 0, 0)]),
        (13 * MS, [Assumption(13 * MS, 1, "launch", 5 * MS, OVERHEADS.bound(Overhead.LAUNCH)),
                   Completion(13 * MS, 1, 9 * MS)]),
        (20 * MS, [Release(20 * MS, 0, 1)]),
        (21 * MS, [Release(21 * MS, 1, 1)]),
        (24 * MS, [Completion(24 * MS, 2, 20 * MS)]),
        (33 * MS, [Completion(33 * MS, 3, 29 * MS)]),
    ]  # fmt: skip
    trace = MemoryTrace()
    trace.write(admission_records(adm, scenario, enforced=True))
    for now, events in script:
        sch.step(events, now)
        if not any(j.status is JobStatus.RUNNING for j in sch.jobs):  # one slot
            sch.schedule(now)
        trace.write(sch.drain())
    trace.close()
    return scenario, trace.records(), sch.jobs


def test_the_run_and_its_trace_attribute_alike() -> None:
    _, records, jobs = _drive()
    assert [j.broken for j in jobs] == [(), ("release-lag", "launch"), (), ()]
    from_jobs = attribute([RunJob.of(j) for j in jobs], {"a": 9_500_000, "b": 9_500_000})
    from_trace = attribute_trace(records)
    assert [(a.job, a.response_ns, a.window) for a in from_jobs] == [
        ("b#0", 12 * MS, (0, 13 * MS)), ("b#1", 12 * MS, (20 * MS, 33 * MS))
    ]  # fmt: skip
    assert [a._replace(causes=()) for a in from_trace] == [a._replace(causes=()) for a in from_jobs]
    assert [[c.what for c in a.causes] for a in from_jobs] == [["release-lag", "launch"], []]
    # the trace carries the numbers
    assert from_trace[0].causes == (
        Cause("b#0", "release-lag", 2 * MS, MS // 2), Cause("b#0", "launch", 5 * MS, MS // 5)
    )  # fmt: skip
    assert from_trace[1].causes == () and not from_trace[1].attributed
    t = trace_jobs(records)
    assert t.bounds == {"a": 9_500_000, "b": 9_500_000} and t.ideal_host is False
    assert [(j.id, j.start_ns, j.end_ns) for j in t.jobs] == [
        (j.id, j.start_ns, j.end_ns) for j in jobs
    ]


def test_the_summary_counts_exceedances_and_their_attribution() -> None:
    scenario, _, jobs = _drive()
    a, b = task_summaries(scenario, jobs, admit(scenario))
    pick = ("exceeded", "unattributed", "causes", "assumptions")
    assert {k: a[k] for k in pick} == {"exceeded": 0, "unattributed": 0, "causes": {},
                                      "assumptions": {}}  # fmt: skip
    assert {k: b[k] for k in pick} == {
        "exceeded": 2, "unattributed": 1, "causes": {"release-lag": 1, "launch": 1},
        "assumptions": {"release-lag": 1, "launch": 1},
    }  # fmt: skip


def test_explain_names_the_broken_assumption_and_the_analysis_bug() -> None:
    _, records, _ = _drive()
    story = explain_job(records, "b#0")
    assert "broke an assumption at 3.000 ms: release-lag took 2.000 ms > bound 0.500 ms" in story
    assert story.endswith(
        "response 12.000 ms > bound 9.500 ms; in its busy window (0.000 ms to 13.000 ms):\n"
        "  release-lag of b#0 took 2.000 ms > bound 0.500 ms\n"
        "  launch of b#0 took 5.000 ms > bound 0.200 ms"
    )
    assert explain_job(records, "b#1").endswith(
        "unattributed: response 12.000 ms > bound 9.500 ms with no overrun or broken "
        "assumption in its busy window — an analysis bug, please report"
    )
    # a job within its bound ends with how it ended: nothing to attribute
    assert explain_job(records, "a#0").endswith("response 4.000 ms, met its deadline")


def test_verify_accepts_assumptions_and_re_derives_the_charged_admission() -> None:
    _, records, _ = _drive()
    admits = [r for r in records if r["kind"] == "admit"]
    assert admits[0]["rationale"]["charged_wcet_ns"] == 4_500_000
    assert admits[0]["rationale"]["overheads_ns"]["launch"] == MS // 5
    v = verify(records)
    assert v.ok, v.mismatches
    assert (v.dispatches, v.admissions) == (4, 2)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"job": "b#7"}, "names a job that was not released"),
        ({"task": "a"}, "names task 'a', the job's release says 'b'"),
        ({"what": "coffee"}, "unknown overhead 'coffee'"),
        ({"observed_ns": 100}, "observed 0.000 ms is within the bound 0.200 ms"),
    ],
)
def test_verify_catches_a_bad_assumption_record(change: dict[str, Any], why: str) -> None:
    _, records, _ = _drive()
    i = next(i for i, r in enumerate(records) if r.get("what") == "launch")
    records[i] = {**records[i], **change}
    v = verify(records)
    assert [str(m) for m in v.mismatches] == [
        f"record {records[i]['rec']} (assumption of {records[i]['job']}): {why}"
    ]


def test_verify_catches_a_tampered_charge() -> None:
    _, records, _ = _drive()
    records[0] = {**records[0], "rationale": {**records[0]["rationale"],
                                              "charged_wcet_ns": 4_000_000}}  # fmt: skip
    v = verify(records)
    assert not v.ok and "charged_wcet_ns: recorded 4000000, re-derived 4500000" in str(
        v.mismatches[0]
    )


def test_perfetto_shows_assumptions_on_the_task_track() -> None:
    _, records, _ = _drive()
    events = perfetto.export(records)["traceEvents"]
    names = [e for e in events if e["ph"] == "M" and e["name"] == "thread_name"]
    tids = {e["args"]["name"]: e["tid"] for e in names if e["pid"] == perfetto.TASKS}
    got = [e for e in events if e.get("cat") == "assumption"]
    assert [(e["name"], e["tid"], e["ts"], e["args"]["observed_ns"]) for e in got] == [
        ("assumption b#0: release-lag", tids["b"], 3000.0005, 2 * MS),
        ("assumption b#0: launch", tids["b"], 13000.0005, 5 * MS),
    ]


def test_a_late_seen_completion_before_the_window_is_a_cause() -> None:
    """The slot is held until the host sees a completion: a job released after the device
    end of a#0 but before the host saw it is delayed by a#0's broken completion bound."""
    a0 = RunJob("a#0", "a", 0, 100, 0, 10, False, 0, False, ("completion",))
    b0 = RunJob("b#0", "b", 12, 17, 16, 20, True, 0, False, ())
    (got,) = attribute([a0, b0], {"a": 50, "b": 5})
    assert got.attributed and [(c.job, c.what) for c in got.causes] == [("a#0", "completion")]
    clean = a0._replace(broken=())
    assert not attribute([clean, b0], {"a": 50, "b": 5})[0].attributed


def test_bounds_promise_nothing_when_a_rejected_task_ran(tmp_path: Path) -> None:
    """``--no-admission`` runs the rejected tasks too: the admitted tasks' bounds assume they
    never run, so nothing is counted against them."""
    from aegis_core.tools.cli import main

    out = tmp_path / "r"
    path = Path(__file__).parent.parent / "scenarios" / "admission.yaml"
    assert main(["sim", str(path), "--no-admission", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["unattributed"] == 0
    assert all(t["exceeded"] is None for t in s["tasks"])
