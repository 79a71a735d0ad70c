"""``aegis explain``: why each decision of a run was taken, from its trace alone.

:func:`verify` re-derives every decision from what its record carries: each dispatch from its
recorded ready set under the recorded policy's rule (the winner must be the entry with the
smallest key, listed first, released and unfinished at that instant; one decided ahead,
``decided_ahead_ns`` before it, also under a policy that decides ahead, at the end of the job
it was chained behind, taken while that job ran, with no job released in between unless a
``dispatch-ahead`` assumption record says so: :class:`_Ahead`), each admission verdict by
re-running the admission analysis on the task parameters the ``admit`` / ``reject`` records
carry (an ``assumption`` record is no decision: it must name a released job and a broken
overhead bound, a ``dispatch-ahead`` one a broken ahead decision); every other record is
checked against the ones before it and the recorded task parameters
(:mod:`~aegis_core.record.consistency`: times, deadlines, releases, chunks, completions and
their flags). A malformed record (:func:`records_of`) is an InputError naming the file, line,
record and field. :func:`explain_job` tells one job's story in plain language (a dispatch
decided ahead: how long before, behind which job), ending, for a job above its bound, with
the overruns and broken assumptions in its busy window
(:mod:`~aegis_core.record.attribution`) or, with none, the analysis bug it is. Both read the
run through one :class:`~aegis_core.record.replay.Replay`; records are dicts as parsed
(:func:`load`) or typed (:mod:`~aegis_core.record.schema`).

A trace is complete when its last record is the ``end`` record every run writes: one without
(a hard kill, a truncated file) is *incomplete*; :func:`verify` still checks what it holds and
says so (``Verification.end`` None). A last line cut mid-record (no newline, not JSON: the
write a hard kill interrupted) is dropped by :func:`load` and counted in
``Verification.cut``; such a trace has no end record, so it is incomplete too. A bad line
anywhere else is an input error.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from aegis_core.model.errors import InputError, one_line
from aegis_core.model.types import TimeNs, fmt_ms
from aegis_core.record.attribution import Attribution, attribute_trace
from aegis_core.record.consistency import Consistency, exact_ms, unfinished
from aegis_core.record.replay import JobState, Replay, Run
from aegis_core.record.schema import (
    CHUNK_OVERRUN,
    AdmissionRecord,
    AssumptionRecord,
    CompleteRecord,
    DispatchRecord,
    EndRecord,
    Entry,
    FaultRecord,
    MissRecord,
    OverrunRecord,
    Record,
    ReleaseRecord,
    SkipRecord,
    TraceRecord,
    from_dict,
    key_of,
    scenario_from_records,
)
from aegis_core.run.ahead import AHEAD_BROKEN


@dataclass(frozen=True)
class Mismatch:
    rec: int | None
    """The record's number (``rec``); None: the trace as a whole."""
    what: str
    message: str
    line: int | None = None
    """The record's line in its file (None: not read from a file, or the trace as a whole)."""
    pos: int = field(default=-1, compare=False, repr=False)
    """The record's position in the records verified (-1: the trace as a whole)."""

    def __str__(self) -> str:
        where = f"record {self.rec}" if self.rec is not None else "trace"
        if self.line is not None:
            where = f"line {self.line}, {where}"
        return one_line(f"{where} ({self.what}): {self.message}")


@dataclass
class Verification:
    dispatches: int = 0
    ahead: int = 0
    """The dispatches decided ahead (``decided_ahead_ns``), each checked safe (:class:`_Ahead`)."""
    ahead_broken: int = 0
    """Of those, the ones a release fell before, as their ``dispatch-ahead`` assumption
    record says."""
    admissions: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    end: EndRecord | None = None
    """The trace's end record; None: the trace is incomplete (cut short)."""
    cut: bool = False
    """The trace's last line was cut mid-record (:class:`Trace`)."""

    @property
    def ok(self) -> bool:
        """Every decision the trace holds re-derives (complete or not: see :attr:`end`)."""
        return not self.mismatches

    @property
    def complete(self) -> bool:
        return self.end is not None


class Trace(list[dict[str, Any]]):
    """The records of a trace file as parsed; ``cut``: its last line was cut mid-record
    (dropped); ``path`` the file, ``lines`` each record's line number in it."""

    cut = False
    path: str | None = None
    lines: Sequence[int] = ()


MAX_LINE = 1 << 24
"""The longest trace line read (16 MiB: a dispatch listing some 100 000 ready jobs); a longer
one is bad input, so memory stays bounded by the trace's records."""

_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "true or false", type(None): "null"}  # fmt: skip


