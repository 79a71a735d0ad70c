"""ONNX import, second review of issue 16: Resize nearest near-ties rounded as onnxruntime does
(the whole sweep of sizes, coordinate and nearest modes), external data refused before the
checker, input-shape errors only for the shape, quiet constant folding (integer division by
zero refused) and the constant ops exporters write (Sin / Cos tables, Trilu masks, CumSum)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.external_data_helper import set_external_data  # noqa: E402
from onnx_util import against_ort, ints, save  # noqa: E402

from aegis_core.graph.onnx_import import (  # noqa: E402
    InputShapeError,
    _interpolation,
    _NodeError,
    _round,
    import_onnx,
)
from aegis_core.model.errors import InputError  # noqa: E402
from aegis_core.tools.cli import main  # noqa: E402

N = helper.make_node
COORDS = ("asymmetric", "half_pixel", "pytorch_half_pixel", "align_corners")
NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _refused(path: Path, match: str, **kw: Any) -> InputError:
    with pytest.raises(InputError) as info:
        import_onnx(path, **kw)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text, text
    assert re.search(match, text), text
    return info.value


# --- Resize nearest: ties as onnxruntime breaks them -------------------------------------


def _ort_indices(width: int, outs: range, coord: str, nearest: str) -> list[np.ndarray]:
    """onnxruntime's picked input index per output element, for every output width in
    ``outs`` (one session: one Resize node per width)."""
    nodes, outputs, inits = [], [], []
    for wo in outs:
        inits.append(ints(f"sz{wo}", [1, 1, 1, wo]))
        nodes.append(N("Resize", ["x", "", "", f"sz{wo}"], [f"y{wo}"], mode="nearest",
                       coordinate_transformation_mode=coord, nearest_mode=nearest))  # fmt: skip
        outputs.append(helper.make_tensor_value_info(f"y{wo}", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, width])],
        outputs, inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    x = np.arange(width, dtype=np.float32).reshape(1, 1, 1, width)
    return [y.ravel().astype(np.int64) for y in session.run(None, {"x": x})]


@pytest.mark.parametrize("coord", COORDS)
def test_resize_nearest_sweep_matches_onnxruntime(coord: str) -> None:
    """W 1..20 x Wo 1..30 x every nearest mode, sizes form (the scale as the importer takes
    it, float32 Wo / W): the interpolation matrix picks onnxruntime's element everywhere."""
    outs = range(1, 31)
    wrong = []
    for nearest in NEAREST:
        for width in range(1, 21):
            for wo, want in zip(outs, _ort_indices(width, outs, coord, nearest), strict=True):
                scale = float(np.float32(wo) / np.float32(width))
                got = _interpolation(width, wo, scale, "nearest", coord, nearest).argmax(axis=1)
                if not np.array_equal(got, want):
                    wrong.append((nearest, width, wo))
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("width", "wo", "coord", "nearest"),
    [
        (7, 8, "asymmetric", "round_prefer_ceil"),
        (7, 2, "asymmetric", "round_prefer_ceil"),
        (10, 12, "asymmetric", "round_prefer_ceil"),
        (11, 26, "asymmetric", "round_prefer_floor"),
        (14, 19, "half_pixel", "round_prefer_ceil"),
        (20, 6, "half_pixel", "round_prefer_ceil"),
    ],
)
def test_resize_near_ties_end_to_end(
    tmp_path: Path, width: int, wo: int, coord: str, nearest: str
) -> None:
    node = N("Resize", ["x", "", "", "sz"], ["y"], mode="nearest",
             coordinate_transformation_mode=coord, nearest_mode=nearest)  # fmt: skip
    path = save(tmp_path, [node], [ints("sz", [1, 2, 3, wo])], [1, 2, 3, width], opset=19)
    against_ort(path, import_onnx(path))


def test_a_coordinate_in_the_unpinned_tie_band_is_refused() -> None:
    """Within 1e-6 of a .5 is a tie (onnxruntime); from there to 1.9e-6 the tolerance is not
    pinned down, so a coordinate whose rounding the tie would change is refused."""
    f32 = np.float32
    assert _round(np.array([3.5 - 5e-7, 3.5 + 5e-7], f32), "round_prefer_ceil").tolist() == [4, 4]
    assert _round(np.array([3.5 - 5e-7, 3.5 + 5e-7], f32), "round_prefer_floor").tolist() == [3, 3]
    for value, nearest in [
        (3.5 - 1.5e-6, "round_prefer_ceil"),
        (3.5 + 1.5e-6, "round_prefer_floor"),
    ]:
        with pytest.raises(_NodeError, match=r"too close to a tie .* give another output size"):
            _round(np.array([0.0, value], f32), nearest)
    # the same coordinates round one way whichever the tolerance: kept
    assert _round(np.array([3.5 + 1.5e-6], f32), "round_prefer_ceil").tolist() == [4]
    assert _round(np.array([3.5 - 1.5e-6], f32), "round_prefer_floor").tolist() == [3]


# --- external data, input errors ---------------------------------------------------------


