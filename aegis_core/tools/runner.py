"""One call from a scenario to a results directory, for any engine."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from aegis_core.analysis.admission import admit, analysis_budget
from aegis_core.budget import any_samples
from aegis_core.model.errors import InputError, Interrupted
from aegis_core.model.policy import Policy
from aegis_core.model.scenario import Scenario, Task
from aegis_core.record.schema import EndRecord, Interruption, admission_records
from aegis_core.record.sinks import JsonlTrace, NullTrace, TeeTrace, TraceSink, close_text
from aegis_core.run.ahead import AheadMode, resolve
from aegis_core.run.engine import Engine, load_engine
from aegis_core.run.loop import LoopStats, run
from aegis_core.run.plan import RunPlan
from aegis_core.run.samples import cost_stats as overhead_stats
from aegis_core.run.scheduler import Job, Scheduler
from aegis_core.tools.outdir import ResultsDir
from aegis_core.tools.results import SUMMARY_SCHEMA, JobTally, versions, write_summary
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
    scenario: Scenario, seed: int, admission: bool, exec_time: str, host_mode: str = "sample",
    dispatch_ahead: bool = True,
) -> str:  # fmt: skip
    """What makes two runs the same run: the effective scenario (every task field, profile
    samples included; not file paths), each model file's content (:func:`_model_digest`),
    seed, admission setting, execution-time mode, dispatch-ahead and AegisRT's version.
    ``aegis compare`` reuses results only when this matches."""
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
        d["model_digest"] = _model_digest(scenario, t)
        tasks.append(d)
    body = {
        "version": __version__, "name": scenario.name, "policy": str(scenario.policy),
        "duration_ns": scenario.duration_ns, "gpu": scenario.gpu_memory_bytes, "seed": seed,
        "tasks": tasks, "admission": admission, "exec_time": exec_time,
        "overheads": _overheads_digest(scenario, host_mode),
        "analysis_points": analysis_budget(scenario),
        "dispatch_ahead": resolve(dispatch_ahead, scenario.policy) is not AheadMode.OFF,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _model_digest(scenario: Scenario, task: Task) -> dict[str, str | None] | None:
    """A task's model file as this run reads it (None: no model, or a builtin, which its name,
    batch, shape and AegisRT's version fix): the digest of its graph (a graph file's
    operators) and ``graph.weights.sha256`` (an ONNX file's or an npz file's, checked against
    the file when the graph is resolved), so a file edited in place is never reused as if it
    were the one that ran."""
    import hashlib
    import json

    from aegis_core.graph.zoo import MODELS, task_graph

    if task.model is None or task.model in MODELS:
        return None
    graph = task_graph(scenario, task)
    assert graph is not None
    text = json.dumps(graph.to_dict(), sort_keys=True).encode()
    weights = graph.weights.sha256 if graph.weights is not None else None
    return {"graph": hashlib.sha256(text).hexdigest(), "weights": weights}


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


def default_out_dir(
    scenario: Scenario, engine: Engine, own: Policy | None = None, root: Path = Path("results")
) -> Path:
    """``results/<scenario>/<engine>[-<backend>]``; with ``own``, the policy the scenario itself
    names, a run under another (``--policy P``) gets its own folder, ``…-<P>``
    (``exec-numpy-unscheduled``, ``sim-fifo``): it never replaces the scenario's own run."""
    return root / scenario.name / f"{engine_label(engine)}{policy_suffix(scenario, own)}"


def policy_suffix(scenario: Scenario, own: Policy | None) -> str:
    """``-<policy>`` when ``scenario`` runs another policy than ``own`` (its file's), else
    ``""``: what keeps an overridden policy's folders apart from the scenario's own."""
    return f"-{scenario.policy.name}" if own is not None and scenario.policy != own else ""


def _command(scenario: Scenario, eng: Engine) -> str:
    """What the results directory's marker and lock say is running there."""
    backend = f" --backend {eng.backend}" if eng.backend else ""
    return f"aegis {eng.name} {scenario.path}{backend}"


