"""ONNX import: models built here with onnx.helper, imported into the graph IR, run through the
IR's float64 reference with the imported weights and compared with onnxruntime (CPU)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx_util import ATOL, RTOL, against_ort, init, ints, save  # noqa: E402

from aegis_core.graph.onnx_import import import_onnx  # noqa: E402
from aegis_core.model.errors import InputError  # noqa: E402
from aegis_exec.kernels import CompiledGraph  # noqa: E402


def _conv_bn_relu_pool(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    c = 8
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"], epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node(
            "MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
        ),
        helper.make_node("Conv", ["p", "dw"], ["d"], group=c, pads=[1] * 4),  # depthwise
        helper.make_node("BatchNormalization", ["d", "g", "be", "m", "v"], ["y0"]),
        helper.make_node("GlobalAveragePool", ["y0"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["y"]),
    ]
    var = numpy_helper.from_array(rng.uniform(0.5, 2.0, c).astype(np.float32), "v")
    inits = [
        init(rng, "w", c, 3, 3, 3),
        init(rng, "b", c),
        init(rng, "g", c, scale=1.0),
        init(rng, "be", c),
        init(rng, "m", c),
        var,
        init(rng, "dw", c, 1, 3, 3),
    ]
    return save(tmp_path, nodes, inits, ["N", 3, 16, 16], ["N", 8])


def test_conv_bn_relu_pool_imports_with_bn_folded_and_matches_onnxruntime(
    tmp_path: Path,
) -> None:
    path = _conv_bn_relu_pool(tmp_path)
    imported = import_onnx(path, batch=2)
    g = imported.graph
    fns = [op.fn for op in g.ops]
    assert fns == ["conv2d", "relu", "maxpool", "conv2d", "avgpool_global"]  # both BNs folded
    assert g.tensors[g.input].shape == (2, 3, 16, 16) and g.input_shape == (3, 16, 16)
    assert g.tensors[g.output].shape == (2, 8)
    conv0 = 2 * (2 * 8 * 16 * 16) * 3 * 9
    dw = 2 * (2 * 8 * 8 * 8) * 1 * 9
    assert g.ops[0].flops == conv0 and g.ops[3].flops == dw
    assert g.ops[3].attr("groups") == 8 and g.ops[2].attr("stride") == 2
    assert set(imported.params) == {n for n, t in g.tensors.items() if t.role == "weight"}
    against_ort(path, imported)


@pytest.mark.parametrize("build", [_conv_bn_relu_pool, "dynamic"])
def test_imported_models_run_in_a_planned_arena(tmp_path: Path, build: Any) -> None:
    from aegis_core.memory.planner import plan_model, usage_of
    from aegis_exec import arena

    path = _dynamic_block(tmp_path) if build == "dynamic" else build(tmp_path)
    imported = import_onnx(path, batch=2, input_shape=(2, 7, 7) if build == "dynamic" else None)
    g = imported.graph
    plan = plan_model(usage_of(g, executor=True))
    assert plan.lower_bound <= plan.size < plan.naive  # activations share memory
    buf = arena.arena_buffer(np, plan.size)
    placed = CompiledGraph(g, np, placement=arena.Placement(buf, plan.offsets, np.float32))
    for name, value in imported.params.items():
        placed.tensors[name][...] = value
    x = np.random.default_rng(7).standard_normal(g.tensors[g.input].shape).astype(np.float32)
    placed.inputs[...] = x
    placed.run()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {imported.onnx_input: x})
    np.testing.assert_allclose(placed.output.reshape(want.shape), want, rtol=RTOL, atol=ATOL)


def test_a_batchnorm_not_after_a_conv_is_a_depthwise_1x1_conv(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("BatchNormalization", ["r", "g", "be", "m", "v"], ["y"]),
    ]
    var = numpy_helper.from_array(rng.uniform(0.5, 2.0, 4).astype(np.float32), "v")
    inits = [init(rng, n, 4, scale=1.0) for n in ("g", "be", "m")] + [var]
    path = save(tmp_path, nodes, inits, [1, 4, 5, 5])
    imported = import_onnx(path)
    conv = imported.graph.ops[1]
    assert conv.fn == "conv2d" and conv.attr("groups") == 4
    against_ort(path, imported)


def test_a_conv_whose_output_is_read_twice_keeps_its_batchnorm(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"]),
        helper.make_node("Add", ["c", "n"], ["y"]),
    ]
    var = numpy_helper.from_array(rng.uniform(0.5, 2.0, 4).astype(np.float32), "v")
    inits = [init(rng, "w", 4, 4, 1, 1)] + [init(rng, n, 4) for n in ("g", "be", "m")] + [var]
    path = save(tmp_path, nodes, inits, [1, 4, 3, 3])
    imported = import_onnx(path)
    assert [op.fn for op in imported.graph.ops] == ["conv2d", "conv2d", "add"]
    against_ort(path, imported)


def _mlp(tmp_path: Path) -> Path:
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["h2"]),
        helper.make_node("Clip", ["h2", "lo", "hi"], ["c"]),
        helper.make_node("MatMul", ["c", "w3"], ["m"]),
        helper.make_node("Sub", ["m", "k"], ["s"]),
        helper.make_node("Softmax", ["s"], ["y"], axis=-1),
    ]
    inits = [
        init(rng, "w1", 32, 20),
        init(rng, "b1", 32),
        init(rng, "w2", 32, 16),
        init(rng, "b2", 1, 16),
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
        init(rng, "w3", 16, 10),
        init(rng, "k", 10),
    ]
    return save(tmp_path, nodes, inits, ["batch", 20], ["batch", 10])


def test_an_mlp_with_gemm_imports_and_matches_onnxruntime(tmp_path: Path) -> None:
    path = _mlp(tmp_path)
    imported = import_onnx(path, batch=3)
    g = imported.graph
    fns = ["linear", "relu", "linear", "relu6", "linear", "softmax"]  # Sub: into the bias
    assert [op.fn for op in g.ops] == fns
    assert g.tensors[g.output].shape == (3, 10)
    assert g.ops[0].flops == 2 * 3 * 32 * 20 and g.ops[4].flops == 2 * 3 * 10 * 16
    assert g.ops[5].flops == 5 * 3 * 10
    assert imported.params[g.ops[0].inputs[1]].shape == (20, 32)  # transB: stored [Kd, Nd]
    against_ort(path, imported, seed=1)


def _dynamic_block(tmp_path: Path) -> Path:
    """Exporter-style: a dynamic batch, then Shape -> Gather -> Unsqueeze -> Concat -> Reshape
    flattening [N, C, H, W] to [N, C*H*W] before a Gemm; LayerNorm and a Transpose."""
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Shape", ["r"], ["shp"]),
        helper.make_node("Gather", ["shp", "i0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Cast", ["n1"], ["n2"], to=TensorProto.INT64),
        helper.make_node("Concat", ["n2", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["r", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w2", "b2"], ["h"]),
        helper.make_node("LayerNormalization", ["h", "gam", "bet"], ["ln"], epsilon=1e-5),
        helper.make_node("Reshape", ["ln", "s3"], ["ln3"]),
        helper.make_node("Transpose", ["ln3"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Mul", ["t", "half"], ["y"]),
    ]
    inits = [
        init(rng, "w", 4, 2, 3, 3),
        numpy_helper.from_array(np.array(0, np.int64), "i0"),
        ints("ax0", [0]),
        ints("minus1", [-1]),
        init(rng, "w2", 4 * 3 * 3, 12),
        init(rng, "b2", 12),
        init(rng, "gam", 12, scale=1.0),
        init(rng, "bet", 12),
        ints("s3", [0, 3, 4]),
        numpy_helper.from_array(np.array([0.5], np.float32), "half"),
    ]
    return save(tmp_path, nodes, inits, ["N", 2, "H", "W"], ["N", 4, 3])


def test_a_dynamic_block_with_a_shape_subgraph_folds_and_matches_onnxruntime(
    tmp_path: Path,
) -> None:
    path = _dynamic_block(tmp_path)
    imported = import_onnx(path, batch=2, input_shape=(2, 7, 7))
    g = imported.graph
    assert [op.fn for op in g.ops] == [
        "conv2d",
        "relu",
        "permute",  # the folded Reshape, materialised for the Gemm
        "linear",
        "layernorm",
        "permute",  # Reshape + Transpose: one copy
        "mul",
    ]
    assert g.tensors[g.ops[2].output].shape == (2, 36)
    assert g.tensors[g.output].shape == (2, 4, 3)
    assert g.ops[3].flops == 2 * 2 * 12 * 36 and g.ops[4].flops == 8 * 2 * 12
    against_ort(path, imported, seed=2)
    other = import_onnx(path, batch=1, input_shape=(2, 8, 8))  # (8 - 3) // 2 + 1 = 3 too
    assert other.graph.tensors[other.graph.ops[2].output].shape == (1, 36)
    with pytest.raises(InputError, match=r"ONNX shape inference failed: .*Gemm"):
        import_onnx(path, batch=1, input_shape=(2, 9, 9))  # flattens to 64, not 36


def test_a_constant_add_folds_into_the_bias_only_where_valid(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["bias", "m"], ["a"]),  # m read twice: no fold
        helper.make_node("Add", ["a", "m"], ["s"]),
        helper.make_node("MatMul", ["s", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "row"], ["y"]),  # [3, 1]: not a bias, broadcast
    ]
    inits = [init(rng, "w", 8, 6), init(rng, "bias", 6), init(rng, "w2", 6, 6)]
    inits.append(init(rng, "row", 3, 1))
    path = save(tmp_path, nodes, inits, ["B", 3, 8])
    imported = import_onnx(path, batch=2)
    assert [op.fn for op in imported.graph.ops] == ["linear", "add", "add", "linear", "add"]
    against_ort(path, imported, seed=5)
    rng = np.random.default_rng(9)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Add", ["c", "per_channel"], ["a"]),
        helper.make_node("Sub", ["a", "scalar"], ["y"]),  # a is an Add's output: no fold
    ]
    inits = [init(rng, "w", 4, 2, 3, 3), init(rng, "per_channel", 4, 1, 1)]
    inits.append(numpy_helper.from_array(np.array(0.25, np.float32), "scalar"))
    path = save(tmp_path, nodes, inits, [1, 2, 5, 5])
    imported = import_onnx(path)
    assert [op.fn for op in imported.graph.ops] == ["conv2d", "sub"]
    against_ort(path, imported, seed=6)


def test_attention_style_matmul_of_two_activations(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Div", ["s", "d"], ["sd"]),
        helper.make_node("Softmax", ["sd"], ["a"], axis=2),
        helper.make_node("MatMul", ["a", "x"], ["o"]),
        helper.make_node("Add", ["o", "x"], ["y"]),
    ]
    d = numpy_helper.from_array(np.array(np.sqrt(8.0), np.float32), "d")
    inits = [init(rng, "wq", 8, 8), init(rng, "wk", 8, 8), d]
    path = save(tmp_path, nodes, inits, ["B", 5, 8])
    imported = import_onnx(path, batch=2)
    assert [op.fn for op in imported.graph.ops].count("matmul") == 2
    against_ort(path, imported, seed=3)


def test_a_batchnorm_is_not_folded_into_a_conv_read_elsewhere_through_a_view(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(7)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Identity", ["c"], ["i"]),
        helper.make_node("BatchNormalization", ["i", "g", "be", "m", "v"], ["n"]),
        helper.make_node("Add", ["c", "n"], ["y"]),
    ]
    var = numpy_helper.from_array(rng.uniform(0.5, 2.0, 4).astype(np.float32), "v")
    inits = [init(rng, "w", 4, 4, 1, 1)] + [init(rng, n, 4) for n in ("g", "be", "m")] + [var]
    path = save(tmp_path, nodes, inits, [1, 4, 3, 3])
    imported = import_onnx(path)
    assert [op.fn for op in imported.graph.ops] == ["conv2d", "conv2d", "add"]
    against_ort(path, imported)


def test_shape_with_start_end_flatten_with_a_negative_axis_and_tanh_gelu(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], start=0, end=2),
        helper.make_node("Concat", ["s", "k"], ["t"], axis=0),
        helper.make_node("Reshape", ["x", "t"], ["r"]),
        helper.make_node("Gelu", ["r"], ["ge"], approximate="tanh"),
        helper.make_node("Softmax", ["ge"], ["sm"]),
        helper.make_node("Reshape", ["sm", "back"], ["b"]),
        helper.make_node("Flatten", ["b"], ["y"], axis=-1),
    ]
    inits = [ints("k", [36]), ints("back", [0, 4, 6, 6])]
    path = save(tmp_path, nodes, inits, ["N", 4, 6, 6], ["a", 6], opset=20)
    imported = import_onnx(path, batch=2)
    g = imported.graph
    assert [op.fn for op in g.ops] == ["permute", "gelu", "softmax", "permute"]
    assert g.tensors[g.ops[1].output].shape == (2, 4, 36)
    assert g.tensors[g.output].shape == (48, 6)
    against_ort(path, imported, seed=4)


def test_softmax_before_opset_13_defaults_to_axis_1(tmp_path: Path) -> None:
    node = helper.make_node("Softmax", ["x"], ["y"], name="s")
    path = save(tmp_path, [node], [], [1, 4, 6, 6], opset=11)
    with pytest.raises(InputError, match=r"node 's' \(Softmax\): only the last axis.*axis=1"):
        import_onnx(path)
    path = save(tmp_path, [node], [], [3, 5], opset=11)
    against_ort(path, import_onnx(path, batch=3))


def test_a_layernorm_scale_that_does_not_fit_is_one_line(tmp_path: Path) -> None:
    scale = numpy_helper.from_array(np.ones((2, 6), np.float32), "g")
    node = helper.make_node("LayerNormalization", ["x", "g"], ["y"], name="ln")
    path = save(tmp_path, [node], [scale], [1, 4, 6, 6])
    with pytest.raises(InputError, match=r"node 'ln' \(LayerNormalization\): unsupported form"):
        import_onnx(path)


def test_folding_is_bounded(tmp_path: Path) -> None:
    big = helper.make_node("ConstantOfShape", ["shape"], ["big"], name="huge")
    nodes = [big, helper.make_node("Relu", ["x"], ["y"])]
    path = save(tmp_path, nodes, [ints("shape", [1 << 14, 1 << 14, 1 << 10])], [1, 4])
    with pytest.raises(InputError, match=r"node 'huge' \(ConstantOfShape\): folding 'big'"):
        import_onnx(path)


def test_the_operator_count_is_capped_while_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aegis_core.graph.onnx_import as importer

    chain = ["x", "a", "b", "c", "y"]
    nodes = [helper.make_node("Relu", [i], [o], name=o) for i, o in itertools.pairwise(chain)]
    path = save(tmp_path, nodes, [], [1, 4])
    assert len(import_onnx(path).graph.ops) == 4
    monkeypatch.setattr(importer, "MAX_OPS", 3)
    with pytest.raises(InputError, match=r"node 'y' \(Relu\): the model needs more than 3"):
        import_onnx(path)


# --- bad input: exit 2, one line naming the file, the node and the op -------------------------


def _one_node(tmp_path: Path, node: Any, inits: list[Any] | None = None, rank: int = 4) -> Path:
    return save(tmp_path, [node], inits or [], [1, 4, 6, 6], ["a", "b", "c", "d"][:rank])


@pytest.mark.parametrize(
    ("node", "match"),
    [
        (
            helper.make_node("Sin", ["x"], ["y"], name="t0"),
            r"node 't0' \(Sin\): unsupported operator",
        ),
        (helper.make_node("Cos", ["x"], ["y"]), r"node '#0' \(Cos\): unsupported operator"),
        (
            helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], ceil_mode=2, name="mp"),
            r"node 'mp' \(MaxPool\): unsupported attribute value ceil_mode=2",
        ),
        (
            helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[3] * 4, name="mp"),
            r"node 'mp' \(MaxPool\): shapes the graph IR cannot take: pool pads",
        ),
        (
            helper.make_node(
                "MaxPool", ["x"], ["y"], kernel_shape=[3, 3], auto_pad="SAME_UPPER", pads=[1] * 4
            ),
            r"node '#0' \(MaxPool\): auto_pad SAME_UPPER with explicit pads \[1, 1, 1, 1\]",
        ),
        (
            helper.make_node("Flatten", ["x"], ["y"], axis=1, name="f", foo=3),
            r"not a valid ONNX model: Unrecognized attribute: foo .*Name: f OpType: Flatten",
        ),
    ],
)
def test_unsupported_operators_and_attributes_name_file_node_and_op(
    tmp_path: Path, node: Any, match: str
) -> None:
    path = _one_node(tmp_path, node, rank=2 if node.op_type == "Flatten" else 4)
    with pytest.raises(InputError, match=rf"^{tmp_path}/net\.onnx: {match}"):
        import_onnx(path)


def test_unsupported_gemm_forms(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    full = numpy_helper.from_array(np.ones((3, 4), np.float32), "c")
    cases = [
        (helper.make_node("Gemm", ["x", "c"], ["y"], transA=1), [full], "transA=1"),
        (helper.make_node("Gemm", ["x", "x"], ["y"], transB=1), [], "B ('x') must be a constant"),
        (helper.make_node("Gemm", ["x", "w", "c"], ["y"]), [w, full], "C of shape [3, 4]"),
    ]
    for node, inits, match in cases:
        path = save(tmp_path, [node], inits, [3, 4], ["a", "b"])
        expected = re.escape("node '#0' (Gemm): ") + ".*" + re.escape(match)
        with pytest.raises(InputError, match=expected):
            import_onnx(path, batch=3)


def test_unsupported_conv_attributes(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w")
    cases = [
        ({"auto_pad": "FOO"}, "unsupported attribute value auto_pad='FOO'"),
        ({"kernel_shape": [2, 2]}, "kernel_shape [2, 2] does not match the weight [4, 4, 3, 3]"),
        ({"auto_pad": "SAME_LOWER", "pads": [1] * 4}, "auto_pad SAME_LOWER with explicit pads"),
    ]
    for attrs, match in cases:
        node = helper.make_node("Conv", ["x", "w"], ["y"], name="cv", **attrs)
        path = _one_node(tmp_path, node, [w])
        with pytest.raises(InputError, match=re.escape(f"node 'cv' (Conv): {match}")):
            import_onnx(path)


def test_unsupported_broadcasts_and_clip_ranges(tmp_path: Path) -> None:
    row = numpy_helper.from_array(np.ones((1, 4, 5, 1), np.float32), "c")
    lo = numpy_helper.from_array(np.array([-1.0, 2.0], np.float32), "c")
    cases = [
        (helper.make_node("Div", ["c", "x"], ["y"]), [row], r"shape inference failed: .*Div"),
        (helper.make_node("Clip", ["x", "c"], ["y"]), [lo], r"\(Clip\): min must be one number"),
    ]
    for node, inits, match in cases:
        with pytest.raises(InputError, match=match):
            import_onnx(_one_node(tmp_path, node, inits))


def test_bad_files_and_input_shapes_are_input_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a model at all\xff")
    with pytest.raises(InputError, match=r"junk\.onnx: not a valid ONNX model"):
        import_onnx(junk)
    with pytest.raises(InputError, match=r"missing\.onnx"):
        import_onnx(tmp_path / "missing.onnx")
    path = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [], ["N", 3, "H", 4])
    with pytest.raises(InputError, match=r"has shape \[\?, 3, \?, 4\]: give input_shape with 3"):
        import_onnx(path)
    with pytest.raises(InputError, match=r"static dimension 1 = 3, but input_shape\[0\] is 5"):
        import_onnx(path, input_shape=(5, 2, 4))
    with pytest.raises(InputError, match=r"give input_shape with 3 sizes"):
        import_onnx(path, input_shape=(3, 2))
    for bad in [(3, 0, 4), (3, True, 4), (3, "2", 4), (3, 2.0, 4), (3, 1 << 64, 4)]:
        with pytest.raises(InputError, match=r"give input_shape with 3 sizes"):
            import_onnx(path, input_shape=bad)  # type: ignore[arg-type]
    ok = import_onnx(path, input_shape=(3, 2, 4), batch=5)
    assert ok.graph.tensors[ok.graph.output].shape == (5, 3, 2, 4)


def test_a_missing_onnx_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_onnx(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(InputError, match=r"pip install 'aegisrt\[onnx\]'"):
        import_onnx("whatever.onnx")


def test_a_node_name_with_control_characters_stays_one_line(tmp_path: Path) -> None:
    path = _one_node(tmp_path, helper.make_node("Sin", ["x"], ["y"], name="t\n1"))
    with pytest.raises(InputError) as info:
        import_onnx(path)
    assert "\n" not in str(info.value)
    assert "node 't\\n1' (Sin): unsupported operator" in str(info.value)
