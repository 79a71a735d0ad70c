"""AegisRT's Python API, for notebooks and scripts (docs/API.md §Python API).

>>> import aegis
>>> s = aegis.load("scenarios/admission.yaml")          # a file, or a dict of the same fields
>>> aegis.verdicts(s)[["admitted", "response_bound_ns"]]  # doctest: +SKIP
>>> run = aegis.simulate(s)                              # in memory; out="dir" writes results
>>> run.jobs.groupby("task")["response_ns"].max()        # doctest: +SKIP
>>> aegis.plot_gantt(run, first_ms=100)                  # doctest: +SKIP

Every call is one of the core's: :func:`~aegis_core.model.scenario.load_scenario` /
``parse_scenario``, :func:`~aegis_core.analysis.admission.admit`,
:func:`~aegis_core.tools.runner.run_scenario`, :func:`~aegis_core.tools.compare.compare`, the
results reader :mod:`~aegis_core.tools.frames` and the plots :mod:`~aegis_core.tools.plots`.
Bad input raises :class:`InputError` (a :class:`ScenarioError` names file, task and field).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from aegis_core.analysis.admission import Admission, analysis_task
from aegis_core.analysis.admission import admit as _admit
from aegis_core.analysis.charging import charge
from aegis_core.model.errors import InputError, ScenarioError
from aegis_core.model.files import read_json
from aegis_core.model.policy import Analysis
from aegis_core.model.scenario import Scenario, load_scenario, parse_scenario
from aegis_core.tools import frames, plots
from aegis_core.tools.compare import Comparison

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from aegis_core.graph.ir import Graph

__all__ = [
    "Admission", "Comparison", "InputError", "Run", "Scenario", "ScenarioError", "admit",
    "compare", "execute", "import_model", "load", "plot_cdf", "plot_demand", "plot_gantt",
    "plot_policies", "read", "simulate", "verdicts",
]  # fmt: skip

ScenarioLike = Scenario | str | Path | Mapping[str, Any]
DEMAND_TESTED = frozenset({Analysis.NP_EDF, Analysis.LP_EDF})
"""The analyses that admit by ``dbf(t) + B(t) <= t`` (:func:`plot_demand`)."""
MS = plots.MS


def load(source: ScenarioLike) -> Scenario:
    """A scenario from a YAML file (a path) or from a dict of the file's fields (relative
    paths in it resolve against the working directory); a :class:`Scenario` is returned as
    it is. Bad input: :class:`ScenarioError` naming the field (a ``model:`` that is neither
    builtin nor a valid graph file included, as every command checks it)."""
    from aegis_core.graph.zoo import check_models

    if isinstance(source, Scenario):
        return source
    if isinstance(source, str | Path):
        return check_models(load_scenario(source))
    return check_models(parse_scenario(source))  # a mapping (else: the error that says so)


def import_model(
    path: str | Path, input_shape: Iterable[int] | None = None, batch: int = 1
) -> Graph:
    """The ONNX model at ``path`` as a graph (``aegis import``; ``model: x.onnx`` in a
    scenario): ``input_shape`` the per-sample shape fixing every dynamic dimension (None: the
    model's static one), ``batch`` the first dimension. Its ``weights`` name the file (the
    executor runs it with them). Bad input (an unsupported operator or attribute included):
    :class:`InputError` naming the file and the node; the ``onnx`` package is needed
    (``pip install 'aegisrt[onnx]'``)."""
    from aegis_core.graph.weights import imported

    shape = None if input_shape is None else tuple(input_shape)
    return imported(path, batch, shape).graph


def admit(scenario: ScenarioLike) -> Admission:
    """The admission analysis of the scenario's policy (``aegis admit``)."""
    return _admit(load(scenario))


def verdicts(scenario: ScenarioLike | Admission) -> pd.DataFrame:
    """Each task's verdict as a row (``aegis admit --json``'s ``tasks``), indexed by name."""
    adm = scenario if isinstance(scenario, Admission) else admit(scenario)
    df = pd.DataFrame([v.as_dict() for v in adm.tasks]).set_index("name")
    return df.astype({c: "Int64" for c in df if str(c).endswith(("_ns", "_bytes"))
                      and pd.api.types.is_numeric_dtype(df[c])})  # fmt: skip


