"""A run's jobs and per-task statistics as pandas DataFrames: the one reader of ``jobs.csv``
(docs/CONTRACTS.md §results) for the Python API (:mod:`aegis`), ``aegis compare``'s plots and
the notebooks.

``jobs``: one row per job, the columns of :data:`~aegis_core.tools.results.JOB_COLUMNS` with
the dtypes of :data:`JOB_DTYPES` (times in integer ns; a time a job never reached, e.g. the
start of a rejected job, is ``<NA>`` in a nullable ``Int64`` column). ``tasks``: the summary's
``tasks`` (one row per task, indexed by name), each statistic of ``response_ns`` and
``exec_ns`` flattened to a column (``response_p99_ns``, ``exec_cv``, …). ``runs``: from a
``trace.jsonl``, one row per dispatch on the device (a whole job, or one chunk of an lp-edf
job) of :data:`RUN_COLUMNS`, read as a stream up to a time window.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from aegis_core.model.errors import FileError, InputError
from aegis_core.model.files import open_user_file
from aegis_core.record.replay import Replay
from aegis_core.record.schema import decode, is_end
from aegis_core.run.scheduler import Job
from aegis_core.tools.results import JOB_COLUMNS, jobs_csv

JOB_DTYPES: dict[str, str] = {
    "job": "string", "task": "string", "release_ns": "int64", "deadline_ns": "int64",
    "start_ns": "Int64", "end_ns": "Int64", "response_ns": "Int64", "exec_ns": "Int64",
    "missed": "bool", "status": "string", "release_lag_ns": "int64",
}  # fmt: skip
assert tuple(JOB_DTYPES) == JOB_COLUMNS

STATS = ("n", "min", "p50", "p99", "max", "mean", "cv")
"""The statistics of a summary's ``response_ns`` / ``exec_ns`` (:func:`run.samples.array_stats`)."""

_INT_TASK_FIELDS = ("bound_ns", "exceeded", "unattributed")  # null when nothing was promised


def read_jobs(source: Path | str | io.StringIO) -> pd.DataFrame:
    """``jobs.csv`` (a path, or its text in a StringIO) as a DataFrame of :data:`JOB_DTYPES`;
    a missing file, another header or a value of the wrong type is an InputError naming the
    file."""
    name = str(source) if not isinstance(source, io.StringIO) else "jobs.csv"
    try:
        with contextlib.ExitStack() as stack:  # a path: a regular file only (never a FIFO)
            f = source if isinstance(source, io.StringIO) else stack.enter_context(
                open_user_file(source, "jobs file"))  # fmt: skip
            df = pd.read_csv(f, dtype=JOB_DTYPES, true_values=["true"], false_values=["false"],
                             keep_default_na=False, na_values=[""])  # fmt: skip
    except FileError as exc:
        raise InputError(f"{name}: cannot read: {exc.reason}") from exc
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    except (ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{name}: not a jobs.csv of AegisRT ({first})") from exc
    if tuple(df.columns) != JOB_COLUMNS:
        raise InputError(f"{name}: columns {list(df.columns)}, expected {list(JOB_COLUMNS)}")
    return df


RUN_COLUMNS = ("job", "task", "chunk", "start_ns", "end_ns")


def read_runs(trace: Path, until_ns: int) -> pd.DataFrame:
    """The device runs (:class:`~aegis_core.record.replay.Run`: one per dispatch, a chunk of an
    lp-edf job its own) that start by ``until_ns``, from ``trace.jsonl``: the file is read as a
    stream, up to the first record after ``until_ns`` at which no run started by then is still
    open (a last line cut mid-record, as a crashed run leaves, ends it); a line that is not a
    record is an InputError naming file and line."""
    rows: list[tuple[str, str, int, int, int | None]] = []
    replay = Replay(retain=False, on_run=lambda r: rows.append(
        (r.job, r.task, r.chunk, r.start_ns, r.end_ns)))  # fmt: skip
    from aegis_core.tools.explain import trace_lines

    try:
        for n, raw in trace_lines(trace):  # a regular file, lines bounded
            if _past(replay, raw.decode("utf-8", "replace"), until_ns, f"{trace}:{n}"):
                break
    except OSError as exc:
        raise InputError(f"{trace}: cannot read: {exc.strerror or exc}") from exc
    df = pd.DataFrame([r for r in rows if r[3] <= until_ns], columns=list(RUN_COLUMNS))
    return df.astype({"job": "string", "task": "string", "chunk": "int64", "start_ns": "int64",
                      "end_ns": "Int64"})  # fmt: skip


def _past(replay: Replay, line: str, until_ns: int, where: str) -> bool:
    """Apply one trace line; True once the window is read (or the trace ends)."""
    if not line.strip():
        return False
    try:
        r = decode(line)
    except InputError as exc:
        if not line.endswith("\n"):  # the cut last line of a run that crashed
            return True
        raise InputError(f"{where}: {exc}") from exc
    if is_end(r):
        return True
    replay.apply(r)  # type: ignore[arg-type]  # not an end record
    return r.t_ns > until_ns and all(x.start_ns > until_ns for x in replay.running.values())


def jobs_frame(jobs: Iterable[Job]) -> pd.DataFrame:
    """Jobs kept in memory as the DataFrame their ``jobs.csv`` reads back to (the rows are
    formatted by the one writer, :func:`~aegis_core.tools.results.jobs_csv`)."""
    return read_jobs(io.StringIO(jobs_csv(jobs)))


def tasks_frame(tasks: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A summary's ``tasks`` as a DataFrame indexed by task name: the counts and parameters as
    they are, ``response_ns`` / ``exec_ns`` flattened to ``response_<stat>_ns`` (``n``,
    ``mean`` and ``cv`` without the unit: ``response_n``, ``response_mean_ns``,
    ``response_cv``), a task without completed jobs ``<NA>`` there."""
    rows = []
    for t in tasks:
        row = {k: v for k, v in t.items() if k not in ("response_ns", "exec_ns")}
        for key in ("response", "exec"):
            stats = t.get(f"{key}_ns") or {}
            for s in STATS:
                row[_stat_column(key, s)] = stats.get(s)
        rows.append(row)
    df = pd.DataFrame(rows)
    ints = [*_INT_TASK_FIELDS, *(_stat_column(k, s) for k in ("response", "exec")
                                 for s in STATS if s not in ("mean", "cv"))]  # fmt: skip
    floats = [_stat_column(k, s) for k in ("response", "exec") for s in ("mean", "cv")]
    df = df.astype({c: "Int64" for c in ints if c in df} | {c: "float64" for c in floats})
    return df.rename(columns={"name": "task"}).set_index("task")


def _stat_column(key: str, stat: str) -> str:
    return f"{key}_{stat}" if stat in ("n", "cv") else f"{key}_{stat}_ns"
