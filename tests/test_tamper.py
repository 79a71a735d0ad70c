"""``aegis explain --verify`` against edited traces (docs/CONTRACTS.md §trace).

Real traces, made here by ``aegis sim`` (np-edf, np-fp, lp-edf, fifo; 100 ms each), verify
(exit 0). Every edit below must be caught: a tampered trace exits 1 with one line,
``verify failed: <file>: line <n>, record <rec> (<kind> of <job>): …``, naming the first
record that is wrong; a malformed one exits 2 with one line on stderr naming the file, the
line and the field. A hypothesis test sets a random field of a random record to a random
value: exit 0, 1 or 2, never a traceback, one line on exit 2.
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis_core.tools import explain
from aegis_core.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {"np-edf": "admission", "np-fp": "np_fp", "lp-edf": "lp_edf", "fifo": "fifo"}
MS = 1_000_000
Records = list[dict[str, Any]]


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Records]:
    root = tmp_path_factory.mktemp("traces")
    out = {}
    for policy, name in SCENARIOS.items():
        d = root / name
        args = ["sim", str(ROOT / "scenarios" / f"{name}.yaml"), "--duration-ms", "100",
                "--out", str(d), "--quiet", "--no-perfetto"]  # fmt: skip
        with redirect_stdout(io.StringIO()):
            assert main(args) == 0
        out[policy] = [json.loads(line) for line in (d / "trace.jsonl").read_text().splitlines()]
    return out


def _explain(path: Path, *extra: str) -> tuple[int, list[str], list[str]]:
    """``aegis explain`` in this process: exit status, stdout lines, stderr lines. Anything
    but the CLI's own exits (a traceback) propagates and fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["explain", str(path), *extra])
    return code, out.getvalue().splitlines(), err.getvalue().splitlines()


