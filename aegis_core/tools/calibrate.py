"""``aegis calibrate``: measure the host overheads of the executor on this machine and backend
(docs/THEORY.md §overheads) and write them as an overheads file (``aegis-overheads/1``).

The executor runs a calibration workload the way a real run does: several tasks on one slot,
first paced (the loop sleeps between releases: wake-up lag, completion detection after a
sleep) and then back to back (a release waiting while a job runs: the completion → decision →
launch chain). With a scenario, its own tasks run (its models, on its backend) at those two
loads; without one, a builtin workload of three tasks. Every job's four overheads are kept;
each figure's bound is the WCET estimator's rule (:func:`aegis_core.analysis.pwcet.estimate`)
at the stated exceedance, with its ``converged`` / ``supported`` flags.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aegis_core.model.errors import Interrupted
from aegis_core.model.overheads import Figure, Overhead, Overheads, thin
from aegis_core.model.policy import get_policy
from aegis_core.model.scenario import Scenario, Task
from aegis_core.model.types import fmt_count, ms_to_ns

PHASES = (("paced", 0.5), ("back-to-back", 0.95))
"""The two loads of a calibration: the tasks' utilisation in each phase."""


def builtin_workload() -> Scenario:
    """Three tasks of small jobs (periods 2, 3 and 5 ms), each the builtin ``mlp`` on a
    256-wide input (a backend that executes models runs it; the mock replays the WCET)."""
    tasks = tuple(
        Task(name=n, period_ns=ms_to_ns(p), deadline_ns=ms_to_ns(p), wcet_ns=ms_to_ns(c),
             model="mlp", input_shape=(256,))
        for n, p, c in (("cal-a", 2, 0.3), ("cal-b", 3, 0.45), ("cal-c", 5, 0.75))
    )  # fmt: skip
    return Scenario(name="calibrate", tasks=tasks, policy=get_policy("np-edf"))


def at_load(scenario: Scenario, utilisation: float, duration_ns: int) -> Scenario:
    """The scenario's tasks with periods (and deadlines) scaled so that their WCETs use the
    slot at ``utilisation``; one slot (np-edf) so that overheads chain as in a run."""
    from aegis_core.budget import budgets

    bs = budgets(scenario)
    now = sum(b.wcet_ns / t.period_ns for b, t in zip(bs, scenario.tasks, strict=True))
    scale = now / utilisation
    tasks = tuple(
        dataclasses.replace(
            t,
            period_ns=max(1, int(t.period_ns * scale)),
            deadline_ns=max(1, int(t.period_ns * scale)),
            jitter_ns=0,
        )
        for t in scenario.tasks
    )
    return dataclasses.replace(scenario, tasks=tasks, policy=get_policy("np-edf"),
                               duration_ns=duration_ns, overheads=None)  # fmt: skip


def measure(
    scenario: Scenario, backend: str, duration_ns: int,
    progress: Callable[[str], None] | None = None, host: str = "auto",
) -> tuple[dict[Overhead, list[int]], Any]:  # fmt: skip
    """Every overhead sample of the two phases, per figure, and the last engine (the host
    tuned as ``aegis exec`` tunes it: ``host``)."""
    import tempfile

    from aegis_core.run.engine import load_engine
    from aegis_core.tools.runner import run_scenario

    out: dict[Overhead, list[int]] = {w: [] for w in Overhead}
    for n, (label, u) in enumerate(PHASES, 1):
        engine: Any = load_engine("exec", backend=backend, host=host)
        if progress is not None:
            progress(f"calibrate: phase {n}/{len(PHASES)} ({label}, U = {u:g}), "
                     f"{duration_ns / 1e9:g} s on {engine.backend} ...")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="aegis-calibrate-") as tmp:
            # as a real run: the trace written after every instant (its cost is the host's);
            # every decision at the device's idle instant, as the analysis charges each one
            # (a job decided ahead is not on the critical path: no sample of its own)
            r = run_scenario(at_load(scenario, u, duration_ns), engine, out_dir=Path(tmp),
                             admission=False, exec_time="wcet", perfetto=False,
                             dispatch_ahead=False)  # fmt: skip
        if r.summary.get("interrupted"):  # a signal stopped the phase: no partial figures
            raise Interrupted(r.summary["interrupted"]["signal"])
        for w, samples in engine.overhead_samples().items():
            out[w].extend(samples)
    return out, engine


