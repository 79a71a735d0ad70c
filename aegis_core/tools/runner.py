"""One call from a scenario to a results directory, for any engine."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from aegis_core.analysis.admission import admit
from aegis_core.budget import any_samples
from aegis_core.model.errors import InputError, Interrupted
from aegis_core.model.scenario import Scenario
from aegis_core.record.schema import EndRecord, Interruption, admission_records
from aegis_core.record.sinks import JsonlTrace, NullTrace, TeeTrace, TraceSink
from aegis_core.run.engine import Engine, load_engine
from aegis_core.run.loop import LoopStats, run
from aegis_core.run.plan import RunPlan
from aegis_core.run.samples import cost_stats as overhead_stats
from aegis_core.run.scheduler import Job, Scheduler
from aegis_core.tools.results import JobTally, versions, write_summary
from aegis_core.tools.signals import stop_on_signals

if TYPE_CHECKING:
    from aegis_core.analysis.admission import Admission


@dataclass
class RunResult:
    summary: dict[str, Any]
    jobs: list[Job]
    out_dir: Path | None
    loop: LoopStats


def run_fingerprint(
    scenario: Scenario, seed: int, admission: bool, exec_time: str, host_mode: str = "sample"
) -> str:
    """What makes two runs the same run: the effective scenario (every task field, profile
    samples included; not file paths), seed, admission setting, execution-time mode and
    AegisRT's version. ``aegis compare`` reuses results only when this matches."""
    import dataclasses
    import hashlib
    import json

    from aegis_core import __version__

    tasks = []
    for t in scenario.tasks:
        d = dataclasses.asdict(t)
        d.pop("profile", None)
        d.pop("measured", None)
        samples = t.measured.samples_ns if t.measured is not None else None
        d["profile_wcet_ns"] = t.measured.wcet_ns if t.measured is not None else None
        d["profile_samples"] = hashlib.sha256(repr(samples).encode()).hexdigest()
        tasks.append(d)
    body = {
        "version": __version__, "name": scenario.name, "policy": str(scenario.policy),
        "duration_ns": scenario.duration_ns, "gpu": scenario.gpu_memory_bytes, "seed": seed,
        "tasks": tasks, "admission": admission, "exec_time": exec_time,
        "overheads": _overheads_digest(scenario, host_mode),
    }  # fmt: skip
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _overheads_digest(scenario: Scenario, host_mode: str) -> str | None:
    """The charged overheads as a digest (bounds, replayed samples and how they are replayed;
    None: none)."""
    import hashlib
    import json

    o = scenario.overheads
    if o is None:
        return None
    body: dict[str, object] = {"mode": host_mode}
    body.update({str(w): (f.bound_ns, f.samples_ns) for w, f in o.figures.items()})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def engine_label(engine: Engine) -> str:
    """``sim``, ``exec-numpy``, …: the engine and its backend."""
    return engine.name if not engine.backend else f"{engine.name}-{engine.backend}"


def default_out_dir(scenario: Scenario, engine: Engine) -> Path:
    return Path("results") / scenario.name / engine_label(engine)


