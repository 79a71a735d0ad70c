"""Scenarios (docs/CONTRACTS.md §time, §scenario): YAML in ms → frozen dataclasses in ns, and every
bad input rejected with one line naming the file, the task and the field (exit status 2)."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from aegis_core.budget import WcetFrom, budgets
from aegis_core.model.errors import InputError, ScenarioError
from aegis_core.model.policy import NP_EDF, NP_FP
from aegis_core.model.scenario import (
    BYTES_PER_MB,
    Arrival,
    Scenario,
    Task,
    load_scenario,
    parse_scenario,
)
from aegis_core.model.types import ms_to_ns
from aegis_core.run.testing import make_profile
from aegis_core.tools.cli import main

MS = 1_000_000
MIB = 1 << 20

# ----------------------------------------------------------------------------- helpers


def write(path: Path, doc: Any) -> Path:
    """Write ``doc`` (a str is written verbatim, anything else as YAML) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    elif isinstance(doc, str):
        path.write_text(doc)
    else:
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def base_doc() -> dict[str, Any]:
    """A small valid scenario; errors are injected into the *second* task so that a message
    naming the wrong task (or always the first one) is caught."""
    return {
        "name": "demo",
        "duration_ms": 50,
        "tasks": [
            {"name": "det", "period_ms": 10, "wcet_ms": 1},
            {"name": "cls", "period_ms": 20, "wcet_ms": 2},
        ],
    }


def run_sim(path: Path, out: Path, *extra: str) -> int:
    return main(["sim", str(path), "--out", str(out), *extra])


def assert_one_line_error(
    err: str, path: Path, *, task: str | None, field: str | None, fragment: str
) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert str(path) in line
    if task is None:
        assert "task '" not in line
    else:
        assert f"task '{task}'" in line
    if field is None:
        assert "field '" not in line
    else:
        assert f"field '{field}'" in line
    assert fragment in line
    return line


# ----------------------------------------------------------------------------- valid input


def test_full_scenario_loads_into_exact_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "scenarios"
    write(folder / "graphs" / "tiny.json", "{}")
    samples = [1000 + 10 * i for i in range(40)]
    make_profile(samples, task="detector", model="resnet18", batch=4).save(
        folder / "profiles" / "det.json"
    )
    text = """\
name: full_set-1
policy: np-fp
duration_ms: 2000.5
seed: 7
gpu:
  memory_mb: 1024
tasks:
  - name: detector
    model: resnet18
    batch: 4
    period_ms: 33.3
    deadline_ms: 30.25
    wcet_ms: 0.0015
    profile: profiles/det.json
    arrival: sporadic
    slack_ms: 16.65
    offset_ms: 1.5
    jitter_ms: 0.25
    priority: 2
    budget: {memory_mb: 256}
  - name: defaults
    period_ms: 10
  - name: custom
    model: graphs/tiny.json
    period_ms: 0.000005
    arrival: poisson
    budget: {memory_mb: 0.5}
"""
    path = write(folder / "full.yaml", text)
    # Relative paths resolve against the scenario's folder, not the working directory.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    s = load_scenario(path)

    expected = Scenario(
        name="full_set-1",
        policy=NP_FP,
        duration_ns=2_000_500_000,
        seed=7,
        gpu_memory_bytes=1024 * MIB,
        path=str(path),
        source_sha256=hashlib.sha256(text.encode()).hexdigest(),
        tasks=(
            Task(
                name="detector",
                model="resnet18",
                batch=4,
                period_ns=33_300_000,
                deadline_ns=30_250_000,
                wcet_ns=1500,
                profile=str(folder / "profiles" / "det.json"),
                arrival=Arrival.SPORADIC,
                slack_ns=16_650_000,
                offset_ns=1_500_000,
                jitter_ns=250_000,
                priority=2,
                memory_budget_bytes=256 * MIB,
            ),
            Task(
                name="defaults",
                period_ns=10 * MS,
                deadline_ns=10 * MS,  # default deadline = period
                wcet_ns=None,
                model=None,
                batch=1,
                profile=None,
                arrival=Arrival.PERIODIC,
                slack_ns=5 * MS,  # default slack = period // 2
                offset_ns=0,
                jitter_ns=0,
                priority=None,
                memory_budget_bytes=None,
            ),
            Task(
                name="custom",
                model=str(folder / "graphs" / "tiny.json"),
                period_ns=5,
                deadline_ns=5,
                arrival=Arrival.POISSON,
                slack_ns=2,  # 5 // 2: integer division, no float
                memory_budget_bytes=MIB // 2,
            ),
        ),
    )
    assert s == expected
    measured = s.tasks[0].measured
    assert measured is not None and measured.samples_ns == tuple(samples)
    # Every time is a plain int (no float, no numpy scalar) — docs/CONTRACTS.md §time.
    for t in s.tasks:
        for v in (t.period_ns, t.deadline_ns, t.slack_ns, t.offset_ns, t.jitter_ns):
            assert type(v) is int
    assert type(s.duration_ns) is int
    assert s.task("custom") is s.tasks[2]
    with pytest.raises(KeyError):
        s.task("nope")


