"""The onnxruntime backend: each task's model as an InferenceSession on its own worker stream,
under the same engine and loop as numpy. Nothing here asserts a wall-clock time: the backend
is driven on a virtual clock where it can be (its streams are threads: a job ends when it
ends, the clock only stamps it), and runs on the wall clock assert only what holds on any
host (every job has a recorded outcome)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import helper  # noqa: E402
from onnx_util import init, save  # noqa: E402

from aegis_core.graph.ir import Graph, WeightsRef  # noqa: E402
from aegis_core.graph.onnx_export import EXPORTERS  # noqa: E402
from aegis_core.graph.onnx_import import import_onnx  # noqa: E402
from aegis_core.graph.weights import load_graph_file, load_weights  # noqa: E402
from aegis_core.graph.zoo import build_model  # noqa: E402
from aegis_core.model.errors import BackendError, InputError, ScenarioError  # noqa: E402
from aegis_core.model.scenario import parse_scenario  # noqa: E402
from aegis_core.model.status import JobStatus  # noqa: E402
from aegis_core.run.plan import RunPlan  # noqa: E402
from aegis_core.run.testing import run_in_memory  # noqa: E402
from aegis_core.tools.cli import main  # noqa: E402
from aegis_exec import backends, kernels  # noqa: E402
from aegis_exec.backends.base import TaskWork  # noqa: E402
from aegis_exec.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from aegis_exec.backends.workers import WARMUP_RUNS, WorkerStream  # noqa: E402
from aegis_exec.engine import ExecEngine, task_work  # noqa: E402
from aegis_exec.kernels import CompiledGraph, init_params, reference, seeded_input  # noqa: E402
from aegis_exec.testing import VirtualClock  # noqa: E402

RTOL, ATOL = 1e-3, 1e-4
ROOT = Path(__file__).resolve().parent.parent


def conv_model(tmp_path: Path) -> tuple[Path, Graph]:
    """A small exported-style CNN (dynamic batch, Conv-Relu-GAP-Flatten-Gemm) imported with
    its ONNX file as its weights, as a `model: x.onnx` task's graph is."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    inits = [init(rng, "w", 8, 3, 3, 3), init(rng, "b", 8), init(rng, "fw", 5, 8),
             init(rng, "fb", 5)]  # fmt: skip
    path = save(tmp_path, nodes, inits, ["N", 3, 12, 12], ["N", 5])
    graph = import_onnx(path, batch=2).graph
    if graph.weights is None:  # until the importer records the file itself
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        graph = dataclasses.replace(graph, weights=WeightsRef("onnx", str(path), digest))
    return path, graph


def works(*graphs: Graph) -> list[TaskWork]:
    return [TaskWork(i, f"t{i}", g, (range(len(g.ops)),), (1_000_000,))
            for i, g in enumerate(graphs)]  # fmt: skip


def run_jobs(backend: OnnxRuntimeBackend, tasks: list[int]) -> list[Any]:
    for token, task in enumerate(tasks):
        backend.launch(task, 0, token, token)
    backend.synchronize()
    _, done = backend.snapshot()
    return sorted(done, key=lambda f: f.token)


def test_builtin_and_imported_models_run_with_numpys_inputs_and_weights(tmp_path: Path) -> None:
    path, imported = conv_model(tmp_path)
    builtins = [build_model("tiny_cnn", 2), build_model("bert_tiny", 1, (8, 128))]
    clock = VirtualClock(5)
    backend = OnnxRuntimeBackend(clock=clock)
    try:
        backend.prepare(works(*builtins, imported))
        assert WorkerStream.live >= 3
        done = run_jobs(backend, [0, 1, 2, 0, 2])
        assert [f.token for f in done] == [0, 1, 2, 3, 4]
        assert all(f.error is None and f.start_ns == f.end_ns == 5 for f in done)
        assert backend.snapshot() == (5, [])  # each end returned once
        sessions = backend.sessions()
        for i, g in enumerate(builtins):  # the numpy backend's seed: the task's index
            compiled = CompiledGraph(g, np, seed=i)
            compiled.run()
            np.testing.assert_allclose(sessions[i].output().reshape(compiled.output.shape),
                                       compiled.output, rtol=RTOL, atol=ATOL)  # fmt: skip
        # the imported model runs its own file: its real weights, the seed's input
        real = import_onnx(path, batch=2)
        x = init_params(imported, 2)[1]
        want = reference(real.graph, real.params, x)
        np.testing.assert_allclose(sessions[2].output(), want.reshape(2, 5), rtol=RTOL,
                                   atol=ATOL)  # fmt: skip
        report = backend.report()
        assert report["provider"] in ("CPUExecutionProvider", "CUDAExecutionProvider")
        assert report["versions"] == {"onnxruntime": ort.__version__}
        assert report["threads_per_stream"] == {"intra_op": 1, "inter_op": 1}
        assert report["memory"]["bound_io_bytes"] > 0 and report["cuda_graphs"] is False
    finally:
        backend.close()
    backend.close()  # idempotent
    assert WorkerStream.live == 0 and backend.sessions() == {}
    assert backend.report()["memory"]["bound_io_bytes"] > 0  # the report outlives close