def _open_outputs(
    out: Path, trace: bool, flush: str, memory: dict[str, int] | None = None
) -> TraceSink:
    """Create ``out`` (an InputError if it cannot be), drop a previous run's results there
    (never mix two runs), and open the trace: ``trace.jsonl``, and with ``memory`` (the
    activation bytes per task, ``{}`` for none) ``trace.json`` from the same records."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in (
            "summary.json",
            "jobs.csv",
            "trace.json",
            *(() if trace else ("trace.jsonl",)),
        ):
            (out / name).unlink(missing_ok=True)
        if not trace:
            return NullTrace()
        jsonl = JsonlTrace.open(out / "trace.jsonl", flush=flush)
        if memory is None:
            return jsonl
        from aegis_core.tools.perfetto import PerfettoTrace

        return TeeTrace(jsonl, PerfettoTrace.open(out / "trace.json", memory))
    except OSError as exc:
        raise InputError(
            f"results directory {out}: {exc.strerror or exc} (choose another with --out)"
        ) from exc


def _discard(out: Path, created: bool) -> None:
    """Remove what a run that never started wrote: its trace, and ``out`` if it made it."""
    with contextlib.suppress(OSError):
        (out / "trace.jsonl").unlink(missing_ok=True)
        (out / "trace.json").unlink(missing_ok=True)
        if created:
            out.rmdir()


_JOBS_TMP = "jobs.csv.tmp"


def _open_jobs(out: Path | None) -> TextIO | None:
    """``jobs.csv`` is written as the run goes, under a temporary name until it is whole."""
    if out is None:
        return None
    try:
        return open(out / _JOBS_TMP, "w", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"results directory {out}: {exc.strerror or exc}") from exc


def run_scenario(
    scenario: Scenario,
    engine: Engine | str = "sim",
    *,
    out_dir: Path | None = None,
    write: bool = True,
    trace: bool = True,
    trace_flush: str = "batch",
    seed: int | None = None,
    admission: bool = True,
    exec_time: str = "sample",
    perfetto: bool = True,
    host_mode: str = "sample",
    keep_jobs: bool | None = None,
    progress: TextIO | None = None,
) -> RunResult:
    """Simulate or execute ``scenario`` and (by default) write its results directory.

    ``write=False`` keeps everything in memory (no trace file, no results); ``trace=False``
    writes results but no ``trace.jsonl``; ``trace_flush`` is when trace records reach the OS
    (``record``, ``instant`` or ``batch``: see :class:`~aegis_core.record.sinks.JsonlTrace`).
    Admission runs first; ``admission=False`` still analyses and records the verdicts but runs
    every task (for baseline comparisons). ``exec_time``: ``sample`` replays profiled tasks'
    samples (simulated engines and the mock backend), ``wcet`` runs every job for its WCET.
    ``perfetto=False`` skips ``trace.json`` (the Perfetto export of ``trace.jsonl``).
    ``host_mode``: how a simulated engine replays the scenario's host overheads (``sample``:
    seeded draws from the calibrated samples; ``bound``: every one at its bound).
    ``keep_jobs``: keep every job in :attr:`RunResult.jobs` (default: only when nothing is
    written; a written run streams its jobs to ``jobs.csv`` and keeps none, so its memory
    does not grow with its length).
    ``progress``: where to draw the run's progress (:mod:`~aegis_core.tools.progress`).

    SIGINT and SIGTERM during the run (main thread) stop it after the instant it is in: the
    results are written for what ran, the summary says ``interrupted: {at_ns, signal}`` and
    the trace ends, as every run's does, with an ``end`` record.
    """
    eng = load_engine(engine) if isinstance(engine, str) else engine
    verdicts = admit(scenario)  # validates before anything is written
    plan = RunPlan.build(
        scenario,
        admission=verdicts,
        enforce=admission,
        seed=seed,
        exec_time_mode=exec_time,
        host_mode=host_mode,
    )
    eng.validate(plan)  # e.g. the executor's models: fail before anything is written
    out = (out_dir or default_out_dir(scenario, eng)) if write else None
    created = out is not None and not out.exists()
    sink: TraceSink = NullTrace()
    if out is not None:
        memory = perfetto_memory(plan) if trace and perfetto else None
        sink = _open_outputs(out, trace, trace_flush, memory)
    csv = _open_jobs(out)
    keep = not write if keep_jobs is None else keep_jobs
    tally = JobTally(scenario, verdicts, csv=csv, keep=keep)
    scheduler = Scheduler.for_plan(plan, retain=False)
    tick, bar = (None, None) if progress is None else _progress(progress, eng, plan, scheduler)
    try:  # the handlers stay until summary.json is written: a signal after the loop stops
        with stop_on_signals() as stop:  # the command once its results are whole
            sink.write(admission_records(verdicts, scenario, enforced=admission))
            t0 = time.perf_counter()
            try:
                stats = run(plan, scheduler, eng, sink=sink, jobs=tally.add, stop=stop,
                            progress=tick)  # fmt: skip
            finally:
                if bar is not None:
                    bar.close()
            wall = time.perf_counter() - t0
            stopped = _close_outputs(out, sink, csv, tally, scheduler, stats)
            summary = _summary(
                scenario, plan, eng, verdicts, tally, tally.summaries(scenario), scheduler,
                stats, wall, seed=seed, admission=admission, exec_time=exec_time,
                host_mode=host_mode, stopped=stopped,
            )  # fmt: skip
            if out is not None:
                write_summary(out, summary)
            late = stop() if stats.stopped is None else None
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one that counts
            sink.close()
        if csv is not None:
            with contextlib.suppress(OSError):
                csv.close()
                (out / _JOBS_TMP).unlink(missing_ok=True)  # type: ignore[operator]
        if out is not None and not scheduler.released:  # failed before any release (e.g.
            _discard(out, created)  # the engine could not start): leave nothing half-written
        raise  # (after a release, trace.jsonl is kept: a valid prefix up to the failure)
    if late is not None:  # a signal while the results were written: they are whole (the run
        raise Interrupted(late)  # ended first), and the command stops as the signal asked
    return RunResult(summary, tally.kept, out, stats)


def _close_outputs(
    out: Path | None, sink: TraceSink, csv: TextIO | None, tally: JobTally,
    scheduler: Scheduler, stats: LoopStats,
) -> Interruption | None:  # fmt: skip
    """After the loop: the jobs still pending (a stopped run's) to the tally, the end record,
    the trace closed, ``jobs.csv`` renamed whole; what stopped the run (None: it ran out)."""
    stopped = None if stats.stopped is None else Interruption(stats.last_ns, stats.stopped)
    tally.add(scheduler.pending())  # a stopped run's jobs still ready or running, as they are
    sink.write([EndRecord(stats.last_ns, scheduler.announced, stopped)])
    try:
        sink.close()
    except OSError as exc:
        raise InputError(f"{out}: cannot write the trace: {exc.strerror or exc}") from exc
    tally.flush()
    if csv is not None:
        csv.close()
        os.replace(out / _JOBS_TMP, out / "jobs.csv")  # type: ignore[operator]
    return stopped


def _summary(
    scenario: Scenario, plan: RunPlan, eng: Engine, verdicts: Admission, tally: JobTally,
    tasks: list[dict[str, Any]], scheduler: Scheduler, stats: LoopStats, wall: float, *,
    seed: int | None, admission: bool, exec_time: str, host_mode: str,
    stopped: Interruption | None,
) -> dict[str, Any]:  # fmt: skip
    """``summary.json`` of a run (docs/CONTRACTS.md §results)."""
    run_seed = scenario.seed if seed is None else seed
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "engine": eng.name,
        "backend": eng.backend,
        "policy": plan.policy.name,
        "seed": run_seed,
        "duration_ns": scenario.duration_ns,
        "exec_time": exec_time if any_samples(plan.budgets) else "wcet",
        "scenario_sha256": scenario.source_sha256,
        "fingerprint": run_fingerprint(scenario, run_seed, admission, exec_time, host_mode),
        "scenario_path": scenario.path,
        "device": eng.device,
        "jobs": tally.jobs,
        "misses": tally.misses,
        "unattributed": sum(t["unattributed"] or 0 for t in tasks),
        "admission": {
            "enforced": admission,
            "schedulable": verdicts.schedulable,
            "rejected": [v.name for v in verdicts.tasks if not v.admitted],
        },
        "tasks": tasks,
        "contexts": [c.as_dict() for c in scheduler.contexts],
        "decision_overhead_ns": stats.decisions_ns.stats(),
        "run": {
            "wall_s": round(wall, 6),
            "jobs_per_s": round(tally.jobs / wall, 1) if wall > 0 else None,
            "instants": stats.instants,
        },
        "versions": versions(),
    }
    if stopped is not None:  # absent for a run that ran to its end
        summary["interrupted"] = stopped._asdict()
    if plan.overheads is not None:  # what the analysis charged, and where it came from
        summary["overheads"] = {"source": plan.overheads.label,
                                "bounds_ns": plan.overheads.bounds()}  # fmt: skip
    extra = eng.report()
    if extra:
        summary["versions"].update(extra.get("versions", {}))
        summary["exec"] = {
            **{k: v for k, v in extra.items() if k not in ("device", "versions")},
            "release_lag_ns": overhead_stats(tally.release_lags()),
        }
    return summary


def _progress(stream: TextIO, eng: Engine, plan: RunPlan, scheduler: Scheduler) -> Any:
    from aegis_core.tools.progress import run_progress

    return run_progress(stream, engine_label(eng), plan.scenario.duration_ns, scheduler)


def perfetto_memory(plan: RunPlan) -> dict[str, int]:
    """The activation bytes of each task's planned arena for ``trace.json``'s memory counter
    (the tasks that ran, the chunks they ran as: what the executor allocates); ``{}`` when no
    task has a model, or one cannot be built here."""
    from aegis_core.memory.sharing import ScenarioMemory

    scenario = plan.scenario
    if not any(t.model for t in scenario.tasks):
        return {}
    ran = [i for i in range(len(scenario.tasks)) if i not in plan.rejected]
    try:
        shared = ScenarioMemory.of(scenario, plan.budgets, indices=ran).plan()
    except InputError:  # a model that cannot be built here: no memory counter
        return {}
    return {p.name: p.size for p in shared.models}