def load(path: str | Path) -> Trace:
    """The records of a ``trace.jsonl`` (or of a results directory holding one); a last line
    cut mid-record is dropped (``Trace.cut``). A line that is not a JSON object (or longer
    than :data:`MAX_LINE`, or not UTF-8) is an InputError naming the file and line."""
    p = _trace_file(Path(path))
    out = Trace()
    out.path, lines = str(p), []
    for n, raw in trace_lines(p):
        last = not raw.endswith(b"\n")  # only the file's last line lacks its newline
        try:
            obj = _parse(raw)
        except ValueError as exc:
            if last:  # the write a kill cut short
                out.cut = True
                break
            raise InputError(f"{p}: not a trace: line {n}: {exc}") from None
        if obj is _BLANK:
            continue
        if type(obj) is not dict:
            raise InputError(f"{p}: line {n}: a trace record is a JSON object, not "
                             f"{_JSON_TYPES.get(type(obj), type(obj).__name__)}")  # fmt: skip
        out.append(obj)
        lines.append(n)
    out.lines = lines
    return out


def _open(p: Path) -> Any:
    """``p`` opened for reading, a regular file only (never blocks on a FIFO)."""
    from aegis_core.model.files import open_user_file

    return open_user_file(p, "trace file")


def trace_lines(p: Path) -> Iterator[tuple[int, bytes]]:
    """The trace file ``p``'s lines, numbered from 1, read as a stream (a regular file only,
    never blocking on a FIFO); a line longer than :data:`MAX_LINE` is an InputError naming
    the file and line, so memory stays bounded by the longest record."""
    with _open(p) as f:
        n = 0
        while raw := f.readline(MAX_LINE + 1):
            n += 1
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                raise InputError(f"{p}: line {n}: longer than {MAX_LINE >> 20} MiB: not a trace")
            yield n, raw


_BLANK: Any = object()


def _parse(raw: bytes) -> Any:
    """One line's JSON value (:data:`_BLANK` for a blank line); ValueError says what is wrong."""
    import json

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {raw[exc.start]:#04x} at column "
                         f"{exc.start + 1})") from None  # fmt: skip
    if not text.strip():
        return _BLANK
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _trace_file(p: Path) -> Path:
    """The trace file ``p`` names: itself, or a results directory's ``trace.jsonl``."""
    if not p.is_dir():
        return p
    if (p / "trace.jsonl").exists() or not (p / "summary.json").exists():
        return p / "trace.jsonl"
    raise InputError(f"{p}: the run was made without a trace (--no-trace): nothing to explain; "
                     "run it again without --no-trace")  # fmt: skip


def records_of(records: Sequence[Mapping[str, Any] | TraceRecord]) -> list[TraceRecord]:
    """Every record (the end record too) decoded, in order; a malformed one is an InputError
    naming the file and line (of a :class:`Trace`) and the record and field."""
    lines = getattr(records, "lines", ())
    out: list[TraceRecord] = []
    for i, r in enumerate(records):
        try:
            out.append(r if isinstance(r, tuple) else from_dict(r))
        except InputError as exc:
            raise InputError(f"{_where(records, lines, i)}{exc}") from None
    return out


def _where(records: Any, lines: Sequence[int], i: int) -> str:
    path = getattr(records, "path", None)
    return f"{path}: line {lines[i]}: " if path is not None and i < len(lines) else ""


def _policy_of(records: Sequence[TraceRecord], where: str = "") -> str:
    for r in records:
        if isinstance(r, AdmissionRecord):
            return r.policy
    empty = "an empty trace: no records" if not records else "the trace has no admission records"
    raise InputError(f"{where}{empty}: nothing names its policy")


def verify(records: Sequence[Mapping[str, Any] | TraceRecord]) -> Verification:
    """Re-derive every dispatch and every admission, check every record against the others
    and the recorded task parameters (:mod:`~aegis_core.record.consistency`), and the end
    record against the run (``Verification.end``: None for an incomplete trace); the
    mismatches in trace order. A malformed record is an InputError."""
    typed = records_of(records)
    out = Verification(cut=bool(getattr(records, "cut", False)))
    path = getattr(records, "path", None)
    policy = _policy_of(typed, f"{path}: " if path else "")
    lines = getattr(records, "lines", ())
    found = _Found(out, lines)
    rp, check = _verify_run(typed, policy, found, _Ahead(typed))
    _verify_admissions(rp.admissions, found, [i for i, r in enumerate(typed)
                                              if type(r) is AdmissionRecord])  # fmt: skip
    _verify_end(typed, rp, check, found)
    if not out.mismatches:  # else the edit that shifted the numbers is named by what it broke
        _verify_numbers(typed, found)
    out.mismatches.sort(key=lambda m: m.pos)
    return out


