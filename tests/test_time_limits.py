"""Times must fit int64 (docs/CONTRACTS.md §scenario): a scenario either loads, and then every
time its plan computes fits, or it is refused with one ScenarioError naming the field, never
another exception. No cap on the number of releases."""

from __future__ import annotations

import warnings
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis_core.model.errors import ScenarioError
from aegis_core.model.scenario import parse_scenario, replace_scenario, time_span
from aegis_core.model.types import MAX_TIME_NS
from aegis_core.run.arrivals import BLOCK, iter_task_release_times
from aegis_core.run.plan import RunPlan
from aegis_core.tools.cli import main

INT64_END = 1 << 63
LIMIT_MS = MAX_TIME_NS / 1e6
TASK_FIELDS = ("period_ms", "deadline_ms", "wcet_ms", "offset_ms", "jitter_ms", "slack_ms")

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),  # anything finite
    st.floats(min_value=1e8, max_value=1e14),  # around the limit (4.6e12 ms)
    st.floats(min_value=1e8, max_value=1e14),
    st.floats(min_value=0.0, max_value=50.0),  # ordinary values, zero
    st.floats(min_value=0.0, max_value=50.0),
    st.sampled_from([LIMIT_MS, LIMIT_MS / 2, LIMIT_MS / 3, 1e10, 1e13, 5e-7, 1e-300, -1.0]),
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    task: dict[str, Any] = {"name": "a", "period_ms": 10, "wcet_ms": 1}
    task["arrival"] = draw(st.sampled_from(["periodic", "sporadic", "poisson"]))
    for key in draw(st.sets(st.sampled_from(TASK_FIELDS), max_size=3)):
        task[key] = draw(numbers)
    if draw(st.integers(0, 4)) == 0:
        task["kernels_ms"] = draw(st.lists(numbers, min_size=1, max_size=3))
        task.pop("wcet_ms", None) if draw(st.booleans()) else None
    doc: dict[str, Any] = {"name": "t", "seed": draw(st.integers(0, 3)), "tasks": [task,
           {"name": "b", "period_ms": 7, "wcet_ms": 1, "arrival": "sporadic"}]}  # fmt: skip
    if draw(st.booleans()):
        doc["duration_ms"] = draw(numbers)
    return doc


@st.composite
def plausible(draw: st.DrawFn) -> dict[str, Any]:
    """Consistent tasks at every magnitude up to past the limit (log-uniform), so that many
    load and the generator runs at the edge."""

    def ms(lo: float = -7.0, hi: float = 13.0) -> float:
        return float(10 ** draw(st.floats(min_value=lo, max_value=hi)))

    period = ms()
    task: dict[str, Any] = {"name": "a", "period_ms": period, "wcet_ms": period * 1e-3,
        "arrival": draw(st.sampled_from(["periodic", "sporadic", "poisson"])),
        "deadline_ms": period * draw(st.floats(min_value=0.5, max_value=3.0)),
        "offset_ms": draw(st.sampled_from([0.0, ms()])),
        "jitter_ms": period * draw(st.sampled_from([0.0, 0.5, 0.999])),
        "slack_ms": draw(st.sampled_from([0.0, period, ms()]))}  # fmt: skip
    return {"name": "p", "duration_ms": ms(-3.0, 13.0), "tasks": [task]}


def named_field(err: ScenarioError) -> bool:
    f = err.field or ""
    return f in (*TASK_FIELDS, "duration_ms", "kernels_ms") or f.startswith("kernels_ms[")


@settings(
    max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.one_of(documents(), plausible()))
def test_any_finite_time_loads_and_fits_or_is_refused_naming_the_field(doc: dict[str, Any]) -> None:
    try:
        scenario = parse_scenario(doc)
        plan = RunPlan.build(scenario)
    except ScenarioError as err:
        assert named_field(err), err
        assert "\n" not in str(err) and err.task in (None, "a", "b")
        return
    horizon = scenario.duration_ns
    assert 0 < horizon <= MAX_TIME_NS
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for t in scenario.tasks:
            assert sum(ns for _, ns in time_span(scenario, t)) <= MAX_TIME_NS
            times = list(islice(iter_task_release_times(t, plan.seed, horizon), 2 * BLOCK + 1))
            assert all(b > a for a, b in pairwise(times))  # a wrap would break the order
            assert all(t.offset_ns <= x < horizon for x in times)
            assert all(x + t.deadline_ns < INT64_END for x in times)
        first = list(islice(plan.releases, 3))
        assert all(0 <= r.t_ns < horizon for r in first)


