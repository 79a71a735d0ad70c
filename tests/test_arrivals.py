"""The arrival generator (docs/CONTRACTS.md §arrivals): exact periodic releases, bounded gaps,
jitter, horizon exclusive, determinism and per-task independence."""

from __future__ import annotations

from itertools import pairwise
from statistics import mean
from typing import Any

import pytest

from aegis_core.model.scenario import Scenario, parse_scenario
from aegis_core.run.arrivals import releases, task_release_times
from aegis_core.run.events import Release

MS = 1_000_000


def scen(*tasks: dict[str, Any], duration_ms: float = 100, seed: int = 0) -> Scenario:
    return parse_scenario(
        {"name": "arr", "duration_ms": duration_ms, "seed": seed, "tasks": list(tasks)}
    )


def task(name: str, period_ms: float, **kw: Any) -> dict[str, Any]:
    return {"name": name, "period_ms": period_ms, **kw}


def times(s: Scenario, name: str, seed: int | None = None) -> list[int]:
    return task_release_times(s.task(name), s.seed if seed is None else seed, s.duration_ns)


def gaps(ts: list[int]) -> list[int]:
    return [b - a for a, b in pairwise(ts)]


# ----------------------------------------------------------------------------- periodic


@pytest.mark.parametrize(
    ("period", "offset", "horizon", "expected_ms"),
    [
        (10, 0, 40, [0, 10, 20, 30]),  # a release exactly at the horizon is excluded
        (10, 0, 40.000001, [0, 10, 20, 30, 40]),  # one ns later it is included
        (10, 3, 40, [3, 13, 23, 33]),
        (10, 3, 33, [3, 13, 23]),
        (10, 0, 10, [0]),
        (10, 0, 5, [0]),
        (7, 2.5, 30, [2.5, 9.5, 16.5, 23.5]),
        (33.3, 0, 100, [0, 33.3, 66.6, 99.9]),
    ],
)
def test_periodic_exact(
    period: float, offset: float, horizon: float, expected_ms: list[float]
) -> None:
    s = scen(task("a", period, offset_ms=offset), duration_ms=horizon)
    got = times(s, "a")
    assert got == [round(m * MS) for m in expected_ms]
    assert all(type(t) is int for t in got)


def test_periodic_ignores_seed() -> None:
    s = scen(task("a", 3, offset_ms=1), duration_ms=50)
    assert times(s, "a", seed=0) == times(s, "a", seed=12345)


def test_releases_numbering_and_tie_order() -> None:
    s = scen(task("a", 10), task("b", 15), duration_ms=31)
    assert releases(s) == [
        Release(0, 0, 0),
        Release(0, 1, 0),
        Release(10 * MS, 0, 1),
        Release(15 * MS, 1, 1),
        Release(20 * MS, 0, 2),
        Release(30 * MS, 0, 3),  # simultaneous: task-list order, a before b
        Release(30 * MS, 1, 2),
    ]


def test_tie_order_follows_the_list_not_the_name() -> None:
    s = scen(task("zeta", 10), task("alpha", 10), duration_ms=20)
    r = releases(s)
    assert [(x.t_ns, s.tasks[x.task_index].name, x.k) for x in r] == [
        (0, "zeta", 0),
        (0, "alpha", 0),
        (10 * MS, "zeta", 1),
        (10 * MS, "alpha", 1),
    ]


def test_releases_are_in_global_time_order_and_match_per_task_lists() -> None:
    s = scen(
        task("p", 7, offset_ms=1),
        task("s", 5, arrival="sporadic", slack_ms=4),
        task("q", 3, arrival="poisson", slack_ms=2, jitter_ms=1),
        task("j", 10, jitter_ms=9),
        duration_ms=500,
        seed=11,
    )
    r = releases(s)
    keys = [(x.t_ns, x.task_index) for x in r]
    assert keys == sorted(keys)
    assert all(x.t_ns < s.duration_ns for x in r)
    for i, t in enumerate(s.tasks):
        mine = [x for x in r if x.task_index == i]
        assert [x.k for x in mine] == list(range(len(mine)))
        assert [x.t_ns for x in mine] == task_release_times(t, s.seed, s.duration_ns)
        assert len(mine) > 10


