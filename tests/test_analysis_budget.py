"""The analysis budget: admission spends counted points, never seconds, and a set it cannot
prove within its budget is rejected with that reason (docs/THEORY.md §budget).

Nothing here reads a clock: the budget is a count, so each assertion holds on any host."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from conftest import make_scenario
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_core.analysis import bounds
from aegis_core.analysis.admission import admit
from aegis_core.analysis.bounds import (
    MAX_POINTS,
    ATask,
    Effort,
    Exhausted,
    count_test_points,
    edf_demand_qpa,
    edf_response_bound,
    fp_response,
)
from aegis_core.model.errors import AegisError, InputError
from aegis_core.tools.cli import main

PRIMES = [p for p in range(11, 400) if all(p % d for d in range(2, int(p**0.5) + 1))]


def prime_tasks(n: int, u: float, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` tasks with distinct prime periods (ms) and total utilisation about ``u``: long
    hyperperiods and busy periods, the analysis's hard case."""
    rng = random.Random(seed)
    periods = rng.sample(PRIMES, n)
    shares = [rng.random() for _ in periods]
    total = sum(shares)
    return [
        {"name": f"t{i}", "period_ms": p, "wcet_ms": round(u * w / total * p, 3)}
        for i, (p, w) in enumerate(zip(periods, shares, strict=True))
    ]


BUDGET_WORDS = "analysis points: not proved schedulable within the analysis budget"


def test_effort_counts_and_stops_past_its_limit() -> None:
    e = Effort(3)
    e.charge(2)
    assert (e.spent, e.left) == (2, 1)
    e.charge()
    with pytest.raises(Exhausted, match="not proved within 3 analysis points"):
        e.charge()
    assert e.left == 0
    unlimited = Effort()
    unlimited.charge(10**9)
    assert unlimited.left is None
    assert issubclass(Exhausted, AegisError) and not issubclass(Exhausted, InputError)


@pytest.mark.parametrize("policy", ["np-edf", "np-fp", "lp-edf"])
def test_same_input_spends_the_same_points(policy: str) -> None:
    tasks = prime_tasks(8, 0.9)
    if policy == "lp-edf":
        for t in tasks:
            c = t["wcet_ms"]
            t["kernels_ms"] = [round(c / 2, 3), round(c - round(c / 2, 3), 3)]
    a = admit(make_scenario(tasks, policy=policy))
    b = admit(make_scenario(tasks, policy=policy))
    assert a.effort is not None and b.effort is not None
    assert a.effort.spent == b.effort.spent > 0
    assert a.wording is not None
    assert a.as_dict()["analysis_points"] == {
        "budget": MAX_POINTS,
        "spent": a.effort.spent,
        "spent_on_reasons": a.wording.spent,
    }


@pytest.mark.parametrize("policy", ["np-edf", "np-fp"])
def test_a_budget_just_large_enough_admits_as_without_one(policy: str) -> None:
    tasks = prime_tasks(10, 0.85)
    free = admit(make_scenario(tasks, policy=policy, analysis_points=10**9))
    assert free.effort is not None
    exact = admit(make_scenario(tasks, policy=policy, analysis_points=free.effort.spent))
    assert [v.admitted for v in exact.tasks] == [v.admitted for v in free.tasks]
    assert [v.response_bound_ns for v in exact.tasks] == [v.response_bound_ns for v in free.tasks]
    assert exact.effort is not None and exact.effort.spent <= free.effort.spent


def test_exhausted_budget_rejects_with_the_reason_and_the_rest_too() -> None:
    tasks = prime_tasks(20, 0.97)
    free = admit(make_scenario(tasks, analysis_points=10**9))
    assert free.effort is not None
    assert free.tasks[-1].admitted  # the whole set is provable ...
    small = free.effort.spent // 3
    tight = admit(make_scenario(tasks, analysis_points=small))  # ... but not in a third
    verdicts = tight.tasks
    out = [i for i, v in enumerate(verdicts) if BUDGET_WORDS in v.reason]
    assert out, "the budget ran out"
    first = out[0]
    assert f"not proved within {small} analysis points" in verdicts[first].reason
    assert all(not v.admitted for v in verdicts[first:])  # nothing after the budget is spent
    assert out == list(range(first, len(verdicts)))
    for v, w in zip(verdicts[:first], free.tasks[:first], strict=True):
        assert v.admitted == w.admitted  # before it, the verdicts of an unbounded analysis
    assert tight.effort is not None
    assert tight.effort.spent == small  # used up, never past it