def test_top_level_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", {"name": "d", "tasks": [{"name": "a", "period_ms": 3}]})
    s = load_scenario(path)
    assert s.policy is NP_EDF
    assert s.seed == 0
    assert s.gpu_memory_bytes is None
    assert s.duration_ns == 1_000 * MS
    assert s.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    (t,) = s.tasks
    assert (t.deadline_ns, t.slack_ns, t.batch, t.arrival) == (3 * MS, 1_500_000, 1, "periodic")


def test_scenario_is_frozen() -> None:
    s = parse_scenario({"name": "d", "tasks": [{"name": "a", "period_ms": 3}]})
    with pytest.raises(AttributeError):
        s.seed = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        s.tasks[0].period_ns = 1  # type: ignore[misc]


def test_parse_scenario_from_memory_has_no_hash_and_memory_path() -> None:
    s = parse_scenario({"name": "d", "tasks": [{"name": "a", "period_ms": 3}]})
    assert s.path == "<memory>"
    assert s.source_sha256 == ""


def test_hash_changes_with_file_content(tmp_path: Path) -> None:
    a = load_scenario(write(tmp_path / "a.yaml", "name: d\ntasks: [{name: a, period_ms: 3}]\n"))
    b = load_scenario(write(tmp_path / "b.yaml", "name: d\ntasks: [{name: a, period_ms: 4}]\n"))
    c = load_scenario(write(tmp_path / "c.yaml", "name: d\ntasks: [{name: a, period_ms: 3}]\n"))
    assert a.source_sha256 != b.source_sha256
    assert a.source_sha256 == c.source_sha256
    assert len(a.source_sha256) == 64


def test_absolute_model_path_is_accepted(tmp_path: Path) -> None:
    graph = write(tmp_path / "g" / "m.json", "{}")
    doc = {"name": "d", "tasks": [{"name": "a", "period_ms": 3, "model": str(graph)}]}
    s = load_scenario(write(tmp_path / "other" / "s.yaml", doc))
    assert s.tasks[0].model == str(graph)


@pytest.mark.parametrize(
    ("ms", "ns"),
    [
        (33.3, 33_300_000),
        (0.0015, 1500),
        (16.65, 16_650_000),
        (0.1, 100_000),
        (1, 1_000_000),
        (2000.5, 2_000_500_000),
        (0.000001, 1),
        (0.0000015, 2),  # sub-ns digits: half-even
        (0.0000025, 2),
    ],
)
def test_ms_to_ns_is_exact_for_decimal_text(ms: float, ns: int) -> None:
    assert ms_to_ns(ms) == ns
    assert type(ms_to_ns(ms)) is int


def test_task_with_only_wcet_and_no_model_is_valid_and_simulates(tmp_path: Path) -> None:
    doc = {"name": "nomodel", "duration_ms": 30, "tasks": [{"name": "a", "period_ms": 10}]}
    doc["tasks"][0]["wcet_ms"] = 1
    path = write(tmp_path / "s.yaml", doc)
    s = load_scenario(path)
    assert s.tasks[0].model is None and s.tasks[0].wcet_ns == MS
    out = tmp_path / "out"
    assert run_sim(path, out) == 0
    assert (out / "summary.json").is_file()


