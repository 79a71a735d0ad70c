"""The IR -> ONNX export (aegis_core.graph.onnx_export): every builtin model exported with its
seeded weights and run in onnxruntime gives kernels.reference's output (rtol 1e-3, atol 1e-4);
an operator without an export, a missing weight or a missing onnx package is one line."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from aegis_core.graph import onnx_export  # noqa: E402
from aegis_core.graph.ir import FNS, Graph  # noqa: E402
from aegis_core.graph.onnx_export import EXPORTERS, to_onnx, unexportable  # noqa: E402
from aegis_core.graph.zoo import MODELS, build_model  # noqa: E402
from aegis_core.model.errors import InputError  # noqa: E402
from aegis_exec.kernels import init_params, reference  # noqa: E402

RTOL, ATOL = 1e-3, 1e-4
SMALL = {"resnet18": (3, 32, 32), "mobilenet_v2": (3, 32, 40), "bert_tiny": (16, 128)}
"""Input shapes that keep the float64 reference quick (None: the model's default)."""


def run_ort(data: bytes, graph: Graph, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [graph.input]
    assert [o.name for o in session.get_outputs()] == [graph.output]
    (y,) = session.run(None, {graph.input: x})
    return np.asarray(y)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("batch", [1, 2])
def test_each_builtin_model_exported_gives_the_reference_output(name: str, batch: int) -> None:
    graph = build_model(name, batch, SMALL.get(name))
    params, x = init_params(graph, seed=batch)
    y = run_ort(to_onnx(graph, params), graph, x)
    want = reference(graph, params, x)
    assert y.shape == want.shape == graph.tensors[graph.output].shape
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)
    assert np.abs(want).max() > 1e-2  # a real signal, not zeros compared with zeros


def test_the_builtins_use_every_exported_fn_and_the_table_covers_the_ir() -> None:
    used = {op.fn for name in MODELS for op in build_model(name, 1, SMALL.get(name)).ops}
    assert set(EXPORTERS) <= set(FNS)
    assert used <= set(EXPORTERS)
    assert set(EXPORTERS) - used <= {"mul"}  # mul: the one-line Mul, tested below


def test_mul_and_matmul_scale_are_exported() -> None:
    graph = Graph.from_dict({
        "name": "m", "batch": 2, "input_shape": [3, 4], "input": "x", "output": "z",
        "tensors": [
            {"name": "x", "shape": [2, 3, 4], "role": "input"},
            {"name": "k", "shape": [2, 3, 4], "role": "weight"},
            {"name": "y", "shape": [2, 3, 4], "role": "activation"},
            {"name": "t", "shape": [2, 4, 3], "role": "activation"},
            {"name": "z", "shape": [2, 3, 3], "role": "activation"},
        ],
        "ops": [
            {"name": "mul", "kind": "elementwise", "fn": "mul", "inputs": ["x", "k"],
             "output": "y"},
            {"name": "tr", "kind": "elementwise", "fn": "permute", "inputs": ["y"],
             "output": "t", "attrs": {"view": [2, 3, 4], "axes": [0, 2, 1]}},
            {"name": "mm", "kind": "gemm", "fn": "matmul", "inputs": ["y", "t"], "output": "z",
             "attrs": {"scale": 0.25}},
        ],
    })  # fmt: skip
    params, x = init_params(graph, seed=5)
    np.testing.assert_allclose(
        run_ort(to_onnx(graph, params), graph, x), reference(graph, params, x),
        rtol=RTOL, atol=ATOL,
    )  # fmt: skip


def test_an_operator_without_export_is_one_line_naming_model_op_and_fn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph = build_model("tiny_cnn")
    assert unexportable(graph) is None
    monkeypatch.delitem(EXPORTERS, "avgpool_global")
    problem = unexportable(graph)
    assert problem is not None and "\n" not in problem
    assert "'tiny_cnn'" in problem and "(avgpool_global)" in problem and "no ONNX export" in problem
    match = r"model 'tiny_cnn': operator 'avgpool' \(avgpool_global\)"
    with pytest.raises(InputError, match=match):
        to_onnx(graph, init_params(graph)[0])


def test_a_missing_weight_is_refused() -> None:
    graph = build_model("mlp", 1, (32,))
    params = dict(init_params(graph)[0])
    lost = sorted(params)[0]
    del params[lost]
    with pytest.raises(InputError, match=f"no value for weight '{lost}'"):
        to_onnx(graph, params)


def test_too_many_weight_bytes_are_refused_before_building(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph = build_model("mlp", 1, (32,))
    monkeypatch.setattr(onnx_export, "EXPORT_LIMIT", graph.weights_bytes - 1)
    problem = unexportable(graph)
    assert problem is not None and "more than one ONNX model holds" in problem


def test_without_onnx_the_export_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = build_model("tiny_cnn")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    with pytest.raises(InputError, match=r"needs the onnx package: pip install 'aegisrt\[onnx\]'"):
        to_onnx(graph, init_params(graph)[0])


def test_strided_padded_geometry_is_written_as_onnx_lists() -> None:
    assert onnx_export._pair(2) == [2, 2] and onnx_export._pair((1, 3)) == [1, 3]
    assert onnx_export._pads(1) == [1, 1, 1, 1] and onnx_export._pads((0, 1, 2, 3)) == [0, 1, 2, 3]


def test_the_export_is_deterministic_and_leaves_the_graph_alone() -> None:
    graph = build_model("bert_tiny", 1, (8, 128))
    params = init_params(graph, seed=1)[0]
    before = dataclasses.replace(graph)
    assert to_onnx(graph, params) == to_onnx(graph, params)
    assert graph == before
