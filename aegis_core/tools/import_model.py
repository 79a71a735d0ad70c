"""``aegis import``: an ONNX model as AegisRT sees it (ops, parameters, compute, activation
memory), written as a graph file with its weights, and checked against ONNX Runtime.

The summary's memory is the plan ``aegis memory`` makes (the executor's sizing: kernel
scratch included, 4 bytes an element). ``--verify`` runs one seeded random input through the
float32 NumPy kernels with the model's weights (found through the ``aegis.kernels`` entry
point: the core never imports the executor) and through ``onnxruntime`` on the CPU, and
compares every output element: ``|ours - theirs| <= ATOL + RTOL * |theirs|``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aegis_core.graph.ir import GRAPH_FILE_LIMIT, Graph, WeightsRef, parse_json, read_bounded
from aegis_core.graph.weights import imported, weights_entry
from aegis_core.model.errors import (
    ONNX_PIP_HINT,
    ORT_LOG_SEVERITY,
    EngineNotFound,
    InputError,
    flatten,
    quote,
    show_path,
)
from aegis_core.model.files import read_user_bytes, write_atomic, write_json_atomic

if TYPE_CHECKING:
    from aegis_core.graph.onnx_import import ImportedModel

RTOL, ATOL = 1e-3, 1e-4
"""The fp32 tolerance of ``--verify``."""
VERIFY_SEED = 0
"""The seed of ``--verify``'s random input (standard normal)."""
KERNELS_GROUP = "aegis.kernels"
"""The entry-point group of the executor's one-pass runner (``numpy``)."""


@dataclass(frozen=True)
class Summary:
    """What ``aegis import`` prints about a model."""

    source: str
    graph: Graph
    onnx_names: tuple[str, str]
    """The ONNX input and output names (the IR may name its output tensor otherwise)."""
    onnx_ops: Counter[str]
    ir_ops: Counter[str]
    parameters: int
    """Elements of the ONNX model's floating-point initializers (its trained parameters)."""
    weights: int
    """Elements of the graph's weight tensors as AegisRT runs it: BatchNorm folded,
    Resize's interpolation matrices and broadcast constants included."""
    planned_bytes: int
    naive_bytes: int
    lower_bound_bytes: int

    @property
    def gflops(self) -> float:
        return self.graph.flops / 1e9


def summarize(path: str | Path, model: ImportedModel) -> Summary:
    """The summary of the ONNX model at ``path`` imported as ``model``."""
    from aegis_core.graph.onnx_import import ONNX_FILE_LIMIT, _onnx
    from aegis_core.memory.planner import ALIGN, usage_of
    from aegis_core.memory.sharing import plan_models

    onnx = _onnx()
    proto = onnx.load_model_from_string(read_user_bytes(path, "ONNX model", ONNX_FILE_LIMIT))
    g = model.graph
    plan = plan_models([usage_of(g, executor=True)], "serial", ALIGN).models[0]
    return Summary(
        source=str(path),
        graph=g,
        onnx_names=(model.onnx_input, model.onnx_output),
        onnx_ops=Counter(n.op_type for n in proto.graph.node),
        ir_ops=Counter(op.fn for op in g.ops),
        parameters=sum(
            math.prod(i.dims) for i in proto.graph.initializer if i.data_type in _FLOATS
        ),
        weights=sum(t.size for t in g.tensors.values() if t.role == "weight"),
        planned_bytes=plan.size,
        naive_bytes=plan.naive,
        lower_bound_bytes=plan.lower_bound,
    )


