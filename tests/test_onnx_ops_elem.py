"""The "elem" ONNX operators, one (or a few) nodes each, imported and compared with
onnxruntime through the float64 reference and the float32 kernels (:func:`against_ort`):
broadcasting Add / Sub / Mul / Div / Pow, the unary functions, Clip, Gelu, ReduceMean, Softmax
and LayerNormalization on any axis, batched MatMul, Concat, Slice, Gather, Cast, Expand and a
LayerNorm decomposed the way exporters write it; and the refusals (file, node and op named)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx_util import against_ort, init, ints, save  # noqa: E402

from aegis_core.graph.onnx_import import ImportedModel, import_onnx  # noqa: E402
from aegis_core.model.errors import InputError  # noqa: E402

OPSETS = [13, 17]
node = helper.make_node


def _const(name: str, value: Any, dtype: Any = np.float32) -> Any:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _check(
    tmp_path: Path,
    nodes: list[Any],
    inits: list[Any],
    in_shape: list[int],
    out_rank: int | None = None,
    opset: int = 17,
    fns: list[str] | None = None,
) -> ImportedModel:
    out = None if out_rank is None else [f"o{i}" for i in range(out_rank)]
    path = save(tmp_path, nodes, inits, in_shape, out, opset)
    imported = import_onnx(path, batch=in_shape[0])
    if fns is not None:
        assert [op.fn for op in imported.graph.ops] == fns
    against_ort(path, imported)
    return imported


def _refused(
    tmp_path: Path,
    nodes: list[Any],
    inits: list[Any],
    in_shape: list[int],
    match: str,
    out_rank: int | None = None,
    opset: int = 17,
) -> None:
    out = None if out_rank is None else [f"o{i}" for i in range(out_rank)]
    path = save(tmp_path, nodes, inits, in_shape, out, opset)
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: {match}") as info:
        import_onnx(path, batch=in_shape[0])
    assert "\n" not in str(info.value)


# --- broadcasting binary operators -----------------------------------------------------------

BINARY = ["Add", "Sub", "Mul", "Div", "Pow"]
SHAPE = [2, 3, 4, 5]


def _operands(op: str, pattern: str) -> tuple[list[Any], list[Any], int, tuple[int, ...] | None]:
    """Nodes feeding ``a`` and ``b`` and the ``y = op(a, b)`` node, the constants, the output
    rank and the shape the constant must keep as a weight (None: no constant). Div's
    divisor and Pow's base are positive (``exp``)."""
    rng = np.random.default_rng(len(op) + len(pattern))
    pos = op in ("Div", "Pow")
    pre = [node("Exp", ["x"], ["p"])]
    act = "p" if pos else "x"
    shapes = {
        "scalar": (),
        "channel": (3, 1, 1),
        "row": (5,),
        "up": (2, 1, 1, 1, 1),
    }
    if pattern == "same":
        a, b, inits, keep = act, "q", [], None
        pre.append(node("Sigmoid", ["x"], ["q"]))
    elif pattern == "reduced":  # [2,3,1,5] op [2,3,4,1]: both broadcast
        pre += [
            node("ReduceMean", [act], ["a"], axes=[2]),
            node("ReduceMean", ["p"], ["b"], axes=[3]),
        ]
        a, b, inits, keep = "a", "b", [], None
    else:
        shape = shapes[pattern.removeprefix("const_")]
        value = rng.uniform(0.5, 1.5, shape) if pos else rng.standard_normal(shape)
        inits, keep = [_const("c", value)], shape or (1,)
        a, b = ("c", act) if pattern.startswith("const_") else (act, "c")
        if op == "Pow" and a == "c":
            b = "x"  # c ** x: positive base, any exponent
        elif op == "Div" and a == "c":
            b = "p"
    return [*pre, node(op, [a, b], ["y"])], inits, 5 if pattern.endswith("up") else 4, keep


PATTERNS = ["same", "reduced", "scalar", "channel", "row", "up", "const_row", "const_channel"]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("op", BINARY)
def test_broadcasting_binary_operators_match_onnxruntime(
    tmp_path: Path, op: str, pattern: str, opset: int
) -> None:
    nodes, inits, rank, keep = _operands(op, pattern)
    imported = _check(tmp_path, nodes, inits, SHAPE, rank, opset)
    g = imported.graph
    last = g.ops[-1]
    assert last.fn == op.lower() or (op == "Pow" and pattern == "scalar")
    if keep is not None:  # the constant stays its own size: never materialised up
        weights = [g.tensors[i] for i in last.inputs if g.tensors[i].role == "weight"]
        assert [w.shape for w in weights] == [keep]
    assert last.flops == g.tensors[last.output].size


