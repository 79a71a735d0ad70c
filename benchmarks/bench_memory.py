"""Memory planning on the builtin zoo: per model, naive vs each planner vs the lower bound;
per combination of 2 and 3 models, isolated vs shared vs lower bound under each sharing mode
(serial: np-edf / np-fp / fifo; nested: lp-edf with every model preemptible at its
FLOP-balanced halves, deadlines in list order; concurrent: unscheduled). Activations only
(weights and inputs are persistent and listed apart), offsets aligned to 256 B. Also the
executor's arena (activations plus the kernels' scratch buffers) for the same sets.

Usage: ``python benchmarks/bench_memory.py``.
"""

from __future__ import annotations

import itertools
import sys
import time

from aegis_core.graph.zoo import MODELS, build_model
from aegis_core.memory import planner, sharing
from aegis_exec.arena import layout
from aegis_exec.backends import TaskWork

MIB = 1 << 20


def main() -> int:
    names = sorted(MODELS)
    graphs = {n: build_model(n) for n in names}
    usages = {n: planner.usage_of(g) for n, g in graphs.items()}
    print("## Per model (activations, MiB; default input shapes, batch 1)\n")
    print(
        "| model | tensors | naive | greedy by size | greedy by breadth | multi-order | "
        "lower bound | chosen | gap | weights |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in names:
        t = time.perf_counter()
        p = planner.plan_model(usages[n], planner.ALIGN)
        took = (time.perf_counter() - t) * 1e3
        c = p.candidates
        print(f"| {n} | {len(usages[n].tensors)} | {p.naive / MIB:.3f} | "
              f"{c['greedy-by-size'] / MIB:.3f} | {c['greedy-by-breadth'] / MIB:.3f} | "
              f"{c['greedy-multi-order'] / MIB:.3f} | {p.lower_bound / MIB:.3f} | {p.method} | "
              f"{p.size / p.lower_bound - 1:.1%} | {usages[n].weights_bytes / MIB:.2f} "
              f"({took:.0f} ms to plan) |")  # fmt: skip
    print("\n## Combinations (activations, MiB)\n")
    print(
        "| models | mode | isolated | shared | lower bound | reduction | gap to bound | "
        "executor arena (with scratch) | its reduction |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for k in (2, 3):
        for combo in itertools.combinations(names, k):
            for mode, policy in (("serial", "np-edf"), ("nested", "lp-edf"),
                                 ("concurrent", "unscheduled")):  # fmt: skip
                us = []
                work = []
                for i, n in enumerate(combo):
                    g = graphs[n]
                    halves = tuple(g.chunks(2)) if mode == "nested" else (range(len(g.ops)),)
                    u = usages[n]
                    bounds = tuple(r.start for r in halves[1:])
                    us.append(planner.ModelUsage(f"{n}", u.tensors, u.weights_bytes, u.inputs_bytes,
                                             bounds, (k - i) * 10**7))  # fmt: skip
                    work.append(TaskWork(i, n, g, halves, (1,)))
                p = sharing.plan_models(us, mode, planner.ALIGN)
                lay = layout(work, policy, [(k - i) * 10**7 for i in range(k)])
                gap = p.shared_bytes / p.lower_bound_bytes - 1
                print(f"| {' + '.join(combo)} | {mode} | {p.isolated_bytes / MIB:.3f} | "
                      f"{p.shared_bytes / MIB:.3f} | {p.lower_bound_bytes / MIB:.3f} | "
                      f"{p.reduction:.1%} | {gap:.1%} | {lay.nbytes / MIB:.3f} | "
                      f"{lay.plan.reduction:.1%} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
