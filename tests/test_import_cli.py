"""``aegis import``: the summary (ops in and out, parameters, compute, the planned activation
memory), ``-o`` (a graph file and its weights, never over a user's file), ``--verify``
against onnxruntime (exit 1 above the tolerance), and ``aegis.import_model``."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import helper, numpy_helper  # noqa: E402
from onnx_util import init, save  # noqa: E402

import aegis  # noqa: E402
from aegis_core.graph.weights import load_graph_file, load_weights  # noqa: E402
from aegis_core.memory.planner import ALIGN, plan_model, usage_of  # noqa: E402
from aegis_core.tools import import_model  # noqa: E402
from aegis_core.tools.cli import main  # noqa: E402


def _mlp(folder: Path, seed: int = 0) -> Path:
    """MatMul+Add (an exported Linear), Relu, Gemm, Softmax; batch dynamic."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m"]),
        helper.make_node("Add", ["m", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["y"], axis=-1),
    ]
    inits = [init(rng, "w1", 16, 32), init(rng, "b1", 32), init(rng, "w2", 4, 32),
             init(rng, "b2", 4)]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    return save(folder, nodes, inits, ["N", 16], ["N", 4])


def _cnn(folder: Path) -> Path:
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["y"]),
    ]
    inits = [init(rng, "w", 4, 3, 3, 3), init(rng, "b", 4), init(rng, "w2", 4, 4, 3, 3),
             init(rng, "b2", 4)]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    return save(folder, nodes, inits, ["N", 3, "H", "W"], ["N", 4])


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("aegis: error: "), err
    return err


def test_the_summary_counts_ops_parameters_compute_and_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _cnn(tmp_path)
    assert main(["import", str(path), "--input-shape", "2x3x8x8"]) == 0
    out = capsys.readouterr().out
    assert "graph 'net': batch 2, input 'x' [2, 3, 8, 8], output 'y' [2, 4]" in out
    assert "ONNX ops (6): Conv 2, Relu 2, Flatten 1, GlobalAveragePool 1" in out
    assert "IR ops (5): conv2d 2, relu 2, avgpool_global 1" in out
    g = aegis.import_model(path, input_shape=(3, 8, 8), batch=2)
    params = 4 * 3 * 9 + 4 + 4 * 4 * 9 + 4
    assert sum(t.size for t in g.tensors.values() if t.role == "weight") == params
    assert f"parameters: {params:,} in the ONNX initializers; weights as run: {params:,} (" in out
    assert f"compute: {g.flops / 1e9:.4g} GFLOPs, {g.flops / 2e9:.4g} GMACs per batch of 2" in out
    plan = plan_model(usage_of(g, executor=True), ALIGN)  # what `aegis memory` plans
    assert plan.size < plan.naive
    assert f"planned {plan.size / 1024:,.1f} KiB, naive {plan.naive / 1024:,.1f} KiB" in out
    assert not list(tmp_path.glob("*.json"))  # nothing written without -o


def test_parameters_are_the_onnx_initializers_and_weights_what_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A BatchNorm folded into its conv: 4 x 8 parameters fewer run; an upsampling Resize:
    interpolation matrices run that the ONNX file never held."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"]),
        helper.make_node("Resize", ["n", "", "s"], ["y"], mode="nearest"),
    ]
    var = numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "v")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")
    inits = [init(rng, "w", 8, 3, 1, 1), *(init(rng, n, 8) for n in ["g", "be", "m"]), var]
    path = save(tmp_path, [*nodes], [*inits, scales], [1, 3, 4, 4])
    assert main(["import", str(path)]) == 0
    out = capsys.readouterr().out
    onnx_params = 8 * 3 + 4 * 8 + 4  # the conv weight, BN's four vectors, the scales
    run = 8 * 3 + 8 + 2 * (8 * 4)  # the folded weight and bias, two 8x4 matrices
    assert f"parameters: {onnx_params:,} in the ONNX initializers; weights as run: {run:,} (" in out


def test_an_input_shape_that_is_not_plain_digits_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _cnn(tmp_path)
    for bad in ("1x3x\u00b2x8", "1x3x" + "9" * 5000 + "x8", "1x3x8x8x", "0x3x8x8", "1x-3x8x8"):
        err = _refused(capsys, ["import", str(path), "--input-shape", bad])
        assert "--input-shape must be sizes joined by x" in err, bad


