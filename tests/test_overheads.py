"""Host overheads: the file, the accounting in the analysis, the simulator's replay and the
executor's monitor (docs/THEORY.md §overheads)."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import MS, make_scenario

from aegis_core.analysis.admission import admit
from aegis_core.model.errors import InputError, ScenarioError
from aegis_core.model.overheads import SCHEMA, Figure, Overhead, Overheads, load_overheads, thin
from aegis_core.model.scenario import load_scenario
from aegis_core.model.status import JobStatus
from aegis_core.record.schema import AssumptionRecord, admission_records, scenario_from_records
from aegis_core.run.host import HostModel
from aegis_core.run.loop import run
from aegis_core.run.plan import RunPlan
from aegis_core.run.scheduler import Scheduler
from aegis_core.run.testing import unexplained_misses
from aegis_core.tools.cli import main
from aegis_exec.engine import ExecEngine
from aegis_exec.testing import LateClock, SlowLaunch, VirtualClock
from aegis_sim import SimPyEngine

US = 1_000


def oh(lag: int = 0, decision: int = 0, launch: int = 0, completion: int = 0) -> Overheads:
    return Overheads.of_bounds(
        {Overhead.RELEASE_LAG: lag, Overhead.DECISION: decision, Overhead.LAUNCH: launch,
         Overhead.COMPLETION: completion}, backend="mock",
    )  # fmt: skip


# ------------------------------------------------------------------------------- the file


def sampled() -> Overheads:
    figs = {
        w: Figure(w, 1000 * (i + 1), 50, "max", True, i != 2, ("w",) if i == 2 else (),
                  {"p50": 10.0}, tuple(range(1, 51)))
        for i, w in enumerate(Overhead)
    }  # fmt: skip
    return Overheads(figs, backend="mock", device="mock", machine={"cpu": "x"},
                     fingerprint={"numpy": "2.0"}, created="2026-12-01")  # fmt: skip


def test_file_round_trip(tmp_path: Path) -> None:
    o = sampled()
    path = tmp_path / "sub" / "o.json"
    o.save(path)
    back = load_overheads(path)
    assert back == o and back.path == str(path)
    assert back.per_dispatch_ns == 2000 + 3000 + 4000 and back.release_lag_ns == 1000
    assert json.loads(path.read_text())["schema"] == SCHEMA
    assert back.samples(Overhead.LAUNCH) == tuple(range(1, 51))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(schema="aegis-overheads/0"), "schema"),
        (lambda d: d["figures"].pop("launch"), "figures.launch"),
        (lambda d: d["figures"]["decision"].update(bound_ns=-1), "figures.decision.bound_ns"),
        (lambda d: d["figures"]["decision"].update(bound_ns=2.5), "figures.decision.bound_ns"),
        (lambda d: d["figures"]["completion"].update(bound_ns=10**10), "figures.completion"),
        (lambda d: d["figures"].update(gc={}), "figures.gc"),
        (lambda d: d["figures"]["launch"].update(samples_ns=[1, -2]), "samples_ns[1]"),
        (lambda d: d["figures"]["launch"].update(converged="yes"), "figures.launch.converged"),
        (lambda d: d.update(exceedance=2), "exceedance"),
        (lambda d: d.update(figures=[]), "figures"),
    ],
)
def test_bad_file_names_the_field(tmp_path: Path, change: Any, field: str) -> None:
    d = sampled().as_dict()
    change(d)
    path = tmp_path / "o.json"
    path.write_text(json.dumps(d))
    with pytest.raises(InputError) as e:
        load_overheads(path)
    assert str(path) in str(e.value) and field in str(e.value)
    assert "\n" not in str(e.value)


def test_not_json_and_not_an_object(tmp_path: Path) -> None:
    p = tmp_path / "o.json"
    p.write_text("{")
    with pytest.raises(InputError, match="invalid JSON"):
        load_overheads(p)
    p.write_text("[]")
    with pytest.raises(InputError, match="must be a JSON object"):
        load_overheads(p)
    with pytest.raises(InputError, match="no such overheads file"):
        load_overheads(tmp_path / "missing.json")


def test_thin_keeps_order_and_size() -> None:
    assert thin(list(range(10)), 4) == (0, 2, 5, 7)
    assert thin([3, 1], 4) == (3, 1)


def test_scenario_key_resolves_relative_to_the_file(tmp_path: Path) -> None:
    sampled().save(tmp_path / "host.json")
    (tmp_path / "s.yaml").write_text(
        "name: s\noverheads: host.json\ntasks:\n  - {name: a, period_ms: 10, wcet_ms: 1}\n"
    )
    sc = load_scenario(tmp_path / "s.yaml")
    assert sc.overheads is not None and sc.overheads.per_dispatch_ns == 9000
    (tmp_path / "s.yaml").write_text(
        "name: s\noverheads: nope.json\ntasks:\n  - {name: a, period_ms: 10, wcet_ms: 1}\n"
    )
    with pytest.raises(ScenarioError, match="field 'overheads'"):
        load_scenario(tmp_path / "s.yaml")


# ------------------------------------------------------------------------- the accounting

TWO = [
    {"name": "a", "period_ms": 10, "deadline_ms": 6, "wcet_ms": 2},
    {"name": "b", "period_ms": 20, "wcet_ms": 3},
]


def test_charged_wcet_per_dispatch_hand_computed() -> None:
    sc = make_scenario(TWO)
    charged = dataclasses.replace(sc, overheads=oh(0, 300 * US, 100 * US, 100 * US))
    adm = admit(charged)
    assert [v.charged_ns for v in adm.tasks] == [2_500_000, 3_500_000]
    assert [v.wcet_ns for v in adm.tasks] == [2 * MS, 3 * MS]  # C stays the budget
    assert adm.budgets == admit(sc).budgets  # what runs is not charged
    # Without release lag the charge is exactly a WCET larger by 0.5 ms.
    inflated = make_scenario([{**t, "wcet_ms": t["wcet_ms"] + 0.5} for t in TWO])
    assert adm.bounds() == admit(inflated).bounds()
    # a: blocked by b (3.5 ms), then itself (2.5 ms): 6 ms = D, admitted.
    assert adm.bounds()["a"] == 6 * MS and adm.schedulable
    more = dataclasses.replace(sc, overheads=oh(0, 301 * US, 100 * US, 100 * US))
    assert not admit(more).tasks[0].admitted or not admit(more).tasks[1].admitted
    d = adm.as_dict()
    assert d["overheads"]["per_dispatch_ns"] == 500 * US
    assert d["tasks"][0]["charged_wcet_ns"] == 2_500_000


def test_lp_edf_charges_every_chunk() -> None:
    sc = make_scenario(
        [{"name": "a", "period_ms": 10, "deadline_ms": 4, "wcet_ms": 1},
         {"name": "b", "period_ms": 40, "kernels_ms": [1, 1, 1, 1, 1, 1]}],
        policy="lp-edf",
    )  # fmt: skip
    adm = admit(dataclasses.replace(sc, overheads=oh(0, 100 * US, 50 * US, 50 * US)))
    b = adm.tasks[1]
    assert b.admitted and b.chunks_ns is not None
    assert sum(b.chunks_ns) == 6 * MS  # the chunks run uncharged
    assert b.charged_ns == 6 * MS + len(b.chunks_ns) * 200 * US
    assert b.max_chunk_ns is not None
    assert all(c + 200 * US <= b.max_chunk_ns for c in b.chunks_ns)  # charged, they fit Q


def test_recorded_overheads_re_derive() -> None:
    sc = dataclasses.replace(make_scenario(TWO), overheads=oh(10, 300 * US, 100 * US, 100 * US))
    adm = admit(sc)
    again = admit(scenario_from_records(admission_records(adm, sc, enforced=True)))
    assert again.tasks == adm.tasks


# --------------------------------------------------------------- the simulator's replay


def random_set(rng: random.Random, chunked: bool = False) -> list[dict[str, Any]]:
    out = []
    for i in range(rng.randint(2, 4)):
        t = rng.choice([5, 8, 10, 20, 40])
        task = {"name": f"t{i}", "period_ms": t, "deadline_ms": rng.randint(t // 2, t),
                "arrival": "sporadic", "slack_ms": rng.randint(0, t)}  # fmt: skip
        if chunked:
            task["kernels_ms"] = [round(rng.uniform(0.1, t / 15), 3) for _ in range(3)]
        else:
            task["wcet_ms"] = round(rng.uniform(0.2, t / 5), 3)
        out.append(task)
    return out


def simulated(sc: Any, mode: str) -> tuple[Any, Scheduler]:
    adm = admit(sc)
    plan = dataclasses.replace(RunPlan.build(sc, admission=adm, exec_time_mode="wcet"),
                               host_mode=mode)  # fmt: skip
    sched = Scheduler.for_plan(plan)
    run(plan, sched, SimPyEngine())
    return adm, sched


@pytest.mark.parametrize("policy", ["np-edf", "np-fp", "lp-edf"])
@pytest.mark.parametrize("mode", ["bound", "sample"])
def test_replayed_overheads_never_exceed_the_charged_bounds(mode: str, policy: str) -> None:
    """The accounting against an engine that injects every overhead (at its bound, or drawn
    at random below it): admitted ⇒ no miss and observed ≤ bound."""
    rng = random.Random(13)
    checked = 0
    for n in range(60):
        figs = {
            w: Figure(w, b, 40, samples_ns=tuple(rng.randint(0, b) for _ in range(40)))
            for w, b in zip(Overhead, (300 * US, 120 * US, 60 * US, 80 * US), strict=True)
        }
        tasks = random_set(rng, chunked=policy == "lp-edf")
        sc = dataclasses.replace(make_scenario(tasks, duration_ms=400, seed=n, policy=policy),
                                 overheads=Overheads(figs))  # fmt: skip
        adm, sched = simulated(sc, mode)
        bounds = adm.bounds()
        for j in sched.jobs:
            if j.status is JobStatus.COMPLETED:
                checked += 1
                assert not j.missed and j.broken == ()
                bound = bounds[j.task]
                assert bound is not None and j.response_ns is not None
                assert j.response_ns <= bound
    assert checked > 500


def test_bound_mode_delays_every_job_by_its_overheads() -> None:
    sc = dataclasses.replace(
        make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 2}], duration_ms=30),
        overheads=oh(0, 100 * US, 50 * US, 25 * US),
    )
    _, sched = simulated(sc, "bound")
    # release 0 → start 0.15 ms → device end 2.15 ms (seen at 2.175 ms, the next instant)
    assert [(j.start_ns, j.end_ns) for j in sched.jobs] == [
        (150 * US, 2150 * US), (10_150 * US, 12_150 * US), (20_150 * US, 22_150 * US)
    ]  # fmt: skip


def test_host_model_is_seeded() -> None:
    o = sampled()
    a = [HostModel(o, 3).draw(Overhead.LAUNCH)]
    m1, m2 = HostModel(o, 3), HostModel(o, 3)
    assert [m1.draw(Overhead.LAUNCH) for _ in range(50)] == [
        m2.draw(Overhead.LAUNCH) for _ in range(50)
    ]
    assert a[0] in o.samples(Overhead.LAUNCH)
    assert HostModel(o, 3, "bound").draw(Overhead.LAUNCH) == o.bound(Overhead.LAUNCH)
    with pytest.raises(ValueError, match="host mode"):
        HostModel(o, 3, "worst")


# ------------------------------------------------------------------- the executor's monitor

MONITORED = [
    {"name": "a", "period_ms": 10, "deadline_ms": 4, "wcet_ms": 2},
    {"name": "b", "period_ms": 20, "deadline_ms": 20, "wcet_ms": 1},
]


def monitored_run(clock: VirtualClock, delays: dict[str, int] | None = None) -> Scheduler:
    sc = dataclasses.replace(make_scenario(MONITORED, duration_ms=60),
                             overheads=oh(100 * US, 50 * US, 50 * US, 100 * US))  # fmt: skip
    plan = RunPlan.build(sc, admission=admit(sc), exec_time_mode="wcet",
                         dispatch_ahead=False)  # every launch on the critical path  # fmt: skip
    eng = ExecEngine("mock", clock=clock,
                     wrap=(lambda inner: SlowLaunch(inner, clock, delays or {})))  # fmt: skip
    sched = Scheduler.for_plan(plan)
    recs: list[Any] = []

    class Sink:
        def write(self, rs: Any) -> None:
            recs.extend(rs)

        def flush(self) -> None: ...

        def close(self) -> None: ...

    run(plan, sched, eng, sink=Sink())  # type: ignore[arg-type]
    sched.records_seen = recs  # type: ignore[attr-defined]
    return sched


def test_an_ideal_virtual_host_breaks_no_assumption() -> None:
    sched = monitored_run(VirtualClock())
    assert not any(j.broken or j.missed for j in sched.jobs)
    assert not [r for r in sched.records_seen if isinstance(r, AssumptionRecord)]  # type: ignore[attr-defined]


def test_late_release_and_slow_launch_become_assumption_records() -> None:
    # a#2 is planned at 20 ms: the host wakes 3.5 ms late; b#2's launch takes 2 ms.
    sched = monitored_run(LateClock({20 * MS: 3_500 * US}), {"b#2": 2 * MS})
    broken = [r for r in sched.records_seen if isinstance(r, AssumptionRecord)]  # type: ignore[attr-defined]
    got = {(r.job, r.what): (r.observed_ns, r.bound_ns) for r in broken}
    assert got[("a#2", "release-lag")] == (3_500 * US, 100 * US)
    assert got[("b#2", "launch")] == (2 * MS, 50 * US)
    by_id = {j.id: j for j in sched.jobs}
    assert by_id["a#2"].missed and "release-lag" in by_id["a#2"].broken  # the miss has a cause
    assert "launch" in by_id["b#2"].broken
    assert not any(j.missed for j in sched.jobs if j.id != "a#2")
    # every miss and exceedance is attributed, by the records alone (no host-stall rule)
    bounds = {"a": 4 * MS, "b": 20 * MS}
    assert unexplained_misses(sched.jobs, bounds=bounds, ideal_host=False) == []
    # the same run without the records would be an analysis bug: the monitor is what explains
    for j in sched.jobs:
        j.broken = ()
    assert unexplained_misses(sched.jobs, bounds=bounds, ideal_host=False) == ["a#2"]


def test_exec_report_keeps_every_sample() -> None:
    clock = VirtualClock()
    sc = dataclasses.replace(make_scenario(MONITORED, duration_ms=60), overheads=oh(1, 1, 1, 1))
    plan = RunPlan.build(sc, admission=admit(sc), exec_time_mode="wcet")
    eng = ExecEngine("mock", clock=clock)
    sched = Scheduler.for_plan(plan)
    run(plan, sched, eng)
    samples = eng.overhead_samples()
    assert len(samples[Overhead.RELEASE_LAG]) == len(plan.releases)
    assert len(samples[Overhead.COMPLETION]) == 9
    # a job decided ahead has no decision sample (off the critical path); its launch figure
    # is its start after the job it followed ended
    assert sched.decided_ahead == 3
    assert len(samples[Overhead.DECISION]) == 9 - sched.decided_ahead
    assert eng.report()["overheads_checked"] is True


# ------------------------------------------------------------------------------ the CLI


def test_calibrate_writes_a_loadable_file(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "host.json"
    assert main(["calibrate", "--backend", "mock", "--out", str(out), "--duration-ms", "200"]) == 0
    o = load_overheads(out)
    assert o.backend == "mock" and set(o.figures) == set(Overhead)
    for w in Overhead:
        f = o.figures[w]
        assert f.n > 0 and f.bound_ns >= max(f.samples_ns)
    assert "release-lag" in capsys.readouterr().out
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: s\ntasks:\n  - {name: a, period_ms: 10, wcet_ms: 1}\n")
    # what this host measured decides the verdict (exit 0 or 1), never an input error
    assert main(["admit", str(scenario), "--overheads", str(out)]) in (0, 1)
    assert "C' ms" in capsys.readouterr().out


def test_bad_overheads_flag_is_one_line_exit_2(tmp_path: Path, capsys: Any) -> None:
    bad = tmp_path / "o.json"
    bad.write_text(json.dumps({"schema": SCHEMA}))
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: s\ntasks:\n  - {name: a, period_ms: 10, wcet_ms: 1}\n")
    assert main(["admit", str(scenario), "--overheads", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "exceedance" in err


def test_exec_without_overheads_warns_once(tmp_path: Path, capsys: Any) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\nduration_ms: 20\ntasks:\n  - {name: a, period_ms: 10, wcet_ms: 1}\n"
    )
    assert main(["exec", str(scenario), "--backend", "mock", "--out", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().err.count("no host overheads") == 1


@pytest.mark.parametrize("policy", ["np-edf", "np-fp"])
def test_check_reaches_the_charged_bounds(policy: str) -> None:
    """``aegis check`` with overheads: every chunk at its charged length; without release lag
    the critical patterns reach every charged bound within 1 ns, never above it."""
    from aegis_core.tools.check import check

    sc = dataclasses.replace(make_scenario(TWO, policy=policy),
                             overheads=oh(0, 300 * US, 100 * US, 100 * US))  # fmt: skip
    res = check(sc, runs=3)
    assert res.ok and all(0 <= r.bound_ns - r.worst_sim_ns <= 1 for r in res.rows)
    lagged = check(dataclasses.replace(sc, overheads=oh(200 * US, 300 * US, 100 * US, 0)), runs=3)
    assert lagged.ok


def test_a_chunk_past_its_chunk_wcet_is_an_overrun_record() -> None:
    """lp-edf: a chunk that runs past its own chunk WCET breaks the blocking the analysis
    charged even when the job keeps its WCET: an overrun record (action ``chunk``)."""
    from aegis_core.record.schema import CHUNK_OVERRUN
    from aegis_core.record.sinks import MemoryTrace
    from aegis_core.run.testing import FakeEngine

    sc = make_scenario(
        [{"name": "a", "period_ms": 10, "deadline_ms": 4, "wcet_ms": 1},
         {"name": "b", "period_ms": 40, "kernels_ms": [1, 1, 1, 1, 1, 1]}],
        policy="lp-edf", duration_ms=40,
    )  # fmt: skip
    adm = admit(sc)
    chain = adm.budgets[1].chunks_ns
    assert len(chain) > 1
    stretched = (chain[0] + MS // 2, chain[1] - MS // 2, *chain[2:])  # the same job total
    plan = RunPlan.build(sc, admission=adm,
                         exec_time=lambda d: stretched[d.chunk] if d.task_index == 1
                         else adm.budgets[0].wcet_ns)  # fmt: skip
    sched = Scheduler.for_plan(plan)
    sink = MemoryTrace()
    run(plan, sched, FakeEngine(), sink=sink)
    over = [r for r in sink.records() if r["kind"] == "overrun"]
    assert [(r["job"], r["action"], r["exec_ns"], r["budget_ns"]) for r in over] == [
        ("b#0", CHUNK_OVERRUN, chain[0] + MS // 2, chain[0])
    ]
    assert {j.id for j in sched.jobs if j.overrun} == {"b#0"}
    assert sched.contexts[1].overruns == 0  # the job kept its WCET: nothing is skipped


def test_exec_warns_on_overheads_of_another_backend(tmp_path: Path, capsys: Any) -> None:
    o = dataclasses.replace(sampled(), backend="numpy")
    o.save(tmp_path / "host.json")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\nduration_ms: 20\ntasks:\n  - {name: a, period_ms: 10, wcet_ms: 1}\n"
    )
    args = ["exec", str(scenario), "--backend", "mock", "--out", str(tmp_path / "r"),
            "--overheads", str(tmp_path / "host.json")]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "calibrated on numpy, this run is on mock" in err and "no host overheads" not in err