@dataclass(frozen=True, eq=False)
class Run:
    """One run: its ``summary.json``, its jobs (``jobs.csv``) and the folder it was written
    to (None: kept in memory). ``jobs``: a DataFrame of
    :data:`~aegis_core.tools.frames.JOB_DTYPES`; :attr:`tasks` the per-task statistics."""

    summary: Mapping[str, Any]
    jobs: pd.DataFrame
    path: Path | None = None

    @cached_property
    def tasks(self) -> pd.DataFrame:
        """The summary's per-task counts and statistics, indexed by task name
        (:func:`~aegis_core.tools.frames.tasks_frame`)."""
        return frames.tasks_frame(self.summary["tasks"])

    @property
    def trace(self) -> Path | None:
        """The run's ``trace.jsonl`` (None: kept in memory, or run without a trace)."""
        t = None if self.path is None else self.path / "trace.jsonl"
        return t if t is not None and t.is_file() else None

    @property
    def label(self) -> str:
        """``sim``, ``exec-numpy``: the engine and its backend."""
        s = self.summary
        return str(s["engine"]) + (f"-{s['backend']}" if s.get("backend") else "")


def read(path: str | Path) -> Run:
    """A results directory (``summary.json`` and ``jobs.csv``) read back; an InputError names
    the file that is missing or not what AegisRT writes."""
    d = Path(path)
    where = d / "summary.json"
    summary = read_json(where, "summary")  # a regular file, bounded; else an InputError
    if not isinstance(summary, dict) or not isinstance(summary.get("tasks"), list):
        raise InputError(f"{where}: not a summary of AegisRT (no 'tasks' list)")
    return Run(summary, frames.read_jobs(d / "jobs.csv"), d)


def _run(scenario: ScenarioLike, engine: Any, out: str | Path | None, **options: Any) -> Run:
    from aegis_core.tools.runner import run_scenario

    seed = options.get("seed")
    if seed is not None and (type(seed) is not int or seed < 0):
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
    if out is None:
        r = run_scenario(load(scenario), engine, write=False, **options)
        return Run(r.summary, frames.jobs_frame(r.jobs))
    run_scenario(load(scenario), engine, out_dir=Path(out), **options)
    return read(Path(out))


def simulate(
    scenario: ScenarioLike, out: str | Path | None = None, *, seed: int | None = None,
    admission: bool = True, exec_time: str = "sample", trace: bool = True,
    dispatch_ahead: bool = True,
) -> Run:  # fmt: skip
    """``aegis sim``: the simulator's run, kept in memory (``out=None``) or written to the
    results directory ``out`` and read back (with its trace, :func:`plot_gantt` draws each
    dispatch: an lp-edf job's chunks apart). ``admission=False`` runs rejected tasks too;
    ``exec_time``: ``sample`` (profiles' samples) or ``wcet``; ``trace``: write
    ``trace.jsonl``; ``dispatch_ahead=False``: ``--no-dispatch-ahead``."""
    return _run(scenario, "sim", out, seed=seed, admission=admission, exec_time=exec_time,
                trace=trace, dispatch_ahead=dispatch_ahead)  # fmt: skip


def execute(
    scenario: ScenarioLike, backend: str = "auto", out: str | Path | None = None, *,
    seed: int | None = None, admission: bool = True, exec_time: str = "sample",
    trace: bool = True, host: str = "off", dispatch_ahead: bool = True,
) -> Run:  # fmt: skip
    """``aegis exec``: the executor's run on ``backend`` (``auto``, ``cupy``, ``numpy``,
    ``mock``), as :func:`simulate`; ``host``: the loop thread's host settings (``off``, the
    default here, or ``auto`` as the command line)."""
    from aegis_core.run.engine import load_engine

    engine = load_engine("exec", backend=backend, host=host)
    return _run(scenario, engine, out, seed=seed, admission=admission, exec_time=exec_time,
                trace=trace, dispatch_ahead=dispatch_ahead)  # fmt: skip


