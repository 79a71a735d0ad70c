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

Releases are generated lazily (:func:`iter_releases`): each task draws one block of
:data:`BLOCK` gaps (and jitters) at a time, and the tasks' streams are merged as they are
consumed, so a run holds O(tasks × BLOCK) of them whatever its horizon.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate, count, repeat
from typing import Protocol

import numpy as np

from aegis_core.model.scenario import Arrival, Scenario, Task
from aegis_core.model.types import TimeNs
from aegis_core.run.events import Release


def task_rng(seed: int, task: Task) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(task.name.encode())])


BLOCK = 1024
"""Draws are made in blocks of this many releases, so a shorter horizon's releases are a
prefix of a longer one's (same seed)."""

_INT64_END = 1 << 63
"""The first integer past int64."""

_EXP_CLIP = float(1 << 62)
"""Exponential draws are clipped here before the cast to int64 (exact as a float, at or past
any horizon a scenario may give, so no release before the horizon changes)."""


def _blocks(task: Task, seed: int, horizon_ns: TimeNs) -> Iterator[list[TimeNs]]:
    """One task's release times, strictly increasing, all ``< horizon_ns``, one block of
    draws at a time (a block may contribute fewer than :data:`BLOCK` times: the last one)."""
    if task.offset_ns >= horizon_ns:
        return
    rng = task_rng(seed, task)
    # A gap of at least the horizon ends the releases, so gaps are clipped to the horizon:
    # no time before it changes, and a block's sums stay below start + BLOCK * horizon, which
    # int64 holds unless the horizon passes ~104 days (then Python ints do the sums).
    in_int64 = (BLOCK + 1) * horizon_ns + task.jitter_ns < _INT64_END
    start = task.offset_ns  # nominal time of the block's first release
    while start < horizon_ns:
        # gaps[i] separates nominal release i from i + 1 inside the block.
        gaps = np.full(BLOCK, task.period_ns, dtype=np.int64)
        if task.arrival is Arrival.SPORADIC:
            gaps += rng.integers(0, task.slack_ns, size=BLOCK, endpoint=True, dtype=np.int64)
        elif task.arrival is Arrival.POISSON and task.slack_ns > 0:
            extra = np.minimum(rng.exponential(task.slack_ns, size=BLOCK), _EXP_CLIP)
            gaps += np.rint(extra).astype(np.int64)
        np.minimum(gaps, horizon_ns, out=gaps)
        jitter = (
            rng.integers(0, task.jitter_ns, size=BLOCK, endpoint=True) if task.jitter_ns else None
        )
        if in_int64:
            nominal = start + np.concatenate(([0], np.cumsum(gaps[:-1])))
            actual = nominal if jitter is None else nominal + jitter
            times: list[TimeNs] = actual[actual < horizon_ns].tolist()
            start = int(nominal[-1] + gaps[-1])
        else:
            steps = gaps.tolist()
            marks = list(accumulate(steps[:-1], initial=start))
            if jitter is not None:
                marks = [n + j for n, j in zip(marks, jitter.tolist(), strict=True)]
            times = [t for t in marks if t < horizon_ns]
            start += sum(steps)
        if times:
            yield times


def iter_task_release_times(task: Task, seed: int, horizon_ns: TimeNs) -> Iterator[TimeNs]:
    """Release times of one task, strictly increasing, all ``< horizon_ns``, lazily."""
    for block in _blocks(task, seed, horizon_ns):
        yield from block


def task_release_times(task: Task, seed: int, horizon_ns: TimeNs) -> list[TimeNs]:
    """Release times of one task, strictly increasing, all ``< horizon_ns``."""
    return [t for block in _blocks(task, seed, horizon_ns) for t in block]


def _task_releases(task: Task, index: int, seed: int, horizon_ns: TimeNs) -> Iterator[Release]:
    k = count()
    for block in _blocks(task, seed, horizon_ns):
        yield from map(Release, block, repeat(index), k)  # stops at the block's end, not k's


def iter_releases(scenario: Scenario, seed: int | None = None) -> Iterator[Release]:
    """Every release of the run in time order, simultaneous releases in task-list order,
    generated as they are consumed (a heap merge of the tasks' lazy streams)."""
    seed = scenario.seed if seed is None else seed
    horizon = scenario.duration_ns
    return heapq.merge(
        *(_task_releases(task, i, seed, horizon) for i, task in enumerate(scenario.tasks))
    )


def releases(scenario: Scenario, seed: int | None = None) -> list[Release]:
    """Every release of the run in time order; simultaneous releases in task-list order."""
    return list(iter_releases(scenario, seed))


def release_count(scenario: Scenario, seed: int | None = None) -> int:
    """How many releases the run plans (generates them, without building one)."""
    seed = scenario.seed if seed is None else seed
    return sum(
        len(block) for task in scenario.tasks for block in _blocks(task, seed, scenario.duration_ns)
    )


class ReleasePlan(Protocol):
    """What a run plan holds of its releases: iterable in plan order (each iteration from the
    start), and sized. A list is one; :class:`PlannedReleases` the lazy one."""

    def __iter__(self) -> Iterator[Release]: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class PlannedReleases:
    """The releases of ``scenario`` under ``seed``, never held: each ``iter()`` is a fresh
    :func:`iter_releases` generator (the same sequence every time), ``len()`` counts them."""

    scenario: Scenario
    seed: int

    def __iter__(self) -> Iterator[Release]:
        return iter_releases(self.scenario, self.seed)

    def __len__(self) -> int:
        return release_count(self.scenario, self.seed)
