"""The IR -> ONNX export (aegis_core.graph.onnx_export): every builtin model, every "elem" fn
(tests/test_ops_elem.py's graph of all 31 of its operators, each operator's output on its own,
and the whole graph) and a few more geometries, every spatial fn over many geometries (per-axis
strides, asymmetric pads, dilations, groups, ceil mode, count_include_pad, resize matrices up
and down, Resize models imported from ONNX) and tests/test_onnx_ops_spatial.py's network
imported then exported, with seeded (or the imported) weights and run in onnxruntime, give
kernels.reference's output (rtol 1e-3, atol 1e-4); an operator without an export, a missing
weight or a missing onnx package is one line."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx_util import save  # noqa: E402
from test_onnx_ops_spatial import COORDS, MODES, _network, _resize_node  # noqa: E402
from test_ops_elem import ALL_OPS, WEIGHTS, _doc  # noqa: E402

from aegis_core.graph import onnx_export  # noqa: E402
from aegis_core.graph.ir import FNS, Graph, _infer  # noqa: E402
from aegis_core.graph.onnx_export import EXPORTERS, to_onnx, unexportable  # noqa: E402
from aegis_core.graph.onnx_import import import_onnx  # noqa: E402
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


def test_the_table_covers_the_ir_and_the_tests_cover_the_table() -> None:
    builtins = {op.fn for name in MODELS for op in build_model(name, 1, SMALL.get(name)).ops}
    elem = {fn for fn, _, _ in ALL_OPS + MORE_OPS}
    spatial = {fn for fn, _, _, _ in SPATIAL_OPS}
    assert set(EXPORTERS) == set(FNS)
    assert builtins <= set(EXPORTERS)
    assert set(EXPORTERS) - builtins - elem - spatial == set()
    assert len(elem - builtins) >= 16  # every new elem fn: ALL_OPS uses each one
    assert spatial >= {"conv2d", "conv_transpose2d", "maxpool", "avgpool", "maxpool_global",
                       "avgpool_global", "resize"}  # fmt: skip


def check(graph: Graph, seed: int = 0, params: dict[str, np.ndarray] | None = None
          ) -> np.ndarray:  # fmt: skip
    """``graph`` exported with its seeded weights (or ``params``), run in onnxruntime, against
    the float64 reference; returns the reference output."""
    seeded, x = init_params(graph, seed)
    params = seeded if params is None else params
    want = reference(graph, params, x)
    y = run_ort(to_onnx(graph, params), graph, x)
    assert y.shape == want.shape == graph.tensors[graph.output].shape
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)
    return want


MORE_WEIGHTS = {**WEIGHTS, "wl": (1, 3, 4, 4)}
MORE_OPS: list[tuple[str, list[str], dict[str, Any]]] = [
    ("matmul", ["wl", "x"], {}),  # a weight first, its batch dims broadcast
    ("slice", ["x"], {"begin": [1, 2, 0, 0], "step": [1, -2, 2, 3], "size": [1, 2, 2, 2]}),
    ("clip", ["x"], {"min": -0.2}),  # no max
    ("clip", ["x"], {"min": None, "max": None}),  # no bound at all
    ("gather", ["x"], {"axis": 0, "indices": [1], "scalar": 0}),
    ("gather", ["x"], {"axis": 3, "indices": [4], "scalar": 1}),
    ("concat", ["x", "x"], {"axis": 0}),
    ("hardsigmoid", ["x"], {}),  # ONNX's defaults are the IR's
    ("softmax", ["x"], {"axis": 0}),
    ("reduce_mean", ["x"], {"axes": [0], "keepdims": 0}),
    ("mul", ["wc", "x"], {}),
    ("add", ["x", "ws"], {}),
    ("div", ["wr", "o0"], {}),  # o0 is exp(x) > 0
]


def elem_graph(ops: list[tuple[str, list[str], dict[str, Any]]], output: int | None = None
               ) -> Graph:  # fmt: skip
    doc = _doc(ops, MORE_WEIGHTS)
    graph = Graph.from_dict(doc)
    return graph if output is None else dataclasses.replace(graph, output=f"o{output}")


@pytest.mark.parametrize("i", range(len(ALL_OPS)), ids=[f"{i}-{op[0]}" for i, op in
                                                         enumerate(ALL_OPS)])  # fmt: skip
def test_each_elem_operator_exported_gives_the_reference_output(i: int) -> None:
    want = check(elem_graph(ALL_OPS, i), seed=i)
    assert np.abs(want).max() > 1e-2


def test_the_elem_helpers_graph_of_every_new_fn_exports_whole() -> None:
    graph = elem_graph(ALL_OPS)
    assert len(graph.ops) == 31 and len({op.fn for op in graph.ops}) >= 20
    check(graph, seed=3)


@pytest.mark.parametrize("i", range(len(MORE_OPS)), ids=[f"{i}-{op[0]}" for i, op in
                                                          enumerate(MORE_OPS)])  # fmt: skip
def test_more_geometries_of_the_elem_operators(i: int) -> None:
    ops = [("exp", ["x"], {}), *MORE_OPS]  # o0 = exp(x), as in ALL_OPS
    check(elem_graph(ops, i + 1), seed=i)


def test_slice_ends_are_one_step_past_the_last_element_never_a_wrapping_negative() -> None:
    graph = elem_graph(ALL_OPS, 22)
    node = output_node(graph, "Slice")
    inits = initializers(graph)
    starts, ends, axes, steps = (inits[name] for name in node.input[1:])
    assert starts.tolist() == [1, 0, 3, 7] and steps.tolist() == [-1, 1, -1, -3]
    assert axes.tolist() == [0, 1, 2, 3]
    assert ends.tolist() == [onnx_export._INT64_MIN, 3, 1, onnx_export._INT64_MIN]


def test_gather_writes_a_scalar_index_as_a_0d_tensor() -> None:
    graph = elem_graph(ALL_OPS, 24)  # scalar=1: the axis is dropped
    node = output_node(graph, "Gather")
    assert initializers(graph)[node.input[1]].shape == ()
    graph = elem_graph(ALL_OPS, 23)
    node = output_node(graph, "Gather")
    assert initializers(graph)[node.input[1]].tolist() == [3, 0, 2]


def test_clip_without_a_bound_omits_that_input() -> None:
    node = output_node(elem_graph(ALL_OPS, 8), "Clip")
    assert node.input[1] == "" and node.input[2] != ""


def output_node(graph: Graph, op_type: str) -> Any:
    """The exported node writing ``graph.output`` (of ``op_type``)."""
    import onnx

    model = onnx.load_from_string(to_onnx(graph, init_params(graph)[0]))
    (node,) = [n for n in model.graph.node if list(n.output) == [graph.output]]
    assert node.op_type == op_type
    return node


def initializers(graph: Graph) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(to_onnx(graph, init_params(graph)[0]))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


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


ORT_REFUSES = [  # the IR accepts each (pad inside the dilated window, op below dilation)
    ("maxpool", {}, {"k": 2, "dilation": 2, "pad": [2, 0, 0, 0]}, "pad [2, 0, 0, 0] is not below"),
    ("maxpool", {}, {"k": [3, 2], "dilation": 2, "pad": [0, 0, 0, 2]}, "its kernel [3, 2]"),
    ("avgpool", {}, {"k": 2, "dilation": 3, "pad": [0, 2, 0, 0], "count_include_pad": 1},
     "pad [0, 2, 0, 0] is not below its kernel [2, 2]"),
    ("avgpool", {}, {"k": [2, 3], "dilation": 2, "pad": [0, 0, 2, 0]}, "not below its kernel"),
    ("conv_transpose2d", {"w": (4, 3, 2, 2), "b": (3,)},
     {"dilation": 2, "output_padding": [1, 0]}, "output_padding [1, 0] is not below its stride"),
    ("conv_transpose2d", {"w": (4, 3, 2, 2), "b": (3,)},
     {"stride": [3, 2], "dilation": 3, "output_padding": [0, 2]}, "its stride [3, 2]"),
]  # fmt: skip


@pytest.mark.parametrize(("fn", "weights", "attrs", "why"), ORT_REFUSES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(ORT_REFUSES)])  # fmt: skip
def test_a_geometry_onnxruntime_refuses_is_refused_before_the_run_in_one_line(
    monkeypatch: pytest.MonkeyPatch, fn: str, weights: dict[str, Any], attrs: dict[str, Any],
    why: str,
) -> None:  # fmt: skip
    graph = spatial_graph(fn, weights, attrs)
    params, x = init_params(graph)
    reference(graph, params, x)  # AegisRT computes it
    problem = unexportable(graph)
    assert problem is not None and "\n" not in problem, problem
    assert problem.startswith(f"model '{fn}': operator '{fn}' ({fn}): ") and why in problem
    assert problem.endswith(", which onnxruntime refuses")
    with pytest.raises(InputError, match=re.escape(why)):
        to_onnx(graph, params)
    monkeypatch.setattr(onnx_export, "_ort_refuses", lambda graph, op: None)
    with pytest.raises(Exception, match=r"Pad should be smaller than kernel|output_padding"):
        run_ort(to_onnx(graph, params), graph, x)  # and onnxruntime does refuse it


@pytest.mark.parametrize(
    ("fn", "weights", "attrs"),
    [
        ("maxpool", {}, {"k": 2, "dilation": 2, "pad": [1, 1, 1, 1]}),
        ("avgpool", {}, {"k": [3, 2], "pad": [2, 1, 2, 1], "count_include_pad": 1}),
        ("conv_transpose2d", {"w": (4, 3, 2, 2), "b": (3,)},
         {"stride": [2, 3], "dilation": 3, "output_padding": [1, 2]}),
    ],
)  # fmt: skip
def test_the_largest_pad_and_output_padding_onnxruntime_takes_still_export(
    fn: str, weights: dict[str, Any], attrs: dict[str, Any]
) -> None:
    graph = spatial_graph(fn, weights, attrs)
    assert unexportable(graph) is None
    check(graph)


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


def test_the_export_is_deterministic_and_leaves_the_graph_alone() -> None:
    graph = build_model("bert_tiny", 1, (8, 128))
    params = init_params(graph, seed=1)[0]
    before = dataclasses.replace(graph)
    assert to_onnx(graph, params) == to_onnx(graph, params)
    assert graph == before


# --- spatial ops ---------------------------------------------------------------------------

SX = (2, 4, 11, 10)
"""The spatial graphs' input: [N, C, H, W]."""
SPATIAL_OPS: list[tuple[str, dict[str, tuple[int, ...]], dict[str, Any], str]] = [
    # (fn, weights (in input order after x), attrs, the ONNX op writing the output)
    ("conv2d", {"w": (6, 4, 3, 3), "b": (6,)}, {"stride": [1, 2], "pad": [0, 1, 2, 3]}, "Conv"),
    ("conv2d", {"w": (6, 2, 3, 3), "b": (6,)}, {"dilation": 2, "pad": 2, "groups": 2}, "Conv"),
    (
        "conv2d",
        {"w": (4, 1, 3, 2), "b": (4,)},
        {"stride": [2, 1], "dilation": [1, 2], "pad": [1, 0, 0, 1], "groups": 4},
        "Conv",
    ),
    ("conv2d", {"w": (5, 4, 1, 1), "b": (5,)}, {}, "Conv"),
    (
        "conv_transpose2d",
        {"w": (4, 3, 3, 3), "b": (3,)},
        {"stride": 2, "pad": 1, "output_padding": 1},
        "ConvTranspose",
    ),
    (
        "conv_transpose2d",
        {"w": (4, 3, 3, 2), "b": (3,)},
        {"stride": [1, 2], "pad": [0, 1, 2, 0]},
        "ConvTranspose",
    ),
    (
        "conv_transpose2d",
        {"w": (4, 2, 3, 3), "b": (4,)},
        {"stride": [2, 1], "dilation": 2, "pad": 1, "groups": 2, "output_padding": [1, 0]},
        "ConvTranspose",
    ),
    (
        "conv_transpose2d",
        {"w": (4, 1, 3, 3), "b": (4,)},
        {"stride": [3, 2], "output_padding": [2, 1], "groups": 4},
        "ConvTranspose",
    ),
    ("maxpool", {}, {"k": 3, "stride": 2, "pad": 1}, "MaxPool"),
    ("maxpool", {}, {"k": [2, 3], "stride": [1, 2], "pad": [0, 1, 1, 1]}, "MaxPool"),
    ("maxpool", {}, {"k": 3, "stride": 2, "ceil_mode": 1}, "MaxPool"),
    (
        "maxpool",
        {},
        {"k": [3, 2], "stride": [3, 2], "pad": [1, 0, 0, 0], "ceil_mode": 1},
        "MaxPool",
    ),
    ("maxpool", {}, {"k": 2, "stride": 2, "dilation": [1, 2], "ceil_mode": 1}, "MaxPool"),
    ("maxpool", {}, {"k": 3, "dilation": 2, "pad": [1, 2, 1, 0]}, "MaxPool"),
    *[
        ("avgpool", {}, {**attrs, "count_include_pad": include}, "AveragePool")
        for include in (0, 1)
        for attrs in [
            {"k": 3, "stride": 2, "pad": 1},
            {"k": [2, 3], "stride": [1, 2], "pad": [0, 1, 1, 1]},
            {"k": 3, "stride": 2, "ceil_mode": 1},
            {"k": 3, "stride": 2, "pad": 1, "ceil_mode": 1},
            {"k": [3, 2], "stride": [3, 2], "pad": [1, 0, 0, 0], "ceil_mode": 1},
            {"k": 3, "dilation": 2, "pad": 1},
            {"k": 2, "stride": 2, "dilation": [1, 2], "ceil_mode": 1},
        ]
    ],
    ("avgpool", {}, {"k": 2}, "AveragePool"),  # the IR's default: count_include_pad 0
    ("maxpool_global", {}, {}, "Flatten"),
    ("avgpool_global", {}, {}, "Flatten"),
    ("resize", {"ah": (22, 11), "aw": (15, 10)}, {}, "MatMul"),  # up
    ("resize", {"ah": (5, 11), "aw": (4, 10)}, {}, "MatMul"),  # down
    ("resize", {"ah": (1, 11), "aw": (30, 10)}, {}, "MatMul"),
]


