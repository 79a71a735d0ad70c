"""Memory at any horizon: peak RSS of ``aegis sim`` (whole process, default options: trace.jsonl
and trace.json on) against the number of jobs, on the simulator benchmark set.

Task set ``benchmarks/u08_five_tasks.yaml`` (220 jobs per simulated second), the horizon set
with ``--duration-ms`` for each row's job count. Each row runs in a fresh child process; its
peak RSS is the child's ``ru_maxrss`` read by a wrapper process of its own, so no row sees
another's peak. The table gives jobs, wall time, peak RSS, bytes on disk, and each row's peak
over the first row's (the issue's target: 2 000 000 jobs at most 1.5× the peak at 100 000, and
10 000 000 jobs at most 400 MB).

Usage: ``python benchmarks/bench_stream.py [--jobs 100000 1000000 2000000 10000000]
[--out DIR] [--json OUT]`` (the 10 M row writes about 20 GB of traces and takes minutes; the
results directory is removed after each row).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "benchmarks" / "u08_five_tasks.yaml"
JOBS_PER_S = 220  # (1/10 + 1/20 + 1/25 + 1/50 + 1/100) per ms x 1000

_WRAP = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)
"""


def peak(jobs: int, out: Path) -> dict[str, float]:
    duration_ms = jobs * 1000 // JOBS_PER_S
    cmd = [sys.executable, "-c", _WRAP, sys.executable, "-m", "aegis_core.tools.cli", "sim",
           str(SCENARIO), "--out", str(out), "--duration-ms", str(duration_ms)]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss_kb, rc = (int(x) for x in done.stdout.split())
    if rc != 0:
        raise SystemExit(f"aegis sim exited {rc} at {jobs} jobs: {done.stderr.strip()}")
    summary = json.loads((out / "summary.json").read_text())
    disk = sum(p.stat().st_size for p in out.iterdir())
    shutil.rmtree(out)
    return {
        "jobs": summary["jobs"],
        "wall_s": wall,
        "peak_mb": rss_kb / 1024,
        "disk_mb": disk / 2**20,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, nargs="+", default=[100_000, 1_000_000, 2_000_000])
    ap.add_argument("--out", type=Path, help="where the runs write (default: a temporary folder)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="aegis-stream-"))
    rows = []
    print(f"{'jobs':>10} {'wall s':>8} {'peak MB':>8} {'x first':>8} {'bytes/job':>10} "
          f"{'disk MB':>9}")  # fmt: skip
    for n in args.jobs:
        row = peak(n, base / f"run-{n}")
        rows.append(row)
        first = rows[0]["peak_mb"]
        per_job = (row["peak_mb"] - first) * 2**20 / max(1, row["jobs"] - rows[0]["jobs"])
        print(f"{row['jobs']:>10} {row['wall_s']:>8.1f} {row['peak_mb']:>8.1f} "
              f"{row['peak_mb'] / first:>8.2f} {per_job if len(rows) > 1 else 0:>10.1f} "
              f"{row['disk_mb']:>9.0f}", flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
