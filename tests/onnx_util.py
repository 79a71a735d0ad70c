"""Helpers for the ONNX tests: one-node and whole models built with onnx.helper, and the check
that an imported model gives onnxruntime's outputs (float64 reference and float32 kernels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from aegis_core.graph.onnx_import import ImportedModel
from aegis_exec.kernels import CompiledGraph, reference

RTOL, ATOL = 1e-3, 1e-4
OPSET = 17


def init(rng: np.random.Generator, name: str, *shape: int, scale: float = 0.3) -> Any:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def ints(name: str, values: list[int]) -> Any:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def save(
    tmp_path: Path,
    nodes: list[Any],
    inits: list[Any],
    in_shape: list[Any],
    out_shape: list[Any] | None = None,
    opset: int = OPSET,
) -> Path:
    if out_shape is None:  # the output's rank is the input's; its sizes left to inference
        out_shape = [f"o{i}" for i in range(len(in_shape))]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = tmp_path / "net.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def against_ort(path: Path, imported: ImportedModel, seed: int = 0) -> None:
    g = imported.graph
    x = np.random.default_rng(seed).standard_normal(g.tensors[g.input].shape).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {imported.onnx_input: x})
    got = reference(g, imported.params, x)
    assert got.size == want.size
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=RTOL, atol=ATOL)
    compiled = CompiledGraph(g, np)  # the float32 kernels too, with the real weights put in
    for name, value in imported.params.items():
        compiled.tensors[name][...] = value
    compiled.inputs[...] = x
    compiled.run()
    np.testing.assert_allclose(compiled.output.reshape(want.shape), want, rtol=RTOL, atol=ATOL)