def test_a_task_without_model_gets_no_session_and_cannot_launch() -> None:
    backend = OnnxRuntimeBackend(clock=VirtualClock())
    try:
        backend.prepare([TaskWork(0, "bare", None, (range(1),), (1,)),
                         *works(build_model("mlp", 1, (16,)))[:1]])  # fmt: skip
        assert sorted(backend.sessions()) == [1] and backend.graphs() == {}
        with pytest.raises(BackendError, match="task 'bare' has no model"):
            backend.launch(0, 0, 0, 0)
    finally:
        backend.close()


def test_a_model_ort_cannot_load_is_one_line_naming_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, graph = conv_model(tmp_path)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("[ONNXRuntimeError] : 10 : INVALID_GRAPH\nnode 3: bad")

    monkeypatch.setattr(ort, "InferenceSession", refuse)
    for g in (graph, build_model("tiny_cnn")):  # its own file, or an exported one
        backend = OnnxRuntimeBackend(clock=VirtualClock())
        try:
            with pytest.raises(BackendError) as err:
                backend.prepare(works(g))
        finally:
            backend.close()
        message = str(err.value)
        assert "\n" not in message and "for task 't0'" in message
        assert "onnxruntime failed" in message and "INVALID_GRAPH node 3: bad" in message
        assert WorkerStream.live == 0


def test_a_model_ort_refuses_at_load_is_one_line_and_ort_logs_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """An imported MaxPool whose pads reach its kernel size: AegisRT runs it, ORT refuses it
    while loading (its own log would print that on stderr in colour, over two lines)."""
    node = helper.make_node(
        "MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2], pads=[2, 2, 2, 2]
    )
    graph = import_onnx(save(tmp_path, [node], [], [1, 2, 6, 6], [1, 2, 8, 8])).graph
    backend = OnnxRuntimeBackend(clock=VirtualClock())
    try:
        with pytest.raises(BackendError) as err:
            backend.prepare(works(graph))
    finally:
        backend.close()
    message = str(err.value)
    assert "Pad should be smaller than kernel." in message and "for task 't0'" in message
    assert "\n" not in message and "\\n" not in message
    assert capfd.readouterr().err == ""


def test_an_onnx_file_changed_since_its_import_is_refused_not_loaded(tmp_path: Path) -> None:
    path, graph = conv_model(tmp_path)
    path.write_bytes(path.read_bytes() + b"\x00")  # a different file under the same name
    backend = OnnxRuntimeBackend(clock=VirtualClock())
    try:
        changed = rf"^{path}: the ONNX model changed since graph 'net' was made"
        with pytest.raises(InputError, match=changed):
            backend.prepare(works(graph))
    finally:
        backend.close()
    assert WorkerStream.live == 0


