"""The "elem" IR functions without ONNX: shape rules, FLOPs and attribute checks of graph
files, the float32 kernels against the float64 reference, allocation-free runs (StrictXp and
tracemalloc) and the accuracy of the erf approximation."""

from __future__ import annotations

import dataclasses
import json
import math
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_kernels import StrictXp

from aegis_core.graph.ir import Graph, _infer, load_graph
from aegis_core.model.errors import InputError
from aegis_exec import kernels as K

X = (2, 3, 4, 5)


def _doc(
    ops: list[tuple[str, list[str], dict[str, Any]]], weights: dict[str, tuple[int, ...]]
) -> dict[str, Any]:
    """A graph file: input ``x`` of shape :data:`X`, the given weights, and one op per entry
    (its output named ``o<i>``, its shape from the IR's own rule); the last op is the output."""
    shapes: dict[str, tuple[int, ...]] = {"x": X, **weights}
    tensors = [{"name": "x", "shape": list(X), "role": "input"}]
    tensors += [{"name": n, "shape": list(s), "role": "weight"} for n, s in weights.items()]
    out = []
    for i, (fn, ins, attrs) in enumerate(ops):
        name = f"o{i}"
        shapes[name] = _infer(fn, attrs, [shapes[n] for n in ins])
        tensors.append({"name": name, "shape": list(shapes[name]), "role": "activation"})
        out.append(
            {
                "name": f"op{i}",
                "kind": "elementwise" if fn not in ("matmul",) else "gemm",
                "fn": fn,
                "inputs": ins,
                "output": name,
                "attrs": attrs,
            }
        )
    return {
        "name": "elem",
        "batch": X[0],
        "input_shape": list(X[1:]),
        "input": "x",
        "output": out[-1]["output"],
        "tensors": tensors,
        "ops": out,
    }


WEIGHTS = {"wc": (3, 1, 1), "wr": (5,), "ws": (1,), "wcat": (2, 3, 4, 2), "wmm": (3, 5, 2)}
ALL_OPS: list[tuple[str, list[str], dict[str, Any]]] = [
    ("exp", ["x"], {}),  # o0 > 0
    ("sigmoid", ["x"], {}),  # o1
    ("hardsigmoid", ["x"], {"alpha": 0.3, "beta": 0.4}),  # o2
    ("hardswish", ["x"], {}),  # o3
    ("tanh", ["x"], {}),  # o4
    ("erf", ["x"], {}),  # o5
    ("sqrt", ["o0"], {}),  # o6
    ("clip", ["x"], {"min": -0.5, "max": 0.5}),  # o7
    ("clip", ["x"], {"min": None, "max": 0.3}),  # o8
    ("gelu", ["x"], {"approximate": "none"}),  # o9
    ("gelu", ["x"], {}),  # o10
    ("add", ["x", "wc"], {}),  # o11
    ("sub", ["wr", "x"], {}),  # o12
    ("mul", ["o1", "o2"], {}),  # o13
    ("div", ["x", "o0"], {}),  # o14
    ("pow", ["o0", "ws"], {}),  # o15
    ("reduce_mean", ["x"], {"axes": [3], "keepdims": 1}),  # o16 [2,3,4,1]
    ("reduce_mean", ["x"], {"axes": [1, 3], "keepdims": 0}),  # o17 [2,4]
    ("reduce_mean", ["x"], {"axes": [1, 2], "keepdims": 1}),  # o18 [2,1,1,5]
    ("softmax", ["x"], {"axis": 1}),  # o19
    ("softmax", ["x"], {}),  # o20
    ("concat", ["x", "wcat", "o16"], {"axis": 3}),  # o21 [2,3,4,8]
    ("slice", ["o21"], {"begin": [1, 0, 3, 7], "step": [-1, 1, -1, -3], "size": [2, 3, 2, 3]}),
    ("gather", ["x"], {"axis": 2, "indices": [3, 0, 2], "scalar": 0}),  # o23 [2,3,3,5]
    ("gather", ["x"], {"axis": 1, "indices": [1], "scalar": 1}),  # o24 [2,4,5]
    ("gather", ["x"], {"axis": 3, "indices": [0, 2, 4], "scalar": 0}),  # o25 strided
    ("expand", ["o16"], {"shape": [2, 3, 4, 5]}),  # o26
    ("expand", ["o18"], {"shape": [3, 2, 3, 4, 5]}),  # o27
    ("matmul", ["x", "wmm"], {}),  # o28 [2,3,4,2]
    ("matmul", ["o16", "o18"], {}),  # o29 [2,3,4,5]: both batch dims broadcast
    ("sub", ["o16", "o18"], {}),  # o30 [2,3,4,5]: both broadcast
]