def spatial_graph(fn: str, weights: dict[str, tuple[int, ...]], attrs: dict[str, Any]) -> Graph:
    """One ``fn`` operator on an :data:`SX` input (its output's shape from the IR's own rule)."""
    shapes = [SX, *weights.values()]
    out = _infer(fn, attrs, shapes)
    return Graph.from_dict({
        "name": fn, "batch": SX[0], "input_shape": list(SX[1:]), "input": "x", "output": "y",
        "tensors": [
            {"name": "x", "shape": list(SX), "role": "input"},
            *[{"name": n, "shape": list(s), "role": "weight"} for n, s in weights.items()],
            {"name": "y", "shape": list(out), "role": "activation"},
        ],
        "ops": [{"name": fn, "kind": FNS[fn], "fn": fn, "inputs": ["x", *weights],
                 "output": "y", "attrs": attrs}],
    })  # fmt: skip


@pytest.mark.parametrize(("i", "case"), list(enumerate(SPATIAL_OPS)),
                         ids=[f"{i}-{c[0]}-{c[2]}" for i, c in enumerate(SPATIAL_OPS)])  # fmt: skip
def test_each_spatial_geometry_exported_gives_the_reference_output(
    i: int, case: tuple[str, dict[str, tuple[int, ...]], dict[str, Any], str]
) -> None:
    fn, weights, attrs, op_type = case
    graph = spatial_graph(fn, weights, attrs)
    want = check(graph, seed=i)
    assert np.abs(want).max() > 1e-2
    assert output_node(graph, op_type) is not None


