"""Every exception attributed: which recorded cause explains a job above its bound.

AegisRT's promise for an admitted task is *response ≤ its analytical bound* (and so no miss)
as long as the analysis's inputs held: every job ran within its WCET and the host within the
overhead bounds the analysis charged. A job that *exceeded* its bound (or missed its deadline)
is **attributed** when, in its busy window, something recorded broke one of those inputs:

* an ``overrun``: some job ran past its WCET budget (``Job.overrun``, an ``overrun`` record);
* a broken assumption: some job's host overhead took longer than its charged bound
  (``Job.broken``, an ``assumption`` record: ``release-lag``, ``decision``, ``launch``,
  ``completion``);
* when the analysis charged *no* host overheads (an ideal host), the host time the window
  lost — the device idle while a released job waited, plus the releases' recorded lag — at
  least :data:`STALL_NS` or at least the job's excess over its bound (a ``host`` cause).

The busy window of a job is ``[b, e]``: ``b`` the start of the stretch around its release
over which some job was pending all along (:func:`busy_period`), ``e`` its end (its deadline
if it never ended). A job belongs to the window when it was released in ``[b, e)`` (every job
that ran in the window was: the jobs released before ``b`` had all ended by then); its causes
count when it started before ``e`` (a job that only ran later cannot have delayed it). An
exceedance with no cause in its window is **unattributed**: the analysis (or the scheduler)
was wrong — a bug to report.

It costs O(n log n) plus, per job accounted for, O(log n) and the causes it lists (at most
:data:`MAX_LISTED`, and one of every kind present), so an overloaded run's summary stays fast.

One helper, two inputs: :func:`attribute` reads :class:`RunJob` rows (a run's jobs, or
``jobs.csv``), :func:`attribute_trace` a trace's records (the numbers of each overrun and
broken bound come with them; a trace carries no release lag, so the ideal-host ``host``
cause counts only the idle device there).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from aegis_core.model.overheads import Overhead
from aegis_core.model.types import fmt_ms
from aegis_core.record.replay import Replay
from aegis_core.record.schema import AssumptionRecord, OverrunRecord, Record

STALL_NS = 1_000_000
"""Host time lost in one busy window that counts as a host stall when the analysis charged no
host overheads (a few dispatch gaps)."""

OVERRUN = "overrun"
"""The cause of a job that ran past its WCET budget."""
HOST = "host"
COMPLETION = Overhead.COMPLETION.value
"""The cause of an ideal-host run's lost host time (no overheads charged, none checked)."""


def _ms(ns: int | None) -> str:
    return fmt_ms(ns, " ms")


