"""Lazy releases and lazy profile replay (docs/CONTRACTS.md §arrivals): the same sequences as
the eager algorithms they replaced (kept here as the reference), for every scenario and seed
of the golden runs and over long horizons; the plan holds no release list."""

from __future__ import annotations

import dataclasses
import heapq
import tracemalloc
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aegis_core.budget import budgets
from aegis_core.model.scenario import Arrival, Scenario, Task, load_scenario, parse_scenario
from aegis_core.run.arrivals import (
    BLOCK,
    PlannedReleases,
    iter_releases,
    release_count,
    releases,
    task_release_times,
    task_rng,
)
from aegis_core.run.cursor import ReleaseCursor
from aegis_core.run.events import Release
from aegis_core.run.plan import RunPlan, SampledModel, WcetModel
from aegis_core.run.testing import make_profile

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
SEEDS = (0, 1, 4, 7, 42)  # the scenarios' own seeds (0) and those the result tests pass
MS = 1_000_000

# ----------------------------------------------------------------------------- the reference


def eager_task_release_times(task: Task, seed: int, horizon_ns: int) -> list[int]:
    """The arrival generator as it was before it became lazy (every block up front)."""
    if task.offset_ns >= horizon_ns:
        return []
    rng = task_rng(seed, task)
    times: list[int] = []
    start = task.offset_ns
    while start < horizon_ns:
        gaps = np.full(BLOCK, task.period_ns, dtype=np.int64)
        if task.arrival is Arrival.SPORADIC:
            gaps += rng.integers(0, task.slack_ns, size=BLOCK, endpoint=True, dtype=np.int64)
        elif task.arrival is Arrival.POISSON and task.slack_ns > 0:
            gaps += np.rint(rng.exponential(task.slack_ns, size=BLOCK)).astype(np.int64)
        nominal = start + np.concatenate(([0], np.cumsum(gaps[:-1])))
        actual = nominal
        if task.jitter_ns:
            actual = nominal + rng.integers(0, task.jitter_ns, size=BLOCK, endpoint=True)
        times.extend(actual[actual < horizon_ns].tolist())
        start = int(nominal[-1] + gaps[-1])
    return times


def eager_releases(scenario: Scenario, seed: int) -> list[Release]:
    per_task = [
        [
            Release(t, i, k)
            for k, t in enumerate(eager_task_release_times(task, seed, scenario.duration_ns))
        ]
        for i, task in enumerate(scenario.tasks)
    ]
    return list(heapq.merge(*per_task))


def eager_by_seq(samples: list[tuple[int, ...] | None], plan: list[Release], seed: int) -> list:
    """SampledModel's draws as they were: every job's up front, indexed by release seq."""
    counts = [0] * len(samples)
    for r in plan:
        counts[r.task_index] += 1
    draws: list[list[int] | None] = []
    for i, s in enumerate(samples):
        if not s:
            draws.append(None)
            continue
        picks = np.random.default_rng([seed, i]).integers(0, len(s), size=counts[i])
        draws.append([s[j] for j in picks.tolist()])
    return [None if (d := draws[r.task_index]) is None else d[r.k] for r in plan]


# ----------------------------------------------------------------------------- same sequences


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_lazy_releases_equal_the_eager_ones_for_the_golden_scenarios(path: Path) -> None:
    s = load_scenario(path)
    for seed in {s.seed, *SEEDS}:
        want = eager_releases(s, seed)
        assert list(iter_releases(s, seed)) == want
        assert releases(s, seed) == want
        plan = PlannedReleases(s, seed)
        assert list(plan) == want and list(plan) == want  # re-iterable, the same each time
        assert len(plan) == len(want) == release_count(s, seed)


def long_mix(seed: int) -> Scenario:
    """Every arrival kind, offsets, jitter and ties, over ≥ 10 blocks per task."""
    period = 1.0
    doc: dict[str, Any] = {"name": "long", "seed": seed, "tasks": [
        {"name": "p", "period_ms": period},
        {"name": "po", "period_ms": period, "offset_ms": 0.25},
        {"name": "pj", "period_ms": period, "jitter_ms": 0.999},
        {"name": "s", "period_ms": period, "arrival": "sporadic", "slack_ms": 0.5},
        {"name": "sj", "period_ms": 2 * period, "arrival": "sporadic", "jitter_ms": 1.5,
         "offset_ms": 3},
        {"name": "q", "period_ms": period, "arrival": "poisson", "slack_ms": 0.3},
        {"name": "qj", "period_ms": 0.5, "arrival": "poisson", "jitter_ms": 0.2},
        {"name": "q0", "period_ms": period, "arrival": "poisson", "slack_ms": 0},
    ]}  # fmt: skip
    doc["duration_ms"] = 10 * BLOCK * 2 * period * 1.75 + 0.5  # sj: ≥ 10 blocks of ≤ 3.5 ms
    return parse_scenario(doc)