def test_external_data_refused_before_the_checker(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    set_external_data(w, location="ext.data")
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    path = save(tmp_path, [N("MatMul", ["x", "w"], ["y"])], [w], [1, 4], [1, 4])
    text = str(_refused(path, r"initializer 'w' keeps its data in an external file"))
    assert "not a valid ONNX model" not in text


def _model(tmp_path: Path, inputs: list[Any], nodes: list[Any], inits: list[Any]) -> Path:
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["o"])], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_model_faults_are_not_input_shape_errors(tmp_path: Path) -> None:
    vi = helper.make_tensor_value_info
    two = _model(tmp_path, [vi("a", 1, [1, 4]), vi("b", 1, [1, 4])],
                 [N("Add", ["a", "b"], ["y"])], [])  # fmt: skip
    err = _refused(two, "exactly one input and one output")
    assert not isinstance(err, InputShapeError)
    ints_in = _model(tmp_path, [vi("x", TensorProto.INT64, [1, 4])],
                     [N("Cast", ["x"], ["y"], to=1)], [])  # fmt: skip
    err = _refused(ints_in, "input 'x' must be float32")
    assert not isinstance(err, InputShapeError)
    scalar = _model(tmp_path, [vi("x", 1, [])], [N("Relu", ["x"], ["y"])], [])
    err = _refused(scalar, r"input 'x' has a scalar \(rank 0\)")
    assert "-1 sizes" not in str(err) and not isinstance(err, InputShapeError)


def test_a_scenario_blames_the_model_field_for_a_model_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vi = helper.make_tensor_value_info
    _model(tmp_path, [vi("x", TensorProto.INT64, [1, 4])], [N("Cast", ["x"], ["y"], to=1)], [])
    bad = save(tmp_path, [N("Relu", ["x"], ["y"])], [], [1, 3])
    for model, field, match in [
        ("m.onnx", "model", "input 'x' must be float32"),
        (bad.name, "input_shape", "static dimension 1 = 3, but input_shape"),
    ]:
        scenario = tmp_path / "s.yaml"
        scenario.write_text(
            "name: s\npolicy: np-edf\nduration_ms: 60\ntasks:\n"
            f"  - name: a\n    model: {model}\n    input_shape: [4]\n"
            "    period_ms: 20\n    wcet_ms: 2\n"
        )
        assert main(["check", str(scenario)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"task 'a': field '{field}': " in err and match in err, err


def test_shape_faults_stay_input_shape_errors(tmp_path: Path) -> None:
    path = save(tmp_path, [N("Relu", ["x"], ["y"])], [], [1, 3, "h"])
    assert isinstance(_refused(path, "give input_shape with 2 sizes"), InputShapeError)
    err = _refused(path, r"static dimension 1 = 3, but input_shape\[0\] is 4", input_shape=[4, 5])
    assert isinstance(err, InputShapeError)


# --- constant folding --------------------------------------------------------------------


@pytest.mark.parametrize("op", ["Div", "Mod"])
def test_integer_division_by_zero_on_constants_refused(tmp_path: Path, op: str) -> None:
    nodes = [N(op, ["a", "b"], ["s"]), N("Reshape", ["x", "s"], ["y"])]
    path = save(tmp_path, nodes, [ints("a", [1, 12]), ints("b", [1, 0])], [1, 12], [1, 12])
    _refused(path, rf"node '#0' \({op}\): integer division by zero")


def test_folding_is_quiet(tmp_path: Path) -> None:
    """A Cast overflowing on a constant (a NumPy RuntimeWarning) folds without a warning."""
    big = numpy_helper.from_array(np.array([1e10, 1.0, 2.0, 3.0], np.float32), "big")
    nodes = [
        N("Cast", ["big"], ["i"], to=TensorProto.INT32),
        N("Cast", ["i"], ["f"], to=TensorProto.FLOAT),
        N("Mul", ["x", "f"], ["y"]),
    ]
    path = save(tmp_path, nodes, [big], [1, 4], [1, 4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        imported = import_onnx(path)
    assert imported.graph.ops


def test_sinusoidal_table_folds(tmp_path: Path) -> None:
    freq = numpy_helper.from_array((1e-2 ** (np.arange(4) / 4)).astype(np.float32)[None], "f")
    nodes = [
        N("Range", ["r0", "r8", "r1"], ["pos"]),
        N("Unsqueeze", ["pos", "ax1"], ["pos2"]),
        N("Cast", ["pos2"], ["posf"], to=TensorProto.FLOAT),
        N("Mul", ["posf", "f"], ["ang"]),
        N("Sin", ["ang"], ["sin"]),
        N("Cos", ["ang"], ["cos"]),
        N("Concat", ["sin", "cos"], ["table"], axis=1),
        N("Add", ["x", "table"], ["y"]),
    ]
    scalars = [numpy_helper.from_array(np.array(v, np.int64), n)
               for n, v in (("r0", 0), ("r8", 8), ("r1", 1))]  # fmt: skip
    path = save(tmp_path, nodes, [*scalars, ints("ax1", [1]), freq], [1, 8, 8])
    against_ort(path, import_onnx(path))


def test_causal_mask_and_cumsum_fold(tmp_path: Path) -> None:
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        N("ConstantOfShape", ["shape"], ["ones"], value=one),
        N("Trilu", ["ones"], ["tril"], upper=0),
        N("Equal", ["tril", "zero"], ["hide"]),
        N("Where", ["hide", "neg", "zero"], ["mask"]),
        N("CumSum", ["ones", "axis"], ["ramp"]),
        N("Add", ["x", "mask"], ["masked"]),
        N("Mul", ["masked", "ramp"], ["y"]),
    ]
    inits = [
        ints("shape", [4, 4]),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(-1e4, np.float32), "neg"),
        numpy_helper.from_array(np.array(1, np.int64), "axis"),
    ]
    path = save(tmp_path, nodes, inits, [1, 4, 4])
    against_ort(path, import_onnx(path))