def test_releases_seed_argument_overrides_scenario_seed() -> None:
    t = task("s", 5, arrival="sporadic", slack_ms=5)
    assert releases(scen(t, seed=0), seed=9) == releases(scen(t, seed=9))
    assert releases(scen(t, seed=0), seed=9) != releases(scen(t, seed=0))


# ----------------------------------------------------------------------------- random gaps


def test_sporadic_gaps_within_period_and_period_plus_slack() -> None:
    period, slack = 10 * MS, 5 * MS
    s = scen(task("s", 10, arrival="sporadic", slack_ms=5), duration_ms=20_000, seed=3)
    ts = times(s, "s")
    g = gaps(ts)
    assert len(g) > 1000
    assert all(type(t) is int for t in ts)
    assert all(period <= x <= period + slack for x in g)
    assert len(set(g)) > len(g) // 2  # really random, not a constant gap
    # Uniform over [period, period + slack]: both ends of the range are reached, mean ≈ middle.
    assert min(g) < period + slack // 20
    assert max(g) > period + slack - slack // 20
    assert mean(g) == pytest.approx(period + slack / 2, rel=0.02)
    # Complete up to the horizon: one more gap (at most period + slack) would pass it.
    assert ts[-1] < s.duration_ns <= ts[-1] + period + slack


def test_sporadic_default_slack_is_half_the_period() -> None:
    s = scen(task("s", 8, arrival="sporadic"), duration_ms=8_000)
    g = gaps(times(s, "s"))
    assert all(8 * MS <= x <= 12 * MS for x in g)
    assert max(g) > 11 * MS


def test_poisson_gaps_at_least_period_and_mean_period_plus_slack() -> None:
    period, slack = 10 * MS, 5 * MS
    s = scen(task("p", 10, arrival="poisson", slack_ms=5), duration_ms=100_000, seed=1)
    ts = times(s, "p")
    g = gaps(ts)
    assert len(g) > 5000
    assert all(type(t) is int for t in ts)
    assert all(x >= period for x in g)
    assert len(set(g)) > len(g) // 2
    assert mean(g) == pytest.approx(period + slack, rel=0.03)
    # Unbounded above (exponential tail): P(extra > 3·slack) = e^-3 ≈ 5 %.
    assert max(g) > period + 3 * slack
    assert ts[-1] < s.duration_ns


@pytest.mark.parametrize("arrival", ["sporadic", "poisson"])
def test_zero_slack_is_exactly_periodic(arrival: str) -> None:
    s = scen(task("a", 4, arrival=arrival, slack_ms=0, offset_ms=1), duration_ms=30, seed=5)
    assert times(s, "a") == [m * MS for m in (1, 5, 9, 13, 17, 21, 25, 29)]


# ----------------------------------------------------------------------------- jitter


@pytest.mark.parametrize("jitter_ms", [3, 9.999999])
def test_jitter_delays_within_bound_and_keeps_order(jitter_ms: float) -> None:
    period, offset, jitter = 10 * MS, 2 * MS, round(jitter_ms * MS)
    s = scen(task("j", 10, offset_ms=2, jitter_ms=jitter_ms), duration_ms=2_000, seed=4)
    ts = times(s, "j")
    assert len(ts) >= 199
    delays = [t - (offset + k * period) for k, t in enumerate(ts)]
    assert all(0 <= d <= jitter for d in delays)
    assert len(set(delays)) > 1  # it really jitters
    assert all(b > a for a, b in pairwise(ts))
    assert all(t < s.duration_ns for t in ts)


def test_jitter_on_sporadic_keeps_strictly_increasing() -> None:
    s = scen(task("j", 5, arrival="sporadic", slack_ms=1, jitter_ms=4.9), duration_ms=3_000, seed=8)
    ts = times(s, "j")
    assert len(ts) > 400
    assert all(b > a for a, b in pairwise(ts))
    # Gap between actual releases: nominal gap ± jitter.
    assert all(5 * MS - round(4.9 * MS) <= x <= 6 * MS + round(4.9 * MS) for x in gaps(ts))


# ----------------------------------------------------------------------------- determinism


RANDOM_TASK = task("x", 5, arrival="sporadic", slack_ms=5, jitter_ms=2)


