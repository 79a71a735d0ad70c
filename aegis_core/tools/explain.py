"""``aegis explain``: why each decision of a run was taken, from its trace alone.

:func:`verify` re-derives every decision from what its record carries: each dispatch from its
recorded ready set under the recorded policy's rule (the winner must be the entry with the
smallest key, listed first, released and unfinished at that instant), each admission verdict
by re-running the admission analysis on the task parameters the ``admit`` / ``reject`` records
carry (an ``assumption`` record is no decision: it must name a released job and a broken
overhead bound). :func:`explain_job` tells one job's story in plain language, ending, for a
job above its bound, with the overruns and broken assumptions in its busy window
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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aegis_core.model.errors import InputError
from aegis_core.model.types import fmt_ms
from aegis_core.record.attribution import Attribution, attribute_trace
from aegis_core.record.replay import JobState, Replay
from aegis_core.record.schema import (
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
    SkipRecord,
    TraceRecord,
    decode_all,
    from_dict,
    is_end,
    key_of,
    scenario_from_records,
)
from aegis_core.run.scheduler import CHUNK_OVERRUN


@dataclass(frozen=True)
class Mismatch:
    rec: int | None
    """The record's number (``rec``); None: the trace as a whole."""
    what: str
    message: str

    def __str__(self) -> str:
        where = f"record {self.rec}" if self.rec is not None else "trace"
        return f"{where} ({self.what}): {self.message}"


