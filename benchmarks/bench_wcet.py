"""WCET estimation: coverage and pessimism (docs/CONTRACTS.md §targets: covers >= 99.9 %; report
pessimism), on synthetic data with known quantiles and on real runs of the builtin models.

Part 1, synthetic: TRIALS independent samples of 100 runs per distribution; each estimator's
pWCET at p = 1e-3 against the distribution's true 0.999 quantile. Coverage = fraction of trials
with estimate >= quantile; pessimism = estimate / quantile (median and 95th percentile). The
rule (``aegis_core.analysis.pwcet.estimate``) is compared with the estimators it builds on. For the
slow-mode mixture, "covered or flagged" counts trials whose estimate covers or whose result is
marked unsupported.

Part 2, real runs (NumPy backend, this machine): per builtin model, profile (5 warm-up runs,
then samples until converged, at most 100), then H held-out runs, under three conditions:
``aegis profile``'s default (jobs paced 10 ms apart) against back-to-back fresh runs, and two
same-condition pairs (back to back, and paced 2 ms); the fraction of held-out runs at or under
the WCET and WCET / held-out 99.9th percentile.

Part 3, Scenario 2 (docs/CONTRACTS.md §targets, ``scenarios/determinism.yaml``): profile (paced at
their period), admit, execute 1 000 invocations each on NumPy; per model the execution-time
and response-time CV, misses, overruns, max execution vs WCET and max response vs the bound.

Part 4, repeatability (docs/THEORY.md §pwcet-rule, rule 6): R (>= 5) repeated
``aegis profile`` runs of each builtin model (a fresh profiler each: the model loaded anew,
5 warm-up runs, jobs paced at a 25 ms period, samples until converged), repeats interleaved
across the models so that a change of the host's load hits every model alike; on numpy and
on mock. Per model: WCET min / median / max, spread (max / min - 1), whether every repeat and
every *supported* repeat lies within +-25 % of the median, and the reasons of the repeats
flagged unsupported. The host's load (``os.getloadavg``, other processes' CPU share) is
printed with it.

Usage: ``python benchmarks/bench_wcet.py [--trials 1000] [--held-out 10000] [--quick]
[--parts 1234] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _host import cpu_name

from aegis_core.analysis import pwcet as wcet
from aegis_core.analysis.admission import admit
from aegis_core.model.scenario import load_scenario, parse_scenario, with_profiles
from aegis_core.run.testing import synthetic_latencies
from aegis_core.tools.profiling import Measured, profile_scenario
from aegis_core.tools.runner import run_scenario
from aegis_exec.engine import ExecEngine
from aegis_exec.profiler import Profiler

ROOT = Path(__file__).resolve().parent.parent
P = 1e-3
Draw = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]


DISTRIBUTIONS = synthetic_latencies(P)


def part1(trials: int) -> None:
    print(f"\n## Part 1: synthetic, {trials} trials x 100 samples, p = 1e-3\n")
    print("| distribution | true q | estimator | coverage | median pess. | p95 pess. | "
          "flagged | covered or flagged |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    s = wcet.Settings()
    for name, (draw, q) in DISTRIBUTIONS.items():
        x = np.asarray(draw(np.random.default_rng(2026), (trials, 100))) * 1e6
        rule = [wcet.estimate(row, P, candidates=False) for row in x]
        rows: dict[str, tuple[np.ndarray, np.ndarray]] = {
            "rule (aegis)": (
                np.array([e.wcet_ns for e in rule], dtype=float),
                np.array([not e.supported for e in rule]),
            )
        }
        tails = [wcet.Tail.of(np.sort(row), s) for row in x]
        none = np.zeros(trials, dtype=bool)
        rows["exp-tail point (MBPTA-CV)"] = (np.array([wcet.exp_tail(t, P) for t in tails]), none)
        rows["exp-tail 97.5 % UCB"] = (
            np.array([wcet.exp_tail(t, P, s.confidence) for t in tails]), none,
        )  # fmt: skip
        rows["max + 20 %"] = (x.max(axis=1) * 1.2, none)
        rows["mean + 3.09 sd"] = (np.array([wcet.mean_ksigma(row, P) for row in x]), none)
        for label, (est, flag) in rows.items():
            ratio = est / (q * 1e6)
            cov = np.mean(ratio >= 1)
            print(f"| {name} | {q:.3f} | {label} | {cov:.3f} | {np.median(ratio):.3f} | "
                  f"{np.quantile(ratio, 0.95):.3f} | {np.mean(flag):.3f} | "
                  f"{np.mean((ratio >= 1) | flag):.3f} |")  # fmt: skip
        conv = []
        for row in x[: min(trials, 200)]:
            c = wcet.Convergence(P)
            for v in row:
                if c.add(v):
                    break
            conv.append(len(c.samples) if c.converged else None)
        done = [n for n in conv if n is not None]
        print(f"|  |  | converged within 100 samples | {len(done) / len(conv):.3f} | "
              f"median n {np.median(done) if done else '-'} |  |  |  |")  # fmt: skip


MODELS = [
    ("mlp", None),
    ("tiny_cnn", None),
    ("bert_tiny", [64, 128]),
    ("mobilenet_v2", [3, 64, 64]),
    ("resnet18", [3, 64, 64]),
]


CONDITIONS = [
    # (label, profile pace ns, held-out pace ns)
    ("aegis profile default: paced 10 ms -> back-to-back", 10_000_000, 0),
    ("same conditions: back-to-back -> back-to-back", 0, 0),
    ("same conditions: paced 2 ms -> paced 2 ms", 2_000_000, 2_000_000),
]


def part2(held_out: int, quick: bool, reps: int, backend: str = "numpy") -> None:
    where = cpu_name() if backend == "numpy" else backend
    print(f"\n## Part 2: builtin models on {backend} ({where}), profile then held-out runs\n")
    print(
        "| model | conditions | n | method | supported | WCET ms | held-out | held-out p50 ms "
        "| p99.9 ms | max ms | at or under WCET | WCET / held-out p99.9 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model, shape in MODELS[:3] if quick else MODELS:
        task: dict[str, object] = {"name": "m", "model": model, "period_ms": 100}
        if shape and backend == "numpy":  # CPU-sized inputs; the GPU runs the real sizes
            task["input_shape"] = shape
        sc = parse_scenario({"name": "w", "tasks": [task]})
        small = model in ("mlp", "tiny_cnn", "bert_tiny") or backend != "numpy"
        for label, pace, held_pace in CONDITIONS:
            n_held = held_out if small else held_out // 5
            if held_pace:
                n_held = min(n_held, 5000)
            for _ in range(reps):
                _held_out_row(sc, model, label, pace, held_pace, n_held, backend)


def _held_out_row(
    sc: object, model: str, label: str, pace: int, held_pace: int, n: int, backend: str
) -> None:
    with Profiler(sc, backend) as prof:  # type: ignore[arg-type]
        gen = prof.samples(0, pace_ns=pace)
        list(itertools.islice(gen, 5))
        conv = wcet.Convergence(P)
        for v in gen:
            if conv.add(v):
                break
        gen.close()
        est = wcet.estimate(conv.samples, P, candidates=False)
        t = time.perf_counter()
        gen = prof.samples(0, pace_ns=held_pace)
        held = np.fromiter(itertools.islice(gen, n), dtype=np.int64, count=n)
        gen.close()
        took = time.perf_counter() - t
    frac = float(np.mean(held <= est.wcet_ns))
    q = np.quantile(held, [0.5, 0.999])
    print(f"| {model} | {label} | {est.n} | {est.method} | {'yes' if est.supported else 'no'} | "
          f"{est.wcet_ns / 1e6:.3f} | {n} ({took:.0f} s) | {q[0] / 1e6:.3f} | {q[1] / 1e6:.3f} | "
          f"{held.max() / 1e6:.3f} | {frac:.4f} | {est.wcet_ns / q[1]:.2f} |")  # fmt: skip


def part3(invocations: int) -> None:
    print(f"\n## Part 3: Scenario 2 (determinism.yaml), {invocations} invocations each, NumPy\n")
    sc = load_scenario(ROOT / "scenarios" / "determinism.yaml")
    sc = dataclasses.replace(sc, duration_ns=invocations * sc.tasks[0].period_ns)
    with tempfile.TemporaryDirectory() as d:
        measured = profile_scenario(sc, backend="numpy", out_dir=Path(d), progress=None)
        prof = with_profiles(sc, d)
    verdicts = admit(prof)
    print("admission:", ", ".join(f"{v.name} {'admitted' if v.admitted else 'REJECTED'}"
                                  for v in verdicts.tasks))  # fmt: skip
    result = run_scenario(prof, ExecEngine("numpy"), write=False)
    summ = result.summary
    wcets = {m.profile.task: m.profile for m in measured}
    print(
        "| model | profile n | WCET ms | exec p50 ms | exec max ms | exec CV | resp CV | "
        "resp max ms | bound ms | misses | overruns |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for t in summ["tasks"]:
        e, r, p = t["exec_ns"], t["response_ns"], wcets[t["name"]]
        print(f"| {t['name']} | {len(p.samples_ns)} | {p.wcet_ns / 1e6:.3f} | "
              f"{e['p50'] / 1e6:.3f} | {e['max'] / 1e6:.3f} | {e['cv'] * 100:.1f} % | "
              f"{r['cv'] * 100:.1f} % | {r['max'] / 1e6:.3f} | "
              f"{(t['bound_ns'] or 0) / 1e6:.3f} | {t['misses']} | "
              f"{t['overruns']} |")  # fmt: skip


REPEAT_PERIOD_MS = 25
AGREE = 0.25
"""Repeated profiles of one model must agree within +-25 % of their median, or be flagged."""


def _within(wcets: list[int]) -> str:
    if not wcets:
        return "-"
    med = float(np.median(wcets))
    return "yes" if all(abs(w / med - 1) <= AGREE for w in wcets) else "NO"


def part4(repeats: int, backends: tuple[str, ...] = ("numpy", "mock")) -> None:
    print(f"\n## Part 4: repeatability, {repeats} repeated profiles per builtin model "
          f"(paced {REPEAT_PERIOD_MS} ms, repeats interleaved across models)\n")  # fmt: skip
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)\n")  # fmt: skip
    print(
        "| model | backend | repeats | supported | WCET min ms | median ms | max ms | spread "
        "| all within +-25 % | supported within +-25 % | others' CPU share | flags |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    runs: dict[tuple[str, str], list[Measured]] = collections.defaultdict(list)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        for backend in backends:
            for r in range(repeats):
                for model, shape in MODELS:
                    task: dict[str, object] = {
                        "name": model, "model": model, "period_ms": REPEAT_PERIOD_MS,
                        "wcet_ms": 5,  # what mock replays
                    }  # fmt: skip
                    if shape:
                        task["input_shape"] = shape
                    sc = parse_scenario({"name": "repeat", "tasks": [task]})
                    [m] = profile_scenario(sc, backend=backend, out_dir=Path(d) / f"{r}",
                                           progress=None)  # fmt: skip
                    runs[(model, backend)].append(m)
    for (model, backend), ms in runs.items():
        wcets = [m.profile.wcet_ns for m in ms]
        good = [m.profile.wcet_ns for m in ms if m.profile.supported]
        flags = collections.Counter(
            why for m in ms for why in wcet.reason(m.profile.checks).split(", ") if why
        )
        shares = [m.profile.clock.get("others_cpu_share") for m in ms]
        known = [v for v in shares if v is not None]
        share = f"{np.median(known):.0%} (max {max(known):.0%})" if known else "-"
        why = ", ".join(f"{k} x{v}" for k, v in sorted(flags.items())) or "-"
        print(f"| {model} | {backend} | {len(ms)} | {len(good)} | {min(wcets) / 1e6:.3f} | "
              f"{np.median(wcets) / 1e6:.3f} | {max(wcets) / 1e6:.3f} | "
              f"{max(wcets) / min(wcets) - 1:.0%} | {_within(wcets)} | {_within(good)} | "
              f"{share} | {why} |")  # fmt: skip
    print("\nPer repeat, in order (ms; * unsupported, with the reason):\n")
    for (model, backend), ms in runs.items():
        each = "; ".join(
            f"{m.profile.wcet_ns / 1e6:.3f}"
            + ("" if m.profile.supported else f"* ({wcet.reason(m.profile.checks)})")
            for m in ms
        )
        print(f"* {model} on {backend}: {each}")
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"({time.perf_counter() - t:.0f} s)")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--held-out", type=int, default=10_000)
    ap.add_argument("--invocations", type=int, default=1000)
    ap.add_argument("--parts", default="1234")
    ap.add_argument("--repeats", type=int, default=5, help="part 4: profiles per model")
    ap.add_argument("--reps", type=int, default=3, help="part 2: repeats per model and condition")
    ap.add_argument("--backend", default="numpy", help="part 2: numpy (default) or cupy")
    ap.add_argument("--quick", action="store_true", help="200 trials, 2 000 held-out, 3 models")
    args = ap.parse_args()
    if args.quick:
        args.trials, args.held_out, args.invocations, args.reps = 200, 2000, 200, 1
    print(f"# bench_wcet · {cpu_name()} · Python {sys.version.split()[0]} · numpy {np.__version__}")
    t = time.perf_counter()
    if "1" in args.parts:
        part1(args.trials)
    if "2" in args.parts:
        part2(args.held_out, args.quick, args.reps, args.backend)
    if "3" in args.parts:
        part3(args.invocations)
    if "4" in args.parts:
        part4(args.repeats)
    print(f"\n(total {time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
