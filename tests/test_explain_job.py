"""``aegis explain --job``: a rejected task's job tells its rejection; a job not found gets
suggestions in natural order; ready sets print in the policy's key order; a results folder
made with ``--no-trace`` says so."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from aegis_core.model.scenario import load_scenario, parse_scenario, replace_scenario
from aegis_core.tools.cli import main
from aegis_core.tools.explain import load
from aegis_core.tools.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent
MS = 1_000_000


def _explain(*args: str) -> tuple[int, list[str], list[str]]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["explain", *args])
    return code, out.getvalue().splitlines(), err.getvalue().splitlines()


@pytest.fixture(scope="module")
def admission(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scenarios/admission.yaml for 220 ms: A#0 … A#10, B#0 … B#7; C rejected."""
    out = tmp_path_factory.mktemp("admission")
    s = replace_scenario(load_scenario(ROOT / "scenarios" / "admission.yaml"),
                         duration_ns=220 * MS)  # fmt: skip
    run_scenario(s, "sim", out_dir=out)
    return out


@pytest.mark.parametrize("job", ["C#0", "C#1", "C#41"])
def test_a_rejected_tasks_job_tells_the_rejection(admission: Path, job: str) -> None:
    code, out, err = _explain(str(admission), "--job", job)
    assert (code, err) == (0, [])
    assert out[0] == (f"{job} (task C): never released: admission rejected its task, so none "
                      "of its jobs runs (jobs.csv lists them as rejected)")  # fmt: skip
    assert out[1].startswith("admission: REJECTED under np-edf (np-edf demand")
    assert "23 ms > t at t = 20 ms" in out[1]  # the verdict's own reason, with its figures


def test_a_rejected_task_that_ran_tells_its_story(tmp_path: Path) -> None:
    """With --no-admission the rejected task runs: its jobs have a story, which says the
    verdict."""
    s = replace_scenario(load_scenario(ROOT / "scenarios" / "admission.yaml"),
                         duration_ns=120 * MS)  # fmt: skip
    run_scenario(s, "sim", out_dir=tmp_path, admission=False)
    code, out, _ = _explain(str(tmp_path), "--job", "C#0")
    assert code == 0 and out[0].startswith("C#0 (task C): released at 0.000 ms")
    assert out[1].startswith("admission: REJECTED under np-edf")


@pytest.mark.parametrize(
    ("job", "meant"),
    [
        ("A#11", "A#6, A#7, A#8, A#9, A#10"),  # the nearest k, in natural order
        ("B#12", "B#3, B#4, B#5, B#6, B#7"),
        ("A#x", "A#0, A#1, A#2, A#3, A#4"),
        ("Q#2", "A#0, B#0"),  # no such task: the first jobs of the closest tasks
        ("C#x", "A#0, B#0"),  # not a job id of the rejected task
    ],
)
def test_a_job_not_found_suggests_in_natural_order(admission: Path, job: str, meant: str) -> None:
    code, out, err = _explain(str(admission), "--job", job)
    assert (code, out) == (2, [])
    assert err == [f"aegis: error: no job {job!r} in the trace (did you mean {meant}?)"]


def test_ready_sets_print_in_key_order(tmp_path: Path) -> None:
    """Four jobs released at 0: the winner's line lists the others by the policy's key (the
    deadline first), whatever order the record lists them in."""
    tasks = [{"name": n, "period_ms": 50, "wcet_ms": 1, "deadline_ms": d}
             for n, d in (("w", 5), ("z", 40), ("x", 10), ("y", 20))]  # fmt: skip
    s = parse_scenario({"name": "keys", "duration_ms": 10, "tasks": tasks})
    run_scenario(s, "sim", out_dir=tmp_path)
    records = load(tmp_path)
    first = next(r for r in records if r["kind"] == "dispatch")
    ready = first["rationale"]["ready"]
    for order in (ready[1:], ready[1:][::-1]):  # as recorded, then reversed
        first["rationale"]["ready"] = [ready[0], *order]
        path = tmp_path / "t.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        assert _explain(str(path))[0] == 0  # a ready set is a set: still verified
        code, out, _ = _explain(str(path), "--job", "w#0")
        assert code == 0
        line = next(line for line in out if line.startswith("dispatched at"))
        assert re.findall(r"([a-z]#0) \[", line.split("ahead of ")[1]) == ["x#0", "y#0", "z#0"]


def test_a_no_trace_folder_says_the_run_had_no_trace(tmp_path: Path) -> None:
    s = parse_scenario({"name": "nt", "duration_ms": 10,
                        "tasks": [{"name": "a", "period_ms": 5, "wcet_ms": 1}]})  # fmt: skip
    run_scenario(s, "sim", out_dir=tmp_path, trace=False)
    for extra in ((), ("--job", "a#0"), ("--verify",)):
        code, out, err = _explain(str(tmp_path), *extra)
        assert (code, out) == (2, [])
        assert err == [
            f"aegis: error: {tmp_path}: the run was made without a trace (--no-trace): "
            "nothing to explain; run it again without --no-trace"
        ]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _explain(str(empty))[2] == [f"aegis: error: {empty / 'trace.jsonl'}: no such trace file"]
