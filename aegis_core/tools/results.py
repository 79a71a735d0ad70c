"""The results directory engines write (docs/CONTRACTS.md §results): ``jobs.csv``, ``summary.json``.

A run's jobs reach :class:`JobTally` as they settle: it writes their ``jobs.csv`` rows and keeps
per task its counts and a compact array of response and execution times, from which the
statistics are exact. Quantiles use the ``higher`` method, so p50/p99 are observed values
(integer ns), never interpolated ones; ``cv`` is the population standard deviation over the
mean.
"""

from __future__ import annotations

import contextlib
import json
import platform
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from aegis_core.budget import budgets
from aegis_core.model.scenario import Scenario
from aegis_core.model.status import JobStatus
from aegis_core.record.attribution import Stretches, cause_counts
from aegis_core.record.sinks import write_text
from aegis_core.run.samples import ExactValues
from aegis_core.run.scheduler import Job

if TYPE_CHECKING:
    from aegis_core.analysis.admission import Admission
    from aegis_core.tools.outdir import ResultsDir

JOB_COLUMNS = (
    "job", "task", "release_ns", "deadline_ns", "start_ns", "end_ns", "response_ns", "exec_ns",
    "missed", "status", "release_lag_ns",
)  # fmt: skip

SUMMARY_SCHEMA = "aegis-summary/1"
"""``summary.json``'s ``schema``: a summary AegisRT wrote (docs/CONTRACTS.md §summary)."""

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
    return map(_row, jobs)


def jobs_csv(jobs: Iterable[Job]) -> str:
    return ",".join(JOB_COLUMNS) + "\n" + "".join(job_rows(jobs))


_COUNTS = ("jobs", "completed", "failed", "rejected", "skipped", "misses", "overruns")
_ENDS = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.REJECTED, JobStatus.SKIPPED)
_PENDING = len(_COUNTS)  # a stopped run's jobs still ready or running: counted in no column
_COUNTED = {s: _COUNTS.index(s.name.lower()) if s in _ENDS else _PENDING for s in JobStatus}


