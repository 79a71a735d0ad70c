"""The plots of a run: response-time CDFs against the bound, a Gantt of the first N ms, and the
processor demand ``dbf(t) + B(t)`` against ``t``. ``aegis compare`` saves the first two as
``cdf.png`` and ``gantt.png``; the Python API (:mod:`aegis`) and the notebooks show them.

Each function takes what a results directory holds, keyed by the run's label (``sim``,
``exec-numpy``): its jobs as :func:`~aegis_core.tools.frames.read_jobs` reads them and its
``summary.json``; it returns the matplotlib figure (:func:`save` writes it). The task order,
the bounds and the title come from the summaries (:func:`title`), never re-derived.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aegis_core.analysis.bounds import ATask, demand_steps, testing_bound
from aegis_core.model.errors import InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MS = 1_000_000
GANTT_NS = 200 * MS
"""The Gantt's default window: the first 200 ms of the run."""
LOG_SPREAD = 10.0
"""A CDF axis is logarithmic when its values (every run's responses, the bound) span more than
this factor."""

Summary = Mapping[str, Any]


def window_ns(ms: float, what: str = "the Gantt's window") -> int:
    """A plot window given in ms as integer ns: finite and > 0 (an InputError otherwise)."""
    if not (isinstance(ms, int | float) and math.isfinite(ms) and ms > 0):
        raise InputError(f"{what} must be a number of ms > 0, got {ms!r}")
    return max(1, round(ms * MS))


def headless() -> None:
    """Draw without a display (before a figure that is only saved is made)."""
    import matplotlib

    matplotlib.use("Agg")


