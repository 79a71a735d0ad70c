"""``aegis explain``: why each decision of a run was taken, from its trace alone.

:func:`verify` re-derives every decision from what its record carries: each dispatch from its
recorded ready set under the recorded policy's rule (the winner must be the entry with the
smallest key, listed first, released and unfinished at that instant), each admission verdict
by re-running the admission analysis on the task parameters the ``admit`` / ``reject`` records
carry. :func:`explain_job` tells one job's story in plain language.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .types import fmt_ms


@dataclass(frozen=True)
class Mismatch:
    seq: int | None
    what: str
    message: str

    def __str__(self) -> str:
        where = f"record {self.seq}" if self.seq is not None else "trace"
        return f"{where} ({self.what}): {self.message}"


@dataclass
class Verification:
    dispatches: int = 0
    admissions: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def load(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``trace.jsonl`` (or of a results directory holding one)."""
    from .files import read_text
    from .trace import read_records

    p = Path(path)
    if p.is_dir():
        p = p / "trace.jsonl"
    text = read_text(p, "trace file")
    try:
        return read_records(text.splitlines())
    except ValueError as exc:
        raise InputError(f"{p}: not a trace: {exc}") from None


def _policy_of(records: Sequence[dict[str, Any]]) -> str:
    for r in records:
        if r.get("kind") in ("admit", "reject"):
            return str(r["policy"])
    raise InputError("the trace has no admission records: nothing names its policy")


def verify(records: Sequence[dict[str, Any]]) -> Verification:
    """Re-derive every dispatch and every admission; the mismatches in trace order."""
    out = Verification()
    _verify_admissions(records, out)
    _verify_dispatches(records, _policy_of(records), out)
    out.mismatches.sort(key=lambda m: -1 if m.seq is None else m.seq)
    return out


def _verify_dispatches(records: Sequence[dict[str, Any]], policy: str, out: Verification) -> None:
    """Replay the ready set in record order (release and chunk add a job, dispatch and skip
    remove it) and check each dispatch against it, not only against what it recorded."""
    from .policy import get_policy

    pol = get_policy(policy)
    entries: dict[str, dict[str, Any]] = {}
    ready: dict[str, dict[str, Any]] = {}
    running: set[str] = set()
    for r in records:
        kind, job = r.get("kind"), str(r.get("job"))
        if kind == "release":
            e = {"job": job, "task": r["task"], "deadline_ns": r["deadline_ns"],
                 "release_ns": r["release_ns"], "seq": r["job_seq"]}  # fmt: skip
            if "priority" in r:
                e["priority"] = r["priority"]
            entries[job] = ready[job] = e
        elif kind == "chunk":
            running.discard(job)
            if job in entries:
                ready[job] = entries[job]
        elif kind in ("complete", "fault"):
            running.discard(job)
            ready.pop(job, None)
        elif kind == "skip":
            ready.pop(job, None)
        elif kind == "dispatch":
            out.dispatches += 1
            why = _dispatch_problem(r, pol, ready, running)
            if why:
                out.mismatches.append(Mismatch(r.get("seq"), f"dispatch of {job}", why))
            ready.pop(job, None)
            running.add(job)


def _dispatch_problem(
    r: dict[str, Any], pol: Any, ready: dict[str, dict[str, Any]], running: set[str]
) -> str | None:
    rat = r.get("rationale") or {}
    listed = rat.get("ready") or []
    key = list(pol.key_fields)
    if rat.get("rule") != pol.rule:
        return f"recorded rule {rat.get('rule')!r} is not the policy's {pol.rule!r}"
    if list(rat.get("key") or []) != key:
        return f"recorded key {rat.get('key')!r} is not the policy's {key!r}"
    if not listed or listed[0].get("job") != r.get("job"):
        return "the dispatched job is not the first entry of its ready set"
    names = [e.get("job") for e in listed]
    if sorted(map(str, names)) != sorted(ready) or len(set(names)) != len(names):
        missing = sorted(set(ready) - set(map(str, names)))
        extra = sorted(set(map(str, names)) - set(ready))
        return (f"the recorded ready set is not the jobs released and not started: "
                f"missing {missing}, extra {extra}")  # fmt: skip
    for e in listed:
        if e != ready[e["job"]]:
            bad = sorted(
                k for k in set(e) | set(ready[e["job"]]) if e.get(k) != ready[e["job"]].get(k)
            )
            return f"ready entry {e['job']} differs from its release record in {', '.join(bad)}"
    keys = [tuple(e[f] for f in key) for e in listed]
    best = min(range(len(listed)), key=lambda i: keys[i])
    if best != 0:
        return (
            f"by {', '.join(key)} the winner is {listed[best]['job']} {list(keys[best])}, "
            f"not {listed[0]['job']} {list(keys[0])}"
        )
    if not pol.concurrent and running:
        return f"dispatched while {sorted(running)[0]} still held the only slot"
    return None