def test_sim_without_wcet_fails_with_exit_2_naming_task_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = base_doc()
    del doc["tasks"][1]["wcet_ms"]
    path = write(tmp_path / "s.yaml", doc)
    load_scenario(path)  # valid as a scenario: only the simulator needs an execution time
    out = tmp_path / "out"
    assert run_sim(path, out) == 2
    cap = capsys.readouterr()
    assert_one_line_error(cap.err, path, task="cls", field="wcet_ms", fragment="wcet_ms")
    assert cap.out == ""
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--seed", "-1"], "--seed"),
        (["--duration-ms", "0"], "--duration-ms"),
        (["--duration-ms", "-5"], "--duration-ms"),
        (["--duration-ms", "nan"], "--duration-ms"),
    ],
)
def test_bad_cli_overrides_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], fragment: str
) -> None:
    path = write(tmp_path / "s.yaml", base_doc())
    out = tmp_path / "out"
    assert run_sim(path, out, *flags) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert fragment in err
    assert not out.exists()


def test_cli_overrides_take_effect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = write(tmp_path / "s.yaml", base_doc())
    out = tmp_path / "out"
    assert run_sim(path, out, "--seed", "3", "--duration-ms", "25") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 3
    assert summary["duration_ns"] == 25 * MS


# ----------------------------------------------------------------------------- bad input

Mutation = Callable[[dict[str, Any]], None]