def save(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG at ``path`` (whole, through a temporary file: a symbolic link
    at ``path`` is replaced, never written through) and release it."""
    import matplotlib.pyplot as plt

    from aegis_core.model.files import write_atomic

    try:
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100), "plot")
    finally:
        plt.close(fig)


def title(summaries: Mapping[str, Summary]) -> str:
    """``scenario · sim, exec-numpy · np-edf``: what ran, on which engines, under which
    policy (each named once when the runs agree)."""
    first = next(iter(summaries.values()))
    policies = ", ".join(dict.fromkeys(str(s.get("policy")) for s in summaries.values()))
    return f"{first.get('scenario')} · {', '.join(summaries)} · {policies}"


def _tasks(summaries: Mapping[str, Summary]) -> list[Summary]:
    """The per-task summaries of the first run: names in scenario order, bounds, deadlines."""
    return list(next(iter(summaries.values()))["tasks"])


def needs_log(values: Sequence[float]) -> bool:
    """Whether positive ``values`` span more than :data:`LOG_SPREAD` (max / min)."""
    pos = [v for v in values if v > 0]
    return bool(pos) and max(pos) > LOG_SPREAD * min(pos)


# ---------------------------------------------------------------------------------- CDF


def cdf(jobs: Mapping[str, pd.DataFrame], summaries: Mapping[str, Summary]) -> Figure:
    """Per task one axis: each run's empirical CDF of response times (completed jobs), the
    task's analytical bound (dashed, when admission gave one) and deadline (dotted); a log x
    axis where the values span more than :data:`LOG_SPREAD`."""
    import matplotlib.pyplot as plt

    tasks = _tasks(summaries)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, t in zip(axes[0], tasks, strict=True):
        _cdf_axis(ax, t, jobs)
    fig.suptitle(f"response-time CDF: {title(summaries)}", fontsize=10)
    return fig


def _cdf_axis(ax: Axes, task: Summary, jobs: Mapping[str, pd.DataFrame]) -> None:
    name = task["name"]
    seen: list[float] = []  # the extremes on this axis
    for i, (label, df) in enumerate(jobs.items()):
        r = df.loc[df["task"] == name, "response_ns"].dropna().to_numpy(dtype=np.int64)
        x = np.sort(r) / MS
        if x.size:  # from 0 below the first response to 1 at the last
            y = np.arange(0, x.size + 1) / x.size
            ax.step(np.concatenate(([x[0]], x)), y, where="post", label=label,
                    color=f"C{i % 10}")  # fmt: skip
            seen += [float(x[0]), float(x[-1])]
    bound = task.get("bound_ns")
    if bound is not None:
        ax.axvline(bound / MS, color="k", linestyle="--", linewidth=1,
                   label=f"bound {bound / MS:g} ms")  # fmt: skip
        seen.append(bound / MS)
    ax.axvline(task["deadline_ns"] / MS, color="0.5", linestyle=":", linewidth=1,
               label=f"deadline {task['deadline_ns'] / MS:g} ms")  # fmt: skip
    if needs_log(seen):
        _log_x(ax)
    if len(seen) < 2 + (bound is not None):  # no run had a completed job of this task
        ax.text(0.5, 0.5, "no completed job", transform=ax.transAxes, ha="center")
    state = " (rejected)" if not task.get("admitted", True) else " (no bound)" * (bound is None)
    ax.set_title(f"{name}{state}", fontsize=9)
    ax.set_xlabel("response time (ms)" + (", log scale" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("fraction of jobs ≤ x")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def _log_x(ax: Axes) -> None:
    """A log x axis labelled in plain ms at 1, 2, 5 of each decade."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------------------------- Gantt


def gantt(
    jobs: Mapping[str, pd.DataFrame], summaries: Mapping[str, Summary],
    first_ns: int = GANTT_NS, runs: Mapping[str, pd.DataFrame] | None = None,
) -> Figure:  # fmt: skip
    """One lane per run and task (runs top to bottom in the order given): each job as a bar in
    its task's colour, consecutive jobs of a task in alternating shades with an edge; releases
    (▲ under the lane), deadlines (▼ over it) and missed deadlines (red ✕). A run with its
    device runs in ``runs`` (:func:`~aegis_core.tools.frames.read_runs`) draws one bar per
    dispatch (an lp-edf job's chunks apart), else one per job from its start to its end. The
    x axis is the first ``first_ns`` of the run, or the whole run when it is shorter; the
    legend lies outside the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if first_ns <= 0:
        raise InputError(f"the Gantt's window must be > 0 ns, got {first_ns}")
    names = [t["name"] for t in _tasks(summaries)]
    span = min(first_ns, _last_ns(jobs.values()))
    lanes = [(label, n) for label in jobs for n in names]
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.42 * len(lanes)), layout="constrained")
    colour = {n: f"C{i % 10}" for i, n in enumerate(names)}
    traced = runs or {}
    for y, (label, n) in enumerate(reversed(lanes)):
        df, dispatched = jobs[label], traced.get(label)
        mine = None if dispatched is None else dispatched[dispatched["task"] == n]
        _lane(ax, df[df["task"] == n], mine, y, colour[n], span)
    rejected = {t["name"] for t in _tasks(summaries) if not t.get("admitted", True)}
    ax.set_yticks([y + 0.5 for y in range(len(lanes))],
                  [(f"{label}: " if len(jobs) > 1 else "") + n + " (rejected)" * (n in rejected)
                   for label, n in reversed(lanes)])  # fmt: skip
    ax.set_ylim(-0.1, len(lanes) + 0.1)
    ax.set_xlim(0, span / MS)
    bars = (
        "each dispatch (trace.jsonl)"
        if set(traced) >= set(jobs)
        else (
            "each job from its start to its end"
            if not traced
            else f"dispatches in {', '.join(traced)}, whole jobs in the others (no trace)"
        )
    )
    ax.set_xlabel(f"time (ms): the first {span / MS:g} ms of the run; bars: {bars}")
    ax.set_title(f"schedule: {title(summaries)}", fontsize=10)
    for y in range(1, len(jobs)):  # a rule between runs
        ax.axhline(y * len(names), color="k", linewidth=0.8)
    handles: list[Any] = [Patch(facecolor=colour[n], edgecolor="k", label=n) for n in names]
    handles += [
        Patch(facecolor="0.55", alpha=0.5, edgecolor="k", label="next job (lighter)"),
        Line2D([], [], marker="^", color="k", linestyle="", label="release"),
        Line2D([], [], marker="v", color="0.4", linestyle="", label="deadline"),
        Line2D([], [], marker="x", color="red", linestyle="", label="missed deadline"),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return fig


def _last_ns(frames: Any) -> int:
    """The last instant any run reached: its last end or release (1 ns for no job)."""
    last = 1
    for df in frames:
        for col in ("end_ns", "release_ns"):
            v = df[col].max()
            if not pd.isna(v):  # a column of no value (no job ended) has no maximum
                last = max(last, int(v))
    return last


def _lane(
    ax: Axes, df: pd.DataFrame, runs: pd.DataFrame | None, y: int, colour: str, span: int
) -> None:
    """One task's jobs of one run in lane ``y`` up to ``span``: bars, then the markers."""
    for s, e, k in _bars(df, runs, span):
        ax.broken_barh([(s / MS, max((e - s) / MS, span / MS / 2000))], (y + 0.2, 0.6),
                       facecolor=colour, alpha=1.0 if k % 2 == 0 else 0.5, edgecolor="k",
                       linewidth=0.5)  # fmt: skip
    rel = df.loc[df["release_ns"] <= span, "release_ns"].to_numpy(dtype=np.int64) / MS
    ax.plot(rel, np.full(rel.size, y + 0.1), "^", color="k", markersize=4, linestyle="")
    due = df[df["deadline_ns"] <= span]
    d = due["deadline_ns"].to_numpy(dtype=np.int64) / MS
    ax.plot(d, np.full(d.size, y + 0.9), "v", color="0.4", markersize=4, linestyle="")
    m = due.loc[due["missed"], "deadline_ns"].to_numpy(dtype=np.int64) / MS
    ax.plot(m, np.full(m.size, y + 0.5), "x", color="red", markersize=8, mew=2, linestyle="")


def _bars(df: pd.DataFrame, runs: pd.DataFrame | None, span: int) -> list[tuple[int, int, int]]:
    """``(start, end, k)`` of each bar starting before ``span``: the jobs that ran (``k``: the
    job's number among them, its shade), or with ``runs`` each dispatch of theirs (a job's
    chunks share its ``k``)."""
    ran = df[df["start_ns"].notna() & df["end_ns"].notna() & (df["start_ns"] < span)]
    if runs is None:
        ends = zip(ran["start_ns"], ran["end_ns"], strict=True)
        return [(int(s), int(e), k) for k, (s, e) in enumerate(ends)]
    order = {j: k for k, j in enumerate(df.loc[df["start_ns"].notna(), "job"])}
    done = runs[runs["end_ns"].notna() & (runs["start_ns"] < span)]
    cells = zip(done["job"], done["start_ns"], done["end_ns"], strict=True)
    return [(int(s), int(e), order.get(j, 0)) for j, s, e in cells]


# --------------------------------------------------------------------------------- demand


def demand_horizon(sets: Mapping[str, Sequence[ATask]]) -> int:
    """One horizon for every set: the longest testing bound ``L`` of those with ``U <= 1``,
    at most 10 of the longest period (and at least the longest deadline)."""
    tasks = [x for ts in sets.values() for x in ts]
    bounds = [b for ts in sets.values() if ts and (b := testing_bound(ts)) is not None]
    top = max(x.d for x in tasks)
    return max(min(max(bounds, default=top), 10 * max(x.t for x in tasks)), top)


def demand(sets: Mapping[str, Sequence[ATask]], horizon: int | None = None) -> Figure:
    """Per task set its ``dbf(t) + B(t)`` (:func:`~aegis_core.analysis.bounds.demand_steps`:
    integer, evaluated at every step, drawn as steps from the first test point on) over one
    common horizon, the line ``t`` (the time available) and, for a set that fails, the first
    ``t`` where the demand exceeds it."""
    import matplotlib.pyplot as plt

    upto = demand_horizon(sets) if horizon is None else horizon
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    for i, (label, ts) in enumerate(sets.items()):
        steps = demand_steps(ts, upto)
        if not steps:
            continue
        t = [p for p, _, _ in steps] + [upto]
        v = [d + b for _, d, b in steps]
        v.append(v[-1])
        ax.plot(np.array(t) / MS, np.array(v) / MS, drawstyle="steps-post", label=label,
                color=f"C{i % 10}")  # fmt: skip
        over = next(((p, d + b) for p, d, b in steps if d + b > p), None)
        if over is not None:
            said = f"{label}: dbf + B > t at t = {over[0] / MS:g} ms"
            ax.plot(over[0] / MS, over[1] / MS, "o", color=f"C{i % 10}", markersize=7,
                    mfc="none", mew=2, label=said)  # fmt: skip
    ax.plot([0, upto / MS], [0, upto / MS], "k:", label="t (time available)")
    ax.set_xlim(0, upto / MS)
    ax.set_ylim(0, None)
    ax.set_xlabel("t (ms)")
    ax.set_ylabel("demand dbf(t) + B(t) (ms)")
    ax.set_title("processor demand of jobs due by t, plus blocking B(t), against t", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


# ------------------------------------------------------------------------------ policies


def policies(rows: Sequence[Mapping[str, Any]], title: str = "") -> Figure:
    """``aegis compare --policies``' rows (:func:`~aegis_core.tools.compare.load_policy_rows`)
    as grouped bars, per task one group, per policy one bar: miss ratio (top, from 0; "no
    misses" when none) and p99 response against the deadline (bottom, dashed), sim (left)
    and exec (right; a policy the backend did not run is named)."""
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    names = list(dict.fromkeys(r["policy"] for r in rows))
    cell = {(r["policy"], r["task"]): r for r in rows}
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.4), squeeze=False, sharey="row",
                             layout="constrained")  # fmt: skip
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(tasks))
    top = 0.0
    for col, side in enumerate(("sim", "exec")):
        for row, (key, label, scale) in enumerate(
            ((f"{side}_miss_ratio", "miss ratio", 1.0), (f"{side}_p99_ns", "p99 response (ms)",
                                                          1 / MS))
        ):  # fmt: skip
            ax = axes[row][col]
            for i, p in enumerate(names):
                ys = [np.nan if (v := cell[(p, t)][key]) is None else v * scale for t in tasks]
                ax.bar(x + (i - (len(names) - 1) / 2) * width, ys, width, label=p,
                       color=f"C{i % 10}")  # fmt: skip
                if row == 0:
                    top = max([top, *(y for y in ys if y == y)])
            if row == 1:  # the deadline of each task, for the p99 bars to be read against
                for j, t in enumerate(tasks):
                    d = cell[(names[0], t)]["deadline_ns"]
                    if d is not None:
                        ax.hlines(d / MS, j - 0.45, j + 0.45, colors="k", linestyles="--",
                                  linewidth=1)  # fmt: skip
            ax.set_xticks(x, tasks)
            ax.set_ylabel(label)
            ax.set_title(f"{side}: {label}" + (" (dashed: deadline)" if row == 1 else ""),
                         fontsize=9)  # fmt: skip
        absent = [p for p in names if all(cell[(p, t)][f"{side}_misses"] is None for t in tasks)]
        if absent:
            axes[0][col].text(0.02, 0.95, "not run: " + ", ".join(absent), fontsize=8,
                              transform=axes[0][col].transAxes, va="top")  # fmt: skip
    axes[0][0].set_ylim(0, max(0.05, top * 1.15))  # a ratio: never below 0
    if top == 0:
        for ax in axes[0]:
            ax.text(0.5, 0.5, "no misses", transform=ax.transAxes, ha="center")
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
