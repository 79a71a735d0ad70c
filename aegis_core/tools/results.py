"""The results directory engines write (docs/CONTRACTS.md §results): ``jobs.csv``, ``summary.json``.

Per-task statistics come from one pandas group-by over the finished jobs. Quantiles use the
``higher`` method, so p50/p99 are observed values (integer ns), never interpolated ones; ``cv``
is the population standard deviation over the mean.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aegis_core.budget import budgets
from aegis_core.model.scenario import Scenario
from aegis_core.model.status import JobStatus
from aegis_core.record.attribution import RunJob, attribute, cause_counts, rejected_ran
from aegis_core.run.scheduler import Job

if TYPE_CHECKING:
    import pandas as pd

    from aegis_core.analysis.admission import Admission

JOB_COLUMNS = (
    "job", "task", "release_ns", "deadline_ns", "start_ns", "end_ns", "response_ns", "exec_ns",
    "missed", "status", "release_lag_ns",
)  # fmt: skip

VOLATILE_KEYS = frozenset(
    {"decision_overhead_ns", "run", "versions", "scenario_path", "exec", "fingerprint"}
)
"""Summary keys that differ between identical runs (timings, machine); goldens drop them."""

_STATUS = {s: s.name.lower() for s in JobStatus}


def _opt(v: int | None) -> str:
    return "" if v is None else str(v)


def job_rows(jobs: Iterable[Job]) -> Iterable[str]:
    """``jobs.csv`` lines (no header). Task names are validated CSV-safe, so nothing is quoted;
    a time that does not exist (a job that never started) is an empty field."""
    for j in jobs:
        s, e, r = j.start_ns, j.end_ns, j.release_ns
        miss = "true" if j.missed else "false"
        if s is not None and e is not None:
            yield (
                f"{j.id},{j.task},{r},{j.deadline_ns},{s},{e},{e - r},{j.run_ns},{miss},"
                f"{_STATUS[j.status]},{j.lag_ns}\n"
            )
        else:
            yield (
                f"{j.id},{j.task},{r},{j.deadline_ns},{_opt(s)},{_opt(e)},"
                f"{_opt(None if e is None else e - r)},,{miss},{_STATUS[j.status]},{j.lag_ns}\n"
            )


def jobs_csv(jobs: Iterable[Job]) -> str:
    return ",".join(JOB_COLUMNS) + "\n" + "".join(job_rows(jobs))


def finished_frame(jobs: Sequence[Job], task_names: Sequence[str]) -> pd.DataFrame:
    """Completed jobs: ``task`` (categorical in scenario order), ``response_ns``, ``exec_ns``."""
    import numpy as np
    import pandas as pd

    done = [j for j in jobs if j.status is JobStatus.COMPLETED]
    n = len(done)
    return pd.DataFrame(
        {
            "task": pd.Categorical([j.task for j in done], categories=list(task_names)),
            "response_ns": np.fromiter((j.end_ns - j.release_ns for j in done), np.int64, n),  # type: ignore[operator]
            "exec_ns": np.fromiter((j.run_ns for j in done), np.int64, n),
        }
    )


def grouped_stats(frame: pd.DataFrame) -> dict[str, dict[str, dict[str, Any] | None]]:
    """``{column: {task: stats | None}}`` for ``response_ns`` and ``exec_ns``."""
    g = frame.groupby("task", observed=True)  # tasks with no finished job get None
    out: dict[str, dict[str, dict[str, Any] | None]] = {}
    for col in ("response_ns", "exec_ns"):
        table = g[col].agg(["count", "min", "max", "mean"])
        table["std"] = g[col].std(ddof=0)
        table["p50"] = g[col].quantile(0.5, interpolation="higher")
        table["p99"] = g[col].quantile(0.99, interpolation="higher")
        rows: dict[Any, dict[Any, Any]] = table.to_dict("index")
        stats = {str(task): _stats_row(row) for task, row in rows.items()}
        out[col] = {str(task): stats.get(str(task)) for task in frame["task"].cat.categories}
    return out


def _stats_row(row: dict[Any, Any]) -> dict[str, Any]:
    mean = float(row["mean"])
    return {
        "n": int(row["count"]),
        "min": int(row["min"]),
        "p50": int(row["p50"]),
        "p99": int(row["p99"]),
        "max": int(row["max"]),
        "mean": round(mean, 3),
        "cv": round(float(row["std"]) / mean, 6) if mean else 0.0,
    }


def overhead_stats(samples: Sequence[int]) -> dict[str, Any]:
    import numpy as np

    if not samples:
        return {"n": 0}
    a = np.asarray(samples, dtype=np.int64)
    return {
        "n": len(samples),
        "p50": int(np.quantile(a, 0.5, method="higher")),
        "p99": int(np.quantile(a, 0.99, method="higher")),
        "max": int(a.max()),
        "mean": round(float(a.mean()), 1),
    }


def task_summaries(
    scenario: Scenario, jobs: Sequence[Job], admission: Admission | None = None
) -> list[dict[str, Any]]:
    names = [t.name for t in scenario.tasks]
    counts = {
        n: dict.fromkeys(
            ("jobs", "completed", "failed", "rejected", "skipped", "misses", "overruns"), 0
        )
        for n in names
    }
    key = {
        JobStatus.COMPLETED: "completed",
        JobStatus.FAILED: "failed",
        JobStatus.REJECTED: "rejected",
        JobStatus.SKIPPED: "skipped",
    }
    for j in jobs:
        c = counts[j.task]
        c["jobs"] += 1
        c["misses"] += j.missed
        c["overruns"] += j.overrun
        if j.status in key:
            c[key[j.status]] += 1
    st = grouped_stats(finished_frame(jobs, names))
    verdicts = {v.name: v for v in admission.tasks} if admission is not None else {}
    chosen = admission.budgets if admission is not None and admission.budgets else None
    wcets = [b.wcet_ns for b in (chosen or budgets(scenario))]
    blame = attribution(jobs, names, admission)
    return [
        {
            "name": t.name,
            **counts[t.name],
            "period_ns": t.period_ns,
            "deadline_ns": t.deadline_ns,
            "wcet_ns": wcet,
            "admitted": verdicts[t.name].admitted if verdicts else True,
            "bound_ns": verdicts[t.name].response_bound_ns if verdicts else None,
            "response_ns": st["response_ns"][t.name],
            "exec_ns": st["exec_ns"][t.name],
            **blame[t.name],
        }
        for t, wcet in zip(scenario.tasks, wcets, strict=True)
    ]


def attribution(
    jobs: Sequence[Job], names: Sequence[str], admission: Admission | None
) -> dict[str, dict[str, Any]]:
    """Per task: ``exceeded`` (jobs whose response exceeded the task's bound), ``unattributed``
    (of those and of its missed jobs, how many have no overrun or broken assumption in their
    busy window), ``causes`` (per cause kind, how many of those jobs it attributes) — these
    three null for a task without a bound (not admitted by an analysis: nothing promised) —
    and ``assumptions`` (its jobs' broken overhead bounds, per figure). A run whose analysis
    charged no host overheads counts the host time lost in a window as a ``host`` cause
    (:mod:`aegis_core.record.attribution`)."""
    verdicts = admission.tasks if admission is not None else ()
    bounds = {v.name: v.response_bound_ns for v in verdicts if v.admitted}
    ideal = admission is None or admission.overheads is None
    runs = [RunJob.of(j) for j in jobs]
    if rejected_ran({n: bounds.get(n) for n in names}, runs):  # admission not enforced
        bounds = {}
    found = attribute(runs, bounds, ideal_host=ideal)
    out: dict[str, dict[str, Any]] = {}
    for n in names:
        counted = bounds.get(n) is not None
        mine = [a for a in found if a.task == n]
        out[n] = {
            "exceeded": sum(a.exceeded for a in mine) if counted else None,
            "unattributed": sum(not a.attributed for a in mine) if counted else None,
            "causes": cause_counts(mine) if counted else None,
            "assumptions": {},
        }
    for j in jobs:
        broken = out[j.task]["assumptions"]
        for what in j.broken:
            broken[what] = broken.get(what, 0) + 1
    return out


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("aegisrt", "numpy", "pandas", "simpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_results(out_dir: Path, summary: Mapping[str, Any], jobs: Sequence[Job]) -> None:
    """Write ``jobs.csv`` and ``summary.json``, each atomically: a reader never sees half."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / "jobs.csv", jobs_csv(jobs))
    _atomic_write(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def deterministic(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary without the keys that change between identical runs."""
    return {k: v for k, v in summary.items() if k not in VOLATILE_KEYS}
