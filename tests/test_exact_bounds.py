"""Exact bounds (docs/THEORY.md §edf-response, §np-fp, §jitter, §worst-case): the continuous-time
supremum, hand-computed, against the 1-tick analysis and against ``aegis check``'s critical
patterns; random sets at a finer tick and with late releases never exceed it."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

import pytest
from conftest import MS, make_scenario
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_core.analysis.admission import admit
from aegis_core.analysis.bounds import (
    ATask,
    edf_demand_qpa,
    edf_offsets,
    edf_response_at,
    edf_response_bound,
    fp_response,
)
from aegis_core.analysis.taskgen import random_taskset, scaled, scenario_of, split_evenly_random
from aegis_core.budget import budgets
from aegis_core.run.loop import run
from aegis_core.run.plan import RunPlan
from aegis_core.run.scheduler import Scheduler
from aegis_core.run.testing import FakeEngine
from aegis_core.tools.check import check

POLICIES = ("np-edf", "lp-edf", "np-fp")


def in_ms(ts: Sequence[ATask]) -> list[ATask]:
    return [
        dataclasses.replace(x, c=x.c * MS, t=x.t * MS, d=x.d * MS,
                            chunks=tuple(c * MS for c in x.chunks))
        for x in ts
    ]  # fmt: skip


# ------------------------------------------------------------------------ hand-computed


def test_np_edf_blocker_and_a_release_at_the_start_are_not_both_charged() -> None:
    # {(C1,T2,D2), (C1,T8,D7), (C1,T5,D5)}, task 3 at a = 0: blocked by task 2 (D 7 > 5) for
    # 1; task 1's job released at 0 runs next: s = 1 + 1 = 2. Task 1's next release is at
    # exactly s = 2: it cannot also be charged (the blocker started before 0, so task 3 can
    # start just before 2). R = 2 + 1 = 3; the earlier closed count gave s = 3, R = 4.
    ts = [ATask("t1", 1, 2, 2), ATask("t2", 1, 8, 7), ATask("t3", 1, 5, 5)]
    assert edf_response_bound(ts, 2) == (3, 0)
    assert edf_response_bound(ts, 2, closed=True) == (4, 0)
    # integer time (blocking C - 1 = 0, releases in [0, s]): the limit minus one tick
    assert edf_response_bound(ts, 2, eps=1) == (2, 0)
    # task 2 has no blocker (largest deadline): [0, s] counts, nothing changes
    assert edf_response_bound(ts, 1) == edf_response_bound(ts, 1, closed=True) == (4, 0)
    result = check(scenario_of(in_ms(ts), "np-edf"), runs=0, engine=FakeEngine)
    assert [(r.bound_ns, r.worst_sim_ns) for r in result.rows] == [
        (2 * MS, 2 * MS - 1),
        (4 * MS, 4 * MS),
        (3 * MS, 3 * MS - 1),
    ]


def test_np_fp_issue_example_is_admitted_with_bound_3ms() -> None:
    # {(C1,T2,D2,prio 0), (C1,T7,D4,prio 2), (C1,T4,D3,prio 1)} ms. Task 3 (prio 1): blocked by
    # task 2 for 1 ms, task 1 released at 0 runs 1-2 ms; its next release at exactly w = 2 ms
    # cannot overtake (a blocker was charged): w = 2, R = 3 ms <= D = 3 ms. The closed count
    # made w = 3, R = 4 ms > 3 ms: rejected.
    ts = [ATask("t1", 1, 2, 2, prio=0), ATask("t2", 1, 7, 4, prio=2)]
    ts.append(ATask("t3", 1, 4, 3, prio=1))
    got = [fp_response(ts, i) for i in range(3)]
    assert [(r.bound, r.busy_period, r.jobs, r.blocking) for r in got] == [
        (2, 2, (2,), 1),
        (4, 4, (4,), 0),
        (3, 4, (3,), 1),
    ]
    assert fp_response(ts, 2, closed=True).bound == 4
    tasks = [
        {"name": x.name, "period_ms": x.t, "deadline_ms": x.d, "wcet_ms": x.c, "priority": x.prio}
        for x in ts
    ]
    scenario = make_scenario(tasks, policy="np-fp")
    verdicts = admit(scenario)
    assert verdicts.schedulable
    assert verdicts.bounds() == {"t1": 2 * MS, "t2": 4 * MS, "t3": 3 * MS}
    result = check(scenario, runs=2, engine=FakeEngine)
    assert result.ok
    assert [r.bound_ns - r.worst_sim_ns for r in result.rows] == [1, 0, 1]


def test_lp_edf_last_chunk_starts_before_the_release_at_its_start() -> None:
    # {t1 (1,3,2), t2 (2,6,5) in chunks (1,1), t3 (1,8,7)}, t2 at a = 0: t3 blocks 1; t1 (due 2
    # <= 5) runs, then t2's first chunk: its last chunk starts at s = 1 + 1 + 1 = 3, where t1
    # is released again; with the blocker charged that release does not go first: R = 4
    # (closed count: 5).
    ts = [ATask("t1", 1, 3, 2), ATask("t2", 2, 6, 5, (1, 1)), ATask("t3", 1, 8, 7)]
    assert [edf_response_bound(ts, i) for i in range(3)] == [(2, 0), (4, 0), (5, 0)]
    assert edf_response_bound(ts, 1, closed=True) == (5, 0)
    assert edf_response_at(ts, 1, 0, eps=1) == 3  # the 1-tick analysis: one tick less
    scenario = scenario_of(in_ms(ts), "lp-edf")
    verdicts = admit(scenario)
    assert verdicts.schedulable and verdicts.tasks[1].chunks_ns == (MS, MS)
    assert verdicts.bounds() == {"t1": 2 * MS, "t2": 4 * MS, "t3": 5 * MS}
    result = check(scenario, runs=0, engine=FakeEngine)
    assert [r.bound_ns - r.worst_sim_ns for r in result.rows] == [1, 1, 0]


def test_set_g_every_bound_reached_within_1ns() -> None:
    # docs/THEORY.md §edf-response, set G at 0.1 ms ticks: bounds 0.9, 1.3, 1.7, 1.8 ms; t4's
    # 1.8 ms needs t1's job due with t4's to go first: its pattern releases t4 half a ns late
    g = [ATask("t1", 1, 10, 9), ATask("t2", 5, 15, 13), ATask("t3", 7, 25, 18)]
    g.append(ATask("t4", 4, 20, 19))
    ts = [dataclasses.replace(x, c=x.c * 100_000, t=x.t * 100_000, d=x.d * 100_000,
                              chunks=(x.c * 100_000,)) for x in g]  # fmt: skip
    result = check(scenario_of(ts, "np-edf"), runs=0, engine=FakeEngine)
    assert [r.bound_ns for r in result.rows] == [900_000, 1_300_000, 1_700_000, 1_800_000]
    assert [r.worst_sim_ns for r in result.rows] == [899_999, 1_299_999, 1_699_999, 1_799_999]


def test_can_example_integer_time_unchanged_and_continuous_limit() -> None:
    # docs/THEORY.md §np-fp: the CAN flaw in integer time (eps = 1) keeps its published
    # numbers; continuous time: blocking C_k, releases at w not counted when blocked
    can = [ATask("t1", 4, 10, 10, prio=1), ATask("t2", 4, 14, 13, prio=2)]
    can.append(ATask("t3", 4, 14, 13, prio=3))
    assert [fp_response(can, i, eps=1).jobs for i in range(3)] == [(7,), (11, 5), (12, 14)]
    assert [fp_response(can, i).jobs for i in range(3)] == [(8,), (12, 6), (12, 14)]


@pytest.mark.parametrize("policy", POLICIES)
def test_continuous_bound_is_the_1_tick_bound_plus_one_when_blocked(policy: str) -> None:
    # the eps -> 0 limit (docs/THEORY.md §edf-response): on integer parameters the supremum is
    # the 1-tick analysis plus one tick exactly when a blocker is charged
    rng = random.Random(len(policy))
    checked = blocked = 0
    for _ in range(300):
        ts = random_taskset(rng, rng.randint(2, 4), rng.uniform(0.3, 0.9), period_ns=(4, 40),
                            grain_ns=1, deadline_factor=(0.5, 1.0),
                            kernels=(1, 3) if policy == "lp-edf" else None)  # fmt: skip
        ts = [dataclasses.replace(x, prio=k) for k, x in enumerate(ts)]
        for i, x in enumerate(ts):
            if policy == "np-fp":
                r0, r1 = fp_response(ts, i), fp_response(ts, i, eps=1)
                if r0.bound == float("inf"):
                    continue
                lower = any(y.prio > x.prio for y in ts)
                # (the continuous busy period, with 1 tick more blocking, may hold more jobs)
                assert len(r0.jobs) >= len(r1.jobs)
                assert {a - b for a, b in zip(r0.jobs, r1.jobs, strict=False)} == {int(lower)}
                checked += 1
                blocked += lower
                continue
            if not edf_demand_qpa(ts).ok:
                break
            for a in edf_offsets(ts, i, 4 * max(y.t for y in ts)):
                has = any(k != i and y.d > a + x.d for k, y in enumerate(ts))
                step = edf_response_at(ts, i, a) - edf_response_at(ts, i, a, eps=1)
                # max(C, .) can hide the step on infeasible offsets
                assert step == int(has) or edf_response_at(ts, i, a, eps=1) == x.c
                checked += 1
                blocked += has
    assert checked > 300 and blocked > 100


# ------------------------------------------------------------------------- randomized


def sets(policy: str, n: int, seed: int, jitter: float = 0.0) -> list[list[ATask]]:
    """``random_taskset``: n in [2, 5], U in [0.3, 0.9], T log-uniform 1-20 ms on a 1 µs
    grain, D ~ U(0.5, 1) T, lp-edf 1-4 kernels; a task has jitter < T/2 with prob. ``jitter``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ts = random_taskset(rng, rng.randint(2, 5), rng.uniform(0.3, 0.9),
                            period_ns=(MS, 20 * MS), grain_ns=1000, deadline_factor=(0.5, 1.0),
                            kernels=(1, 4) if policy == "lp-edf" else None)  # fmt: skip
        out.append([
            dataclasses.replace(x, burst=rng.randrange(x.t // 2)) if rng.random() < jitter else x
            for x in ts
        ])  # fmt: skip
    return out


@pytest.mark.parametrize("policy", POLICIES)
def test_bounds_are_reached_within_1ns_and_never_exceeded_at_a_finer_tick(policy: str) -> None:
    admitted = jittered = 0
    for n, ts in enumerate(sets(policy, 250, seed=len(policy), jitter=0.3)):
        scenario = scenario_of(ts, policy)
        verdicts = admit(scenario)
        result = check(scenario, runs=0, engine=FakeEngine, admission=verdicts)
        by_name = {x.name: x for x in ts}
        for row in result.rows:
            assert 0 <= row.bound_ns - row.worst_sim_ns <= 1, (ts, row)
            admitted += 1
            jittered += by_name[row.name].burst > 0
        # a 0.1 ns tick: every time x10, random sporadic offsets; the bounds scale exactly
        fine = dataclasses.replace(scaled(scenario, 10), seed=n)
        fine_verdicts = admit(fine)
        assert [v.response_bound_ns for v in fine_verdicts.tasks] == [
            None if v.response_bound_ns is None else 10 * v.response_bound_ns
            for v in verdicts.tasks
        ]
        finer = check(fine, runs=2, engine=FakeEngine, admission=fine_verdicts, critical=False)
        assert finer.ok, finer.as_dict()
    assert admitted >= 450 and jittered >= 100, (admitted, jittered)


# ------------------------------------------------------- Davis jitter: releases seen late


def test_late_engine_keeps_the_planned_release() -> None:
    ts = [ATask("a", 2 * MS, 10 * MS, 10 * MS)]
    scenario = scenario_of(ts, "np-edf", duration_ns=20 * MS)
    plan = RunPlan.build(scenario)
    scheduler = Scheduler.for_plan(plan)
    run(plan, scheduler, FakeEngine(lag={(0, 0): 3 * MS, (0, 1): 0}))
    a0, a1 = scheduler.jobs
    assert (a0.release_ns, a0.start_ns, a0.response_ns, a0.lag_ns) == (0, 3 * MS, 5 * MS, 3 * MS)
    assert (a1.release_ns, a1.response_ns) == (10 * MS, 2 * MS)


def test_davis_jitter_hand_example() -> None:
    # a (C 2, T 10, J 3) alone: seen up to 3 ms late, R = J + C = 5 under every analysis;
    # with b (C 4, T 20, D 20) below it: b blocks a for 4 ms after a is seen: R_a = 3 + 4 + 2
    a = ATask("a", 2, 10, 10, prio=0, j=3)
    b = ATask("b", 4, 20, 20, prio=1)
    assert edf_response_bound([a], 0) == (5, -3)
    assert fp_response([a], 0).bound == 5
    assert edf_response_bound([a, b], 0) == (9, -3)
    assert fp_response([a, b], 0).bound == 9
    # b: a's job released at -3 is seen at 0 with b; the next a at 7 comes after b started
    assert edf_response_bound([a, b], 1) == (6, 0)
    assert fp_response([a, b], 1).jobs == (6,)


@pytest.mark.parametrize("policy", POLICIES)
def test_bounds_with_davis_jitter_hold_when_releases_are_seen_late(policy: str) -> None:
    rng = random.Random(7 + len(policy))
    checked = late = 0
    for n, ts in enumerate(sets(policy, 60, seed=100 + len(policy))):
        lags = [rng.choice([0, 0, rng.randrange(x.t // 4 + 1)]) for x in ts]
        scenario = dataclasses.replace(scenario_of(ts, policy), seed=n)
        jittered = [
            dataclasses.replace(x, j=g, prio=p)
            for x, g, p in zip(ts, lags, range(len(ts)), strict=True)
        ]
        if policy == "np-fp":  # list order = priority order
            tasks = tuple(dataclasses.replace(t, priority=k) for k, t in enumerate(scenario.tasks))
            scenario = dataclasses.replace(scenario, tasks=tasks)
        plan = RunPlan.build(scenario)  # no admission: lp-edf jobs run as their kernels
        chunked = [dataclasses.replace(x, chunks=b.chunks_ns)
                   for x, b in zip(jittered, budgets(scenario), strict=True)]  # fmt: skip
        if policy == "np-fp":
            bound = [fp_response(chunked, i).bound for i in range(len(ts))]
        else:
            got = [edf_response_bound(chunked, i) for i in range(len(ts))]
            bound = [float("inf") if r is None else r[0] for r in got]
        lag = {(r.task_index, r.k): rng.randint(0, lags[r.task_index]) for r in plan.releases}
        scheduler = Scheduler.for_plan(plan)
        run(plan, scheduler, FakeEngine(lag=lag))
        for job in scheduler.jobs:
            if job.response_ns is not None and bound[job.task_index] != float("inf"):
                assert job.response_ns <= bound[job.task_index], (policy, chunked, job)
                checked += 1
                late += job.lag_ns > 0
    assert checked > 1000 and late > 100, (checked, late)


# ------------------------------------------------------------------- property (hypothesis)

small_task = st.tuples(
    st.integers(2, 12),  # T
    st.floats(0.05, 0.5),  # C / T
    st.floats(0.4, 1.0),  # D / T
    st.integers(1, 3),  # kernels
    st.floats(0.0, 0.9),  # jitter / T (0 half the time)
    st.booleans(),
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.sampled_from(POLICIES), st.lists(small_task, min_size=2, max_size=4))
def test_every_admitted_bound_is_reached_within_1ns(policy: str, raw: list[Any]) -> None:
    # parameters in µs ticks (1 µs = 1000 ns): the supremum is never below what the critical
    # pattern reaches and never more than 1 ns above it
    ts = []
    for k, (t, cu, du, parts, ju, jittered) in enumerate(raw):
        c = max(1, int(cu * t))
        d = max(c, int(du * t))
        rng = random.Random(k)
        chunks = split_evenly_random(c, parts, rng) if policy == "lp-edf" else [c]
        burst = int(ju * t) if jittered else 0
        ts.append(ATask(f"t{k}", c, t, d, tuple(chunks), burst=burst))
    us = [dataclasses.replace(x, c=x.c * 1000, t=x.t * 1000, d=x.d * 1000, burst=x.burst * 1000,
                              chunks=tuple(c * 1000 for c in x.chunks)) for x in ts]  # fmt: skip
    result = check(scenario_of(us, policy), runs=1, engine=FakeEngine)
    assert result.ok
    for row in result.rows:
        assert 0 <= row.bound_ns - row.worst_sim_ns <= 1, (ts, row)
