"""Random task sets for experiments and tests (docs/THEORY.md §taskgen): UUniFast utilisations,
log-uniform periods, integer-ns parameters. Seeded, pure; :func:`scenario_of` turns a set into
a scenario (for ``admit`` and ``aegis check``)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from itertools import pairwise

from aegis_core.analysis.bounds import ATask
from aegis_core.model.policy import get_policy
from aegis_core.model.scenario import Scenario, Task


def uunifast(n: int, total: float, rng: random.Random) -> list[float]:
    """``n`` utilisations drawn uniformly over ``{u_i >= 0, sum u_i = total}`` (Bini-Buttazzo)."""
    out = []
    remaining = total
    for i in range(1, n):
        nxt = remaining * rng.random() ** (1 / (n - i))
        out.append(remaining - nxt)
        remaining = nxt
    out.append(remaining)
    return out


def log_uniform_period(rng: random.Random, lo_ns: int, hi_ns: int, grain_ns: int) -> int:
    """``exp(U(ln lo, ln hi))`` rounded down to ``grain_ns`` (at least one grain)."""
    t = math.exp(rng.uniform(math.log(lo_ns), math.log(hi_ns)))
    return max(grain_ns, int(t // grain_ns) * grain_ns)


def random_taskset(
    rng: random.Random,
    n: int,
    utilisation: float,
    *,
    period_ns: tuple[int, int] = (1_000_000, 100_000_000),
    grain_ns: int = 1_000,
    deadline_factor: tuple[float, float] = (1.0, 1.0),
    kernels: tuple[int, int] | None = None,
) -> list[ATask]:
    """UUniFast utilisations, log-uniform periods, ``C = ceil(u T)`` (>= 1 ns), and
    ``D = max(C, f T)`` with ``f ~ U(deadline_factor)``. With ``kernels=(lo, hi)`` each job is
    a chain of a random number of kernels in ``[lo, hi]`` (chunks of the LP-EDF model)."""
    tasks = []
    for i, u in enumerate(uunifast(n, utilisation, rng)):
        t = log_uniform_period(rng, *period_ns, grain_ns)
        c = max(1, math.ceil(u * t))
        d = max(c, int(rng.uniform(*deadline_factor) * t))
        chunks: Sequence[int] = ()
        if kernels is not None:
            chunks = split_evenly_random(c, rng.randint(*kernels), rng)
        tasks.append(ATask(f"t{i}", c, t, d, tuple(chunks)))
    return tasks


def split_evenly_random(total: int, parts: int, rng: random.Random) -> list[int]:
    """``total`` cut into ``min(parts, total)`` positive integers at random cut points."""
    parts = max(1, min(parts, total))
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    edges = [0, *cuts, total]
    return [b - a for a, b in pairwise(edges)]


def scenario_of(
    ts: Sequence[ATask], policy: str, *, name: str = "random", duration_ns: int | None = None
) -> Scenario:
    """``ts`` as a scenario under ``policy``: each task's WCET ``c`` (lp-edf: its chunks as
    the kernel chain), period ``t``, deadline ``d``, jitter ``burst``; np-fp priorities
    deadline-monotonic. ``duration_ns`` defaults to 20 of the longest periods."""
    chosen = get_policy(policy)
    tasks = tuple(
        Task(
            name=x.name,
            period_ns=x.t,
            deadline_ns=x.d,
            wcet_ns=None if chosen.chunked else x.c,
            kernels_ns=x.chunks if chosen.chunked else None,
            jitter_ns=x.burst,
        )
        for x in ts
    )
    span = duration_ns if duration_ns is not None else 20 * max(x.t for x in ts)
    return Scenario(name=name, tasks=tasks, policy=chosen, duration_ns=span)


def scaled(scenario: Scenario, k: int) -> Scenario:
    """``scenario`` with every time multiplied by ``k`` (a finer tick: the same schedule in
    ``k`` times as many ns, for checks that a bound holds off the ns grid)."""
    import dataclasses

    tasks = tuple(
        dataclasses.replace(t, period_ns=t.period_ns * k, deadline_ns=t.deadline_ns * k,
                            wcet_ns=None if t.wcet_ns is None else t.wcet_ns * k,
                            kernels_ns=None if t.kernels_ns is None
                            else tuple(c * k for c in t.kernels_ns),
                            jitter_ns=t.jitter_ns * k)
        for t in scenario.tasks
    )  # fmt: skip
    return dataclasses.replace(scenario, tasks=tasks, duration_ns=scenario.duration_ns * k)