def compare(
    scenario: ScenarioLike, backend: str = "auto", results: str | Path = "results", *,
    rerun: bool = False, gantt_ms: float = plots.GANTT_NS / MS,
) -> Comparison:  # fmt: skip
    """``aegis compare``: sim and exec (reused when current) side by side with the bound,
    under ``results/<scenario>/``; :func:`read` its ``sim_dir`` and ``exec_dir`` for the
    runs."""
    from aegis_core.tools.compare import compare as _compare

    return _compare(load(scenario), backend=backend, results=Path(results), rerun=rerun,
                    gantt_ns=plots.window_ns(gantt_ms))  # fmt: skip


def _runs(runs: Run | Iterable[Run] | Mapping[str, Run]) -> dict[str, Run]:
    """Runs keyed by label (a run alone, runs in order, or a mapping of labels)."""
    if isinstance(runs, Run):
        return {runs.label: runs}
    out: dict[str, Run] = {}
    if isinstance(runs, Mapping):
        out = dict(runs)
    else:
        for r in runs:
            key, n = r.label, 2
            while key in out:  # two runs of one engine: sim, sim (2)
                key, n = f"{r.label} ({n})", n + 1
            out[key] = r
    if not out:
        raise InputError("no run to plot")
    return out


def plot_cdf(runs: Run | Iterable[Run] | Mapping[str, Run]) -> Figure:
    """Response-time CDFs per task of one or more runs, with each task's bound and deadline
    (:func:`aegis_core.tools.plots.cdf`)."""
    got = _runs(runs)
    return plots.cdf({k: r.jobs for k, r in got.items()}, {k: r.summary for k, r in got.items()})


def plot_gantt(
    runs: Run | Iterable[Run] | Mapping[str, Run], first_ms: float = plots.GANTT_NS / MS
) -> Figure:
    """The first ``first_ms`` of one or more runs, one lane per run and task, with releases,
    deadlines and misses (:func:`aegis_core.tools.plots.gantt`); a run read from a folder
    with a ``trace.jsonl`` shows each dispatch (its trace is read up to the window)."""
    window = plots.window_ns(first_ms)
    got = _runs(runs)
    traced = {k: frames.read_runs(r.trace, window) for k, r in got.items() if r.trace}
    return plots.gantt({k: r.jobs for k, r in got.items()},
                       {k: r.summary for k, r in got.items()}, window, traced)  # fmt: skip


def plot_demand(scenario: ScenarioLike, horizon_ms: float | None = None) -> Figure:
    """``dbf(t) + B(t)`` against ``t`` for the admitted tasks and for each rejected task added
    to them, with the budgets admission analysed, over one horizon
    (:func:`aegis_core.tools.plots.demand`)."""
    s = load(scenario)
    if s.policy.analysis not in DEMAND_TESTED:
        raise InputError(f"{s.path}: policy {s.policy}'s admission is not a demand test "
                         f"({s.policy.analysis}): no dbf(t) + B(t) to plot")  # fmt: skip
    adm = _admit(s)
    view = [charge(analysis_task(t, b, chunks=b.chunks_ns), s.overheads)
            for t, b in zip(s.tasks, adm.budgets, strict=True)]  # fmt: skip
    admitted = [x for x, v in zip(view, adm.tasks, strict=True) if v.admitted]
    sets = {"admitted": admitted}
    for x, v in zip(view, adm.tasks, strict=True):
        if not v.admitted:
            sets[f"admitted + {v.name}"] = [*admitted, x]
    horizon = None if horizon_ms is None else plots.window_ns(horizon_ms, "the horizon")
    return plots.demand({k: ts for k, ts in sets.items() if ts}, horizon)


def plot_policies(
    source: str | Path | Iterable[Mapping[str, Any]], title: str = ""
) -> Figure:  # fmt: skip
    """``aegis compare --policies``' ``policies.csv`` (a path, or its rows) as grouped bars of
    miss ratio and p99 response per task and policy, sim and exec
    (:func:`aegis_core.tools.plots.policies`)."""
    from aegis_core.tools.compare import load_policy_rows

    if not isinstance(source, str | Path):
        return plots.policies(list(source), title)
    try:
        rows = load_policy_rows(Path(source))
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    except (KeyError, ValueError) as exc:
        raise InputError(f"{source}: not a policies.csv of aegis compare ({exc})") from exc
    return plots.policies(rows, title)
