"""ONNX import, review of issue 16: the forms where onnxruntime and a naive import (or the ONNX
spec) disagree are refused with one line naming the file, the node and its op, never a wrong
answer; constant folding evaluates only bounded, deterministic operators; onnx's own error
messages are kept on one line and name the node."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx_util import against_ort, init, ints, save  # noqa: E402

from aegis_core.graph.onnx_import import import_onnx  # noqa: E402
from aegis_core.model.errors import InputError  # noqa: E402

N = helper.make_node


def _floats(name: str, values: Any) -> Any:
    return numpy_helper.from_array(np.array(values, dtype=np.float32), name)


def _refused(path: Path, match: str, **kw: Any) -> str:
    """The one-line error importing ``path`` gives; it must start with the file."""
    with pytest.raises(InputError) as info:
        import_onnx(path, **kw)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text and "\\n" not in text, text
    assert re.search(match, text), text
    return text


# --- 1. Resize / Upsample scales on N or C ---------------------------------------------------


@pytest.mark.parametrize(
    ("op", "scales", "shape", "opset"),
    [
        ("Resize", [1, 1.3, 2, 2], [1, 3, 4, 4], 17),  # floor(3 * 1.3) = 3: was accepted
        ("Resize", [1.3, 1, 2, 2], [2, 3, 4, 4], 17),  # on N: floor(2 * 1.3) = 2
        ("Resize", [1, 1.2, 1, 1], [1, 4, 4, 4], 13),  # floor(4 * 1.2) = 4, H and W unscaled
        ("Upsample", [1, 1.3, 2, 2], [1, 3, 4, 4], 9),
    ],
)
def test_a_resize_scale_other_than_1_on_n_or_c_is_refused(
    tmp_path: Path, op: str, scales: list[float], shape: list[int], opset: int
) -> None:
    inputs = ["x", "", "s"] if op == "Resize" else ["x", "s"]
    node = N(op, inputs, ["y"], mode="nearest", name="rz")
    path = save(tmp_path, [node], [_floats("s", scales)], shape, opset=opset)
    _refused(
        path, rf"node 'rz' \({op}\): only the spatial axes H and W may be resized", batch=shape[0]
    )
    # N and C scales of exactly 1, or sizes equal to N and C, stay fine
    ok = [1, 1, *scales[2:]]
    path = save(
        tmp_path, [N(op, inputs, ["y"], mode="nearest")], [_floats("s", ok)], shape, opset=opset
    )
    against_ort(path, import_onnx(path, batch=shape[0]))
    sizes = N("Resize", ["x", "", "", "z"], ["y"], mode="nearest")
    path = save(tmp_path, [sizes], [ints("z", [*shape[:2], 8, 6])], shape)
    against_ort(path, import_onnx(path, batch=shape[0]))


# --- 2. constant folding: only bounded, deterministic operators -----------------------------


def _loop(trips: int) -> tuple[list[Any], list[Any]]:
    """A Loop adding 1 ``trips`` times to a constant: all its inputs are constants."""
    vi = helper.make_tensor_value_info
    body = helper.make_graph(
        [N("Identity", ["cond_in"], ["cond_out"]), N("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [vi("i", TensorProto.INT64, []), vi("cond_in", TensorProto.BOOL, []),
         vi("v_in", TensorProto.FLOAT, [1])],
        [vi("cond_out", TensorProto.BOOL, []), vi("v_out", TensorProto.FLOAT, [1])],
        [_floats("one", [1.0])],
    )  # fmt: skip
    inits = [
        numpy_helper.from_array(np.array(trips, np.int64), "M"),
        numpy_helper.from_array(np.array(True), "c"),
        _floats("v0", [0.0]),
    ]
    nodes = [N("Loop", ["M", "c", "v0"], ["v"], body=body, name="lp"), N("Add", ["x", "v"], ["y"])]
    return nodes, inits


def _if() -> tuple[list[Any], list[Any]]:
    vi = helper.make_tensor_value_info
    branches = {
        key: helper.make_graph(
            [
                N(
                    "Constant",
                    [],
                    [f"{key}_v"],
                    value=numpy_helper.from_array(np.array([v], np.float32)),
                )
            ],
            key,
            [],
            [vi(f"{key}_v", TensorProto.FLOAT, [1])],
        )
        for key, v in (("then_branch", 1.0), ("else_branch", 2.0))
    }
    cond = numpy_helper.from_array(np.array(True), "c")
    return [N("If", ["c"], ["v"], name="lp", **branches), N("Add", ["x", "v"], ["y"])], [cond]


@pytest.mark.parametrize("build", [lambda: _loop(10**4), _if], ids=["Loop", "If"])
# (evaluated, a Loop of 10**4 trips took about a second; of 10**9 it never returned)
def test_control_flow_on_constants_is_refused_not_evaluated(tmp_path: Path, build: Any) -> None:
    nodes, inits = build()
    path = save(tmp_path, nodes, inits, [1, 4])
    op = nodes[0].op_type
    _refused(path, rf"node 'lp' \({op}\): unsupported operator: control flow")


def test_sequences_on_constants_are_refused(tmp_path: Path) -> None:
    nodes = [
        N("SequenceConstruct", ["a", "b"], ["s"], name="sq"),
        N("SequenceAt", ["s", "i"], ["v"]),
        N("Add", ["x", "v"], ["y"]),
    ]
    inits = [_floats("a", [1.0]), _floats("b", [2.0]), ints("i", [1])]
    inits[-1] = numpy_helper.from_array(np.array(1, np.int64), "i")
    path = save(tmp_path, nodes, inits, [1, 4])
    _refused(path, r"node 'sq' \(SequenceConstruct\): unsupported operator: control flow")


@pytest.mark.parametrize(
    ("nodes", "inits"),
    [
        ([N("RandomNormal", [], ["r"], shape=[1, 4], name="rnd")], []),
        ([N("RandomUniform", [], ["r"], shape=[1, 4], seed=1.0, name="rnd")], []),
        ([N("RandomNormalLike", ["a"], ["r"], name="rnd")], [_floats("a", [[0.0] * 4])]),
        ([N("Bernoulli", ["a"], ["r"], name="rnd")], [_floats("a", [[0.5] * 4])]),
        ([N("RandomUniformLike", ["x"], ["r"], name="rnd")], []),  # of the activation too
    ],
    ids=["RandomNormal", "RandomUniform", "RandomNormalLike", "Bernoulli", "RandomUniformLike"],
)
def test_random_operators_are_refused_not_frozen_into_a_constant(
    tmp_path: Path, nodes: list[Any], inits: list[Any]
) -> None:
    path = save(tmp_path, [*nodes, N("Add", ["x", "r"], ["y"])], inits, [1, 4])
    _refused(path, rf"node 'rnd' \({nodes[0].op_type}\): unsupported operator: a random operator")


def test_other_operators_on_constants_are_refused_or_mapped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for op, match in [
        ("Softplus", r"\(Softplus\): unsupported operator \(on constants only shape"),  # no mapper
        ("Softmax", r"\(Softmax\): input 'a' must be an activation here, not a constant"),
    ]:
        nodes = [N(op, ["a"], ["c"], name="k"), N("Add", ["x", "c"], ["y"])]
        _refused(save(tmp_path, nodes, [init(rng, "a", 1, 4)], [1, 4]), rf"node 'k' {match}")
    # a shape sub-graph of allowed operators still folds: Shape, ReduceProd, Range, Equal,
    # Where, then Reshape by the result; Sqrt on a constant too
    shape_nodes = [
        N("Shape", ["x"], ["s"]),
        N("ReduceProd", ["s"], ["n"], keepdims=1),
        N("Range", ["zero", "two", "one"], ["r"]),
        N("Equal", ["r", "zero"], ["first"]),
        N("Where", ["first", "n", "minus"], ["t"]),
        N("Reshape", ["x", "t"], ["v"]),
        N("Sqrt", ["four"], ["k"]),
        N("Mul", ["v", "k"], ["y"]),
    ]
    scalars = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in _RANGE]
    inits = [*scalars, ints("minus", [-1]), _floats("four", [4.0])]
    path = save(tmp_path, shape_nodes, inits, [2, 3, 4], [24, 1])
    imported = import_onnx(path, batch=2)
    assert [o.fn for o in imported.graph.ops] == ["permute", "mul"]  # the view, then x * 2
    against_ort(path, imported)


_RANGE = (("zero", 0), ("two", 2), ("one", 1))


# --- 3. Resize output sizes from non-integer scales -------------------------------------------


@pytest.mark.parametrize(
    ("op", "size", "scale", "ort_gives", "spec_gives"),
    [
        ("Resize", 10, 0.7, 7, 6),  # float32(10) * float32(0.7) == 7.0 exactly
        ("Resize", 10, 1.3, 13, 12),
        ("Resize", 20, 0.7, 14, 13),
        ("Upsample", 10, 2.3, 23, 22),
    ],
)
def test_a_scale_where_onnxruntime_and_the_spec_disagree_on_the_size_is_refused(
    tmp_path: Path, op: str, size: int, scale: float, ort_gives: int, spec_gives: int
) -> None:
    inputs, opset = (["x", "", "s"], 17) if op == "Resize" else (["x", "s"], 9)
    node = N(op, inputs, ["y"], mode="nearest", name="rz")
    path = save(tmp_path, [node], [_floats("s", [1, 1, scale, 1])], [1, 2, size, 4], opset=opset)
    _refused(
        path,
        rf"node 'rz' \({op}\): scale [0-9.]+ on axis 2 of size {size}: onnxruntime gives "
        rf"{ort_gives} and the ONNX spec {spec_gives} elements; give sizes instead of scales",
    )
    if op == "Resize":  # what onnxruntime really gives
        x = np.zeros((1, 2, size, 4), np.float32)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert session.run(None, {"x": x})[0].shape[2] == ort_gives
    # where they agree the scale stays fine (10 * 0.5, 10 * 0.75 -> 7, 10 * 1.5)
    for ok in (0.5, 0.75, 1.5) if op == "Resize" else (1.5,):
        node = N(op, inputs, ["y"], mode="nearest")
        path = save(tmp_path, [node], [_floats("s", [1, 1, ok, 1])], [1, 2, 10, 4], opset=opset)
        imported = import_onnx(path)
        assert imported.graph.tensors[imported.graph.output].shape[2] == int(10 * ok)
        against_ort(path, imported)


# --- 4. SAME pads with dilations ------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "attrs", "opset"),
    [
        ("MaxPool", {"strides": [2, 2], "dilations": [2, 2], "auto_pad": "SAME_UPPER"}, 17),
        ("MaxPool", {"dilations": [2, 2], "auto_pad": "SAME_UPPER"}, 17),
        ("MaxPool", {"dilations": [1, 2], "auto_pad": "SAME_LOWER"}, 17),
        ("AveragePool", {"strides": [2, 2], "dilations": [2, 2], "auto_pad": "SAME_UPPER"}, 19),
        ("Conv", {"dilations": [2, 1], "auto_pad": "SAME_LOWER"}, 17),
    ],
)
def test_same_pads_with_a_dilation_are_refused(
    tmp_path: Path, op: str, attrs: dict[str, Any], opset: int
) -> None:
    rng = np.random.default_rng(0)
    inputs, inits = (["x", "w"], [init(rng, "w", 2, 2, 3, 3)]) if op == "Conv" else (["x"], [])
    window = {} if op == "Conv" else {"kernel_shape": [3, 3]}
    node = N(op, inputs, ["y"], name="p", **window, **attrs)
    path = save(tmp_path, [node], inits, [1, 2, 6, 7], opset=opset)
    mode, dil = attrs["auto_pad"], attrs["dilations"]
    _refused(path, re.escape(f"node 'p' ({op}): auto_pad {mode} with dilations {dil}: "))
    # undilated SAME pads and dilations with explicit pads stay fine
    for ok in ({**attrs, "dilations": [1, 1]}, {"dilations": dil, "pads": [2, 1, 2, 1]}):
        node = N(op, inputs, ["y"], **window, **ok)
        path = save(tmp_path, [node], inits, [1, 2, 6, 7], opset=opset)
        against_ort(path, import_onnx(path))


# --- 5. onnx's own errors: one line, naming the node ------------------------------------------


def test_shape_inference_errors_are_one_line_and_name_the_node(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    named = [N("Add", ["x", "c"], ["y"], name="adder")]
    unnamed = [N("Relu", ["x"], ["r"]), N("Add", ["r", "c"], ["y"])]
    two = [N("Add", ["x", "x"], ["r"]), N("Add", ["r", "c"], ["y"])]  # which Add: unknown
    cases = [
        (named, "node 'adder' (Add)"),
        (unnamed, "node '#1' (Add)"),
        (two, "an unnamed Add node"),
    ]
    for nodes, node in cases:
        path = save(tmp_path, nodes, [init(rng, "c", 5)], [2, 3, 4], opset=17)
        text = _refused(path, "", batch=2)
        want = f"{path}: ONNX shape inference failed: {node}: Incompatible dimensions"
        assert text == want


def test_checker_errors_are_one_line_and_name_the_node(tmp_path: Path) -> None:
    for nodes, node in (
        ([N("Conv", ["x"], ["y"], name="cv")], "node 'cv' (Conv)"),
        ([N("Relu", ["x"], ["r"]), N("Conv", ["r"], ["y"])], "node '#1' (Conv)"),
    ):
        path = save(tmp_path, nodes, [], [1, 3, 8, 8])
        text = _refused(path, r": not a valid ONNX model: Node.* has input size 1 not in range")
        assert "==>" not in text and "  " not in text
        assert text.endswith(f"OpType: Conv); at {node}"), text


def test_an_upsample_scale_below_1_is_refused(tmp_path: Path) -> None:
    node = N("Upsample", ["x", "s"], ["y"], mode="nearest", name="up")
    path = save(tmp_path, [node], [_floats("s", [1, 1, 0.5, 2])], [1, 2, 10, 4], opset=9)
    _refused(path, r"node 'up' \(Upsample\): scales \[1.0, 1.0, 0.5, 2.0\] below 1")
    with pytest.raises(Exception, match="greater than or equal to 1"):  # onnxruntime's word
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