def sessions_made(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The model argument of every InferenceSession built from now on."""
    made: list[Any] = []
    real = ort.InferenceSession

    def session(model: Any, *args: Any, **kwargs: Any) -> Any:
        made.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", session)
    return made


def test_a_relative_onnx_path_reaches_the_session_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, graph = conv_model(tmp_path)
    assert graph.weights is not None and Path(graph.weights.path).is_absolute()
    monkeypatch.chdir(tmp_path)
    relative = dataclasses.replace(graph.weights, path=path.name)  # e.g. built by hand
    made = sessions_made(monkeypatch)
    backend = OnnxRuntimeBackend(clock=VirtualClock())
    try:
        backend.prepare(works(dataclasses.replace(graph, weights=relative)))
        assert made == [str(path)] and Path(made[0]).is_absolute()
    finally:
        backend.close()


def test_weights_refs_are_absolute_however_their_files_were_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = conv_model(tmp_path)
    monkeypatch.chdir(tmp_path)
    ref = import_onnx(Path(path.name), batch=2).graph.weights
    assert ref is not None and ref.path == str(path)
    assert main(["import", path.name, "--input-shape", "2x3x12x12", "-o", "g.json"]) == 0
    capsys.readouterr()
    assert json.loads(Path("g.json").read_text())["weights"]["path"] == "g.weights.npz"
    ref = load_graph_file("g.json").weights
    assert ref is not None and ref.kind == "npz" and ref.path == str(tmp_path / "g.weights.npz")


def npz_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Graph]:
    """``aegis import -o graph.json`` of the conv model: a graph file with npz weights."""
    path, _ = conv_model(tmp_path)
    out = tmp_path / "graph.json"
    assert main(["import", str(path), "--input-shape", "2x3x12x12", "-o", str(out)]) == 0
    capsys.readouterr()
    graph = load_graph_file(out)
    assert graph.weights is not None and graph.weights.kind == "npz"
    return out, graph


def test_a_graph_file_with_npz_weights_runs_with_the_numpy_backends_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, graph = npz_graph(tmp_path, capsys)
    assert backends.spec("onnxruntime").refuses(graph) is None
    made = sessions_made(monkeypatch)
    backend = OnnxRuntimeBackend(clock=VirtualClock())
    try:
        backend.prepare(works(build_model("mlp", 1, (16,)), graph))
        assert len(made) == 2 and all(isinstance(m, bytes) for m in made)  # both exported
        run_jobs(backend, [1])
        got = backend.sessions()[1].output()
    finally:
        backend.close()
    compiled = CompiledGraph(graph, np, seed=1)  # the numpy backend: real weights, seed 1
    compiled.run()
    np.testing.assert_allclose(got, compiled.output, rtol=RTOL, atol=ATOL)
    real = load_weights(graph)
    assert real is not None
    want = reference(graph, real, seeded_input(graph, 1))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    random = reference(graph, init_params(graph, 1)[0], seeded_input(graph, 1))
    assert not np.allclose(want, random, rtol=RTOL, atol=ATOL)  # the real weights count


def test_real_weights_draw_only_the_seeded_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, npz = npz_graph(tmp_path, capsys)
    (tmp_path / "o").mkdir()
    _, onnx_file = conv_model(tmp_path / "o")
    drawn: list[str] = []
    real = kernels.init_params

    def counted(graph: Graph, seed: int = 0) -> Any:
        drawn.append(graph.name)
        return real(graph, seed)

    monkeypatch.setattr(kernels, "init_params", counted)
    backend = OnnxRuntimeBackend(clock=VirtualClock())
    try:
        backend.prepare(works(npz, onnx_file, build_model("tiny_cnn")))
    finally:
        backend.close()
    CompiledGraph(npz, np)
    CompiledGraph(onnx_file, np)
    assert drawn == ["tiny_cnn"]  # random weights only where the graph has none
    CompiledGraph(build_model("mlp", 1, (8,)), np)
    assert drawn == ["tiny_cnn", "mlp"]


def test_exec_runs_a_graph_file_with_npz_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph_file, _ = npz_graph(tmp_path, capsys)
    task = {"name": "g", "model": str(graph_file), "period_ms": 10, "deadline_ms": 500,
            "wcet_ms": 5}  # fmt: skip
    path, out = write_scenario(tmp_path, [task]), tmp_path / "ex"
    assert main(["exec", path, "--no-probe", "--backend", "onnxruntime", "--out", str(out)]) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["jobs"] == 5 and summary["exec"]["faulted_tasks"] == {}


def test_a_chunked_work_is_refused_by_the_backend_itself() -> None:
    g = build_model("tiny_cnn")
    work = TaskWork(0, "c", g, tuple(g.chunks(2)), (1, 1))
    backend = OnnxRuntimeBackend(clock=VirtualClock())
    try:
        with pytest.raises(BackendError, match="runs a whole model per launch, not 2 chunks"):
            backend.prepare([work])
    finally:
        backend.close()


FAULTY_CALL = WARMUP_RUNS + 2  # each session: warm-ups, the first job, then the second fails


def failing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every session's run raises (a two-line message) on its FAULTY_CALL-th call."""
    real = ort.InferenceSession.run_with_iobinding
    calls: dict[int, int] = {}

    def run(self: Any, binding: Any, *args: Any) -> Any:
        calls[id(self)] = n = calls.get(id(self), 0) + 1
        if n == FAULTY_CALL:
            raise RuntimeError("boom\nat node 7")
        return real(self, binding, *args)

    monkeypatch.setattr(ort.InferenceSession, "run_with_iobinding", run)


def test_a_run_that_raises_is_that_jobs_fault_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failing_runs(monkeypatch)
    scenario = parse_scenario({"name": "f", "duration_ms": 60, "tasks": [
        {"name": "a", "model": "tiny_cnn", "period_ms": 10, "deadline_ms": 500, "wcet_ms": 5},
        {"name": "b", "model": "mlp", "input_shape": [64], "period_ms": 15, "deadline_ms": 500,
         "wcet_ms": 5}]})  # fmt: skip
    engine = ExecEngine("onnxruntime")
    try:
        _, jobs = run_in_memory(scenario, engine)
        report = engine.report()
    finally:
        engine.close()
    by_id = {j.id: j for j in jobs}
    assert len(jobs) == 6 + 4
    for failed in ("a#1", "b#1"):
        job = by_id[failed]
        assert job.status is JobStatus.FAILED and job.error is not None
        assert "boom" in job.error and "\n" not in job.error and "onnxruntime" in job.error
    others = [j for j in jobs if j.id not in ("a#1", "b#1")]
    assert all(j.status is JobStatus.COMPLETED for j in others)
    assert sorted(report["faulted_tasks"]) == ["a", "b"]


TASKS = [
    {"name": "cnn", "model": "tiny_cnn", "period_ms": 10, "deadline_ms": 500, "wcet_ms": 3},
    {"name": "mlp", "model": "mlp", "input_shape": [256], "arrival": "sporadic",
     "period_ms": 15, "slack_ms": 5, "deadline_ms": 500, "wcet_ms": 2, "offset_ms": 2},
]  # fmt: skip


def write_scenario(tmp_path: Path, tasks: list[dict[str, Any]], policy: str = "np-edf") -> str:
    path = tmp_path / "s.yaml"
    doc = {"name": "s", "policy": policy, "duration_ms": 50, "seed": 3, "tasks": tasks}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return str(path)


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("aegis: error:")]


