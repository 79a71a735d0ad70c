"""``aegis profile``: measure each task's execution time on a backend and write its profile.

The measuring itself belongs to an engine package (found by name in the entry-point group
``aegis.profilers``, as engines are): the core decides the warm-up, when to stop
(:class:`~aegis_core.analysis.pwcet.Convergence`) and the WCET, and writes ``<out>/<task>.json``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Protocol

from aegis_core import __version__
from aegis_core.analysis.pwcet import (
    Convergence,
    Settings,
    WcetEstimate,
    estimate,
    host_load,
    reason,
    with_check,
)
from aegis_core.model.errors import EngineNotFound, InputError
from aegis_core.model.profile import Profile
from aegis_core.model.scenario import Scenario
from aegis_core.model.types import fmt_count

PROFILER_GROUP = "aegis.profilers"
PACES = ("period", "none")


class Profiler(Protocol):
    """What an engine package provides to measure job durations (ns)."""

    device: str
    host_timed: bool
    """Its durations depend on the host's CPUs (real kernels): the host-load check applies."""

    def __enter__(self) -> Profiler: ...

    def __exit__(self, *exc: object) -> None: ...

    def report(self) -> dict[str, Any]: ...

    def co_runners(self, task: int) -> list[int]: ...

    def samples(
        self, task: int, *, contention: bool = False, pace_ns: int = 0
    ) -> Generator[int, None, None]: ...


def load_profiler(scenario: Scenario, backend: str, name: str = "exec") -> Profiler:
    for ep in metadata.entry_points(group=PROFILER_GROUP):
        if ep.name == name:
            factory = ep.load()
            profiler: Profiler = factory(scenario, backend)
            return profiler
    raise EngineNotFound(f"no profiler named {name!r} (is aegisrt installed? pip install -e .)")


@dataclass(frozen=True)
class Measured:
    profile: Profile
    path: Path
    measured_wcet_ns: int | None = None
    """A contention profile's own WCET where it was below the isolated one (the profile then
    carries the isolated bound); None otherwise."""


BUSY_SHARE = 0.25
"""Host-load check: other processes using this share of the CPUs or more while a task is
profiled make its profile unsupported (docs/THEORY.md §pwcet-rule, rule 6)."""


@dataclass(frozen=True)
class HostSample:
    """One reading of the host's CPU accounting: wall time, CPU time spent by every process
    (busy, all CPUs together) and by this one, all in seconds, and the number of CPUs."""

    wall_s: float
    busy_s: float
    own_s: float
    cpus: int

    def others_share(self, later: HostSample) -> float:
        """Share of the CPUs' capacity that other processes used from this reading to
        ``later``."""
        wall = (later.wall_s - self.wall_s) * self.cpus
        others = (later.busy_s - self.busy_s) - (later.own_s - self.own_s)
        return min(1.0, max(0.0, others / wall)) if wall > 0 else 0.0


HostMeter = Callable[[], HostSample | None]


def proc_stat_meter() -> HostSample | None:
    """Linux: ``/proc/stat``'s CPU line (busy = all but idle and iowait) and this process's
    own CPU time (every thread); None where it cannot be read."""
    import os
    import time

    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)
    t = os.times()
    return HostSample(time.monotonic(), busy / hz, t.user + t.system, os.cpu_count() or 1)