def test_verify_compares_with_onnxruntime_within_the_tolerance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _mlp(tmp_path)
    assert main(["import", str(path), "--input-shape", "3x16", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "fp32 tolerance |ours - ort| <= 0.0001 + 0.001 * |ort|" in out
    m = re.search(r"output 'y' \[3, 4\]: max abs error (\S+), max rel error (\S+): ok", out)
    assert m is not None, out
    assert float(m.group(1)) <= 1e-4


def test_verify_fails_when_the_weights_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import aegis_exec.kernels as kernels

    real = kernels.load_weights

    def tampered(graph: Any) -> Any:
        params = real(graph)
        return {k: v * 1.5 if k.endswith(":w") else v for k, v in params.items()}

    monkeypatch.setattr(kernels, "load_weights", tampered)
    path = _mlp(tmp_path)
    out_file = tmp_path / "g.json"
    assert main(["import", str(path), "--verify", "-o", str(out_file)]) == 1
    out = capsys.readouterr().out
    assert "ABOVE THE TOLERANCE" in out and "graph not written" in out
    assert not out_file.exists() and not (tmp_path / "g.weights.npz").exists()


def test_a_graph_file_with_edited_weights_is_caught_by_its_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _mlp(tmp_path)
    graph = tmp_path / "out" / "mlp.json"
    assert main(["import", str(path), "-o", str(graph), "--name", "mlp"]) == 0
    assert "graph: " in capsys.readouterr().out
    g = load_graph_file(graph)
    assert g.name == "mlp" and g.weights is not None and g.weights.kind == "npz"
    npz = graph.parent / "mlp.weights.npz"
    assert g.weights.path == str(npz.absolute())
    params = load_weights(g)
    assert params is not None
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"x": x})
    ours = import_model._run_graph()(g, x)
    np.testing.assert_allclose(ours, want, rtol=1e-3, atol=1e-4)
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    first = next(iter(arrays))
    arrays[first] = arrays[first] * 2
    np.savez(npz, **arrays)
    with pytest.raises(aegis.InputError, match=r"mlp\.weights\.npz: the weights file changed"):
        load_weights(g)


def test_import_o_never_overwrites_a_users_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _mlp(tmp_path)
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}\n')
    err = _refused(capsys, ["import", str(path), "-o", str(notes)])
    assert "notes.json: exists and is not a graph file: refusing to overwrite it" in err
    assert notes.read_text() == '{"mine": 1}\n' and not (tmp_path / "notes.weights.npz").exists()
    stray = tmp_path / "g.weights.npz"
    stray.write_bytes(b"my data")
    err = _refused(capsys, ["import", str(path), "-o", str(tmp_path / "g.json")])
    assert "g.weights.npz: exists and no graph file names it" in err
    assert stray.read_bytes() == b"my data" and not (tmp_path / "g.json").exists()
    stray.unlink()
    for _ in range(2):  # its own output is replaced
        assert main(["import", str(path), "-o", str(tmp_path / "g.json")]) == 0
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["weights"]["path"] == "g.weights.npz"
    err = _refused(capsys, ["import", str(path), "-o", str(tmp_path / "x.onnx")])
    assert "-o names a graph file" in err
    assert not list(tmp_path.glob(".*"))  # no temporary file left


_WANTS = (
    "input 'x' has shape [?, 3, ?, ?]: --input-shape is the whole input shape, the batch first: "
    "give 4 sizes"
)
"""The CLI's wording of a shape that does not fit (a scenario's is the importer's)."""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], f"{_WANTS} joined by x\n"),
        (["--input-shape", "1x3x8"], f"{_WANTS} joined by x (got '1x3x8')"),
        (["--input-shape", "1x4x8x8"], f"{_WANTS} joined by x, e.g. 1x3x8x8 (got '1x4x8x8')"),
        (["--input-shape", "3x32x32"], f"{_WANTS} joined by x, e.g. 1x3x32x32 (got '3x32x32')"),
        (["--input-shape", "3x8x8", "--batch", "2"], ", e.g. 2x3x8x8 (got '3x8x8')"),
        (["--input-shape", "1x3x8x8x1"], f"{_WANTS} joined by x (got '1x3x8x8x1')"),
        (["--input-shape", "1x3xax8"], "--input-shape must be sizes joined by x"),
        (["--input-shape", "0x3x8x8"], "--input-shape must be sizes joined by x"),
        (["--input-shape", "1x3x8x8", "--batch", "0"], "--batch must be >= 1, got 0"),
        (["--input-shape", "1x3x8x8", "--name", " "], "--name must not be empty"),
    ],
)
def test_bad_import_options_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    err = _refused(capsys, ["import", str(_cnn(tmp_path)), *args])
    assert message in err, err


def test_a_shape_that_does_not_fit_keeps_the_importers_wording_for_a_scenario(
    tmp_path: Path,
) -> None:
    path = _cnn(tmp_path)
    with pytest.raises(aegis.InputError, match=r"give input_shape with 3 sizes fixing every"):
        aegis.import_model(path, input_shape=(3, 8))