def test_the_default_budget_bounds_a_hard_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """50 prime periods at U = 0.995: unbounded, this runs for minutes; without
    ``analysis_points`` admission spends at most the default budget (here made small so the
    test stays short: benchmarks/bench_admission.py measures the real default), with a
    verdict for every task."""
    from aegis_core.analysis import admission

    monkeypatch.setattr(admission, "MAX_POINTS", 20_000)
    adm = admit(make_scenario(prime_tasks(50, 0.995, seed=3)))
    assert adm.effort is not None
    assert adm.effort.limit == 20_000
    assert adm.effort.spent == 20_000
    assert len(adm.tasks) == 50
    assert any(BUDGET_WORDS in v.reason for v in adm.tasks)
    assert MAX_POINTS == 500_000  # the documented default (docs/THEORY.md §budget)


def test_a_long_testing_interval_is_refused_before_its_points_are_listed() -> None:
    # U = 0.99998 and a first burst longer than a period: L is ~7800 periods long
    ts = [ATask("a", 70_000, 100_000, 60_000), ATask("b", 30_001, 100_010, 90_000)]
    upto = bounds.testing_bound(ts)
    assert upto is not None
    n = count_test_points(ts, upto)
    assert n > 10_000
    with pytest.raises(Exhausted):
        bounds.test_points(ts, upto, Effort(n - 1))
    assert len(bounds.test_points(ts, upto, Effort(n))) <= n
    with pytest.raises(Exhausted):  # the busy period's iterations are charged as well
        bounds.busy_period(ts, effort=Effort(1_000))


