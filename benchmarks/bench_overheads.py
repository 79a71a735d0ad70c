"""Host overheads charged: calibrate, then execute and simulate with the overheads charged,
and print per task bound, sim p99, exec p99, exec max, misses and unattributed exceedances.

    python benchmarks/bench_overheads.py [--load N] [--duration-ms X] [--numpy]
    python benchmarks/bench_overheads.py --report RESULTS_DIR [...]   # tables of finished runs

Each backend is calibrated once (``aegis calibrate``'s workload: the scenario's own tasks for
numpy, the builtin workload for mock) under the same load as the runs; ``--load N`` starts N
CPU-bound processes for the whole benchmark (the acceptance: two, on a 2-core machine).
Every exec runs at ``--exec-time wcet`` (mock: every job exactly its WCET); the simulator
replays the calibrated overheads. Results go to ``results/bench_overheads/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _host import cpu_name

MOCK = ("scenarios/tiny_gpu.yaml", "scenarios/three_models.yaml", "benchmarks/gpu_backlog.yaml")
NUMPY = ("scenarios/three_models_cpu.yaml",)
OUT = Path("results/bench_overheads")


def _spin() -> None:  # pragma: no cover - runs in a child process
    while True:
        pass


@contextlib.contextmanager
def load(n: int) -> Iterator[None]:
    procs = [mp.Process(target=_spin, daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.terminate()


def run(path: str, backend: str, overheads: Any, duration_ms: float | None) -> dict[str, Any]:
    """Exec then sim of one scenario with the overheads charged; both summaries."""
    import dataclasses

    from aegis_core.model.scenario import load_scenario
    from aegis_core.model.types import ms_to_ns
    from aegis_core.run.engine import load_engine
    from aegis_core.tools.runner import run_scenario

    sc = dataclasses.replace(load_scenario(path), overheads=overheads)
    if duration_ms is not None:
        sc = dataclasses.replace(sc, duration_ns=ms_to_ns(duration_ms))
    out = OUT / sc.name
    engine = load_engine("exec", backend=backend, host="auto")
    ex = run_scenario(sc, engine, out_dir=out / f"exec-{backend}", exec_time="wcet",
                      perfetto=False)  # fmt: skip
    sim = run_scenario(sc, "sim", out_dir=out / "sim", exec_time="wcet", perfetto=False)
    return {"exec": ex.summary, "sim": sim.summary}


def rows(name: str, exec_s: dict[str, Any], sim_s: dict[str, Any] | None) -> list[str]:
    out = []
    sims = {t["name"]: t for t in (sim_s or {}).get("tasks", [])}
    for t in exec_s["tasks"]:
        if not t.get("admitted", True):
            out.append(f"| {name} | {exec_s['backend']} | {t['name']} | rejected | | | | | | | |")
            continue
        r, b = t["response_ns"] or {}, t["bound_ns"]
        s = (sims.get(t["name"]) or {}).get("response_ns") or {}
        diff = f"{(s['p99'] - r['p99']) / r['p99']:+.1%}" if s and r else "-"
        ratio = f"{b / r['max']:.2f}" if b and r else "-"
        out.append(
            f"| {name} | {exec_s['backend']} | {t['name']} | {b / 1e6:.3f} | "
            f"{s.get('p99', 0) / 1e6:.3f} | {r.get('p99', 0) / 1e6:.3f} | {diff} | "
            f"{r.get('max', 0) / 1e6:.3f} | {ratio} | {t['misses']} | "
            f"{t.get('exceeded', '?')} / {t.get('unattributed', '?')} | "
            f"{_assumptions(t)} |"
        )
    return out


def _assumptions(t: dict[str, Any]) -> str:
    a = t.get("assumptions") or {}
    return ", ".join(f"{k} {v}" for k, v in a.items() if v) or "0"


HEAD = ("| scenario | backend | task | bound ms | sim p99 | exec p99 | sim−exec p99 | exec max | "
        "bound/max | misses | exceeded / unattributed | assumption records |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip


def figures(o: Any) -> str:
    from aegis_core.model.overheads import Overhead

    cells = []
    for w in Overhead:
        f, st = o.figures[w], o.figures[w].stats
        us = {k: st.get(k, 0) / 1e3 for k in ("p50", "p99", "max")}
        cells.append(f"{w.value} p50 {us['p50']:.1f} / p99 {us['p99']:.1f} / max "
                     f"{us['max']:.1f} / bound {f.bound_ns / 1e3:.1f} µs")  # fmt: skip
    return f"{o.backend}: " + "; ".join(cells)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--load", type=int, default=0, help="CPU-bound background processes")
    ap.add_argument("--duration-ms", type=float, help="override each scenario's horizon")
    ap.add_argument("--calibrate-ms", type=float, default=4000, help="calibration time")
    ap.add_argument("--numpy", action="store_true", help="also three_models_cpu on numpy")
    ap.add_argument("--report", nargs="*", help="print the table of finished results dirs")
    args = ap.parse_args()
    if args.report is not None:
        print(HEAD)
        for d in args.report:
            s = json.loads((Path(d) / "summary.json").read_text())
            print("\n".join(rows(s["scenario"], s, None)))
        return 0
    from aegis_core.model.scenario import load_scenario
    from aegis_core.tools.calibrate import calibrate

    print(f"machine: {cpu_name()}, python {sys.version.split()[0]}, load {args.load}")
    lines, t0 = [], time.perf_counter()
    with load(args.load):
        plans = [("mock", None, MOCK)]
        if args.numpy:
            plans.append(("numpy", NUMPY[0], NUMPY))
        for backend, workload, scenarios in plans:
            o = calibrate(load_scenario(workload) if workload else None, backend,
                          duration_ms=args.calibrate_ms)  # fmt: skip
            OUT.mkdir(parents=True, exist_ok=True)
            o.save(OUT / f"overheads-{backend}.json")
            print(figures(o))
            for path in scenarios:
                both = run(path, backend, o, args.duration_ms)
                lines += rows(Path(path).stem, both["exec"], both["sim"])
    print(HEAD)
    print("\n".join(lines))
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
