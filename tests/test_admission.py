"""Admission control: the worked examples of docs/THEORY.md with their exact numbers,
segmented QPA against full enumeration on random task sets, scenario-level admission
(``admit``), ``aegis admit`` and ``aegis sim`` on ``scenarios/admission.yaml``.

Task sets from docs/THEORY.md are in ticks; ``eps=1`` is integer time (blocking ``C_j - 1``),
``eps=0`` continuous time (blocking ``C_j``, the convention AegisRT uses on ns, §notation).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import signal
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from conftest import MS, make_scenario

from aegis_core.analysis import bounds
from aegis_core.analysis.admission import admit, analysis_task
from aegis_core.analysis.bounds import (
    INF,
    ATask,
    Violation,
    busy_period,
    dbf,
    edf_demand_enumerate,
    edf_demand_qpa,
    edf_offsets,
    edf_response_at,
    edf_response_bound,
    fp_response,
    max_chunk_bounds,
    preemptive_edf_ok,
    split_chunks,
    utilisation,
)
from aegis_core.analysis.taskgen import random_taskset
from aegis_core.budget import budgets
from aegis_core.model.scenario import load_scenario
from aegis_core.record.sinks import read_trace
from aegis_core.tools.check import check
from aegis_core.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent
ADMISSION_YAML = ROOT / "scenarios/admission.yaml"
LP_EDF_YAML = ROOT / "scenarios/lp_edf.yaml"

# docs/THEORY.md §demand: set G (schedulable), set "Bad" (fails at t = 8; §lp-edf repairs it).
G = (ATask("t1", 1, 10, 9), ATask("t2", 5, 15, 13), ATask("t3", 7, 25, 18), ATask("t4", 4, 20, 19))
BAD = (ATask("t1", 2, 10, 8), ATask("t2", 3, 15, 15), ATask("t3", 8, 40, 30))


def with_chunks(ts: tuple[ATask, ...], i: int, chunks: tuple[int, ...]) -> list[ATask]:
    out = list(ts)
    x = out[i]
    out[i] = ATask(x.name, x.c, x.t, x.d, chunks, x.prio)
    return out


def scaled(ts: tuple[ATask, ...] | list[ATask], k: int) -> list[ATask]:
    return [
        ATask(x.name, x.c * k, x.t * k, x.d * k, tuple(c * k for c in x.chunks), x.prio) for x in ts
    ]


@contextlib.contextmanager
def deadline_s(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging CI) when the body runs longer than ``seconds``."""

    def fire(*_: Any) -> None:
        raise TimeoutError(f"did not finish within {seconds} s (non-terminating fixed point?)")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- docs/THEORY.md §demand: set G


def test_set_g_testing_interval_and_test_points() -> None:
    assert utilisation(G) == Fraction(137, 150)  # 0.9133
    assert busy_period(G) == 59
    # L_a' = max(19, 2.9267 / 0.08667) = 33.77 -> L = min(59, 34)
    la = sum(Fraction((x.t - x.d) * x.c, x.t) for x in G) / (1 - utilisation(G))
    assert 33 < la < 34
    assert bounds.testing_bound(G) == 34
    # test_points / testing_bound are not imported by name: pytest would collect them
    assert bounds.test_points(G, 34) == [9, 13, 18, 19, 28, 29]
    assert [dbf(G, t) for t in (9, 13, 18, 19, 28, 29)] == [1, 6, 13, 18, 23, 24]
    assert preemptive_edf_ok(G)


@pytest.mark.parametrize(
    ("eps", "blocking"),
    [
        (1, [(6, "t3"), (6, "t3"), (3, "t4"), (0, ""), (0, ""), (0, "")]),  # docs/THEORY.md §demand
        (0, [(7, "t3"), (7, "t3"), (4, "t4"), (0, ""), (0, ""), (0, "")]),  # continuous: C_j
    ],
)
def test_set_g_blocking_column(eps: int, blocking: list[tuple[int, str]]) -> None:
    block = bounds._Blocking(G, eps)
    assert [block(t) for t in (9, 13, 18, 19, 28, 29)] == blocking


