"""Admission speed, acceptance ratio vs utilisation (docs/THEORY.md §demand, §lp-edf, §taskgen).

Part 1, exact NP-EDF test throughput: n = 10 tasks, U = 0.8 (UUniFast), periods log-uniform in
1-100 ms on a 1 µs grain, ``C = ceil(u T)`` in integer ns (``taskgen.random_taskset``), implicit
deadlines and a constrained variant ``D ~ U(0.5, 1) T``. The segmented QPA
(``edf_demand_qpa``) and full enumeration (``edf_demand_enumerate``) run on the SAME
pre-generated sets (generation not timed), interleaved within each repeat; figures are task
sets per second (median of the repeats) and mean demand evaluations per set. At n = 10 and
U = 0.8 most sets are rejected, and enumeration rejects at its first test points, so a second
row per model times a pool of NP-EDF-schedulable sets (rejection-sampled from the same
generator): accepting needs the whole scan. Verdicts of the two tests are cross-checked.

Part 2, acceptance ratio vs utilisation: U = 0.1 ... 1.0 (and 0.95), N sets per point, n = 5,
UUniFast, periods log-uniform in 10-100 ms (1 µs grain), implicit deadlines, each job a chain
of 3-12 kernels at random cut points. Paired: every test sees the same sets.

* NP-EDF: the exact demand test (segmented QPA, cross-checked against enumeration);
* NP-FP: deadline-monotonic priorities, every task's ``fp_response(...).bound <= D``;
* LP-EDF: preemptive EDF passes, each task's kernels merge greedily under its ``Q_k``
  (``max_chunk_bounds``, ``split_chunks``; zero switch cost), and the demand test with the
  resulting chunks passes;
* P-EDF: preemptive EDF (``preemptive_edf_ok``), the upper reference.

Here C is rounded DOWN to whole µs, ``C = max(1 µs, floor(u T))``, so the exact utilisation is
at most the grid value and below 1: with ``ceil`` (as ``random_taskset``) the U = 1.0 sets are
just above 1 and fail every test; with ns rounding they are within ~1e-7 of 1, where the
synchronous busy period that ``testing_bound`` iterates is ~1e5 s long and one test takes
~0.3 s. With µs rounding the U = 1.0 sets have U in roughly [0.9995, 1). The exact range of
each row is printed. Continuous time (``eps = 0``) throughout. Weighted schedulability
``W = sum U S(U) / sum U`` per test.

Usage: ``python benchmarks/bench_admission.py [--sets 500] [--repeat 5] [--quick] [--json OUT]
[--plot PATH]``; the figure defaults to ``docs/img/acceptance_ratio.png`` (none with
``--quick`` unless ``--plot`` is given).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from aegis_core.analysis.bounds import (
    ATask,
    DemandResult,
    edf_demand_enumerate,
    edf_demand_qpa,
    fp_response,
    max_chunk_bounds,
    preemptive_edf_ok,
    split_chunks,
    utilisation,
)
from aegis_core.analysis.taskgen import (
    log_uniform_period,
    random_taskset,
    split_evenly_random,
    uunifast,
)

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "docs" / "img" / "acceptance_ratio.png"
MS = 1_000_000
GRAIN = 1_000  # 1 µs
TESTS = ("NP-EDF", "NP-FP (DM)", "LP-EDF", "P-EDF")
GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

# ------------------------------------------------------------------------ part 1: throughput

THROUGHPUT_MODELS = {"implicit D = T": (1.0, 1.0), "constrained D ~ U(0.5,1) T": (0.5, 1.0)}


def throughput_sets(rng: random.Random, count: int, dfac: tuple[float, float]) -> list[list[ATask]]:
    period = (1 * MS, 100 * MS)
    return [
        random_taskset(rng, 10, 0.8, period_ns=period, grain_ns=GRAIN, deadline_factor=dfac)
        for _ in range(count)
    ]


def schedulable_pool(
    rng: random.Random, count: int, dfac: tuple[float, float], budget_s: float
) -> tuple[list[list[ATask]], int]:
    """Up to ``count`` NP-EDF-schedulable sets from the part-1 generator (and how many drawn)."""
    pool: list[list[ATask]] = []
    drawn = 0
    deadline = time.perf_counter() + budget_s
    while len(pool) < count and time.perf_counter() < deadline:
        for ts in throughput_sets(rng, 100, dfac):
            drawn += 1
            if edf_demand_enumerate(ts).ok:
                pool.append(ts)
    return pool[:count], drawn


def time_tests(sets: Sequence[Sequence[ATask]], repeat: int) -> dict[str, Any]:
    """QPA and enumeration interleaved on the same sets; sets/s per repeat, evaluations/set."""
    tests: dict[str, Callable[[Sequence[ATask]], DemandResult]] = {
        "qpa": edf_demand_qpa,
        "enumerate": edf_demand_enumerate,
    }
    runs: dict[str, list[float]] = {k: [] for k in tests}
    results: dict[str, list[DemandResult]] = {}
    clock = time.perf_counter
    for _ in range(repeat):
        for name, test in tests.items():
            gc.collect()
            t0 = clock()
            res = [test(ts) for ts in sets]
            runs[name].append(clock() - t0)
            results[name] = res
    n = len(sets)
    out: dict[str, Any] = {"sets": n}
    for name in tests:
        med = statistics.median(runs[name])
        out[name] = {
            "runs_s": runs[name],
            "median_s": med,
            "sets_per_s": n / med if med else math.inf,
            "evals_per_set": statistics.fmean(r.evaluated for r in results[name]) if n else 0.0,
        }
    q, e = results["qpa"], results["enumerate"]
    out["accepted"] = sum(r.ok for r in q)
    out["disagreements"] = sum(a.ok != b.ok for a, b in zip(q, e, strict=True))
    return out


def u_stats(sets: Sequence[Sequence[ATask]]) -> dict[str, float]:
    us = [float(utilisation(ts)) for ts in sets]
    return {"min": min(us), "mean": statistics.fmean(us), "max": max(us)}


# ------------------------------------------------------------------------ part 2: acceptance


def sweep_taskset(
    rng: random.Random, n: int, u_total: float, kernels: tuple[int, int]
) -> tuple[list[ATask], list[list[int]]]:
    """UUniFast, log-uniform periods 10-100 ms, C = ``u T`` rounded down to whole µs (at least
    1 µs), D = T; plus each job's kernel chain (random cut points, integer ns). The exact
    utilisation is ``<= u_total`` and < 1."""
    us = uunifast(n, u_total, rng)
    periods = [log_uniform_period(rng, 10 * MS, 100 * MS, GRAIN) for _ in us]
    wcets = [max(1, math.floor(u * t / GRAIN)) * GRAIN for u, t in zip(us, periods, strict=True)]
    if sum(Fraction(c, t) for c, t in zip(wcets, periods, strict=True)) >= 1:
        k = wcets.index(max(wcets))  # every u T was a whole µs: keep U < 1
        wcets[k] -= GRAIN
    ts = [ATask(f"t{i}", c, t, t) for i, (c, t) in enumerate(zip(wcets, periods, strict=True))]
    chains = [split_evenly_random(x.c, rng.randint(*kernels), rng) for x in ts]
    return ts, chains


def np_edf_ok(ts: Sequence[ATask]) -> bool:
    return edf_demand_qpa(ts).ok


def np_fp_ok(ts: Sequence[ATask]) -> bool:
    order = sorted(range(len(ts)), key=lambda i: ts[i].d)  # deadline-monotonic, ties by index
    prio = {i: r for r, i in enumerate(order)}
    fp = [ATask(x.name, x.c, x.t, x.d, prio=prio[i]) for i, x in enumerate(ts)]
    # most urgent first: it fails most often, and its level-i busy period is the shortest
    return all(fp_response(fp, i).bound <= fp[i].d for i in order)


def lp_edf_verdict(ts: Sequence[ATask], chains: Sequence[Sequence[int]]) -> str:
    """One of ``ok``, ``preemptive`` (``preemptive_edf_ok`` fails; also the P-EDF verdict),
    ``kernel`` (a kernel > Q_k), or ``demand`` (the chunked demand test fails: impossible when
    the first two pass, so it is counted as a consistency check)."""
    if not preemptive_edf_ok(ts):
        return "preemptive"
    limits = max_chunk_bounds(ts)  # math.inf: no test point below D_k, no limit
    chunked = []
    for x, chain, q in zip(ts, chains, limits, strict=True):
        chunks = split_chunks(chain, q)
        if chunks is None:
            return "kernel"
        chunked.append(ATask(x.name, x.c, x.t, x.d, tuple(chunks)))
    return "ok" if edf_demand_qpa(chunked).ok else "demand"


def acceptance(n_sets: int, seed: int, n: int, kernels: tuple[int, int]) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    for k, u in enumerate(GRID):
        rng = random.Random(seed * 1000 + k)
        counts = dict.fromkeys(TESTS, 0)
        lp_why = {"preemptive": 0, "kernel": 0, "demand": 0}
        qpa_vs_enum = inversions = 0
        u_exact = []
        for _ in range(n_sets):
            ts, chains = sweep_taskset(rng, n, u, kernels)
            u_exact.append(float(utilisation(ts)))
            np_ok = np_edf_ok(ts)
            qpa_vs_enum += np_ok != edf_demand_enumerate(ts).ok
            lp = lp_edf_verdict(ts, chains)
            if lp != "ok":
                lp_why[lp] += 1
            verdicts = (np_ok, np_fp_ok(ts), lp == "ok", lp != "preemptive")
            for name, ok in zip(TESTS, verdicts, strict=True):
                counts[name] += ok
            fp_ok, lp_ok, p_ok = verdicts[1:]
            # NP-EDF is optimal among work-conserving NP schedulers; chunking only lowers blocking
            inversions += (fp_ok > np_ok) + (np_ok > lp_ok) + (lp_ok > p_ok)
        points.append(
            {
                "U": u,
                "U_exact_min": min(u_exact),
                "U_exact_max": max(u_exact),
                "ratio": {name: c / n_sets for name, c in counts.items()},
                "lp_edf_rejections": lp_why,
                "np_edf_qpa_vs_enumerate_disagreements": qpa_vs_enum,
                "dominance_violations": inversions,
            }
        )
    total_u = sum(GRID)
    weighted = {name: sum(p["U"] * p["ratio"][name] for p in points) / total_u for name in TESTS}
    return {
        "n": n,
        "sets_per_point": n_sets,
        "period_ms": [10, 100],
        "kernels_per_task": list(kernels),
        "seed": seed,
        "points": points,
        "weighted": weighted,
    }


def half_width(p: float, n: int) -> float:
    """95 % normal-approximation (Wald) binomial half-width."""
    return 1.96 * math.sqrt(p * (1 - p) / n) if n else math.nan


def plot(acc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_sets = acc["sets_per_point"]
    xs = [p["U"] for p in acc["points"]]
    fig, ax = plt.subplots(figsize=(7.5, 5.6), layout="constrained")
    styles = {"NP-EDF": "o-", "NP-FP (DM)": "s-", "LP-EDF": "^-", "P-EDF": "k--"}
    for name in TESTS:
        ys = [p["ratio"][name] for p in acc["points"]]
        hw = [half_width(y, n_sets) for y in ys]
        ax.plot(xs, ys, styles[name], label=f"{name} (W = {acc['weighted'][name]:.3f})", ms=4)
        ax.fill_between(
            xs, [y - h for y, h in zip(ys, hw, strict=True)],
            [y + h for y, h in zip(ys, hw, strict=True)], alpha=0.15,
        )  # fmt: skip
    ax.set_xlabel("total utilisation U")
    ax.set_ylabel("acceptance ratio S(U) (schedulable sets / sets)")
    ax.set_xlim(0.05, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, title="test (W: weighted schedulability)",
              title_fontsize=8)  # fmt: skip
    k_lo, k_hi = acc["kernels_per_task"]
    ax.set_title(
        f"Acceptance ratio vs U: n = {acc['n']} tasks per set, N = {n_sets} sets per point",
        fontsize=9,
    )
    caption = (
        "Each set: n tasks; total utilisation U = Σ C/T, split among them by UUniFast; period T "
        "log-uniform in 10-100 ms; relative deadline D = T; WCET C = u·T (u: the task's share "
        f"of U, in whole µs); for LP-EDF each job is a chain of {k_lo}-{k_hi} kernels (its "
        "preemption points). Acceptance ratio S(U): the fraction of the N sets the test proves "
        "schedulable; bands: 95 % binomial (Wald) intervals. W = Σ U·S(U) / Σ U over the grid "
        "of U. NP-EDF / NP-FP (DM): non-preemptive EDF / fixed priority, deadline-monotonic; "
        "LP-EDF: limited-preemptive EDF; P-EDF: fully preemptive EDF, the upper reference."
    )
    fig.text(0.01, 0.0, textwrap.fill(caption, 128), fontsize=7.5, va="bottom", ha="left")
    fig.get_layout_engine().set(rect=(0, 0.13, 1, 0.87))  # type: ignore[union-attr,call-arg]
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sets", type=int, default=500, help="task sets per utilisation point")
    ap.add_argument("--repeat", type=int, default=5, help="timing repeats (median reported)")
    ap.add_argument("--throughput-sets", type=int, default=2000, help="sets per deadline model")
    ap.add_argument("--pool", type=int, default=300, help="schedulable sets per deadline model")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--quick", action="store_true", help="small numbers, for a smoke test")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--plot", help=f"PNG path (default {PLOT.relative_to(ROOT)}; none if --quick)")
    args = ap.parse_args()
    if args.quick:
        args.sets, args.repeat, args.throughput_sets, args.pool = 40, 2, 200, 20
    plot_path = Path(args.plot) if args.plot else (None if args.quick else PLOT)
    pool_budget_s = 5.0 if args.quick else 60.0

    start = time.perf_counter()
    figures: dict[str, Any] = {
        "python": sys.version.split()[0],
        "repeat": args.repeat,
        "seed": args.seed,
        "throughput": {},
    }
    bad = 0

    print(
        f"Exact NP-EDF test throughput: n = 10, U = 0.8, T log-uniform 1-100 ms (1 µs grain), "
        f"median of {args.repeat}"
    )
    hdr = f"{'deadlines':<28} {'sets':<12} {'N':>5} {'acc.':>5} {'test':<10}"
    print(f"{hdr} {'sets/s':>8} {'evals/set':>9} {'µs/set':>8}")
    for k, (label, dfac) in enumerate(THROUGHPUT_MODELS.items()):
        rng = random.Random(args.seed + 17 * k)
        mixed = throughput_sets(rng, args.throughput_sets, dfac)
        pool, drawn = schedulable_pool(rng, args.pool, dfac, pool_budget_s)
        entry: dict[str, Any] = {"deadline_factor": list(dfac), "U_exact": u_stats(mixed)}
        for kind, sets in (("all generated", mixed), ("schedulable", pool)):
            if not sets:
                print(f"{label:<28} {kind:<12} {0:>5}  (none found)")
                continue
            r = time_tests(sets, args.repeat)
            bad += r["disagreements"]
            entry[kind] = r
            for test in ("qpa", "enumerate"):
                t = r[test]
                print(
                    f"{label:<28} {kind:<12} {r['sets']:>5} {r['accepted']:>5} {test:<10} "
                    f"{t['sets_per_s']:>8.0f} {t['evals_per_set']:>9.2f} "
                    f"{1e6 / t['sets_per_s']:>8.1f}"
                )
        entry["pool_size"] = len(pool)
        entry["pool_drawn"] = drawn
        entry["pool_acceptance"] = len(pool) / drawn if drawn else None
        figures["throughput"][label] = entry
    for label, e in figures["throughput"].items():
        u = e["U_exact"]
        print(
            f"  {label}: exact U of the generated sets {u['min']:.7f} .. {u['max']:.7f} "
            f"(ceil of u T in ns); schedulable pool {e['pool_size']} of {e['pool_drawn']} drawn "
            f"({100 * (e['pool_acceptance'] or 0):.2f} % pass)"
        )
    print(f"  QPA vs enumeration verdict disagreements: {bad}\n")

    kernels = (3, 12)
    acc = acceptance(args.sets, args.seed, 5, kernels)
    figures["acceptance"] = acc
    n_sets = args.sets
    print(
        f"Acceptance ratio: n = 5, N = {n_sets} sets per point (paired), UUniFast, T log-uniform "
        f"10-100 ms, D = T, {kernels[0]}-{kernels[1]} kernels per job"
    )
    print(f"{'U':>5} " + " ".join(f"{t:>10}" for t in TESTS) + f" {'±95% max':>9}  exact U range")
    for p in acc["points"]:
        ratios = [p["ratio"][t] for t in TESTS]
        hw = max(half_width(r, n_sets) for r in ratios)
        print(
            f"{p['U']:>5.2f} "
            + " ".join(f"{r:>10.3f}" for r in ratios)
            + f" {hw:>9.3f}  {p['U_exact_min']:.5f}..{p['U_exact_max']:.5f}"
        )
    print(f"{'W':>5} " + " ".join(f"{acc['weighted'][t]:>10.3f}" for t in TESTS))
    print(
        f"  95 % binomial half-width (Wald) of one cell: 1.96 sqrt(p(1-p)/N) <= "
        f"{half_width(0.5, n_sets):.3f} at N = {n_sets}; '±95% max' is the row's largest"
    )
    lp = {k: sum(p["lp_edf_rejections"][k] for p in acc["points"]) for k in ("kernel", "demand")}
    dis = sum(p["np_edf_qpa_vs_enumerate_disagreements"] for p in acc["points"])
    inv = sum(p["dominance_violations"] for p in acc["points"])
    bad += dis + lp["demand"] + inv
    print(
        f"  LP-EDF rejections with preemptive EDF passing: {lp['kernel']} (a kernel > Q_k), "
        f"{lp['demand']} (chunked demand test; 0 expected)\n"
        f"  checks (0 expected): NP-EDF QPA vs enumeration disagreements {dis}; sets breaking "
        f"NP-FP <= NP-EDF <= LP-EDF <= P-EDF {inv}"
    )

    if plot_path is not None:
        plot(acc, plot_path)
        print(f"  figure: {plot_path}")
    figures["runtime_s"] = time.perf_counter() - start
    print(f"\ntotal runtime {figures['runtime_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
