"""Executor figures side by side, from results directories written by ``aegis exec``/``sim``.

    python benchmarks/exec_report.py RESULTS_DIR [BASELINE_DIR] [SIM_DIR]

Prints a markdown table per task: execution-time CV, misses, p99 and max response against
the analytical bound, the ``unscheduled`` baseline's p99 / max / misses, and the simulator's
p99; then the dispatch gap, launch latency and release lag of the scheduled run, and its
dispatch-ahead figures (share of dispatches decided ahead, their gap and cost).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def load(d: str | None) -> dict[str, Any] | None:
    if not d:
        return None
    path = Path(d) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def ms(ns: float | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.3f}"


def us(stats: dict[str, Any], key: str) -> str:
    return f"{stats[key] / 1e3:.1f}" if stats.get("n") else "-"


def table(run: dict[str, Any], base: dict[str, Any] | None, sim: dict[str, Any] | None) -> str:
    by_base = {t["name"]: t for t in (base or {}).get("tasks", [])}
    by_sim = {t["name"]: t for t in (sim or {}).get("tasks", [])}
    out = [
        f"## {run['scenario']} · {run['engine']}-{run['backend']} · {run['policy']} · "
        f"device: {run.get('device')}",
        "",
        "| task | jobs | misses | exec p50 ms | exec CV % | resp p99 ms | resp max ms | bound ms "
        "| unsched p99 ms | unsched max ms | unsched misses | sim p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in run["tasks"]:
        ex, r = t["exec_ns"] or {}, t["response_ns"] or {}
        b = by_base.get(t["name"], {})
        br = b.get("response_ns") or {}
        sr = (by_sim.get(t["name"], {}).get("response_ns")) or {}
        cv = f"{ex['cv'] * 100:.2f}" if ex else "-"
        out.append(
            f"| {t['name']} | {t['jobs']} | {t['misses']} | {ms(ex.get('p50'))} | {cv} "
            f"| {ms(r.get('p99'))} | {ms(r.get('max'))} | {ms(t.get('bound_ns'))} "
            f"| {ms(br.get('p99'))} | {ms(br.get('max'))} | {b.get('misses', '-')} "
            f"| {ms(sr.get('p99'))} |"
        )
    ex = run.get("exec", {})
    gap, lat, lag = (
        ex.get("dispatch_gap_ns", {}),
        ex.get("launch_latency_ns", {}),
        ex.get("release_lag_ns", {}),
    )
    out += [
        "",
        f"dispatch gap µs: p50 {us(gap, 'p50')}, p99 {us(gap, 'p99')}, max {us(gap, 'max')} "
        f"(n = {gap.get('n', 0)}); launch latency µs: p50 {us(lat, 'p50')}, "
        f"p99 {us(lat, 'p99')}; release lag µs: p50 {us(lag, 'p50')}, p99 {us(lag, 'p99')}",
        ahead_line(run),
        f"CUDA graphs: {ex.get('cuda_graphs')} {ex.get('graph_fallbacks') or ''}; "
        f"overruns (jobs past their WCET): "
        f"{ {t['name']: t['overruns'] for t in run.get('tasks', [])} }; chunk overruns: "
        f"{ex.get('chunk_overruns')}; faults: {ex.get('faulted_tasks') or 'none'}",
        f"versions: {run.get('versions')}",
    ]
    return "\n".join(out)


def ahead_line(run: dict[str, Any]) -> str:
    """Dispatch-ahead: its mode, the share of dispatches decided ahead, their gap and cost."""
    a = run.get("dispatch_ahead") or {}
    chained, cost = run.get("exec", {}).get("dispatch_gap_chained_ns", {}), a.get("decision_ns", {})
    return (
        f"dispatch-ahead: {a.get('mode', '-')}, {a.get('decided_ahead', 0)} of "
        f"{a.get('dispatches', 0)} dispatches decided ahead; chained gap µs: p50 "
        f"{us(chained, 'p50')}, p99 {us(chained, 'p99')}; ahead decision µs: p50 "
        f"{us(cost, 'p50')}, p99 {us(cost, 'p99')}"
    )


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    run = load(argv[0])
    if run is None:
        print(f"no summary.json in {argv[0]}")
        return 1
    print(
        table(
            run, load(argv[1] if len(argv) > 1 else None), load(argv[2] if len(argv) > 2 else None)
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