def probes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The backend of every exec probe from now on (each still runs)."""
    import aegis_core.tools.probe as probe_module

    calls: list[str] = []
    real = probe_module.probe

    def counted(scenario: Any, backend: str, *args: Any) -> Any:
        calls.append(backend)
        return real(scenario, backend, *args)

    monkeypatch.setattr(probe_module, "probe", counted)
    return calls


def test_exec_writes_the_numpy_layout_and_every_job_has_an_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, out = write_scenario(tmp_path, TASKS), tmp_path / "ex"
    probed = probes(monkeypatch)
    assert main(["exec", path, "--backend", "onnxruntime", "--out", str(out)]) == 0
    assert probed == ["onnxruntime"]  # a run the engine accepts is probed, once
    assert f"results: {out}/" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        ".aegis-results", "jobs.csv", "summary.json", "trace.json", "trace.jsonl",
    ]  # fmt: skip
    with open(out / "jobs.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["engine"], summary["backend"]) == ("exec", "onnxruntime")
    assert summary["versions"]["onnxruntime"] == ort.__version__
    assert summary["jobs"] == len(rows) == 5 + 3
    assert {r["status"] for r in rows} <= {"completed", "missed"}  # an outcome each
    assert summary["misses"] == sum(int(r["end_ns"]) > int(r["deadline_ns"]) for r in rows)
    exec_ = summary["exec"]
    assert exec_["provider"] in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert exec_["memory_plan"] is None and exec_["cuda_graphs"] is False
    assert exec_["faulted_tasks"] == {}
    trace = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "complete" for r in trace) == 8


def test_without_onnxruntime_the_backend_is_exit_2_with_the_pip_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    assert not backends.usable("onnxruntime") and backends.usable("numpy")
    path, out = write_scenario(tmp_path, TASKS), tmp_path / "ex"
    assert main(["exec", path, "--backend", "onnxruntime", "--out", str(out)]) == 2
    (line,) = errors(capsys.readouterr().err)
    assert "the onnxruntime backend needs the onnxruntime package" in line
    assert "pip install 'aegisrt[onnx]'" in line
    assert not out.exists()
    assert backends.resolve("auto") != "onnxruntime"  # never picked by auto


def test_a_chunked_policy_is_refused_before_anything_is_written_or_probed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # lp_edf.yaml's planner keeps two chunks after admission merges its kernels
    src = yaml.safe_load((ROOT / "scenarios" / "lp_edf.yaml").read_text(encoding="utf-8"))
    src["duration_ms"] = 50
    path = tmp_path / "lp.yaml"
    path.write_text(yaml.safe_dump(src), encoding="utf-8")
    out = tmp_path / "ex"
    probed = probes(monkeypatch)
    args = ["exec", str(path), "--out", str(out), "--backend"]
    assert main([*args, "onnxruntime"]) == 2
    (line,) = errors(capsys.readouterr().err)
    assert "task 'planner'" in line and "field 'policy'" in line
    assert "policy lp-edf runs each job as 2 chunks" in line and "whole model per launch" in line
    assert not out.exists() and probed == []  # refused before any model is loaded or timed
    scenario = parse_scenario(src)
    from aegis_core.analysis.admission import admit

    plan = RunPlan.build(scenario, admission=admit(scenario))
    assert [len(w.ranges) for w in task_work(plan, "numpy")] == [1, 1, 2]  # numpy runs chunks
    assert not backends.spec("onnxruntime").caps.op_chunks
    assert backends.spec("numpy").caps.op_chunks and backends.spec("cupy").caps.op_chunks


def test_an_unexportable_model_is_refused_naming_task_and_operator_unprobed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(EXPORTERS, "linear")
    probed = probes(monkeypatch)
    path, out = write_scenario(tmp_path, TASKS), tmp_path / "ex"
    assert main(["exec", path, "--backend", "onnxruntime", "--out", str(out)]) == 2
    (line,) = errors(capsys.readouterr().err)
    assert "task 'cnn'" in line and "field 'model'" in line and "(linear)" in line
    assert not out.exists() and probed == []
    # numpy has its own kernels: the export table is not its business
    scenario = parse_scenario({"name": "s", "tasks": TASKS})
    assert len(task_work(RunPlan.build(scenario), "numpy")) == 2
    with pytest.raises(ScenarioError, match="cannot run model 'tiny_cnn'"):
        task_work(RunPlan.build(scenario), "onnxruntime")


def test_profile_on_onnxruntime_writes_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, out = write_scenario(tmp_path, TASKS), tmp_path / "prof"
    argv = ["profile", path, "--backend", "onnxruntime", "--out", str(out), "--samples", "30"]
    assert main(argv) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["cnn.json", "mlp.json"]
    for name in ("cnn", "mlp"):
        p = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
        assert p["backend"] == "onnxruntime" and p["task"] == name
        assert len(p["samples_ns"]) >= 20 and all(s > 0 for s in p["samples_ns"])


def test_the_backend_module_and_exporter_load_neither_onnx_nor_onnxruntime() -> None:
    probe = ("import aegis_exec.backends, aegis_exec.backends.onnxruntime, "
             "aegis_core.graph.onnx_export, aegis_exec.engine\n"
             "import sys; print(' '.join(sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=ROOT)  # fmt: skip
    modules = set(out.stdout.split())
    assert "aegis_exec.backends.onnxruntime" in modules
    assert not modules & {"onnx", "onnxruntime"}