def _set(*keys: Any, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value

    return mutate


def _del(*keys: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]

    return mutate


def _both(*ms: Mutation) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        for m in ms:
            m(doc)

    return mutate


T1 = ("tasks", 1)  # the second task, "cls"

# (id, mutation of base_doc() or raw file text, task, field, message fragment)
BAD_CASES: list[tuple[str, Mutation | str | bytes, str | None, str | None, str]] = [
    ("unknown-top-key", _set("polcy", value="fifo"), None, "polcy", "did you mean 'policy'"),
    ("unknown-top-key-far", _set("zzz", value=1), None, "zzz", "unknown key"),
    ("unknown-task-key", _set(*T1, "perod_ms", value=20), "cls", "perod_ms",
     "did you mean 'period_ms'"),
    ("unknown-task-key-far", _set(*T1, "colour", value="red"), "cls", "colour", "unknown key"),
    ("string-period", _set(*T1, "period_ms", value="20"), "cls", "period_ms", "finite number"),
    ("duplicate-task-key", "name: demo\ntasks:\n  - name: cls\n    period_ms: 10\n"
     "    period_ms: 20\n", None, None, "line 5, column 5: duplicate key 'period_ms'"),
    ("duplicate-top-key", "name: demo\nname: other\ntasks: []\n", None, None,
     "line 2, column 1: duplicate key 'name'"),
    ("task-name-with-hash", _set(*T1, "name", value="a#b"), "a#b", "name", "[A-Za-z0-9_.-]+"),
    ("task-name-with-comma", _set(*T1, "name", value="a,b"), "a,b", "name", "names jobs"),
    ("duration-rounds-to-0ns", _set("duration_ms", value=1e-9), None, "duration_ms", "> 0"),
    ("bool-wcet", _set(*T1, "wcet_ms", value=True), "cls", "wcet_ms", "finite number"),
    ("list-name", _set(*T1, "name", value=["cls"]), "#1", "name", "non-empty string"),
    ("empty-name", _set(*T1, "name", value=""), "#1", "name", "non-empty string"),
    ("negative-period", _set(*T1, "period_ms", value=-20), "cls", "period_ms", "> 0"),
    ("zero-period", _set(*T1, "period_ms", value=0), "cls", "period_ms", "> 0"),
    ("period-rounds-to-0ns", _set(*T1, "period_ms", value=1e-7), "cls", "period_ms", "> 0"),
    ("zero-deadline", _set(*T1, "deadline_ms", value=0), "cls", "deadline_ms", "> 0"),
    ("negative-deadline", _set(*T1, "deadline_ms", value=-1), "cls", "deadline_ms", "> 0"),
    ("kernels-not-a-list", _set(*T1, "kernels_ms", value=3), "cls", "kernels_ms", "non-empty list"),
    ("kernels-empty", _set(*T1, "kernels_ms", value=[]), "cls", "kernels_ms", "non-empty list"),
    ("kernel-negative", _set(*T1, "kernels_ms", value=[1, -1]), "cls", "kernels_ms[1]", "> 0"),
    ("kernel-string", _set(*T1, "kernels_ms", value=[1, "2"]), "cls", "kernels_ms[1]",
     "finite number"),
    ("kernels-sum-differs", _both(_set(*T1, "wcet_ms", value=3), _set(*T1, "kernels_ms",
     value=[1, 1])), "cls", "kernels_ms", "kernels sum to 2000000 ns, wcet_ms is 3000000 ns"),
    ("wcet-over-deadline", _both(_set(*T1, "deadline_ms", value=5), _set(*T1, "wcet_ms", value=6)),
     "cls", "wcet_ms", "exceeds"),
    ("wcet-over-default-deadline", _set(*T1, "wcet_ms", value=20.000001), "cls", "wcet_ms",
     "exceeds"),
    ("zero-wcet", _set(*T1, "wcet_ms", value=0), "cls", "wcet_ms", "> 0"),
    ("negative-wcet", _set(*T1, "wcet_ms", value=-1), "cls", "wcet_ms", "> 0"),
    ("duplicate-name", _set(*T1, "name", value="det"), "det", "name", "duplicate"),
    ("unknown-model", _set(*T1, "model", value="resnet1000"), "cls", "model", "unknown model"),
    ("shape-without-model", _set(*T1, "input_shape", value=[3, 64, 64]), "cls", "input_shape",
     "needs a model"),
    ("shape-not-a-list", _both(_set(*T1, "model", value="tiny_cnn"),
     _set(*T1, "input_shape", value=64)), "cls", "input_shape", "list of positive integers"),
    ("shape-with-zero", _both(_set(*T1, "model", value="tiny_cnn"),
     _set(*T1, "input_shape", value=[3, 0, 8])), "cls", "input_shape", "positive integers"),
    ("shape-wrong-rank", _both(_set(*T1, "model", value="resnet18"),
     _set(*T1, "input_shape", value=[3, 64])), "cls", "input_shape", "3 positive sizes"),
    ("shape-too-small", _both(_set(*T1, "model", value="resnet18"),
     _set(*T1, "input_shape", value=[3, 16, 16])), "cls", "input_shape", "too small"),
    ("missing-model-file", _set(*T1, "model", value="graphs/nope.json"), "cls", "model",
     "nope.json"),
    ("missing-profile-file", _set(*T1, "profile", value="p/nope.json"), "cls", "profile",
     "nope.json"),
    ("missing-name", _del("name"), None, "name", "required"),
    ("null-name", _set("name", value=None), None, "name", "required"),
    ("missing-task-name", _del(*T1, "name"), "#1", "name", "required"),
    ("missing-period", _del(*T1, "period_ms"), "cls", "period_ms", "required"),
    ("missing-tasks", _del("tasks"), None, "tasks", "required"),
    ("empty-tasks", _set("tasks", value=[]), None, "tasks", "non-empty list"),
    ("tasks-not-list", _set("tasks", value={"det": {"period_ms": 1}}), None, "tasks",
     "non-empty list"),
    ("task-not-mapping", _set(*T1, value="cls"), "#1", None, "must be a mapping"),
    ("uppercase-scenario-name", _set("name", value="Demo"), None, "name", "[a-z0-9_-]+"),
    ("spaces-in-scenario-name", _set("name", value="my demo"), None, "name", "[a-z0-9_-]+"),
    ("newline-in-scenario-name", _set("name", value="demo\n"), None, "name", "[a-z0-9_-]+"),
    ("int-scenario-name", _set("name", value=12), None, "name", "non-empty string"),
    ("bad-policy", _set("policy", value="edf"), None, "policy", "np-edf"),
    ("bad-arrival", _set(*T1, "arrival", value="bursty"), "cls", "arrival", "sporadic"),
    ("jitter-equal-period", _set(*T1, "jitter_ms", value=20), "cls", "jitter_ms", "period"),
    ("jitter-over-period", _set(*T1, "jitter_ms", value=25), "cls", "jitter_ms", "period"),
    ("negative-jitter", _set(*T1, "jitter_ms", value=-1), "cls", "jitter_ms", ">= 0"),
    ("negative-offset", _set(*T1, "offset_ms", value=-1), "cls", "offset_ms", ">= 0"),
    ("negative-slack", _set(*T1, "slack_ms", value=-1), "cls", "slack_ms", ">= 0"),
    ("negative-seed", _set("seed", value=-1), None, "seed", ">= 0"),
    ("float-seed", _set("seed", value=1.5), None, "seed", "integer"),
    ("zero-duration", _set("duration_ms", value=0), None, "duration_ms", "> 0"),
    ("negative-duration", _set("duration_ms", value=-10), None, "duration_ms", "> 0"),
    ("float-batch", _set(*T1, "batch", value=1.5), "cls", "batch", "integer"),
    ("string-batch", _set(*T1, "batch", value="2"), "cls", "batch", "integer"),
    ("zero-batch", _set(*T1, "batch", value=0), "cls", "batch", ">= 1"),
    ("float-priority", _set(*T1, "priority", value=0.5), "cls", "priority", "integer"),
    ("budget-unknown-key", _set(*T1, "budget", value={"memroy_mb": 5}), "cls",
     "budget.memroy_mb", "did you mean 'memory_mb'"),
    ("budget-not-mapping", _set(*T1, "budget", value=256), "cls", "budget", "mapping"),
    ("budget-negative", _set(*T1, "budget", value={"memory_mb": -1}), "cls", "budget.memory_mb",
     "> 0"),
    ("gpu-memory-negative", _set("gpu", value={"memory_mb": -1}), None, "gpu.memory_mb", "> 0"),
    ("gpu-unknown-key", _set("gpu", value={"mem": 1}), None, "gpu.mem", "unknown key"),
    ("gpu-not-mapping", _set("gpu", value=[1]), None, "gpu", "mapping"),
    ("invalid-yaml", "name: demo\ntasks:\n  - name: a\n    period_ms: [1, 2\n", None, None,
     "invalid YAML at line 5"),
    ("invalid-yaml-indent", "name: demo\ntasks:\n  - name: a\n   period_ms: 1\n", None, None,
     "invalid YAML at line 4"),
    ("nul-byte", b"name: demo\ntasks:\n  - name: a\x00\n", None, None, "invalid YAML at line 3"),
    ("not-utf8", b"name: demo\n\ntasks: \xff\n", None, None, "invalid YAML at line 3"),
    ("document-is-list", "- name: demo\n- tasks: []\n", None, None, "must be a mapping"),
    ("document-is-scalar", "just text\n", None, None, "must be a mapping"),
    ("document-is-empty", "", None, None, "must be a mapping"),
    ("nan-period", "name: demo\ntasks:\n  - {name: cls, period_ms: .nan}\n", "cls", "period_ms",
     "finite number"),
    ("inf-period", "name: demo\ntasks:\n  - {name: cls, period_ms: .inf}\n", "cls", "period_ms",
     "finite number"),
    ("neg-inf-deadline", "name: demo\ntasks:\n  - {name: cls, period_ms: 1, deadline_ms: -.inf}\n",
     "cls", "deadline_ms", "finite number"),
    ("inf-wcet", "name: demo\ntasks:\n  - {name: cls, period_ms: 1, wcet_ms: .Inf}\n", "cls",
     "wcet_ms", "finite number"),
    ("nan-offset", "name: demo\ntasks:\n  - {name: cls, period_ms: 1, offset_ms: .NaN}\n", "cls",
     "offset_ms", "finite number"),
    ("inf-duration", "name: demo\nduration_ms: .inf\ntasks:\n  - {name: a, period_ms: 1}\n", None,
     "duration_ms", "finite number"),
    ("nan-gpu-memory", "name: demo\ngpu: {memory_mb: .nan}\ntasks:\n  - {name: a, period_ms: 1}\n",
     None, "gpu.memory_mb", "finite number"),
]  # fmt: skip


def _write_case(tmp_path: Path, case: Mutation | str | bytes) -> Path:
    path = tmp_path / "in" / "bad.yaml"
    if isinstance(case, str | bytes):
        return write(path, case)
    doc = copy.deepcopy(base_doc())
    case(doc)
    return write(path, doc)


@pytest.mark.parametrize(
    ("case", "task", "field", "fragment"),
    [pytest.param(*c[1:], id=c[0]) for c in BAD_CASES],
)
def test_bad_input_exits_2_with_one_line_naming_file_task_field(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: Mutation | str | bytes,
    task: str | None,
    field: str | None,
    fragment: str,
) -> None:
    path = _write_case(tmp_path, case)

    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    exc = info.value
    assert (exc.path, exc.task, exc.field) == (str(path), task, field)
    assert isinstance(exc, InputError)

    out = tmp_path / "out"
    assert run_sim(path, out) == 2
    cap = capsys.readouterr()
    line = assert_one_line_error(cap.err, path, task=task, field=field, fragment=fragment)
    assert line.startswith("aegis: error: ")
    assert cap.out == ""
    assert not out.exists(), "nothing may be written for a bad scenario"


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert (info.value.path, info.value.task, info.value.field) == (str(path), None, None)
    out = tmp_path / "out"
    assert run_sim(path, out) == 2
    assert_one_line_error(
        capsys.readouterr().err, path, task=None, field=None, fragment="no such scenario file"
    )
    assert not out.exists()


def test_directory_instead_of_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "adir.yaml"
    path.mkdir()
    out = tmp_path / "out"
    assert run_sim(path, out) == 2
    assert_one_line_error(capsys.readouterr().err, path, task=None, field=None, fragment="read")
    assert not out.exists()


def test_unknown_key_lists_allowed_keys() -> None:
    doc = base_doc()
    doc["tasks"][0]["perod_ms"] = 10
    with pytest.raises(ScenarioError) as info:
        parse_scenario(doc, "x.yaml")
    msg = str(info.value)
    assert msg.startswith("x.yaml: task 'det': field 'perod_ms': unknown key")
    assert "period_ms" in info.value.reason and "deadline_ms" in info.value.reason


def test_first_bad_task_is_reported() -> None:
    doc = base_doc()
    doc["tasks"][0]["period_ms"] = -1
    doc["tasks"][1]["period_ms"] = "x"
    with pytest.raises(ScenarioError) as info:
        parse_scenario(doc, "x.yaml")
    assert (info.value.task, info.value.field) == ("det", "period_ms")


def test_error_message_format_from_attributes() -> None:
    e = ScenarioError("s.yaml", "boom", task="a", field="period_ms")
    assert str(e) == "s.yaml: task 'a': field 'period_ms': boom"
    assert (e.path, e.task, e.field, e.reason) == ("s.yaml", "a", "period_ms", "boom")
    assert str(ScenarioError("s.yaml", "boom")) == "s.yaml: boom"
    assert e.exit_code == 2


def test_memory_mb_counts_mib() -> None:
    s = parse_scenario(
        {
            "name": "m",
            "gpu": {"memory_mb": 1.5},
            "tasks": [{"name": "a", "period_ms": 1, "budget": {"memory_mb": 3}}],
        }
    )
    assert BYTES_PER_MB == 1_048_576
    assert s.gpu_memory_bytes == 1_572_864
    assert s.tasks[0].memory_budget_bytes == 3 * 1_048_576


def test_exponent_notation_reads_as_a_number(tmp_path: Path) -> None:
    """YAML 1.1 reads ``1e3`` as a string; the loader reads it as 1000.0, as YAML 1.2 does."""
    path = tmp_path / "s.yaml"
    path.write_text("name: demo\ntasks:\n  - {name: cls, period_ms: 1e3, wcet_ms: 2.5E-1}\n")
    task = load_scenario(path).tasks[0]
    assert (task.period_ns, task.wcet_ns) == (1_000_000_000, 250_000)


@pytest.mark.parametrize("value", ["inf", "nan", "1e-9"])
def test_duration_override_must_be_finite_and_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: demo\ntasks:\n  - {name: cls, period_ms: 10, wcet_ms: 1}\n")
    assert main(["sim", str(path), "--duration-ms", value, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--duration-ms must be a finite number > 0" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_kernels_give_the_wcet_when_it_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: demo\ntasks:\n  - {name: p, period_ms: 40, kernels_ms: [3, 2.5, 0.5]}\n")
    scenario = load_scenario(path)
    task, budget = scenario.tasks[0], budgets(scenario)[0]
    assert task.kernels_ns == (3_000_000, 2_500_000, 500_000) and task.wcet_ns is None
    assert (budget.wcet_ns, budget.wcet_from) == (6_000_000, WcetFrom.KERNELS_MS)