def _verify_admissions(records: Sequence[dict[str, Any]], out: Verification) -> None:
    adm = [r for r in records if r.get("kind") in ("admit", "reject")]
    if not adm:
        return
    if any("params" not in r for r in adm):
        out.mismatches.append(Mismatch(None, "admission", "admission records lack task params"))
        return
    from .admission import PROVENANCE, admit

    try:
        verdicts = admit(scenario_from_records(adm)).tasks
    except (InputError, TypeError) as exc:  # unreadable params: a mismatch, not a crash
        out.mismatches.append(Mismatch(adm[0].get("seq"), "admission", str(exc)))
        return
    for r, v in zip(adm, verdicts, strict=True):
        out.admissions += 1
        skip = ("name", "admitted", *PROVENANCE)
        want = {"admitted": v.admitted, **{k: x for k, x in v.as_dict().items() if k not in skip}}
        got = {"admitted": r["kind"] == "admit",
               **{k: x for k, x in r["rationale"].items() if k not in skip}}  # fmt: skip
        if got != want:
            diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            k = diff[0]
            why = f"{k}: recorded {got.get(k)!r}, re-derived {want.get(k)!r}"
            out.mismatches.append(Mismatch(r.get("seq"), f"admission of {r['task']}", why))


TASK_PARAMS = ("wcet_ns", "period_ns", "deadline_ns", "jitter_ns", "priority", "kernels_ns",
               "model", "batch", "input_shape", "memory_budget_bytes", "on_overrun")  # fmt: skip


def task_params(task: Any) -> dict[str, Any]:
    """What admission reads of a task (recorded with each verdict)."""
    out = {k: getattr(task, k) for k in TASK_PARAMS}
    for k in ("kernels_ns", "input_shape"):
        if out[k] is not None:
            out[k] = list(out[k])
    return out


def scenario_from_records(adm: Sequence[dict[str, Any]]) -> Any:
    """The admission problem the records state: tasks in list order, policy, device memory."""
    from .policy import get_policy
    from .scenario import Scenario, Task

    tasks = []
    for r in adm:
        p = dict(r["params"])
        for k in ("kernels_ns", "input_shape"):
            if p.get(k) is not None:
                p[k] = tuple(p[k])
        tasks.append(Task(name=r["task"], **p))
    return Scenario(
        name="trace", tasks=tuple(tasks), policy=get_policy(adm[0]["policy"]),
        gpu_memory_bytes=adm[0].get("gpu_memory_bytes"),
    )  # fmt: skip


# ----------------------------------------------------------------------------- the story


def _ms(ns: int | None) -> str:
    return fmt_ms(ns, " ms")


def explain_job(records: Sequence[dict[str, Any]], job: str) -> str:
    """One job's account: release, deadline, what blocked it, whom it beat or lost to (and
    by which key), how it ended, and why its task was admitted."""
    mine = [r for r in records if r.get("job") == job]
    rel = next((r for r in mine if r["kind"] == "release"), None)
    if rel is None:
        known = sorted({r["job"] for r in records if r.get("kind") == "release"})[:8]
        raise InputError(f"no job {job!r} in the trace (jobs look like {', '.join(known)}, ...)")
    task = rel["task"]
    rel_dl = rel["deadline_ns"] - rel["release_ns"]
    lines = [f"{job} (task {task}): released at {_ms(rel['release_ns'])}, absolute deadline "
             f"{_ms(rel['deadline_ns'])} (relative {_ms(rel_dl)})"]  # fmt: skip
    lines += _admission_story(records, task)
    lines += _blocking_story(records, rel)
    lines += _competition_story(records, job, rel)
    lines += _end_story(mine)
    return "\n".join(lines)