tasks_st = st.lists(
    st.builds(
        lambda c, t, d, b, j: ATask("x", c, t, max(d, c), burst=b, j=j),
        st.integers(1, 30),
        st.integers(30, 200),
        st.integers(30, 250),
        st.integers(0, 20),
        st.integers(0, 15),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=80, deadline=None)
@given(tasks_st, st.integers(0, 2_000))
def test_count_of_points_bounds_the_listed_points(ts: list[ATask], upto: int) -> None:
    ts = [ATask(f"t{i}", x.c, x.t, x.d, burst=x.burst, j=x.j) for i, x in enumerate(ts)]
    pts = bounds.test_points(ts, upto)
    assert len(pts) <= count_test_points(ts, upto)
    assert all(0 < p <= upto for p in pts)


@settings(max_examples=60, deadline=None)
@given(tasks_st, st.integers(1, 400))
def test_a_budget_either_gives_the_unbounded_answer_or_stops(ts: list[ATask], limit: int) -> None:
    """Under any budget the analysis answers exactly as without one, or raises Exhausted."""
    ts = [ATask(f"t{i}", x.c, x.t, x.d, burst=x.burst, j=x.j) for i, x in enumerate(ts)]
    for f in (
        lambda e: edf_demand_qpa(ts, effort=e).ok,
        lambda e: edf_response_bound(ts, 0, effort=e),
        lambda e: fp_response(ts, 0, effort=e).bound,
        lambda e: bounds.max_chunk_bounds(ts, e),
    ):
        want = f(Effort())
        try:
            got = f(Effort(limit))
        except Exhausted:
            continue
        assert got == want


@pytest.mark.parametrize("bad", ["0", "-5", "1.5", "true", "'many'"])
def test_analysis_points_must_be_a_positive_integer(
    bad: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        f"name: s\nanalysis_points: {bad}\ntasks:\n  - name: a\n    period_ms: 10\n    wcet_ms: 1\n"
    )
    assert main(["admit", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "field 'analysis_points'" in err[0]


def test_admit_cli_reports_the_budget_verdict(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    f = tmp_path / "hard.yaml"
    doc = {"name": "hard", "analysis_points": 200, "tasks": prime_tasks(12, 0.95)}
    f.write_text(yaml.safe_dump(doc))
    assert main(["admit", str(f)]) == 1
    out = capsys.readouterr().out
    assert "not proved within 200 analysis points" in out


def test_max_points_option_replaces_the_scenarios_budget(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    f = tmp_path / "hard.yaml"
    f.write_text(yaml.safe_dump({"name": "hard", "tasks": prime_tasks(12, 0.95)}))
    assert main(["admit", str(f), "--max-points", "150", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["analysis_points"]["budget"] == 150
    assert any("not proved within 150 analysis points" in t["reason"] for t in doc["tasks"])
    for bad in ("0", "-3"):
        assert main(["admit", str(f), "--max-points", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"aegis: error: --max-points must be >= 1, got {bad}"]


@pytest.mark.parametrize("policy", ["np-edf", "np-fp", "lp-edf"])
@pytest.mark.parametrize("seed", [5, 31])
def test_a_larger_budget_never_admits_less(policy: str, seed: int) -> None:
    """Before the budget runs out the verdicts are the unbounded ones; after it, every task is
    rejected: so raising the budget only adds admitted tasks (the reasons' wording has a pool
    of its own and cannot take points from a verdict)."""
    tasks = prime_tasks(8, 0.93, seed=seed)
    if policy == "lp-edf":
        for t in tasks:
            c = t["wcet_ms"]
            t["kernels_ms"] = [round(c / 2, 3), round(c - round(c / 2, 3), 3)]
    free = admit(make_scenario(tasks, policy=policy, analysis_points=10**9))
    assert free.effort is not None
    top = free.effort.spent
    before: set[int] = set()
    for points in sorted({1, 2, 5, 10, 17, 18, 19, 20, 50, top // 4, top // 2, top - 1, top}):
        adm = admit(make_scenario(tasks, policy=policy, analysis_points=max(points, 1)))
        now = {i for i, v in enumerate(adm.tasks) if v.admitted}
        assert before <= now, (points, before, now)
        before = now
    assert before == {i for i, v in enumerate(free.tasks) if v.admitted}


def test_lp_edf_refuted_sets_keep_their_reason_under_a_small_budget() -> None:
    """A set that fails even fully preemptive is refuted by QPA; when the wording pool cannot
    enumerate, the reason is QPA's, never "not proved"."""
    tasks = [
        {"name": "a", "period_ms": 10, "kernels_ms": [3, 3]},
        {"name": "b", "period_ms": 11, "kernels_ms": [3, 3]},
    ]
    free = admit(make_scenario(tasks, policy="lp-edf", analysis_points=10**9))
    assert free.effort is not None
    assert free.tasks[1].reason.startswith("fails even fully preemptive")
    adm = admit(make_scenario(tasks, policy="lp-edf", analysis_points=free.effort.spent))
    assert adm.tasks[1].reason.startswith("fails even fully preemptive")


def test_the_budget_is_part_of_a_runs_fingerprint() -> None:
    """compare reuses a run only with the same fingerprint: a run under another budget (its
    verdicts may differ) is never reused."""
    from aegis_core.tools.runner import run_fingerprint

    tasks = prime_tasks(4, 0.5)
    base = run_fingerprint(make_scenario(tasks), 0, True, "sample")
    same = run_fingerprint(make_scenario(tasks, analysis_points=MAX_POINTS), 0, True, "sample")
    other = run_fingerprint(make_scenario(tasks, analysis_points=150), 0, True, "sample")
    assert base == same != other


@pytest.mark.parametrize("how", ["option", "yaml"])
def test_a_run_under_another_budget_verifies(
    how: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The trace records the budget: ``explain --verify`` re-derives the verdicts under it
    (with the default budget it would admit tasks the run rejected)."""
    import yaml

    doc: dict[str, Any] = {"name": "hard", "duration_ms": 200, "tasks": prime_tasks(12, 0.95)}
    extra: list[str] = ["--max-points", "150"]
    if how == "yaml":
        doc["analysis_points"], extra = 150, []
    f = tmp_path / "hard.yaml"
    f.write_text(yaml.safe_dump(doc))
    out = tmp_path / "run"
    assert main(["sim", str(f), "--out", str(out), "--quiet", "--no-perfetto", *extra]) == 0
    trace = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    adm = [r for r in trace if r["kind"] in ("admit", "reject")]
    assert {r["analysis_points"] for r in adm} == {150}
    assert any("not proved within 150" in r["rationale"]["reason"] for r in adm)
    capsys.readouterr()
    assert main(["explain", str(out), "--verify"]) == 0
    assert capsys.readouterr().out.startswith("verified:")
