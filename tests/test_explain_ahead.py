"""``aegis explain --verify`` on decisions taken ahead (docs/THEORY.md §ahead, docs/CONTRACTS.md
§trace): real runs verify with many of them, a broken one verifies with its ``dispatch-ahead``
assumption record and fails without it, and every forged ahead decision is a mismatch saying
what is wrong."""

from __future__ import annotations

import copy
import io
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from conftest import make_scenario
from test_ahead import BACKLOG, overrun_plan, random_scenario

from aegis_core.analysis.admission import admit
from aegis_core.record.schema import admission_records
from aegis_core.record.sinks import MemoryTrace
from aegis_core.run.ahead import AHEAD_BROKEN, AheadMode
from aegis_core.run.loop import run
from aegis_core.run.plan import RunPlan
from aegis_core.run.scheduler import Scheduler
from aegis_core.run.testing import FakeEngine
from aegis_core.tools.cli import main
from aegis_core.tools.explain import Mismatch, explain_job, load, report, verify
from aegis_core.tools.runner import run_scenario
from aegis_exec.engine import ExecEngine
from aegis_exec.testing import VirtualClock
from aegis_sim import SimPyEngine

MS = 1_000_000
Records = list[dict[str, Any]]


def traced(scenario: Any, engine: Any, mode: AheadMode = AheadMode.PLANNED,
           plan: RunPlan | None = None) -> Records:  # fmt: skip
    """A run's trace as dicts, its admission records first (what ``--verify`` reads), as
    the runner makes it (rejected tasks do not run, lp-edf runs the chunks admission merged)."""
    verdicts = admit(scenario)
    plan = plan or RunPlan.build(scenario, admission=verdicts, dispatch_ahead=mode)
    trace = MemoryTrace()
    trace.write(admission_records(verdicts, scenario, enforced=True))
    run(plan, Scheduler.for_plan(plan), engine, sink=trace)
    return trace.records()


def ahead_of(records: Records) -> int:
    return sum(bool(r.get("decided_ahead_ns")) for r in records)


@pytest.mark.parametrize("engine", [FakeEngine, SimPyEngine], ids=["fake", "sim"])
@pytest.mark.parametrize("policy", ["np-edf", "np-fp", "lp-edf"])
def test_real_runs_with_many_ahead_decisions_verify(engine: Any, policy: str) -> None:
    dispatches = ahead = 0
    for seed in range(10):
        scenario = random_scenario(seed * 7 + len(policy), policy)
        for mode in (AheadMode.SPORADIC, AheadMode.PLANNED):
            records = traced(scenario, engine(), mode)
            v = verify(records)
            assert v.ok, (seed, mode, v.mismatches[:2])
            assert v.ahead == ahead_of(records) and v.ahead_broken == 0
            dispatches += v.dispatches
            ahead += v.ahead
    assert ahead > 0.1 * dispatches > 100  # the rule does apply, often


@pytest.mark.parametrize("policy", ["np-edf", "lp-edf"])
def test_the_mock_executor_on_a_virtual_clock_verifies(policy: str) -> None:
    ahead = 0
    for seed in range(3):
        records = traced(
            random_scenario(seed + 40, policy), ExecEngine("mock", clock=VirtualClock())
        )
        v = verify(records)
        assert v.ok, (seed, v.mismatches[:2])
        assert v.ahead == ahead_of(records)
        ahead += v.ahead
    assert ahead > 0


def test_the_verified_line_counts_the_decisions_taken_ahead(tmp_path: Path) -> None:
    run_scenario(make_scenario(BACKLOG, duration_ms=250), "sim", out_dir=tmp_path, perfetto=False)
    records = load(tmp_path)
    n = ahead_of(records)
    assert n > 0
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["explain", str(tmp_path), "--verify"]) == 0
    assert out.getvalue() == (f"verified: all {sum(r['kind'] == 'dispatch' for r in records)} "
                              f"dispatches and 4 admission verdicts re-derive from the trace, "
                              f"{n} decided ahead\n")  # fmt: skip