def _admission_story(records: Sequence[dict[str, Any]], task: str) -> list[str]:
    for r in records:
        if r.get("kind") in ("admit", "reject") and r.get("task") == task:
            rat = r["rationale"]
            verdict = "admitted" if r["kind"] == "admit" else "REJECTED"
            bound = rat.get("response_bound_ns")
            extra = f", response bound {_ms(bound)}" if bound is not None else ""
            return [f"admission: {verdict} under {r['policy']} ({rat.get('test')}){extra}: "
                    f"{rat.get('reason')}"]  # fmt: skip
    return []


_ENDS = ("complete", "chunk", "fault")


def _blocking_story(records: Sequence[dict[str, Any]], rel: dict[str, Any]) -> list[str]:
    """The jobs holding the device when this one was released, in record order (a wall-clock
    engine hands a late release over after what it already dispatched)."""
    at = records.index(rel)
    running: dict[str, int] = {}
    for r in records[:at]:
        if r.get("kind") == "dispatch":
            running[r["job"]] = r["t_ns"]
        elif r.get("kind") in _ENDS:
            running.pop(r.get("job", ""), None)
    if not running:
        return ["blocking: the device was free at its release"]
    ends: dict[str, int] = {}
    for r in records[at:]:
        if r.get("kind") in _ENDS and r.get("job") in running and r["job"] not in ends:
            ends[r["job"]] = r["t_ns"]  # the first end after the release: that chunk's
    concurrent = _concurrent(records)
    how = "running alongside (concurrent policy)" if concurrent else "running (non-preemptive)"
    return [f"blocking: {j} was {how} from {_ms(t)} until {_ms(ends.get(j))}"
            for j, t in running.items()]  # fmt: skip


def _concurrent(records: Sequence[dict[str, Any]]) -> bool:
    from .policy import get_policy

    try:
        return get_policy(_policy_of(records)).concurrent
    except (InputError, KeyError, ValueError):
        return False


def _competition_story(
    records: Sequence[dict[str, Any]], job: str, rel: dict[str, Any]
) -> list[str]:
    """Every decision while it was ready, from its release to its end (all its chunks)."""
    out = []
    for r in records[records.index(rel) + 1 :]:
        if r.get("job") == job and r.get("kind") in ("complete", "fault", "skip"):
            break
        if r.get("kind") != "dispatch":
            continue
        rat = r["rationale"]
        key = rat["key"]
        ready = rat["ready"]
        names = [e["job"] for e in ready]
        if job not in names:
            continue
        me = ready[names.index(job)]
        mine = [me[f] for f in key]
        chunk = f" (chunk {r['chunk']})" if r.get("chunk") else ""
        if r["job"] == job:
            beat = [f"{e['job']} {[e[f] for f in key]}" for e in ready[1:]]
            rest = f", ahead of {', '.join(beat)}" if beat else ", alone in the ready set"
            out.append(f"dispatched{chunk} at {_ms(r['t_ns'])} by {rat['rule']}: key {mine}{rest}")
        else:
            w = ready[0]
            out.append(f"waited at {_ms(r['t_ns'])}: {w['job']} went first with key "
                       f"{[w[f] for f in key]} < {mine} ({', '.join(key)})")  # fmt: skip
    return out


def _end_story(mine: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for r in mine:
        k = r["kind"]
        if k == "complete":
            met = "MISSED its deadline" if r["missed"] else "met its deadline"
            out.append(f"completed at {_ms(r['end_ns'])} (started {_ms(r['start_ns'])}): "
                       f"response {_ms(r['response_ns'])}, {met}")  # fmt: skip
        elif k == "miss":
            out.append(f"deadline passed at {_ms(r['t_ns'])} before it finished: a miss")
        elif k == "overrun":
            out.append(f"overran its WCET: ran {_ms(r['exec_ns'])} > budget {_ms(r['budget_ns'])}"
                       f" (on_overrun: {r['action']})")  # fmt: skip
        elif k == "fault":
            out.append(f"failed at {_ms(r['t_ns'])}: {r['error']}")
        elif k == "skip":
            out.append(f"skipped at {_ms(r['t_ns'])}: {r['reason']}")
    return out