@pytest.mark.parametrize(
    ("field", "value"),
    [("period_ms", 1e13), ("deadline_ms", 5e12), ("offset_ms", 1e19), ("jitter_ms", 1e300)],
)
def test_a_time_past_the_limit_names_its_field(field: str, value: float) -> None:
    doc = {"name": "t", "tasks": [{"name": "a", "period_ms": 10, "wcet_ms": 1, field: value}]}
    with pytest.raises(ScenarioError, match="past the limit of 2\\*\\*62 ns") as info:
        parse_scenario(doc)
    assert (info.value.task, info.value.field) == ("a", field)


def test_the_last_whole_ms_below_the_limit_loads_and_the_next_is_refused() -> None:
    below = MAX_TIME_NS // 1_000_000  # ms
    at: dict[str, Any] = {"name": "t", "duration_ms": 1, "tasks": [
        {"name": "a", "period_ms": 1, "wcet_ms": 1, "offset_ms": below}]}  # fmt: skip
    assert parse_scenario(at).tasks[0].offset_ns == below * 1_000_000
    at["tasks"][0]["offset_ms"] = below + 1
    with pytest.raises(ScenarioError, match="offset_ms"):
        parse_scenario(at)


def test_a_sum_past_the_limit_names_its_largest_term() -> None:
    doc = {"name": "t", "duration_ms": LIMIT_MS / 4, "tasks": [
        {"name": "a", "period_ms": 10, "wcet_ms": 1},
        {"name": "big", "period_ms": LIMIT_MS / 4, "deadline_ms": LIMIT_MS * 0.6,
         "wcet_ms": 1}]}  # fmt: skip
    with pytest.raises(ScenarioError, match="duration_ms \\+ period_ms") as info:
        parse_scenario(doc)
    assert (info.value.task, info.value.field) == ("big", "deadline_ms")
    ok = parse_scenario({**doc, "duration_ms": 1000})
    with pytest.raises(ScenarioError) as info:  # --duration-ms goes through replace_scenario
        replace_scenario(ok, duration_ns=MAX_TIME_NS // 2 + 10**6)
    assert (info.value.task, info.value.field) == ("big", "deadline_ms")
    with pytest.raises(ScenarioError) as info:
        replace_scenario(ok, duration_ns=MAX_TIME_NS + 1)
    assert (info.value.task, info.value.field) == (None, "duration_ms")


def test_kernels_summing_past_the_limit_are_refused() -> None:
    k = LIMIT_MS * 0.6
    doc = {"name": "t", "tasks": [{"name": "a", "period_ms": 10, "kernels_ms": [k, k]}]}
    with pytest.raises(ScenarioError, match="kernels sum to") as info:
        parse_scenario(doc)
    assert info.value.field == "kernels_ms"


def test_cli_sim_refuses_an_unrepresentable_period_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({"name": "big", "tasks": [
        {"name": "fast", "period_ms": 10, "wcet_ms": 1},
        {"name": "huge", "period_ms": 1e13, "wcet_ms": 1}]}))  # fmt: skip
    assert main(["sim", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err and "task 'huge'" in err and "field 'period_ms'" in err
    assert not (tmp_path / "out").exists()


def test_cli_sim_refuses_an_unrepresentable_duration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "tasks": [
        {"name": "a", "period_ms": 10, "wcet_ms": 1}]}))  # fmt: skip
    assert main(["sim", str(path), "--duration-ms", "1e13", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "field 'duration_ms'" in err


def test_a_poisson_slack_near_the_limit_never_wraps() -> None:
    """Exponential draws of mean 4·10¹⁸ ns pass int64 about one time in ten; clipped, they
    end the task's releases instead of wrapping to negative gaps."""
    task = {"name": "q", "period_ms": 0.001, "arrival": "poisson", "slack_ms": 4e12}
    doc = {"name": "t", "duration_ms": 10_000, "tasks": [{**task, "wcet_ms": 0.0001}]}
    s = parse_scenario(doc)
    with np.errstate(all="raise"):
        for seed in range(20):
            times = list(iter_task_release_times(s.tasks[0], seed, s.duration_ns))
            assert times and all(b - a >= 1_000 for a, b in pairwise(times))
            assert all(0 <= x < s.duration_ns for x in times)
