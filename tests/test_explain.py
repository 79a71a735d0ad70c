"""``aegis explain``: every decision of sim and exec traces re-derives from the trace alone;
tampered traces are caught; a job's story names its blocking and its competitors."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from aegis_core.model.errors import InputError
from aegis_core.model.scenario import load_scenario, parse_scenario, replace_scenario
from aegis_core.tools.cli import main
from aegis_core.tools.explain import explain_job, load, verify
from aegis_core.tools.runner import run_scenario
from aegis_exec.engine import ExecEngine

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))
MS = 1_000_000


def _run(name: str, engine: Any, tmp: Path, ms: int) -> list[dict[str, Any]]:
    s = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    s = replace_scenario(s, duration_ns=ms * MS)
    run_scenario(s, engine, out_dir=tmp / name)
    return load(tmp / name)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_sim_decision_re_derives(name: str, tmp_path: Path) -> None:
    records = _run(name, "sim", tmp_path, 1000)
    v = verify(records)
    assert v.ok, v.mismatches[:3]
    assert v.dispatches == sum(r["kind"] == "dispatch" for r in records) > 0
    assert v.admissions == len(load_scenario(ROOT / "scenarios" / f"{name}.yaml").tasks)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_mock_exec_decision_re_derives(name: str, tmp_path: Path) -> None:
    v = verify(_run(name, ExecEngine("mock"), tmp_path, 150))
    assert v.ok, v.mismatches[:3]
    assert v.dispatches > 0


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_numpy_exec_decision_re_derives(name: str, tmp_path: Path) -> None:
    v = verify(_run(name, ExecEngine("numpy"), tmp_path, 120))
    assert v.ok, v.mismatches[:3]
    assert v.dispatches > 0


def test_scenario_4_explainability(tmp_path: Path) -> None:
    """Scenario 4 (docs/CONTRACTS.md §targets): a multi-model run, simulated, executed, to Perfetto,
    and 100 % of its decisions reconstructed from the trace."""
    for engine in ("sim", ExecEngine("numpy")):
        records = _run("three_models_cpu", engine, tmp_path / str(engine)[:8], 500)
        v = verify(records)
        assert v.ok and v.dispatches == sum(r["kind"] == "dispatch" for r in records) > 20
        assert v.admissions == 3
        trace_json = json.loads(
            (tmp_path / str(engine)[:8] / "three_models_cpu" / "trace.json").read_text()
        )
        slices = [e for e in trace_json["traceEvents"] if e["ph"] == "X" and e["cat"] == "job"]
        assert len(slices) == v.dispatches
        job = next(r["job"] for r in records if r["kind"] == "complete")
        assert explain_job(records, job).splitlines()[0].startswith(f"{job} (task ")


def _first(records: list[dict[str, Any]], kind: str, pred: Any = lambda r: True) -> int:
    return next(i for i, r in enumerate(records) if r["kind"] == kind and pred(r))


def test_a_tampered_dispatch_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = _run("admission", "sim", tmp_path, 200)
    i = _first(records, "dispatch", lambda r: len(r["rationale"]["ready"]) > 1)
    bad = copy.deepcopy(records)
    ready = bad[i]["rationale"]["ready"]
    ready[0], ready[1] = ready[1], ready[0]  # the record now claims the loser won
    bad[i]["job"] = ready[0]["job"]
    v = verify(bad)
    assert not v.ok and v.mismatches[0].rec == records[i]["rec"]
    assert "the winner is" in v.mismatches[0].message
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    assert main(["explain", str(path), "--verify"]) == 1
    out = capsys.readouterr().out
    assert f"record {records[i]['rec']} (dispatch of {ready[0]['job']})" in out
    rule = copy.deepcopy(records)
    rule[i]["rationale"]["rule"] = "fifo: earliest release, then seq"
    assert "is not the policy's" in verify(rule).mismatches[0].message
    # a scheduler that lost the rightful winner: dropped from the ready set, runner-up sent
    dropped = copy.deepcopy(records)
    del dropped[i]["rationale"]["ready"][0]
    dropped[i]["job"] = dropped[i]["rationale"]["ready"][0]["job"]
    assert "missing [" in verify(dropped).mismatches[0].message
    # a forged key: the loser's deadline rewritten so that it sorts first
    forged = copy.deepcopy(records)
    ready = forged[i]["rationale"]["ready"]
    ready[1]["deadline_ns"] = 0
    ready[0], ready[1] = ready[1], ready[0]
    forged[i]["job"] = ready[0]["job"]
    assert "differs from its release record in deadline_ns" in verify(forged).mismatches[0].message
    # a dispatch moved before the running job's completion: two jobs on the only slot
    early = copy.deepcopy(records)
    k = next(n for n in range(i + 1, len(early)) if early[n]["kind"] == "dispatch")
    c = max(n for n in range(k) if early[n]["kind"] == "complete")
    early.insert(c, early.pop(k))
    assert any("still held the only slot" in m.message or "not the jobs released" in m.message
               for m in verify(early).mismatches)  # fmt: skip


def test_a_tampered_admission_is_caught(tmp_path: Path) -> None:
    records = _run("admission", "sim", tmp_path, 200)
    i = _first(records, "admit")
    bad = copy.deepcopy(records)
    bad[i]["params"]["wcet_ns"] += 5 * MS  # the verdict no longer follows from the params
    m = verify(bad).mismatches[0]
    assert m.rec == records[i]["rec"] and m.what == f"admission of {records[i]['task']}"
    flip = copy.deepcopy(records)
    j = _first(flip, "reject")
    flip[j]["kind"] = "admit"  # a rejected task recorded as admitted
    assert "admitted: recorded True, re-derived False" in verify(flip).mismatches[0].message
    stripped = [{k: v for k, v in r.items() if k != "params"} for r in records]
    assert "lack task params" in verify(stripped).mismatches[0].message


def test_a_job_story_names_its_blocking_and_competitors(tmp_path: Path) -> None:
    """b#0 is released at 1 ms while a#0 (4 ms, non-preemptive) runs; c#0, released at 2 ms
    with a later deadline, waits behind b#0, and is decided while b#0 runs (no release can
    come before b#0's end: dispatch-ahead)."""
    a = {"name": "a", "period_ms": 20, "wcet_ms": 4}
    b = {"name": "b", "period_ms": 20, "wcet_ms": 2, "deadline_ms": 8, "offset_ms": 1}
    c = {"name": "c", "period_ms": 20, "wcet_ms": 1, "deadline_ms": 15, "offset_ms": 2}
    s = parse_scenario({"name": "story", "duration_ms": 10, "tasks": [a, b, c]})
    run_scenario(s, "sim", out_dir=tmp_path)
    text = explain_job(load(tmp_path), "c#0")
    assert text.splitlines() == [
        "c#0 (task c): released at 2.000 ms, absolute deadline 17.000 ms (relative 15.000 ms)",
        next(line for line in text.splitlines() if line.startswith("admission: admitted under")),
        "blocking: a#0 was running (non-preemptive) from 0.000 ms until 4.000 ms",
        "waited at 4.000 ms: b#0 went first with key [9000000, 1000000, 1] < [17000000, "
        "2000000, 2] (deadline_ns, release_ns, seq)",
        "dispatched at 6.000 ms by np-edf: earliest absolute deadline, then release, then seq: "
        "key [17000000, 2000000, 2], alone in the ready set; decided 2.000 ms ahead, while b#0 "
        "ran; chained behind it",
        "completed at 7.000 ms (started 6.000 ms): response 5.000 ms, met its deadline",
    ]