def test_a_story_says_how_long_ahead_and_behind_which_job() -> None:
    records = traced(make_scenario(BACKLOG, duration_ms=50), FakeEngine())
    assert ("dispatched at 4.000 ms by np-edf: earliest absolute deadline, then release, then "
            "seq: key [70000000, 0, 2], ahead of b#0 [80000000, 0, 1], a#0 [90000000, 0, 0]; "
            "decided 4.000 ms ahead, while d#0 ran; chained behind it"
            ) in explain_job(records, "c#0").splitlines()  # fmt: skip


def test_an_lp_edf_job_s_next_chunk_chained_behind_its_own() -> None:
    scenario = make_scenario([
        {"name": "a", "period_ms": 100, "deadline_ms": 50, "kernels_ms": [1, 1, 1]},
        {"name": "b", "period_ms": 100, "deadline_ms": 2.5, "wcet_ms": 1, "offset_ms": 10},
    ], policy="lp-edf", duration_ms=20)  # fmt: skip
    records = traced(scenario, FakeEngine())
    assert verify(records).ahead == 2
    told = [line.split("; ", 1)[1] for line in explain_job(records, "a#0").splitlines()
            if line.startswith("dispatched (chunk")]  # fmt: skip
    assert told == ["decided 1.000 ms ahead, while its chunk 0 ran; chained behind it",
                    "decided 1.000 ms ahead, while its chunk 1 ran; chained behind it"]  # fmt: skip


# --------------------------------------------------------------- a broken ahead decision


def overrun_run() -> Records:
    """tests/test_ahead.py's case: b#0 is chained behind a#0 (4 ms), decided at 0; a#0
    overruns to 6 ms and c#0 (an earlier deadline) is released at 5 ms, in between: an
    ``assumption`` record (``dispatch-ahead``) for b#0, observed 6 ms."""
    scenario, plan = overrun_plan()
    return unnumbered(traced(scenario, FakeEngine(), plan=plan))


def unnumbered(records: Records) -> Records:
    """The records without their numbers (``rec`` -1), so that a record added or removed
    shifts none and only the check under test fires."""
    return [{**r, "rec": -1} for r in records]


def first(records: Records, kind: str, job: str) -> int:
    return next(i for i, r in enumerate(records) if r["kind"] == kind and r.get("job") == job)


def the_mismatch(records: Records) -> Mismatch:
    ms = verify(records).mismatches
    assert len(ms) == 1, ms
    return ms[0]


def test_a_broken_ahead_decision_verifies_with_its_assumption_record_and_fails_without() -> None:
    rs = overrun_run()
    v = verify(rs)
    assert v.ok, v.mismatches
    assert (v.dispatches, v.ahead, v.ahead_broken) == (3, 2, 1)
    assert report(rs)[1].endswith(
        "all 3 dispatches and 3 admission verdicts re-derive from the "
        "trace, 2 decided ahead (1 of them broken by a release before "
        f"the effect, each with its {AHEAD_BROKEN!r} assumption record)"
    )
    story = explain_job(rs, "c#0").splitlines()
    assert ("waited at 6.000 ms: b#0 went first, decided 6.000 ms ahead, before this job's "
            "release (the job it was chained behind ended late)") in story  # fmt: skip
    assert any(line.startswith("dispatched at 6.000 ms") and "while a#0 ran; chained behind it; "
               "c#0 [15000000, 5000000, 2] released after the decision" in line
               for line in explain_job(rs, "b#0").splitlines())  # fmt: skip
    i = first(rs, "assumption", "b#0")
    m = the_mismatch(rs[:i] + rs[i + 1 :])
    assert m.what == "dispatch of b#0"
    assert m.message == ("decided 6.000 ms ahead, but c#0, ranked before it, was released at "
                         "5.000 ms, between the decision at 0.000 ms and its effect at 6.000 ms, "
                         f"and no {AHEAD_BROKEN!r} assumption record says so")  # fmt: skip


