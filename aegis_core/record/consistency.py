"""A trace's records against each other and against the task parameters they were run with.

``aegis explain --verify`` re-derives every decision (:mod:`aegis_core.tools.explain`); this
module checks everything else a record claims, so that an edit no decision depends on is
caught as well. :class:`Consistency` takes the run's records in order, each *before* the
:class:`~aegis_core.record.replay.Replay` applies it, and says what is wrong with it:

* times: a dispatch is never before any record above it (records of an instant come before
  its dispatches and are stamped at or before it; a wall-clock engine stamps a late release
  at its planned time and a miss at its deadline); a release is stamped ``release_ns``; a
  job is dispatched at or after its release; a chunk or completion ends at or after its
  dispatch, a completion's ``start_ns`` lies between its first dispatch and its end;
* each job released once, in ``seq`` order, its ``k`` growing per task, only for a task an
  admission record names and, when admission was enforced, admitted; its absolute deadline
  is ``release_ns + deadline_ns`` of the task's recorded parameters, and under a policy that
  orders by priority its priority is the task's (given, else deadline-monotonic);
* a chunk ends the chunk that runs, ``next`` one more, ``of`` the task's chunk count, its
  ``run_ns`` growing and at most the time since the first dispatch; a dispatch runs the
  job's next chunk; a completion ends the last chunk;
* a completion, chunk or fault ends a job that runs (a job never dispatched never
  completes); its ``end_ns`` is its ``t_ns``, ``response_ns`` = ``end_ns - release_ns``,
  ``deadline_ns`` the release's, ``missed`` exactly when a ``miss`` record came first, and
  never false past the deadline;
* a miss comes once, at the job's deadline, before it ends, with the release's times and the
  state the job is in; an overrun follows its completion at the same instant, or belongs to a
  running chunk, and its ``exec_ns`` exceeds its budget; under ``skip-next`` each overrun
  owes its task one skip (of a waiting job, or of its next release: no release of the task
  while one is owed), and every skip is owed;
* nothing about a job follows its end but an overrun (and an ``assumption``: those are
  checked by ``explain``).

:func:`unfinished` lists the released jobs that never ended (a complete, uninterrupted run
ends every job it released).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from aegis_core.model.scenario import OnOverrun
from aegis_core.model.types import TimeNs
from aegis_core.record.replay import JobState, Replay
from aegis_core.record.schema import (
    CHUNK_OVERRUN,
    AdmissionRecord,
    ChunkRecord,
    CompleteRecord,
    DispatchRecord,
    FaultRecord,
    MissRecord,
    OverrunRecord,
    Record,
    ReleaseRecord,
    SkipRecord,
)


class TaskFacts(NamedTuple):
    """What a task's admission record fixes about each of its jobs (None: not recorded)."""

    deadline_ns: TimeNs | None
    barred: bool
    """Rejected while admission was enforced: none of its jobs is released."""
    chunks: int | None
    """The chunk count of an admitted task (the merged ``chunks_ns`` of lp-edf)."""
    priority: int | None
    """The priority its releases carry (policies ordering by priority only)."""
    prioritised: bool
    """The policy orders by priority: every release carries one (and only then)."""
    wcet_ns: TimeNs | None
    """A job's time budget: one that runs longer has an ``overrun`` record."""
    on_overrun: str | None = None
    """What an overrun of a whole job does (its ``overrun`` record's ``action``)."""


_UNKNOWN = TaskFacts(None, False, None, None, False, None)
"""A task no admission record names (that release is the mismatch)."""


class _Prio(NamedTuple):
    priority: int | None
    deadline_ns: TimeNs


def task_facts(adm: Sequence[AdmissionRecord]) -> dict[str, TaskFacts]:
    """Per task, what its admission record fixes of its jobs."""
    from aegis_core.model.policy import fp_priorities, get_policy

    if not adm:
        return {}
    prioritised = "priority" in get_policy(adm[0].policy).key_fields
    params: list[Mapping[str, Any]] = [r.params or {} for r in adm]
    ranks: list[int | None] = [None] * len(adm)
    if prioritised and all(r.params is not None for r in adm):
        ranks = [
            *fp_priorities([_Prio(p.get("priority"), p.get("deadline_ns", 0)) for p in params])
        ]
    out = {}
    for r, p, rank in zip(adm, params, ranks, strict=True):
        chunks = r.rationale.get("chunks_ns")
        n = len(chunks) if r.admitted and isinstance(chunks, list) and chunks else None
        out[r.task] = TaskFacts(p.get("deadline_ns"), r.enforced and not r.admitted, n, rank,
                                prioritised, p.get("wcet_ns"),
                                p.get("on_overrun", OnOverrun.CONTINUE))  # fmt: skip
    return out