def figure(what: Overhead, samples: list[int], exceedance: float) -> Figure:
    """The estimator's bound of one overhead's samples (``+1 ns`` keeps zeros estimable)."""
    from aegis_core.analysis.pwcet import estimate
    from aegis_core.run.samples import cost_stats as overhead_stats

    if not samples:
        return Figure(what, 0, 0, "none measured", False, False,
                      (f"no {what.value} sample was measured",))  # fmt: skip
    if max(samples) == 0:
        return Figure(what, 0, len(samples), "all zero", True, True,
                      stats=overhead_stats(samples), samples_ns=thin(samples))  # fmt: skip
    est = estimate([s + 1 for s in samples], exceedance, candidates=False)
    return Figure(what, est.wcet_ns - 1, est.n, est.method, est.converged, est.supported,
                  est.warnings, overhead_stats(samples), thin(samples))  # fmt: skip


def calibrate(
    scenario: Scenario | None, backend: str = "mock", *, duration_ms: float = 4000,
    exceedance: float = 1e-3, progress: Callable[[str], None] | None = None,
    host: str = "auto",
) -> Overheads:  # fmt: skip
    """Measure and estimate the four overheads; ``scenario`` None: the builtin workload;
    ``host``: the loop thread's tuning (``aegis exec --host-tuning``; calibrate as you run)."""
    from aegis_core import __version__
    from aegis_core.tools.results import cpu_name, versions

    workload = scenario or builtin_workload()
    t = time.perf_counter()
    span = ms_to_ns(duration_ms / len(PHASES))
    samples, engine = measure(workload, backend, span, progress, host)
    figures = {w: figure(w, samples[w], exceedance) for w in Overhead}

    if progress is not None:
        progress(f"calibrate: {fmt_count(sum(map(len, samples.values())), 'sample')} in "
                 f"{time.perf_counter() - t:.1f} s")  # fmt: skip
    return Overheads(
        figures, backend=engine.backend, device=engine.device,
        machine={"cpu": cpu_name(), "cores": _cores(), "platform": platform.platform(),
                 "python": sys.version.split()[0]},
        fingerprint={**versions(), "host": _tuning(engine)}, exceedance=exceedance,
        created=datetime.now(UTC).isoformat(timespec="seconds"), aegis_version=__version__,
    )  # fmt: skip


def _tuning(engine: Any) -> str:
    """What the host granted the loop thread, in words (part of the fingerprint)."""
    host = engine.report().get("host") or {}
    applied = host.get("applied") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(applied.items()) if v) or "none"


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def format_overheads(o: Overheads) -> str:
    """The calibration as a table (µs)."""
    lines = [f"host overheads · {o.backend} on {o.device} · {o.machine.get('cpu', '?')} · "
             f"exceedance {o.exceedance:g}",
             f"{'figure':<12} {'n':>7} {'p50 µs':>9} {'p99 µs':>9} {'max µs':>9} "
             f"{'bound µs':>9}  flags"]  # fmt: skip
    for w in Overhead:
        f = o.figures[w]
        st = f.stats

        def us(k: str, st: Any = st) -> str:
            return f"{st[k] / 1e3:.1f}" if k in st else "-"

        flags = ", ".join(x for x in ("converged" if f.converged else "not converged",
                                       "" if f.supported else "unsupported") if x)  # fmt: skip
        lines.append(f"{w.value:<12} {f.n:>7} {us('p50'):>9} {us('p99'):>9} {us('max'):>9} "
                     f"{f.bound_ns / 1e3:>9.1f}  {flags}")  # fmt: skip
    lines.append(f"charged per dispatched job or chunk: {o.per_dispatch_ns / 1e3:.1f} µs; "
                 f"release jitter: {o.release_lag_ns / 1e3:.1f} µs")  # fmt: skip
    return "\n".join(lines)