def test_the_geometry_is_written_as_onnx_lists_pads_top_left_bottom_right() -> None:
    attrs = {"stride": [1, 2], "pad": [0, 1, 2, 3], "dilation": [2, 1], "groups": 2}
    node = output_node(spatial_graph("conv2d", {"w": (6, 2, 3, 2), "b": (6,)}, attrs), "Conv")
    got = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
    assert got == {"kernel_shape": [3, 2], "strides": [1, 2], "pads": [0, 1, 2, 3],
                   "dilations": [2, 1], "group": 2}  # fmt: skip
    attrs = {"k": 3, "stride": 2, "pad": 1, "output_padding": [1, 0]}
    graph = spatial_graph("conv_transpose2d", {"w": (4, 3, 3, 3), "b": (3,)}, attrs)
    node = output_node(graph, "ConvTranspose")
    got = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
    assert got["output_padding"] == [1, 0] and got["pads"] == [1, 1, 1, 1]
    graph = spatial_graph("avgpool", {}, {"k": [2, 3], "ceil_mode": 1, "count_include_pad": 1})
    node = output_node(graph, "AveragePool")
    got = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
    assert got["kernel_shape"] == [2, 3] and got["ceil_mode"] == 1
    assert got["count_include_pad"] == 1 and got["strides"] == [1, 1]