@dataclass
class Verification:
    dispatches: int = 0
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
    (dropped)."""

    cut = False


def load(path: str | Path) -> Trace:
    """The records of a ``trace.jsonl`` (or of a results directory holding one); a last line
    cut mid-record is dropped (``Trace.cut``)."""
    import json

    from aegis_core.model.files import read_text

    p = Path(path)
    if p.is_dir():
        p = p / "trace.jsonl"
    text = read_text(p, "trace file")
    lines = text.splitlines()
    out = Trace()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as exc:
            if n == len(lines) and not text.endswith("\n"):  # the write a kill cut short
                out.cut = True
                break
            raise InputError(f"{p}: not a trace: line {n}: {exc}") from None
    return out


def _policy_of(records: Sequence[Record]) -> str:
    for r in records:
        if isinstance(r, AdmissionRecord):
            return r.policy
    raise InputError("the trace has no admission records: nothing names its policy")


def verify(records: Sequence[Mapping[str, Any] | TraceRecord]) -> Verification:
    """Re-derive every dispatch and every admission, and check the end record against the
    run (``Verification.end``: None for an incomplete trace); the mismatches in trace order."""
    recs = decode_all(records)
    out = Verification(cut=bool(getattr(records, "cut", False)))
    policy = _policy_of(recs)
    rp = _verify_dispatches(recs, policy, out)
    _verify_admissions(rp.admissions, out)
    _verify_end(records, rp, out)
    out.mismatches.sort(key=lambda m: -1 if m.rec is None else m.rec)
    return out


def _verify_end(
    records: Sequence[Mapping[str, Any] | TraceRecord], rp: Replay, out: Verification
) -> None:
    """The end record is the last one, alone, and agrees with the run: the jobs it counts are
    the releases, a stop is at its instant."""
    at = [i for i, r in enumerate(records) if is_end(r)]
    if not at:
        return
    r = records[at[-1]]
    end = r if isinstance(r, tuple) else from_dict(r)
    assert isinstance(end, EndRecord)
    out.end = end
    if at != [len(records) - 1]:
        why = "is not the trace's last record, alone" if len(at) == 1 else "is not the only one"
        out.mismatches.append(Mismatch(end.rec, "end", why))
    released = sum(js.release is not None for js in rp.jobs.values())
    if end.jobs != released:
        out.mismatches.append(Mismatch(end.rec, "end", f"counts {end.jobs} jobs, the trace "
                                                       f"released {released}"))  # fmt: skip
    i = end.interrupted
    if i is not None and i.at_ns != end.t_ns:
        why = f"interrupted at {_ms(i.at_ns)}, not at its instant {_ms(end.t_ns)}"
        out.mismatches.append(Mismatch(end.rec, "end", why))


def _verify_dispatches(records: Sequence[Record], policy: str, out: Verification) -> Replay:
    """Replay the run and check each dispatch against the state just before it (the ready set
    its releases and chunk boundaries make, the running set), not only against what it
    recorded."""
    from aegis_core.model.policy import get_policy

    pol = get_policy(policy)
    rp = Replay()
    for r in records:
        if isinstance(r, DispatchRecord):
            out.dispatches += 1
            why = _dispatch_problem(r, pol, rp)
            if why:
                out.mismatches.append(Mismatch(r.rec, f"dispatch of {r.job}", why))
        elif isinstance(r, AssumptionRecord):
            why = _assumption_problem(r, rp)
            if why:
                out.mismatches.append(Mismatch(r.rec, f"assumption of {r.job}", why))
        rp.apply(r)
    return rp


def _assumption_problem(r: AssumptionRecord, rp: Replay) -> str | None:
    """An ``assumption`` record is no decision: it must name a released job, a known
    overhead figure and an observed value above the bound."""
    from aegis_core.model.overheads import Overhead

    js = rp.jobs.get(r.job)
    if js is None or js.release is None:
        return "names a job that was not released"
    if r.task != js.task:
        return f"names task {r.task!r}, the job's release says {js.task!r}"
    if r.what not in {w.value for w in Overhead}:
        return f"unknown overhead {r.what!r}"
    if r.observed_ns <= r.bound_ns:
        return f"observed {_ms(r.observed_ns)} is within the bound {_ms(r.bound_ns)}"
    return None


def _dispatch_problem(r: DispatchRecord, pol: Any, rp: Replay) -> str | None:
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
    keys = [key_of(e, key) for e in listed]
    best = min(range(len(listed)), key=lambda i: keys[i])
    if best != 0:
        return (
            f"by {', '.join(key)} the winner is {listed[best].job} {list(keys[best])}, "
            f"not {listed[0].job} {list(keys[0])}"
        )
    if not pol.concurrent and rp.running:
        return f"dispatched while {sorted(rp.running)[0]} still held the only slot"
    return None


def _verify_admissions(adm: Sequence[AdmissionRecord], out: Verification) -> None:
    if not adm:
        return
    if any(r.params is None for r in adm):
        out.mismatches.append(Mismatch(None, "admission", "admission records lack task params"))
        return
    from aegis_core.analysis.admission import PROVENANCE, admit

    try:
        verdicts = admit(scenario_from_records(adm)).tasks
    except (InputError, TypeError) as exc:  # unreadable params: a mismatch, not a crash
        out.mismatches.append(Mismatch(adm[0].rec, "admission", str(exc)))
        return
    for r, v in zip(adm, verdicts, strict=True):
        out.admissions += 1
        skip = ("name", "admitted", *PROVENANCE)
        want = {"admitted": v.admitted, **{k: x for k, x in v.as_dict().items() if k not in skip}}
        got = {"admitted": r.admitted, **{k: x for k, x in r.rationale.items() if k not in skip}}
        if got != want:
            diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            k = diff[0]
            why = f"{k}: recorded {got.get(k)!r}, re-derived {want.get(k)!r}"
            out.mismatches.append(Mismatch(r.rec, f"admission of {r.task}", why))


# ----------------------------------------------------------------------------- the story


def _ms(ns: int | None) -> str:
    return fmt_ms(ns, " ms")


def explain_job(records: Sequence[Mapping[str, Any] | Record], job: str) -> str:
    """One job's account: release, deadline, what blocked it, whom it beat or lost to (and
    by which key), how it ended, and why its task was admitted."""
    rp = Replay.of(records)
    js = rp.jobs.get(job)
    rel = js.release if js is not None else None
    if js is None or rel is None:
        known = sorted(j for j, s in rp.jobs.items() if s.release is not None)[:8]
        raise InputError(f"no job {job!r} in the trace (jobs look like {', '.join(known)}, ...)")
    rel_dl = rel.deadline_ns - rel.release_ns
    lines = [f"{job} (task {js.task}): released at {_ms(rel.release_ns)}, absolute deadline "
             f"{_ms(rel.deadline_ns)} (relative {_ms(rel_dl)})"]  # fmt: skip
    lines += _admission_story(rp.admission(js.task))
    lines += _blocking_story(js, _concurrent(rp.policy))
    lines += _competition_story(js)
    lines += _end_story(js)
    lines += _attribution_story(next((a for a in attribute_trace(records) if a.job == job), None))
    return "\n".join(lines)


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
    extra = f", response bound {_ms(bound)}" if bound is not None else ""
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


def _competition_story(js: JobState) -> list[str]:
    """Every decision while it was ready, from its release to its end (all its chunks)."""
    out = []
    job = js.job
    for r in js.contests:
        key = r.key
        ready = r.ready
        names = [e.job for e in ready]
        me = ready[names.index(job)]
        mine = list(key_of(me, key))
        chunk = f" (chunk {r.chunk})" if r.chunk else ""
        if r.job == job:
            beat = [f"{e.job} {list(key_of(e, key))}" for e in ready[1:]]
            rest = f", ahead of {', '.join(beat)}" if beat else ", alone in the ready set"
            out.append(f"dispatched{chunk} at {_ms(r.t_ns)} by {r.rule}: key {mine}{rest}")
        else:
            w = ready[0]
            out.append(f"waited at {_ms(r.t_ns)}: {w.job} went first with key "
                       f"{list(key_of(w, key))} < {mine} ({', '.join(key)})")  # fmt: skip
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