def _graph() -> Graph:
    return Graph.from_dict(_doc(ALL_OPS, WEIGHTS))


def test_every_new_fn_matches_the_reference_and_allocates_nothing() -> None:
    graph = _graph()
    spy = StrictXp()
    cg = K.CompiledGraph(graph, spy)  # type: ignore[arg-type]
    spy.armed = True
    cg.run()
    assert spy.calls >= len(graph.ops)
    params, x = K.init_params(graph)
    for op in graph.ops:  # every activation, not only the output
        want = K.reference(dataclasses.replace(graph, output=op.output), params, x)
        np.testing.assert_allclose(
            cg.tensors[op.output], want, rtol=1e-5, atol=1e-6, err_msg=op.name
        )


def test_a_second_run_of_the_new_fns_allocates_no_array() -> None:
    old = np.setbufsize(16)
    try:
        cg = K.CompiledGraph(_graph(), np)
        cg.run()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            cg.run()
            after, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        np.setbufsize(old)
    assert peak - before < 16 * 1024  # every activation here is >= 480 bytes, 31 of them
    assert after - before < 1024


def test_erf_is_within_1e_6_of_the_exact_function_in_float32() -> None:
    x = np.linspace(-6.0, 6.0, 200_001, dtype=np.float32)
    out, tmp = np.empty_like(x), np.empty_like(x)
    K.erf(np, x, out, tmp=tmp)
    exact = np.vectorize(math.erf)(x.astype(np.float64))
    assert np.max(np.abs(out - exact)) <= 1e-6
    assert out[0] == -1.0 and out[-1] == 1.0 and out[100_000] == 0.0


def test_flops_follow_the_documented_convention() -> None:
    graph = _graph()
    by = {op.output: op for op in graph.ops}
    size = {n: t.size for n, t in graph.tensors.items()}
    per_element = {"o1": 4, "o2": 4, "o3": 5, "o4": 1, "o5": 16, "o7": 2, "o9": 20, "o10": 8}
    for name, k in per_element.items():
        assert by[name].flops == k * size[name], name
    for name in ("o11", "o12", "o14", "o15", "o30", "o21", "o22", "o23", "o26"):
        assert by[name].flops == size[name], name
    assert by["o16"].flops == by["o17"].flops == math.prod(X)  # per input element
    assert by["o28"].flops == 2 * 5 * size["o28"] and by["o29"].flops == 2 * size["o29"]
    assert Graph.from_dict(graph.to_dict()) == graph


def test_the_shape_rules() -> None:
    assert _infer("add", {}, [(2, 3, 1), (4,)]) == (2, 3, 4)
    assert _infer("pow", {}, [(1,), (2, 1, 5)]) == (2, 1, 5)
    assert _infer("matmul", {}, [(2, 1, 4, 5), (3, 5, 6)]) == (2, 3, 4, 6)
    assert _infer("reduce_mean", {"axes": (0, 2), "keepdims": 0}, [(2, 3, 4)]) == (3,)
    assert _infer("gather", {"axis": 0, "indices": (1,), "scalar": 1}, [(2, 3)]) == (3,)
    assert _infer("concat", {"axis": 0}, [(1, 3), (2, 3), (4, 3)]) == (7, 3)
    assert _infer("slice", {"begin": (4,), "step": (-2,), "size": (3,)}, [(5,)]) == (3,)
    assert _infer("expand", {"shape": (2, 3, 4)}, [(3, 1)]) == (2, 3, 4)