def _verify_numbers(typed: Sequence[TraceRecord], found: _Found) -> None:
    """A record's ``rec`` is its number in the trace (0, 1, 2, …; -1 in an old trace): a
    record added, removed, moved or renumbered shows here (docs/CONTRACTS.md §trace)."""
    for pos, r in enumerate(typed):
        if r.rec >= 0 and r.rec != pos:
            what = "end" if type(r) is EndRecord else (
                f"admission of {r.task}" if isinstance(r, AdmissionRecord) else
                f"{r.kind} of {getattr(r, 'job', '?')}")  # fmt: skip
            found(pos, r.rec, what, f"numbered {r.rec}, but it is record {pos} of the trace")
            return


class _Found:
    """Collects the mismatches, each at its record's position (and line, from a file)."""

    def __init__(self, out: Verification, lines: Sequence[int]) -> None:
        self.out, self.lines = out, lines

    def __call__(self, pos: int, rec: int | None, what: str, message: str) -> None:
        line = self.lines[pos] if 0 <= pos < len(self.lines) else None
        self.out.mismatches.append(Mismatch(rec, what, message, line, pos))


def _verify_end(typed: Sequence[TraceRecord], rp: Replay, check: Consistency,
                found: _Found) -> None:  # fmt: skip
    """The end record is the last one, alone, and agrees with the run: the jobs it counts are
    the releases, no record is later than its instant, a stop is at its instant, and a run
    that was not stopped ended every job it released."""
    at = [i for i, r in enumerate(typed) if type(r) is EndRecord]
    if not at:
        return
    end = typed[at[-1]]
    assert isinstance(end, EndRecord)
    out, pos = found.out, at[-1]
    out.end = end

    def bad(why: str) -> None:
        found(pos, end.rec, "end", why)

    if at != [len(typed) - 1]:
        bad("is not the trace's last record, alone" if len(at) == 1 else "is not the only one")
    released = sum(js.release is not None for js in rp.jobs.values())
    if end.jobs != released:
        bad(f"counts {end.jobs} jobs, the trace released {released}")
    if end.t_ns < check.latest:
        bad(f"the run's last instant {_ms(end.t_ns)} is before a record at {_ms(check.latest)}")
    i = end.interrupted
    if i is not None and i.at_ns != end.t_ns:
        bad(f"interrupted at {_ms(i.at_ns)}, not at its instant {_ms(end.t_ns)}")
    left = unfinished(rp) if i is None else []
    if left:
        bad(f"the run was not stopped, yet {len(left)} released jobs never ended "
            f"(no complete, fault or skip), the first {left[0]}")  # fmt: skip


def _verify_run(
    typed: Sequence[TraceRecord], policy: str, found: _Found, ahead: _Ahead
) -> tuple[Replay, Consistency]:
    """Replay the run and check each record against the state just before it: each dispatch
    against the ready set its releases and chunk boundaries make and the running set (not
    only against what it recorded), one decided ahead also against the releases of the
    whole trace (:class:`_Ahead`), every record against the others
    (:class:`~aegis_core.record.consistency.Consistency`); one mismatch a record at most."""
    from aegis_core.model.policy import get_policy

    pol = get_policy(policy)
    rp, check, out = Replay(), Consistency(), found.out
    for pos, r in enumerate(typed):
        if type(r) is EndRecord:
            continue
        assert not isinstance(r, EndRecord)
        why = check.problem(r, rp, typed[pos + 1] if pos + 1 < len(typed) else None)
        if isinstance(r, DispatchRecord):  # the decision's own check says it best
            out.dispatches += 1
            if r.decided_ahead_ns:
                out.ahead += 1
                out.ahead_broken += ahead.excused(r)
            why = _dispatch_problem(r, pol, rp, ahead, why is None) or why
        elif isinstance(r, AssumptionRecord):
            why = _assumption_problem(r, rp, ahead) or why
        if why:
            what = f"admission of {r.task}" if isinstance(r, AdmissionRecord) else \
                f"{r.kind} of {r.job}"  # fmt: skip
            found(pos, r.rec, what, why)
        rp.apply(r)
    return rp, check