def test_a_scalar_constant_stays_one_element_and_c_minus_x_maps(tmp_path: Path) -> None:
    nodes = [node("Sub", ["c", "x"], ["s"]), node("Div", ["d", "s"], ["y"])]
    inits = [_const("c", 10.0), _const("d", [[2.0], [3.0], [4.0]])]
    imported = _check(tmp_path, nodes, inits, [2, 3, 8], 3, fns=["sub", "div"])
    assert imported.graph.weights_bytes == 4 * (1 + 3)


@pytest.mark.parametrize(
    ("exponent", "fns"),
    [
        (2.0, ["exp", "mul"]),
        (0.5, ["exp", "sqrt"]),
        (1.0, ["exp", "relu"]),
        (3.0, ["exp", "pow"]),
        (-1.5, ["exp", "pow"]),
        (np.int64(2), ["exp", "mul"]),
        ([[[2.0, 0.5, 3.0]]], ["exp", "pow"]),  # not one number: the general form
    ],
)
def test_pow_by_a_constant_maps_to_mul_sqrt_or_pow(
    tmp_path: Path, exponent: Any, fns: list[str]
) -> None:
    dtype = np.int64 if isinstance(exponent, np.integer) else np.float32
    nodes = [node("Exp", ["x"], ["p"]), node("Pow", ["p", "e"], ["q"]), node("Relu", ["q"], ["y"])]
    if fns[-1] != "relu":
        fns = [*fns, "relu"]
    _check(tmp_path, nodes, [_const("e", exponent, dtype)], [2, 4, 3], fns=fns)