def test_the_assumption_record_must_state_the_decision_it_broke() -> None:
    rs = overrun_run()
    i = first(rs, "assumption", "b#0")
    told = copy.deepcopy(rs)
    told[i]["observed_ns"] = 5 * MS
    ms = verify(told).mismatches
    assert [m.what for m in ms] == ["dispatch of b#0", "assumption of b#0"]
    assert "but c#0, ranked before it, was released at 5.000 ms" in ms[0].message
    assert ms[1].message == "observed 5.000 ms, but its dispatch at 6.000 ms was decided " \
        "6.000 ms ahead"  # fmt: skip
    moved = copy.deepcopy(rs)
    moved[i]["t_ns"] += 1  # (still before the next record)
    ms = verify(moved).mismatches
    assert ms[-1].what == "assumption of b#0"
    assert ms[-1].message == "no dispatch of b#0 decided ahead took effect at 6.000001 ms"


def test_an_excused_decision_lets_only_the_interlopers_beat_it() -> None:
    """The assumption record excuses the jobs released between the decision and its effect
    (c#0, at 5 ms), not one that was waiting when the decision was taken."""
    from aegis_core.record.schema import Entry, decode_all
    from aegis_core.tools.explain import _Ahead

    typed = decode_all(overrun_run())
    ahead = _Ahead(typed)
    d = next(r for r in typed if r.kind == "dispatch" and r.job == "b#0")
    c = next(e for e in d.ready if e.job == "c#0")
    assert ahead.excused(d) and ahead.interlopers(d, [c])
    waiting = Entry("x#0", "x", 1, 0, 9, None)  # released at 0, before the decision
    assert not ahead.interlopers(d, [c, waiting])
    assert not ahead.interlopers(d._replace(decided_ahead_ns=0), [c])


# --------------------------------------------------------------------------- forged


STORY = [  # a#0 runs 0-4; b#0 (released at 1) is decided at 1: c#0 (at 2) ranks after it
    {"name": "a", "period_ms": 20, "wcet_ms": 4},
    {"name": "b", "period_ms": 20, "wcet_ms": 2, "deadline_ms": 8, "offset_ms": 1},
    {"name": "c", "period_ms": 20, "wcet_ms": 1, "deadline_ms": 15, "offset_ms": 2},
]


def story(policy: str = "np-edf") -> Records:
    """a#0 0-4 ms, b#0 4-6 ms (decided at its release, 1 ms: c#0, due at 2 ms, before a#0
    can end, has a later deadline, so it cannot be picked before b#0), c#0 6-7 ms (decided
    at 4 ms, while b#0 runs); a#1 at 20 ms, into an idle device."""
    records = traced(make_scenario(STORY, duration_ms=30, policy=policy), FakeEngine())
    return unnumbered(records)


def test_the_story_run_decides_ahead_where_the_forgeries_below_assume() -> None:
    rs = story()
    assert verify(rs).ok
    got = [(r["job"], r["t_ns"], r.get("decided_ahead_ns", 0)) for r in rs
           if r["kind"] == "dispatch"][:4]  # fmt: skip
    assert got == [("a#0", 0, 0), ("b#0", 4 * MS, 3 * MS), ("c#0", 6 * MS, 2 * MS),
                   ("a#1", 20 * MS, 0)]  # fmt: skip
    b = next(r for r in rs if r["kind"] == "dispatch" and r["job"] == "b#0")
    assert [e["job"] for e in b["rationale"]["ready"]] == ["b#0", "c#0"]  # released between


def forged(rs: Records, job: str, ahead_ns: int) -> Mismatch:
    out = copy.deepcopy(rs)
    out[first(out, "dispatch", job)]["decided_ahead_ns"] = ahead_ns
    m = the_mismatch(out)
    assert m.what == f"dispatch of {job}"
    return m


