"""ONNX models in scenarios: ``model: x.onnx`` (relative to the scenario) with ``input_shape``
and ``batch``, run by every command with the model's own weights (compared with onnxruntime),
and every bad model, shape or weights file refused in one line naming file, task and field."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import helper  # noqa: E402
from onnx_util import ATOL, RTOL, init, save  # noqa: E402

from aegis_core.graph import weights  # noqa: E402
from aegis_core.graph.zoo import resolve_model, task_graph  # noqa: E402
from aegis_core.model.errors import InputError, ScenarioError  # noqa: E402
from aegis_core.model.scenario import load_scenario  # noqa: E402
from aegis_core.tools.cli import main  # noqa: E402
from aegis_exec.kernels import CompiledGraph  # noqa: E402


def _cnn(folder: Path, seed: int = 1) -> Path:
    """Conv-Relu-MaxPool-Conv-Relu-GAP-Flatten-Gemm, batch, height and width dynamic."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    inits = [
        init(rng, "w1", 6, 3, 3, 3), init(rng, "b1", 6), init(rng, "w2", 8, 6, 3, 3),
        init(rng, "b2", 8), init(rng, "fw", 5, 8), init(rng, "fb", 5),
    ]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    return save(folder, nodes, inits, ["N", 3, "H", "W"], ["N", 5])


def _scenario(folder: Path, model: str, **task: Any) -> Path:
    fields = {"name": "net", "model": model, "period_ms": 20, "wcet_ms": 2, **task}
    lines = [f"    {k}: {json.dumps(v)}" for k, v in fields.items()]
    lines[0] = "  - " + lines[0].lstrip()
    path = folder / "s.yaml"
    path.write_text(
        "name: onnx_s\npolicy: lp-edf\nduration_ms: 60\ntasks:\n" + "\n".join(lines) + "\n"
    )
    return path


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    return np.asarray(y)


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("aegis: error: "), err
    return err


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    _cnn(tmp_path / "models")
    return _scenario(tmp_path, "models/net.onnx", input_shape=[3, 12, 12], batch=2)


def test_a_relative_onnx_model_is_imported_for_the_tasks_batch_and_shape(scenario: Path) -> None:
    s = load_scenario(scenario)
    task = s.tasks[0]
    assert task.model == str(scenario.parent / "models" / "net.onnx")
    assert (task.batch, task.input_shape) == (2, (3, 12, 12))
    g = task_graph(s, task)
    assert g is not None and g.tensors[g.input].shape == (2, 3, 12, 12)
    assert g.tensors[g.output].shape == (2, 5)
    assert g.weights is not None and g.weights.kind == "onnx"
    assert g.weights.path == str((scenario.parent / "models" / "net.onnx").absolute())
    data = (scenario.parent / "models" / "net.onnx").read_bytes()
    assert g.weights.sha256 == hashlib.sha256(data).hexdigest()
    assert task_graph(s, task) is g  # imported once per process: every command shares it


@pytest.mark.parametrize(
    "argv",
    [["check", "--runs", "2"], ["admit"], ["sim", "--quiet", "--out", "{out}"],
     ["exec", "--backend", "numpy", "--quiet", "--no-probe", "--duration-ms", "40",
      "--out", "{out}"], ["memory"]],
    ids=lambda a: a[0],
)  # fmt: skip
def test_every_command_runs_an_onnx_task(
    scenario: Path, argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(out=tmp_path / "out") for a in argv]
    assert main([args[0], str(scenario), *args[1:]]) == 0
    out = capsys.readouterr().out
    assert "net" in out
    if args[0] == "exec":
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["tasks"][0]["completed"] >= 1 and summary["tasks"][0]["misses"] == 0


