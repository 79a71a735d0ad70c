"""The value, shown (scenarios/value.yaml): np-edf admits and meets every deadline where the
baselines a user would pick instead (fifo, unscheduled, stream-priority) miss; the
stream-priority baseline's policy facts, ranks, simulator model and executor refusal.

The simulator is deterministic, so its schedules are asserted exactly; executed runs (mock) are
asserted for structure only, never for wall-clock miss counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_scenario

from aegis_core.analysis.admission import admit
from aegis_core.model import policy as policies
from aegis_core.model.errors import ScenarioError
from aegis_core.model.policy import STREAM_PRIORITY, get_policy, stream_ranks
from aegis_core.model.scenario import load_scenario, replace_scenario
from aegis_core.run.plan import RunPlan
from aegis_core.run.testing import check_run, run_in_memory
from aegis_core.tools.runner import run_scenario
from aegis_exec.engine import ExecEngine
from aegis_sim import SimPyEngine

ROOT = Path(__file__).resolve().parent.parent
VALUE = ROOT / "scenarios" / "value.yaml"
MS = 1_000_000


def test_the_stream_priority_policy_is_data() -> None:
    p = get_policy("stream-priority")
    assert p is STREAM_PRIORITY and p.concurrent and p.stream_priorities
    assert p.sharing is policies.Sharing.CONCURRENT and p.analysis is policies.Analysis.NONE
    assert not any(q.stream_priorities for q in policies.POLICIES.values() if q is not p)
    with pytest.raises(ValueError, match="concurrent policy only"):
        policies.Policy("x", "x", ("release_ns", "seq"), stream_priorities=True)


def test_stream_ranks_are_deadline_monotonic_dense_and_keep_given_priorities() -> None:
    s = make_scenario([
        {"name": "a", "period_ms": 50, "deadline_ms": 40, "wcet_ms": 1},
        {"name": "b", "period_ms": 50, "deadline_ms": 10, "wcet_ms": 1},
        {"name": "c", "period_ms": 50, "deadline_ms": 20, "wcet_ms": 1},
    ])  # fmt: skip
    assert stream_ranks(s.tasks) == [2, 0, 1]
    given = make_scenario([
        {"name": "a", "period_ms": 50, "wcet_ms": 1, "priority": 7},
        {"name": "b", "period_ms": 50, "wcet_ms": 1, "priority": 3},
        {"name": "c", "period_ms": 50, "wcet_ms": 1, "priority": 7},
    ])  # fmt: skip
    assert stream_ranks(given.tasks) == [1, 0, 1]  # equal priorities share a rank


# a long job of the low-priority task at 0 (10 ms), a short one of the urgent task at 2 (3 ms)
PAIR = [
    {"name": "long", "period_ms": 100, "deadline_ms": 50, "wcet_ms": 10},
    {"name": "urgent", "period_ms": 100, "deadline_ms": 5, "wcet_ms": 3, "offset_ms": 2},
]


def _ends(policy: str) -> dict[str, int | None]:
    s = make_scenario(PAIR, policy=policy, duration_ms=20)
    records, jobs = run_in_memory(s, SimPyEngine())
    check_run(records, jobs, slots=None)
    return {j.task: j.end_ns for j in jobs}


def test_the_simulator_models_stream_priorities_as_strict_priority_sharing() -> None:
    # the urgent job takes the whole GPU at its release (2..5); the long one resumes: 13
    assert _ends("stream-priority") == {"long": 13 * MS, "urgent": 5 * MS}
    # equal sharing: from 2 both at rate 1/2, urgent needs 3 ms of work: 8; long: 13
    assert _ends("unscheduled") == {"long": 13 * MS, "urgent": 8 * MS}
    # one at a time, non-preemptive, in release order: urgent waits for long
    assert _ends("fifo") == {"long": 10 * MS, "urgent": 13 * MS}


def test_priority_sharing_within_one_task_is_stream_order() -> None:
    # two jobs of one task in flight (the second released while the first runs): in order
    s = make_scenario(
        [{"name": "a", "period_ms": 2, "deadline_ms": 50, "wcet_ms": 3}],
        policy="stream-priority", duration_ms=4,
    )  # fmt: skip
    _, jobs = run_in_memory(s, SimPyEngine())
    assert [(j.release_ns, j.end_ns) for j in jobs] == [(0, 3 * MS), (2 * MS, 6 * MS)]


EXPECTED_SIM = {  # (task, misses) on scenarios/value.yaml, every job running for its WCET
    "np-edf": {"detector": 0, "classifier": 0, "transformer": 0},
    "fifo": {"detector": 0, "classifier": 0, "transformer": 5},
    "unscheduled": {"detector": 5, "classifier": 0, "transformer": 0},
    "stream-priority": {"detector": 10, "classifier": 0, "transformer": 0},
}


def test_value_np_edf_admits_all_and_meets_where_every_baseline_misses() -> None:
    s = load_scenario(VALUE)
    assert len(s.tasks) >= 3 and all(t.model for t in s.tasks)
    adm = admit(s)
    assert adm.schedulable and all(v.admitted for v in adm.tasks)
    bounds = adm.bounds()
    for name, want in EXPECTED_SIM.items():
        summary = run_scenario(replace_scenario(s, policy=get_policy(name)), "sim",
                               write=False).summary  # fmt: skip
        got = {t["name"]: t["misses"] for t in summary["tasks"]}
        assert got == want, name
        assert all(t["jobs"] == t["completed"] for t in summary["tasks"])
        if name == "np-edf":  # the analysis's promise: every response within its bound
            assert all(t["response_ns"]["max"] <= bounds[t["name"]] for t in summary["tasks"])
    assert sum(EXPECTED_SIM["np-edf"].values()) == 0
    assert all(sum(m.values()) > 0 for p, m in EXPECTED_SIM.items() if p != "np-edf")


@pytest.mark.parametrize("backend", ["numpy", "mock"])
def test_a_backend_without_stream_priorities_refuses_the_policy(backend: str) -> None:
    s = replace_scenario(load_scenario(VALUE), policy=STREAM_PRIORITY)
    plan = RunPlan.build(s, admission=admit(s))
    with pytest.raises(ScenarioError, match="needs CUDA stream priorities") as err:
        ExecEngine(backend).validate(plan)
    assert err.value.field == "policy" and "\n" not in str(err.value)
    assert str(err.value).startswith(str(VALUE))
    ExecEngine(backend).validate(RunPlan.build(load_scenario(VALUE)))  # np-edf runs there