def _assumption_problem(r: AssumptionRecord, rp: Replay, ahead: _Ahead) -> str | None:
    """An ``assumption`` record is no decision: it must name a released job, a known
    overhead figure (or a broken ahead decision: :meth:`_Ahead.broken_problem`) and an
    observed value above the bound."""
    from aegis_core.model.overheads import Overhead

    js = rp.jobs.get(r.job)
    if js is None or js.release is None:
        return "names a job that was not released"
    if r.task != js.task:
        return f"names task {r.task!r}, the job's release says {js.task!r}"
    if r.what == AHEAD_BROKEN:
        why = ahead.broken_problem(r)
        if why is not None:
            return why
    elif r.what not in {w.value for w in Overhead}:
        return f"unknown overhead {r.what!r}"
    if r.observed_ns <= r.bound_ns:
        return f"observed {_ms(r.observed_ns)} is within the bound {_ms(r.bound_ns)}"
    return None


class _Ahead:
    """What checking the decisions taken ahead needs from the whole trace (docs/THEORY.md
    §ahead): every job's release instant, sorted (a wall-clock engine may hand a release over
    after the dispatch it fell before), each dispatch decided ahead, and each
    ``dispatch-ahead`` assumption record (it comes after its dispatch), by job and instant."""

    def __init__(self, typed: Sequence[TraceRecord]) -> None:
        released: list[ReleaseRecord] = []
        self.dispatches: dict[tuple[str, TimeNs], DispatchRecord] = {}
        self.broken: set[tuple[int, str, TimeNs, TimeNs]] = set()
        for r in typed:
            if isinstance(r, ReleaseRecord):
                released.append(r)
            elif isinstance(r, DispatchRecord):
                if r.decided_ahead_ns:
                    self.dispatches[r.job, r.t_ns] = r
            elif isinstance(r, AssumptionRecord) and r.what == AHEAD_BROKEN:
                self.broken.add((r.seq, r.job, r.t_ns, r.observed_ns))
        released.sort(key=_release_ns)  # in trace order but the late ones: nearly sorted
        self.at = [r.release_ns for r in released]
        self.released = released

    def released_in(self, r: DispatchRecord) -> tuple[TimeNs, str] | None:
        """The first job released in ``(t - decided_ahead_ns, t]``, between the decision
        ``r`` took ahead and its effect at ``t``, that ranks before the job it dispatched
        under its recorded key (its instant and id): the one job the policy would have
        picked instead. A job released in between but ranked after it changes nothing (the
        rule of docs/THEORY.md §ahead allows it). None: none."""
        t, key = r.t_ns, r.key
        best = _rank(r.ready[0], key) if r.ready else None
        i = bisect_right(self.at, t - r.decided_ahead_ns)
        at, released = self.at, self.released
        while i < len(at) and at[i] <= t:
            if best is None or _rank(released[i].entry, key) < best:
                return at[i], released[i].job
            i += 1
        return None

    def excused(self, r: DispatchRecord) -> bool:
        """A ``dispatch-ahead`` assumption record names the dispatch ``r`` (its job and
        instant) and how long before it it was decided: a release fell in between."""
        return (r.seq, r.job, r.t_ns, r.decided_ahead_ns) in self.broken

    def interlopers(self, r: DispatchRecord, better: Sequence[Entry]) -> bool:
        """The jobs ``better`` (ranked before the job ``r`` dispatched) were all released
        between its decision, taken ahead, and its effect, as a ``dispatch-ahead``
        assumption record says: they came too late for a decision already on the device."""
        at = r.t_ns - r.decided_ahead_ns
        return bool(r.decided_ahead_ns) and all(e.release_ns > at for e in better) \
            and self.excused(r)  # fmt: skip

    def problem(self, r: DispatchRecord, pol: Any, rp: Replay) -> str | None:
        """A dispatch decided ahead: under a policy that decides ahead, at the end of the
        job it was chained behind (the run that ended just before, at its instant), taken
        while that job ran, and with no job released between the decision and its effect
        unless a ``dispatch-ahead`` assumption record says so."""
        a, t = r.decided_ahead_ns, r.t_ns

        def said() -> str:  # (built only for a bad one: most are fine)
            return f"decided {exact_ms(a)} ahead"

        if not pol.decides_ahead:
            return f"{said()}, but {pol.name} never decides ahead"
        if a < 0:
            return f"decided_ahead_ns {a} is negative"
        if a > t:
            return f"{said()} of its effect at {exact_ms(t)}: before the run began"
        held = _chained_behind(rp, t)
        if held is None:
            return (
                f"{said()}, but no job ended at {exact_ms(t)} just before it: a decision "
                "taken ahead takes effect at the end of the job it was chained behind"
            )
        if t - a < held.dispatched_ns:
            return (f"{said()}, at {exact_ms(t - a)}, before {held.job} (which it was chained "
                    f"behind) was dispatched at {exact_ms(held.dispatched_ns)}")  # fmt: skip
        if r.ready and t - a < r.ready[0].release_ns:
            return (f"{said()}, at {exact_ms(t - a)}, before its own release at "
                    f"{exact_ms(r.ready[0].release_ns)}")  # fmt: skip
        hit = self.released_in(r)
        if hit is not None and not self.excused(r):
            return (f"{said()}, but {hit[1]}, ranked before it, was released at "
                    f"{exact_ms(hit[0])}, between the "
                    f"decision at {exact_ms(t - a)} and its effect at {exact_ms(t)}, and no "
                    f"{AHEAD_BROKEN!r} assumption record says so")  # fmt: skip
        return None

    def broken_problem(self, r: AssumptionRecord) -> str | None:
        """A ``dispatch-ahead`` assumption record: it names a dispatch of its job decided
        ahead, at that dispatch's instant, ``observed_ns`` its ``decided_ahead_ns``, and a
        job really was released in between."""
        d = self.dispatches.get((r.job, r.t_ns))
        if d is None:
            return f"no dispatch of {r.job} decided ahead took effect at {exact_ms(r.t_ns)}"
        if d.seq != r.seq:
            return f"seq {r.seq}, its dispatch says {d.seq}"
        if r.observed_ns != d.decided_ahead_ns:
            return (
                f"observed {exact_ms(r.observed_ns)}, but its dispatch at "
                f"{exact_ms(d.t_ns)} was decided {exact_ms(d.decided_ahead_ns)} ahead"
            )
        if self.released_in(d) is None:
            return (f"no job ranked before {d.job} was released between the decision at "
                    f"{exact_ms(d.t_ns - d.decided_ahead_ns)} and its effect at "
                    f"{exact_ms(d.t_ns)}: nothing broke it")  # fmt: skip
        return None