def _write(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.mark.parametrize("policy", SCENARIOS)
def test_an_unedited_trace_verifies(traces: dict[str, Records], policy: str,
                                    tmp_path: Path) -> None:  # fmt: skip
    code, out, err = _explain(_write(tmp_path / "t.jsonl", traces[policy]))
    assert (code, err) == (0, []) and out[0].startswith("verified: all "), out


# ------------------------------------------------------------------------------ tampered


def _at(rs: Records, kind: str, pred: Callable[[dict[str, Any]], bool] = lambda r: True,
        n: int = 0) -> int:  # fmt: skip
    """The index of the n-th record of ``kind`` that ``pred`` accepts (IndexError: none)."""
    return [i for i, r in enumerate(rs) if r["kind"] == kind and pred(r)][n]


def _next_of(rs: Records, job: str, start: int, kinds: tuple[str, ...]) -> int:
    return next(i for i in range(start, len(rs)) if rs[i].get("job") == job
                and rs[i]["kind"] in kinds)  # fmt: skip


def _release_of(rs: Records, job: str) -> dict[str, Any]:
    return rs[_at(rs, "release", lambda r: r["job"] == job)]


Edit = tuple[Records, int, str | None]
"""The edited records, the index of the record that must be blamed, a fragment of the
message (None: any)."""


def del_dispatch(n: int) -> Callable[[Records], Edit]:
    def edit(rs: Records) -> Edit:
        i = _at(rs, "dispatch", n=n)
        out = rs[:i] + rs[i + 1 :]
        return out, _next_of(out, rs[i]["job"], i, ("complete", "chunk")), "is not running"

    return edit


def del_all_dispatches(rs: Records) -> Edit:
    out = [r for r in rs if r["kind"] != "dispatch"]
    return out, _at(out, "complete"), "completes a job that is not running"


def dispatch_before_release(rs: Records) -> Edit:
    i = _at(rs, "dispatch", lambda r: _release_of(rs, r["job"])["t_ns"] > 0)
    rs[i]["t_ns"] = _release_of(rs, rs[i]["job"])["t_ns"] - 1
    return rs, i, "before its release"


def dispatch_at_zero(rs: Records) -> Edit:
    i = _at(rs, "dispatch", lambda r: _release_of(rs, r["job"])["t_ns"] > 0, n=1)
    rs[i]["t_ns"] = 0
    return rs, i, "before its release"


def dispatch_before_a_record(rs: Records) -> Edit:
    """A job that waited: dispatched 1 ns before the completion that freed the device."""
    i = _at(rs, "dispatch", lambda r: r["t_ns"] > _release_of(rs, r["job"])["t_ns"])
    rs[i]["t_ns"] -= 1
    return rs, i, "before a record above it"


def shift_deadline(delta: int) -> Callable[[Records], Edit]:
    """A release's absolute deadline moved, consistently wherever the trace repeats it."""

    def edit(rs: Records) -> Edit:
        i = _at(rs, "release", n=3)
        job = rs[i]["job"]
        for r in rs:
            if r.get("job") == job and "deadline_ns" in r:
                r["deadline_ns"] += delta
            for e in r.get("rationale", {}).get("ready", []) if r["kind"] == "dispatch" else []:
                if e["job"] == job:
                    e["deadline_ns"] += delta
        return rs, i, "absolute deadline"

    return edit


def dup_release_after(rs: Records) -> Edit:
    i = _at(rs, "release", n=2)
    rs.insert(i + 1, copy.deepcopy(rs[i]))
    return rs, i + 1, "again (first released at"


def dup_release_at_end(rs: Records) -> Edit:
    rs.insert(len(rs) - 1, copy.deepcopy(rs[_at(rs, "release", n=1)]))
    return rs, len(rs) - 2, "again (first released at"


def flip_missed(missed: bool) -> Callable[[Records], Edit]:
    def edit(rs: Records) -> Edit:
        i = _at(rs, "complete", lambda r: r["missed"] is missed)
        rs[i]["missed"] = not missed
        return rs, i, "no miss record came first" if not missed else "a miss record came first"

    return edit


def complete_field(name: str, delta: int, why: str) -> Callable[[Records], Edit]:
    def edit(rs: Records) -> Edit:
        i = _at(rs, "complete", n=2)
        rs[i][name] += delta
        return rs, i, why

    return edit


def complete_later(rs: Records) -> Edit:
    """A completion moved 1 ms later, all its times consistent: past its WCET, with no
    overrun record."""
    i = _at(rs, "complete", n=1)
    for k in ("t_ns", "end_ns", "response_ns"):
        rs[i][k] += MS
    return rs, i, "> its WCET"


def start_before_dispatch(rs: Records) -> Edit:
    i = _at(rs, "complete", lambda r: r["start_ns"] > 0, n=1)
    rs[i]["start_ns"] -= 1
    return rs, i, "start_ns"


def del_miss(rs: Records) -> Edit:
    i = _at(rs, "miss")
    out = rs[:i] + rs[i + 1 :]
    return out, _next_of(out, rs[i]["job"], i, ("complete",)), "no miss record came first"


def complete_before_dispatch(rs: Records) -> Edit:
    i = _at(rs, "dispatch", n=2)
    j = _next_of(rs, rs[i]["job"], i, ("complete",))
    rs.insert(i, rs.pop(j))
    return rs, i, "is not running"


def _next_dispatch(rs: Records, start: int) -> int:
    return next(k for k in range(start, len(rs)) if rs[k]["kind"] == "dispatch")


def del_complete(rs: Records) -> Edit:
    i = _at(rs, "complete", n=1)
    out = rs[:i] + rs[i + 1 :]
    return out, _next_dispatch(out, i), None  # the slot is still held, or the ready set wrong


def chunk_dispatch(chunk: int) -> Callable[[Records], Edit]:
    def edit(rs: Records) -> Edit:
        i = _at(rs, "dispatch", lambda r: r.get("chunk") == 1)
        rs[i]["chunk"] = chunk
        return rs, i, f"dispatches chunk {chunk}, the job's next chunk is 1"

    return edit


def chunk_field(name: str, delta: int, why: str) -> Callable[[Records], Edit]:
    def edit(rs: Records) -> Edit:
        i = _at(rs, "chunk")
        rs[i][name] += delta
        return rs, i, why

    return edit


def del_chunk(rs: Records) -> Edit:
    i = _at(rs, "chunk")
    out = rs[:i] + rs[i + 1 :]
    return out, _next_dispatch(out, i), None  # the job still runs: not back in the ready set


def release_rejected(rs: Records) -> Edit:
    rejected = rs[_at(rs, "reject")]["task"]
    i = _at(rs, "release", n=1)
    seq = max(r["seq"] for r in rs if r["kind"] == "release") + 1
    rs.insert(i, {**rs[i], "job": f"{rejected}#0", "task": rejected, "seq": seq})
    return rs, i, "which admission rejected"


def end_earlier(rs: Records) -> Edit:
    rs[-1]["t_ns"] -= 1
    return rs, len(rs) - 1, "before a record at"


def set_field(kind: str, n: int, why: str, **change: Any) -> Callable[[Records], Edit]:
    """The n-th record of ``kind`` with fields changed (a callable: of the record)."""

    def edit(rs: Records) -> Edit:
        i = _at(rs, kind, n=n)
        for k, v in change.items():
            rs[i][k] = v(rs[i]) if callable(v) else v
        return rs, i, why

    return edit


def move(kind: str, n: int, to: Callable[[Records, int], int], why: str | None,
         copy_it: bool = False) -> Callable[[Records], Edit]:  # fmt: skip
    """The n-th record of ``kind`` moved (or copied) to index ``to(rs, i)``."""

    def edit(rs: Records) -> Edit:
        i = _at(rs, kind, n=n)
        r = copy.deepcopy(rs[i]) if copy_it else rs.pop(i)
        j = to(rs, i)
        rs.insert(j, r)
        return rs, j, why

    return edit


def miss_and_flag_removed(rs: Records) -> Edit:
    i = _at(rs, "miss")
    j = _next_of(rs, rs[i]["job"], i, ("complete",))
    rs[j]["missed"] = False
    return rs[:i] + rs[i + 1 :], j - 1, "not missed, but it ended at"


def fault_of_an_idle_job(rs: Records) -> Edit:
    i = _at(rs, "complete", n=1)
    rs.insert(i + 1, {**{k: rs[i][k] for k in ("t_ns", "seq", "job", "task")},
                      "rec": rs[i]["rec"], "kind": "fault", "error": "boom"})  # fmt: skip
    return rs, i + 1, "after the job ended"


def miss_after_the_end(rs: Records) -> Edit:
    """The miss moved after its job's completion: the completion's flag has no miss first."""
    i = _at(rs, "miss")
    r = rs.pop(i)
    j = _next_of(rs, r["job"], i, ("complete",))
    rs.insert(j + 1, r)
    return rs, j, "missed, but no miss record came first"


def k_back_in_time(rs: Records) -> Edit:
    """safety#1 renamed safety#5 everywhere: the release of safety#2 comes after it."""
    for r in rs:
        for e in [r, *(r.get("rationale", {}).get("ready", []) if r["kind"] == "dispatch" else [])]:
            if e.get("job") == "safety#1":
                e["job"] = "safety#5"
    return rs, _at(rs, "release", lambda r: r["job"] == "safety#2"), "after safety#5"


TAMPERS: list[tuple[str, Callable[[Records], Edit], tuple[str, ...]]] = [
    ("release stamped off its release_ns", set_field("release", 2, "stamped",
     t_ns=lambda r: r["t_ns"] + 1), ("fifo",)),
    ("a release of a task no admission names", set_field("release", 2, "no admission record",
     task="ghost", job="ghost#0"), ("fifo",)),
    ("a priority under np-edf", set_field("release", 2, "orders by none", priority=1),
     ("np-edf",)),
    ("no priority under np-fp", set_field("release", 2, "no priority", priority=None),
     ("np-fp",)),
    ("another priority under np-fp", set_field("release", 2, "the task's is",
     priority=lambda r: r["priority"] + 7), ("np-fp",)),
    ("a job id of another task", set_field("release", 2, "is not named <task>#<k>",
     job=lambda r: "x" + r["job"]), ("fifo",)),
    ("a release's seq back in time", set_field("release", 2, "after a release with seq",
     seq=0), ("fifo",)),
    ("a job's k back in time", k_back_in_time, ("lp-edf",)),
    ("a miss twice", move("miss", 0, lambda rs, i: i + 1, "a second miss", copy_it=True),
     ("fifo",)),
    ("a miss at another instant", set_field("miss", 0, "the release says",
     t_ns=lambda r: r["t_ns"] + 1), ("fifo",)),
    ("a miss in the wrong state", set_field("miss", 0, "state 'running', the job is ready",
     state="running"), ("fifo",)),
    ("a miss after the end", miss_after_the_end, ("fifo",)),
    ("a miss and its flag removed", miss_and_flag_removed, ("fifo",)),
    ("a fault of a job that ended", fault_of_an_idle_job, ("lp-edf",)),
    ("an admission record after the run began", move("admit", 0, lambda rs, i: 6,
     "after the run began", copy_it=True), ("lp-edf",)),
    ("first dispatch deleted", del_dispatch(0), tuple(SCENARIOS)),
    ("a later dispatch deleted", del_dispatch(3), tuple(SCENARIOS)),
    ("every dispatch deleted", del_all_dispatches, tuple(SCENARIOS)),
    ("dispatch 1 ns before its release", dispatch_before_release, tuple(SCENARIOS)),
    ("dispatch at 0", dispatch_at_zero, tuple(SCENARIOS)),
    ("dispatch before the record above it", dispatch_before_a_record, tuple(SCENARIOS)),
    ("deadline + 1 ns everywhere", shift_deadline(1), tuple(SCENARIOS)),
    ("deadline - 1 ms everywhere", shift_deadline(-MS), tuple(SCENARIOS)),
    ("release duplicated", dup_release_after, tuple(SCENARIOS)),
    ("release repeated at the end", dup_release_at_end, tuple(SCENARIOS)),
    ("missed set on a job that met", flip_missed(False), tuple(SCENARIOS)),
    ("missed cleared on a job that missed", flip_missed(True), ("fifo",)),
    ("miss record deleted", del_miss, ("fifo",)),
    ("end_ns + 1 ns", complete_field("end_ns", 1, "end_ns"), tuple(SCENARIOS)),
    ("response_ns + 1 ns", complete_field("response_ns", 1, "response_ns"), tuple(SCENARIOS)),
    ("deadline_ns of a completion", complete_field("deadline_ns", MS, "deadline_ns"),
     tuple(SCENARIOS)),
    ("completion 1 ms later", complete_later, tuple(SCENARIOS)),
    ("start before the dispatch", start_before_dispatch, tuple(SCENARIOS)),
    ("completion before its dispatch", complete_before_dispatch, tuple(SCENARIOS)),
    ("completion deleted", del_complete, tuple(SCENARIOS)),
    ("chunk index 1 -> 2", chunk_dispatch(2), ("lp-edf",)),
    ("chunk index 1 -> 0", chunk_dispatch(0), ("lp-edf",)),
    ("chunk record's next", chunk_field("next", 1, "next chunk 2 after chunk 0"), ("lp-edf",)),
    ("chunk record's count", chunk_field("of", 1, "of 3, the task has 2 chunks"), ("lp-edf",)),
    ("chunk record's run_ns", chunk_field("run_ns", MS, "run_ns"), ("lp-edf",)),
    ("chunk record deleted", del_chunk, ("lp-edf",)),
    ("a rejected task's job released", release_rejected, ("np-edf",)),
    ("end record before the last record", end_earlier, tuple(SCENARIOS)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "name", "edit"),
    [(p, name, edit) for name, edit, ps in TAMPERS for p in ps],
    ids=[f"{p}: {name}" for name, _, ps in TAMPERS for p in ps],
)
def test_a_tampered_trace_fails_naming_the_record(
    traces: dict[str, Records], policy: str, name: str, edit: Any, tmp_path: Path
) -> None:
    rs, blamed, why = edit(copy.deepcopy(traces[policy]))
    path = _write(tmp_path / "t.jsonl", rs)
    code, out, err = _explain(path)
    assert (code, err, len(out)) == (1, [], 1), (out, err)
    r = rs[blamed]
    who = f"{r['kind']} of {r['job']}" if "job" in r else r["kind"]
    if r["kind"] in ("admit", "reject"):
        who = f"admission of {r['task']}"
    assert out[0].startswith(f"verify failed: {path}: line {blamed + 1}, record {r['rec']} "
                             f"({who}): "), out[0]  # fmt: skip
    if why is not None:
        assert why in out[0]


def test_a_tampered_admission_parameter_fails(traces: dict[str, Records], tmp_path: Path) -> None:
    """A task's recorded deadline edited: its releases' deadlines no longer follow (the
    first release of the task is blamed, after the admission record itself)."""
    rs = copy.deepcopy(traces["np-fp"])
    rs[0]["params"]["deadline_ns"] += 1
    code, out, _ = _explain(_write(tmp_path / "t.jsonl", rs))
    assert code == 1 and "line 1, record 0 (admission of " in out[0]
    rs[0]["rationale"]["deadline_ns"] += 1  # the verdict follows: the releases are wrong
    code, out, _ = _explain(_write(tmp_path / "t.jsonl", rs))
    task = rs[0]["task"]
    i = _at(rs, "release", lambda r: r["task"] == task)
    assert code == 1 and f"line {i + 1}, record {rs[i]['rec']} (release of " in out[0], out


# ----------------------------------------------------------------------------- malformed


def _field(name: str, value: Any, kind: str = "release", n: int = 0) -> Callable[[Records], Any]:
    def edit(rs: Records) -> tuple[Records, int, str]:
        i = _at(rs, kind, n=n)
        if value is _DELETE:
            del rs[i][name]
        else:
            rs[i][name] = value
        return rs, i, f"field '{name}'"

    return edit


def _param(name: str, value: Any) -> Callable[[Records], Any]:
    def edit(rs: Records) -> tuple[Records, int, str]:
        rs[0]["params"][name] = value
        return rs, 0, f"field 'params.{name}'"

    return edit


def _line(text: str) -> Callable[[Records], Any]:
    def edit(rs: Records) -> tuple[list[Any], int, str]:
        return [*rs[:3], text, *rs[3:]], 3, "a trace record is a JSON object, not"

    return edit


_DELETE = object()
MALFORMED: list[tuple[str, Callable[[Records], Any]]] = [
    ("an array", _line("[1, 2]")),
    ("null", _line("null")),
    ("a number", _line("3")),
    ("a string", _line('"release"')),
    ("true", _line("true")),
    ("missing deadline_ns", _field("deadline_ns", _DELETE)),
    ("missing missed", _field("missed", _DELETE, "complete")),
    ("missing t_ns", _field("t_ns", _DELETE, "dispatch")),
    ("missing rationale", _field("rationale", _DELETE, "dispatch")),
    ("a string for an int", _field("seq", "3")),
    ("a float for an int", _field("t_ns", 1.0, "complete")),
    ("a bool for an int", _field("end_ns", True, "complete")),
    ("a negative time", _field("t_ns", -5, "release", 2)),
    ("a negative deadline", _field("deadline_ns", -1)),
    ("2**63", _field("release_ns", 2**63)),
    ("a string for a flag", _field("missed", "no", "complete")),
    ("a number for a name", _field("job", 7, "complete")),
    ("an unknown kind", _field("kind", "teleport")),
    ("an unknown policy", _field("policy", "edf-plus", "admit")),
    ("a number for a policy", _field("policy", 3, "admit")),
    ("negative period", _param("period_ns", -1)),
    ("zero deadline", _param("deadline_ns", 0)),
    ("zero WCET", _param("wcet_ns", 0)),
    ("jitter of a period", _param("jitter_ns", 10**12)),
    ("negative kernel", _param("kernels_ns", [MS, -1])),
    ("batch 0", _param("batch", 0)),
    ("unknown on_overrun", _param("on_overrun", "explode")),
    ("unknown parameter", _param("colour", "red")),
    ("a string period", _param("period_ns", "20ms")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "edit"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_record_is_bad_input_naming_file_line_and_field(
    traces: dict[str, Records], name: str, edit: Any, tmp_path: Path
) -> None:
    rs, i, what = edit(copy.deepcopy(traces["lp-edf"]))
    path = _write(tmp_path / "t.jsonl", rs)
    for extra in ((), ("--job", "safety#0")):
        code, out, err = _explain(path, *extra)
        assert (code, out, len(err)) == (2, [], 1), (out, err)
        assert err[0].startswith(f"aegis: error: {path}: line {i + 1}: "), err
        if name not in ("an unknown kind",):
            assert what in err[0], err


def _bad_file(tmp_path: Path, name: str) -> tuple[Path, str]:
    p = tmp_path / "t.jsonl"
    good = '{"rec":0,"t_ns":0,"kind":"end","jobs":0,"interrupted":null}\n'
    if name == "empty":
        p.write_bytes(b"")
        return p, "an empty trace"
    if name == "blank lines":
        p.write_bytes(b"\n  \n\n")
        return p, "an empty trace"
    if name == "binary":
        p.write_bytes(bytes(range(128, 256)) * 4 + b"\x00\x01\n" + good.encode())
        return p, "line 1: not UTF-8 text"
    if name == "NUL bytes":
        p.write_bytes(b"\x00\x00\x00\n")
        return p, "not a trace: line 1"
    if name == "invalid UTF-8":
        p.write_bytes(good.encode() + b'{"rec":1,"kind":"\xff\xfe"}\n' + good.encode())
        return p, "line 2: not UTF-8 text (byte 0xff at column 18)"
    if name == "deep nesting":
        p.write_text(good + "[" * 100_000 + "]" * 100_000 + "\n")
        return p, "line 2"
    if name == "a huge line":
        p.write_text(good + '{"pad": "' + "x" * (explain.MAX_LINE + 10) + '"}\n' + good)
        return p, f"line 2: longer than {explain.MAX_LINE >> 20} MiB"
    if name == "a FIFO":
        os.mkfifo(p)
        return p, "not a regular file"
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name",
    [
        "empty",
        "blank lines",
        "binary",
        "NUL bytes",
        "invalid UTF-8",
        "deep nesting",
        "a huge line",
        "a FIFO",
    ],
)
def test_a_file_that_is_no_trace_is_bad_input(name: str, tmp_path: Path) -> None:
    path, why = _bad_file(tmp_path, name)
    code, out, err = _explain(path)
    assert (code, out, len(err)) == (2, [], 1), (out, err)
    assert err[0].startswith(f"aegis: error: {path}: ") and why in err[0], err


def test_a_huge_line_is_read_no_further_than_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory stays bounded: the reader asks for at most MAX_LINE + 1 bytes of a line."""
    asked: list[int] = []
    real = explain._open

    class Spy:
        def __init__(self, f: Any) -> None:
            self.f = f

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def readline(self, n: int) -> bytes:
            asked.append(n)
            line: bytes = self.f.readline(n)
            return line

    monkeypatch.setattr(explain, "_open", lambda p: Spy(real(p)))
    monkeypatch.setattr(explain, "MAX_LINE", 1000)
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": "' + "x" * 50_000 + '"}\n')
    code, _, err = _explain(path)
    assert code == 2 and "longer than" in err[0] and asked == [1001]


def test_a_cut_last_line_of_invalid_utf8_is_a_cut_trace(
    traces: dict[str, Records], tmp_path: Path
) -> None:
    """The write a kill interrupted can cut a character in two: incomplete, not bad input."""
    path = _write(tmp_path / "t.jsonl", traces["fifo"][:-1])
    with path.open("ab") as f:
        f.write(b'{"rec": 99, "reason": "caf\xc3')
    code, out, _ = _explain(path)
    assert code == 1 and out[0].startswith("incomplete trace: no end record (its last line is cut")


# ---------------------------------------------------------------------------- hypothesis

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=True),
    st.text(max_size=8), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)  # fmt: skip


def _slots(r: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every (object, key) of a record a mutation may set: its fields, its rationale's,
    params' and ready entries' fields."""
    out = [(r, k) for k in r]
    for sub in ("rationale", "params"):
        if isinstance(r.get(sub), dict):
            out += [(r[sub], k) for k in r[sub]]
    for e in (r.get("rationale") or {}).get("ready", []) if r["kind"] == "dispatch" else []:
        out += [(e, k) for k in e]
    return out


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(sorted(SCENARIOS)), which=st.integers(0, 10**6),
       slot=st.integers(0, 10**6), value=VALUES, new_key=st.booleans())  # fmt: skip
def test_a_random_field_set_to_a_random_value_never_gives_a_traceback(
    traces: dict[str, Records], tmp_path_factory: pytest.TempPathFactory, policy: str,
    which: int, slot: int, value: Any, new_key: bool,
) -> None:  # fmt: skip
    rs = copy.deepcopy(traces[policy])
    r = rs[which % len(rs)]
    slots = _slots(r)
    obj, key = slots[slot % len(slots)]
    obj["x" + key if new_key else key] = value
    path = _write(tmp_path_factory.mktemp("fuzz") / "t.jsonl", rs)
    job = r["job"] if isinstance(r.get("job"), str) else "safety#0"
    for extra in ((), ("--job", job)):
        code, out, err = _explain(path, *extra)
        assert code in (0, 1, 2)
        if code == 2:
            assert out == [] and len(err) == 1 and err[0].startswith("aegis: error: "), err
        elif not extra:
            assert 1 <= len(out) <= 2 and err == [], (out, err)


def test_a_wcet_above_the_deadline_is_admissions_call(
    traces: dict[str, Records], tmp_path: Path
) -> None:
    """C > D is a task a profile can measure (rejected by an analysed policy, admitted
    without analysis under fifo): not malformed, but an admit record with it does not
    re-derive."""
    rs = copy.deepcopy(traces["np-edf"])
    rs[0]["params"]["wcet_ns"] = rs[0]["params"]["deadline_ns"] + 1
    code, out, err = _explain(_write(tmp_path / "t.jsonl", rs))
    assert (code, err) == (1, [])
    assert f"line 1, record 0 (admission of {rs[0]['task']}): admitted: recorded True, " \
        "re-derived False" in out[0]  # fmt: skip


@pytest.mark.parametrize("name", ["a#0\nverified: all 3 dispatches", "\x1b[2J#0", "b\r#1"])
def test_control_characters_in_a_tampered_record_stay_on_one_line(
    traces: dict[str, Records], name: str, tmp_path: Path
) -> None:
    rs = copy.deepcopy(traces["fifo"])
    i = _at(rs, "complete", n=1)
    rs[i]["job"] = name
    path = _write(tmp_path / "t.jsonl", rs)
    code, out, err = _explain(path)
    assert (code, err, len(out)) == (1, [], 1) and out[0].startswith("verify failed: ")
    assert "\n" not in out[0] and "\x1b" not in out[0] and "\r" not in out[0]
    code, out, err = _explain(path, "--job", name)
    assert (code, out, len(err)) == (2, [], 1) and "\x1b" not in err[0] and "\r" not in err[0]


def _overrun_run(action: str, engine: str) -> Records:
    """a (2 ms every 10 ms, ``on_overrun: action``) and b; a#1 runs 18 ms: a miss, an
    overrun and (skip-next) a skip, on the simulator or the executor's mock backend."""
    from aegis_core.analysis.admission import admit
    from aegis_core.budget import budgets
    from aegis_core.model.scenario import parse_scenario
    from aegis_core.record.schema import admission_records
    from aegis_core.record.sinks import MemoryTrace
    from aegis_core.run.loop import run
    from aegis_core.run.plan import RunPlan, WcetModel
    from aegis_core.run.scheduler import Dispatch, Scheduler
    from aegis_exec.engine import ExecEngine
    from aegis_exec.testing import VirtualClock
    from aegis_sim.engine import SimPyEngine

    s = parse_scenario({"name": "ctx", "duration_ms": 60, "tasks": [
        {"name": "a", "period_ms": 10, "wcet_ms": 2, "on_overrun": action},
        {"name": "b", "period_ms": 20, "wcet_ms": 2, "deadline_ms": 11}]})  # fmt: skip
    base = WcetModel.of(budgets(s))

    def exec_time(d: Dispatch) -> int:
        return 18 * MS if d.job == "a#1" else base(d)

    plan = RunPlan.build(s, exec_time=exec_time)
    trace = MemoryTrace()
    trace.write(admission_records(admit(s), s, enforced=True))
    eng = SimPyEngine() if engine == "sim" else ExecEngine("mock", clock=VirtualClock())
    run(plan, Scheduler.for_plan(plan), eng, sink=trace)
    return trace.records()


@pytest.mark.parametrize("engine", ["sim", "exec-mock"])
@pytest.mark.parametrize("action", ["continue", "skip-next"])
def test_an_overrun_run_verifies_and_its_overrun_record_is_checked(
    action: str, engine: str
) -> None:
    rs = _overrun_run(action, engine)
    kinds = [r["kind"] for r in rs]
    assert "overrun" in kinds and "miss" in kinds and ("skip" in kinds) == (action != "continue")
    v = explain.verify(rs)
    assert v.ok, v.mismatches[:2]
    i = kinds.index("overrun")
    dropped = rs[:i] + rs[i + 1 :]  # the overrun record deleted: the completion says so
    m = explain.verify(dropped).mismatches[0]
    assert (m.rec, m.what) == (rs[i - 1]["rec"], "complete of a#1")
    assert "ran 18.000 ms > its WCET 2.000 ms, and no overrun record follows" in m.message
    told = copy.deepcopy(rs)
    told[i]["exec_ns"] = 3 * MS  # what it ran, misstated
    assert explain.verify(told).mismatches[0].what == "complete of a#1"
    if action == "skip-next":
        j = kinds.index("skip")
        early = copy.deepcopy(rs)
        early.insert(i - 1, early.pop(j))  # the skip before the overrun that caused it: a#2
        assert not explain.verify(early).ok  # still waits, but nothing overran yet


@pytest.mark.parametrize("action", ["continue", "skip-next"])
def test_an_overrun_record_names_its_tasks_budget_and_action_once(action: str) -> None:
    """A whole job's overrun record: one per job, its budget the task's WCET, its action the
    task's on_overrun; each edit is a verify failure on the overrun record."""
    rs = _overrun_run(action, "sim")
    for r in rs:  # records without numbers: the edits below shift none
        r["rec"] = -1
    i = [r["kind"] for r in rs].index("overrun")
    other = "skip-next" if action == "continue" else "continue"
    cases = {
        "a second overrun record of a#1": [*rs[: i + 1], copy.deepcopy(rs[i]), *rs[i + 1 :]],
        "budget_ns 0.001 ms, the task's WCET is 2.000 ms": _with(rs, i, budget_ns=1000),
        f"action {other!r}, the task's on_overrun is {action!r}": _with(rs, i, action=other),
    }
    for why, edited in cases.items():
        m = explain.verify(edited).mismatches
        assert m and m[0].what == "overrun of a#1" and why in m[0].message, (why, m[:1])


def _with(rs: Records, i: int, **change: Any) -> Records:
    out = copy.deepcopy(rs)
    out[i].update(change)
    return out


def test_records_are_numbered_in_trace_order(traces: dict[str, Records], tmp_path: Path) -> None:
    """``rec`` is a record's number in the trace: renumbered, duplicated or swapped numbers
    fail --verify (exit 1) at the first record out of place."""
    rs = traces["np-edf"]
    for n, edit in enumerate([
        lambda x: x[5].update(rec=999),
        lambda x: x[5].update(rec=4),
        lambda x: (x[6].update(rec=7), x[7].update(rec=6)),
    ]):  # fmt: skip
        edited = copy.deepcopy(rs)
        edit(edited)
        code, out, _ = _explain(_write(tmp_path / f"n{n}.jsonl", edited), "--verify")
        assert code == 1 and "but it is record" in out[0], out
    assert _explain(_write(tmp_path / "ok.jsonl", rs), "--verify")[0] == 0
