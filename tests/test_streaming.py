"""Runs as streams: jobs leave memory once settled, results are written as the run goes, and
what a run holds does not grow with its length (aegis_core.tools.results.JobTally)."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_scenario

from aegis_core.analysis.admission import admit
from aegis_core.model.scenario import load_scenario
from aegis_core.model.status import JobStatus
from aegis_core.record.sinks import NullTrace
from aegis_core.run.loop import run
from aegis_core.run.plan import RunPlan
from aegis_core.run.samples import array_stats
from aegis_core.run.scheduler import Job, Scheduler
from aegis_core.tools.results import JobTally, jobs_csv, task_summaries
from aegis_core.tools.runner import run_scenario
from aegis_sim import SimPyEngine

ROOT = Path(__file__).resolve().parent.parent
MS = 1_000_000


def _reference_stats(values: list[int]) -> dict[str, Any] | None:
    """The statistics by their definition (observed quantiles, population std)."""
    if not values:
        return None
    a = sorted(values)
    n = len(a)

    def higher(q: float) -> int:
        return a[min(n - 1, int(np.ceil(q * (n - 1))))]

    mean = sum(a) / n
    std = (sum((x - mean) ** 2 for x in a) / n) ** 0.5
    return {"n": n, "min": a[0], "p50": higher(0.5), "p99": higher(0.99), "max": a[-1],
            "mean": round(mean, 3), "cv": round(std / mean, 6) if mean else 0.0}  # fmt: skip


def test_array_stats_are_the_definitions() -> None:
    from array import array

    rng = random.Random(3)
    for n in (1, 2, 3, 10, 99, 100, 101, 1000):
        values = [rng.randint(1, 10**9) for _ in range(n)]
        got, want = array_stats(array("q", values)), _reference_stats(values)
        assert got is not None and want is not None
        assert {k: got[k] for k in ("n", "min", "p50", "p99", "max")} == {
            k: want[k] for k in ("n", "min", "p50", "p99", "max")
        }
        assert got["mean"] == pytest.approx(want["mean"], abs=1e-3)
        assert got["cv"] == pytest.approx(want["cv"], abs=2e-6)
    assert array_stats(array("q")) is None


def _run_jobs(scenario_path: str) -> tuple[Any, list[Job]]:
    s = load_scenario(ROOT / scenario_path)
    result = run_scenario(s, "sim", write=False)
    return s, result.jobs


@pytest.mark.parametrize("name", ["three_models.yaml", "lp_edf.yaml", "unscheduled.yaml"])
def test_the_tally_takes_jobs_in_any_order_and_writes_them_in_seq_order(name: str) -> None:
    scenario, jobs = _run_jobs(f"scenarios/{name}")
    adm = admit(scenario)
    shuffled = jobs[:]
    random.Random(1).shuffle(shuffled)
    csv = io.StringIO()
    tally = JobTally(scenario, adm, csv=csv, keep=True)
    for k in range(0, len(shuffled), 7):  # settled in bunches, out of order
        tally.add(shuffled[k : k + 7])
    assert tally.summaries(scenario) == task_summaries(scenario, jobs, adm)
    assert csv.getvalue() == jobs_csv(jobs)
    assert [j.seq for j in tally.kept] == list(range(len(jobs)))
    assert tally.jobs == len(jobs) and tally.misses == sum(j.missed for j in jobs)
    by_task = {t["name"]: t for t in tally.summaries(scenario)}
    for t in scenario.tasks:
        done = [j for j in jobs if j.task == t.name and j.status is JobStatus.COMPLETED]
        want = _reference_stats([j.end_ns - j.release_ns for j in done])  # type: ignore[operator]
        got = by_task[t.name]["response_ns"]
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert {k: got[k] for k in ("n", "min", "p50", "p99", "max")} == {
                k: want[k] for k in ("n", "min", "p50", "p99", "max")
            }


def test_a_written_run_keeps_no_job_and_a_long_one_holds_only_the_jobs_in_flight() -> None:
    """Over 20 000 jobs the scheduler never holds more than the jobs released and not yet
    settled, nor the tally more than those settled ahead of an older one."""
    scenario = make_scenario(
        [{"name": f"t{i}", "period_ms": p, "wcet_ms": c}
         for i, (c, p) in enumerate([(2, 10), (4, 20), (5, 25), (7, 50), (6, 100)])],
        duration_ms=100_000,
    )  # fmt: skip
    plan = RunPlan.build(scenario)
    sch = Scheduler.for_plan(plan, retain=False)
    tally = JobTally(scenario, admit(scenario))
    most = {"live": 0, "waiting": 0}

    def take(jobs: list[Job]) -> None:
        tally.add(jobs)
        most["live"] = max(most["live"], len(sch.pending()))
        most["waiting"] = max(most["waiting"], len(tally._waiting))

    run(plan, sch, SimPyEngine(), sink=NullTrace(), jobs=take)
    assert tally.jobs == sch.released == 22_000 and sch.jobs == []
    assert most["live"] <= 5 and most["waiting"] <= 5
    assert not sch._live and not tally._waiting  # everything was handed over


def test_a_written_run_streams_its_jobs(tmp_path: Path) -> None:
    s = load_scenario(ROOT / "scenarios/three_models.yaml")
    result = run_scenario(s, "sim", out_dir=tmp_path, perfetto=False)
    assert result.jobs == []  # streamed to jobs.csv, not kept
    again = run_scenario(s, "sim", write=False)
    assert (tmp_path / "jobs.csv").read_text() == jobs_csv(again.jobs)
    assert not (tmp_path / "jobs.csv.tmp").exists()


def test_cost_samples_are_exact_until_folded_then_within_a_bin() -> None:
    from aegis_core.run.samples import SUB, CostSamples, cost_stats

    rng = np.random.default_rng(5)
    values = [*rng.integers(0, 3_000_000, 20_000).tolist(), 7, 2**40 + 3]
    small = CostSamples(limit=10**6)
    small.raw.extend(values)
    assert small.stats() == cost_stats(values)  # nothing folded: exact
    costs = CostSamples(limit=1000)
    for v in values:
        costs.raw.append(v)
        if costs.full():
            costs.fold()
    assert len(costs.raw) <= 1000 and len(costs) == len(values)
    got, want = costs.stats(), cost_stats(values)
    assert (got["n"], got["max"], got["mean"]) == (want["n"], want["max"], want["mean"])
    for q in ("p50", "p99"):  # the lower edge of the quantile's bin: at most 1/SUB low
        assert want[q] * (1 - 1 / SUB) <= got[q] <= want[q], (q, got, want)


def test_exact_values_count_few_distinct_values_and_spill_many() -> None:
    from aegis_core.run.samples import ExactValues

    periodic = ExactValues()
    for k in range(100_000):  # a periodic run: few distinct values, counted
        periodic.add(1000 + k % 7)
    assert periodic.values is None and len(periodic.counts or {}) == 7 and len(periodic) == 100_000
    many = ExactValues()
    rng = random.Random(2)
    values = [rng.randint(0, 2**31 - 1) for _ in range(ExactValues.DISTINCT + 50)]
    for v in values:
        many.add(v)
    assert many.counts is None and many.values is not None and many.values.typecode == "i"
    many.add(3 * 10**9)  # past int32: 8 bytes a value from here on
    assert many.values.typecode == "q"
    assert sorted(many.array().tolist()) == sorted([*values, 3 * 10**9])
    assert sorted(periodic.array().tolist()) == sorted(1000 + k % 7 for k in range(100_000))


def test_a_response_past_int32_is_kept_exactly() -> None:
    scenario = make_scenario([{"name": "a", "period_ms": 10_000, "wcet_ms": 1}])
    jobs = []
    for k, run_ns in enumerate((5, 3 * 10**9, 7)):
        j = Job(k, "a", 0, k, 0, 10**12)
        j.start_ns, j.end_ns, j.run_ns, j.status = 0, run_ns, run_ns, JobStatus.COMPLETED
        jobs.append(j)
    tally = JobTally(scenario)
    tally.add(jobs)
    (a,) = tally.summaries(scenario)
    assert (a["response_ns"]["n"], a["response_ns"]["max"], a["exec_ns"]["min"]) == (
        3,
        3 * 10**9,
        5,
    )


def test_a_job_skipped_at_its_release_is_not_counted_as_released_by_the_end_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """skip-next drops a#2 at its release (a#1 overran with nothing of a waiting): it has a
    skip record and no release record, and the end record counts the release records."""
    from test_contexts import scenario

    from aegis_core.budget import budgets
    from aegis_core.run.plan import WcetModel
    from aegis_core.run.testing import FakeEngine
    from aegis_core.tools import runner
    from aegis_core.tools.explain import load, verify

    s = scenario("skip-next")
    build = RunPlan.build

    def slow_a1(sc: Any, **kw: Any) -> RunPlan:
        base = WcetModel.of(budgets(sc))
        kw["exec_time"] = lambda d: {"a#1": 3 * MS}.get(d.job, base(d))
        return build(sc, **kw)

    monkeypatch.setattr(runner.RunPlan, "build", slow_a1)
    result = runner.run_scenario(s, FakeEngine(), out_dir=tmp_path)
    assert [t["skipped"] for t in result.summary["tasks"]] == [1, 0]
    v = verify(load(tmp_path))
    assert v.ok and v.end is not None and v.end.jobs == result.summary["jobs"] - 1, v.mismatches


def test_statistics_of_counted_values_equal_those_of_the_values() -> None:
    """Counted values (a periodic run's) give the statistics of the same values in full."""
    from aegis_core.run.samples import ExactValues

    rng = random.Random(9)
    for trial in range(200):
        n, distinct = rng.randint(1, 3000), rng.randint(1, 40)
        pool = [rng.randint(1, 10**8) for _ in range(distinct)]
        values = [rng.choice(pool) for _ in range(n)]
        counted = ExactValues()
        for v in values:
            counted.add(v)
        assert counted.counts is not None
        got, want = counted.stats(), array_stats(np.array(values, dtype=np.int64))
        assert got is not None and want is not None
        assert {k: got[k] for k in ("n", "min", "p50", "p99", "max")} == {
            k: want[k] for k in ("n", "min", "p50", "p99", "max")
        }, trial
        assert got["mean"] == pytest.approx(want["mean"], abs=1e-3)
        assert got["cv"] == pytest.approx(want["cv"], abs=2e-6)
    assert ExactValues().stats() is None


def test_the_loop_folds_decision_costs_whatever_the_engine_allocates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A garbage-free engine (the heap engine never takes the GC branch) still has its
    decision costs folded: the raw array stays within its limit."""
    from aegis_core.run.samples import CostSamples
    from aegis_core.run.testing import FakeEngine

    monkeypatch.setattr(CostSamples.__init__, "__defaults__", (500,))
    plan = RunPlan.build(make_scenario([{"name": "a", "period_ms": 1, "wcet_ms": 0.5}],
                                       duration_ms=3000))  # fmt: skip
    stats = run(plan, Scheduler.for_plan(plan, retain=False), FakeEngine(),
                jobs=lambda jobs: None)  # fmt: skip
    costs = stats.decisions_ns
    assert len(costs) == 3000 and len(costs.raw) <= 500
    assert costs.stats()["n"] == 3000


def test_a_signal_while_the_results_are_written_stops_the_command_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    from aegis_core.model.errors import Interrupted
    from aegis_core.tools import runner

    write = runner.write_summary

    def late(out: Path, summary: Any) -> None:
        signal.raise_signal(signal.SIGTERM)  # the run has ended: only noted
        write(out, summary)

    monkeypatch.setattr(runner, "write_summary", late)
    s = load_scenario(ROOT / "scenarios/three_models.yaml")
    with pytest.raises(Interrupted) as stopped:
        runner.run_scenario(s, "sim", out_dir=tmp_path, perfetto=False)
    assert stopped.value.reason == "SIGTERM"
    assert {"summary.json", "jobs.csv", "trace.jsonl"} <= {p.name for p in tmp_path.iterdir()}
    assert not (tmp_path / "jobs.csv.tmp").exists()
    assert "interrupted" not in json.loads((tmp_path / "summary.json").read_text())  # whole


def test_a_trace_that_cannot_be_written_is_one_error_and_leaves_no_partial_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aegis_core.model.errors import InputError
    from aegis_core.tools import runner
    from aegis_core.tools.outdir import ResultsDir

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    real = ResultsDir.create

    def full(self: ResultsDir, name: str, encoding: str = "utf-8") -> Any:
        f = real(self, name, encoding)
        if name != "trace.jsonl":
            return f
        f.close()
        return open("/dev/full", "w", encoding=encoding)  # trace.jsonl.tmp's writes: ENOSPC

    monkeypatch.setattr(ResultsDir, "create", full)
    s = load_scenario(ROOT / "scenarios/three_models.yaml")
    with pytest.raises(InputError, match=r"^/dev/full: cannot write: "):
        runner.run_scenario(s, "sim", out_dir=tmp_path, perfetto=False)
    assert list(tmp_path.iterdir()) == []  # no partial file, no marker, no lock