def _ops(counts: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def format_summary(s: Summary) -> str:
    g = s.graph
    inp, out = g.tensors[g.input], g.tensors[g.output]
    return "\n".join([
        f"{show_path(s.source)} -> graph {quote(g.name)}: batch {g.batch}, input "
        f"{quote(s.onnx_names[0])} {list(inp.shape)}, output {quote(s.onnx_names[1])} "
        f"{list(out.shape)}",
        f"ONNX ops ({sum(s.onnx_ops.values())}): {_ops(s.onnx_ops)}",
        f"IR ops ({len(g.ops)}): {_ops(s.ir_ops)}",
        f"parameters: {s.parameters:,} in the ONNX initializers; weights as run: "
        f"{s.weights:,} ({_kib(4 * s.weights)} float32; BatchNorm folded, interpolation "
        "matrices and constants included)",
        f"compute: {s.gflops:.4g} GFLOPs, {s.gflops / 2:.4g} GMACs per batch of {g.batch}",
        f"activations (the `aegis memory` plan, kernel scratch included): planned "
        f"{_kib(s.planned_bytes)}, naive {_kib(s.naive_bytes)}, lower bound "
        f"{_kib(s.lower_bound_bytes)}",
    ])  # fmt: skip


# ---------------------------------------------------------------------- -o graph.json


def weights_path(graph_file: str | Path) -> Path:
    """Where ``-o graph.json`` puts the weights: ``graph.weights.npz`` beside it."""
    p = Path(graph_file)
    return p.with_name(f"{p.stem}.weights.npz")


def write_graph(model: ImportedModel, graph_file: str | Path) -> tuple[Path, Path]:
    """Write ``graph_file`` (:meth:`Graph.to_dict` plus its ``weights`` entry) and the
    weights beside it (``np.savez``, one array per weight tensor), each atomically; the
    weights first, so a graph file never names weights that are not there. An existing file
    at either path is replaced only when it is a graph file (and the weights it names):
    anything else is refused, touching nothing."""
    npz = weights_path(graph_file)
    _may_replace(Path(graph_file), npz)
    data = npz_bytes(model.params)
    ref = WeightsRef("npz", str(npz.absolute()), hashlib.sha256(data).hexdigest())
    doc = {**model.graph.to_dict(), "weights": weights_entry(ref, graph_file)}
    write_atomic(npz, lambda f: f.write(data), "weights file")
    write_json_atomic(graph_file, doc, "graph file")
    return Path(graph_file), npz


def npz_bytes(params: Mapping[str, np.ndarray]) -> bytes:
    """``params`` as ``np.savez`` writes them (an uncompressed zip of ``<name>.npy``), any
    tensor name (``np.savez`` takes names as keyword arguments), never pickled."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for name, value in params.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(value), allow_pickle=False)
    return buf.getvalue()


def _may_replace(graph_file: Path, npz: Path) -> None:
    if graph_file.suffix.lower() == ".onnx":
        raise InputError(f"{show_path(graph_file)}: -o names a graph file (.json), not a model")
    if not graph_file.exists():
        if npz.exists():
            raise InputError(
                f"{show_path(npz)}: exists and no graph file names it: refusing to overwrite "
                "it (remove it or choose another -o)"
            )
        return
    try:
        data = read_bounded(graph_file, GRAPH_FILE_LIMIT, "graph file")
        doc = parse_json(data, graph_file, "graph file")
        Graph.from_dict(doc)
    except (InputError, ValueError, KeyError, TypeError, AttributeError, ArithmeticError):
        raise InputError(
            f"{show_path(graph_file)}: exists and is not a graph file: refusing to overwrite "
            "it (remove it or choose another -o)"
        ) from None
    entry = doc.get("weights")
    named = isinstance(entry, dict) and entry.get("path") == npz.name
    if npz.exists() and not named:
        raise InputError(
            f"{show_path(npz)}: exists and {show_path(graph_file)} does not name it: refusing "
            "to overwrite it (remove it or choose another -o)"
        )


# ---------------------------------------------------------------------- --verify


@dataclass(frozen=True)
class Check:
    """One output compared with ONNX Runtime's."""

    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    ok: bool


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise InputError(f"--verify needs the onnxruntime package: {ONNX_PIP_HINT}") from None
    return onnxruntime


def _run_graph() -> Callable[[Graph, np.ndarray], np.ndarray]:
    for ep in metadata.entry_points(group=KERNELS_GROUP):
        if ep.name == "numpy":
            run: Callable[[Graph, np.ndarray], np.ndarray] = ep.load()
            return run
    raise EngineNotFound(
        f"no NumPy kernels registered (entry point group {KERNELS_GROUP}): is AegisRT "
        "installed? pip install -e ."
    )


def verify(path: str | Path, model: ImportedModel, seed: int = VERIFY_SEED) -> list[Check]:
    """The model's output for one seeded random input, ours against ONNX Runtime's (CPU)."""
    ort = _onnxruntime()
    run = _run_graph()
    g = model.graph
    x = np.random.default_rng(seed).standard_normal(g.tensors[g.input].shape).astype(np.float32)
    ours = run(g, x)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = ORT_LOG_SEVERITY
    try:
        session = ort.InferenceSession(
            read_user_bytes(path, "ONNX model", None), options, providers=["CPUExecutionProvider"]
        )
        (theirs,) = session.run([model.onnx_output], {model.onnx_input: x})
    except Exception as exc:  # onnxruntime's own errors (it refuses the model)
        raise InputError(
            f"{show_path(path)}: onnxruntime cannot run it: {type(exc).__name__}: "
            f"{flatten(str(exc))}"
        ) from None
    theirs = np.asarray(theirs)
    if theirs.size != ours.size:
        raise InputError(
            f"{show_path(path)}: output {quote(model.onnx_output)}: onnxruntime gives "
            f"{list(theirs.shape)}, AegisRT {list(ours.shape)}"
        )
    return [compare(model.onnx_output, ours.reshape(theirs.shape), theirs)]


def compare(name: str, ours: np.ndarray, theirs: np.ndarray) -> Check:
    """``ours`` against ``theirs`` at :data:`RTOL` / :data:`ATOL` (NaN anywhere fails)."""
    a, b = ours.astype(np.float64), theirs.astype(np.float64)
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(b), np.finfo(np.float32).tiny)
    ok = bool(np.all(diff <= ATOL + RTOL * np.abs(b)))
    max_abs = float(diff.max(initial=0.0)) if np.isfinite(diff).all() else float("inf")
    max_rel = float(rel.max(initial=0.0)) if np.isfinite(rel).all() else float("inf")
    return Check(name, tuple(theirs.shape), max_abs, max_rel, ok)