class JobTally:
    """What ``jobs.csv`` and the summary need of a run's jobs, taken as they settle, so a run
    holds only what it has not yet written (docs/CONTRACTS.md §results).

    :meth:`add` takes jobs in any order (a run's jobs as they reach a terminal status) and
    puts them back in seq order (those settled ahead of an older job wait for it). Per job in
    seq order it writes its ``jobs.csv`` row (``csv``: a text stream, or None), counts it,
    appends its response and execution time (completed jobs) to its task's compact arrays
    (8 bytes each: the exact percentiles of the summary come from them), its release lag
    (only once some lag is not 0) and feeds the busy-window attribution
    (:class:`~aegis_core.record.attribution.Stretches`). ``keep``: also keep every job
    (:attr:`kept`, for callers that want them in memory)."""

    FLUSH_ROWS = 4096

    def __init__(self, scenario: Scenario, admission: Admission | None = None, *,
                 csv: TextIO | None = None, keep: bool = False) -> None:  # fmt: skip
        self.names = [t.name for t in scenario.tasks]
        self.counts = [[0] * (len(_COUNTS) + 1) for _ in self.names]
        self.response = [ExactValues() for _ in self.names]
        self.exec = [ExactValues() for _ in self.names]
        self.lags: array[int] | None = None
        self.broken: list[dict[str, int]] = [{} for _ in self.names]
        self.jobs = 0
        self.misses = 0
        self.kept: list[Job] = []
        self._keep = keep
        self._csv = csv
        self._rows: list[str] = []
        self._waiting: dict[int, Job] = {}
        self._next = 0
        self.admission = admission
        verdicts = admission.tasks if admission is not None else ()
        self.bounds = {v.name: v.response_bound_ns for v in verdicts if v.admitted}
        ideal = admission is None or admission.overheads is None
        self._blame = Stretches({n: self.bounds.get(n) for n in self.names}, ideal_host=ideal)
        self._attribute = bool(self.bounds)
        if csv is not None:
            write_text(csv, ",".join(JOB_COLUMNS) + "\n")

    def add(self, jobs: Iterable[Job]) -> None:
        """Settled jobs (any order); each is taken once every job before it in seq order is."""
        waiting = self._waiting
        for j in jobs:
            if j.seq != self._next:
                waiting[j.seq] = j
                continue
            self._take(j)
            while self._next in waiting:
                self._take(waiting.pop(self._next))
        if len(self._rows) >= self.FLUSH_ROWS:
            self.flush()

    def _take(self, j: Job) -> None:
        self._next = j.seq + 1
        ti = j.task_index
        c = self.counts[ti]
        c[0] += 1
        self.jobs += 1
        status = j.status
        c[_COUNTED[status]] += 1
        if j.missed:
            c[5] += 1
            self.misses += 1
        if j.overrun:
            c[6] += 1
        e, lag = j.end_ns, j.lag_ns
        if status is _DONE and j.start_ns is not None and e is not None:
            self.response[ti].add(e - j.release_ns)
            self.exec[ti].add(j.run_ns)
        if self._csv is not None:
            self._rows.append(_row(j))
        if self.lags is not None:
            self.lags.append(lag)
        elif lag:
            self.lags = array("q", bytes(8 * (self.jobs - 1)))
            self.lags.append(lag)
        if j.broken:
            b = self.broken[ti]
            for what in j.broken:
                b[what] = b.get(what, 0) + 1
        if self._attribute:
            self._blame.add(j)
        if self._keep:
            self.kept.append(j)

    def flush(self) -> None:
        """Hand the rows taken so far to the CSV stream."""
        if self._rows and self._csv is not None:
            write_text(self._csv, "".join(self._rows))
        self._rows.clear()

    def release_lags(self) -> array[int]:
        """Every job's release lag, in seq order (all 0 when none was)."""
        return self.lags if self.lags is not None else array("q", bytes(8 * self.jobs))

    def summaries(self, scenario: Scenario) -> list[dict[str, Any]]:
        """Per task: counts, bound, response and execution statistics, attribution."""
        self.flush()
        adm = self.admission
        verdicts = {v.name: v for v in adm.tasks} if adm is not None else {}
        chosen = adm.budgets if adm is not None and adm.budgets else None
        wcets = [b.wcet_ns for b in (chosen or budgets(scenario))]
        blame = self._attribution()
        out = []
        for i, (t, wcet) in enumerate(zip(scenario.tasks, wcets, strict=True)):
            out.append({
                "name": t.name,
                **dict(zip(_COUNTS, self.counts[i], strict=False)),
                "period_ns": t.period_ns,
                "deadline_ns": t.deadline_ns,
                "wcet_ns": wcet,
                "admitted": verdicts[t.name].admitted if verdicts else True,
                "bound_ns": verdicts[t.name].response_bound_ns if verdicts else None,
                "response_ns": self.response[i].stats(),
                "exec_ns": self.exec[i].stats(),
                **blame[t.name],
            })  # fmt: skip
        return out

    def _attribution(self) -> dict[str, dict[str, Any]]:
        """Per task: ``exceeded`` (jobs whose response exceeded the task's bound),
        ``unattributed`` (of those and of its missed jobs, how many have no overrun or broken
        assumption in their busy window), ``causes`` (per cause kind, how many of those jobs
        it attributes) — these three null for a task without a bound (not admitted by an
        analysis: nothing promised; and for every task when a rejected task ran) — and
        ``assumptions`` (its jobs' broken overhead bounds, per figure). A run whose analysis
        charged no host overheads counts the host time lost in a window as a ``host`` cause
        (:mod:`aegis_core.record.attribution`)."""
        found = self._blame.close() if self._attribute else []
        bounds = {} if self._blame.rejected_ran else self.bounds  # admission not enforced
        out: dict[str, dict[str, Any]] = {}
        for i, n in enumerate(self.names):
            counted = bounds.get(n) is not None
            mine = [a for a in found if a.task == n]
            out[n] = {
                "exceeded": sum(a.exceeded for a in mine) if counted else None,
                "unattributed": sum(not a.attributed for a in mine) if counted else None,
                "causes": cause_counts(mine) if counted else None,
                "assumptions": dict(self.broken[i]),
            }
        return out


_DONE = JobStatus.COMPLETED


def _row(j: Job) -> str:
    s, e, r = j.start_ns, j.end_ns, j.release_ns
    miss = "true" if j.missed else "false"
    if s is not None and e is not None:
        return (f"{j.id},{j.task},{r},{j.deadline_ns},{s},{e},{e - r},{j.run_ns},{miss},"
                f"{_STATUS[j.status]},{j.lag_ns}\n")  # fmt: skip
    response = _opt(None if e is None else e - r)
    return (f"{j.id},{j.task},{r},{j.deadline_ns},{_opt(s)},{_opt(e)},{response},,{miss},"
            f"{_STATUS[j.status]},{j.lag_ns}\n")  # fmt: skip


def task_summaries(
    scenario: Scenario, jobs: Sequence[Job], admission: Admission | None = None
) -> list[dict[str, Any]]:
    """The summary's ``tasks`` of a run's jobs (:class:`JobTally` over them)."""
    tally = JobTally(scenario, admission)
    tally.add(sorted(jobs, key=lambda j: j.seq))
    return tally.summaries(scenario)


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


def write_summary(out: ResultsDir, summary: Mapping[str, Any]) -> None:
    """Write ``summary.json`` and commit the run's files (:meth:`.outdir.ResultsDir.commit`):
    each is renamed whole, ``summary.json`` last; an OSError is an InputError naming the
    file."""
    out.commit(json.dumps(summary, indent=2) + "\n")


VOLATILE_NESTED = {"dispatch_ahead": "decision_ns"}
"""Keys inside a summary section that differ between identical runs (timings)."""


def deterministic(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary without the keys that change between identical runs."""
    out = {k: v for k, v in summary.items() if k not in VOLATILE_KEYS}
    for section, key in VOLATILE_NESTED.items():
        if isinstance(out.get(section), Mapping):
            out[section] = {k: v for k, v in out[section].items() if k != key}
    return out