_release_ns = attrgetter("release_ns")


def _chained_behind(rp: Replay, t_ns: TimeNs) -> Run | None:
    """The run that ended at ``t_ns``, the last to end in ``rp`` (the job a decision taken
    ahead and in effect at ``t_ns`` was chained behind); None: none ended at ``t_ns``."""
    run = rp.runs[-1] if rp.runs else None
    return run if run is not None and run.end_ns == t_ns else None


def _dispatch_problem(
    r: DispatchRecord, pol: Any, rp: Replay, ahead: _Ahead, timely: bool = True
) -> str | None:
    """What is wrong with the decision ``r`` (its ready set, its winner, the slot it took;
    one decided ahead: :meth:`_Ahead.problem`, when its times are consistent, ``timely``,
    else those say it better)."""
    listed = [Entry.of(e) for e in r.ready]
    key = pol.key_fields
    if r.rule != pol.rule:
        return f"recorded rule {r.rule!r} is not the policy's {pol.rule!r}"
    if r.key != key:
        return f"recorded key {list(r.key)!r} is not the policy's {list(key)!r}"
    if not listed or listed[0].job != r.job:
        return "the dispatched job is not the first entry of its ready set"
    names = [e.job for e in listed]
    ready = {job: js.entry for job, js in rp.ready.items()}
    if sorted(names) != sorted(ready) or len(set(names)) != len(names):
        missing = sorted(set(ready) - set(names))
        extra = sorted(set(names) - set(ready))
        return (f"the recorded ready set is not the jobs released and not started: "
                f"missing {missing}, extra {extra}")  # fmt: skip
    for e in listed:
        released = ready[e.job]
        if e != released:
            bad = [f for f, a, b in zip(Entry._fields, e, released or (), strict=False) if a != b]
            return f"ready entry {e.job} differs from its release record in {', '.join(bad)}"
    if (
        r.decided_ahead_ns
        and timely
        and (why := _slot_problem(pol, rp) or ahead.problem(r, pol, rp))
    ):
        return why
    keys = [key_of(e, key) for e in listed]
    try:
        best = min(range(len(listed)), key=keys.__getitem__)
    except TypeError:  # a priority missing (the release's check says so): ranked last
        best = min(range(len(listed)), key=lambda i: _rank(listed[i], key))
    if best != 0 and not ahead.interlopers(
        r, [e for e in listed if _rank(e, key) < _rank(listed[0], key)]
    ):
        return (
            f"by {', '.join(key)} the winner is {listed[best].job} {list(keys[best])}, "
            f"not {listed[0].job} {list(keys[0])}"
        )
    return _slot_problem(pol, rp)


def _slot_problem(pol: Any, rp: Replay) -> str | None:
    """A dispatch while a job holds the only slot (of a policy that runs one job at a time)."""
    if not pol.concurrent and rp.running:
        return f"dispatched while {sorted(rp.running)[0]} still held the only slot"
    return None