class Progress:
    """Per task on ``stream``: a progress bar of its samples on a terminal
    (:mod:`~aegis_core.tools.progress`: not under CI), and one line when it is done (also
    when not a terminal: logs stay readable)."""

    def __init__(self, stream: IO[str] | None) -> None:
        from aegis_core.tools.progress import terminal

        self.stream = stream
        self.tty = stream is not None and terminal(stream=stream) is not None
        self._bar: Any = None
        self._label = ""

    def update(self, label: str, n: int, total: int, wcet_ns: float | None) -> None:
        if self.stream is None or not self.tty:
            return
        if self._bar is None or label != self._label:
            from aegis_core.tools.progress import Bar

            self.close()
            self._bar, self._label = Bar(self.stream, total, "samples", label), label
        self._bar.show(n, "" if wcet_ns is None else f"WCET so far {wcet_ns / 1e6:.3f} ms")

    def done(self, label: str, text: str) -> None:
        self.close()
        if self.stream is None:
            return
        self.stream.write(f"{label}: {text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@dataclass(frozen=True)
class Sampled:
    samples: list[int]
    warmup: list[int]
    """The warm-up runs and, after them, a discarded start-up transient (collection order)."""
    transient: int
    """How many of ``warmup`` are the transient (``Convergence.discarded``)."""
    converged: bool


def _measure(
    profiler: Profiler, index: int, *, contention: bool, warmup: int, exceedance: float,
    settings: Settings, progress: Progress, label: str, pace_ns: int,
) -> Sampled:  # fmt: skip
    """Warm-up runs (discarded, kept for the record), then samples until converged (a
    start-up transient found on the way is discarded too, and kept for the record)."""
    conv = Convergence(exceedance, settings)
    warm: list[int] = []
    gen = profiler.samples(index, contention=contention, pace_ns=pace_ns)
    with contextlib.closing(gen) as durations:
        for value in durations:
            if len(warm) < warmup:
                warm.append(value)
                continue
            stop = conv.add(value)
            last = conv.history[-1] if conv.history else None
            progress.update(label, len(conv.samples), settings.max_samples, last)
            if stop:
                break
    gone = [int(v) for v in conv.discarded]
    return Sampled([int(v) for v in conv.samples], warm + gone, len(gone), conv.converged)


def profile_scenario(
    scenario: Scenario,
    *,
    backend: str = "auto",
    out_dir: Path = Path("profiles"),
    samples: int = 100,
    warmup: int = 5,
    contention: bool = False,
    exceedance: float = 1e-3,
    pace: str = "period",
    settings: Settings | None = None,
    progress: IO[str] | None = sys.stderr,
    profiler: Profiler | None = None,
    meter: HostMeter = proc_stat_meter,
) -> list[Measured]:
    """Profile every task with a model (or, on mock, a WCET); write ``<out_dir>/<task>.json``.
    With ``contention`` each task is measured alone too, written as ``<task>.isolated.json``;
    ``<task>.json`` is then the contention profile (the one to admit with): where its WCET is
    below the isolated one, it carries the isolated bound (pWCET table too) with a warning,
    never silently the smaller. ``pace``: ``period`` launches a task's jobs one period apart,
    as its releases come (idle gaps let caches go cold and clocks drop, as in a real periodic
    run: back-to-back runs measure faster than the run will be), ``none`` back to back
    (quicker, optimistic). ``meter`` reads the host's CPU accounting around each measurement
    (the host-load check, rule 6 of :mod:`aegis_core.analysis.pwcet`)."""
    if pace not in PACES:
        raise InputError(f"--pace must be one of {', '.join(PACES)}, got {pace!r}")
    if warmup < 0:
        raise InputError(f"--warmup must be >= 0, got {warmup}")
    if not 0 < exceedance < 1:
        raise InputError(f"--exceedance must lie in (0, 1), got {exceedance}")
    base = settings or Settings()
    if samples < base.min_samples:
        raise InputError(f"--samples must be >= {base.min_samples}, got {samples}")
    s = replace(base, max_samples=samples)
    prof = profiler or load_profiler(scenario, backend)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"profiles directory {out_dir}: {exc.strerror or exc}") from exc
    bar = Progress(progress)
    out: list[Measured] = []
    with prof:
        report = prof.report()
        for i, task in enumerate(scenario.tasks):
            modes = ["isolated", "contention"] if contention else ["isolated"]
            isolated: WcetEstimate | None = None
            for mode in modes:
                label = f"{task.name} [{mode}]"
                before = meter()
                got = _measure(
                    prof, i, contention=mode == "contention", warmup=warmup,
                    exceedance=exceedance, settings=s, progress=bar, label=label,
                    pace_ns=task.period_ns if pace == "period" else 0,
                )  # fmt: skip
                after = meter()
                share = None if before is None or after is None else before.others_share(after)
                est = replace(estimate(got.samples, exceedance, s), converged=got.converged)
                if got.transient:
                    est = _note(est, _transient_note(got, warmup))
                if prof.host_timed:
                    est = with_check(est, host_load(share, BUSY_SHARE))
                own = None
                if mode == "isolated":
                    isolated = est
                elif isolated is not None and est.wcet_ns < isolated.wcet_ns:
                    own, est = est.wcet_ns, _isolated_bound(est, isolated)
                co = (
                    [scenario.tasks[j].name for j in prof.co_runners(i)]
                    if mode == "contention"
                    else []
                )
                clock = {**_clock(report), "pace_ns": task.period_ns if pace == "period" else 0}
                if share is not None:
                    clock["others_cpu_share"] = round(share, 4)
                profile = Profile.from_estimate(
                    est, samples_ns=got.samples, task=task.name, model=task.model,
                    batch=task.batch, input_shape=task.input_shape,
                    backend=str(report.get("backend", backend)), device=prof.device, mode=mode,
                    co_runners=tuple(co), warmup_ns=tuple(got.warmup), clock=clock,
                    aegis_version=__version__,
                )  # fmt: skip
                last = mode == modes[-1]
                path = out_dir / (f"{task.name}.json" if last else f"{task.name}.{mode}.json")
                profile.save(path)
                n = fmt_count(len(got.samples), "sample")
                bar.done(label, f"{n}, WCET {profile.wcet_ns / 1e6:.3f} ms ({profile.method}) "
                         f"-> {path}")  # fmt: skip
                out.append(Measured(profile, path, own))
    return out


