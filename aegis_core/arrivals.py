"""The one deterministic arrival generator (DESIGN §3), shared by every engine.

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

from .events import Release
from .scenario import Arrival, Scenario, Task
from .types import TimeNs


def task_rng(seed: int, task: Task) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(task.name.encode())])


def task_release_times(task: Task, seed: int, horizon_ns: TimeNs) -> list[TimeNs]:
    """Release times of one task, strictly increasing, all ``< horizon_ns``."""
    if task.offset_ns >= horizon_ns:
        return []
    # Every gap is >= period, so this many nominal releases always reach the horizon.
    n = (horizon_ns - task.offset_ns) // task.period_ns + 1
    rng = task_rng(seed, task)
    gaps = np.full(n, task.period_ns, dtype=np.int64)
    if task.arrival is Arrival.SPORADIC:
        gaps += rng.integers(0, task.slack_ns, size=n, endpoint=True, dtype=np.int64)
    elif task.arrival is Arrival.POISSON and task.slack_ns > 0:
        gaps += np.rint(rng.exponential(task.slack_ns, size=n)).astype(np.int64)
    gaps[0] = 0
    nominal = task.offset_ns + np.cumsum(gaps)
    if task.jitter_ns:
        nominal += rng.integers(0, task.jitter_ns, size=n, endpoint=True, dtype=np.int64)
    times: list[TimeNs] = nominal[nominal < horizon_ns].tolist()
    return times


def releases(scenario: Scenario, seed: int | None = None) -> list[Release]:
    """Every release of the run in time order; simultaneous releases in task-list order."""
    seed = scenario.seed if seed is None else seed
    per_task = [
        [
            Release(t, i, k)
            for k, t in enumerate(task_release_times(task, seed, scenario.duration_ns))
        ]
        for i, task in enumerate(scenario.tasks)
    ]
    return list(heapq.merge(*per_task))