def _verify_admissions(adm: Sequence[AdmissionRecord], found: _Found, at: Sequence[int]) -> None:
    """Each verdict re-derived from the recorded task parameters; one policy, one record a
    task."""
    if not adm:
        return
    if any(r.params is None for r in adm):
        found(-1, None, "admission", "admission records lack task params")
        return
    names = [r.task for r in adm]
    for i, r in enumerate(adm):
        if r.policy != adm[0].policy or r.task in names[:i]:
            why = (
                f"policy {r.policy}, the first admission record's is {adm[0].policy}"
                if r.policy != adm[0].policy
                else "a second admission record of the task"
            )
            found(at[i], r.rec, f"admission of {r.task}", why)
            return
    from aegis_core.analysis.admission import PROVENANCE, admit

    try:
        verdicts = admit(scenario_from_records(adm)).tasks
    except (InputError, TypeError, ValueError) as exc:  # a mismatch, not a crash
        found(at[0], adm[0].rec, "admission", str(exc))
        return
    out = found.out
    for i, (r, v) in enumerate(zip(adm, verdicts, strict=True)):
        out.admissions += 1
        skip = ("name", "admitted", *PROVENANCE)
        want = {"admitted": v.admitted, **{k: x for k, x in v.as_dict().items() if k not in skip}}
        got = {"admitted": r.admitted, **{k: x for k, x in r.rationale.items() if k not in skip}}
        if got != want:
            gone = "(none)"
            diff = sorted(k for k in set(got) | set(want)
                          if k not in got or k not in want or got[k] != want[k])  # fmt: skip
            k = diff[0]
            why = f"{k}: recorded {got.get(k, gone)!r}, re-derived {want.get(k, gone)!r}"
            found(at[i], r.rec, f"admission of {r.task}", why)


def report(records: Sequence[Mapping[str, Any] | TraceRecord]) -> tuple[int, str]:
    """``aegis explain --verify``'s exit status and text (docs/CONTRACTS.md §cli): 0
    ``verified: …`` (and where a stopped run stopped), 1 ``verify failed: …`` naming the first
    wrong record, or ``incomplete trace: …``. A malformed record raises InputError (2)."""
    v = verify(records)
    held = (f"all {v.dispatches} dispatches and {v.admissions} admission verdicts re-derive "
            f"from the trace{_ahead_count(v)}")  # fmt: skip
    wrong = ""
    if v.mismatches:
        path = getattr(records, "path", None)
        n = len(v.mismatches)
        wrong = one_line(f"verify failed: {f'{path}: ' if path else ''}{v.mismatches[0]} ({n} "
                          f"problem{'s' if n > 1 else ''} in {v.dispatches} dispatches and "
                          f"{v.admissions} admission verdicts)")  # fmt: skip
    if v.end is None:  # cut short: a hard kill, a truncated file
        cut = "its last line is cut mid-record and dropped; " if v.cut else ""
        return 1, (f"incomplete trace: no end record ({cut}the run was cut short); what it "
                   f"holds: {wrong or held}")  # fmt: skip
    if wrong:
        return 1, wrong
    stop = v.end.interrupted
    if stop is None:
        return 0, f"verified: {held}"
    return 0, (f"verified: {held}\ninterrupted at {_ms(stop.at_ns)} ({one_line(stop.signal)}): "
               "the trace holds the run up to then")  # fmt: skip


def _ahead_count(v: Verification) -> str:
    """``, 812 decided ahead`` (and how many of them a release broke), or nothing."""
    if not v.ahead:
        return ""
    n = v.ahead_broken
    late = (f" ({n} of them broken by a release before the effect, each with its "
            f"{AHEAD_BROKEN!r} assumption record)" if n else "")  # fmt: skip
    return f", {v.ahead} decided ahead{late}"


# ----------------------------------------------------------------------------- the story


def _ms(ns: int | None) -> str:
    return fmt_ms(ns, " ms")


def explain_job(records: Sequence[Mapping[str, Any] | TraceRecord], job: str) -> str:
    """One job's account: release, deadline, what blocked it, whom it beat or lost to (and
    by which key), how it ended, and why its task was admitted; for a job of a task admission
    rejected (and so never released), the rejection."""
    typed = records_of(records)
    run: list[Record] = [r for r in typed if not isinstance(r, EndRecord)]
    rp, behind = _replay(run)
    js = rp.jobs.get(job)
    rel = js.release if js is not None else None
    if js is None or rel is None:
        return _not_released(rp, job)
    rel_dl = rel.deadline_ns - rel.release_ns
    lines = [f"{job} (task {js.task}): released at {_ms(rel.release_ns)}, absolute deadline "
             f"{_ms(rel.deadline_ns)} (relative {_ms(rel_dl)})"]  # fmt: skip
    lines += _admission_story(rp.admission(js.task))
    lines += _blocking_story(js, _concurrent(rp.policy))
    lines += _competition_story(js, behind)
    lines += _end_story(js)
    lines += _attribution_story(next((a for a in attribute_trace(run) if a.job == job), None))
    return "\n".join(one_line(line) for line in lines)