def format_checks(checks: Sequence[Check]) -> str:
    lines = [f"verify against onnxruntime (CPU), seed {VERIFY_SEED}, fp32 tolerance "
             f"|ours - ort| <= {ATOL:g} + {RTOL:g} * |ort|:"]  # fmt: skip
    for c in checks:
        lines.append(
            f"  output {quote(c.name)} {list(c.shape)}: max abs error {c.max_abs:.3g}, max rel "
            f"error {c.max_rel:.3g}: {'ok' if c.ok else 'ABOVE THE TOLERANCE'}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------- the command


@dataclass(frozen=True)
class Options:
    model: str
    input_shape: str | None
    """``--input-shape``: the whole input's shape, batch first (``1x3x224x224``)."""
    batch: int | None
    """``--batch``: overrides the input shape's first size (default: it, or 1)."""
    out: str | None
    verify: bool
    name: str | None


_MAX_DIGITS = 12
"""Most digits of one ``--input-shape`` size (the importer caps sizes far below 10**12)."""
_FLOATS = frozenset({1, 10, 11, 16})
"""ONNX TensorProto data types FLOAT, FLOAT16, DOUBLE and BFLOAT16."""


def parse_shape(text: str) -> tuple[int, tuple[int, ...]]:
    """``--input-shape 1x3x224x224``: the batch (the first size) and the per-sample shape."""
    parts = text.lower().split("x")
    ok = all(p.isascii() and p.isdigit() and len(p) <= _MAX_DIGITS for p in parts)
    if not ok or len(parts) < 2 or not all(int(p) >= 1 for p in parts):
        raise InputError(
            f"--input-shape must be sizes joined by x, the batch first (e.g. 1x3x224x224), "
            f"got {quote(text)}"
        )
    sizes = tuple(int(p) for p in parts)
    return sizes[0], sizes[1:]


def _imported(opts: Options, batch: int, shape: tuple[int, ...] | None) -> ImportedModel:
    """The model imported; a shape that does not fit its input restated for the flags
    (the importer words it for a scenario's ``input_shape``, which has no batch)."""
    from aegis_core.graph.onnx_import import InputShapeError

    try:
        return imported(opts.model, batch, shape)
    except InputShapeError as exc:
        restated = _restate_shape(opts)
        if restated is None:
            raise
        raise restated from exc


def _model_input(path: str | Path) -> tuple[str, Any] | None:
    """The ONNX model's one float32 input (its name and dimensions), if it has exactly one."""
    from aegis_core.graph.onnx_import import ONNX_FILE_LIMIT, _onnx

    proto = _onnx().load_model_from_string(read_user_bytes(path, "ONNX model", ONNX_FILE_LIMIT))
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != 1:  # FLOAT
        return None
    return inputs[0].name, inputs[0].type.tensor_type.shape.dim


def _restate_shape(opts: Options) -> InputError | None:
    """``--input-shape`` does not fit the model's input: say what the flag wants (the whole
    shape, the batch first), with an example when the sizes given make one (they may have
    left the batch out)."""
    from aegis_core.graph.onnx_import import _dims

    found = _model_input(opts.model)
    if found is None:
        return None
    name, dims = found
    static = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    first, rest = parse_shape(opts.input_shape) if opts.input_shape else (1, None)
    sizes = None if rest is None else [opts.batch or first, *rest]
    per_sample = () if rest is None else (first, *rest)
    if len(per_sample) == len(static) - 1 and all(
        h in (None, w) for h, w in zip(static[1:], per_sample, strict=True)
    ):
        sizes = [opts.batch or 1, *per_sample]  # the batch left out
    example = ""
    if sizes is not None and len(sizes) == len(static):
        fit = [w if h is None else h for h, w in zip(static, sizes, strict=True)]
        example = f", e.g. {'x'.join(map(str, fit))}"
    got = f" (got {quote(opts.input_shape)})" if opts.input_shape else ""
    return InputError(
        f"{show_path(opts.model)}: input {quote(name)} has shape {_dims(dims)}: --input-shape "
        f"is the whole input shape, the batch first: give {len(static)} sizes joined by x"
        f"{example}{got}"
    )


def run(opts: Options, out: Callable[[str], None] = print) -> int:
    """``aegis import``: 0 done (and verified); 1 an output above the tolerance."""
    batch, shape = parse_shape(opts.input_shape) if opts.input_shape else (1, None)
    if opts.batch is not None:
        if opts.batch < 1:
            raise InputError(f"--batch must be >= 1, got {opts.batch}")
        batch = opts.batch
    if opts.name is not None and not opts.name.strip():
        raise InputError("--name must not be empty")
    if opts.out is not None:  # refused before the import: nothing printed, then refused
        _may_replace(Path(opts.out), weights_path(opts.out))
    model = _imported(opts, batch, shape)
    if opts.name is not None:
        model = dataclasses.replace(model, graph=dataclasses.replace(model.graph, name=opts.name))
    checks = verify(opts.model, model) if opts.verify else []
    out(format_summary(summarize(opts.model, model)))
    if checks:
        out(format_checks(checks))
    ok = all(c.ok for c in checks)
    if opts.out is not None and ok:
        graph_file, npz = write_graph(model, opts.out)
        out(f"graph: {show_path(graph_file)}, weights: {show_path(npz)} (use it as `model: "
            f"{show_path(graph_file)}` in a scenario task)")  # fmt: skip
    elif opts.out is not None:
        out(f"graph not written to {show_path(opts.out)}: the outputs do not match")
    return 0 if ok else 1