def _open_trace(rd: ResultsDir, flush: str, memory: dict[str, int] | None) -> TraceSink:
    """``trace.jsonl`` (as ``trace.jsonl.tmp``) and, with ``memory`` (the activation bytes per
    task, ``{}`` for none), ``trace.json`` from the same records."""
    jsonl = JsonlTrace(rd.create("trace.jsonl"), owns=True, flush=flush)
    if memory is None:
        return jsonl
    from aegis_core.tools.perfetto import PerfettoTrace

    try:
        return TeeTrace(jsonl, PerfettoTrace(rd.create("trace.json", "ascii"), memory, owns=True))
    except BaseException:
        jsonl.stream.close()
        raise


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
    own_policy: Policy | None = None,
    before_run: Callable[[], None] | None = None,
    dispatch_ahead: bool = True,
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
    ``own_policy``: the policy the scenario itself names, when ``scenario``'s was overridden
    (``--policy``): the default folder is then the run policy's own (:func:`default_out_dir`).
    ``before_run``: called once the engine has accepted the plan (``Engine.validate``: the
    one place that decides what it can run), before anything is written (``aegis exec``'s
    probe: a run the engine refuses is never probed).
    ``dispatch_ahead=False``: every decision at the instant the device frees up (else a
    policy that ``decides_ahead`` takes the next one while a job runs when it is already
    fixed, and the engine chains it: docs/THEORY.md §ahead).
    The results directory is held and written as docs/CONTRACTS.md §results says
    (:class:`~aegis_core.tools.outdir.ResultsDir`: marker, lock, temporary files renamed).

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
        dispatch_ahead=dispatch_ahead,
    )
    eng.validate(plan)  # e.g. the executor's models: fail before anything is written
    if before_run is not None:
        before_run()
    out = (out_dir or default_out_dir(scenario, eng, own_policy)) if write else None
    rd = None if out is None else ResultsDir.claim(out, _command(scenario, eng))
    sink: TraceSink = NullTrace()
    csv: TextIO | None = None
    scheduler = Scheduler.for_plan(plan, retain=False)
    try:
        if rd is not None:
            if trace:
                sink = _open_trace(rd, trace_flush, perfetto_memory(plan) if perfetto else None)
            csv = rd.create("jobs.csv")
        keep = not write if keep_jobs is None else keep_jobs
        tally = JobTally(scenario, verdicts, csv=csv, keep=keep)
        tick, bar = (None, None) if progress is None else _progress(progress, eng, plan,
                                                                    scheduler)  # fmt: skip
        with stop_on_signals() as stop:  # the handlers stay until summary.json is written: a
            sink.write(admission_records(verdicts, scenario, enforced=admission))
            t0 = time.perf_counter()  # signal after the loop stops the command once the
            try:  # results are whole
                stats = run(plan, scheduler, eng, sink=sink, jobs=tally.add, stop=stop,
                            progress=tick)  # fmt: skip
            finally:
                if bar is not None:
                    bar.close()
            wall = time.perf_counter() - t0
            stopped = _close_outputs(sink, csv, tally, scheduler, stats)
            summary = _summary(
                scenario, plan, eng, verdicts, tally, tally.summaries(scenario), scheduler,
                stats, wall, seed=seed, admission=admission, exec_time=exec_time,
                host_mode=host_mode, stopped=stopped,
            )  # fmt: skip
            if rd is not None:
                write_summary(rd, summary)  # every file renamed whole, summary.json last
            late = stop() if stats.stopped is None else None
    except BaseException as exc:
        _abandon(rd, sink, csv, kept=bool(scheduler.released) and not isinstance(exc, InputError))
        raise
    finally:
        if rd is not None:
            rd.release()
    if late is not None:  # a signal while the results were written: they are whole (the run
        raise Interrupted(late)  # ended first), and the command stops as the signal asked
    return RunResult(summary, tally.kept, out, stats)


def _abandon(rd: ResultsDir | None, sink: TraceSink, csv: TextIO | None, kept: bool) -> None:
    """After a failure: the outputs closed (the first error is the one that counts) and their
    temporary files removed; with ``kept`` (a failure after the first release, not bad input
    nor a write that failed) ``trace.jsonl.tmp`` stays, the records up to the failure."""
    with contextlib.suppress(Exception):
        sink.close()
    if csv is not None:
        with contextlib.suppress(OSError):
            csv.close()
    if rd is not None:
        rd.abandon(("trace.jsonl",) if kept else ())


def _close_outputs(
    sink: TraceSink, csv: TextIO | None, tally: JobTally, scheduler: Scheduler, stats: LoopStats
) -> Interruption | None:
    """After the loop: the jobs still pending (a stopped run's) to the tally, the end record,
    the trace and ``jobs.csv`` closed (a failure: an InputError naming the file); what stopped
    the run (None: it ran out)."""
    stopped = None if stats.stopped is None else Interruption(stats.last_ns, stats.stopped)
    tally.add(scheduler.pending())  # a stopped run's jobs still ready or running, as they are
    sink.write([EndRecord(stats.last_ns, scheduler.announced, stopped)])
    sink.close()
    tally.flush()
    if csv is not None:
        close_text(csv)
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
        "schema": SUMMARY_SCHEMA,
        "scenario": scenario.name,
        "engine": eng.name,
        "backend": eng.backend,
        "policy": plan.policy.name,
        "seed": run_seed,
        "duration_ns": scenario.duration_ns,
        "exec_time": exec_time if any_samples(plan.budgets) else "wcet",
        "scenario_sha256": scenario.source_sha256,
        "fingerprint": run_fingerprint(
            scenario,
            run_seed,
            admission,
            exec_time,
            host_mode,
            plan.dispatch_ahead is not AheadMode.OFF,
        ),
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
        "dispatch_ahead": {
            "mode": str(plan.dispatch_ahead),
            "dispatches": scheduler.dispatched,
            "decided_ahead": scheduler.decided_ahead,
            "share": round(scheduler.decided_ahead / scheduler.dispatched, 4)
            if scheduler.dispatched
            else None,
            "decision_ns": stats.ahead_ns.stats(),
        },
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