def _note(est: WcetEstimate, warning: str) -> WcetEstimate:
    return replace(est, warnings=(*est.warnings, warning))


def _transient_note(got: Sampled, warmup: int) -> str:
    import statistics

    gone, kept = statistics.median(got.warmup[warmup:]), statistics.median(got.samples)
    return (f"a start-up transient of {got.transient} runs (median {gone / 1e6:.3f} ms, then "
            f"{kept / 1e6:.3f} ms) was discarded, kept with the warm-up runs")  # fmt: skip


def _isolated_bound(est: WcetEstimate, isolated: WcetEstimate) -> WcetEstimate:
    """A contention estimate below the isolated one: the isolated (larger) bound, said so."""
    table = {k: max(v, isolated.pwcet.get(k, v)) for k, v in est.pwcet.items()}
    return _note(
        replace(est, wcet_ns=isolated.wcet_ns, pwcet=table, method=f"isolated {isolated.method}"),
        f"contention WCET {est.wcet_ns / 1e6:.3f} ms is below the isolated "
        f"{isolated.wcet_ns / 1e6:.3f} ms (the co-runners did not slow it, or the machine "
        "changed between the two measurements): the isolated bound is used",
    )


def _clock(report: dict[str, Any]) -> dict[str, Any]:
    """What the backend says about the device and its clocks (versions, memory, clocks)."""
    keep = ("versions", "clocks", "blas_threads_per_stream", "cuda_graphs")
    return {k: report[k] for k in keep if k in report}


def format_profiles(measured: list[Measured]) -> str:
    lines = [
        f"{'task':<16} {'mode':<10} {'n':>4} {'warm':>4} {'p50 ms':>9} {'max ms':>9} "
        f"{'WCET ms':>9} {'method':<16} {'converged':<9} supported"
    ]
    for m in measured:
        p = m.profile
        why = reason(p.checks)
        supported = "yes" if p.supported else f"NO ({why})" if why else "NO"
        lines.append(
            f"{p.task:<16} {p.mode:<10} {len(p.samples_ns):>4} {len(p.warmup_ns):>4} "
            f"{p.stats['p50'] / 1e6:>9.3f} {p.stats['max'] / 1e6:>9.3f} {p.wcet_ns / 1e6:>9.3f} "
            f"{p.method:<16} {'yes' if p.converged else 'NO':<9} {supported}"
        )
    iso = {m.profile.task: m.profile for m in measured if m.profile.mode == "isolated"}
    for m in measured:
        p = m.profile
        if p.mode == "contention" and p.task in iso:
            own = p.wcet_ns if m.measured_wcet_ns is None else m.measured_wcet_ns
            below = (
                "" if m.measured_wcet_ns is None
                else " — BELOW the isolated WCET: the isolated bound is used"
            )  # fmt: skip
            lines.append(
                f"contention moves {p.task}'s WCET by x{own / iso[p.task].wcet_ns:.3f} "
                f"(p50 x{p.stats['p50'] / iso[p.task].stats['p50']:.3f}){below}"
            )
    for m in measured:
        for w in m.profile.warnings:
            lines.append(f"warning: {m.profile.task} [{m.profile.mode}]: {w}")
    return "\n".join(lines)
