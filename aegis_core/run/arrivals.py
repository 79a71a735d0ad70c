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
:data:`BLOCK` gaps (and jitters) at a time, and the tasks' streams are merged a batch at a
time as they are consumed, so a run holds O(tasks × BLOCK) of them whatever its horizon.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from itertools import accumulate
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


def _blocks(task: Task, seed: int, horizon_ns: TimeNs) -> Iterator[np.ndarray]:
    """One task's release times (int64: all are ``< horizon_ns``), strictly increasing, one
    block of draws at a time (a block may contribute fewer than :data:`BLOCK` times: the
    last one; never none)."""
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
            times = actual[actual < horizon_ns]
            start = int(nominal[-1] + gaps[-1])
        else:
            steps = gaps.tolist()
            marks = list(accumulate(steps[:-1], initial=start))
            if jitter is not None:
                marks = [n + j for n, j in zip(marks, jitter.tolist(), strict=True)]
            times = np.array([t for t in marks if t < horizon_ns], dtype=np.int64)
            start += sum(steps)
        if len(times):
            yield times


def iter_task_release_times(task: Task, seed: int, horizon_ns: TimeNs) -> Iterator[TimeNs]:
    """Release times of one task, strictly increasing, all ``< horizon_ns``, lazily."""
    for block in _blocks(task, seed, horizon_ns):
        yield from block.tolist()


def task_release_times(task: Task, seed: int, horizon_ns: TimeNs) -> list[TimeNs]:
    """Release times of one task, strictly increasing, all ``< horizon_ns``."""
    return [t for block in _blocks(task, seed, horizon_ns) for t in block.tolist()]


_release = partial(tuple.__new__, Release)
"""``Release`` from a ``(t_ns, task_index, k)`` tuple, in C (a NamedTuple's own constructor
is Python code: twice the cost of a whole release here)."""


def _merged(scenario: Scenario, seed: int) -> Iterator[list[Release]]:
    """The tasks' release streams merged, in batches: each task holds its pending block; every
    pending release up to the earliest *last* pending time of any task is due (no task's
    later blocks can come before it: a task's times strictly increase), so those go out as
    one batch, in (time, task index) order, and the tasks whose block ran out draw the next."""
    horizon = scenario.duration_ns
    streams = {i: _blocks(task, seed, horizon) for i, task in enumerate(scenario.tasks)}
    pending: dict[int, np.ndarray] = {}  # task index -> its times not handed out yet
    taken = dict.fromkeys(streams, 0)  # task index -> releases handed out (the next k)
    while True:
        for i in [i for i in streams if i not in pending]:
            block = next(streams[i], None)
            if block is None:
                del streams[i]
            else:
                pending[i] = block
        if not pending:
            return
        bound = min(int(p[-1]) for p in pending.values())
        times, tasks, ks = [], [], []
        for i in sorted(pending):
            p = pending[i]
            n = int(np.searchsorted(p, bound, side="right"))
            if n == 0:
                continue
            times.append(p[:n])
            tasks.append(np.full(n, i, dtype=np.int64))
            ks.append(np.arange(taken[i], taken[i] + n, dtype=np.int64))
            taken[i] += n
            if n == len(p):
                del pending[i]
            else:
                pending[i] = p[n:]
        if len(times) == 1:
            t, x, k = times[0], tasks[0], ks[0]
        else:
            t, x, k = np.concatenate(times), np.concatenate(tasks), np.concatenate(ks)
            order = np.lexsort((x, t))
            t, x, k = t[order], x[order], k[order]
        yield list(map(_release, zip(t.tolist(), x.tolist(), k.tolist(), strict=True)))


def iter_releases(scenario: Scenario, seed: int | None = None) -> Iterator[Release]:
    """Every release of the run in time order, simultaneous releases in task-list order,
    generated as they are consumed (the tasks' lazy streams merged a batch at a time)."""
    for batch in _merged(scenario, scenario.seed if seed is None else seed):
        yield from batch


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
