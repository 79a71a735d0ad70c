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
    from .trace import read_records

    p = Path(path)
    if p.is_dir():
        p = p / "trace.jsonl"
    from .files import read_text

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
    from .policy import get_policy

    pol = get_policy(policy)
    released: set[str] = set()
    finished: set[str] = set()
    for r in records:
        kind = r.get("kind")
        if kind == "release":
            released.add(r["job"])
        elif kind in ("complete", "fault", "skip"):
            finished.add(r["job"])
        elif kind == "dispatch":
            out.dispatches += 1
            why = _dispatch_problem(r, pol.rule, list(pol.key_fields), released, finished)
            if why:
                out.mismatches.append(Mismatch(r.get("seq"), f"dispatch of {r.get('job')}", why))


def _dispatch_problem(
    r: dict[str, Any], rule: str, key: list[str], released: set[str], finished: set[str]
) -> str | None:
    rat = r.get("rationale") or {}
    ready = rat.get("ready") or []
    if rat.get("rule") != rule or list(rat.get("key") or []) != key:
        return f"recorded rule {rat.get('rule')!r} is not the policy's {rule!r}"
    if not ready or ready[0].get("job") != r.get("job"):
        return "the dispatched job is not the first entry of its ready set"
    try:
        keys = [tuple(e[f] for f in key) for e in ready]
    except KeyError as exc:
        return f"a ready entry lacks the key field {exc}"
    best = min(range(len(ready)), key=lambda i: keys[i])
    if best != 0:
        return (
            f"by {', '.join(key)} the winner is {ready[best]['job']} {list(keys[best])}, "
            f"not {ready[0]['job']} {list(keys[0])}"
        )
    for e in ready:
        if e["job"] not in released or e["job"] in finished:
            return f"ready entry {e['job']} was not released-and-unfinished at that instant"
        if e.get("release_ns", 0) > r["t_ns"]:
            return f"ready entry {e['job']} is released after the decision"
    return None


def _verify_admissions(records: Sequence[dict[str, Any]], out: Verification) -> None:
    adm = [r for r in records if r.get("kind") in ("admit", "reject")]
    if not adm:
        return
    if any("params" not in r for r in adm):
        out.mismatches.append(Mismatch(None, "admission", "admission records lack task params"))
        return
    from .admission import admit

    try:
        verdicts = admit(scenario_from_records(adm)).tasks
    except InputError as exc:
        out.mismatches.append(Mismatch(adm[0].get("seq"), "admission", str(exc)))
        return
    for r, v in zip(adm, verdicts, strict=True):
        out.admissions += 1
        want = {"admitted": v.admitted, **{k: x for k, x in v.as_dict().items()
                                           if k not in ("name", "admitted")}}  # fmt: skip
        got = {"admitted": r["kind"] == "admit", **r["rationale"]}
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
    from .scenario import Policy, Scenario, Task

    tasks = []
    for r in adm:
        p = dict(r["params"])
        for k in ("kernels_ns", "input_shape"):
            if p.get(k) is not None:
                p[k] = tuple(p[k])
        tasks.append(Task(name=r["task"], **p))
    return Scenario(
        name="trace", tasks=tuple(tasks), policy=Policy(adm[0]["policy"]),
        gpu_memory_bytes=adm[0].get("gpu_memory_bytes"),
    )  # fmt: skip


# ----------------------------------------------------------------------------- the story


def _ms(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.3f} ms"


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


def _blocking_story(records: Sequence[dict[str, Any]], rel: dict[str, Any]) -> list[str]:
    """The non-preemptive job running when this one was released, if any."""
    t = rel["release_ns"]
    running: dict[str, int] = {}
    for r in records:
        if r["t_ns"] > t:
            continue
        if r.get("kind") == "dispatch":
            running[r["job"]] = r["t_ns"]
        elif r.get("kind") in ("complete", "chunk", "fault"):
            running.pop(r.get("job", ""), None)  # ended at or before the release
    others = [j for j in running if j != rel["job"]]
    if not others:
        return ["blocking: the device was free or became free at its release"]
    ends = {r["job"]: r["t_ns"] for r in records if r.get("kind") in ("complete", "chunk", "fault")
            and r.get("job") in others and r["t_ns"] > t}  # fmt: skip
    return [f"blocking: {j} was running (non-preemptive) from {_ms(running[j])} until "
            f"{_ms(ends.get(j))}" for j in others]  # fmt: skip


def _competition_story(
    records: Sequence[dict[str, Any]], job: str, rel: dict[str, Any]
) -> list[str]:
    out = []
    for r in records:
        if r.get("kind") != "dispatch" or r["t_ns"] < rel["release_ns"]:
            continue
        rat = r["rationale"]
        key = rat["key"]
        ready = rat["ready"]
        names = [e["job"] for e in ready]
        if job not in names:
            continue
        me = ready[names.index(job)]
        mine = [me[f] for f in key]
        if r["job"] == job:
            beat = [f"{e['job']} {[e[f] for f in key]}" for e in ready[1:]]
            rest = f", ahead of {', '.join(beat)}" if beat else ", alone in the ready set"
            out.append(f"dispatched at {_ms(r['t_ns'])} by {rat['rule']}: key {mine}{rest}")
            if r.get("chunk") is None:
                break
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