@pytest.mark.parametrize(("ahead", "why"), [
    (3 * MS + 1, "decided 3.000001 ms ahead, at 0.999999 ms"),
    (3 * MS + MS // 2, "decided 3.500 ms ahead, at 0.500 ms"),
])  # fmt: skip
def test_a_decision_moved_before_its_own_release_is_caught(ahead: int, why: str) -> None:
    m = forged(story(), "b#0", ahead)
    assert m.message == f"{why}, before its own release at 1.000 ms"


def test_a_decision_ahead_under_a_policy_that_never_decides_ahead() -> None:
    m = forged(story("fifo"), "b#0", MS)
    assert m.message == "decided 1.000 ms ahead, but fifo never decides ahead"


def test_a_decision_ahead_of_the_run_s_start() -> None:
    m = forged(story(), "b#0", 4 * MS + 1)
    assert m.message == "decided 4.000001 ms ahead of its effect at 4.000 ms: before the run began"


def test_a_decision_ahead_that_takes_effect_at_no_end() -> None:
    m = forged(story(), "a#1", MS)  # released at 20 ms into an idle device (c#0 ended at 7)
    assert m.message == ("decided 1.000 ms ahead, but no job ended at 20.000 ms just before it: "
                         "a decision taken ahead takes effect at the end of the job it was "
                         "chained behind")  # fmt: skip


def test_a_decision_ahead_taken_before_the_job_it_waits_for_ran() -> None:
    m = forged(story(), "c#0", 3 * MS)  # decided at 3 ms, yet chained behind b#0 (from 4 ms)
    assert m.message == ("decided 3.000 ms ahead, at 3.000 ms, before b#0 (which it was chained "
                         "behind) was dispatched at 4.000 ms")  # fmt: skip


def test_a_forged_dispatch_ahead_assumption_with_no_release_in_its_window() -> None:
    rs = story()
    i = first(rs, "dispatch", "b#0")
    d = rs[i]
    rs.insert(i + 1, {"rec": -1, "t_ns": d["t_ns"], "kind": "assumption", "seq": d["seq"],
                      "job": "b#0", "task": "b", "what": AHEAD_BROKEN, "observed_ns": 3 * MS,
                      "bound_ns": MS})  # fmt: skip
    m = the_mismatch(rs)  # (c#0 was released in between, but it ranks after b#0)
    assert m.what == "assumption of b#0"
    assert m.message == ("no job ranked before b#0 was released between the decision at 1.000 "
                         "ms and its effect at 4.000 ms: nothing broke it")  # fmt: skip
    rs[i + 1]["observed_ns"] = MS  # and within its bound
    assert "observed 1.000 ms, but its dispatch at 4.000 ms was decided 3.000 ms ahead" in \
        the_mismatch(rs).message  # fmt: skip


@pytest.mark.parametrize("mode", ["sample", "bound"])
def test_runs_replaying_host_overheads_verify(mode: str) -> None:
    """The simulator replaying host overheads hands releases over late (a lag): a job planned
    at the very instant of a decision taken ahead may be seen after it, and is then in the
    ready set at the effect (random np-edf, np-fp, lp-edf sets, overheads drawn below their
    bounds or at them)."""
    import dataclasses
    import random

    from test_overheads import US, random_set

    from aegis_core.model.overheads import Figure, Overhead, Overheads

    rng = random.Random(5)
    ahead = 0
    for n in range(30):
        policy = rng.choice(["np-edf", "np-fp", "lp-edf"])
        bounds = (300 * US, 120 * US, 60 * US, 80 * US)
        figs = {w: Figure(w, b, 40, samples_ns=tuple(rng.randint(0, b) for _ in range(40)))
                for w, b in zip(Overhead, bounds, strict=True)}  # fmt: skip
        sc = dataclasses.replace(
            make_scenario(random_set(rng, policy == "lp-edf"), duration_ms=300, seed=n,
                          policy=policy), overheads=Overheads(figs))  # fmt: skip
        plan = dataclasses.replace(RunPlan.build(sc, admission=admit(sc)), host_mode=mode)
        v = verify(traced(sc, SimPyEngine(), plan=plan))
        assert v.ok, (n, v.mismatches[:2])
        ahead += v.ahead
    assert ahead > 100