def _replay(run: Sequence[Record]) -> tuple[Replay, dict[tuple[str, int], str]]:
    """The run replayed, and for each dispatch decided ahead (by job and chunk) the job it
    was chained behind (:func:`_chained_behind`)."""
    rp, behind = Replay(), {}
    for r in run:
        if type(r) is DispatchRecord and r.decided_ahead_ns:
            held = _chained_behind(rp, r.t_ns)
            if held is not None:
                behind[r.job, r.chunk] = held.job
        rp.apply(r)
    return rp, behind


def _not_released(rp: Replay, job: str) -> str:
    """The story of a job the trace never released: a job of a task admission rejected (its
    jobs are recorded ``rejected`` in jobs.csv, none released); else an InputError with the
    jobs it may have meant."""
    task, _, k = job.rpartition("#")
    adm = rp.admission(task)
    if adm is not None and not adm.admitted and adm.enforced and k.isdigit():
        return "\n".join(one_line(line) for line in [
            f"{job} (task {task}): never released: admission rejected its task, so none of its "
            "jobs runs (jobs.csv lists them as rejected)", *_admission_story(adm)])  # fmt: skip
    raise InputError(f"no job {one_line(repr(job))} in the trace ({_suggest(rp, job)})")


def _natural(job: str) -> tuple[str, int, str]:
    """Sort key of job ids: by task, then by ``k`` as a number (``a#2`` before ``a#10``)."""
    task, _, k = job.rpartition("#")
    return (task, int(k), "") if k.isdigit() else (task, -1, k)


def _suggest(rp: Replay, job: str) -> str:
    """The released jobs ``job`` may have meant, in natural order: its task's jobs nearest to
    its ``k``, or the first jobs of the tasks whose names are closest."""
    import difflib

    released = [j for j, js in rp.jobs.items() if js.release is not None]
    if not released:
        return "it releases no job"
    task, _, k = job.rpartition("#")
    mine = [j for j in released if rp.jobs[j].task == task]
    if mine:
        at = int(k) if k.isdigit() else 0
        near = sorted(mine, key=lambda j: (abs(_natural(j)[1] - at), _natural(j)))[:5]
    else:
        tasks = difflib.get_close_matches(task or job, list(rp.tasks), n=3, cutoff=0.0)
        near = [next(j for j in released if rp.jobs[j].task == t) for t in tasks
                if any(rp.jobs[j].task == t for j in released)]  # fmt: skip
    return "did you mean " + ", ".join(sorted(near or released[:5], key=_natural)) + "?"


def _attribution_story(a: Attribution | None) -> list[str]:
    """For a job above its bound or past its deadline: the causes in its busy window, or
    the analysis bug it is when there are none."""
    if a is None:
        return []
    if not a.causes:
        return [str(a)]
    b, e = a.window
    head = (f"response {_ms(a.response_ns)} > bound {_ms(a.bound_ns)}" if a.exceeded
            else "missed its deadline")  # fmt: skip
    return [f"{head}; in its busy window ({_ms(b)} to {_ms(e)}):",
            *(f"  {c}" for c in a.causes)]  # fmt: skip


def _admission_story(r: AdmissionRecord | None) -> list[str]:
    if r is None:
        return []
    rat = r.rationale
    verdict = "admitted" if r.admitted else "REJECTED"
    bound = rat.get("response_bound_ns")
    extra = f", response bound {_ms(bound)}" if type(bound) is int else ""
    return [f"admission: {verdict} under {r.policy} ({rat.get('test')}){extra}: "
            f"{rat.get('reason')}"]  # fmt: skip


def _blocking_story(js: JobState, concurrent: bool) -> list[str]:
    """The jobs holding the device when this one was released, in dispatch order (a
    wall-clock engine hands a late release over after what it already dispatched)."""
    if not js.blockers:
        return ["blocking: the device was free at its release"]
    how = "running alongside (concurrent policy)" if concurrent else "running (non-preemptive)"
    return [f"blocking: {b.job} was {how} from {_ms(b.dispatched_ns)} until {_ms(b.end_ns)}"
            for b in js.blockers]  # fmt: skip