@pytest.mark.parametrize("verify", [[], ["--verify"]], ids=["plain", "verify"])
def test_a_refused_o_is_refused_before_the_import_prints_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], verify: list[str]
) -> None:
    path = _mlp(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    stray = tmp_path / "g.weights.npz"
    stray.write_bytes(b"my data")
    (tmp_path / "dir.json").mkdir()
    cases = [
        (notes, "notes.txt: exists and is not a graph file"),
        (tmp_path / "g.json", "g.weights.npz: exists and no graph file names it"),
        (tmp_path / "x.onnx", "-o names a graph file"),
        (path, "-o names a graph file"),
        (tmp_path / "dir.json", "dir.json: exists and is not a graph file"),
    ]
    for out_file, message in cases:
        assert main(["import", str(path), *verify, "-o", str(out_file)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "", out_file
        assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert notes.read_text() == "mine\n" and stray.read_bytes() == b"my data"
    assert not (tmp_path / "g.json").exists() and not (tmp_path / "x.onnx").exists()
    assert not (tmp_path / "notes.weights.npz").exists()


def _pool_ort_refuses(folder: Path) -> Path:
    """MaxPool with pads >= its kernel (inside the dilated window): AegisRT imports it,
    onnxruntime refuses it at load ("Pad should be smaller than kernel")."""
    node = helper.make_node(
        "MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2], pads=[2, 2, 2, 2]
    )
    return save(folder, [node], [], [1, 2, 6, 6], [1, 2, 8, 8])


def test_verify_when_onnxruntime_refuses_the_model_is_one_stderr_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(_pool_ort_refuses(tmp_path)), "--verify"]) == 2
    captured = capfd.readouterr()  # the file descriptors: ORT's own log included
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("aegis: error: ")
    assert "onnxruntime cannot run it: " in captured.err
    assert "Pad should be smaller than kernel." in captured.err and "\\n" not in captured.err


def test_verify_flattens_onnxruntimes_multi_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("first line\n  second line\r\n\tthird\n")

    monkeypatch.setattr(ort.InferenceSession, "run", broken)
    err = _refused(capsys, ["import", str(_mlp(tmp_path)), "--input-shape", "2x16", "--verify"])
    assert err.endswith(
        "onnxruntime cannot run it: RuntimeError: first line second line third\n"
    ), err
    assert capsys.readouterr().out == ""


def test_batch_overrides_the_shapes_first_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(_cnn(tmp_path)), "--input-shape", "1x3x8x8", "--batch", "5"]) == 0
    assert "batch 5, input 'x' [5, 3, 8, 8]" in capsys.readouterr().out


def test_unsupported_ops_and_bad_files_name_the_file_and_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = save(tmp_path, [helper.make_node("Hardmax", ["x"], ["y"])], [], [1, 4], [1, 4])
    err = _refused(capsys, ["import", str(path)])
    assert "net.onnx: node" in err and "(Hardmax)" in err
    err = _refused(capsys, ["import", str(tmp_path / "none.onnx")])
    assert "none.onnx" in err and "no such ONNX model" in err


def test_missing_packages_are_exit_2_with_the_pip_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _mlp(tmp_path / "a", seed=3)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    err = _refused(capsys, ["import", str(path), "--verify"])
    assert "--verify needs the onnxruntime package: pip install 'aegisrt[onnx]'" in err
    monkeypatch.setitem(sys.modules, "onnx", None)
    err = _refused(capsys, ["import", str(_mlp(tmp_path / "b", seed=4))])
    assert "needs the onnx package: pip install 'aegisrt[onnx]'" in err


def test_the_api_imports_a_model_once(tmp_path: Path) -> None:
    path = _cnn(tmp_path)
    g = aegis.import_model(path, input_shape=[3, 6, 6], batch=2)
    assert g.tensors[g.input].shape == (2, 3, 6, 6) and g.weights is not None
    assert aegis.import_model(str(path), input_shape=(3, 6, 6), batch=2) is g  # cached
    assert aegis.import_model(path, input_shape=(3, 7, 7), batch=2) is not g
    with pytest.raises(aegis.InputError, match="give input_shape with 3 sizes"):
        aegis.import_model(path)


def test_compare_flags_nan_and_large_errors() -> None:
    b = np.array([1.0, 2.0, -3.0], np.float32)
    assert import_model.compare("y", b + 1e-5, b).ok
    bad = import_model.compare("y", b * 1.01, b)
    assert not bad.ok and bad.max_rel == pytest.approx(0.01, rel=1e-3)
    nan = import_model.compare("y", np.array([np.nan, 2, -3], np.float32), b)
    assert not nan.ok and nan.max_abs == float("inf")
