"""A stand-in spec for the runner's tests and benchmarks: the interface of
:mod:`aegis_core.sweep.spec` (``points``, ``evaluate_batch``) on a toy problem, importable by
Dask workers (a test module is not). Deterministic: a set's rows depend only on (spec seed,
point, set); ``work`` loops of busy arithmetic per set stand in for the analysis."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ToySpec:
    name: str = "toy"
    seed: int = 1
    sets_per_point: int = 10
    batch: int = 4
    utilization: tuple[float, ...] = (0.3, 0.6, 0.9)
    tests: tuple[str, ...] = ("np-edf", "np-fp")
    work: int = 0


@dataclass(frozen=True)
class ToyPoint:
    index: int
    utilization: float


def points(spec: ToySpec) -> list[ToyPoint]:
    return [ToyPoint(i, u) for i, u in enumerate(spec.utilization)]


def set_seed(seed: int, point: int, index: int) -> int:
    digest = hashlib.sha256(f"{seed}/{point}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def evaluate_batch(spec: ToySpec, point: ToyPoint, sets: Sequence[int]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for s in sets:
        seed = set_seed(spec.seed, point.index, s)
        rng = random.Random(seed)
        actual = point.utilization * rng.uniform(0.9, 1.1)
        acc = 0
        for k in range(spec.work):
            acc = (acc * 31 + k) % 1_000_003
        for i, test in enumerate(reversed(spec.tests)):  # not in the sorted order
            t0 = time.perf_counter_ns()
            ok = actual + 0.05 * i < 0.8
            rows.append({"point": point.index, "set": s, "seed": seed, "n": 5,
                         "utilization": point.utilization, "utilization_actual": actual,
                         "policy": test, "schedulable": ok, "analysis_points": acc % 7 + i,
                         "analysis_ns": time.perf_counter_ns() - t0,
                         "max_bound_over_sim": None if not ok else 1.0 + actual})  # fmt: skip
    return rows