def test_the_bias_fold_still_applies_to_a_constant_add_after_linear_and_conv(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    nodes = [node("MatMul", ["x", "w"], ["m"]), node("Add", ["b", "m"], ["y"])]
    _check(tmp_path, nodes, [init(rng, "w", 6, 4), init(rng, "b", 4)], [2, 3, 6], fns=["linear"])
    nodes = [node("Conv", ["x", "w"], ["c"]), node("Sub", ["c", "b"], ["y"])]
    inits = [init(rng, "w", 4, 2, 3, 3), init(rng, "b", 4, 1, 1)]
    _check(tmp_path, nodes, inits, [1, 2, 6, 6], fns=["conv2d"])


# --- unary functions ---------------------------------------------------------------------------


UNARY = [
    ("Sigmoid", {}, "sigmoid"),
    ("HardSigmoid", {}, "hardsigmoid"),
    ("HardSigmoid", {"alpha": 0.5, "beta": 0.1}, "hardsigmoid"),
    ("HardSigmoid", {"alpha": -1.0 / 3.0, "beta": 0.6}, "hardsigmoid"),
    ("Tanh", {}, "tanh"),
    ("Erf", {}, "erf"),
    ("Exp", {}, "exp"),
    ("Neg", {}, "mul"),
]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("shape", [[2, 3, 4, 5], [3, 7], [1, 2, 300]])
@pytest.mark.parametrize(("op", "attrs", "fn"), UNARY, ids=[f"{o}{a}" for o, a, _ in UNARY])
def test_unary_operators_match_onnxruntime(
    tmp_path: Path, op: str, attrs: dict[str, Any], fn: str, shape: list[int], opset: int
) -> None:
    nodes = [node("Mul", ["x", "k"], ["s"]), node(op, ["s"], ["y"], **attrs)]
    inits = [_const("k", 2.5)]  # a wider range: saturation and both tails
    imported = _check(tmp_path, nodes, inits, shape, opset=opset, fns=["mul", fn])
    if attrs:
        assert imported.graph.ops[-1].attr("alpha") == pytest.approx(attrs["alpha"])


@pytest.mark.parametrize("opset", [14, 17])
def test_hardswish_matches_onnxruntime(tmp_path: Path, opset: int) -> None:
    nodes = [node("Mul", ["x", "k"], ["s"]), node("HardSwish", ["s"], ["y"])]
    _check(tmp_path, nodes, [_const("k", 4.0)], [2, 8, 5], opset=opset, fns=["mul", "hardswish"])


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("op", ["Sqrt", "Reciprocal"])
def test_sqrt_and_reciprocal_of_a_positive_activation(tmp_path: Path, op: str, opset: int) -> None:
    nodes = [node("Exp", ["x"], ["p"]), node(op, ["p"], ["y"])]
    fn = {"Sqrt": "sqrt", "Reciprocal": "div"}[op]
    _check(tmp_path, nodes, [], [2, 3, 9], opset=opset, fns=["exp", fn])


CLIPS = [
    (-1.0, 1.0, "clip"),
    (None, 0.5, "clip"),
    (-0.5, None, "clip"),
    (0.7, 0.2, "clip"),  # min > max: everything is max
    (0.0, 6.0, "relu6"),
    (0.0, None, "relu"),
    (None, None, "clip"),
]


@pytest.mark.parametrize("opset", [11, *OPSETS])
@pytest.mark.parametrize(("lo", "hi", "fn"), CLIPS)
def test_clip_with_bounds_as_inputs(
    tmp_path: Path, lo: float | None, hi: float | None, fn: str, opset: int
) -> None:
    inits = [_const(n, v) for n, v in (("lo", lo), ("hi", hi)) if v is not None]
    ins = ["x", "lo" if lo is not None else "", "hi" if hi is not None else ""]
    while ins[-1] == "":
        ins.pop()
    nodes = [node("Mul", ["x", "k"], ["s"]), node("Clip", ["s", *ins[1:]], ["y"])]
    imported = _check(tmp_path, nodes, [*inits, _const("k", 4.0)], [2, 3, 10], opset=opset)
    op = imported.graph.ops[-1]
    assert op.fn == fn
    if fn == "clip":
        got = [op.attr("min"), op.attr("max")]
        assert [v is None for v in got] == [lo is None, hi is None]
        assert [v for v in got if v is not None] == pytest.approx(
            [v for v in (lo, hi) if v is not None]
        )


@pytest.mark.parametrize(("lo", "hi", "fn"), [(-0.25, 0.75, "clip"), (0.0, 6.0, "relu6")])
def test_clip_with_bounds_as_attributes_before_opset_11(
    tmp_path: Path, lo: float, hi: float, fn: str
) -> None:
    nodes = [node("Clip", ["x"], ["y"], min=lo, max=hi)]
    _check(tmp_path, nodes, [], [2, 3, 10], opset=10, fns=[fn])


@pytest.mark.parametrize("shape", [[2, 3, 4, 5], [3, 64]])
@pytest.mark.parametrize("form", ["none", "tanh", None])
def test_gelu_in_both_forms(tmp_path: Path, form: str | None, shape: list[int]) -> None:
    attrs = {} if form is None else {"approximate": form}
    nodes = [node("Mul", ["x", "k"], ["s"]), node("Gelu", ["s"], ["y"], **attrs)]
    imported = _check(tmp_path, nodes, [_const("k", 2.0)], shape, opset=20)
    assert imported.graph.ops[-1].attr("approximate", "tanh") == (form or "none")


# --- reductions and normalisations -------------------------------------------------------------


REDUCE = [
    ([-1], 1),
    ([1], 1),
    ([1, 2], 1),
    ([0, 2], 1),
    ([3, 1], 0),
    ([2], 0),
    (None, 1),
]


@pytest.mark.parametrize("opset", [*OPSETS, 18])
@pytest.mark.parametrize(("axes", "keepdims"), REDUCE)
def test_reduce_mean_matches_onnxruntime(
    tmp_path: Path, axes: list[int] | None, keepdims: int, opset: int
) -> None:
    inits: list[Any] = []
    ins = ["x"]
    attrs: dict[str, Any] = {"keepdims": keepdims}
    if axes is not None and opset >= 18:
        inits, ins = [ints("axes", axes)], ["x", "axes"]
    elif axes is not None:
        attrs["axes"] = axes
    rank = 4 if keepdims else 4 - len(axes or [])
    nodes = [node("ReduceMean", ins, ["y"], **attrs)]
    imported = _check(tmp_path, nodes, inits, [2, 3, 4, 5], rank, opset, fns=["reduce_mean"])
    op = imported.graph.ops[0]
    want = sorted(a % 4 for a in axes) if axes is not None else [0, 1, 2, 3]
    assert list(op.attr("axes")) == want and op.flops == 120


def test_reduce_mean_with_noop_for_empty_axes(tmp_path: Path) -> None:
    nodes = [node("ReduceMean", ["x"], ["r"], noop_with_empty_axes=1), node("Relu", ["r"], ["y"])]
    _check(tmp_path, nodes, [], [2, 3, 4], opset=18, fns=["relu"])


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_softmax_on_any_axis(tmp_path: Path, axis: int, opset: int) -> None:
    nodes = [node("Softmax", ["x"], ["y"], axis=axis)]
    imported = _check(tmp_path, nodes, [], [2, 3, 4], opset=opset, fns=["softmax"])
    assert imported.graph.ops[0].attr("axis", 2) == axis % 3


@pytest.mark.parametrize(
    ("shape", "axis", "along"),
    [([2, 3, 1], 1, 1), ([2, 1, 6], 1, 2), ([3, 5], None, 1), ([2, 4, 1, 1], None, 1)],
)
def test_softmax_before_opset_13_maps_where_it_is_one_axis(
    tmp_path: Path, shape: list[int], axis: int | None, along: int
) -> None:
    attrs = {} if axis is None else {"axis": axis}
    imported = _check(tmp_path, [node("Softmax", ["x"], ["y"], **attrs)], [], shape, opset=11)
    assert imported.graph.ops[0].attr("axis", len(shape) - 1) == along


@pytest.mark.parametrize("beta", [True, False])
@pytest.mark.parametrize("axis", [-1, -2, 1, 0])
def test_layernorm_on_any_axis(tmp_path: Path, axis: int, beta: bool) -> None:
    rng = np.random.default_rng(2)
    shape = [2, 3, 4]
    inner = shape[axis % 3 :]
    inits = [init(rng, "g", *inner, scale=1.0)]
    if beta:
        inits.append(init(rng, "b", *inner))
    ins = ["x", "g", "b"] if beta else ["x", "g"]
    nodes = [node("LayerNormalization", ins, ["y"], axis=axis, epsilon=1e-3)]
    imported = _check(tmp_path, nodes, inits, shape)
    assert [op.fn for op in imported.graph.ops].count("layernorm") == 1


@pytest.mark.parametrize("opset", [*OPSETS, 18])
def test_a_decomposed_layernorm_as_exporters_write_it(tmp_path: Path, opset: int) -> None:
    rng = np.random.default_rng(7)
    if opset >= 18:
        mean = [node("ReduceMean", ["x", "ax"], ["mu"]), node("ReduceMean", ["sq", "ax"], ["var"])]
        extra = [ints("ax", [-1])]
    else:
        mean = [
            node("ReduceMean", ["x"], ["mu"], axes=[-1]),
            node("ReduceMean", ["sq"], ["var"], axes=[-1]),
        ]
        extra = []
    nodes = [
        mean[0],
        node("Sub", ["x", "mu"], ["d"]),
        node("Pow", ["d", "two"], ["sq"]),
        mean[1],
        node("Add", ["var", "eps"], ["ve"]),
        node("Sqrt", ["ve"], ["sd"]),
        node("Div", ["d", "sd"], ["n"]),
        node("Mul", ["n", "g"], ["ng"]),
        node("Add", ["ng", "b"], ["y"]),
    ]
    inits = [_const("two", 2.0), _const("eps", 1e-5), init(rng, "g", 16), init(rng, "b", 16)]
    imported = _check(tmp_path, nodes, [*inits, *extra], [2, 5, 16], opset=opset, fns=["layernorm"])
    assert imported.graph.weights_bytes == 4 * (16 + 16)
    assert imported.graph.ops[0].attr("eps") == pytest.approx(1e-5)


_UNFUSED = ["reduce_mean", "sub", "mul", "reduce_mean", "add", "sqrt", "div", "mul", "add"]


def _decomposed(
    square: str = "Pow",
    axes: int = -1,
    extra: list[Any] | None = None,
    gshape: tuple[int, ...] = (16,),
) -> tuple[list[Any], list[Any]]:
    rng = np.random.default_rng(8)
    sq = node("Pow", ["d", "two"], ["sq"]) if square == "Pow" else node("Mul", ["d", "d"], ["sq"])
    nodes = [
        node("ReduceMean", ["x"], ["mu"], axes=[axes]),
        node("Sub", ["x", "mu"], ["d"]),
        sq,
        node("ReduceMean", ["sq"], ["var"], axes=[axes]),
        node("Add", ["eps", "var"], ["ve"]),
        node("Sqrt", ["ve"], ["sd"]),
        node("Div", ["d", "sd"], ["n"]),
        node("Mul", ["g", "n"], ["ng"]),
        node("Add", ["ng", "b"], ["ln" if extra else "y"]),
        *(extra or []),
    ]
    inits = [_const("two", 2.0), _const("eps", 1e-3), init(rng, "g", *gshape), init(rng, "b", 16)]
    return nodes, inits


@pytest.mark.parametrize(
    ("case", "fused"),
    [
        ({"square": "Mul"}, True),
        ({"gshape": (1, 1, 16)}, True),
        ({"gshape": (1,)}, True),
        ({"extra": [node("Identity", ["ln"], ["y"])]}, True),
        ({"axes": 1}, False),  # not the last axis
        ({"gshape": (5, 16)}, False),  # gamma varies along another axis
        ({"extra": [node("Add", ["ln", "d"], ["y"])]}, False),  # d is read outside
        ({"extra": [node("Add", ["ln", "sd"], ["y"])]}, False),  # sd is read outside
        ({"extra": [node("Identity", ["n"], ["n2"]), node("Add", ["ln", "n2"], ["y"])]}, False),
    ],
)
def test_a_decomposed_layernorm_is_fused_only_where_nothing_else_reads_its_parts(
    tmp_path: Path, case: dict[str, Any], fused: bool
) -> None:
    nodes, inits = _decomposed(**case)
    imported = _check(tmp_path, nodes, inits, [2, 5, 16])
    fns = [op.fn for op in imported.graph.ops]
    assert ("layernorm" in fns) == fused
    assert fused or fns[:9] == _UNFUSED


# --- MatMul ------------------------------------------------------------------------------------


def _mm_cases() -> list[tuple[str, list[Any], list[Any], int, str]]:
    rng = np.random.default_rng(4)
    t = node("Transpose", ["x"], ["xt"], perm=[0, 1, 3, 2])  # [2, 3, 5, 4]
    return [
        ("act_act", [t, node("MatMul", ["x", "xt"], ["y"])], [], 4, "matmul"),
        (
            "broadcast_left",
            [
                node("ReduceMean", ["x"], ["r"], axes=[1]),  # [2, 1, 4, 5]
                t,
                node("MatMul", ["r", "xt"], ["y"]),
            ],
            [],
            4,
            "matmul",
        ),
        (
            "broadcast_rank",
            [
                t,
                node("ReduceMean", ["xt"], ["r"], axes=[0], keepdims=0),  # [3, 5, 4]
                node("MatMul", ["x", "r"], ["y"]),
            ],
            [],
            4,
            "matmul",
        ),
        ("weight_3d", [node("MatMul", ["x", "w"], ["y"])], [init(rng, "w", 3, 5, 6)], 4, "matmul"),
        (
            "weight_4d",
            [node("MatMul", ["x", "w"], ["y"])],
            [init(rng, "w", 2, 1, 5, 2)],
            4,
            "matmul",
        ),
        (
            "weight_left",
            [node("MatMul", ["w", "x"], ["y"])],
            [init(rng, "w", 3, 6, 4)],
            4,
            "matmul",
        ),
        ("weight_2d", [node("MatMul", ["x", "w"], ["y"])], [init(rng, "w", 5, 7)], 4, "linear"),
    ]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("case", _mm_cases(), ids=[c[0] for c in _mm_cases()])
def test_batched_matmul_with_broadcast_batch_dims(tmp_path: Path, case: Any, opset: int) -> None:
    _, nodes, inits, rank, fn = case
    imported = _check(tmp_path, nodes, inits, [2, 3, 4, 5], rank, opset)
    last = imported.graph.ops[-1]
    assert last.fn == fn
    if fn == "matmul":
        k = imported.graph.tensors[last.inputs[0]].shape[-1]
        assert last.flops == 2 * k * imported.graph.tensors[last.output].size


# --- shape operators ---------------------------------------------------------------------------


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize(
    ("parts", "axis"),
    [
        (["x", "e"], 1),
        (["x", "c"], -1),
        (["c", "x", "e"], 2),
        (["x", "empty", "c", "e"], 2),
        (["x", "x"], 0),
    ],
)
def test_concat_of_activations_and_constants(
    tmp_path: Path, parts: list[str], axis: int, opset: int
) -> None:
    rng = np.random.default_rng(5)
    shape = [2, 3, 4]
    cshape = list(shape)
    cshape[axis] = 2
    inits = [init(rng, "c", *cshape)]
    eshape = list(shape)
    eshape[axis] = 0
    inits.append(_const("empty", np.zeros(eshape)))
    nodes = [node("Exp", ["x"], ["e"]), node("Concat", parts, ["y"], axis=axis)]
    imported = _check(tmp_path, nodes, inits, shape, opset=opset)
    last = imported.graph.ops[-1]
    assert last.fn == "concat" and len(last.inputs) == len([p for p in parts if p != "empty"])


INT_MAX = 2**63 - 1
SLICES = [
    ([1], [5], [1], None),
    ([-3], [-1], [2], None),
    ([2], [INT_MAX], [2], None),
    ([-100], [3], [-1], None),
    ([-1], [-INT_MAX], [1], [-1]),
    ([5], [0], [1], [-2]),
    ([0, 1], [2, 100], [0, 2], [1, 3]),
    ([1, 6, 0], [3, 1, 2], [2, 1, 0], [1, -2, 1]),
    ([0, 0], [1, 2], None, None),
]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize(("starts", "ends", "axes", "steps"), SLICES)
def test_slice_with_negative_clamped_and_reversed_bounds(
    tmp_path: Path,
    starts: list[int],
    ends: list[int],
    axes: list[int] | None,
    steps: list[int] | None,
    opset: int,
) -> None:
    inits = [ints("s", starts), ints("e", ends)]
    ins = ["x", "s", "e"]
    if axes is not None:
        inits.append(ints("a", axes))
        ins.append("a")
    if steps is not None:
        if axes is None:
            inits.append(ints("a", list(range(len(starts)))))
            ins.append("a")
        inits.append(ints("st", steps))
        ins.append("st")
    nodes = [node("Exp", ["x"], ["p"]), node("Slice", ["p", *ins[1:]], ["y"])]
    imported = _check(tmp_path, nodes, inits, [2, 7, 8], opset=opset)
    assert imported.graph.ops[-1].fn == "slice"


def test_slice_with_attributes_before_opset_10_and_a_full_slice_is_free(tmp_path: Path) -> None:
    nodes = [node("Slice", ["x"], ["y"], starts=[1, -3], ends=[100, -1], axes=[1, 2])]
    _check(tmp_path, nodes, [], [2, 4, 6], opset=9, fns=["slice"])
    nodes = [node("Slice", ["x", "s", "e"], ["r"]), node("Relu", ["r"], ["y"])]
    inits = [ints("s", [0, -INT_MAX]), ints("e", [INT_MAX, INT_MAX])]
    _check(tmp_path, nodes, inits, [2, 4, 6], fns=["relu"])


GATHERS = [
    (1, 2),
    (1, -1),
    (1, [0, 3, 1]),
    (1, [-1, -2]),
    (2, [0, 2]),
    (-1, [3, 3, 0]),
    (0, [1, 0]),
    (1, [[0, 1], [4, 2]]),
    (2, [[1]]),
]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize(("axis", "indices"), GATHERS)
def test_gather_with_constant_indices(tmp_path: Path, axis: int, indices: Any, opset: int) -> None:
    idx = np.asarray(indices, dtype=np.int64)
    nodes = [node("Exp", ["x"], ["p"]), node("Gather", ["p", "i"], ["y"], axis=axis)]
    rank = 3 - 1 + idx.ndim
    imported = _check(tmp_path, nodes, [_const("i", idx, np.int64)], [2, 5, 4], rank, opset)
    (op,) = [op for op in imported.graph.ops if op.fn == "gather"]
    assert op.attr("scalar") == int(idx.ndim == 0)
    assert all(i >= 0 for i in op.attr("indices"))


def test_the_importer_writes_the_axis_the_ir_requires(tmp_path: Path) -> None:
    """ONNX Gather without ``axis`` means axis 0: the graph says so (the IR has no default)."""
    nodes = [node("Exp", ["x"], ["p"]), node("Gather", ["p", "i"], ["y"])]
    idx = _const("i", np.asarray([1, 0], dtype=np.int64), np.int64)
    imported = _check(tmp_path, nodes, [idx], [2, 5, 4], 3)
    (op,) = [op for op in imported.graph.ops if op.fn == "gather"]
    assert dict(op.attrs)["axis"] == 0
    assert imported.graph.tensors[op.output].shape == (2, 5, 4)


def test_cast_to_float_is_free_and_expand_broadcasts(tmp_path: Path) -> None:
    nodes = [node("Cast", ["x"], ["c"], to=TensorProto.FLOAT), node("Relu", ["c"], ["y"])]
    _check(tmp_path, nodes, [], [2, 3], fns=["relu"])
    cases = [([2, 3, 4], ["expand"]), ([2, 1, 1], ["expand"]), ([3, 1], ["relu"])]
    for shape, fns in [*cases, ([1, 3, 1], ["relu"])]:
        nodes = [node("Expand", ["x", "s"], ["e"]), node("Relu", ["e"], ["y"])]
        if fns == ["expand"]:
            fns = ["expand", "relu"]
        _check(tmp_path, nodes, [ints("s", shape)], [1, 3, 1], max(3, len(shape)), fns=fns)


def test_expand_in_opset_13(tmp_path: Path) -> None:
    nodes = [node("Expand", ["x", "s"], ["y"])]
    _check(tmp_path, nodes, [ints("s", [2, 1, 3, 4])], [1, 3, 1], 4, opset=13, fns=["expand"])


# --- refusals: one line naming the file, the node and the op -----------------------------------


REFUSALS = [
    (
        [
            node("Cast", ["x"], ["c"], to=TensorProto.DOUBLE, name="c"),
            node("Cast", ["c"], ["y"], to=TensorProto.FLOAT),
        ],
        [],
        r"node 'c' \(Cast\): unsupported attribute value to=11",
        None,
        17,
    ),
    (
        [node("Softmax", ["x"], ["y"], axis=1, name="sm")],
        [],
        r"node 'sm' \(Softmax\): only the last axis .*before opset 13.*axis=1",
        None,
        11,
    ),
    (
        [node("Slice", ["x", "s", "e"], ["y"], name="sl")],
        [ints("s", [3]), ints("e", [1])],
        r"node 'sl' \(Slice\): the slice of axis 0 is empty",
        None,
        17,
    ),
    (
        [node("Gather", ["x", "i"], ["y"], axis=1, name="ga")],
        [_const("i", [0, 9], np.int64)],
        r"node 'ga' \(Gather\): indices \[0, 9\] out of range",
        None,
        17,
    ),
    (
        [node("ReduceMean", ["x"], ["y"], keepdims=0, name="rm")],
        [],
        r"node 'rm' \(ReduceMean\): shapes the graph IR cannot take: .*scalar",
        [],
        17,
    ),
    (
        [node("HardSigmoid", ["x"], ["y"], alpha=math.inf, name="hs")],
        [],
        r"node 'hs' \(HardSigmoid\): unsupported attribute value alpha=inf",
        None,
        17,
    ),
    (
        [node("Clip", ["x", "lo"], ["y"], name="cl")],
        [_const("lo", [0.0, 1.0])],
        r"node 'cl' \(Clip\): min must be one number",
        None,
        17,
    ),
    (
        [node("Clip", ["x", "lo"], ["y"], name="cl")],
        [_const("lo", math.nan)],
        r"node 'cl' \(Clip\): min must be one number",
        None,
        17,
    ),
    (
        [node("Gelu", ["x"], ["y"], approximate="erf", name="ge")],
        [],
        r"node 'ge' \(Gelu\): unsupported attribute value approximate='erf'",
        None,
        20,
    ),
    (
        [node("ReduceMean", ["x"], ["y"], axes=[1], foo=1, name="rm")],
        [],
        r"not a valid ONNX model",
        None,
        17,
    ),
]


@pytest.mark.parametrize(
    ("nodes", "inits", "match", "out", "opset"), REFUSALS, ids=[r[0][0].op_type for r in REFUSALS]
)
def test_unsupported_forms_are_one_line_errors(
    tmp_path: Path, nodes: list[Any], inits: list[Any], match: str, out: Any, opset: int
) -> None:
    out_rank = None if out is None else len(out)
    _refused(tmp_path, nodes, inits, [2, 3, 4], match, out_rank, opset)


def test_matmul_of_a_vector_is_refused(tmp_path: Path) -> None:
    nodes = [node("MatMul", ["x", "v"], ["y"], name="mv")]
    _refused(
        tmp_path,
        nodes,
        [_const("v", [1.0, 2.0, 3.0, 4.0])],
        [2, 3, 4],
        r"node 'mv' \(MatMul\): MatMul of \[2, 3, 4\] and \[4\]: 1-D operands",
        2,
    )


# --- a few ops together, the way exporters write them ------------------------------------------


def test_an_encoder_block_with_a_class_token_decomposed_norms_and_erf_gelu(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(11)
    b, n, d, h = 2, 5, 8, 2

    def layernorm(x: str, p: str) -> list[Any]:
        return [
            node("ReduceMean", [x], [f"{p}mu"], axes=[-1]),
            node("Sub", [x, f"{p}mu"], [f"{p}d"]),
            node("Pow", [f"{p}d", "two"], [f"{p}sq"]),
            node("ReduceMean", [f"{p}sq"], [f"{p}var"], axes=[-1]),
            node("Add", [f"{p}var", "eps"], [f"{p}ve"]),
            node("Sqrt", [f"{p}ve"], [f"{p}sd"]),
            node("Div", [f"{p}d", f"{p}sd"], [f"{p}n"]),
            node("Mul", [f"{p}n", f"{p}g"], [f"{p}ng"]),
            node("Add", [f"{p}ng", f"{p}b"], [f"{p}out"]),
        ]

    heads = [b, n + 1, h, d // h]
    nodes = [
        node("Expand", ["cls", "cls_shape"], ["cls_b"]),  # folded: a [B, 1, D] constant
        node("Concat", ["cls_b", "x"], ["t"], axis=1),  # [B, N+1, D]
        *layernorm("t", "ln1"),
        *[node("MatMul", ["ln1out", f"w{k}"], [f"{k}0"]) for k in "qkv"],
        *[node("Add", [f"{k}0", f"b{k}"], [f"{k}1"]) for k in "qkv"],
        *[node("Reshape", [f"{k}1", "heads"], [f"{k}2"]) for k in "qkv"],
        node("Transpose", ["q2"], ["q"], perm=[0, 2, 1, 3]),
        node("Transpose", ["k2"], ["kt"], perm=[0, 2, 3, 1]),
        node("Transpose", ["v2"], ["v"], perm=[0, 2, 1, 3]),
        node("MatMul", ["q", "kt"], ["s"]),
        node("Div", ["s", "scale"], ["ss"]),
        node("Softmax", ["ss"], ["a"], axis=-1),
        node("MatMul", ["a", "v"], ["o"]),
        node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
        node("Reshape", ["ot", "merged"], ["om"]),
        node("MatMul", ["om", "wo"], ["proj"]),
        node("Add", ["proj", "t"], ["r"]),
        *layernorm("r", "ln2"),
        node("Div", ["ln2out", "sqrt2"], ["gd"]),  # exact Gelu, as torch exports it
        node("Erf", ["gd"], ["ge"]),
        node("Add", ["ge", "one"], ["g1"]),
        node("Mul", ["ln2out", "g1"], ["g2"]),
        node("Mul", ["g2", "half"], ["g"]),
        node("Gather", ["g", "zero"], ["y"], axis=1),  # the class token: [B, D]
    ]
    inits = [
        init(rng, "cls", 1, 1, d),
        ints("cls_shape", [b, 1, d]),
        ints("heads", heads),
        ints("merged", [b, n + 1, d]),
        _const("two", 2.0),
        _const("eps", 1e-5),
        _const("scale", math.sqrt(d // h)),
        _const("sqrt2", math.sqrt(2.0)),
        _const("one", 1.0),
        _const("half", 0.5),
        _const("zero", 0, np.int64),
        init(rng, "wo", d, d),
        *[
            init(rng, f"{p}{k}", d, scale=1.0 if k == "g" else 0.1)
            for p in ("ln1", "ln2")
            for k in "gb"
        ],
        *[init(rng, f"w{k}", d, d) for k in "qkv"],
        *[init(rng, f"b{k}", d) for k in "qkv"],
    ]
    imported = _check(tmp_path, nodes, inits, [b, n, d], 2)
    fns = [op.fn for op in imported.graph.ops]
    assert fns[0] == "concat" and fns.count("linear") == 4 and "erf" in fns
    assert fns.count("layernorm") == 2 and "reduce_mean" not in fns  # both norms fused
    assert fns.count("matmul") == 2 and fns[-1] == "gather"


@pytest.mark.parametrize("opset", OPSETS)
def test_a_squeeze_excite_block_with_hardsigmoid_and_hardswish(tmp_path: Path, opset: int) -> None:
    rng = np.random.default_rng(12)
    c = 8
    nodes = [
        node("GlobalAveragePool", ["x"], ["p"]),
        node("Conv", ["p", "w1", "b1"], ["r0"]),
        node("Relu", ["r0"], ["r"]),
        node("Conv", ["r", "w2", "b2"], ["s0"]),
        node("HardSigmoid", ["s0"], ["s"], alpha=1.0 / 6.0),
        node("Mul", ["x", "s"], ["m"]),  # [N,C,H,W] * [N,C,1,1]: two activations
        node("Mul", ["m", "k"], ["mk"]),
        node("Sigmoid", ["mk"], ["sg"]),
        node("Mul", ["mk", "sg"], ["y"]),  # SiLU
    ]
    inits = [init(rng, "w1", 4, c, 1, 1), init(rng, "b1", 4), init(rng, "w2", c, 4, 1, 1)]
    inits += [init(rng, "b2", c), _const("k", 3.0)]
    imported = _check(tmp_path, nodes, inits, [2, c, 5, 5], opset=opset)
    muls = [op for op in imported.graph.ops if op.fn == "mul"]
    shapes = [imported.graph.tensors[i].shape for i in muls[0].inputs]
    assert shapes == [(2, c, 5, 5), (2, c, 1, 1)]