@pytest.mark.parametrize("eps", [1, 0])
def test_set_g_schedulable_qpa_5_evaluations_enumeration_6(
    eps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = edf_demand_enumerate(G, eps)
    assert (full.ok, full.bound, full.evaluated, full.violation) == (True, 34, 6, None)
    # the least slack: t = 13, dbf 6 + B (tau3) = 12 (integer) or 13 (continuous, slack 0)
    assert full.binding == Violation(13, 6, 7 - eps, "t3")

    seen: list[int] = []
    real_dbf = bounds.dbf

    def spy(ts: Any, t: int) -> int:
        seen.append(t)
        return real_dbf(ts, t)

    monkeypatch.setattr(bounds, "dbf", spy)
    qpa = edf_demand_qpa(G, eps)
    assert (qpa.ok, qpa.bound, qpa.evaluated, qpa.violation) == (True, 34, 5, None)
    # Top segment [19, 34]: 29 -> h = 24 -> dbf(24) = 18 < 19 leaves the segment (a hand trace
    # rounds the jump down to the test point 19, which has the same dbf 18); then one point
    # per lower segment: 18 (h = 16), 13 (h = 12), 9 (h = 7).
    assert seen == [29, 24, 18, 13, 9]


@pytest.mark.parametrize(
    ("eps", "reason"),
    [
        (1, "dbf(t) + B(t) = 0.000002 ms + 0.000007 ms (blocking by t3) = 0.000009 ms > t"),
        (0, "dbf(t) + B(t) = 0.000002 ms + 0.000008 ms (blocking by t3) = 0.00001 ms > t"),
    ],
)
def test_set_bad_rejected_at_t8_blocked_by_tau3(eps: int, reason: str) -> None:
    expected = Violation(t=8, dbf=2, blocking=8 - eps, blocker="t3")
    full = edf_demand_enumerate(BAD, eps)
    qpa = edf_demand_qpa(BAD, eps)
    assert not full.ok and not qpa.ok
    assert full.violation == qpa.violation == expected
    assert utilisation(BAD) == Fraction(3, 5)
    # ticks here are ns: the reason names t, dbf, B, the sum and the blocker
    assert full.reason == reason + " at t = 0.000008 ms"


def test_reasons_in_milliseconds() -> None:
    tick = 100_000  # 0.1 ms, as in docs/THEORY.md §demand
    bad = edf_demand_enumerate(scaled(BAD, tick))
    assert bad.reason == "dbf(t) + B(t) = 0.2 ms + 0.8 ms (blocking by t3) = 1 ms > t at t = 0.8 ms"
    good = edf_demand_enumerate(scaled(G, tick))
    assert good.reason == (
        "dbf(t) + B(t) <= t at all 6 test points up to L = 3.376924 ms; "
        "binding t = 1.3 ms: dbf 0.6 ms + B 0.7 ms by t3, slack 0 ms"
    )
    # U > 1: no busy-period bound
    over = edf_demand_enumerate([ATask("a", 3, 4, 4), ATask("b", 2, 4, 4)])
    assert (over.ok, over.bound, over.reason) == (False, None, "U = 1.2500 > 1")
    assert not edf_demand_qpa([ATask("a", 3, 4, 4), ATask("b", 2, 4, 4)]).ok


# ------------------------------------------------ docs/THEORY.md §edf-response


def test_set_g_response_bounds_integer_time() -> None:
    # docs/THEORY.md §edf-response: R = (8, 12, 17, 18) at worst offsets a = (4, 0, 1, 0)
    assert [edf_response_bound(G, i, eps=1) for i in range(4)] == [
        (8, 4),
        (12, 0),
        (17, 1),
        (18, 0),
    ]
    # hand check for tau1 at a = 4: B = 6, tau2 contributes one job: s = 11, r = 8
    assert edf_response_at(G, 0, 4, eps=1) == 8
    assert 4 in edf_offsets(G, 0, 59)  # D2 - D1
    # tau3: a = 0 gives 16 (blocked by tau4: 3), the released-later job a = 1 gives 17
    assert (edf_response_at(G, 2, 0, eps=1), edf_response_at(G, 2, 1, eps=1)) == (16, 17)


def test_set_g_response_bounds_continuous_time() -> None:
    # By hand from docs/THEORY.md §edf-response, blocking C_j:
    # tau1, a = 4: B = max(7 (tau3), 4 (tau4)) = 7; tau2 (D 13 <= 13) one job: s = 12, r = 9.
    # tau2, a = 0: B = 7 (tau3); tau1 one job: s = 8, r = 13.
    # tau3, a = 0: B = 4 (tau4); tau1, tau2 one job each: s = 10, r = 17; a = 1: B = 0,
    #   tau1 2 jobs (cap 1 + 10 // 10), tau2 1, tau4 1: s = 11, r = 11 + 7 - 1 = 17.
    # tau4, a = 0: no blocker; s = 1 + 5 + 7 = 13 -> tau1 again at 10: s = 14, r = 18.
    assert edf_response_at(G, 0, 4) == 9
    assert edf_response_at(G, 1, 0) == 13
    assert (edf_response_at(G, 2, 0), edf_response_at(G, 2, 1)) == (17, 17)
    assert edf_response_at(G, 3, 0) == 18
    continuous = [edf_response_bound(G, i) for i in range(4)]
    assert continuous == [(9, 4), (13, 0), (17, 0), (18, 0)]
    integer = [edf_response_bound(G, i, eps=1) for i in range(4)]
    for x, lo, hi in zip(G, integer, continuous, strict=True):
        assert lo is not None and hi is not None
        assert lo[0] <= hi[0] <= x.d


def test_response_bound_of_an_overloaded_set_is_none() -> None:
    assert edf_response_bound([ATask("a", 3, 4, 4), ATask("b", 2, 4, 4)], 0) is None


# -------------------------------------------------------- docs/THEORY.md §np-fp (CAN)


def test_can_example_second_job_misses() -> None:
    can = [ATask("t1", 4, 10, 10, prio=1), ATask("t2", 4, 14, 13, prio=2)]
    can.append(ATask("t3", 4, 14, 13, prio=3))
    r1, r2, r3 = (fp_response(can, i, eps=1) for i in range(3))
    assert (r1.bound, r1.busy_period, r1.jobs, r1.blocking) == (7, 7, (7,), 3)
    assert (r2.bound, r2.busy_period, r2.jobs, r2.blocking) == (11, 19, (11, 5), 3)
    assert (r3.bound, r3.busy_period, r3.jobs, r3.blocking) == (14, 28, (12, 14), 0)
    # the 1994 analysis (q = 0 only) would accept tau3; job 1 misses
    assert r3.jobs[0] <= 13 < r3.bound
    # continuous time: blocking C_k instead of C_k - 1; tau3 has no lower-priority blocker
    assert [fp_response(can, i).bound for i in range(3)] == [8, 12, 14]


def test_set_a_np_fp() -> None:
    a = [ATask("t1", 2, 10, 8, prio=1), ATask("t2", 3, 15, 15, prio=2)]
    a.append(ATask("t3", 6, 40, 30, prio=3))
    assert [fp_response(a, i, eps=1).bound for i in range(3)] == [7, 10, 11]
    assert [fp_response(a, i).bound for i in range(3)] == [8, 11, 11]


def test_np_fp_equal_priority_counts_as_higher() -> None:
    same = [ATask("a", 2, 10, 10, prio=1), ATask("b", 3, 10, 10, prio=1)]
    assert [fp_response(same, i).bound for i in range(2)] == [5, 5]


# ------------------------------------------------- docs/THEORY.md §lp-edf


@pytest.mark.parametrize("eps", [1, 0])
def test_set_bad_fails_fully_np_passes_with_one_preemption_point(eps: int) -> None:
    assert preemptive_edf_ok(BAD)
    assert not edf_demand_enumerate(BAD, eps).ok
    split = with_chunks(BAD, 2, (5, 3))
    assert edf_demand_enumerate(split, eps).ok and edf_demand_qpa(split, eps).ok
    assert edf_demand_qpa(with_chunks(BAD, 2, (3, 2, 3)), eps).ok


def test_largest_tolerable_chunk_q() -> None:
    # continuous: Q = min{t - dbf(t) : t < D_k} = (inf, 8 - 2, 8 - 2); integer time adds 1
    assert max_chunk_bounds(BAD) == [INF, 6, 6]
    # semantics: the demand test with tau3's blocking chunk q passes iff q <= Q_3
    for q3, ok in [(7, True), (8, False)]:
        assert edf_demand_enumerate(BAD, eps=1, q=[2, 3, q3]).ok is ok
    for q3, ok in [(6, True), (7, False)]:
        assert edf_demand_enumerate(BAD, eps=0, q=[2, 3, q3]).ok is ok
    # Q_2 = 7 (integer) as well: tau2 D = 15 > 8
    for q2, ok in [(7, True), (8, False)]:
        assert edf_demand_enumerate(BAD, eps=1, q=[2, q2, 3]).ok is ok
    # Q_1 = infinite: tau1's chunk never blocks anybody (no point below D_1 = 8)
    assert edf_demand_enumerate(BAD, eps=1, q=[1000, 3, 3]).ok


@pytest.mark.parametrize(
    ("kernels", "limit", "chunks"),
    [
        ([3, 2, 3], 7, [5, 3]),  # docs/THEORY.md §lp-edf: one preemption point
        ([3, 2, 3], 6, [5, 3]),  # continuous Q of the same set
        ([3, 2, 3], 5, [5, 3]),
        ([3, 2, 3], 4, [3, 2, 3]),
        ([3, 2, 3], INF, [8]),
        ([1, 1, 1, 1], 2, [2, 2]),
        ([3, 2, 3], 2, None),  # a kernel longer than the limit cannot be split
        ([2, 9], 8, None),
    ],
)
def test_split_chunks(kernels: list[int], limit: float, chunks: list[int] | None) -> None:
    assert split_chunks(kernels, limit) == chunks


@pytest.mark.parametrize(
    ("chunks", "integer", "continuous"),
    [
        ((8,), (9, 12, 13), (10, 13, 13)),  # tau1 9 > 8: fails
        ((5, 3), (6, 9, 15), (7, 10, 15)),
        ((3, 2, 3), (4, 7, 15), (5, 8, 15)),
    ],
)
def test_lp_edf_response_table(
    chunks: tuple[int, ...], integer: tuple[int, ...], continuous: tuple[int, ...]
) -> None:
    ts = with_chunks(BAD, 2, chunks)
    got = [edf_response_bound(ts, i, eps=1) for i in range(3)]
    assert tuple(b[0] for b in got if b) == integer
    got = [edf_response_bound(ts, i) for i in range(3)]
    assert tuple(b[0] for b in got if b) == continuous


def test_atask_validation() -> None:
    assert ATask("a", 5, 10, 10).chunks == (5,)
    assert ATask("a", 5, 10, 10, (2, 3)).q_max == 3
    assert ATask("a", 5, 10, 10, (2, 3)).q_last == 3
    with pytest.raises(ValueError, match="sum to 5"):
        ATask("a", 5, 10, 10, (2, 2))
    with pytest.raises(ValueError, match="must be > 0"):
        ATask("a", 5, 0, 10)


# ----------------------------------------------------- segmented QPA vs enumeration, randomized


def test_segmented_qpa_agrees_with_enumeration_on_10000_random_sets() -> None:
    rng = random.Random(20240611)
    verdicts: dict[tuple[bool, int, bool], int] = {}  # (constrained, eps, schedulable)
    overloaded = long_tests = 0
    qpa_points = full_points = 0
    for _ in range(10_000):
        constrained = rng.random() < 0.5
        eps = rng.randint(0, 1)
        ts = random_taskset(
            rng,
            rng.randint(2, 10),
            rng.uniform(0.3, 1.05),
            period_ns=rng.choice([(20, 60), (10, 100), (100, 300), (50, 500), (10, 1000)]),
            grain_ns=1,
            deadline_factor=(0.4, 1.0) if constrained else (1.0, 1.0),
        )
        qpa = edf_demand_qpa(ts, eps)
        full = edf_demand_enumerate(ts, eps)
        assert qpa.ok == full.ok, (ts, eps)
        assert qpa.bound == full.bound
        key = (constrained, eps, qpa.ok)
        verdicts[key] = verdicts.get(key, 0) + 1
        if qpa.bound is None:
            overloaded += 1
        elif qpa.ok:
            qpa_points += qpa.evaluated
            full_points += full.evaluated
            long_tests += full.evaluated >= 10
        else:
            # QPA's violation is a real one: the demand, the blocking and its blocker are right
            v = qpa.violation
            assert v is not None
            assert v.dbf == dbf(ts, v.t)
            later = [x for x in ts if x.d > v.t]
            assert v.blocking == max((x.c - eps for x in later), default=0)
            assert v.blocker in {x.name for x in later if x.c - eps == v.blocking} | {""}
            assert v.dbf + v.blocking > v.t
    assert len(verdicts) == 8 and min(verdicts.values()) > 500, verdicts
    assert overloaded > 500 and long_tests > 100
    assert qpa_points < full_points  # fewer demand evaluations on the schedulable sets


# ------------------------------------------------------------------- busy period termination


def test_busy_period_with_blocking_at_full_utilisation_has_no_fixed_point() -> None:
    ts = [ATask("a", 1, 2, 2), ATask("b", 1, 2, 2)]
    assert busy_period(ts) == 2
    with deadline_s(10):
        assert busy_period(ts, blocking=1) is None
        assert edf_response_bound(ts, 0) == (2, 0)
        r = fp_response([*ts, ATask("c", 1, 100, 100, prio=5)], 1)
    assert (r.bound, r.busy_period) == (INF, INF)


@pytest.mark.parametrize("policy", ["np-edf", "lp-edf"])
def test_admission_at_full_utilisation_terminates(policy: str) -> None:
    # U = 1 exactly: the demand test passes; the response bound must not loop forever
    scenario = make_scenario(
        [{"name": "a", "period_ms": 2, "wcet_ms": 1}, {"name": "b", "period_ms": 2, "wcet_ms": 1}],
        policy=policy,
    )
    with deadline_s(10):
        verdicts = admit(scenario)
    assert verdicts.schedulable
    assert [v.response_bound_ns for v in verdicts.tasks] == [2 * MS, 2 * MS]


def test_np_fp_admission_with_full_hep_utilisation_and_a_blocker_terminates() -> None:
    tasks = [
        {"name": "a", "period_ms": 2, "wcet_ms": 1},
        {"name": "b", "period_ms": 2, "wcet_ms": 1},
        {"name": "c", "period_ms": 100, "wcet_ms": 1},
    ]
    with deadline_s(10):
        verdicts = admit(make_scenario(tasks, policy="np-fp"))
    assert [v.admitted for v in verdicts.tasks] == [True, True, False]
    assert "b's level-1 busy period never ends" in verdicts.tasks[2].reason


# ------------------------------------------------------------------- scenario-level admission


def test_admission_yaml_rejects_c_at_t_20ms() -> None:
    verdicts = admit(load_scenario(ADMISSION_YAML))
    assert verdicts.policy == "np-edf" and not verdicts.schedulable
    a, b, c = verdicts.tasks
    assert (a.name, a.admitted, a.response_bound_ns) == ("A", True, 14 * MS)
    assert (b.name, b.admitted, b.response_bound_ns) == ("B", True, 14 * MS)
    assert (c.name, c.admitted, c.response_bound_ns) == ("C", False, None)
    assert c.reason == "dbf(t) + B(t) = 8 ms + 15 ms (blocking by C) = 23 ms > t at t = 20 ms"
    assert "t = 20 ms" in c.reason and "blocking by C" in c.reason
    assert verdicts.rejected == frozenset({2})
    assert verdicts.bounds() == {"A": 14 * MS, "B": 14 * MS, "C": None}


def test_admission_is_incremental_in_list_order() -> None:
    # the same three tasks with C first: C is admitted, and A is the one that cannot join
    tasks = [
        {"name": "C", "period_ms": 100, "wcet_ms": 15},
        {"name": "A", "period_ms": 20, "wcet_ms": 8},
        {"name": "B", "period_ms": 30, "deadline_ms": 25, "wcet_ms": 6},
    ]
    verdicts = admit(make_scenario(tasks))
    assert [v.admitted for v in verdicts.tasks] == [True, False, True]
    assert verdicts.tasks[1].reason == (
        "dbf(t) + B(t) = 8 ms + 15 ms (blocking by C) = 23 ms > t at t = 20 ms"
    )
    # the rejected A does not count: the bounds are those of {C, B} (C 15 + B 6 = 21 ms)
    assert verdicts.bounds() == {"C": 21 * MS, "A": None, "B": 21 * MS}


def test_admitted_tasks_carry_the_bounds_of_the_final_set() -> None:
    # A alone would have bound 8 ms; once B joins, A can be blocked by B (D 25 > 20)
    tasks = [
        {"name": "A", "period_ms": 20, "wcet_ms": 8},
        {"name": "B", "period_ms": 30, "deadline_ms": 25, "wcet_ms": 6},
    ]
    assert admit(make_scenario(tasks[:1])).bounds() == {"A": 8 * MS}
    assert admit(make_scenario(tasks)).bounds() == {"A": 14 * MS, "B": 14 * MS}


def test_np_fp_admission_names_the_job_that_misses() -> None:
    tasks = [
        {"name": "t1", "period_ms": 10, "wcet_ms": 4, "priority": 1},
        {"name": "t2", "period_ms": 14, "deadline_ms": 13, "wcet_ms": 4, "priority": 2},
        {"name": "t3", "period_ms": 14, "deadline_ms": 13, "wcet_ms": 4, "priority": 3},
    ]
    verdicts = admit(make_scenario(tasks, policy="np-fp"))
    assert [v.admitted for v in verdicts.tasks] == [True, True, False]
    assert verdicts.tasks[2].reason == (
        "its response bound 14 ms (job 1 of the level-3 busy period) > deadline 13 ms"
    )
    # bounds of the admitted pair {t1, t2} (continuous time: blocking by t2 is its full 4 ms)
    assert verdicts.bounds() == {"t1": 8 * MS, "t2": 8 * MS, "t3": None}
    assert verdicts.tasks[0].reason.startswith("priority 1: R = 8 ms <= D")


def test_np_fp_rejection_of_an_earlier_task_names_it() -> None:
    # c (priority 0) can be admitted alone, but b (deadline 5) then misses behind c's 4 ms
    tasks = [
        {"name": "b", "period_ms": 10, "deadline_ms": 5, "wcet_ms": 2, "priority": 1},
        {"name": "c", "period_ms": 50, "wcet_ms": 4, "priority": 2},
    ]
    verdicts = admit(make_scenario(tasks, policy="np-fp"))
    assert [v.admitted for v in verdicts.tasks] == [True, False]
    assert verdicts.tasks[1].reason.startswith("b's response bound 6 ms (job 0 of the level-1")


def test_lp_edf_yaml_chunks_the_planner() -> None:
    verdicts = admit(load_scenario(LP_EDF_YAML))
    assert verdicts.schedulable
    safety, tracker, planner = verdicts.tasks
    assert planner.chunks_ns == (5 * MS, 3 * MS)
    assert (safety.max_chunk_ns, tracker.max_chunk_ns, planner.max_chunk_ns) == (
        None,
        6 * MS,
        6 * MS,
    )
    assert verdicts.bounds() == {"safety": 7 * MS, "tracker": 10 * MS, "planner": 15 * MS}
    d = planner.as_dict()
    assert d["chunks_ns"] == [5 * MS, 3 * MS] and d["max_chunk_ns"] == 6 * MS
    assert "chunks_ns" not in admit(load_scenario(ADMISSION_YAML)).tasks[0].as_dict()


def test_lp_edf_without_kernels_rejects_the_long_job() -> None:
    scenario = load_scenario(LP_EDF_YAML)
    tasks = [
        {"name": "safety", "period_ms": 10, "deadline_ms": 8, "wcet_ms": 2},
        {"name": "tracker", "period_ms": 15, "wcet_ms": 3},
        {"name": "planner", "period_ms": 40, "deadline_ms": 30, "wcet_ms": 8},
    ]
    lp = admit(make_scenario(tasks, policy="lp-edf"))
    assert [v.admitted for v in lp.tasks] == [True, True, False]
    assert lp.tasks[2].reason == (
        "its largest kernel 8 ms exceeds the largest tolerable non-preemptive chunk Q = 6 ms"
    )
    # fully non-preemptive EDF rejects the same set at t = 8 ms (the file's comment)
    np_edf = admit(make_scenario(tasks))
    assert np_edf.tasks[2].reason == (
        "dbf(t) + B(t) = 2 ms + 8 ms (blocking by planner) = 10 ms > t at t = 8 ms"
    )
    assert scenario.tasks[2].kernels_ns == (3 * MS, 2 * MS, 3 * MS)


def test_lp_edf_rejects_what_fails_even_preemptive() -> None:
    tasks = [
        {"name": "a", "period_ms": 10, "deadline_ms": 3, "wcet_ms": 2},
        {"name": "b", "period_ms": 10, "deadline_ms": 3, "wcet_ms": 2},
    ]
    verdicts = admit(make_scenario(tasks, policy="lp-edf"))
    assert [v.admitted for v in verdicts.tasks] == [True, False]
    assert verdicts.tasks[1].reason.startswith("fails even fully preemptive: dbf(t) + B(t) = 4 ms")


def test_policies_without_analysis_admit_everything() -> None:
    verdicts = admit(load_scenario(ROOT / "scenarios/fifo.yaml"))
    assert verdicts.schedulable
    for v in verdicts.tasks:
        assert v.response_bound_ns is None and v.test == "none"
        assert v.reason == "no admission test for policy fifo: admitted without analysis"


def test_scenario_jitter_is_arrival_jitter_not_a_shorter_separation() -> None:
    # docs/THEORY.md §jitter: jitter J on period T is the analysis's burst (k gaps >= k T - J)
    scenario = make_scenario([{"name": "a", "period_ms": 10, "jitter_ms": 2, "wcet_ms": 1}])
    assert analysis_task(scenario.tasks[0], budgets(scenario)[0]) == ATask(
        "a", 1 * MS, 10 * MS, 10 * MS, burst=2 * MS
    )
    # (C 5, T 10, J 6): two releases can come 4 ms apart, the next ones 10 ms later. As a
    # sporadic task of separation T - J it had U = 5/4 > 1; its real worst response is 6 ms
    # (second job released 4 ms after the first, started when it ends at 5 ms)
    alone = [{"name": "a", "period_ms": 10, "jitter_ms": 6, "wcet_ms": 5}]
    for policy in ("np-edf", "lp-edf", "np-fp"):
        assert admit(make_scenario(alone, policy=policy)).bounds() == {"a": 6 * MS}
    # (C 6, T 10, J 4) with (C 2, T 100, D 12): rejected before as U = 6/6 + 2/100 > 1
    base = {"name": "a", "period_ms": 10, "wcet_ms": 6, "jitter_ms": 4}
    other = {"name": "b", "period_ms": 100, "deadline_ms": 12, "wcet_ms": 2}
    edf = admit(make_scenario([base, other]))
    assert edf.bounds() == {"a": 8 * MS, "b": 10 * MS}  # b blocks a; a twice before b
    fp = admit(make_scenario([base, other], policy="np-fp"))
    # b under a: a at 0 and 6 ms (T - J), b starts at 12 ms: R = 14 ms > 12 ms
    assert fp.tasks[1].reason.startswith("its response bound 14 ms (job 0 of the level-1")
    # exact: the critical patterns (a's second release T - J after its first) reach the bounds
    for verdicts in (edf, fp):
        result = check(make_scenario([base, other], policy=verdicts.policy), runs=0)
        assert [r.bound_ns - r.worst_sim_ns for r in result.rows] in ([0, 1], [0])


def test_admission_needs_a_wcet() -> None:
    from aegis_core.model.errors import ScenarioError

    with pytest.raises(ScenarioError, match="wcet_ms"):
        admit(make_scenario([{"name": "a", "period_ms": 10, "model": "resnet18"}]))


# ------------------------------------------------------------------------------ aegis admit


def test_aegis_admit_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admit", str(ADMISSION_YAML)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "admission · np-edf · 2 of 3 admitted"
    assert lines[1].split() == (
        ["task", "verdict", "C", "ms", "C", "from", "T", "ms", "D", "ms", "bound", "ms", "reason"]
    )
    assert lines[2].split()[:7] == [
        "A",
        "admitted",
        "8.000",
        "wcet_ms",
        "20.000",
        "20.000",
        "14.000",
    ]
    assert lines[3].split()[:7] == [
        "B",
        "admitted",
        "6.000",
        "wcet_ms",
        "30.000",
        "25.000",
        "14.000",
    ]
    assert lines[4].split()[:7] == ["C", "REJECTED", "15.000", "wcet_ms", "100.000", "100.000", "-"]
    assert lines[4].endswith("= 23 ms > t at t = 20 ms")
    assert len(lines) == 5


def test_aegis_admit_table_shows_chunks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admit", str(LP_EDF_YAML)]) == 0
    out = capsys.readouterr().out
    assert "chunks [5.000, 3.000] ms (largest tolerable 6.000)" in out
    assert "3 of 3 admitted" in out


def test_aegis_admit_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admit", str(ADMISSION_YAML), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {
        "policy",
        "schedulable",
        "tasks",
        "memory",
        "analysis_points",
    }  # memory: tasks have models
    assert set(doc["memory"]) == {"sharing", "arena_bytes", "weights_bytes", "inputs_bytes"}
    assert (doc["policy"], doc["schedulable"]) == ("np-edf", False)
    design_keys = {
        "name", "admitted", "wcet_ns", "period_ns", "deadline_ns", "response_bound_ns", "reason",
    }  # fmt: skip
    for t in doc["tasks"]:
        assert design_keys <= set(t)
    a, b, c = doc["tasks"]
    assert {k: a[k] for k in design_keys - {"reason"}} == {
        "name": "A",
        "admitted": True,
        "wcet_ns": 8_000_000,
        "period_ns": 20_000_000,
        "deadline_ns": 20_000_000,
        "response_bound_ns": 14_000_000,
    }
    assert (b["deadline_ns"], b["response_bound_ns"]) == (25_000_000, 14_000_000)
    assert (c["name"], c["admitted"], c["response_bound_ns"]) == ("C", False, None)
    assert c["reason"] == "dbf(t) + B(t) = 8 ms + 15 ms (blocking by C) = 23 ms > t at t = 20 ms"


