"""``aegis memory`` on tensor-usage files of 1k to 20k tensors: read, plan every model (every
planner, each plan verified, the lower bound) and share, as the command does (no PNG).

Two shapes of file, generated deterministically: ``chain`` (a network's activations: tensor i
is made by op i and read up to 4 ops later, one in 10 by a skip connection up to 40 ops
later) and ``dense`` (every tensor live at once, the planner's worst case), plus ``far``
(the chain with op indices spread up to 10**12: what the plan costs must not depend on them).
Each case runs in its own process, cut at ``--limit`` seconds (shown as ``> limit``); one
that fails (a MemoryError under ``ulimit -v``) shows its error.

Usage: ``python benchmarks/bench_usage.py [--sizes 1000,5000,20000] [--limit 300]``; set
PYTHONPATH to the tree to measure (e.g. another checkout, for a before/after table).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

RUN = """
import json, sys, time
from aegis_core.memory.report import usages_from_json
from aegis_core.memory.sharing import plan_models
data = json.loads(open(sys.argv[1]).read())
t = time.perf_counter()
usages, interleave = usages_from_json(data, sys.argv[1])
plan = plan_models(usages, "concurrent" if interleave else "serial", alignment=1)
took = time.perf_counter() - t
m = plan.models[0]
print(json.dumps({"s": took, "planned": m.size, "bound": m.lower_bound, "method": m.method}))
"""


def usage_file(n: int, shape: str) -> dict[str, object]:
    rng = random.Random(n)
    tensors = []
    for i in range(n):
        if shape == "dense":
            first, last = 0, 0
        else:
            reach = rng.randint(5, 40) if rng.random() < 0.1 else rng.randint(1, 4)
            first, last = i, i + reach
            if shape == "far":
                first, last = first * 50_000_000, last * 50_000_000
        size = rng.randint(1, 1024) * 1024
        tensors.append({"name": f"t{i}", "size": size, "first": first, "last": last})
    return {"interleave": False, "models": [{"name": "m", "tensors": tensors}]}


def measure(path: Path, limit: float) -> dict[str, Any] | None:
    try:
        out = subprocess.run(
            [sys.executable, "-c", RUN, str(path)],
            capture_output=True,
            text=True,
            timeout=limit,
            env=os.environ,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:  # e.g. a MemoryError under `ulimit -v`
        return {"error": (exc.stderr.strip().splitlines() or ["?"])[-1]}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,5000,20000")
    ap.add_argument("--shapes", default="chain,far,dense")
    ap.add_argument("--limit", type=float, default=300.0)
    args = ap.parse_args()
    print("| tensors | file | seconds | planned MiB | lower bound MiB | method |")
    print("|---:|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                path = Path(tmp) / f"{shape}-{n}.json"
                path.write_text(json.dumps(usage_file(n, shape)))
                r = measure(path, args.limit)
                if r is None:
                    print(f"| {n} | {shape} | > {args.limit:.0f} | | | |", flush=True)
                    continue
                if "error" in r:
                    print(f"| {n} | {shape} | failed: {r['error'][:60]} | | | |", flush=True)
                    continue
                mib = 1 << 20
                print(f"| {n} | {shape} | {r['s']:.2f} | {r['planned'] / mib:.1f} | "
                      f"{r['bound'] / mib:.1f} | {r['method']} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
