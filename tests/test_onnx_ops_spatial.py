"""Spatial ONNX operators (Conv geometry, ConvTranspose, MaxPool / AveragePool, global pools,
Resize / Upsample): one-node models built with onnx.helper, imported, and run through both the
float64 reference and the float32 kernels against onnxruntime (CPU), over many geometries;
refusals naming the file, the node and the op; the IR's own checks on graph files; and the
new kernels' allocation-free run (StrictXp)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import helper, numpy_helper  # noqa: E402
from onnx_util import against_ort, init, save  # noqa: E402

from aegis_core.graph.ir import Graph, load_graph, window  # noqa: E402
from aegis_core.graph.onnx_import import import_onnx  # noqa: E402
from aegis_core.graph.scratch import scratch_shapes  # noqa: E402
from aegis_core.model.errors import InputError  # noqa: E402
from aegis_exec import kernels as K  # noqa: E402


def _check(
    tmp_path: Path,
    nodes: list[Any],
    inits: list[Any],
    in_shape: list[int],
    opset: int = 17,
) -> Graph:
    """Import the model, compare it with onnxruntime; return the IR graph."""
    path = save(tmp_path, nodes, inits, in_shape, opset=opset)
    imported = import_onnx(path, batch=in_shape[0])
    against_ort(path, imported)
    return imported.graph


def _floats(name: str, values: list[float]) -> Any:
    return numpy_helper.from_array(np.array(values, dtype=np.float32), name)


def _ints(name: str, values: list[int]) -> Any:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


# --- Conv: strides, asymmetric pads, dilations, auto_pad, groups, R != S ---------------------

CONVS: list[tuple[tuple[int, int], dict[str, Any], int]] = [
    # (kernel, attributes, groups)
    ((3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, 1),
    ((3, 3), {"strides": [1, 2], "pads": [1, 1, 1, 1]}, 1),
    ((3, 3), {"strides": [2, 1], "pads": [0, 1, 2, 1]}, 1),
    ((3, 3), {"pads": [0, 2, 1, 0]}, 1),
    ((3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}, 1),
    ((3, 3), {"dilations": [1, 2], "strides": [2, 1]}, 1),
    ((2, 3), {"pads": [1, 0, 0, 1]}, 1),
    ((1, 5), {"strides": [1, 2], "pads": [0, 2, 0, 2]}, 1),
    ((3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 1),
    ((2, 2), {"auto_pad": "SAME_UPPER"}, 1),
    ((2, 2), {"auto_pad": "SAME_LOWER"}, 1),
    ((4, 3), {"auto_pad": "SAME_LOWER", "strides": [2, 1]}, 1),
    ((3, 3), {"auto_pad": "VALID", "strides": [2, 2]}, 1),
    ((3, 3), {"strides": [2, 2], "pads": [1, 0, 1, 2], "dilations": [2, 1]}, 4),
    ((3, 3), {"pads": [1, 1, 1, 1], "strides": [1, 2]}, 8),  # depthwise
    ((3, 3), {"pads": [2, 2, 2, 2], "dilations": [2, 2]}, 8),  # depthwise, dilated
]


@pytest.mark.parametrize(("k", "attrs", "groups"), CONVS, ids=lambda v: str(v))
def test_conv_geometry_matches_onnxruntime(
    tmp_path: Path, k: tuple[int, int], attrs: dict[str, Any], groups: int
) -> None:
    rng = np.random.default_rng(3)
    c, m = 8, 8 if groups == 8 else 12
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=groups, **attrs)
    inits = [init(rng, "w", m, c // groups, *k), init(rng, "b", m)]
    g = _check(tmp_path, [node], inits, [2, c, 11, 10])
    (op,) = g.ops
    assert op.fn == "conv2d" and op.attr("groups") == groups


# --- ConvTranspose ---------------------------------------------------------------------------

CONV_TRANSPOSES: list[tuple[tuple[int, int], dict[str, Any], int]] = [
    ((3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, 1),
    ((4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, 1),
    ((2, 2), {"strides": [2, 2]}, 1),
    ((3, 3), {}, 1),
    ((3, 2), {"strides": [1, 2], "pads": [0, 1, 2, 0]}, 1),
    ((3, 3), {"strides": [2, 1], "dilations": [2, 2], "pads": [1, 1, 1, 1]}, 1),
    ((3, 3), {"strides": [3, 2], "output_padding": [2, 1]}, 1),
    ((3, 3), {"strides": [2, 2], "output_shape": [10, 9]}, 1),
    ((3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, 1),
    ((3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}, 1),
    ((4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, 4),
    ((3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, 8),  # depthwise
]


@pytest.mark.parametrize(("k", "attrs", "groups"), CONV_TRANSPOSES, ids=lambda v: str(v))
def test_conv_transpose_matches_onnxruntime(
    tmp_path: Path, k: tuple[int, int], attrs: dict[str, Any], groups: int
) -> None:
    rng = np.random.default_rng(4)
    c, mg = 8, 1 if groups == 8 else 3
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], group=groups, **attrs)
    inits = [init(rng, "w", c, mg, *k), init(rng, "b", mg * groups)]
    g = _check(tmp_path, [node], inits, [2, c, 5, 4])
    (op,) = g.ops
    assert op.fn == "conv_transpose2d" and op.kind == "conv2d"


def test_conv_transpose_without_bias(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])
    g = _check(tmp_path, [node], [init(rng, "w", 4, 6, 2, 2)], [1, 4, 3, 3])
    assert g.tensors[g.output].shape == (1, 6, 6, 6)


# --- MaxPool / AveragePool / global pools ----------------------------------------------------

POOLS: list[dict[str, Any]] = [
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [2, 3], "strides": [1, 2]},
    {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [0, 1, 2, 0]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    {"kernel_shape": [3, 2], "strides": [3, 2], "pads": [1, 0, 0, 0], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER"},
    {"kernel_shape": [3, 3], "auto_pad": "VALID", "strides": [2, 1]},
]
DILATED: list[dict[str, Any]] = [
    {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [2, 2], "dilations": [1, 2], "strides": [2, 2], "ceil_mode": 1},
]


@pytest.mark.parametrize("attrs", POOLS + DILATED, ids=lambda v: str(v))
def test_maxpool_geometry_matches_onnxruntime(tmp_path: Path, attrs: dict[str, Any]) -> None:
    node = helper.make_node("MaxPool", ["x"], ["y"], **attrs)
    g = _check(tmp_path, [node], [], [2, 3, 11, 10])
    assert [op.fn for op in g.ops] == ["maxpool"]


@pytest.mark.parametrize("include", [0, 1])
@pytest.mark.parametrize("attrs", POOLS, ids=lambda v: str(v))
def test_avgpool_geometry_matches_onnxruntime(
    tmp_path: Path, attrs: dict[str, Any], include: int
) -> None:
    node = helper.make_node("AveragePool", ["x"], ["y"], count_include_pad=include, **attrs)
    g = _check(tmp_path, [node], [], [2, 3, 11, 10])
    assert [op.fn for op in g.ops] == ["avgpool"]


@pytest.mark.parametrize("include", [0, 1])
@pytest.mark.parametrize("attrs", DILATED, ids=lambda v: str(v))
def test_dilated_avgpool_matches_onnxruntime(
    tmp_path: Path, attrs: dict[str, Any], include: int
) -> None:
    node = helper.make_node("AveragePool", ["x"], ["y"], count_include_pad=include, **attrs)
    _check(tmp_path, [node], [], [2, 3, 11, 10], opset=19)


@pytest.mark.parametrize(("op", "fn"), [("GlobalAveragePool", "avgpool_global"),
                                        ("GlobalMaxPool", "maxpool_global")])  # fmt: skip
def test_global_pools_match_onnxruntime(tmp_path: Path, op: str, fn: str) -> None:
    node = helper.make_node(op, ["x"], ["y"])
    g = _check(tmp_path, [node], [], [2, 5, 7, 6])
    assert [o.fn for o in g.ops] == [fn, "permute"]  # [N, C] seen as the output's [N, C, 1, 1]


# --- Resize / Upsample -----------------------------------------------------------------------

MODES = [
    ("nearest", "round_prefer_floor"),
    ("nearest", "round_prefer_ceil"),
    ("nearest", "floor"),
    ("nearest", "ceil"),
    ("linear", None),
]
COORDS = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]
SCALES = [(2.0, 2.0), (0.5, 0.5), (1.5, 0.75), (1.7, 3.0), (0.6, 1.0)]


def _resize_node(mode: str, nearest: str | None, coord: str, inputs: list[str]) -> Any:
    extra = {} if nearest is None else {"nearest_mode": nearest}
    return helper.make_node(
        "Resize", ["x", *inputs], ["y"], mode=mode, coordinate_transformation_mode=coord, **extra
    )


@pytest.mark.parametrize("scales", SCALES, ids=str)
@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize(("mode", "nearest"), MODES, ids=lambda v: str(v))
def test_resize_by_scales_matches_onnxruntime(
    tmp_path: Path, mode: str, nearest: str | None, coord: str, scales: tuple[float, float]
) -> None:
    node = _resize_node(mode, nearest, coord, ["", "s"])
    g = _check(tmp_path, [node], [_floats("s", [1.0, 1.0, *scales])], [2, 3, 5, 6], opset=13)
    assert [op.fn for op in g.ops] == ["resize"] and g.ops[0].kind == "gemm"


@pytest.mark.parametrize("sizes", [(10, 12), (3, 4), (7, 13), (1, 1)], ids=str)
@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize(("mode", "nearest"), MODES[:1] + MODES[2:], ids=lambda v: str(v))
def test_resize_by_sizes_matches_onnxruntime(
    tmp_path: Path, mode: str, nearest: str | None, coord: str, sizes: tuple[int, int]
) -> None:
    node = _resize_node(mode, nearest, coord, ["", "", "z"])
    g = _check(tmp_path, [node], [_ints("z", [2, 3, *sizes])], [2, 3, 5, 6], opset=13)
    assert g.tensors[g.output].shape == (2, 3, *sizes)


def test_resize_opset_11_roi_and_opset_18_axes(tmp_path: Path) -> None:
    roi = _floats("roi", [])
    node = _resize_node("linear", None, "half_pixel", ["roi", "s"])
    _check(tmp_path, [node], [roi, _floats("s", [1.0, 1.0, 2.0, 1.5])], [1, 2, 4, 4], opset=11)
    node = helper.make_node("Resize", ["x", "", "", "z"], ["y"], mode="nearest", axes=[2, 3])
    g = _check(tmp_path, [node], [_ints("z", [8, 6])], [1, 2, 4, 4], opset=18)
    assert g.tensors[g.output].shape == (1, 2, 8, 6)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [(2.0, 2.0), (3.0, 1.5), (0.5, 0.6)], ids=str)
def test_resize_opset_10_matches_onnxruntime(
    tmp_path: Path, mode: str, scales: tuple[float, float]
) -> None:
    node = helper.make_node("Resize", ["x", "s"], ["y"], mode=mode)
    _check(tmp_path, [node], [_floats("s", [1.0, 1.0, *scales])], [1, 2, 5, 6], opset=10)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_matches_onnxruntime(tmp_path: Path, mode: str) -> None:
    node = helper.make_node("Upsample", ["x", "s"], ["y"], mode=mode)
    g = _check(tmp_path, [node], [_floats("s", [1.0, 1.0, 2.0, 3.0])], [1, 2, 4, 5], opset=9)
    assert g.tensors[g.output].shape == (1, 2, 8, 15)
    node = helper.make_node("Upsample", ["x"], ["y"], mode=mode, scales=[1.0, 1.0, 3.0, 2.0])
    g = _check(tmp_path, [node], [], [1, 2, 4, 5], opset=7)  # opset 7: scales an attribute
    assert g.tensors[g.output].shape == (1, 2, 12, 10)


def test_the_interpolation_matrices_on_hand_computed_values(tmp_path: Path) -> None:
    node = _resize_node("linear", None, "align_corners", ["", "", "z"])
    imported = import_onnx(save(tmp_path, [node], [_ints("z", [1, 1, 3, 2])], [1, 1, 2, 4]))
    ah, aw = (imported.params[n] for n in imported.graph.ops[0].inputs[1:])
    assert ah.tolist() == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]  # corners kept, middle halved
    assert aw.tolist() == [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    node = _resize_node("nearest", "floor", "asymmetric", ["", "s"])
    imported = import_onnx(save(tmp_path, [node], [_floats("s", [1, 1, 2, 0.5])], [1, 1, 2, 4]))
    ah, aw = (imported.params[n] for n in imported.graph.ops[0].inputs[1:])
    assert ah.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1]]  # each row repeated
    assert aw.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]  # every other column


# --- a small network of every new function: onnxruntime, StrictXp, no allocation ------------


def _network(tmp_path: Path, batch: int = 2) -> Path:
    rng = np.random.default_rng(9)
    nodes = [
        helper.make_node(
            "Conv", ["x", "w1", "b1"], ["c1"], dilations=[2, 2], pads=[2, 1, 2, 3], strides=[1, 2]
        ),
        helper.make_node(
            "ConvTranspose", ["c1", "w2", "b2"], ["t"], strides=[2, 2], pads=[1] * 4,
            output_padding=[1, 0], group=2,
        ),
        helper.make_node("MaxPool", ["t"], ["m"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 0, 0], ceil_mode=1),
        helper.make_node("AveragePool", ["m"], ["a"], kernel_shape=[2, 3], pads=[0, 1, 1, 1]),
        helper.make_node("Resize", ["a", "", "s"], ["r"], mode="linear"),
        helper.make_node("GlobalMaxPool", ["r"], ["y"]),
    ]  # fmt: skip
    inits = [
        init(rng, "w1", 6, 4, 3, 3),
        init(rng, "b1", 6),
        init(rng, "w2", 6, 4, 4, 4),
        init(rng, "b2", 8),
        _floats("s", [1.0, 1.0, 1.5, 2.0]),
    ]
    return save(tmp_path, nodes, inits, [batch, 4, 12, 12])


def test_a_network_of_every_spatial_op_matches_onnxruntime(tmp_path: Path) -> None:
    path = _network(tmp_path)
    imported = import_onnx(path, batch=2)
    fns = [op.fn for op in imported.graph.ops]
    assert fns == ["conv2d", "conv_transpose2d", "maxpool", "avgpool", "resize",
                   "maxpool_global", "permute"]  # fmt: skip
    against_ort(path, imported)
    again = Graph.from_dict(json.loads(json.dumps(imported.graph.to_dict())))
    # the graph file round-trips the new attributes (the weights live beside it, not in it)
    assert again == dataclasses.replace(imported.graph, weights=None)


def test_the_spatial_kernels_write_only_into_given_buffers(tmp_path: Path) -> None:
    from test_kernels import StrictXp, rel_err

    imported = import_onnx(_network(tmp_path), batch=2)
    g = imported.graph
    spy = StrictXp()
    cg = K.CompiledGraph(g, spy)  # type: ignore[arg-type]
    spy.armed = True
    cg.run()
    assert spy.calls >= 3 * len(g.ops)
    _, x = K.init_params(g)  # the seeded input; the weights are the model's own
    assert rel_err(cg.output, K.reference(g, imported.params, x)) < 1e-4


def test_a_second_run_of_the_spatial_kernels_allocates_no_array(tmp_path: Path) -> None:
    import tracemalloc

    g = import_onnx(_network(tmp_path, batch=8), batch=8).graph
    cg = K.CompiledGraph(g, np)
    cg.run()
    old = np.setbufsize(16)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        cg.run()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        np.setbufsize(old)
    # every activation but the [8, 8] output, and every scratch buffer but the weight-sized
    # ones (wt, awt, ahb, mask, count), is at least 8x6x12x6 floats: 13.5 KiB
    assert peak - before < 8 * 1024
    assert after - before < 1024


def test_scratch_shapes_of_the_spatial_ops(tmp_path: Path) -> None:
    g = import_onnx(_network(tmp_path), batch=2).graph
    ws = {op.fn: scratch_shapes(op, g) for op in g.ops}
    # conv: 12x12 padded (2, 1, 2, 3) to 16x16; window extent 5 (dilation 2), strides (1, 2)
    assert ws["conv2d"] == {"padded": (2, 4, 16, 16), "cols": (2, 1, 4 * 9, 12 * 6)}
    # transposed: 2 * (12 - 1) + 4 + output_padding 1 = 27 rows, 2 * 5 + 4 = 14 columns,
    # cropped by the pads to 25x12
    assert g.tensors[g.ops[1].output].shape == (2, 8, 25, 12)
    assert ws["conv_transpose2d"] == {
        "wt": (2, 4 * 16, 3),
        "cols": (2, 2, 64, 12 * 6),
        "full": (2, 8, 27, 14),
    }
    # maxpool 3x3 / 2, ceil mode on 25x12 padded top/left: 13x6 windows, the last row of
    # windows reaching one row past the padded input (27 rows)
    assert ws["maxpool"] == {"padded": (2, 8, 27, 13)}
    assert ws["avgpool"] == {
        "padded": (2, 8, 14, 8),
        "mask": (1, 1, 14, 8),
        "count": (1, 1, 13, 6),
    }
    # resize 13x6 by 1.5 x 2: 19x12
    assert ws["resize"] == {"awt": (6, 12), "ahb": (8, 19, 13), "tmp": (2, 8, 13, 12)}
    assert ws["maxpool_global"] == {}

    node = helper.make_node(
        "AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1] * 4, count_include_pad=1
    )
    g = import_onnx(save(tmp_path, [node], [], [1, 2, 5, 5])).graph
    assert scratch_shapes(g.ops[0], g) == {"padded": (1, 2, 7, 7)}  # one divisor: 9


# --- refusals: one line naming the file, the node and the op --------------------------------


def _refused(path: Path, match: str) -> None:
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: {match}") as info:
        import_onnx(path)
    assert "\n" not in str(info.value)


REFUSED: list[tuple[Any, list[Any], list[int], int, str]] = [
    (
        helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic", name="rz"),
        [_floats("s", [1, 1, 2, 2])], [1, 2, 4, 4], 13,
        r"node 'rz' \(Resize\): unsupported attribute value mode='cubic'",
    ),
    (
        helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear", exclude_outside=1),
        [_floats("s", [1, 1, 2, 2])], [1, 2, 4, 4], 13,
        r"node '#0' \(Resize\): unsupported attribute value exclude_outside=1",
    ),
    (
        helper.make_node("Resize", ["x", "r", "s"], ["y"], name="rz",
                         coordinate_transformation_mode="tf_crop_and_resize"),
        [_floats("r", [0, 0, 0, 0, 1, 1, 1, 1]), _floats("s", [1, 1, 2, 2])], [1, 2, 4, 4], 13,
        r"node 'rz' \(Resize\): unsupported attribute value "
        r"coordinate_transformation_mode='tf_crop_and_resize'",
    ),
    (
        helper.make_node("Resize", ["x", "", "", "z"], ["y"], name="rz", antialias=1),
        [_ints("z", [1, 2, 2, 2])], [1, 2, 4, 4], 18,
        r"node 'rz' \(Resize\): unsupported attribute value antialias=1",
    ),
    (
        helper.make_node("Resize", ["x", "", "s"], ["y"], name="rz"),
        [_floats("s", [1, 2, 2, 2])], [1, 2, 4, 4], 13,
        r"node 'rz' \(Resize\): only the spatial axes H and W may be resized",
    ),
    (
        helper.make_node("Resize", ["x", "", "s"], ["y"], name="rz"),
        [_floats("s", [1, 1, 2])], [1, 2, 4], 13,
        r"node 'rz' \(Resize\): only 4-D NCHW inputs can be resized",
    ),
    (
        helper.make_node("Conv", ["x", "w"], ["y"], name="c3"),
        [numpy_helper.from_array(np.ones((3, 2, 1, 1, 1), np.float32), "w")],
        [1, 2, 4, 4, 4], 17,
        r"node 'c3' \(Conv\): only 2-D convolutions are supported, weight shape \[3, 2, 1, 1, 1\]",
    ),
    (
        helper.make_node("Conv", ["x", "w"], ["y"], name="c1"),
        [numpy_helper.from_array(np.ones((3, 2, 3), np.float32), "w")], [1, 2, 8], 17,
        r"node 'c1' \(Conv\): only 2-D convolutions are supported",
    ),
    (
        helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="ct"),
        [numpy_helper.from_array(np.ones((2, 3, 2, 2, 2), np.float32), "w")],
        [1, 2, 4, 4, 4], 17,
        r"node 'ct' \(ConvTranspose\): only 2-D convolutions are supported",
    ),
    (
        helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="ct", strides=[2, 2],
                         output_shape=[9, 9], pads=[1, 1, 1, 1]),
        [numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")], [1, 2, 4, 4], 17,
        r"node 'ct' \(ConvTranspose\): output_shape \[9, 9\] with explicit pads",
    ),
    (
        helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2, 2], name="p3"),
        [], [1, 2, 4, 4, 4], 17,
        r"node 'p3' \(MaxPool\): only 2-D pooling is supported",
    ),
    (
        helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                         pads=[0, 0, 1, 1], ceil_mode=1, name="mp"),
        [], [1, 2, 10, 10], 17,
        r"node 'mp' \(MaxPool\): ceil_mode=1 with a last window starting in the padding: "
        r"onnxruntime gives \[1, 2, 5, 5\], ONNX shape inference \[1, 2, 6, 6\]",
    ),
    (
        helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], count_include_pad=2),
        [], [1, 2, 4, 4], 17,
        r"node '#0' \(AveragePool\): unsupported attribute value count_include_pad=2",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("node", "inits", "shape", "opset", "match"), REFUSED,
                         ids=[m.split(": ", 1)[-1][:40] for *_, m in REFUSED])  # fmt: skip
def test_unsupported_spatial_forms_name_file_node_and_op(
    tmp_path: Path, node: Any, inits: list[Any], shape: list[int], opset: int, match: str
) -> None:
    _refused(save(tmp_path, [node], inits, shape, opset=opset), match)


# --- graph files: the IR checks the new attributes and shapes itself -------------------------


def _graph_doc(tmp_path: Path) -> dict[str, Any]:
    return import_onnx(_network(tmp_path), batch=2).graph.to_dict()  # type: ignore[no-any-return]


def _load_changed(tmp_path: Path, fn: str, **change: Any) -> Graph:
    doc = _graph_doc(tmp_path)
    op = next(o for o in doc["ops"] if o["fn"] == fn)
    op["attrs"] = {**op["attrs"], **change}
    op.pop("flops")
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    return load_graph(path)


@pytest.mark.parametrize(
    ("fn", "change", "message"),
    [
        ("conv2d", {"stride": [1]}, "attribute stride must be an integer >= 1 or a list of 2"),
        ("conv2d", {"pad": [1, 1, 1]}, "attribute pad must be an integer >= 0 or a list of 4"),
        ("conv2d", {"dilation": 0}, "attribute dilation must be an integer >= 1"),
        ("conv2d", {"dilation": [2, True]}, "attribute dilation must be an integer >= 1"),
        ("conv2d", {"pad": [9, 0, 9, 0], "stride": 1, "dilation": 1}, "expected"),
        ("conv_transpose2d", {"output_padding": [2, 0]}, "output_padding 2 must be below"),
        ("conv_transpose2d", {"output_padding": -1}, "output_padding must be an integer >= 0"),
        ("conv_transpose2d", {"pad": 30}, "leave no output"),
        ("maxpool", {"ceil_mode": 2}, "attribute ceil_mode must be 0 or 1"),
        ("maxpool", {"k": [0, 3]}, "attribute k must be an integer >= 1 or a list of 2"),
        ("maxpool", {"pad": [3, 0, 0, 0]}, "pool pads (3, 0, 0, 0) must be smaller than"),
        ("avgpool", {"count_include_pad": True}, "count_include_pad must be 0 or 1"),
        ("avgpool", {"k": [20, 2]}, "do not fit extent 13"),
    ],
)
def test_graph_files_with_bad_spatial_attributes_are_refused(
    tmp_path: Path, fn: str, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as info:
        _load_changed(tmp_path, fn, **change)
    assert str(info.value).startswith(f"{tmp_path}/g.json: not a valid graph file: ")


def test_a_resize_whose_matrices_do_not_fit_is_refused(tmp_path: Path) -> None:
    doc = _graph_doc(tmp_path)
    (ah,) = [t for t in doc["tensors"] if t["name"].endswith(":ah")]
    ah["shape"] = [19, 12]
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=re.escape("resize of (2, 8, 13, 6) with matrices")):
        load_graph(path)


def test_old_int_attributes_mean_the_same_window() -> None:
    w = window({"stride": 2, "pad": 1}, (3, 3))
    assert w == window({"stride": [2, 2], "pad": [1, 1, 1, 1], "dilation": 1}, (3, 3))
    assert (w.stride, w.pad, w.dilation, w.extent) == ((2, 2), (1, 1, 1, 1), (1, 1), (3, 3))
    assert w.out(7, 8) == (4, 4) and w.padded(7, 8) == (9, 10)
    pool = window({"k": 2, "stride": 2, "ceil_mode": 1})
    assert pool.out(5, 4) == (3, 2) and pool.padded(5, 4) == (6, 4)  # one extra row
    up = window({"stride": 2, "pad": 1, "output_padding": 1}, (3, 3))
    assert up.transposed(4, 4) == (8, 8) and up.full(4, 4) == (10, 10)


def test_flops_of_the_spatial_ops(tmp_path: Path) -> None:
    g = import_onnx(_network(tmp_path), batch=2).graph
    by_fn = {op.fn: op for op in g.ops}
    assert by_fn["conv2d"].flops == 2 * (2 * 6 * 12 * 6) * 4 * 9
    assert by_fn["conv_transpose2d"].flops == 2 * (2 * 6 * 12 * 6) * 4 * 16
    assert by_fn["maxpool"].flops == (2 * 8 * 13 * 6) * 9
    assert by_fn["avgpool"].flops == (2 * 8 * 13 * 6) * 6
    assert by_fn["resize"].flops == 2 * (2 * 8 * 13) * 12 * 6 + 2 * (2 * 8 * 19 * 12) * 13
    assert by_fn["maxpool_global"].flops == 2 * 8 * 19 * 12


# --- BatchNormalization not after a Conv, on [N, C] and [N, C, L] ----------------------------


def _bn_inits(rng: np.random.Generator, c: int) -> list[Any]:
    var = numpy_helper.from_array((rng.random(c) + 0.5).astype(np.float32), "v")
    return [init(rng, "g", c), init(rng, "be", c), init(rng, "m", c), var]


@pytest.mark.parametrize("shape", [[3, 6], [2, 6, 7], [2, 6, 3, 4]], ids=str)
def test_standalone_batchnorm_of_2d_3d_and_4d_inputs(tmp_path: Path, shape: list[int]) -> None:
    rng = np.random.default_rng(11)
    node = helper.make_node("BatchNormalization", ["x", "g", "be", "m", "v"], ["y"])
    g = _check(tmp_path, [node], _bn_inits(rng, 6), shape)
    conv = next(op for op in g.ops if op.fn == "conv2d")
    assert conv.attr("groups") == 6 and g.tensors[conv.inputs[1]].shape == (6, 1, 1, 1)


def test_batchnorm_after_gemm_is_a_depthwise_conv(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    nodes = [
        helper.make_node("Gemm", ["x", "w", "c"], ["h"]),
        helper.make_node("BatchNormalization", ["h", "g", "be", "m", "v"], ["y"]),
    ]
    inits = [init(rng, "w", 5, 6), init(rng, "c", 6), *_bn_inits(rng, 6)]
    g = _check(tmp_path, nodes, inits, [4, 5])
    assert [op.fn for op in g.ops] == ["linear", "permute", "conv2d", "permute"]


def test_batchnorm_of_a_5d_input_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    node = helper.make_node("BatchNormalization", ["x", "g", "be", "m", "v"], ["y"], name="bn")
    path = save(tmp_path, [node], _bn_inits(rng, 2), [1, 2, 3, 3, 3])
    _refused(path, r"node 'bn' \(BatchNormalization\): BatchNormalization of a 5-D input")


# --- the same on a GPU with CuPy (skipped without one) ---------------------------------------


@pytest.mark.gpu
def test_cupy_runs_the_spatial_network_without_allocating(tmp_path: Path) -> None:
    from test_kernels import _cupy, rel_err

    cp = _cupy()
    g = import_onnx(_network(tmp_path), batch=2).graph
    pool = cp.get_default_memory_pool()
    mallocs: list[int] = []

    def counting(size: int) -> Any:
        mallocs.append(size)
        return pool.malloc(size)

    cg = K.CompiledGraph(g, cp, seed=7)
    cg.run()
    cp.cuda.Device().synchronize()
    cp.cuda.set_allocator(counting)
    try:
        cg.run()
        cp.cuda.Device().synchronize()
    finally:
        cp.cuda.set_allocator(pool.malloc)
    assert mallocs == []
    params, x = K.init_params(g, seed=7)
    assert rel_err(cp.asnumpy(cg.output), K.reference(g, params, x)) < 1e-4
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:  # the pools (no GEMM) replay from a CUDA graph
        for i, op in enumerate(g.ops):
            if op.kind != "elementwise":
                continue
            expected = cp.asnumpy(cg.tensors[op.output])
            stream.begin_capture()
            try:
                cg.run(range(i, i + 1))
            finally:
                graph = stream.end_capture()
            cg.tensors[op.output][...] = cp.nan
            graph.launch()
            stream.synchronize()
            assert np.array_equal(cp.asnumpy(cg.tensors[op.output]), expected), op.name