def test_same_scenario_and_seed_gives_identical_releases() -> None:
    a = scen(RANDOM_TASK, task("y", 7, arrival="poisson"), duration_ms=1_000, seed=42)
    b = scen(RANDOM_TASK, task("y", 7, arrival="poisson"), duration_ms=1_000, seed=42)
    assert releases(a) == releases(b)
    assert releases(a) == releases(a)


@pytest.mark.parametrize("arrival", ["sporadic", "poisson"])
def test_different_seed_gives_different_releases(arrival: str) -> None:
    t = task("x", 5, arrival=arrival, slack_ms=5)
    a = times(scen(t, duration_ms=1_000, seed=1), "x")
    b = times(scen(t, duration_ms=1_000, seed=2), "x")
    assert a != b


def test_other_tasks_do_not_change_a_tasks_releases() -> None:
    alone = times(scen(RANDOM_TASK, duration_ms=1_000, seed=7), "x")
    others = [
        [task("a", 3, arrival="sporadic"), RANDOM_TASK, task("b", 11, arrival="poisson")],
        [task("b", 11, arrival="poisson"), task("a", 3, arrival="sporadic"), RANDOM_TASK],
        [RANDOM_TASK, task("c", 1, jitter_ms=0.5)],
    ]
    for tasks in others:
        s = scen(*tasks, duration_ms=1_000, seed=7)
        assert times(s, "x") == alone
        i = next(i for i, t in enumerate(s.tasks) if t.name == "x")
        assert [r.t_ns for r in releases(s) if r.task_index == i] == alone


def test_generator_is_seeded_by_task_name() -> None:
    same = {"period_ms": 5, "arrival": "sporadic", "slack_ms": 5}
    s = scen(task("one", **same), task("two", **same), duration_ms=500, seed=0)
    assert times(s, "one") != times(s, "two")


# ----------------------------------------------------------------------------- horizon


@pytest.mark.parametrize("offset_ms", [50, 60])
def test_offset_at_or_past_horizon_gives_no_releases(offset_ms: float) -> None:
    s = scen(
        task("late", 10, offset_ms=offset_ms, arrival="sporadic"), task("on", 20), duration_ms=50
    )
    assert times(s, "late") == []
    assert [r.task_index for r in releases(s)] == [1, 1, 1]


def test_all_releases_strictly_before_horizon_for_every_arrival() -> None:
    for arrival in ("periodic", "sporadic", "poisson"):
        for seed in range(5):
            s = scen(task("a", 1, arrival=arrival, jitter_ms=0.9), duration_ms=37, seed=seed)
            ts = times(s, "a")
            assert ts, arrival
            assert ts[-1] < s.duration_ns
            assert all(b > a for a, b in pairwise(ts))


@pytest.mark.parametrize("arrival", ["periodic", "sporadic", "poisson"])
def test_a_shorter_horizon_gives_a_prefix_of_a_longer_one(arrival: str) -> None:
    """Draws come in fixed blocks, so ``--duration-ms`` only cuts the release list."""
    task = {"name": "a", "period_ms": 0.01, "arrival": arrival, "jitter_ms": 0.003}
    long = releases(parse_scenario({"name": "s", "duration_ms": 100, "tasks": [task]}))
    for duration in (1, 13.7, 50):
        short = releases(parse_scenario({"name": "s", "duration_ms": duration, "tasks": [task]}))
        assert short == [r for r in long if r.t_ns < duration * 1_000_000]
        assert short == long[: len(short)] and len(short) > 50


def test_no_release_cap_a_tiny_period_is_planned_lazily() -> None:
    """10⁸ releases within the duration: no cap refuses them, and none is built before it is
    taken (the plan and its cursor hold O(tasks) of them; tests/test_lazy_releases.py)."""
    from itertools import islice

    from aegis_core.run.plan import RunPlan

    doc = {"name": "s", "duration_ms": 10_000, "tasks": [
        {"name": "ok", "period_ms": 10, "wcet_ms": 1},
        {"name": "tiny", "period_ms": 0.0001, "wcet_ms": 0.00001}]}  # fmt: skip
    plan = RunPlan.build(parse_scenario(doc))
    first = list(islice(plan.releases, 4))
    assert first == [Release(0, 0, 0), Release(0, 1, 0), Release(100, 1, 1), Release(200, 1, 2)]
