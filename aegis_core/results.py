"""The results directory both engines write (DESIGN §5): ``jobs.csv`` and ``summary.json``.

Per-task statistics come from pandas. Quantiles use the ``higher`` method, so p50/p99 are
observed values (integer ns), never interpolated ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .scenario import Scenario
from .scheduler import Job, JobStatus

if TYPE_CHECKING:
    import pandas as pd

JOB_COLUMNS = (
    "job", "task", "release_ns", "deadline_ns", "start_ns", "end_ns", "response_ns", "exec_ns",
    "missed", "status",
)  # fmt: skip

VOLATILE_KEYS = frozenset({"decision_overhead_ns", "run", "versions", "scenario_path"})
"""Summary keys that differ between identical runs (timings, machine); goldens drop them."""


def jobs_frame(jobs: Sequence[Job]) -> pd.DataFrame:
    """One row per job, columns as in ``jobs.csv``; missing times are ``<NA>``."""
    import pandas as pd

    def ints(values: list[int | None]) -> pd.Series[Any]:
        return pd.Series(values, dtype="Int64")

    return pd.DataFrame(
        {
            "job": [j.id for j in jobs],
            "task": [j.task for j in jobs],
            "release_ns": ints([j.release_ns for j in jobs]),
            "deadline_ns": ints([j.deadline_ns for j in jobs]),
            "start_ns": ints([j.start_ns for j in jobs]),
            "end_ns": ints([j.end_ns for j in jobs]),
            "response_ns": ints([j.response_ns for j in jobs]),
            "exec_ns": ints([j.exec_ns for j in jobs]),
            "missed": ["true" if j.missed else "false" for j in jobs],
            "status": [j.status.name.lower() for j in jobs],
        },
        columns=list(JOB_COLUMNS),
    )


def stats(values: pd.Series[Any]) -> dict[str, Any] | None:
    """min, p50, p99, max (observed ns), mean and coefficient of variation (population)."""
    v = values.dropna().astype("int64")
    if v.empty:
        return None
    mean = float(v.mean())
    return {
        "n": len(v),
        "min": int(v.min()),
        "p50": int(v.quantile(0.5, interpolation="higher")),
        "p99": int(v.quantile(0.99, interpolation="higher")),
        "max": int(v.max()),
        "mean": round(mean, 3),
        "cv": round(float(v.std(ddof=0)) / mean, 6) if mean else 0.0,
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
    scenario: Scenario, frame: pd.DataFrame, bounds: Mapping[str, int | None] | None = None
) -> list[dict[str, Any]]:
    out = []
    groups = dict(tuple(frame.groupby("task", sort=False)))
    for task in scenario.tasks:
        g = groups.get(task.name, frame.iloc[0:0])
        done = g[g["status"] == JobStatus.COMPLETED.name.lower()]
        out.append(
            {
                "name": task.name,
                "jobs": len(g),
                "completed": len(done),
                "failed": int((g["status"] == JobStatus.FAILED.name.lower()).sum()),
                "rejected": int((g["status"] == JobStatus.REJECTED.name.lower()).sum()),
                "misses": int((g["missed"] == "true").sum()),
                "period_ns": task.period_ns,
                "deadline_ns": task.deadline_ns,
                "wcet_ns": task.wcet_ns,
                "bound_ns": (bounds or {}).get(task.name),
                "response_ns": stats(done["response_ns"]),
                "exec_ns": stats(done["exec_ns"]),
            }
        )
    return out


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


def write_results(out_dir: Path, summary: Mapping[str, Any], frame: pd.DataFrame) -> None:
    """Write ``jobs.csv`` and ``summary.json`` (each atomically: a reader never sees half)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / "jobs.csv", frame.to_csv(index=False, lineterminator="\n"))
    _atomic_write(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def deterministic(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary without the keys that change between identical runs."""
    return {k: v for k, v in summary.items() if k not in VOLATILE_KEYS}
