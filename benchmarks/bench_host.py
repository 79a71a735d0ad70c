"""What each host setting of the executor's loop thread (``aegis_exec.host``) buys: the mock
backend runs ``benchmarks/gpu_backlog.yaml`` with every job exactly its WCET
(``aegis exec benchmarks/gpu_backlog.yaml --backend mock --exec-time wcet``), so every
deviation from the analysed schedule is the host's: how late the loop sees a release
(release lag) and how long the device idles while a job waits (dispatch gap).

Settings, side by side in one run, their repeats alternating (``off, pin, fifo, ..., off,
pin, ...``) so that a change in the machine's load hits every setting alike; each figure is
the median over the repeats:

* ``off``: the host left alone (``--host-tuning off``);
* ``pin``: only affinity, the loop thread pinned to the last allowed CPU;
* ``fifo``: only ``SCHED_FIFO`` (priority 10);
* ``lock``: only ``mlockall(MCL_CURRENT)``;
* ``fifo+pin``: both;
* ``auto``: what ``aegis exec`` does by default (``--host-tuning auto``).

``--load N`` starts N CPU-bound spinners (killed after) for a second table beside the
unloaded one. The header says whether the host permitted each setting (uid, RLIMIT_RTPRIO).

Usage: ``python benchmarks/bench_host.py [--repeats 3] [--duration-ms 1000] [--load 2]
[--scenario S.yaml --backend numpy] [--settings off,fifo]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import statistics
import sys
from pathlib import Path
from typing import Any

from _host import cpu_name
from bench_wall import spinners

from aegis_core.model.scenario import load_scenario, replace_scenario
from aegis_core.tools.runner import run_scenario
from aegis_exec import host
from aegis_exec.engine import ExecEngine

ROOT = Path(__file__).resolve().parent.parent
MS = 1_000_000


def setting_table() -> dict[str, host.HostSettings | None]:
    last = frozenset({max(os.sched_getaffinity(0))})
    off = host.OFF
    return {
        "off": None,
        "pin": dataclasses.replace(off, affinity=last),
        "fifo": dataclasses.replace(off, realtime="fifo"),
        "lock": dataclasses.replace(off, lock_memory=True),
        "fifo+pin": dataclasses.replace(off, affinity=last, realtime="fifo"),
        "auto": host.settings("auto"),
    }


def one_run(scenario: Any, backend: str, settings: host.HostSettings | None) -> dict[str, Any]:
    summary = run_scenario(
        scenario, ExecEngine(backend, host=settings), write=False, exec_time="wcet"
    ).summary
    ex = summary["exec"]
    lag, gap = ex["release_lag_ns"], ex["dispatch_gap_ns"]
    return {
        "lag_p50": lag["p50"], "lag_p99": lag["p99"], "lag_max": lag["max"],
        "gap_p99": gap.get("p99", 0), "misses": summary["misses"], "jobs": summary["jobs"],
        "host": ex["host"],
    }  # fmt: skip


def applied(h: dict[str, Any] | None) -> str:
    if h is None:
        return "-"
    a = h["applied"]
    got = [
        *([f"cpu {','.join(map(str, a['affinity']))}"] if a["affinity"] is not None else []),
        *([f"{a['realtime']} {a['priority']}"] if a["realtime"] else []),
        *(["locked"] if a["memory_locked"] else []),
    ]
    refused = [f"refused {k}" for k in h["refused"]]
    return " ".join(got + refused) or "nothing"


def measure(
    scenario: Any, backend: str, repeats: int, only: list[str] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    table = {k: v for k, v in setting_table().items() if only is None or k in only}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in table}
    for r in range(repeats):
        for name, s in table.items():
            runs[name].append(one_run(scenario, backend, s))
            print(f"  repeat {r + 1}/{repeats} {name}", file=sys.stderr, flush=True)
    out = []
    for name, rs in runs.items():
        med = {k: statistics.median(x[k] for x in rs) for k in rs[0] if k != "host"}
        med["host"] = rs[-1]["host"]
        med["misses_all"] = [x["misses"] for x in rs]
        out.append((name, med))
    return out


def print_table(title: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
    print(f"\n{title}")
    head = (f"| {'setting':<9} | {'applied':<28} | {'lag p50 µs':>10} | {'lag p99 µs':>10} | "
            f"{'lag max µs':>10} | {'gap p99 µs':>10} | {'misses (runs)':<22} |")  # fmt: skip
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for name, m in rows:
        misses = f"{m['misses']:g} ({', '.join(str(x) for x in m['misses_all'])})"
        print(
            f"| {name:<9} | {applied(m['host']):<28} | {m['lag_p50'] / 1e3:>10.1f} | "
            f"{m['lag_p99'] / 1e3:>10.1f} | {m['lag_max'] / 1e3:>10.1f} | "
            f"{m['gap_p99'] / 1e3:>10.1f} | {misses:<22} |"
        )


def permitted() -> str:
    probe = host.apply(dataclasses.replace(host.OFF, realtime="fifo", lock_memory=True))
    host.restore(probe)
    rt = probe.refused.get("realtime", "permitted")
    lock = probe.refused.get("lock_memory", "permitted")
    rtprio = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
    return (f"uid {os.getuid()}, RLIMIT_RTPRIO {rtprio}: SCHED_FIFO {rt}; mlockall {lock}; "
            f"CPUs allowed {sorted(os.sched_getaffinity(0))}")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration-ms", type=int, default=1000, help="each run's horizon")
    ap.add_argument("--load", type=int, default=0, help="also run with N CPU spinners")
    ap.add_argument("--scenario", default=str(ROOT / "benchmarks" / "gpu_backlog.yaml"))
    ap.add_argument("--backend", default="mock")
    ap.add_argument("--settings", help="comma-separated subset of the settings (default all)")
    args = ap.parse_args()
    only = args.settings.split(",") if args.settings else None
    if only is not None and (unknown := set(only) - set(setting_table())):
        ap.error(f"unknown settings {sorted(unknown)}; choose from {list(setting_table())}")
    sc = load_scenario(args.scenario)
    sc = replace_scenario(sc, duration_ns=args.duration_ms * MS)
    print(f"{cpu_name()} · {os.cpu_count()} CPUs · Python {platform.python_version()} · "
          f"{sc.name} on {args.backend}, exec-time wcet, {args.duration_ms} ms, "
          f"median of {args.repeats} alternating repeats")  # fmt: skip
    print(permitted())
    for load in sorted({0, args.load}):
        with spinners(load):
            rows = measure(sc, args.backend, args.repeats, only)
            avg = os.getloadavg()[0]
        print_table(f"{load} spinner(s), load average {avg:.1f} at the end", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