def _ms(ns: int) -> str:
    """Exact: ``12.5 ms`` to the µs, ``12.000007 ms`` to the ns (a tamper may move 1 ns)."""
    whole, frac = divmod(abs(ns), 1_000_000)
    digits = f"{frac:06d}"
    return f"{'-' if ns < 0 else ''}{whole}.{digits[:3] if digits.endswith('000') else digits} ms"


exact_ms = _ms
"""A time in a verify message, exact to the ns (``aegis explain --verify``'s too)."""


class Consistency:
    """The checks of the module docstring, record by record (see :meth:`problem`)."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskFacts] | None = None
        self.latest: TimeNs = 0
        """The latest ``t_ns`` so far (no dispatch may come before it)."""
        self.last_seq = -1
        self.last_k: dict[str, int] = {}
        self.chunks: dict[str, ChunkRecord] = {}
        """Per job between chunks, its last chunk record."""
        self.nxt: Any = None
        self.owed: dict[str, int] = {}
        """Per task, the skips its overruns under ``skip-next`` owe (one each)."""
        self.overran: set[str] = set()
        """The jobs with a whole-job overrun record so far."""

    def problem(self, r: Record, rp: Replay, nxt: Any = None) -> str | None:
        """What is wrong with ``r``, taken in the state ``rp`` is in just before it (``nxt``:
        the record after it, None at the end of a cut trace)."""
        self.nxt = nxt
        if isinstance(r, AdmissionRecord):
            return "an admission record after the run began" if self.tasks is not None else None
        if self.tasks is None:
            self.tasks = task_facts(rp.admissions)
        latest, self.latest = self.latest, max(self.latest, r.t_ns)
        check = _CHECKS.get(type(r))
        if check is None:  # an assumption: explain checks it
            return None
        js = rp.jobs.get(r.job)
        if type(r) is not ReleaseRecord and (why := _who(r, js)) is not None:
            return why
        return check(self, r, js, rp, latest)

    def _facts(self, task: str) -> TaskFacts:
        return (self.tasks or {}).get(task, _UNKNOWN)

    def _release(
        self, r: ReleaseRecord, js: JobState | None, rp: Replay, latest: int
    ) -> str | None:
        if js is not None and js.release is not None:
            return f"releases {r.job} again (first released at {_ms(js.release.t_ns)})"
        if r.t_ns != r.release_ns:
            return f"stamped {_ms(r.t_ns)}, its release_ns is {_ms(r.release_ns)}"
        assert self.tasks is not None
        facts = self.tasks.get(r.task)
        if facts is None:
            return f"a job of task {r.task!r}, which no admission record names"
        if facts.barred:
            return f"a job of task {r.task!r}, which admission rejected (enforced): never released"
        why = self._order(r)
        if why is not None:
            return why
        if self.owed.get(r.task):
            return "released, but an overrun of its task (skip-next) owes a skip: this job's"
        if facts.deadline_ns is not None and r.deadline_ns != r.release_ns + facts.deadline_ns:
            return (f"absolute deadline {_ms(r.deadline_ns)}, but release {_ms(r.release_ns)} + "
                    f"the task's deadline {_ms(facts.deadline_ns)} is "
                    f"{_ms(r.release_ns + facts.deadline_ns)}")  # fmt: skip
        if (r.priority is not None) != facts.prioritised:
            return "a priority under a policy that orders by none" if r.priority is not None \
                else "no priority under a policy that orders by priority"  # fmt: skip
        if facts.priority is not None and r.priority != facts.priority:
            return f"priority {r.priority}, the task's is {facts.priority}"
        return None

    def _order(self, r: ReleaseRecord | SkipRecord) -> str | None:
        """Jobs are released (or skipped at release) in ``seq`` order, ``k`` growing per
        task, each named ``<task>#<k>``."""
        task, _, k = r.job.rpartition("#")
        if task != r.task or not k.isdigit() or str(int(k)) != k:
            return f"job {r.job!r} is not named <task>#<k> for its task {r.task!r}"
        if r.seq <= self.last_seq:
            return f"seq {r.seq} after a release with seq {self.last_seq}"
        last = self.last_k.get(task, -1)
        if int(k) <= last:
            return f"job {r.job} after {task}#{last}"
        self.last_seq, self.last_k[task] = r.seq, int(k)
        return None

    def _dispatch(self, r: DispatchRecord, js: JobState, rp: Replay, latest: int) -> str | None:
        assert js.release is not None
        if r.t_ns < js.release.t_ns:
            return f"dispatched at {_ms(r.t_ns)}, before its release at {_ms(js.release.t_ns)}"
        if r.t_ns < latest:
            return f"dispatched at {_ms(r.t_ns)}, before a record above it, at {_ms(latest)}"
        last = self.chunks.get(r.job)
        want = 0 if last is None else last.next
        if r.chunk != want:
            return f"dispatches chunk {r.chunk}, the job's next chunk is {want}"
        return None

    def _running(self, r: Record, rp: Replay, what: str) -> str | None:
        run = rp.running.get(r.job)  # type: ignore[union-attr]
        if run is None:
            return f"{what} a job that is not running (never dispatched, or not since)"
        if r.t_ns < run.dispatched_ns:
            return f"at {_ms(r.t_ns)}, before its dispatch at {_ms(run.dispatched_ns)}"
        return None

    def _chunk(self, r: ChunkRecord, js: JobState, rp: Replay, latest: int) -> str | None:
        why = self._running(r, rp, "ends a chunk of")
        if why is not None:
            return why
        chunk = rp.running[r.job].chunk
        n = self._facts(js.task).chunks
        last = self.chunks.get(r.job)
        if r.next != chunk + 1:
            return f"next chunk {r.next} after chunk {chunk}"
        want = n if n is not None else last.of if last is not None else None
        if r.of <= r.next:
            return f"of {r.of}: there is no chunk {r.next} to run next"
        if want is not None and r.of != want:
            return f"of {r.of}, the task has {want} chunks"
        since = r.t_ns - (js.start_ns if js.start_ns is not None else r.t_ns)
        if not (last.run_ns if last else 0) <= r.run_ns <= since:
            return f"run_ns {_ms(r.run_ns)}, not between the last chunk's and {_ms(since)}"
        self.chunks[r.job] = r
        return None

    def _complete(self, r: CompleteRecord, js: JobState, rp: Replay, latest: int) -> str | None:
        why = self._running(r, rp, "completes")
        if why is not None:
            return why
        last = self.chunks.pop(r.job, None)
        assert js.release is not None
        n = last.of if last is not None else self._facts(js.task).chunks
        chunk = rp.running[r.job].chunk
        if n is not None and chunk != n - 1:
            return f"completes after chunk {chunk} of {n}"
        rel = js.release
        first = js.start_ns if js.start_ns is not None else r.t_ns
        if r.end_ns != r.t_ns:
            return f"end_ns {_ms(r.end_ns)}, stamped {_ms(r.t_ns)}"
        if not first <= r.start_ns <= r.end_ns:
            return (f"start_ns {_ms(r.start_ns)}, not between its dispatch at {_ms(first)} "
                    f"and its end at {_ms(r.end_ns)}")  # fmt: skip
        if r.response_ns != r.end_ns - rel.release_ns:
            return (f"response_ns {_ms(r.response_ns)}, but end {_ms(r.end_ns)} - release "
                    f"{_ms(rel.release_ns)} is {_ms(r.end_ns - rel.release_ns)}")  # fmt: skip
        if r.deadline_ns != rel.deadline_ns:
            return f"deadline_ns {_ms(r.deadline_ns)}, its release says {_ms(rel.deadline_ns)}"
        if r.missed != (js.miss is not None):
            return ("missed, but no miss record came first" if r.missed
                    else "not missed, but a miss record came first")  # fmt: skip
        if r.end_ns > r.deadline_ns and not r.missed:
            return f"not missed, but it ended at {_ms(r.end_ns)} > deadline {_ms(r.deadline_ns)}"
        return self._owed_overrun(r, js, last is None)

    def _owed_overrun(self, r: CompleteRecord, js: JobState, whole: bool) -> str | None:
        """A whole job (one run) that ran past its WCET has its overrun record right after
        its completion, with what it ran; a job within it has none."""
        wcet = self._facts(js.task).wcet_ns
        nxt = self.nxt
        if not whole or wcet is None or nxt is None:
            return None
        ran = r.end_ns - r.start_ns
        owed = type(nxt) is OverrunRecord and nxt.job == r.job and nxt.exec_ns == ran
        if ran > wcet and not owed:
            return f"ran {_ms(ran)} > its WCET {_ms(wcet)}, and no overrun record follows"
        if (
            ran <= wcet
            and type(nxt) is OverrunRecord
            and nxt.job == r.job
            and not (nxt.exec_ns <= nxt.budget_ns or nxt.exec_ns == ran)
        ):  # a chunk's (fmt: skip)
            return f"ran {_ms(ran)}, the overrun record after it says {_ms(nxt.exec_ns)}"
        return None

    def _fault(self, r: FaultRecord, js: JobState, rp: Replay, latest: int) -> str | None:
        self.chunks.pop(r.job, None)
        return self._running(r, rp, "fails")

    def _miss(self, r: MissRecord, js: JobState, rp: Replay, latest: int) -> str | None:
        rel = js.release
        assert rel is not None
        if js.miss is not None:
            return "a second miss of the job"
        if (r.release_ns, r.deadline_ns, r.t_ns) != (rel.release_ns, rel.deadline_ns,
                                                     rel.deadline_ns):  # fmt: skip
            return (f"release {_ms(r.release_ns)}, deadline {_ms(r.deadline_ns)} at "
                    f"{_ms(r.t_ns)}: the release says {_ms(rel.release_ns)}, deadline (and "
                    f"its instant) {_ms(rel.deadline_ns)}")  # fmt: skip
        state = "running" if r.job in rp.running else "ready" if r.job in rp.ready else None
        if r.state != state:
            return f"state {r.state!r}, the job is {state or 'neither ready nor running'}"
        return None

    def _skip(self, r: SkipRecord, js: JobState | None, rp: Replay, latest: int) -> str | None:
        if not self.owed.get(r.task):
            return "no overrun of its task (skip-next) owes a skip"
        self.owed[r.task] -= 1
        if js is None or js.release is None:
            return self._order(r)  # dropped at its release
        if r.job not in rp.ready:
            return "skips a job that is not waiting (running, or never released)"
        return None

    def _overrun(self, r: OverrunRecord, js: JobState, rp: Replay, latest: int) -> str | None:
        done = js.complete
        if r.job not in rp.running and (done is None or done.t_ns != r.t_ns):
            return "neither right after its completion nor during a chunk"
        if r.exec_ns <= r.budget_ns:
            return f"exec_ns {_ms(r.exec_ns)} is within its budget {_ms(r.budget_ns)}"
        if r.action != CHUNK_OVERRUN and (why := self._whole_overrun(r)) is not None:
            return why
        if r.action == OnOverrun.SKIP_NEXT:
            self.owed[r.task] = self.owed.get(r.task, 0) + 1
        return None

    def _whole_overrun(self, r: OverrunRecord) -> str | None:
        """A whole job's overrun: once a job, against the task's WCET, with its action."""
        facts = self._facts(r.task)
        if r.job in self.overran:
            return f"a second overrun record of {r.job}"
        self.overran.add(r.job)
        if facts.wcet_ns is not None and r.budget_ns != facts.wcet_ns:
            return f"budget_ns {_ms(r.budget_ns)}, the task's WCET is {_ms(facts.wcet_ns)}"
        if facts.on_overrun is not None and r.action != facts.on_overrun:
            return f"action {r.action!r}, the task's on_overrun is {facts.on_overrun!r}"
        return None


def _who(r: Any, js: JobState | None) -> str | None:
    """A record about a released job, of its task, before its end (but its overrun)."""
    if js is None or js.release is None:
        return None if type(r) is SkipRecord else "names a job that was not released"
    if r.task != js.task:
        return f"names task {r.task!r}, the job's release says {js.task!r}"
    if r.seq != js.seq and r.seq >= 0:  # an old trace's records but the release: seq -1
        return f"seq {r.seq}, the job's release says {js.seq}"
    if js.status.terminal and type(r) is not OverrunRecord:
        return f"after the job ended ({js.status.name.lower()})"
    return None


_CHECKS: dict[type, Callable[..., str | None]] = {
    ReleaseRecord: Consistency._release,
    DispatchRecord: Consistency._dispatch,
    ChunkRecord: Consistency._chunk,
    CompleteRecord: Consistency._complete,
    FaultRecord: Consistency._fault,
    MissRecord: Consistency._miss,
    SkipRecord: Consistency._skip,
    OverrunRecord: Consistency._overrun,
}


def unfinished(rp: Replay) -> list[str]:
    """The released jobs that never ended (neither completed, failed nor skipped)."""
    return [j for j, js in rp.jobs.items() if js.release is not None and not js.status.terminal]