def test_aegis_admit_exit_0_when_all_admitted(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admit", str(LP_EDF_YAML), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schedulable"] is True and all(t["admitted"] for t in doc["tasks"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ntasks:\n  - {name: a, period_ms: 10, wcet_ms: 11}\n", "wcet_ms"),
        ("name: x\ntasks:\n  - {name: a, period_ms: 10, wcet_ms: 1, colour: red}\n", "colour"),
        ("name: x\ntasks:\n  - {name: a, period_ms: 10, model: resnet18}\n", "wcet_ms"),
        (None, "no such scenario file"),
    ],
)
def test_aegis_admit_exit_2_on_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, message: str
) -> None:
    path = tmp_path / "s.yaml"
    if text is not None:
        path.write_text(text)
    assert main(["admit", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("aegis: error: ") and message in captured.err
    assert "Traceback" not in captured.err


# ---------------------------------------------------------- aegis sim on scenarios/admission.yaml


def _sim(
    tmp_path: Path, scenario: Path, *extra: str
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    assert main(["sim", str(scenario), "--out", str(tmp_path), *extra]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    with open(tmp_path / "jobs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return summary, rows


def test_sim_enforces_admission(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary, rows = _sim(tmp_path, ADMISSION_YAML)
    assert "not run (rejected by admission): C" in capsys.readouterr().out
    assert summary["admission"] == {"enforced": True, "schedulable": False, "rejected": ["C"]}
    assert summary["misses"] == 0
    per_task = {t["name"]: t for t in summary["tasks"]}
    assert per_task["C"]["jobs"] == per_task["C"]["rejected"] == 20
    assert per_task["C"]["completed"] == 0
    for name in ("A", "B"):
        assert per_task[name]["misses"] == 0 and per_task[name]["rejected"] == 0
        assert per_task[name]["response_ns"]["max"] <= 14 * MS
    c_rows = [r for r in rows if r["task"] == "C"]
    assert len(c_rows) == 20
    for r in c_rows:
        assert r["status"] == "rejected" and r["missed"] == "false"
        assert r["start_ns"] == r["end_ns"] == r["response_ns"] == r["exec_ns"] == ""
    assert all(
        r["status"] == "completed" and r["missed"] == "false" for r in rows if r["task"] != "C"
    )
    records = read_trace(tmp_path / "trace.jsonl")
    decisions = [(r["kind"], r["task"]) for r in records if r["kind"] in ("admit", "reject")]
    assert decisions == [("admit", "A"), ("admit", "B"), ("reject", "C")]
    reject = next(r for r in records if r["kind"] == "reject")
    assert reject["rationale"]["reason"].endswith("> t at t = 20 ms")
    assert reject["enforced"] is True
    assert not [r for r in records if r.get("task") == "C" and r["kind"] != "reject"]
    assert not [r for r in records if str(r.get("job", "")).startswith("C#")]


def test_sim_without_admission_runs_c(tmp_path: Path) -> None:
    # As written (every offset 0) nothing misses: A's releases never meet a running C. C does
    # run, and A's response then exceeds the 14 ms bound of the admitted set {A, B}.
    summary, rows = _sim(tmp_path, ADMISSION_YAML, "--no-admission")
    assert summary["admission"]["enforced"] is False
    assert summary["admission"]["rejected"] == ["C"]
    per_task = {t["name"]: t for t in summary["tasks"]}
    assert per_task["C"]["completed"] == 20 and per_task["C"]["rejected"] == 0
    assert summary["misses"] == 0
    assert per_task["A"]["response_ns"]["max"] == 17 * MS > 14 * MS
    assert all(r["status"] == "completed" for r in rows)
    records = read_trace(tmp_path / "trace.jsonl")
    reject = next(r for r in records if r["kind"] == "reject")
    assert (reject["task"], reject["enforced"]) == ("C", False)
    assert any(r["kind"] == "release" and r["job"] == "C#0" for r in records)


def test_sim_without_admission_misses_when_c_starts_just_before_a(tmp_path: Path) -> None:
    # The rejection reason's scenario: C starts 1 ns before A's release at 20 ms; A then waits
    # for C (15 ms) and completes at 20 + 23 ms - 1 ns: it misses its 40 ms deadline.
    doc = ADMISSION_YAML.read_text().replace(
        "    wcet_ms: 15", "    wcet_ms: 15\n    offset_ms: 19.999999"
    )
    assert "offset_ms: 19.999999" in doc
    path = tmp_path / "admission.yaml"
    path.write_text(doc)
    summary, rows = _sim(tmp_path / "off", path, "--no-admission")
    a1 = next(r for r in rows if r["job"] == "A#1")
    assert (int(a1["release_ns"]), int(a1["response_ns"])) == (20 * MS, 23 * MS - 1)
    assert a1["missed"] == "true"
    assert summary["misses"] >= 1
    # with admission, the same file has no miss
    summary, _ = _sim(tmp_path / "adm", path)
    assert summary["misses"] == 0


def test_admission_reason_in_ms_matches_the_worked_example_scaled() -> None:
    # docs/THEORY.md §edf-response: set G at 0.1 ms ticks as a scenario, continuous bounds
    tasks = [
        {"name": x.name, "period_ms": x.t / 10, "deadline_ms": x.d / 10, "wcet_ms": x.c / 10}
        for x in G
    ]
    verdicts = admit(make_scenario(tasks))
    assert verdicts.schedulable
    assert [v.response_bound_ns for v in verdicts.tasks] == [r * 100_000 for r in (9, 13, 17, 18)]
    assert math.isclose(float(utilisation(scaled(G, 100_000))), 0.9133, abs_tol=1e-4)