def test_a_ceil_mode_window_starting_in_the_padding_is_dropped_as_the_ir_drops_it() -> None:
    """On the 10 columns a 6th ceil-mode window would start in the right pad: the IR drops
    it (the 11 rows keep their 6th); onnxruntime gives the IR's shape and values."""
    for fn in ("maxpool", "avgpool"):
        graph = spatial_graph(fn, {}, {"k": 2, "stride": 2, "pad": [0, 0, 1, 1], "ceil_mode": 1})
        assert graph.tensors["y"].shape == (2, 4, 6, 5)  # H 11: the 6th starts inside
        check(graph)


@pytest.mark.parametrize("scales", [(2.0, 2.0), (0.5, 0.6), (1.5, 3.0)], ids=str)
@pytest.mark.parametrize(("mode", "nearest"), [MODES[0], MODES[4]], ids=str)
def test_resize_models_imported_from_onnx_exported_give_onnxruntimes_output(
    tmp_path: Path, mode: str, nearest: str | None, scales: tuple[float, float]
) -> None:
    from onnx import numpy_helper

    s = numpy_helper.from_array(np.array([1.0, 1.0, *scales], np.float32), "s")
    for coord in COORDS[:3]:
        node = _resize_node(mode, nearest, coord, ["", "s"])
        imported = import_onnx(save(tmp_path, [node], [s], [2, 3, 5, 6], opset=13), batch=2)
        assert [op.fn for op in imported.graph.ops] == ["resize"]
        check(imported.graph, params=dict(imported.params))