def test_cli_explain_job_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run("admission", "sim", tmp_path, 200)
    assert main(["explain", str(tmp_path / "admission"), "--job", "A#1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("A#1 (task A): released at 20.000 ms")
    assert main(["explain", str(tmp_path / "admission")]) == 0
    assert capsys.readouterr().out.startswith("verified: all ")
    assert main(["explain", str(tmp_path / "admission"), "--job", "Z#9"]) == 2
    assert "no job 'Z#9' in the trace" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "nothing")]) == 2
    assert "no such trace file" in capsys.readouterr().err
    (tmp_path / "t.jsonl").write_text(
        '{"rec": 0, "t_ns": 0, "kind": "release", "seq": 0, "job": "a#0", "task": "a", '
        '"deadline_ns": 5, "release_ns": 0}\n'
    )
    with pytest.raises(InputError, match="no admission records"):
        verify(load(tmp_path / "t.jsonl"))


def test_cli_explain_attributes_an_exceedance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """c#0's completion moved 1 ms past its bound: unattributed (an analysis bug), until an
    ``assumption`` record of b#0, in its busy window, says the host broke a bound."""
    a = {"name": "a", "period_ms": 20, "wcet_ms": 4}
    b = {"name": "b", "period_ms": 20, "wcet_ms": 2, "deadline_ms": 8, "offset_ms": 1}
    c = {"name": "c", "period_ms": 20, "wcet_ms": 1, "deadline_ms": 15, "offset_ms": 2}
    s = parse_scenario({"name": "story", "duration_ms": 10, "tasks": [a, b, c]})
    run_scenario(s, "sim", out_dir=tmp_path)
    records = load(tmp_path)
    bound = next(r for r in records if r.get("task") == "c" and r["kind"] == "admit")["rationale"][
        "response_bound_ns"
    ]
    done = records[_first(records, "complete", lambda r: r["job"] == "c#0")]
    end = 2 * MS + bound + MS
    done.update(t_ns=end, end_ns=end, response_ns=end - 2 * MS)
    path = tmp_path / "late.jsonl"

    def explain() -> str:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        assert main(["explain", str(path), "--job", "c#0"]) == 0
        return capsys.readouterr().out.rstrip("\n").splitlines()[-1]

    response = f"response {(bound + MS) / MS:.3f} ms > bound {bound / MS:.3f} ms"
    assert explain() == (f"unattributed: {response} with no overrun or broken assumption in "
                         "its busy window — an analysis bug, please report")  # fmt: skip
    i = _first(records, "complete", lambda r: r["job"] == "b#0")
    records.insert(i + 1, {"rec": 999, "t_ns": 6 * MS, "kind": "assumption", "seq": 1,
                           "job": "b#0", "task": "b", "what": "completion",
                           "observed_ns": 1_200_000, "bound_ns": 200_000})  # fmt: skip
    for k, r in enumerate(records):  # numbered as a run numbers them
        r["rec"] = k
    assert explain() == "  completion of b#0 took 1.200 ms > bound 0.200 ms"
    # --verify: c#0's forged completion ran past its WCET with no overrun record; the run as
    # it was, with the assumption record added, verifies (an assumption is no decision)
    assert main(["explain", str(path), "--verify"]) == 1
    assert "(complete of c#0): ran 4.000 ms > its WCET 1.000 ms" in capsys.readouterr().out
    records = load(tmp_path)
    records.insert(i + 1, {"rec": 999, "t_ns": 6 * MS, "kind": "assumption", "seq": 1,
                           "job": "b#0", "task": "b", "what": "completion",
                           "observed_ns": 1_200_000, "bound_ns": 200_000})  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["explain", str(path), "--verify"]) == 1  # an inserted record shows
    assert f"numbered 999, but it is record {i + 1} of the trace" in capsys.readouterr().out
    for k, r in enumerate(records):
        r["rec"] = k
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["explain", str(path), "--verify"]) == 0
    capsys.readouterr()
    records[i + 1]["job"] = "b#5"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["explain", str(path), "--verify"]) == 1
    assert f"record {i + 1} (assumption of b#5): names a job that was not released" in (
        capsys.readouterr().out
    )
