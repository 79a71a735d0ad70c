"""The analysis budget on the hard case: 50 tasks with distinct prime periods at U = 0.995
(long busy periods, long hyperperiods). Admission under the default budget, four times it, and
none; points spent, verdicts and process time (median of --repeat runs, side by side).

    python benchmarks/bench_budget.py [--repeat 3] [--seeds 1,2,3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from aegis_core.analysis.admission import admit
from aegis_core.analysis.bounds import MAX_POINTS
from aegis_core.model.scenario import parse_scenario

PRIMES = [p for p in range(11, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]
BUDGET_WORDS = "analysis points: not proved"


def hard_set(seed: int, n: int = 50, u: float = 0.995) -> dict[str, Any]:
    rng = random.Random(seed)
    periods = rng.sample(PRIMES[:200], n)
    shares = [rng.random() for _ in periods]
    total = sum(shares)
    tasks = [
        {"name": f"t{i}", "period_ms": p, "wcet_ms": round(u * w / total * p, 3)}
        for i, (p, w) in enumerate(zip(periods, shares, strict=True))
    ]
    return {"name": f"hard{seed}", "tasks": tasks}


def run(doc: dict[str, Any], points: int | None, repeat: int) -> tuple[float, Any]:
    doc = {**doc, "analysis_points": points if points is not None else 10**12}
    times, adm = [], None
    for _ in range(repeat):
        t0 = time.process_time()
        adm = admit(parse_scenario(doc))
        times.append(time.process_time() - t0)
    return statistics.median(times), adm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seeds", default="1,2,3")
    args = ap.parse_args()
    print(f"{'set':<7} {'budget':>12} {'spent':>10} {'admitted':>8} {'budget-rej':>10} "
          f"{'other-rej':>9} {'cpu s':>7}")  # fmt: skip
    for seed in map(int, args.seeds.split(",")):
        doc = hard_set(seed)
        for label, points in (("default", MAX_POINTS), ("4x", 4 * MAX_POINTS), ("none", None)):
            secs, adm = run(doc, points, args.repeat if points else 1)
            assert adm is not None and adm.effort is not None
            admitted = sum(v.admitted for v in adm.tasks)
            budget = sum(BUDGET_WORDS in v.reason for v in adm.tasks)
            other = len(adm.tasks) - admitted - budget
            print(f"{doc['name']:<7} {label:>12} {adm.effort.spent:>10} {admitted:>8} "
                  f"{budget:>10} {other:>9} {secs:>7.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