def test_the_spatial_network_imported_then_exported_gives_the_original_models_output(
    tmp_path: Path,
) -> None:
    path = _network(tmp_path)
    imported = import_onnx(path, batch=2)
    graph = imported.graph
    assert {op.fn for op in graph.ops} >= {"conv2d", "conv_transpose2d", "maxpool", "avgpool",
                                           "resize", "maxpool_global"}  # fmt: skip
    params = dict(imported.params)
    want = check(graph, params=params)
    x = init_params(graph)[1]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (original,) = session.run(None, {imported.onnx_input: x})
    exported = run_ort(to_onnx(graph, params), graph, x)
    np.testing.assert_allclose(exported.reshape(original.shape), original, rtol=RTOL, atol=ATOL)
    assert np.abs(want).max() > 1e-2


def test_reduce_mean_writes_its_axes_as_an_input_from_opset_18() -> None:
    import onnx

    assert onnx_export.OPSET >= 19  # AveragePool's dilations
    graph = elem_graph([("exp", ["x"], {}), *MORE_OPS], 10)
    node = output_node(graph, "ReduceMean")
    assert initializers(graph)[node.input[1]].tolist() == [0]
    model = onnx.load_from_string(to_onnx(graph, init_params(graph)[0]))
    onnx.checker.check_model(model, full_check=True)