BAD = [
    ("add", ["x", "w"], {}, (4,), "shapes \\(2, 3, 4, 5\\) and \\(4,\\) do not broadcast"),
    ("mul", ["x", "w"], {}, (3, 5), "do not broadcast"),
    ("matmul", ["x", "w"], {}, (4, 2), "matmul .* do not fit"),
    ("matmul", ["x", "w"], {}, (2, 1, 1, 1, 5, 2), "more than 3 broadcast batch dims"),
    ("softmax", ["x"], {"axis": 4}, None, "softmax axis 4 out of range"),
    ("reduce_mean", ["x"], {"axes": [2, 1]}, None, "reduce_mean of"),
    ("reduce_mean", ["x"], {"axes": [0, 1, 2, 3], "keepdims": 0}, None, "is a scalar"),
    ("reduce_mean", ["x"], {"axes": [1], "keepdims": 2}, None, "attribute keepdims"),
    ("concat", ["x", "w"], {"axis": 1}, (2, 3, 4, 4), "concat of"),
    ("concat", ["x"], {"axis": 1}, None, "concat takes 2 to 64 inputs, got 1"),
    ("concat", ["x", "x"], {}, None, "op 'op0': concat needs the attribute axis"),
    (
        "slice",
        ["x"],
        {"begin": [0, 0, 0, 0], "step": [1, 1, 1, 0], "size": [1, 1, 1, 1]},
        None,
        "attribute step",
    ),
    (
        "slice",
        ["x"],
        {"begin": [0, 0, 0, 3], "step": [1, 1, 1, 2], "size": [1, 1, 1, 2]},
        None,
        "slice of",
    ),
    ("slice", ["x"], {"begin": [0, 0], "step": [1, 1], "size": [1, 1]}, None, "need 4 entries"),
    ("gather", ["x"], {"axis": 1, "indices": [3], "scalar": 0}, None, "indices must be in"),
    ("gather", ["x"], {"axis": 1, "indices": [0, 1], "scalar": 1}, None, "scalar=1 needs"),
    ("gather", ["x"], {"axis": 1, "indices": [-1]}, None, "attribute indices"),
    ("gather", ["x"], {"indices": [1, 0]}, None, "op 'op0': gather needs the attribute axis"),
    ("clip", ["x"], {"min": "a"}, None, "attribute min"),
    ("hardsigmoid", ["x"], {"alpha": True}, None, "attribute alpha"),
    ("gelu", ["x"], {"approximate": "erf"}, None, "attribute approximate"),
    ("expand", ["x"], {"shape": [2, 3, 1, 5]}, None, "expand of"),
    ("sub", ["x"], {}, None, "takes 2 inputs, got 1"),
    ("sigmoid", ["x", "x"], {}, None, "takes 1 inputs, got 2"),
]


@pytest.mark.parametrize(("fn", "ins", "attrs", "w", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_shapes_and_attributes_in_a_graph_file_are_refused(
    tmp_path: Path, fn: str, ins: list[str], attrs: dict[str, Any], w: Any, match: str
) -> None:
    doc = _doc([("relu", ["x"], {})], {} if w is None else {"w": w})
    op = doc["ops"][0]
    op.update(fn=fn, inputs=ins, attrs=attrs, kind="gemm" if fn == "matmul" else "elementwise")
    with pytest.raises(ValueError, match=match):
        Graph.from_dict(doc)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=rf"^{path}: not a valid graph file: .*{match}"):
        load_graph(path)


@pytest.mark.gpu
@pytest.mark.parametrize("capturable", [False, True], ids=["cupy", "capturable"])
def test_every_new_fn_on_cupy_matches_the_reference(capturable: bool) -> None:
    from aegis_exec.backends import usable

    if not usable("cupy"):
        pytest.skip("no usable CUDA GPU (cupy)")
    import cupy as cp

    from aegis_exec.backends.sgemm import CapturableCupy

    graph = _graph()
    xp: Any = CapturableCupy(cp) if capturable else cp
    cg = K.CompiledGraph(graph, xp)
    cg.run()
    params, x = K.init_params(graph)
    for op in graph.ops:
        want = K.reference(dataclasses.replace(graph, output=op.output), params, x)
        got = cp.asnumpy(cg.tensors[op.output])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=op.name)
