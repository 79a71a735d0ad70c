"""The one deterministic arrival generator (docs/CONTRACTS.md §arrivals), shared by every engine.

A pure function of (scenario, seed): the simulator and the executor release the same jobs at the
same planned times. Each task draws from its own generator seeded by ``(seed, crc32(name))``, so
adding, removing or reordering other tasks never changes a task's releases.

Gaps between consecutive *nominal* releases of a task:

* ``periodic``: ``period``;
* ``sporadic``: ``period + U{0, …, slack}`` (integer ns, uniform);
* ``poisson``:  ``period + round(Exp(mean = slack))``.

Nominal release ``k`` is ``offset + sum of the first k gaps``. With ``jitter`` each release is
then delayed by ``U{0, …, jitter}``; the absolute deadline counts from the actual release.
Releases happen at times ``< horizon``.
"""

from __future__ import annotations

import heapq
import zlib

import numpy as np

from aegis_core.model.scenario import Arrival, Scenario, Task
from aegis_core.model.types import TimeNs
from aegis_core.run.events import Release


def task_rng(seed: int, task: Task) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(task.name.encode())])


BLOCK = 1024
"""Draws are made in blocks of this many releases, so a shorter horizon's releases are a
prefix of a longer one's (same seed)."""

MAX_RELEASES = 10_000_000
"""Refuse plans with more releases than this (a typo like ``period_ms: 0.0001``)."""


def task_release_times(task: Task, seed: int, horizon_ns: TimeNs) -> list[TimeNs]:
    """Release times of one task, strictly increasing, all ``< horizon_ns``."""
    if task.offset_ns >= horizon_ns:
        return []
    rng = task_rng(seed, task)
    times: list[TimeNs] = []
    start = task.offset_ns  # nominal time of the block's first release
    while start < horizon_ns:
        # gaps[i] separates nominal release i from i + 1 inside the block.
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


def check_release_count(scenario: Scenario, path: str | None = None) -> int:
    """Upper bound on the run's releases (every gap >= period); refuses absurd plans."""
    from aegis_core.model.errors import ScenarioError

    total = 0
    for task in scenario.tasks:
        n = max(0, (scenario.duration_ns - task.offset_ns - 1) // task.period_ns + 1)
        total += n
        if total > MAX_RELEASES:
            raise ScenarioError(
                path or scenario.path,
                f"up to {total:,} releases within duration_ms exceed the limit of "
                f"{MAX_RELEASES:,}: lengthen the period or shorten the run",
                task=task.name,
                field="period_ms",
            )
    return total


def releases(scenario: Scenario, seed: int | None = None) -> list[Release]:
    """Every release of the run in time order; simultaneous releases in task-list order."""
    seed = scenario.seed if seed is None else seed
    check_release_count(scenario)
    per_task = [
        [
            Release(t, i, k)
            for k, t in enumerate(task_release_times(task, seed, scenario.duration_ns))
        ]
        for i, task in enumerate(scenario.tasks)
    ]
    return list(heapq.merge(*per_task))