class JobLike(Protocol):
    """What :meth:`RunJob.of` reads of a scheduler's job (``aegis_core.run.scheduler.Job``)."""

    @property
    def id(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def release_ns(self) -> int: ...
    @property
    def deadline_ns(self) -> int: ...
    @property
    def start_ns(self) -> int | None: ...
    @property
    def end_ns(self) -> int | None: ...
    @property
    def missed(self) -> bool: ...
    @property
    def lag_ns(self) -> int: ...
    @property
    def overrun(self) -> bool: ...
    @property
    def broken(self) -> tuple[str, ...]: ...


class RunJob(NamedTuple):
    """What attribution reads of a job: a scheduler's job, a ``jobs.csv`` row or a trace's."""

    id: str
    task: str
    release_ns: int
    deadline_ns: int
    start_ns: int | None
    end_ns: int | None
    missed: bool
    lag_ns: int
    overrun: bool = False
    broken: tuple[str, ...] = ()
    """The overhead figures whose bound the host broke for this job, one per record."""

    @property
    def response_ns(self) -> int | None:
        return None if self.end_ns is None else self.end_ns - self.release_ns

    @classmethod
    def of(cls, job: JobLike) -> RunJob:
        return cls(job.id, job.task, job.release_ns, job.deadline_ns, job.start_ns, job.end_ns,
                   job.missed, job.lag_ns, job.overrun, job.broken)  # fmt: skip

    @classmethod
    def row(cls, r: Mapping[str, str]) -> RunJob:
        """A ``jobs.csv`` row (no overrun nor assumption columns: pass the trace's causes)."""

        def opt(v: str) -> int | None:
            return int(v) if v else None

        return cls(r["job"], r["task"], int(r["release_ns"]), int(r["deadline_ns"]),
                   opt(r["start_ns"]), opt(r["end_ns"]), r["missed"] == "true",
                   int(r["release_lag_ns"] or 0))  # fmt: skip


class Cause(NamedTuple):
    """One recorded reason a job's bound may not hold: ``what`` is :data:`OVERRUN`, an
    overhead figure (``release-lag``, ``decision``, ``launch``, ``completion``) or
    :data:`HOST`; ``observed_ns`` / ``bound_ns`` when known (the run time and WCET budget of
    an overrun, the overhead and its bound, the host time lost and 0)."""

    job: str
    what: str
    observed_ns: int | None = None
    bound_ns: int | None = None

    def __str__(self) -> str:
        known = self.observed_ns is not None and self.bound_ns is not None
        if self.what == OVERRUN:
            ran = f": ran {_ms(self.observed_ns)} > budget {_ms(self.bound_ns)}" if known else ""
            return f"{self.job} overran its WCET{ran}"
        if self.what == HOST:
            return (f"the host lost {_ms(self.observed_ns)} in the busy window (device idle "
                    "while a job waited, releases handed over late) and the analysis charged "
                    "no host overheads (calibrate and pass --overheads)")  # fmt: skip
        if known:
            return (f"{self.what} of {self.job} took {_ms(self.observed_ns)} > bound "
                    f"{_ms(self.bound_ns)}")  # fmt: skip
        return f"{self.what} of {self.job} broke its bound"


class Attribution(NamedTuple):
    """A job above its bound (or past its deadline) and the causes in its busy window."""

    job: str
    task: str
    response_ns: int | None
    bound_ns: int | None
    missed: bool
    window: tuple[int, int]
    causes: tuple[Cause, ...]

    @property
    def exceeded(self) -> bool:
        """Its response exceeded its task's analytical bound."""
        r, b = self.response_ns, self.bound_ns
        return r is not None and b is not None and r > b

    @property
    def attributed(self) -> bool:
        return bool(self.causes)

    def __str__(self) -> str:
        r, b = _ms(self.response_ns), _ms(self.bound_ns)
        what = f"response {r} > bound {b}" if self.exceeded else f"missed its deadline ({r})"
        if not self.causes:
            return (f"unattributed: {what} with no overrun or broken assumption in its busy "
                    "window — an analysis bug, please report")  # fmt: skip
        b0, e0 = self.window
        return (f"{what}, attributed: in its busy window ({_ms(b0)} to {_ms(e0)}) "
                + "; ".join(str(c) for c in self.causes))  # fmt: skip


def _stretch_starts(order: Sequence[RunJob]) -> list[int]:
    """Per job of ``order`` (sorted by release), the start of the pending stretch its
    release falls in."""
    out: list[int] = []
    b = reach = None
    for j in order:
        r, f = j.release_ns, j.end_ns if j.end_ns is not None else j.release_ns
        if reach is None or r > reach:  # nothing pending just before r: a new stretch
            b, reach = r, f
        else:
            reach = max(reach, f)
        assert b is not None
        out.append(b)
    return out


def busy_period(job: RunJob, jobs: Sequence[RunJob]) -> tuple[int, int]:
    """``[b, e]``: ``b`` the start of the stretch, around ``job``'s release, over which some job
    was pending all along (released, by its nominal release time, and not yet ended); ``e``
    ``job``'s end (its deadline if it never ended)."""
    order = sorted(jobs, key=lambda j: j.release_ns)
    starts = _stretch_starts(order)
    i = bisect_right([j.release_ns for j in order], job.release_ns) - 1
    assert i >= 0, f"{job.id} is not among the jobs"
    return starts[i], job.end_ns if job.end_ns is not None else job.deadline_ns


def _own_causes(j: RunJob, overran: frozenset[str] | None) -> list[Cause]:
    over = j.overrun if overran is None else j.id in overran
    return [Cause(j.id, OVERRUN)] * over + [Cause(j.id, w) for w in j.broken]


class _Busy:
    """The device's busy time (the union of every run) up to any instant, by bisection."""

    def __init__(self, jobs: Iterable[RunJob]) -> None:
        spans = sorted((j.start_ns, j.end_ns) for j in jobs
                       if j.start_ns is not None and j.end_ns is not None)  # fmt: skip
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.before: list[int] = []  # busy time before each merged span
        total = 0
        for s, f in spans:
            if self.ends and s <= self.ends[-1]:
                if f > self.ends[-1]:
                    total += f - self.ends[-1]
                    self.ends[-1] = f
                continue
            self.starts.append(s)
            self.ends.append(f)
            self.before.append(total)
            total += f - s

    def upto(self, t: int) -> int:
        i = bisect_right(self.starts, t) - 1
        return 0 if i < 0 else self.before[i] + min(t, self.ends[i]) - self.starts[i]


MAX_LISTED = 16
"""At most this many causes are listed per job (its window's first, in release order), and
one more per cause kind present beyond them: an overloaded run's windows can hold thousands."""


def attribute(
    jobs: Iterable[RunJob],
    bounds: Mapping[str, int | None] | None = None,
    causes: Mapping[str, Sequence[Cause]] | None = None,
    *,
    ideal_host: bool = False,
    stall_ns: int = STALL_NS,
    overran: Iterable[str] | None = None,
) -> list[Attribution]:
    """Every job to account for, in release order, with the causes in its busy window.

    A job is accounted for when its task has a bound in ``bounds`` (an admitted task) and it
    exceeded it or missed its deadline; without ``bounds``, every missed job. The causes of a
    job are its own overrun and broken bounds (``RunJob.overrun`` / ``broken``; ``overran``:
    job ids that overran, instead of the flags) or, when ``causes`` is given, the causes it
    lists for the job id (a trace's, with their numbers); at most :data:`MAX_LISTED` are
    listed, and every kind present. ``ideal_host``: the analysis charged no host overheads,
    so the host time the window lost — the device idle while a job was pending, plus the
    releases' lag — is a ``host`` cause when it is at least ``stall_ns`` or the job's excess
    over its bound."""
    order = sorted(jobs, key=lambda j: j.release_ns)
    over = None if overran is None else frozenset(overran)
    releases = [j.release_ns for j in order]
    starts = _stretch_starts(order)
    own = [_own_causes(j, over) if causes is None else list(causes.get(j.id, ())) for j in order]
    listed = [i for i, c in enumerate(own) if c]
    by_kind: dict[str, list[int]] = {}
    for i in listed:
        for what in dict.fromkeys(c.what for c in own[i]):
            by_kind.setdefault(what, []).append(i)
    busy = _Busy(order) if ideal_host else None
    ended = sorted((j.end_ns, k) for k, j in enumerate(order) if j.end_ns is not None)
    end_times = [t for t, _ in ended]
    lags = [0]
    for j in order:
        lags.append(lags[-1] + j.lag_ns)
    out: list[Attribution] = []
    for i, job in enumerate(order):
        bound = None if bounds is None else bounds.get(job.task)
        if bounds is not None and bound is None:
            continue  # no analytical bound: nothing was promised
        response = job.response_ns
        exceeded = bound is not None and response is not None and response > bound
        if not (job.missed or exceeded):
            continue
        b = starts[bisect_right(releases, job.release_ns) - 1]
        e = job.end_ns if job.end_ns is not None else job.deadline_ns
        lo, hi = bisect_left(releases, b), max(bisect_left(releases, e), i + 1)

        def counts(k: int, e: int = e, i: int = i) -> bool:  # it may have delayed the job
            s = order[k].start_ns
            return k == i or (s is not None and s < e)

        found: list[Cause] = []
        for k in listed[bisect_left(listed, lo) : bisect_left(listed, hi)]:
            if len(found) >= MAX_LISTED:
                break
            if counts(k):
                found += own[k]
        first = order[lo].start_ns  # the window's first job: did it wait for the slot?
        if first is not None and first > b:
            found += _handover(own, ended, end_times, b)
        kinds = {c.what for c in found}
        for what, ks in by_kind.items():
            if what not in kinds:
                hit = next((k for k in ks[bisect_left(ks, lo) : bisect_left(ks, hi)]
                            if counts(k)), None)  # fmt: skip
                if hit is not None:
                    found.append(next(c for c in own[hit] if c.what == what))
        if busy is not None:
            lost = (e - b) - (busy.upto(e) - busy.upto(b)) + lags[hi] - lags[lo]
            excess = None if bound is None or response is None else response - bound
            if lost > 0 and (lost >= stall_ns or (excess is not None and lost >= excess)):
                found.append(Cause(job.id, HOST, lost, 0))
        out.append(Attribution(job.id, job.task, response, bound, job.missed, (b, e),
                               tuple(found)))  # fmt: skip
    return out


def _handover(
    own: Sequence[Sequence[Cause]], ended: Sequence[tuple[int, int]],
    end_times: Sequence[int], b: int,
) -> list[Cause]:  # fmt: skip
    """A late-seen completion of the job that ended last before the window (whose first job
    waited): the slot was held until the host saw it, which may be after the window's first
    release (the window is built from device ends), so its broken ``completion`` bound is a
    cause too."""
    p = bisect_right(end_times, b) - 1
    if p < 0:
        return []
    last = end_times[p]
    lo = bisect_left(end_times, last)  # every job that ended then (ties: each may have held it)
    return [c for _, k in ended[lo : p + 1] for c in own[k] if c.what == COMPLETION]


def rejected_ran(bounds: Mapping[str, int | None], jobs: Iterable[RunJob]) -> bool:
    """Did a task without a bound (rejected, admission not enforced) run? Then the admitted
    tasks' bounds, which assume it never runs, promise nothing."""
    return any(bounds.get(j.task) is None and j.start_ns is not None for j in jobs)


class Stretches:
    """:func:`attribute` over a run's jobs as they come, one pending stretch at a time, so a
    long run's attribution holds only the jobs of its current stretch.

    Feed the jobs in release order (:meth:`add`: a run's jobs as they settle, put back in seq
    order); a job released after every job so far has ended (the stretch's reach) closes the
    stretch. A stretch with a job to account for (past its deadline, or above its task's
    bound) is attributed with :func:`attribute` — over its own jobs and the jobs that ended
    last before it (a late-seen completion may have held the slot into it: ``_handover``) —
    and dropped. Only a release handed over later than the next stretch's first one (a lag
    longer than the idle gap) can be put in a later stretch than the whole-run
    :func:`attribute` would put it. :meth:`close` ends the last stretch; :attr:`found` holds
    every attribution; :attr:`rejected_ran` is :func:`rejected_ran` over every job fed."""

    __slots__ = ("_bounds", "_flagged", "_hold", "_ideal", "_jobs", "_reach", "_stall",
                 "_tail", "found", "rejected_ran")  # fmt: skip

    def __init__(self, bounds: Mapping[str, int | None], *, ideal_host: bool = False,
                 stall_ns: int = STALL_NS) -> None:  # fmt: skip
        self._bounds = dict(bounds)
        self._ideal = ideal_host
        self._stall = stall_ns
        self._jobs: list[JobLike] = []
        self._tail: list[JobLike] = []
        self._reach = -1
        self._hold = -1  # a flagged job that never ended: its window runs to its deadline
        self._flagged = False
        self.found: list[Attribution] = []
        self.rejected_ran = False

    def add(self, job: JobLike) -> None:
        """The next job in release order (settled: its end, flags and causes are final)."""
        r, end = job.release_ns, job.end_ns
        if r > self._reach and r >= self._hold:
            self._close()
        self._jobs.append(job)
        if end is None:
            end = r
        if end > self._reach:
            self._reach = end
        bound = self._bounds.get(job.task)
        if bound is None:
            if job.start_ns is not None:
                self.rejected_ran = True
        elif end - r > bound or job.missed:
            self._flagged = True
            if job.end_ns is None:  # its window is [b, deadline]: keep what is released in it
                self._hold = max(self._hold, job.deadline_ns)

    def _close(self) -> None:
        jobs = self._jobs
        if not jobs:
            return
        if self._flagged:
            mine = {j.id for j in jobs}
            runs = [RunJob.of(j) for j in (*self._tail, *jobs)]
            self.found += [a for a in attribute(runs, self._bounds, ideal_host=self._ideal,
                                                stall_ns=self._stall) if a.job in mine]  # fmt: skip
        ends = [j.end_ns for j in jobs if j.end_ns is not None]
        if ends:
            last = max(ends)
            self._tail = [j for j in jobs if j.end_ns == last]
        self._jobs = []
        self._flagged = False
        self._hold = -1

    def close(self) -> list[Attribution]:
        """End the last stretch; every attribution, in release order."""
        self._close()
        return self.found


class TraceJobs(NamedTuple):
    """What attribution reads of a trace: its jobs, their recorded causes (with the numbers),
    the admitted tasks' bounds and whether the analysis charged host overheads."""

    jobs: list[RunJob]
    causes: dict[str, list[Cause]]
    bounds: dict[str, int | None]
    ideal_host: bool


def trace_jobs(records: Iterable[Mapping[str, Any] | Record]) -> TraceJobs:
    """The jobs of a trace (released ones; start is the device start a completion reports),
    each job's ``overrun`` and ``assumption`` records as causes, the bound of each admitted
    task (its ``admit`` record's ``response_bound_ns``) and whether no admission record
    charged overheads (``overheads_ns`` in its rationale)."""
    rp = Replay.of(records)
    jobs: list[RunJob] = []
    causes: dict[str, list[Cause]] = {}
    for js in rp.jobs.values():
        rel = js.release
        if rel is None:
            continue
        done = js.complete
        start = done.start_ns if done is not None else js.start_ns
        missed = js.miss is not None or (done is not None and done.missed)
        found = causes[js.job] = []
        for r in js.records:
            if isinstance(r, OverrunRecord):
                found.append(Cause(r.job, OVERRUN, r.exec_ns, r.budget_ns))
            elif isinstance(r, AssumptionRecord):
                found.append(Cause(r.job, r.what, r.observed_ns, r.bound_ns))
        jobs.append(RunJob(js.job, js.task, rel.release_ns, rel.deadline_ns, start, js.end_ns,
                           missed, 0, js.overrun is not None,
                           tuple(c.what for c in found if c.what != OVERRUN)))  # fmt: skip
    bounds: dict[str, int | None] = {}
    for a in rp.admissions:
        bound = a.rationale.get("response_bound_ns")
        bounds[a.task] = int(bound) if a.admitted and isinstance(bound, int) else None
    ideal = not any(isinstance(a.rationale.get("overheads_ns"), Mapping) for a in rp.admissions)
    if rejected_ran(bounds, jobs):
        bounds = dict.fromkeys(bounds)
    return TraceJobs(jobs, causes, bounds, ideal)


def attribute_trace(
    records: Iterable[Mapping[str, Any] | Record], *, stall_ns: int = STALL_NS
) -> list[Attribution]:
    """:func:`attribute` over a trace (:func:`trace_jobs`): the admitted tasks' jobs above
    their bound or past their deadline, each with the recorded causes in its busy window."""
    t = trace_jobs(records)
    return attribute(t.jobs, t.bounds, t.causes, ideal_host=t.ideal_host, stall_ns=stall_ns)


def cause_counts(attributions: Iterable[Attribution]) -> dict[str, int]:
    """Per cause kind (``overrun``, a figure, ``host``), how many of the jobs it attributes:
    a job whose window holds several kinds counts once under each."""
    out: dict[str, int] = {}
    for a in attributions:
        for what in dict.fromkeys(c.what for c in a.causes):
            out[what] = out.get(what, 0) + 1
    return out
