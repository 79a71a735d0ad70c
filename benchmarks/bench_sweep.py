"""``aegis sweep`` throughput: one plain process vs a 2-worker Dask LocalCluster, side by side.

Part 1, admission only: 20 000 sets (10 utilisation points U = 0.1 ... 1.0, 2 000 sets each),
np-edf, n = 5, periods log-uniform in 10-100 ms, implicit deadlines; each set generated and
admitted once. The same sweep runs through :func:`aegis_core.sweep.runner.run_sweep` with
``workers=1`` (in this process, no Dask) and on a LocalCluster of 2 worker processes (one
thread each), each into its own Parquet folder (the writes are timed too); the cluster's
start-up (workers up, AegisRT imported in them) is timed apart. The plain and the cluster runs
alternate ``--repeat`` times and the best of each counts (the machine is shared). Printed:
sets/s of each and the speed-up (wall time of the plain process / that of the cluster,
start-up excluded; and included). The two datasets are
checked equal (all columns but ``analysis_ns``).

Part 2, admission + check: fewer sets (``--check-sets``, default 200 over 2 points), each
also simulated (``check``: the critical patterns + ``--check-runs`` random sporadic runs),
sets/s of both ways.

The sets come from the real spec (:mod:`aegis_core.sweep.spec`, the YAML below) when it is
installed, else from a stand-in with the same work per set (``taskgen.random_taskset`` +
``admit`` / ``check``, defined here), and the table says which.

Usage: ``python benchmarks/bench_sweep.py [--quick] [--sets N] [--batch B] [--repeat R]
[--check-sets N] [--check-runs N] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import io
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aegis_core.sweep import runner, store

SPEC_YAML = """\
name: bench-sweep
seed: 1
sets_per_point: {sets}
batch: {batch}
axes:
  utilization: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
fixed:
  n: 5
  period_ms: [10, 100]
  period_kind: log-uniform
  deadline_kind: implicit
