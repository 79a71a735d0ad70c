"""The trace's record schema: the kinds, their fields, one encoder and one decoder.

A trace (``trace.jsonl``) holds one JSON object a line. Every record starts with

* ``rec``: the record's number in its stream (0, 1, 2, …), given by the sink that writes it
  (a record not yet written has ``rec == -1``);
* ``t_ns``: when it happened (integer ns; a ``miss`` is stamped with the deadline instant);
* ``kind``: one of :class:`Kind`.

A record about a job goes on with ``seq`` (the job's release sequence number: its index in
``Scheduler.jobs`` and the last field of every policy key), ``job`` (``<task>#<k>``) and
``task``; then, by kind:

=========  ================================================================================
release    ``deadline_ns``, ``release_ns``, ``priority`` (np-fp only)
dispatch   ``chunk`` (lp-edf, only when not 0), ``decided_ahead_ns`` (only when not 0: the
           decision was taken that long before, while the previous job ran, and takes effect
           at its end), ``rationale``: ``rule``, ``key`` (the entry fields compared, in
           order) and ``ready`` (every ready job at this instant, the winner first, each
           ``{job, task, deadline_ns, release_ns, seq[, priority]}``)
chunk      ``next`` (the chunk to run next), ``of`` (chunks of the job), ``run_ns`` (so far)
complete   ``start_ns``, ``end_ns``, ``response_ns``, ``deadline_ns``, ``missed``
miss       ``release_ns``, ``deadline_ns``, ``state`` (``ready``, ``running`` or ``done``)
overrun    ``exec_ns``, ``budget_ns``, ``action`` (the task's ``on_overrun``; ``chunk``: one
           lp-edf chunk past its chunk WCET, the chunk's figures)
skip       ``reason``
fault      ``error``
assumption ``what`` (an overhead: ``release-lag``, ``decision``, ``launch``,
           ``completion``), ``observed_ns``, ``bound_ns``: the host broke an overhead bound
           the analysis assumed (docs/THEORY.md §overheads)
=========  ================================================================================

``admit`` / ``reject`` (one per task, first in the trace, ``t_ns`` 0) carry ``task``,
``policy``, ``enforced``, ``rationale`` (the verdict: bound, reason, test, …), ``params``
(what admission read of the task, :data:`TASK_PARAMS`) and ``gpu_memory_bytes``; and
``analysis_points`` when the scenario set an analysis budget (docs/THEORY.md §budget).

``end`` (:class:`EndRecord`, the last line of every run's trace, complete or stopped by a
signal) carries ``jobs`` (the jobs released: one ``release`` record each) and
``interrupted``: null, or ``{"at_ns", "signal"}`` (the instant the run stopped at, ``SIGINT``
or ``SIGTERM``); its ``t_ns`` is the run's last instant. A trace without one was cut short
(a hard kill, a truncated file). It is no record *of* the run: :func:`decode_all` leaves it
out (the run's records, for a replay); :func:`decode` / :func:`from_dict` read it.

Records are NamedTuples (cheap to make on the scheduler's hot path). :class:`Encoder` writes
them by hand-formatted JSON (a job's ready-set entry is formatted once and reused by every
dispatch that lists it); :func:`decode` / :func:`from_dict` read a line or a parsed object back
into a record, checking every field of its kind. Traces written before ``rec`` existed (whose
``seq`` was the record number and whose release named the job's ``job_seq``) still decode.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from json.encoder import encode_basestring_ascii as _q
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from aegis_core.model.errors import InputError
from aegis_core.model.types import TimeNs

if TYPE_CHECKING:
    from aegis_core.analysis.admission import Admission
    from aegis_core.budget import TaskBudget
    from aegis_core.model.scenario import Scenario, Task


class Kind(StrEnum):
    ADMIT = "admit"
    REJECT = "reject"
    RELEASE = "release"
    DISPATCH = "dispatch"
    CHUNK = "chunk"
    COMPLETE = "complete"
    MISS = "miss"
    OVERRUN = "overrun"
    SKIP = "skip"
    FAULT = "fault"
    ASSUMPTION = "assumption"
    END = "end"


class ReadyLike(Protocol):
    """What a dispatch record lists of each ready job (the scheduler's ``ReadyEntry`` is one;
    a decoded trace gives :class:`Entry`)."""

    @property
    def job(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def deadline_ns(self) -> TimeNs: ...
    @property
    def release_ns(self) -> TimeNs: ...
    @property
    def seq(self) -> int: ...
    @property
    def priority(self) -> int | None: ...


class Entry(NamedTuple):
    """One ready job as a dispatch record lists it (field order as written)."""

    job: str
    task: str
    deadline_ns: TimeNs
    release_ns: TimeNs
    seq: int
    priority: int | None = None

    @classmethod
    def of(cls, e: ReadyLike) -> Entry:
        return cls(e.job, e.task, e.deadline_ns, e.release_ns, e.seq, e.priority)

    def as_dict(self) -> dict[str, Any]:
        """The entry as written (``priority`` only where there is one)."""
        return entry_dict(self)


def entry_dict(e: ReadyLike) -> dict[str, Any]:
    """A ready entry as the JSON object a dispatch record lists."""
    out = {"job": e.job, "task": e.task, "deadline_ns": e.deadline_ns,
           "release_ns": e.release_ns, "seq": e.seq}  # fmt: skip
    if e.priority is not None:
        out["priority"] = e.priority
    return out


def key_of(entry: ReadyLike, key_fields: Iterable[str]) -> tuple[Any, ...]:
    """The policy key of a recorded ready entry (``key_fields``: the rationale's ``key``)."""
    return tuple(getattr(entry, f) for f in key_fields)


class ReleaseRecord(NamedTuple):
    t_ns: TimeNs
    seq: int
    job: str
    task: str
    deadline_ns: TimeNs
    release_ns: TimeNs
    priority: int | None = None
    rec: int = -1

    @property
    def kind(self) -> Kind:
        return Kind.RELEASE

    @property
    def entry(self) -> Entry:
        """The ready-set entry this release makes (what each dispatch must list)."""
        return Entry(self.job, self.task, self.deadline_ns, self.release_ns, self.seq,
                     self.priority)  # fmt: skip


class DispatchRecord(NamedTuple):
    t_ns: TimeNs
    seq: int
    job: str
    task: str
    chunk: int
    rule: str
    key: tuple[str, ...]
    ready: tuple[ReadyLike, ...]  # every ready job at decision time, the winner first
    rec: int = -1
    decided_ahead_ns: TimeNs = 0
    """How long before this instant the decision was taken (dispatch-ahead: the job was
    chained behind the one that ended here, docs/THEORY.md §ahead); 0: taken here."""

    @property
    def kind(self) -> Kind:
        return Kind.DISPATCH


class ChunkRecord(NamedTuple):
    t_ns: TimeNs
    seq: int
    job: str
    task: str
    next: int
    of: int
    run_ns: TimeNs
    rec: int = -1

    @property
    def kind(self) -> Kind:
        return Kind.CHUNK


class CompleteRecord(NamedTuple):
    t_ns: TimeNs
    seq: int
    job: str
    task: str
    start_ns: TimeNs
    end_ns: TimeNs
    response_ns: TimeNs
    deadline_ns: TimeNs
    missed: bool
    rec: int = -1

    @property
    def kind(self) -> Kind:
        return Kind.COMPLETE


class MissRecord(NamedTuple):
    t_ns: TimeNs
    seq: int
    job: str
    task: str
    release_ns: TimeNs
    deadline_ns: TimeNs
    state: str
    rec: int = -1

    @property
    def kind(self) -> Kind:
        return Kind.MISS


CHUNK_OVERRUN = "chunk"
"""The ``action`` of the overrun record of an lp-edf chunk past its chunk WCET (a whole
job's overrun records the task's ``on_overrun``)."""


class OverrunRecord(NamedTuple):
    t_ns: TimeNs
    seq: int
    job: str
    task: str
    exec_ns: TimeNs
    budget_ns: TimeNs
    action: str
    rec: int = -1

    @property
    def kind(self) -> Kind:
        return Kind.OVERRUN


class SkipRecord(NamedTuple):
    t_ns: TimeNs
    seq: int
    job: str
    task: str
    reason: str
    rec: int = -1

    @property
    def kind(self) -> Kind:
        return Kind.SKIP


class FaultRecord(NamedTuple):
    t_ns: TimeNs
    seq: int
    job: str
    task: str
    error: str
    rec: int = -1

    @property
    def kind(self) -> Kind:
        return Kind.FAULT


class AssumptionRecord(NamedTuple):
    """An observed host overhead above the bound the analysis charged for it."""

    t_ns: TimeNs
    seq: int
    job: str
    task: str
    what: str
    observed_ns: TimeNs
    bound_ns: TimeNs
    rec: int = -1

    @property
    def kind(self) -> Kind:
        return Kind.ASSUMPTION


class AdmissionRecord(NamedTuple):
    """An ``admit`` (``admitted``) or ``reject`` record."""

    t_ns: TimeNs
    task: str
    admitted: bool
    policy: str
    enforced: bool
    rationale: Mapping[str, Any]
    params: Mapping[str, Any] | None  # what admission read of the task (None: not recorded)
    gpu_memory_bytes: int | None
    rec: int = -1
    analysis_points: int | None = None  # the scenario's analysis budget (None: the default)

    @property
    def kind(self) -> Kind:
        return Kind.ADMIT if self.admitted else Kind.REJECT


class Interruption(NamedTuple):
    """Where a stopped run stopped: the instant it stopped at and the signal that stopped it."""

    at_ns: TimeNs
    signal: str


class EndRecord(NamedTuple):
    """The last record of a run's trace (see the module docstring)."""

    t_ns: TimeNs
    jobs: int
    interrupted: Interruption | None = None
    rec: int = -1

    @property
    def kind(self) -> Kind:
        return Kind.END


JobRecord = (
    ReleaseRecord | DispatchRecord | ChunkRecord | CompleteRecord | MissRecord | OverrunRecord
    | SkipRecord | FaultRecord | AssumptionRecord
)  # fmt: skip
Record = JobRecord | AdmissionRecord
"""A record of the run (what a replay takes)."""
TraceRecord = Record | EndRecord
"""Any line of a trace."""


# ------------------------------------------------------------------------------- admission

TASK_PARAMS = ("wcet_ns", "period_ns", "deadline_ns", "jitter_ns", "priority", "kernels_ns",
               "model", "batch", "input_shape", "memory_budget_bytes", "on_overrun")  # fmt: skip


def task_params(task: Any) -> dict[str, Any]:
    """What admission reads of a task (recorded with each verdict)."""
    out = {k: getattr(task, k) for k in TASK_PARAMS}
    for k in ("kernels_ns", "input_shape"):
        if out[k] is not None:
            out[k] = list(out[k])
    return out


def admission_records(
    admission: Admission, scenario: Scenario, *, enforced: bool
) -> list[AdmissionRecord]:
    """One ``admit`` or ``reject`` record per task, in list order: the verdict's rationale
    and the task parameters it was derived from (``aegis explain --verify`` re-runs it)."""
    out = []
    for v, task, b in zip(admission.tasks, scenario.tasks, admission.budgets, strict=True):
        task = effective_task(task, b)
        rationale = v.as_dict()
        del rationale["name"], rationale["admitted"]
        out.append(AdmissionRecord(0, v.name, v.admitted, admission.policy, enforced, rationale,
                                   task_params(task), scenario.gpu_memory_bytes,
                                   analysis_points=scenario.analysis_points))  # fmt: skip
    return out


def effective_task(task: Task, budget: TaskBudget) -> Task:
    """The task as its budget decided it (WCET and kernel chain written out): what the trace
    records, so that re-running admission on the record gives the same verdict."""
    import dataclasses

    kernels = budget.kernels_ns if len(budget.kernels_ns) > 1 else None
    return dataclasses.replace(task, wcet_ns=budget.wcet_ns, kernels_ns=kernels, measured=None)


def scenario_from_records(adm: Sequence[AdmissionRecord]) -> Scenario:
    """The admission problem the records state: tasks in list order, policy, device memory."""
    from aegis_core.model.policy import get_policy
    from aegis_core.model.scenario import Scenario, Task

    tasks = []
    for r in adm:
        p = dict(r.params or {})
        for k in ("kernels_ns", "input_shape"):
            if p.get(k) is not None:
                p[k] = tuple(p[k])
        tasks.append(Task(name=r.task, **p))
    return Scenario(
        name="trace", tasks=tuple(tasks), policy=get_policy(adm[0].policy),
        gpu_memory_bytes=adm[0].gpu_memory_bytes, overheads=_recorded_overheads(adm[0]),
        analysis_points=adm[0].analysis_points,
    )  # fmt: skip


def _recorded_overheads(r: AdmissionRecord) -> Any:
    """The overhead bounds an admission record says were charged (None: none)."""
    from aegis_core.model.overheads import Overhead, Overheads

    given = r.rationale.get("overheads_ns")
    if not isinstance(given, Mapping):
        return None
    try:
        return Overheads.of_bounds({w: int(given[w.value]) for w in Overhead})
    except (KeyError, TypeError, ValueError):
        raise InputError(f"record {r.rec} ({r.kind}): field 'overheads_ns': the four overhead "
                         "bounds expected") from None  # fmt: skip


# --------------------------------------------------------------------------------- encode


class Encoder:
    """Records → JSON lines, numbering them (``rec``) in the order they are encoded.

    Formatted by hand (the hot path of a traced run). Per unfinished job it keeps its
    ``"seq":…,"job":…,"task":…`` fragment (from its release) and its ready-set entry (from the
    first dispatch that lists it, reused only for that very entry object), so that a dispatch
    joins the entries of its ready set instead of formatting each again.
    """

    def __init__(self, start: int = 0) -> None:
        self.n = start
        """The ``rec`` of the next record."""
        self._who: dict[int, str] = {}
        self._entries: dict[int, tuple[ReadyLike, str]] = {}
        self._names: dict[str, str] = {}
        self._rule: tuple[str | None, tuple[str, ...], str] = (None, (), "")

    def line(self, r: TraceRecord) -> str:
        """One record as a JSON line (with its newline)."""
        n = self.n
        self.n = n + 1
        return _ENCODE[type(r)](self, r, n)

    def lines(self, records: Sequence[TraceRecord]) -> list[str]:
        enc = _ENCODE
        out = [enc[type(r)](self, r, n) for n, r in enumerate(records, self.n)]
        self.n += len(out)
        return out

    def _name(self, task: str) -> str:
        q = self._names.get(task)
        if q is None:
            q = self._names[task] = _q(task)
        return q

    def _job(self, seq: int, job: str, task: str) -> str:
        """``"seq":…,"job":…,"task":…``: made at the job's release, kept until its end (``seq``
        names one job in a stream, as the scheduler guarantees)."""
        who = self._who.get(seq)
        if who is None:
            who = f'"seq":{seq},"job":{_q(job)},"task":{self._name(task)}'
        return who

    def _done(self, seq: int) -> None:
        self._who.pop(seq, None)
        self._entries.pop(seq, None)

    def _entry(self, e: ReadyLike) -> str:
        prio = "" if e.priority is None else f',"priority":{e.priority}'
        name = self._names.get(e.task) or self._name(e.task)
        text = (f'{{"job":{_q(e.job)},"task":{name},"deadline_ns":'
                f'{e.deadline_ns},"release_ns":{e.release_ns},"seq":{e.seq}{prio}}}')  # fmt: skip
        self._entries[e.seq] = (e, text)
        return text

    def _release(self, r: ReleaseRecord, n: int) -> str:
        t, seq, job, task, deadline, release, prio, _ = r
        name = self._names.get(task) or self._name(task)
        who = self._who[seq] = f'"seq":{seq},"job":{_q(job)},"task":{name}'
        p = "" if prio is None else f',"priority":{prio}'
        return (f'{{"rec":{n},"t_ns":{t},"kind":"release",{who},"deadline_ns":{deadline},'
                f'"release_ns":{release}{p}}}\n')  # fmt: skip

    def _dispatch(self, r: DispatchRecord, n: int) -> str:
        t, seq, job, task, chunk, rule, key, ready, _, ahead = r
        last = self._rule
        if rule is not last[0] or key is not last[1]:
            last = self._rule = (rule, key, f'"rule":{_q(rule)},"key":{_list(key)}')
        cached = self._entries.get
        parts = []
        for e in ready:  # each entry formatted once, at the first dispatch that lists it
            hit = cached(e.seq)
            parts.append(hit[1] if hit is not None and hit[0] is e else self._entry(e))
        who = self._who.get(seq) or self._job(seq, job, task)
        ch = f',"chunk":{chunk}' if chunk else ""
        if ahead:
            ch += f',"decided_ahead_ns":{ahead}'
        return (f'{{"rec":{n},"t_ns":{t},"kind":"dispatch",{who}{ch},"rationale":{{{last[2]},'
                f'"ready":[{",".join(parts)}]}}}}\n')  # fmt: skip

    def _chunk(self, r: ChunkRecord, n: int) -> str:
        return (f'{{"rec":{n},"t_ns":{r.t_ns},"kind":"chunk",{self._job(r.seq, r.job, r.task)},'
                f'"next":{r.next},"of":{r.of},"run_ns":{r.run_ns}}}\n')  # fmt: skip

    def _complete(self, r: CompleteRecord, n: int) -> str:
        t, seq, job, task, start, end, response, deadline, missed, _ = r
        who = self._who.pop(seq, None) or self._job(seq, job, task)
        self._entries.pop(seq, None)
        return (f'{{"rec":{n},"t_ns":{t},"kind":"complete",{who},"start_ns":{start},"end_ns":'
                f'{end},"response_ns":{response},"deadline_ns":{deadline},"missed":'
                f'{"true" if missed else "false"}}}\n')  # fmt: skip

    def _miss(self, r: MissRecord, n: int) -> str:
        return (f'{{"rec":{n},"t_ns":{r.t_ns},"kind":"miss",{self._job(r.seq, r.job, r.task)},'
                f'"release_ns":{r.release_ns},"deadline_ns":{r.deadline_ns},'
                f'"state":{_q(r.state)}}}\n')  # fmt: skip

    def _overrun(self, r: OverrunRecord, n: int) -> str:
        who = self._job(r.seq, r.job, r.task)
        return (f'{{"rec":{n},"t_ns":{r.t_ns},"kind":"overrun",{who},"exec_ns":{r.exec_ns},'
                f'"budget_ns":{r.budget_ns},"action":{_q(r.action)}}}\n')  # fmt: skip

    def _skip(self, r: SkipRecord, n: int) -> str:
        who = self._job(r.seq, r.job, r.task)
        self._done(r.seq)
        return f'{{"rec":{n},"t_ns":{r.t_ns},"kind":"skip",{who},"reason":{_q(r.reason)}}}\n'

    def _fault(self, r: FaultRecord, n: int) -> str:
        who = self._job(r.seq, r.job, r.task)
        self._done(r.seq)
        return f'{{"rec":{n},"t_ns":{r.t_ns},"kind":"fault",{who},"error":{_q(r.error)}}}\n'

    def _assumption(self, r: AssumptionRecord, n: int) -> str:
        who = self._job(r.seq, r.job, r.task)
        return (f'{{"rec":{n},"t_ns":{r.t_ns},"kind":"assumption",{who},"what":{_q(r.what)},'
                f'"observed_ns":{r.observed_ns},"bound_ns":{r.bound_ns}}}\n')  # fmt: skip

    def _admission(self, r: AdmissionRecord, n: int) -> str:
        body: dict[str, Any] = {
            "rec": n, "t_ns": r.t_ns, "kind": str(r.kind), "task": r.task, "policy": r.policy,
            "enforced": r.enforced, "rationale": dict(r.rationale),
        }  # fmt: skip
        if r.params is not None:
            body["params"] = dict(r.params)
        body["gpu_memory_bytes"] = r.gpu_memory_bytes
        if r.analysis_points is not None:
            body["analysis_points"] = r.analysis_points
        return json.dumps(body, separators=(",", ":")) + "\n"

    def _end(self, r: EndRecord, n: int) -> str:
        i = r.interrupted
        stop = "null" if i is None else f'{{"at_ns":{i.at_ns},"signal":{_q(i.signal)}}}'
        return (f'{{"rec":{n},"t_ns":{r.t_ns},"kind":"end","jobs":{r.jobs},'
                f'"interrupted":{stop}}}\n')  # fmt: skip


def _list(items: Iterable[str]) -> str:
    return "[" + ",".join(map(_q, items)) + "]"


_ENCODE: dict[type, Callable[[Encoder, Any, int], str]] = {
    ReleaseRecord: Encoder._release,
    DispatchRecord: Encoder._dispatch,
    ChunkRecord: Encoder._chunk,
    CompleteRecord: Encoder._complete,
    MissRecord: Encoder._miss,
    OverrunRecord: Encoder._overrun,
    SkipRecord: Encoder._skip,
    FaultRecord: Encoder._fault,
    AssumptionRecord: Encoder._assumption,
    AdmissionRecord: Encoder._admission,
    EndRecord: Encoder._end,
}


def encode(r: TraceRecord, rec: int = 0) -> str:
    """One record as a JSON line numbered ``rec`` (a sink numbers its records itself)."""
    return Encoder(rec).line(r)


# --------------------------------------------------------------------------------- decode


def decode(line: str) -> TraceRecord:
    """A JSON line back into its record; an :class:`InputError` names what is wrong."""
    try:
        d = json.loads(line)
    except ValueError as exc:
        raise InputError(f"not a JSON record: {exc}") from None
    return from_dict(d)


def decode_all(records: Iterable[Mapping[str, Any] | TraceRecord]) -> list[Record]:
    """Parsed trace objects (or records already) as the run's records, in order: an end
    record is left out (:func:`is_end` finds it)."""
    out: list[Record] = []
    keep = out.append
    for r in records:
        x = r if isinstance(r, tuple) else from_dict(r)
        if type(x) is not EndRecord:
            keep(x)  # type: ignore[arg-type]
    return out


def is_end(r: Mapping[str, Any] | TraceRecord) -> bool:
    """An end record, parsed or typed (checked by kind only)."""
    return (r.kind if isinstance(r, tuple) else r.get("kind")) == Kind.END


def from_dict(d: Mapping[str, Any]) -> TraceRecord:
    """A parsed JSON object as its record, every field of its kind checked."""
    if type(d) is dict and "rec" in d:  # the fast path: a well-formed record, no per-field calls
        fast = _fast(d)
        if fast is not None:
            return fast
    if not isinstance(d, Mapping):
        raise InputError(f"a trace record is a JSON object, not {type(d).__name__}")
    if "rec" not in d:
        d = _upgrade(d)
    kind = d.get("kind")
    read = _DECODE.get(kind) if isinstance(kind, str) else None
    if read is None:
        raise InputError(f"record {_label(d.get('rec'))}: unknown kind {kind!r}")
    return read(_Fields(d, kind))  # type: ignore[arg-type]


_STR_FIELDS = frozenset(("job", "task", "state", "action", "reason", "error", "what"))
_Spec = tuple[
    type, Callable[[Mapping[str, Any]], tuple[Any, ...]], tuple[type, ...], Callable[..., Any]
]


def _fast_specs() -> dict[str, _Spec]:
    """Per kind of the flat job records: class, a getter of its fields (``rec`` last) and
    their types."""
    out: dict[str, _Spec] = {}
    for kind, cls in ((Kind.RELEASE, ReleaseRecord), (Kind.CHUNK, ChunkRecord),
                      (Kind.COMPLETE, CompleteRecord), (Kind.MISS, MissRecord),
                      (Kind.OVERRUN, OverrunRecord), (Kind.SKIP, SkipRecord),
                      (Kind.FAULT, FaultRecord), (Kind.ASSUMPTION, AssumptionRecord)):  # fmt: skip
        names = tuple(f for f in cls._fields if f not in ("priority", "rec"))
        types = tuple(str if f in _STR_FIELDS else bool if f == "missed" else int for f in names)
        types = (*types, int)  # rec last
        ints = [i for i, t in enumerate(types) if t is int]
        out[str(kind)] = (cls, itemgetter(*names, "rec"), types, itemgetter(*ints))
    return out


_FAST = _fast_specs()
_new = tuple.__new__
_DISPATCH_HEAD = itemgetter("t_ns", "seq", "job", "task", "rec", "rationale")
_DISPATCH_TYPES = (int, int, str, str, int, dict)
_ENTRY = itemgetter("job", "task", "deadline_ns", "release_ns", "seq")
_ENTRY_TYPES = (str, str, int, int, int)
_ENTRY_FIELDS = frozenset(Entry._fields)


def _in_range(numbers: Sequence[int]) -> bool:
    """Every number of a record is in ``[0, 2**63)`` (else the checking reader names it)."""
    return min(numbers) >= 0 and max(numbers) < _INT64


def _fast(d: dict[str, Any]) -> TraceRecord | None:
    """The record of a well-formed object; None: let the checking reader say what is wrong."""
    kind = d.get("kind")
    if type(kind) is not str:
        return None
    try:
        if kind == "dispatch":
            return _fast_dispatch(d)
        spec = _FAST.get(kind)
        if spec is None:
            return None
        cls, get, types, numbers = spec
        vals = get(d)
        if tuple(map(type, vals)) != types or not _in_range(numbers(vals)):
            return None
        if cls is ReleaseRecord:
            prio = d.get("priority")
            if prio is not None and type(prio) is not int:
                return None
            vals = (*vals[:-1], prio, vals[-1])
        r: TraceRecord = _new(cls, vals)
        return r
    except (KeyError, TypeError, AttributeError):
        return None


def _fast_dispatch(d: dict[str, Any]) -> DispatchRecord | None:
    head = _DISPATCH_HEAD(d)
    chunk, ahead = d.get("chunk", 0), d.get("decided_ahead_ns", 0)
    if tuple(map(type, head)) != _DISPATCH_TYPES or type(chunk) is not int \
            or type(ahead) is not int:  # fmt: skip
        return None
    t, seq, job, task, rec, rat = head
    if not _in_range((t, seq, rec, chunk, ahead)):
        return None
    rule, key, listed = rat["rule"], rat["key"], rat["ready"]
    if type(rule) is not str or type(key) is not list or type(listed) is not list:
        return None
    if set(map(type, key)) - {str} or not _ENTRY_FIELDS.issuperset(key):
        return None
    ready: list[ReadyLike] = []
    for e in listed:
        vals = _ENTRY(e)
        prio = e.get("priority")
        if tuple(map(type, vals)) != _ENTRY_TYPES or (prio is not None and type(prio) is not int):
            return None
        if not _in_range(vals[2:]):
            return None
        ready.append(_new(Entry, (*vals, prio)))
    return _new(DispatchRecord,
                (t, seq, job, task, chunk, rule, tuple(key), tuple(ready), rec, ahead))  # fmt: skip


def _upgrade(d: Mapping[str, Any]) -> dict[str, Any]:
    """A record of an old trace: its ``seq`` was the record number, ``job_seq`` the job's."""
    new = dict(d)
    new["rec"] = new.pop("seq", -1)
    if "job" in new:
        seq = new.pop("job_seq", None)
        if seq is None and new.get("kind") == "dispatch":
            ready = (new.get("rationale") or {}).get("ready") or [{}]
            seq = ready[0].get("seq") if isinstance(ready[0], Mapping) else None
        new["seq"] = -1 if seq is None else seq
    return new


_MISSING: Any = object()


def _label(rec: Any) -> str:
    """A record's number for a message (``repr`` of anything but an integer: one line)."""
    return str(rec) if type(rec) is int else repr(rec)


_INT64 = 1 << 63
_ANY = -_INT64  # the least of a field that may be negative (a priority)


class _Fields:
    """Reads the fields of one record, naming the record and field when one is wrong."""

    def __init__(
        self, d: Mapping[str, Any], kind: str, rec: Any = _MISSING, prefix: str = ""
    ) -> None:
        self.d = d
        self.kind = kind
        self.rec = d.get("rec") if rec is _MISSING else rec
        self.prefix = prefix

    def _bad(self, name: str, want: str, v: Any) -> InputError:
        got = "missing" if v is _MISSING else f"got {v!r}"
        field = f"{self.prefix}{name}"
        return InputError(
            f"record {_label(self.rec)} ({self.kind}): field {field!r}: {want} expected, {got}"
        )

    def time(self, name: str) -> int:
        """A required time > 0, at most the scenario's limit (2**62 ns)."""
        from aegis_core.model.types import MAX_TIME_NS

        v = self.d.get(name, _MISSING)
        if type(v) is not int or not 0 < v <= MAX_TIME_NS:
            raise self._bad(name, "an integer > 0 and <= 2**62", v)
        return v

    def num(self, name: str, d: Mapping[str, Any] | None = None, least: int = 0) -> int:
        """An integer in ``[least, 2**63)`` (times, counts and indices are never negative)."""
        v = (self.d if d is None else d).get(name, _MISSING)
        if type(v) is not int:
            raise self._bad(name, "an integer", v)
        if not least <= v < _INT64:
            raise self._bad(name, f"an integer >= {least} and < 2**63", v)
        return v

    def opt(self, name: str, d: Mapping[str, Any] | None = None, least: int = 0) -> int | None:
        v = (self.d if d is None else d).get(name)
        return None if v is None else self.num(name, d, least)

    def txt(self, name: str, d: Mapping[str, Any] | None = None) -> str:
        v = (self.d if d is None else d).get(name, _MISSING)
        if not isinstance(v, str):
            raise self._bad(name, "a string", v)
        return v

    def flag(self, name: str) -> bool:
        v = self.d.get(name, _MISSING)
        if type(v) is not bool:
            raise self._bad(name, "true or false", v)
        return v

    def obj(self, name: str, d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        v = (self.d if d is None else d).get(name, _MISSING)
        if not isinstance(v, Mapping):
            raise self._bad(name, "an object", v)
        return v

    def items(self, name: str, d: Mapping[str, Any]) -> Sequence[Any]:
        v = d.get(name, _MISSING)
        if not isinstance(v, list | tuple):
            raise self._bad(name, "a list", v)
        return v

    def job(self) -> tuple[int, int, int, str, str]:
        return (
            self.num("rec", least=-1),
            self.num("t_ns"),
            self.num("seq", least=-1),
            self.txt("job"),
            self.txt("task"),
        )


def _release(f: _Fields) -> ReleaseRecord:
    rec, t, seq, job, task = f.job()
    return ReleaseRecord(
        t,
        seq,
        job,
        task,
        f.num("deadline_ns"),
        f.num("release_ns"),
        f.opt("priority", least=_ANY),
        rec,
    )


def _dispatch(f: _Fields) -> DispatchRecord:
    rec, t, seq, job, task = f.job()
    rat = f.obj("rationale")
    key = tuple(f.items("key", rat))
    if not all(isinstance(k, str) and k in _ENTRY_FIELDS for k in key):
        raise f._bad("key", f"a list of ready-entry fields ({', '.join(Entry._fields)})", list(key))
    ready = []
    for e in f.items("ready", rat):
        if not isinstance(e, Mapping):
            raise f._bad("ready", "a list of objects", e)
        ready.append(
            Entry(
                f.txt("job", e),
                f.txt("task", e),
                f.num("deadline_ns", e),
                f.num("release_ns", e),
                f.num("seq", e),
                f.opt("priority", e, _ANY),
            )
        )
    chunk = f.opt("chunk") or 0
    ahead = f.opt("decided_ahead_ns") or 0
    return DispatchRecord(t, seq, job, task, chunk, f.txt("rule", rat), key, tuple(ready), rec,
                          ahead)  # fmt: skip


def _chunk(f: _Fields) -> ChunkRecord:
    rec, t, seq, job, task = f.job()
    return ChunkRecord(t, seq, job, task, f.num("next"), f.num("of"), f.num("run_ns"), rec)


def _complete(f: _Fields) -> CompleteRecord:
    rec, t, seq, job, task = f.job()
    return CompleteRecord(
        t,
        seq,
        job,
        task,
        f.num("start_ns"),
        f.num("end_ns"),
        f.num("response_ns"),
        f.num("deadline_ns"),
        f.flag("missed"),
        rec,
    )


def _miss(f: _Fields) -> MissRecord:
    rec, t, seq, job, task = f.job()
    return MissRecord(
        t, seq, job, task, f.num("release_ns"), f.num("deadline_ns"), f.txt("state"), rec
    )


def _overrun(f: _Fields) -> OverrunRecord:
    rec, t, seq, job, task = f.job()
    return OverrunRecord(
        t, seq, job, task, f.num("exec_ns"), f.num("budget_ns"), f.txt("action"), rec
    )


def _skip(f: _Fields) -> SkipRecord:
    rec, t, seq, job, task = f.job()
    return SkipRecord(t, seq, job, task, f.txt("reason"), rec)


def _fault(f: _Fields) -> FaultRecord:
    rec, t, seq, job, task = f.job()
    return FaultRecord(t, seq, job, task, f.txt("error"), rec)


def _assumption(f: _Fields) -> AssumptionRecord:
    rec, t, seq, job, task = f.job()
    return AssumptionRecord(
        t, seq, job, task, f.txt("what"), f.num("observed_ns"), f.num("bound_ns"), rec
    )


def _admission(f: _Fields) -> AdmissionRecord:
    from aegis_core.model.policy import POLICIES

    policy = f.txt("policy")
    if policy not in POLICIES:
        raise f._bad("policy", f"one of {', '.join(POLICIES)}", policy)
    return AdmissionRecord(
        f.num("t_ns"),
        f.txt("task"),
        f.kind == "admit",
        policy,
        f.flag("enforced"),
        f.obj("rationale"),
        _params(f) if f.d.get("params") is not None else None,
        f.opt("gpu_memory_bytes"),
        f.num("rec", least=-1),
        f.opt("analysis_points", least=1),
    )


def _params(f: _Fields) -> Mapping[str, Any]:
    """An admission record's ``params``, checked as the scenario checks a task (ns): a task
    no scenario can state is a malformed record. A WCET above the deadline is no such task
    (a profile can measure one: admission rejects it, "never feasible")."""
    from aegis_core.model.scenario import OnOverrun
    from aegis_core.model.types import MAX_TIME_NS

    p = f.obj("params")
    unknown = sorted(map(str, set(p) - set(TASK_PARAMS)))
    if unknown:
        raise f._bad(f"params.{unknown[0]}", f"one of {', '.join(TASK_PARAMS)}", unknown[0])
    sub = _Fields(p, f.kind, f.d.get("rec"), "params.")
    period = sub.time("period_ns")
    sub.time("deadline_ns")
    sub.time("wcet_ns")
    if sub.opt("jitter_ns") is not None and p["jitter_ns"] >= period:
        raise sub._bad("jitter_ns", f"an integer below the period {period}", p["jitter_ns"])
    sub.opt("priority", least=_ANY)
    sub.opt("batch", least=1)
    sub.opt("memory_budget_bytes")
    for name, least in (("kernels_ns", 1), ("input_shape", 1)):
        v = p.get(name)
        ok = v is None or (isinstance(v, list) and v != [] and all(
            type(x) is int and least <= x <= MAX_TIME_NS for x in v))  # fmt: skip
        if not ok:
            raise sub._bad(name, f"a list of integers >= {least}", v)
    model = p.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise sub._bad("model", "a model name", model)
    if p.get("on_overrun", "continue") not in set(OnOverrun):
        raise sub._bad("on_overrun", " or ".join(map(repr, map(str, OnOverrun))), p["on_overrun"])
    return p


def _end(f: _Fields) -> EndRecord:
    stop = f.d.get("interrupted")
    at: Interruption | None = None
    if stop is not None:
        got = f.obj("interrupted")
        at = Interruption(f.num("at_ns", got), f.txt("signal", got))
    return EndRecord(f.num("t_ns"), f.num("jobs"), at, f.num("rec", least=-1))


_DECODE: dict[str, Callable[[_Fields], TraceRecord]] = {
    Kind.ADMIT: _admission,
    Kind.REJECT: _admission,
    Kind.RELEASE: _release,
    Kind.DISPATCH: _dispatch,
    Kind.CHUNK: _chunk,
    Kind.COMPLETE: _complete,
    Kind.MISS: _miss,
    Kind.OVERRUN: _overrun,
    Kind.SKIP: _skip,
    Kind.FAULT: _fault,
    Kind.ASSUMPTION: _assumption,
    Kind.END: _end,
}


def as_dict(r: TraceRecord) -> dict[str, Any]:
    """A record as the JSON object it is written as."""
    out: dict[str, Any] = json.loads(encode(r, r.rec))
    return out
