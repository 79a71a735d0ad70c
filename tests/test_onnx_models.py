"""Whole networks (benchmarks/onnx_models.py: ResNet-style blocks, a MobileNetV3 block, a
transformer encoder layer, a conv decoder) imported and run against onnxruntime (CPU): the
float64 reference and the float32 kernels, in a planned arena, and chunk by chunk at op
boundaries as lp-edf runs them; the committed demo models are what the generator writes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx_util import ATOL, RTOL, against_ort  # noqa: E402

from aegis_core.graph.onnx_import import ImportedModel, import_onnx  # noqa: E402
from aegis_exec.kernels import CompiledGraph  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "scenarios" / "models"
DEMO = ROOT / "scenarios" / "onnx_demo.yaml"


def _generators() -> ModuleType:
    """benchmarks/onnx_models.py, loaded by its path (benchmarks/ is not a package)."""
    path = ROOT / "benchmarks" / "onnx_models.py"
    spec = importlib.util.spec_from_file_location("aegis_bench_onnx_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GEN = _generators()
NAMES = sorted(GEN.MODELS)


def _write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(GEN.MODELS[name][0]().SerializeToString())
    return path


def _imported(tmp_path: Path, name: str, batch: int = 1) -> tuple[Path, ImportedModel]:
    path = _write(tmp_path, name)
    return path, import_onnx(path, input_shape=GEN.MODELS[name][1], batch=batch)


def _input(imported: ImportedModel, seed: int = 3) -> np.ndarray:
    shape = imported.graph.tensors[imported.graph.input].shape
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _ort(path: Path, imported: ImportedModel, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {imported.onnx_input: x})
    return np.asarray(want)


def _compiled(imported: ImportedModel, **options: Any) -> CompiledGraph:
    compiled = CompiledGraph(imported.graph, np, **options)
    for name, value in imported.params.items():
        compiled.tensors[name][...] = value
    return compiled


def test_the_generator_covers_the_four_networks() -> None:
    assert NAMES == ["conv_decoder", "mobilenetv3_block", "resnet_blocks", "transformer_encoder"]


@pytest.mark.parametrize("name", NAMES)
def test_each_network_is_valid_onnx_that_onnxruntime_runs_well_scaled(name: str) -> None:
    """The ONNX side alone: checker (full), the same bytes every build, a dynamic batch as
    exporters write it, finite outputs of order 1 at batch 1 and 3."""
    build, shape = GEN.MODELS[name]
    model = build()
    onnx.checker.check_model(model, full_check=True)
    assert model.SerializeToString() == build().SerializeToString()
    (inp,) = model.graph.input
    assert inp.type.tensor_type.shape.dim[0].dim_param == "N"
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
        (y,) = session.run(None, {inp.name: x})
        assert y.shape[0] == batch and np.isfinite(y).all()
        assert 1e-2 < float(np.std(y)) < 1e2


def test_the_networks_use_the_ops_they_are_meant_to_cover() -> None:
    ops = {n: {node.op_type for node in GEN.MODELS[n][0]().graph.node} for n in NAMES}
    assert {"Conv", "BatchNormalization", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm",
            "Add", "Relu"} <= ops["resnet_blocks"]  # fmt: skip
    assert {"HardSwish", "HardSigmoid", "GlobalAveragePool", "Mul", "Add"} <= ops[
        "mobilenetv3_block"
    ]
    assert {"ReduceMean", "Sub", "Pow", "Sqrt", "Div", "Shape", "Gather", "Unsqueeze", "Concat",
            "Reshape", "Transpose", "MatMul", "Softmax", "LayerNormalization", "Erf",
            "Constant"} <= ops["transformer_encoder"]  # fmt: skip
    assert {"ConvTranspose", "Resize", "Concat", "Slice", "Shape", "Constant", "Sigmoid"} <= ops[
        "conv_decoder"
    ]
    dw = [n for n in GEN.mobilenetv3_block().graph.node if n.op_type == "Conv"]
    assert any(a.name == "group" and a.i > 1 for n in dw for a in n.attribute)  # depthwise
    modes = sorted(
        a.s.decode()
        for n in GEN.conv_decoder().graph.node
        if n.op_type == "Resize"
        for a in n.attribute
        if a.name == "mode"
    )
    assert modes == ["linear", "nearest"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [1, 2])
def test_each_network_imports_and_matches_onnxruntime(
    tmp_path: Path, name: str, batch: int
) -> None:
    path, imported = _imported(tmp_path, name, batch)
    g = imported.graph
    assert g.tensors[g.input].shape == (batch, *GEN.MODELS[name][1])
    assert set(imported.params) == {n for n, t in g.tensors.items() if t.role == "weight"}
    assert sum(op.flops for op in g.ops) > 0
    against_ort(path, imported)  # float64 reference and float32 CompiledGraph


OTHER_SHAPES = {  # the dynamic dimensions fixed otherwise: H != W, another sequence length
    "conv_decoder": (3, 16, 24),
    "mobilenetv3_block": (3, 20, 12),
    "resnet_blocks": (3, 24, 40),
    "transformer_encoder": (8, 32),
}


@pytest.mark.parametrize("name", NAMES)
def test_each_network_imports_at_another_input_shape(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name)
    imported = import_onnx(path, input_shape=OTHER_SHAPES[name])
    g = imported.graph
    assert g.tensors[g.input].shape == (1, *OTHER_SHAPES[name])
    against_ort(path, imported, seed=5)


@pytest.mark.parametrize("name", NAMES)
def test_each_network_runs_in_a_planned_arena_smaller_than_naive(tmp_path: Path, name: str) -> None:
    from aegis_core.memory.planner import plan_model, usage_of
    from aegis_exec import arena

    path, imported = _imported(tmp_path, name)
    plan = plan_model(usage_of(imported.graph, executor=True))
    assert plan.lower_bound <= plan.size < plan.naive  # activations share memory
    buf = arena.arena_buffer(np, plan.size)
    placed = _compiled(imported, placement=arena.Placement(buf, plan.offsets, np.float32))
    x = _input(imported)
    placed.inputs[...] = x
    placed.run()
    want = _ort(path, imported, x)
    np.testing.assert_allclose(placed.output.reshape(want.shape), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_each_network_run_in_lp_edf_chunks_gives_the_one_run_output(
    tmp_path: Path, name: str
) -> None:
    path, imported = _imported(tmp_path, name)
    g = imported.graph
    compiled = _compiled(imported)
    x = _input(imported)
    compiled.inputs[...] = x
    compiled.run()
    whole = compiled.output.copy()
    want = _ort(path, imported, x)
    np.testing.assert_allclose(whole.reshape(want.shape), want, rtol=RTOL, atol=ATOL)
    for k in (2, 3, 7):
        chunks = g.chunks(k)
        assert len(chunks) == min(k, len(g.ops)) and chunks[-1].stop == len(g.ops)
        compiled.output[...] = np.nan  # a chunk left out would leave it so
        for chunk in chunks:
            compiled.run(chunk)
        np.testing.assert_array_equal(compiled.output, whole)


def test_the_committed_models_are_what_the_generator_writes(tmp_path: Path) -> None:
    """scenarios/models/*.onnx never rot: regenerate with
    ``python benchmarks/onnx_models.py --out scenarios/models``."""
    committed = sorted(p.stem for p in COMMITTED.glob("*.onnx"))
    assert committed == NAMES
    for name in NAMES:
        path = COMMITTED / f"{name}.onnx"
        assert path.stat().st_size < 1 << 20  # no binary over 1 MB in the repository
        on_disk = onnx.load_model_from_string(path.read_bytes())
        assert on_disk == GEN.MODELS[name][0](), f"{path}: regenerate it (see the docstring)"
    written = GEN.write(tmp_path)  # main()'s writer: the same bytes
    assert [p.read_bytes() for p in written] == [(COMMITTED / p.name).read_bytes() for p in written]


def test_the_demo_scenario_runs_committed_models_at_the_tested_shapes() -> None:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(DEMO.read_text())
    assert len(data["tasks"]) == 3
    for task in data["tasks"]:
        model = DEMO.parent / task["model"]
        assert model.parent == COMMITTED and model.is_file()
        assert tuple(task["input_shape"]) == GEN.MODELS[model.stem][1]


def test_the_demo_scenario_loads_and_is_admitted() -> None:
    """Needs `model: x.onnx` in scenarios (the loader imports each model)."""
    import aegis

    scenario = aegis.load(DEMO)
    assert [t.input_shape for t in scenario.tasks] == [
        GEN.MODELS[Path(t.model or "").stem][1] for t in scenario.tasks
    ]
    assert aegis.admit(scenario).schedulable


def _bench() -> ModuleType:
    path = ROOT / "benchmarks" / "bench_onnx.py"
    spec = importlib.util.spec_from_file_location("aegis_bench_onnx", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(out: str) -> dict[str, str]:
    return {line.split(" | ")[0][2:]: line for line in out.splitlines()[2:]}


def test_bench_onnx_quick_runs_every_network_against_onnxruntime(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _bench().main(["--quick"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert sorted(rows) == NAMES
    assert all(" ok | " in row and "not run" not in row for row in rows.values())


def test_bench_onnx_cupy_path_on_the_fake_cupy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """gpu_validate.sh's step (eager and one CUDA graph per model, each checked against
    onnxruntime) on the NumPy stand-in for CuPy: the device code path runs in CI."""
    import fake_cupy

    from aegis_exec.testing import VirtualClock

    cp, state = fake_cupy.make(VirtualClock())
    monkeypatch.setitem(sys.modules, "cupy", cp)
    assert _bench().main(["--backend", "cupy", "--quick"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert sorted(rows) == NAMES
    assert all(row.count(" ok") == 2 for row in rows.values())
    assert state.calls["graph_launch"] >= len(NAMES) * 3  # the replays were timed


@pytest.mark.parametrize("name", NAMES)
def test_aegis_import_verifies_each_committed_network(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`aegis import MODEL --input-shape 1x... --verify` (docs/TUTORIAL.md §3f): exit 0."""
    from aegis_core.tools.cli import main

    shape = "x".join(map(str, (1, *GEN.MODELS[name][1])))
    assert (
        main(["import", str(COMMITTED / f"{name}.onnx"), "--input-shape", shape, "--verify"]) == 0
    )
    assert name in capsys.readouterr().out