def _concurrent(policy: str | None) -> bool:
    from aegis_core.model.policy import get_policy

    if policy is None:
        return False
    try:
        return get_policy(policy).concurrent
    except (InputError, KeyError, ValueError):
        return False


def _rank(e: Entry | Any, key: Sequence[str]) -> tuple[tuple[bool, Any], ...]:
    """An entry's policy key, comparable whatever the trace holds (no priority: last)."""
    return tuple((v is None, 0 if v is None else v) for v in key_of(e, key))


def _competition_story(js: JobState, behind: Mapping[tuple[str, int], str]) -> list[str]:
    """Every decision while it was ready, from its release to its end (all its chunks); for
    one decided ahead, how long before and behind which job (``behind``: :func:`_replay`)."""
    out = []
    job = js.job
    for r in js.contests:
        key = r.key
        ready = r.ready
        names = [e.job for e in ready]
        me = ready[names.index(job)]
        mine, rank = list(key_of(me, key)), _rank(me, key)
        chunk = f" (chunk {r.chunk})" if r.chunk else ""
        if r.job == job:  # the rest of the ready set in key order (as the policy ranks it)
            rest_set = sorted(ready[1:], key=lambda e: _rank(e, key))
            beat = [f"{e.job} {list(key_of(e, key))}" for e in rest_set if _rank(e, key) > rank]
            late = [f"{e.job} {list(key_of(e, key))}" for e in rest_set if _rank(e, key) < rank]
            rest = f", ahead of {', '.join(beat)}" if beat else \
                "" if late else ", alone in the ready set"  # fmt: skip
            out.append(f"dispatched{chunk} at {_ms(r.t_ns)} by {r.rule}: key {mine}{rest}"
                       f"{_ahead_story(r, behind.get((job, r.chunk)), late)}")  # fmt: skip
        elif r.decided_ahead_ns and _rank(ready[0], key) > rank:  # a broken ahead decision
            out.append(f"waited at {_ms(r.t_ns)}: {ready[0].job} went first, decided "
                       f"{_ms(r.decided_ahead_ns)} ahead, before this job's release (the job "
                       "it was chained behind ended late)")  # fmt: skip
        else:
            w = ready[0]
            out.append(f"waited at {_ms(r.t_ns)}: {w.job} went first with key "
                       f"{list(key_of(w, key))} < {mine} ({', '.join(key)})")  # fmt: skip
    return out


def _ahead_story(r: DispatchRecord, held: str | None, late: Sequence[str]) -> str:
    """A dispatch decided ahead: how long before, while which job ran (chained behind it),
    and the jobs with a smaller key released after the decision (a broken one)."""
    if not r.decided_ahead_ns:
        return ""
    out = f"; decided {_ms(r.decided_ahead_ns)} ahead"
    if held is not None:
        who = f"its chunk {r.chunk - 1}" if held == r.job else held  # (lp-edf: its own)
        out += f", while {who} ran; chained behind it"
    if late:
        out += (f"; {', '.join(late)} released after the decision, before its effect (a "
                f"{AHEAD_BROKEN} assumption)")  # fmt: skip
    return out


def _end_story(js: JobState) -> list[str]:
    out = []
    for r in js.records:
        if isinstance(r, CompleteRecord):
            met = "MISSED its deadline" if r.missed else "met its deadline"
            out.append(f"completed at {_ms(r.end_ns)} (started {_ms(r.start_ns)}): "
                       f"response {_ms(r.response_ns)}, {met}")  # fmt: skip
        elif isinstance(r, MissRecord):
            out.append(f"deadline passed at {_ms(r.t_ns)} before it finished: a miss")
        elif isinstance(r, OverrunRecord) and r.action == CHUNK_OVERRUN:
            out.append(f"a chunk overran its chunk WCET: ran {_ms(r.exec_ns)} > "
                       f"{_ms(r.budget_ns)} (the blocking the analysis charged)")  # fmt: skip
        elif isinstance(r, OverrunRecord):
            out.append(f"overran its WCET: ran {_ms(r.exec_ns)} > budget {_ms(r.budget_ns)}"
                       f" (on_overrun: {r.action})")  # fmt: skip
        elif isinstance(r, AssumptionRecord):
            out.append(f"broke an assumption at {_ms(r.t_ns)}: {r.what} took "
                       f"{_ms(r.observed_ns)} > bound {_ms(r.bound_ns)}")  # fmt: skip
        elif isinstance(r, FaultRecord):
            out.append(f"failed at {_ms(r.t_ns)}: {r.error}")
        elif isinstance(r, SkipRecord):
            out.append(f"skipped at {_ms(r.t_ns)}: {r.reason}")
    return out