@pytest.mark.parametrize("seed", [0, 3])
def test_lazy_releases_equal_the_eager_ones_over_long_horizons(seed: int) -> None:
    s = long_mix(seed)
    want = eager_releases(s, seed)
    got = list(iter_releases(s))
    assert got == want
    for i, t in enumerate(s.tasks):
        n = sum(1 for r in want if r.task_index == i)
        assert n >= 10 * BLOCK, t.name
        assert task_release_times(t, seed, s.duration_ns) == [
            r.t_ns for r in want if r.task_index == i
        ]


def test_horizons_past_int64_block_sums_match_the_reference() -> None:
    """Past ~104 days a block's sums no longer fit int64 at worst; Python ints take over,
    with the same releases."""
    day = 86_400_000.0
    doc = {"name": "years", "duration_ms": 400 * day, "seed": 5, "tasks": [
        {"name": "d", "period_ms": day, "jitter_ms": day / 2},
        {"name": "s", "period_ms": day / 3, "arrival": "sporadic", "offset_ms": 7},
        {"name": "q", "period_ms": day / 5, "arrival": "poisson", "jitter_ms": 1}]}  # fmt: skip
    s = parse_scenario(doc)
    got = releases(s)
    assert got == eager_releases(s, s.seed) and len(got) > 3 * 400
    assert all(type(r.t_ns) is int for r in got)


def test_a_period_too_long_for_a_block_no_longer_wraps() -> None:
    """``period_ms: 1e10``: 1024 periods pass int64; the old generator wrapped and released
    phantom jobs at negative times. One release now, at the offset."""
    s = parse_scenario({"name": "w", "duration_ms": 1000, "tasks": [
        {"name": "a", "period_ms": 1e10, "offset_ms": 3},
        {"name": "b", "period_ms": 1e10, "arrival": "sporadic", "jitter_ms": 0.5}]})  # fmt: skip
    got = releases(s)
    assert [(r.task_index, r.k) for r in got] == [(1, 0), (0, 0)]
    assert got[1].t_ns == 3 * MS and 0 <= got[0].t_ns <= MS // 2
    assert len(eager_releases(s, s.seed)) > len(got)  # the old one's phantoms


# ----------------------------------------------------------------------------- the cursor


def test_the_cursor_hands_back_the_stream_once_in_order() -> None:
    s = long_mix(1)
    want = releases(s)
    cursor = ReleaseCursor(PlannedReleases(s, s.seed))
    got: list[Release] = []
    now = 0
    while (nxt := cursor.next_ns()) is not None:
        assert cursor.take(nxt - 1) == []  # never before its time
        now = max(now, nxt) + 7 * MS // 10
        batch = cursor.take(now)
        assert batch and all(r.t_ns <= now for r in batch)
        got += batch
    assert got == want
    assert cursor.take(10**18) == [] and cursor.next_ns() is None
    assert ReleaseCursor().next_ns() is None


# ----------------------------------------------------------------------------- no list held


def test_a_ten_hour_plan_at_one_microsecond_holds_no_release_list() -> None:
    """3.6·10¹⁰ releases: building the plan and taking the first 10 000 needs O(tasks × BLOCK)
    memory (tracemalloc, not a clock); the plan holds only (scenario, seed)."""
    doc = {"name": "ten-hours", "duration_ms": 10 * 3_600_000, "tasks": [
        {"name": "fast", "period_ms": 0.001, "wcet_ms": 0.0001},
        {"name": "slow", "period_ms": 10, "wcet_ms": 1, "arrival": "sporadic"},
        {"name": "odd", "period_ms": 0.003, "wcet_ms": 0.0001, "arrival": "poisson",
         "jitter_ms": 0.001}]}  # fmt: skip
    s = parse_scenario(doc)
    tracemalloc.start()
    try:
        plan = RunPlan.build(s)
        cursor = ReleaseCursor(plan.releases)
        taken = 0
        while taken < 10_000:
            nxt = cursor.next_ns()
            assert nxt is not None
            taken += len(cursor.take(nxt))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # an eager plan: > 10¹⁰ Release tuples
    assert isinstance(plan.releases, PlannedReleases)
    assert [f.name for f in dataclasses.fields(plan.releases)] == ["scenario", "seed"]
    assert list(islice(plan.releases, 2)) == [Release(0, 0, 0), Release(0, 1, 0)]