tests: [np-edf]
run: {run}
check_runs: {runs}
"""


# ------------------------------------------------------- the stand-in (until spec.py lands)


@dataclasses.dataclass(frozen=True)
class StandIn:
    name: str
    seed: int
    sets_per_point: int
    batch: int
    utilization: tuple[float, ...]
    check_runs: int | None  # None: admission only


@dataclasses.dataclass(frozen=True)
class StandInPoint:
    index: int
    utilization: float


def standin_points(spec: StandIn) -> list[StandInPoint]:
    return [StandInPoint(i, u) for i, u in enumerate(spec.utilization)]


def standin_evaluate(
    spec: StandIn, point: StandInPoint, sets: Sequence[int]
) -> list[dict[str, Any]]:
    from aegis_core.analysis.admission import admit
    from aegis_core.analysis.taskgen import random_taskset, scenario_of
    from aegis_core.sweep.testing import set_seed
    from aegis_core.tools.check import check

    rows = []
    for s in sets:
        seed = set_seed(spec.seed, point.index, s)
        ts = random_taskset(random.Random(seed), 5, point.utilization,
                            period_ns=(10_000_000, 100_000_000))  # fmt: skip
        scenario = scenario_of(ts, "np-edf")
        t0 = time.perf_counter_ns()
        adm = admit(scenario)
        row: dict[str, Any] = {"point": point.index, "set": s, "seed": seed, "n": 5,
                               "utilization": point.utilization, "policy": "np-edf",
                               "schedulable": adm.schedulable,
                               "analysis_ns": time.perf_counter_ns() - t0}  # fmt: skip
        if spec.check_runs is not None:
            r = check(scenario, runs=spec.check_runs, admission=adm)
            row["check_ok"] = r.ok
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ the runs


def make_spec(sets: int, batch: int, check_runs: int | None, points: int) -> tuple[Any, Any, Any]:
    """(spec, evaluate_batch, points) of the real spec module, or of the stand-in."""
    try:
        specs = importlib.import_module("aegis_core.sweep.spec")
    except ImportError:
        us = tuple(round(0.1 * k, 1) for k in range(1, 11))[-points:]
        return StandIn("bench-sweep", 1, sets, batch, us, check_runs), standin_evaluate, \
            standin_points  # fmt: skip
    text = SPEC_YAML.format(sets=sets, batch=batch, run="admission" if check_runs is None
                            else "[admission, check]", runs=check_runs or 0)  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    spec = specs.load_spec(f.name)
    Path(f.name).unlink()
    if points < 10:  # the highest utilisations: the costliest checks
        axes = tuple((k, v[-points:] if k == "utilization" else v) for k, v in spec.axes)
        spec = dataclasses.replace(spec, axes=axes)
    return spec, specs.evaluate_batch, specs.points


def timed(spec: Any, evaluate: Any, points: Any, out: Path, **kw: Any) -> float:
    t0 = time.perf_counter()
    r = runner.run_sweep(spec, out, source=b"bench", evaluate_batch=evaluate, points=points,
                         log=io.StringIO(), **kw)  # fmt: skip
    assert r.interrupted is None and r.written == r.total
    return time.perf_counter() - t0


def compare(spec: Any, evaluate: Any, points: Any, n_sets: int, tmp: Path, tag: str,
            repeat: int) -> dict[str, Any]:  # fmt: skip
    """Plain and cluster runs interleaved ``repeat`` times; the best of each (the machine is
    shared: the best run is the one least slowed by other work)."""
    import logging

    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)  # fmt: skip
    plain, dask = [], []
    try:
        with Client(cluster) as client:
            client.wait_for_workers(2)
            client.run(importlib.import_module, "aegis_core.tools.check")  # warm: the imports
            startup = time.perf_counter() - t0
            for k in range(repeat):
                plain.append(timed(spec, evaluate, points, tmp / f"{tag}-1-{k}", workers=1))
                dask.append(timed(spec, evaluate, points, tmp / f"{tag}-2-{k}", client=client))
    finally:
        cluster.close()
    a = store.read_dataset(tmp / f"{tag}-1-0").drop(columns="analysis_ns")
    b = store.read_dataset(tmp / f"{tag}-2-0").drop(columns="analysis_ns")
    p, q = min(plain), min(dask)
    return {"sets": n_sets, "plain_s": plain, "dask_s": dask, "startup_s": startup,
            "plain_sets_s": n_sets / p, "dask_sets_s": n_sets / q, "speedup": p / q,
            "speedup_with_startup": p / (q + startup), "equal": bool(a.equals(b))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 000 + 40 sets: a smoke run")
    ap.add_argument("--sets", type=int, default=20_000, help="admission-only sets in all")
    ap.add_argument("--batch", type=int, default=250, help="sets per Dask task")
    ap.add_argument("--check-sets", type=int, default=200)
    ap.add_argument("--check-runs", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1, help="interleaved runs of each; best kept")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    sets, check_sets = (2_000, 40) if args.quick else (args.sets, args.check_sets)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        spec, ev, pts = make_spec(sets // 10, args.batch, None, 10)
        source = "real spec" if type(spec).__name__ != "StandIn" else "stand-in"
        results["admission"] = compare(spec, ev, pts, sets, Path(d), "adm", args.repeat)
        per = max(1, check_sets // 2)
        spec, ev, pts = make_spec(per, max(1, min(args.batch, per // 4)), args.check_runs, 2)
        results["check"] = compare(spec, ev, pts, per * 2, Path(d), "chk", args.repeat)
    from _host import cpu_name

    print(f"bench_sweep · {cpu_name()} · sets from the {source} · batch {args.batch} · best "
          f"of {args.repeat}")  # fmt: skip
    print(f"{'run':<22} {'sets':>6} {'1 process sets/s':>17} {'2 workers sets/s':>17} "
          f"{'speed-up':>9} {'+start-up':>10} {'start-up s':>11} {'same data':>10}")  # fmt: skip
    for name, r in (("admission only", results["admission"]),
                    (f"admission + check ({args.check_runs})", results["check"])):  # fmt: skip
        print(f"{name:<22} {r['sets']:>6} {r['plain_sets_s']:>17.0f} {r['dask_sets_s']:>17.0f} "
              f"{r['speedup']:>8.2f}x {r['speedup_with_startup']:>9.2f}x "
              f"{r['startup_s']:>11.2f} {'yes' if r['equal'] else 'NO':>10}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["equal"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