def test_profile_on_numpy_measures_the_imported_model(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prof"
    argv = ["profile", str(scenario), "--backend", "numpy", "--samples", "30", "--warmup", "1",
            "--pace", "none", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    prof = json.loads((out / "net.json").read_text())
    assert prof["batch"] == 2 and prof["input_shape"] == [3, 12, 12] and prof["n"] <= 30


def test_the_real_weights_reach_the_compiled_graph(scenario: Path) -> None:
    s = load_scenario(scenario)
    g = task_graph(s, s.tasks[0])
    assert g is not None
    compiled = CompiledGraph(g, np)  # no weights put in by hand: the graph brings them
    x = np.random.default_rng(3).standard_normal((2, 3, 12, 12)).astype(np.float32)
    compiled.inputs[...] = x
    compiled.run()
    want = _ort(scenario.parent / "models" / "net.onnx", x)
    np.testing.assert_allclose(compiled.output, want, rtol=RTOL, atol=ATOL)
    random = CompiledGraph(dataclasses.replace(g, weights=None), np)
    random.inputs[...] = x
    random.run()
    assert not np.allclose(random.output, want, rtol=RTOL, atol=ATOL)  # the weights matter


def test_lp_edf_chunks_and_a_planned_arena_give_the_same_output(scenario: Path) -> None:
    from aegis_core.memory.planner import plan_model, usage_of
    from aegis_exec import arena

    s = load_scenario(scenario)
    g = task_graph(s, s.tasks[0])
    assert g is not None
    plan = plan_model(usage_of(g, executor=True))
    buf = arena.arena_buffer(np, plan.size)
    placed = CompiledGraph(g, np, placement=arena.Placement(buf, plan.offsets, np.float32))
    x = np.random.default_rng(4).standard_normal((2, 3, 12, 12)).astype(np.float32)
    placed.inputs[...] = x
    for chunk in g.chunks(3):  # preemption points at op boundaries
        placed.run(chunk)
    want = _ort(scenario.parent / "models" / "net.onnx", x)
    np.testing.assert_allclose(placed.output, want, rtol=RTOL, atol=ATOL)


def test_a_graph_file_from_aegis_import_runs_with_its_npz_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _cnn(tmp_path / "m")
    graph = tmp_path / "g" / "net.json"
    assert main(["import", str(model), "--input-shape", "1x3x10x10", "-o", str(graph)]) == 0
    capsys.readouterr()
    doc = json.loads(graph.read_text())
    npz = graph.parent / "net.weights.npz"
    assert doc["weights"] == {
        "kind": "npz", "path": "net.weights.npz",
        "sha256": hashlib.sha256(npz.read_bytes()).hexdigest(),
    }  # fmt: skip
    path = _scenario(tmp_path, "g/net.json")
    s = load_scenario(path)
    g = task_graph(s, s.tasks[0])
    assert g is not None and g.weights is not None and g.weights.kind == "npz"
    params = weights.load_weights(g)
    assert params is not None and set(params) == {
        n for n, t in g.tensors.items() if t.role == "weight"
    }
    with np.load(npz, allow_pickle=False) as saved:
        assert sorted(saved.files) == sorted(params)
    x = np.random.default_rng(5).standard_normal((1, 3, 10, 10)).astype(np.float32)
    compiled = CompiledGraph(g, np)
    compiled.inputs[...] = x
    compiled.run()
    np.testing.assert_allclose(compiled.output, _ort(model, x), rtol=RTOL, atol=ATOL)
    assert main(["exec", str(path), "--backend", "numpy", "--quiet", "--no-probe",
                 "--duration-ms", "40", "--out", str(tmp_path / "run")]) == 0  # fmt: skip


# ------------------------------------------------------------------------ refusals


def _exported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path, Path]:
    """A graph file with its npz from `aegis import -o`, and a scenario that runs it."""
    model = _cnn(tmp_path / "m")
    graph = tmp_path / "net.json"
    assert main(["import", str(model), "--input-shape", "1x3x8x8", "-o", str(graph)]) == 0
    capsys.readouterr()
    return graph, tmp_path / "net.weights.npz", _scenario(tmp_path, "net.json")


def _rewrite_npz(
    graph: Path,
    npz: Path,
    arrays: dict[str, Any],
    pickle: bool = False,
    raw: dict[str, tuple[dict[str, Any], bytes]] | None = None,
) -> None:
    """Replace the npz and record its new digest in the graph file (a consistent pair);
    ``raw``: members written as this ``.npy`` header and these data bytes instead."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=pickle, **{k: v for k, v in arrays.items() if k not in (raw or {})})
    if raw:
        with zipfile.ZipFile(buf, "a") as z:
            for name, (header, data) in raw.items():
                head = io.BytesIO()
                np.lib.format.write_array_header_1_0(head, header)
                z.writestr(f"{name}.npy", head.getvalue() + data)
    npz.write_bytes(buf.getvalue())
    doc = json.loads(graph.read_text())
    doc["weights"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    graph.write_text(json.dumps(doc))


def _arrays(npz: Path) -> dict[str, np.ndarray]:
    with np.load(npz) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        ("changed", "the weights file changed since graph 'net' was made from it"),
        ("missing", "no such weights file"),
        ("corrupt", "not a valid .npz weights file"),
        ("pickled", "tensor 'c1:w' is object, must be float32"),
        ("huge", "tensor 'c1:w' has shape [1000000000000], the graph's is [6, 3, 3, 3]"),
        ("fortran", "tensor 'c1:w' is stored in Fortran order"),
        ("short", "tensor 'c1:w' holds 16 bytes of data, a [6, 3, 3, 3] float32 array takes 648"),
        ("shape", "tensor 'c1:w' has shape [6, 3, 3], the graph's is [6, 3, 3, 3]"),
        ("float64", "tensor 'c1:w' is float64, must be float32"),
        ("extra", "tensor 'stray' is not a weight of the graph"),
        ("less", "tensor 'c1:w' is missing"),
        ("entry", "field 'weights.sha256' must be 64 hex digits"),
    ],
)
def test_bad_weights_files_are_refused_naming_file_task_and_tensor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spoil: str, message: str
) -> None:
    graph, npz, path = _exported(tmp_path, capsys)
    arrays = _arrays(npz)
    if spoil == "changed":
        arrays["c1:w"] = arrays["c1:w"] + 1
        np.savez(npz, **arrays)
    elif spoil == "missing":
        npz.unlink()
    elif spoil == "corrupt":
        _rewrite_npz(graph, npz, {})
        npz.write_bytes(b"PK\x03\x04 not a zip")
        doc = json.loads(graph.read_text())
        doc["weights"]["sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
        graph.write_text(json.dumps(doc))
    elif spoil == "pickled":
        _rewrite_npz(graph, npz, {**arrays, "c1:w": np.array([{"a": 1}], dtype=object)}, True)
    elif spoil in ("huge", "fortran", "short"):  # a header that lies, read before any array
        header = {"descr": "<f4", "fortran_order": spoil == "fortran", "shape": (6, 3, 3, 3)}
        if spoil == "huge":
            header["shape"] = (10**12,)
        _rewrite_npz(graph, npz, arrays, raw={"c1:w": (header, b"\0" * 16)})
    elif spoil == "shape":
        _rewrite_npz(graph, npz, {**arrays, "c1:w": arrays["c1:w"][..., 0]})
    elif spoil == "float64":
        _rewrite_npz(graph, npz, {**arrays, "c1:w": arrays["c1:w"].astype(np.float64)})
    elif spoil == "extra":
        _rewrite_npz(graph, npz, {**arrays, "stray": np.zeros(1, np.float32)})
    elif spoil == "less":
        _rewrite_npz(graph, npz, {k: v for k, v in arrays.items() if k != "c1:w"})
    else:
        doc = json.loads(graph.read_text())
        doc["weights"]["sha256"] = "beef"
        graph.write_text(json.dumps(doc))
    for argv in (["admit", str(path)], ["exec", str(path), "--backend", "numpy"]):
        err = _refused(capsys, argv)
        assert "s.yaml: task 'net': field 'model'" in err, err
        assert message in err, err
        assert "net.weights.npz" in err or "net.json" in err, err


def test_a_zip_bomb_member_is_refused_before_it_is_unpacked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph, npz, path = _exported(tmp_path, capsys)
    arrays = _arrays(npz)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in arrays.items():
            big = np.zeros(v.size * 1000, np.float32) if k == "c1:w" else v
            with z.open(f"{k}.npy", "w") as f:
                np.lib.format.write_array(f, big)
    npz.write_bytes(buf.getvalue())
    doc = json.loads(graph.read_text())
    doc["weights"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    graph.write_text(json.dumps(doc))
    err = _refused(capsys, ["admit", str(path)])
    assert "tensor 'c1:w'" in err and "bytes unpacked, more than a [6, 3, 3, 3] float32" in err


def test_a_changed_onnx_model_is_refused_when_its_weights_are_read(tmp_path: Path) -> None:
    model = _cnn(tmp_path)
    g = resolve_model(str(model), 1, (3, 8, 8))
    assert weights.load_weights(g) is not None
    _cnn(tmp_path, seed=2)  # other weights, same file
    with pytest.raises(InputError, match=r"net\.onnx: the ONNX model changed since graph 'net'"):
        weights.load_weights(g)
    with pytest.raises(InputError, match="changed since"):
        CompiledGraph(g, np)


@pytest.mark.parametrize(
    ("task", "field", "message"),
    [
        ({}, "input_shape", "input 'x' has shape [?, 3, ?, ?]: give input_shape with 3 sizes"),
        ({"input_shape": [3, 8]}, "input_shape", "give input_shape with 3 sizes"),
        ({"input_shape": [4, 8, 8]}, "input_shape", "static dimension 1 = 3"),
        ({"input_shape": [3, 1, 1]}, "model", "node"),
        ({"input_shape": [3, 8, 8], "batch": 0}, "batch", "must be"),
    ],
)
def test_bad_shapes_are_refused_naming_file_task_and_field(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    task: dict[str, Any],
    field: str,
    message: str,
) -> None:
    _cnn(tmp_path)
    path = _scenario(tmp_path, "net.onnx", **task)
    for command in (["admit"], ["sim", "--out", str(tmp_path / "o")], ["memory"]):
        err = _refused(capsys, [command[0], str(path), *command[1:]])
        assert f"s.yaml: task 'net': field '{field}'" in err and message in err, err
    assert not (tmp_path / "o").exists()


def test_a_missing_or_broken_onnx_file_names_the_model_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _scenario(tmp_path, "none.onnx", input_shape=[3, 8, 8])
    err = _refused(capsys, ["admit", str(path)])
    assert "field 'model'" in err and "no ONNX model at" in err and "none.onnx" in err
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x01junk")
    path = _scenario(tmp_path, "junk.onnx", input_shape=[3, 8, 8])
    err = _refused(capsys, ["admit", str(path)])
    assert "field 'model'" in err and "junk.onnx: not a valid ONNX model" in err
    save(tmp_path, [helper.make_node("Hardmax", ["x"], ["y"])], [], [1, 4], [1, 4])
    path = _scenario(tmp_path, "net.onnx")
    err = _refused(capsys, ["admit", str(path)])
    assert "field 'model'" in err and "net.onnx: node" in err and "(Hardmax)" in err, err


def test_a_graph_file_keeps_its_own_shape_and_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _exported(tmp_path, capsys)
    for extra, field in (({"input_shape": [3, 8, 8]}, "input_shape"), ({"batch": 2}, "batch")):
        path = _scenario(tmp_path, "net.json", **extra)
        with pytest.raises(ScenarioError, match=f"field '{field}': a graph file fixes its own"):
            load_scenario(path)
        err = _refused(capsys, ["admit", str(path)])
        assert f"task 'net': field '{field}'" in err


def test_the_cupy_backend_runs_the_real_weights(
    scenario: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the CuPy backend's logic (the NumPy stand-in of tests/fake_cupy.py), CUDA-graph
    path: the model's output for the backend's seeded input is onnxruntime's."""
    import sys

    import fake_cupy

    from aegis_core.run.plan import RunPlan
    from aegis_exec.backends import cupy as cb
    from aegis_exec.engine import task_work
    from aegis_exec.kernels import init_params
    from aegis_exec.testing import VirtualClock

    clock = VirtualClock()
    cp, _ = fake_cupy.make(clock)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    s = load_scenario(scenario)
    work = task_work(RunPlan.build(s), "cupy")
    backend = cb.CupyBackend(clock=clock)
    try:
        backend.prepare(work, None)
        (compiled,) = backend.graphs().values()
        x = init_params(compiled.graph, 0)[1]  # the input the backend put in (task 0's seed)
        compiled.run()
        got = np.array(compiled.output, copy=True)
    finally:
        backend.close()
    want = _ort(scenario.parent / "models" / "net.onnx", x)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ([], "field 'weights' must be an object with kind, path and sha256"),
        ({"kind": "pt", "path": "w", "sha256": "0" * 64}, "field 'weights.kind' must be one of"),
        ({"kind": "npz", "path": "", "sha256": "0" * 64}, "field 'weights.path' must be a file"),
        ({"kind": "npz", "path": "w", "sha256": "0" * 64, "x": 1}, "must be an object with"),
    ],
)
def test_a_bad_weights_entry_names_the_graph_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], entry: Any, message: str
) -> None:
    graph, _, _ = _exported(tmp_path, capsys)
    doc = json.loads(graph.read_text())
    doc["weights"] = entry
    graph.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"net\.json: not a valid graph file: ") as info:
        weights.load_graph_file(graph)
    assert message in str(info.value)


def test_a_tensor_twice_in_the_npz_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph, npz, path = _exported(tmp_path, capsys)
    arrays = _arrays(npz)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        for k in (*arrays, "c1:w"):
            with z.open(f"{k}.npy", "w") as f:
                np.lib.format.write_array(f, arrays[k])
    npz.write_bytes(buf.getvalue())
    doc = json.loads(graph.read_text())
    doc["weights"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    graph.write_text(json.dumps(doc))
    err = _refused(capsys, ["admit", str(path)])
    assert "tensor 'c1:w' appears twice" in err


def test_an_onnx_weights_entry_reimports_the_model(tmp_path: Path) -> None:
    model = _cnn(tmp_path / "m")
    g = resolve_model(str(model), 1, (3, 8, 8))
    doc = {**g.to_dict(), "weights": weights.weights_entry(g.weights, tmp_path / "g.json")}  # type: ignore[arg-type]
    assert doc["weights"]["path"] == "m/net.onnx"
    (tmp_path / "g.json").write_text(json.dumps(doc))
    back = weights.load_graph_file(tmp_path / "g.json")
    assert back.weights == g.weights
    params = weights.load_weights(back)
    assert params is not None and params.keys() == weights.load_weights(g).keys()  # type: ignore[union-attr]