# ----------------------------------------------------------------------------- profile replay


def with_samples(s: Scenario) -> list:
    """Each task's budget, given samples (a varied number, one task left without)."""
    out = []
    for b in budgets(s):
        n = 1 + (b.index * 37) % 61
        samples = None if b.index == 1 else tuple(b.wcet_ns - 10 * j for j in range(n))
        out.append(dataclasses.replace(b, samples_ns=samples))
    return out


class D:
    def __init__(self, r: Release, chunk: int = 0) -> None:
        self.task_index, self.k, self.chunk = r.task_index, r.k, chunk


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_replay_draws_equal_the_old_up_front_draws(path: Path) -> None:
    s = load_scenario(path)
    bs = with_samples(s)
    base = WcetModel.of(bs)
    for seed in {s.seed, *SEEDS}:
        plan = eager_releases(s, seed)
        old = eager_by_seq([b.samples_ns for b in bs], plan, seed)
        model = SampledModel.of(bs, base, seed)
        for seq, r in enumerate(plan):
            want = old[seq]
            got = model(D(r))  # type: ignore[arg-type]
            if want is None:
                assert got == base.chunks[r.task_index][0] and model.draw(r.task_index, r.k) is None
            elif len(base.chunks[r.task_index]) == 1:
                assert got == want
            assert model.draw(r.task_index, r.k) == want


def test_replay_of_a_long_run_keeps_two_blocks_and_rereads_the_past() -> None:
    samples = tuple(range(1000, 1000 + 2**31 + 1, 2**20))  # many, so rejections happen
    s = parse_scenario({"name": "r", "tasks": [{"name": "a", "period_ms": 1, "wcet_ms": 0.5}]})
    b = dataclasses.replace(budgets(s)[0], samples_ns=samples)
    model = SampledModel.of([b], WcetModel.of([b]), 9)
    n = 40 * BLOCK + 5
    picks = np.random.default_rng([9, 0]).integers(0, len(samples), size=n).tolist()
    want = [samples[j] for j in picks]
    assert [model.draw(0, k) for k in range(n)] == want  # in job order
    draws = model.draws[0]
    assert draws is not None and len(draws.kept) <= draws.KEEP
    for k in (n - 1, 3, 17 * BLOCK + 2, n - 2, 0):  # out of order: redrawn from the seed
        assert model.draw(0, k) == want[k]
    assert len(draws.kept) <= draws.KEEP


def test_sim_and_mock_exec_replay_the_same_durations_past_one_block(tmp_path: Path) -> None:
    """Profile replay over more than a block of jobs: the simulator and the mock executor
    give every job the same duration (both call ``plan.exec_time``)."""
    from aegis_core.tools.runner import run_scenario
    from aegis_exec.engine import ExecEngine

    s = parse_scenario({"name": "m", "duration_ms": 3 * BLOCK * 0.2, "tasks": [
        {"name": "a", "period_ms": 0.2},
        {"name": "b", "period_ms": 0.5, "wcet_ms": 0.02}]})  # fmt: skip
    samples = [40_000 + (i * 7919) % 30_000 for i in range(60)]
    a = dataclasses.replace(s.tasks[0], measured=make_profile(samples, task="a"))
    s = dataclasses.replace(s, tasks=(a, s.tasks[1]))
    plan = RunPlan.build(s)
    assert isinstance(plan.exec_time, SampledModel)
    sim = {j.id: j.end_ns - j.start_ns for j in run_scenario(s, "sim", write=False).jobs}
    mock = run_scenario(s, ExecEngine("mock"), write=False)
    assert {j.id: j.end_ns - j.start_ns for j in mock.jobs} == sim
    assert sum(1 for j in sim if j.startswith("a#")) > BLOCK
