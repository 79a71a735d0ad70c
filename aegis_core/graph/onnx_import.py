"""Import an ONNX model into the graph IR (:mod:`aegis_core.graph.ir`) with its real weights.

:func:`import_onnx` reads the file with the ``onnx`` package (imported here, lazily: the core
never needs it otherwise), fixes every dynamic input dimension from ``batch`` and
``input_shape``, runs ONNX shape inference, and walks the nodes in their (topological) order:

* a node of the shape / constant-arithmetic operators (:data:`_FOLDABLE`) whose inputs are
  all constants (initializers, ``Constant`` nodes, or already folded), and ``Shape`` /
  ``Size`` of an activation (its shape is fixed), is evaluated now with ``onnx.reference``
  and becomes a constant: the shape sub-graphs exporters write (``Shape -> Gather ->
  Unsqueeze -> Concat -> Reshape``) fold away. Any other operator on constants goes to its
  mapper or is refused; control flow (``Loop`` / ``Scan`` / ``If``), sequences and random
  operators are always refused;
* ``BatchNormalization`` right after a ``Conv`` whose output nothing else reads is folded into
  the convolution's weight and bias; any other is a depthwise 1x1 conv (a ``[N, C]`` or
  ``[N, C, L]`` input seen as ``[N, C, 1, 1]`` / ``[N, C, L, 1]``);
* ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``, ``Identity`` and ``Dropout`` are views:
  they cost nothing until an operator needs the tensor in that shape, when one ``permute``
  (a contiguous copy) is emitted;
* every other node maps onto IR operators (``Gemm`` / ``MatMul`` with a 2-D constant right
  side are ``linear``, any other ``MatMul`` a broadcasting ``matmul``; ``Add`` / ``Sub`` /
  ``Mul`` / ``Div`` / ``Pow`` broadcast, a constant operand kept at its own size as a weight,
  except a constant added right after a ``linear`` / ``conv2d``, which goes into its bias;
  ``Slice`` / ``Gather`` with constant bounds / indices and ``Concat`` copy; ``Cast`` to
  float32 and ``Expand`` to the same shape are views); a LayerNorm decomposed into
  ``ReduceMean -> Sub -> Pow -> ReduceMean -> Add -> Sqrt -> Div -> Mul -> Add`` becomes one
  ``layernorm`` where nothing else reads its parts.
* the spatial ops take any 2-D geometry: ``Conv`` / ``ConvTranspose`` / ``MaxPool`` /
  ``AveragePool`` with per-axis strides, asymmetric pads, dilations, ``auto_pad`` (made
  explicit pads here), ``ceil_mode``, ``output_padding`` / ``output_shape``; ``Resize`` /
  ``Upsample`` (nearest, linear; from constant scales or sizes) become a ``resize`` whose
  interpolation matrices are weights built here (:func:`_interpolation`). Where onnxruntime
  and the ONNX spec disagree the node is refused: SAME pads with dilations, a scale whose
  float32 output size differs from the exact one, ``ceil_mode`` windows starting in the pad.

The weights are returned beside the graph (:class:`ImportedModel.params`, float32 NumPy arrays
keyed by weight tensor name): the IR stays weights-free, as for builtins, whose weights
:func:`aegis_exec.kernels.init_params` makes up. An operator, attribute value or shape the IR
cannot express is an :class:`InputError` naming the file, the node and its op, never a wrong
answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from aegis_core.graph.ir import (
    FNS,
    MAX_GRAPH_BYTES,
    MAX_OPS,
    Graph,
    WeightsRef,
    _infer,
    _ShapeError,
)
from aegis_core.model.errors import ONNX_PIP_HINT, InputError, quote, show_path
from aegis_core.model.files import read_user_bytes

__all__ = ["ONNX_FILE_LIMIT", "ImportedModel", "InputShapeError", "import_onnx"]

ONNX_FILE_LIMIT = 2 << 30
"""2 GiB: protobuf's own limit for one message; external data files are not read (yet)."""

FOLD_LIMIT = 1 << 28
"""256 MiB: the most one constant folded at import time may take (checked against ONNX shape
inference before it is computed, where inference knows the size)."""

_GROWING = frozenset({"ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Pad", "Upsample"})
"""Ops whose output can be much larger than their inputs: folded only when its size is known."""

_BROADCASTING = frozenset(
    {"Add", "And", "Div", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Max",
     "Min", "Mod", "Mul", "Or", "Pow", "Sub", "Sum", "Where", "Xor"}
)  # fmt: skip
"""Ops whose output is the NumPy broadcast of their inputs (checked before folding)."""

_FOLDABLE = _BROADCASTING | frozenset(
    {"Abs", "Cast", "CastLike", "Ceil", "Clip", "Concat", "Constant", "ConstantOfShape",
     "Cos", "CumSum", "Erf", "Exp", "Expand", "Flatten", "Floor", "Gather", "GatherElements",
     "Identity", "Log", "Neg", "Not", "Pad", "Range", "Reciprocal", "ReduceMax", "ReduceMean",
     "ReduceMin", "ReduceProd", "ReduceSum", "Relu", "Reshape", "Round", "Shape", "Sigmoid",
     "Sign", "Sin", "Size", "Slice", "Split", "Sqrt", "Squeeze", "Tanh", "Tile", "Transpose",
     "Trilu", "Unsqueeze"}
)  # fmt: skip
"""The deterministic operators evaluated at import time when all their inputs are constants:
those of shape sub-graphs and of constant arithmetic as exporters write them, each in time
and memory bounded by its inputs and output (checked against :data:`FOLD_LIMIT`). Any other
operator on constants is refused: control flow could run unbounded, a random operator would
freeze one sample, a contraction (MatMul, Conv) costs more than its output."""

_CONTROL_FLOW = frozenset(
    {"ConcatFromSequence", "If", "Loop", "Optional", "OptionalGetElement",
     "OptionalHasElement", "Scan", "SplitToSequence"}
)  # fmt: skip
_RANDOM = frozenset(
    {"Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform",
     "RandomUniformLike"}
)  # fmt: skip

_FLOAT = 1  # onnx.TensorProto.FLOAT


class InputShapeError(InputError):
    """The given batch / input shape does not fit the model's input (a scenario names the
    ``input_shape`` field for it; every other import error is the ``model``'s)."""


class _NodeError(ValueError):
    """What is wrong with one node (the caller adds the file, the node and its op)."""


@dataclass(frozen=True)
class ImportedModel:
    """An imported ONNX model: the IR graph and its weights (float32, by tensor name)."""

    graph: Graph
    params: Mapping[str, np.ndarray]
    onnx_input: str
    onnx_output: str


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise InputError(f"reading ONNX models needs the onnx package: {ONNX_PIP_HINT}") from None
    return onnx


def import_onnx(
    path: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    batch: int = 1,
    name: str | None = None,
) -> ImportedModel:
    """The ONNX model at ``path`` as an IR graph with its weights.

    ``input_shape`` is the input's shape without the batch dimension (it fixes every dynamic
    dimension; None: all but the first must be static); ``batch`` fixes the first one.
    The graph's ``weights`` names the file and the sha256 of the bytes read
    (:class:`~aegis_core.graph.ir.WeightsRef` ``"onnx"``). A shape that does not fit the
    model's input is an :class:`InputShapeError`.
    """
    onnx = _onnx()
    data = read_user_bytes(path, "ONNX model", ONNX_FILE_LIMIT)
    model = _load(onnx, path, data)
    fixed = _fix_input(model, path, input_shape, batch)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError and plain RuntimeErrors
        node, text = _onnx_message(model, exc)
        at = f"{node}: " if node else ""
        raise InputError(f"{show_path(path)}: ONNX shape inference failed: {at}{text}") from None
    builder = _Builder(path, model, fixed)
    for index, node in enumerate(model.graph.node):
        builder.node(index, node)
    imported = builder.finish(name or Path(str(path)).stem, batch, tuple(fixed[1:]))
    ref = WeightsRef("onnx", str(Path(path).absolute()), hashlib.sha256(data).hexdigest())
    return dataclasses.replace(imported, graph=dataclasses.replace(imported.graph, weights=ref))


def _load(onnx: Any, path: str | Path, data: bytes) -> Any:
    where = show_path(path)
    model = None
    try:
        model = onnx.load_model_from_string(data)
        _refuse_external(onnx, where, model)  # before the checker, which looks for the file
        onnx.checker.check_model(model)
    except InputError:
        raise
    except Exception as exc:  # DecodeError, ValidationError: the file is not a valid model
        node, text = _onnx_message(model, exc)
        at = f"; at {node}" if node else ""
        raise InputError(f"{where}: not a valid ONNX model: {text}{at}") from None
    return model


def _refuse_external(onnx: Any, where: str, model: Any) -> None:
    """External data (``data_location: EXTERNAL``) is not read: refused, naming the tensor."""
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise InputError(
                f"{where}: initializer {quote(init.name)} keeps its data in an external "
                "file, which is not supported yet (save the model with its weights inside)"
            )


_INFERENCE_NODE = re.compile(r"\(op_type:(\w+)(?:, node name: (.*?))?\): ")
_CHECKER_NODE = re.compile(r"Name: (.*?) ?OpType: (\w+)", re.IGNORECASE)
_TAGS = re.compile(r"\[\w+Error\] ")


def _onnx_message(model: Any, exc: Exception) -> tuple[str, str]:
    """onnx's error message on one line: whitespace runs (its newlines) as one space, the
    ``==> Context:`` tail in parentheses, ``[...Error]`` tags dropped; and the node it names
    (``"node '<name or #index>' (<op>)"``; empty when it names none). Shape inference says
    ``(op_type:X, node name: Y): ``, the checker ``Name: Y OpType: X``."""
    text = " ".join(str(exc).split())
    main, _, context = (p.strip() for p in text.partition("==> Context:"))
    found = _INFERENCE_NODE.search(main)
    if found is not None:
        op, name = found.group(1), found.group(2) or ""
        main = main[found.end() :]
    else:
        checker = _CHECKER_NODE.search(text)
        op, name = (checker.group(2), checker.group(1)) if checker else ("", "")
    main = _TAGS.sub("", main).removeprefix("Inference error(s): ").strip()
    text = f"{main} ({context})" if context else main
    if not op or name:
        return (f"node {quote(name)} ({op})" if op else ""), text
    nodes = list(model.graph.node) if model is not None else []
    hits = [i for i, n in enumerate(nodes) if n.op_type == op and not n.name]
    return (f"node '#{hits[0]}' ({op})" if len(hits) == 1 else f"an unnamed {op} node"), text


def _fix_input(
    model: Any, path: str | Path, input_shape: Sequence[int] | None, batch: int
) -> tuple[int, ...]:
    """Set the one graph input's dimensions to ``(batch, *input_shape)``; return them.
    Only a missing or mismatched dimension is an :class:`InputShapeError` (the
    ``input_shape`` field's fault); a model with the wrong inputs is a plain InputError."""
    where = show_path(path)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise InputError(
            f"{where}: a model needs exactly one input and one output, this one has "
            f"{len(inputs)} and {len(model.graph.output)}"
        )
    vi = inputs[0]
    ttype = vi.type.tensor_type
    if ttype.elem_type != _FLOAT:
        raise InputError(f"{where}: input {quote(vi.name)} must be float32")
    dims = ttype.shape.dim
    if not ttype.HasField("shape") or len(dims) == 0:
        kind = "a scalar (rank 0)" if ttype.HasField("shape") else "no shape"
        raise InputError(
            f"{where}: input {quote(vi.name)} has {kind}: only inputs with a batch dimension "
            "(rank >= 1) are supported"
        )
    static = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    given = [batch, *input_shape] if input_shape is not None else [batch, *static[1:]]
    want = [
        w
        for w in given
        if isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= MAX_GRAPH_BYTES
    ]
    if len(want) != len(given) or len(want) != len(static):
        raise InputShapeError(
            f"{where}: input {quote(vi.name)} has shape {_dims(dims)}: give input_shape with "
            f"{len(static) - 1} sizes fixing every dimension after the batch"
        )
    for i, (have, w) in enumerate(zip(static, want, strict=True)):
        if have is not None and have != w:
            what = "batch" if i == 0 else f"input_shape[{i - 1}]"
            raise InputShapeError(
                f"{where}: input {quote(vi.name)} has static dimension {i} = {have}, "
                f"but {what} is {w}"
            )
        dims[i].dim_value = w  # clears dim_param (a oneof)
    return tuple(want)


def _dims(dims: Any) -> str:
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else "?" for d in dims) + "]"


@dataclass(frozen=True)
class _Val:
    """An activation: the IR tensor holding it and the (logical) shape ONNX gives it."""

    ir: str
    shape: tuple[int, ...]


@dataclass
class _Builder:
    path: str | Path
    model: Any
    fixed: tuple[int, ...]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    vals: dict[str, _Val] = field(default_factory=dict)
    tensors: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    ops: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    producer: dict[str, int] = field(default_factory=dict)
    views: dict[tuple[str, tuple[int, ...]], str] = field(default_factory=dict)
    uses: Counter[str] = field(default_factory=Counter)
    origin: dict[str, str] = field(default_factory=dict)
    op_names: set[str] = field(default_factory=set)
    inferred: dict[str, tuple[int | None, ...]] = field(default_factory=dict)
    opset: int = 1
    label: str = ""

    def __post_init__(self) -> None:
        from onnx import numpy_helper

        g = self.model.graph
        for init in g.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        self.input = next(i.name for i in g.input if i.name not in self.consts)
        self.tensors[self.input] = (self.fixed, "input")
        self.vals[self.input] = _Val(self.input, self.fixed)
        for node in g.node:
            self.uses.update(i for i in node.input if i)
        self.uses.update(o.name for o in g.output)
        for vi in [*g.value_info, *g.output]:
            dims = vi.type.tensor_type.shape.dim
            self.inferred[vi.name] = tuple(
                int(d.dim_value) if d.HasField("dim_value") else None for d in dims
            )
        self.opset = max(
            (o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")),
            default=1,
        )

    # --- the walk --------------------------------------------------------------------------

    def node(self, index: int, node: Any) -> None:
        self.label = node.name or f"#{index}"
        try:
            self._node(node)
        except _NodeError as exc:
            raise InputError(
                f"{show_path(self.path)}: node {quote(self.label)} ({node.op_type}): {exc}"
            ) from None
        except _ShapeError as exc:
            raise InputError(
                f"{show_path(self.path)}: node {quote(self.label)} ({node.op_type}): "
                f"shapes the graph IR cannot take: {exc}"
            ) from None
        except (ValueError, TypeError, IndexError, KeyError, ArithmeticError) as exc:
            raise InputError(  # e.g. a constant NumPy cannot broadcast: still one line
                f"{show_path(self.path)}: node {quote(self.label)} ({node.op_type}): "
                f"unsupported form: {type(exc).__name__}: {exc}"
            ) from None

    def _node(self, node: Any) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise _NodeError(f"unsupported operator domain {quote(node.domain)}")
        _refuse_never_folded(node)
        ins = [i for i in node.input if i]
        mapper = _MAPPERS.get(node.op_type)
        if node.op_type in ("Shape", "Size") and ins and ins[0] in self.vals:
            self.consts[node.output[0]] = _shape_of(node, self.vals[ins[0]].shape)
        elif node.op_type in _FOLDABLE and all(i in self.consts for i in ins):
            self._fold(node, {i: self.consts[i] for i in ins})
        elif mapper is not None:
            mapper(self, node)  # on constants: the mapper's own refusal ("an activation")
        elif all(i in self.consts for i in ins):
            raise _NodeError(
                "unsupported operator (on constants only shape and constant arithmetic "
                "operators are evaluated at import time)"
            )
        else:
            raise _NodeError("unsupported operator")

    def _fold(self, node: Any, feeds: dict[str, np.ndarray]) -> None:
        from onnx.reference import ReferenceEvaluator

        size = _fold_size(node, [self.consts[i] for i in node.input if i])
        if size is not None and 8 * size > FOLD_LIMIT:
            raise _NodeError(f"folding {quote(node.output[0])} exceeds {FOLD_LIMIT} bytes")
        for oname in node.output:
            shape = self.inferred.get(oname)
            if shape is None or None in shape:
                if node.op_type in _GROWING:
                    raise _NodeError(f"cannot bound the size of {quote(oname)} before folding")
            elif 8 * math.prod(int(d or 0) for d in shape) > FOLD_LIMIT:
                raise _NodeError(f"folding {quote(oname)} {list(shape)} exceeds {FOLD_LIMIT} bytes")
        _refuse_integer_division_by_zero(node, feeds)
        try:  # quietly: NumPy's RuntimeWarnings (overflow in a Cast, ...) are not printed
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outs = ReferenceEvaluator(node).run(None, feeds)
        except Exception as exc:  # the reference's own error for a bad constant node
            raise _NodeError(
                f"cannot evaluate on constants: {' '.join(str(exc).split())}"
            ) from None
        for oname, value in zip(node.output, outs, strict=False):
            if oname:
                self.consts[oname] = np.asarray(value)
                if self.consts[oname].nbytes > FOLD_LIMIT:
                    raise _NodeError(f"folding {quote(oname)} exceeds {FOLD_LIMIT} bytes")

    # --- helpers for mappers ---------------------------------------------------------------

    def act(self, name: str) -> _Val:
        """The activation ``name`` (a constant or unknown tensor here is unsupported)."""
        if name not in self.vals:
            raise _NodeError(f"input {quote(name)} must be an activation here, not a constant")
        return self.vals[name]

    def const(self, node: Any, i: int, what: str) -> np.ndarray | None:
        """Input ``i`` as a constant (None when absent); an activation there is unsupported."""
        if len(node.input) <= i or not node.input[i]:
            return None
        name = node.input[i]
        if name not in self.consts:
            raise _NodeError(f"{what} ({quote(name)}) must be a constant")
        return self.consts[name]

    def ir(self, val: _Val) -> str:
        """An IR tensor holding ``val`` in its own shape (a ``permute`` copy when a view)."""
        if self.tensors[val.ir][0] == val.shape:
            return val.ir
        key = (val.ir, val.shape)
        if key not in self.views:
            axes = tuple(range(len(val.shape)))
            self.views[key] = self.emit(
                "permute", [val.ir], {"view": val.shape, "axes": axes}, f"{val.ir}:view"
            )
        return self.views[key]

    def weight(self, hint: str, value: np.ndarray) -> str:
        if 4 * value.size > MAX_GRAPH_BYTES:
            raise _NodeError(f"weight {list(value.shape)} exceeds {MAX_GRAPH_BYTES} bytes")
        name = self._fresh(hint)
        array = np.ascontiguousarray(value, dtype=np.float32)
        if array.ndim == 0:
            array = array.reshape(1)
        self.tensors[name] = (tuple(int(d) for d in array.shape), "weight")
        self.params[name] = array
        return name

    def emit(self, fn: str, inputs: list[str], attrs: dict[str, Any], hint: str) -> str:
        """Append the IR op ``fn`` and its output tensor; return that tensor's name."""
        if len(self.ops) >= MAX_OPS:
            raise _NodeError(f"the model needs more than {MAX_OPS} operators")
        shape = _infer(fn, attrs, [self.tensors[i][0] for i in inputs])
        out = self._fresh(hint)
        self.tensors[out] = (shape, "activation")
        self.producer[out] = len(self.ops)
        self.ops.append(
            {
                "name": self._fresh_op(hint),
                "kind": FNS[fn],
                "fn": fn,
                "inputs": inputs,
                "output": out,
                "attrs": {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()},
            }
        )
        return out

    def put(self, onnx_name: str, ir: str, shape: tuple[int, ...] | None = None) -> None:
        """``onnx_name`` is held by the IR tensor ``ir`` (seen with ``shape``: a view)."""
        self.vals[onnx_name] = _Val(ir, self.tensors[ir][0] if shape is None else shape)
        self.origin.setdefault(ir, onnx_name)

    def _fresh(self, hint: str) -> str:
        name, k = hint, 1
        while name in self.tensors:
            k += 1
            name = f"{hint}:{k}"
        return name

    def _fresh_op(self, hint: str) -> str:
        name, k = hint, 1
        while name in self.op_names:
            k += 1
            name = f"{hint}:{k}"
        self.op_names.add(name)
        return name

    # --- the end ---------------------------------------------------------------------------

    def finish(self, name: str, batch: int, input_shape: tuple[int, ...]) -> ImportedModel:
        where = show_path(self.path)
        out_name = self.model.graph.output[0].name
        if out_name not in self.vals or not self.ops:
            raise InputError(f"{where}: output {quote(out_name)} is not computed from the input")
        self.label = out_name
        output = self.ir(self.vals[out_name])
        if output == self.input:
            raise InputError(f"{where}: output {quote(out_name)} is the input itself")
        self._check_inferred()
        doc = {
            "name": name,
            "batch": batch,
            "input_shape": list(input_shape),
            "input": self.input,
            "output": output,
            "tensors": [
                {"name": n, "shape": list(s), "role": r} for n, (s, r) in self.tensors.items()
            ],
            "ops": self.ops,
        }
        try:
            graph = Graph.from_dict(doc)
        except (ValueError, KeyError) as exc:
            raise InputError(f"{where}: the imported graph is not valid: {exc}") from None
        return ImportedModel(graph, MappingProxyType(dict(self.params)), self.input, out_name)

    def _check_inferred(self) -> None:
        """Every activation's shape agrees with ONNX shape inference (where it is static)."""
        for name, inferred in self.inferred.items():
            val = self.vals.get(name)
            if val is not None and None not in inferred and inferred != val.shape:
                raise InputError(
                    f"{show_path(self.path)}: tensor {quote(name)}: imported with shape "
                    f"{list(val.shape)}, ONNX infers {list(inferred)}"
                )


def _refuse_never_folded(node: Any) -> None:
    """Control flow (``If`` / ``Loop`` / ``Scan``, any graph attribute), sequences and random
    operators are refused whatever their inputs: never evaluated at import time."""
    from onnx import AttributeProto

    graphs = (AttributeProto.GRAPH, AttributeProto.GRAPHS)
    op = node.op_type
    if (
        op in _CONTROL_FLOW
        or op.startswith("Sequence")
        or any(a.type in graphs for a in node.attribute)
    ):
        raise _NodeError(
            "unsupported operator: control flow, sequences and optionals are not supported"
        )
    if op in _RANDOM:
        raise _NodeError(
            "unsupported operator: a random operator is not supported (importing it would "
            "freeze one sample into a constant)"
        )


def _refuse_integer_division_by_zero(node: Any, feeds: dict[str, np.ndarray]) -> None:
    """Integer ``Div`` / ``Mod`` by a zero constant: onnxruntime refuses the model, NumPy
    would give 0; refused here too."""
    if node.op_type not in ("Div", "Mod") or len(node.input) < 2 or node.input[1] not in feeds:
        return
    divisor = feeds[node.input[1]]
    if divisor.dtype.kind in "iub" and divisor.size and not np.all(divisor):
        raise _NodeError(f"integer division by zero (divisor {quote(node.input[1])})")


def _fold_size(node: Any, feeds: list[np.ndarray]) -> int | None:
    """The element count of a foldable node's output where its (constant, present) inputs
    alone fix it and it can exceed theirs (a broadcast, a Gather); None otherwise."""
    if node.op_type in _BROADCASTING:
        return math.prod(np.broadcast_shapes(*(v.shape for v in feeds)))
    if node.op_type == "Gather" and len(feeds) == 2 and feeds[0].ndim:
        data, idx = feeds
        dim = data.shape[int(_attrs(node).get("axis", 0)) % data.ndim]
        return data.size // dim * idx.size if dim else 0
    return None


def _shape_of(node: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``Shape`` (with ``start`` / ``end``) or ``Size`` of an activation of ``shape``."""
    if node.op_type == "Size":
        return np.array(math.prod(shape), dtype=np.int64)
    attrs = _only(node, {"start": _any, "end": _any})
    return np.array(shape[attrs.get("start", 0) : attrs.get("end", len(shape))], dtype=np.int64)


# --- attributes ----------------------------------------------------------------------------


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _only(node: Any, allowed: Mapping[str, Callable[[Any], bool]]) -> dict[str, Any]:
    """The node's attributes; one not in ``allowed``, or a value its check refuses, is an
    unsupported attribute."""
    attrs = _attrs(node)
    for key, value in attrs.items():
        check = allowed.get(key)
        if check is None:
            raise _NodeError(f"unsupported attribute {key}")
        if not check(value):
            raise _NodeError(f"unsupported attribute value {key}={quote(_show(value))}")
    return attrs


def _show(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _any(_: Any) -> bool:
    return True


def _zero(v: Any) -> bool:
    return bool(v == 0)


def _unused(b: _Builder, node: Any, first: int) -> None:
    for extra in node.output[first:]:
        if extra and b.uses[extra]:
            raise _NodeError(f"output {quote(extra)} is used, which is not supported")


# --- mappers: node -> IR ops ----------------------------------------------------------------


def _unary(fn: str) -> Callable[[_Builder, Any], None]:
    def mapper(b: _Builder, node: Any) -> None:
        _only(node, {})
        x = b.act(node.input[0])
        b.put(node.output[0], b.emit(fn, [b.ir(x)], {}, node.output[0]))

    return mapper


def _sole_producer(b: _Builder, name: str, x: _Val) -> dict[str, Any] | None:
    """The IR op that computed the activation ``name`` (``x``) when nothing but the node at
    hand reads it and it is not a view: its weights may then be changed in place."""
    if x.ir not in b.producer or b.origin.get(x.ir) != name or b.uses[name] != 1:
        return None
    return b.ops[b.producer[x.ir]] if b.tensors[x.ir][0] == x.shape else None


def _into_bias(b: _Builder, node: Any, x: _Val, c: np.ndarray) -> bool:
    """Add the constant ``c`` to the bias of the ``linear`` / ``conv2d`` computing ``x``
    (MatMul + Add, as exporters write a Linear layer), where valid; True when done."""
    op = _sole_producer(b, node.input[0] if node.input[0] in b.vals else node.input[1], x)
    axis = {"linear": len(x.shape) - 1, "conv2d": 1}.get(op["fn"]) if op is not None else None
    if op is None or axis is None or c.ndim > len(x.shape):
        return False
    full = c.reshape((1,) * (len(x.shape) - c.ndim) + c.shape)
    if any(d != 1 for i, d in enumerate(full.shape) if i != axis):
        return False
    bias = op["inputs"][2]
    b.params[bias] = (b.params[bias] + full.reshape(-1)).astype(np.float32)
    b.put(node.output[0], x.ir, x.shape)
    return True


def _batchnorm(b: _Builder, node: Any) -> None:
    attrs = _only(node, {"epsilon": _any, "momentum": _any, "training_mode": _zero})
    _unused(b, node, 1)
    x = b.act(node.input[0])
    gamma, beta, mean, var = (b.const(node, i, w) for i, w in enumerate(_BN_INPUTS, 1))
    assert gamma is not None and beta is not None and mean is not None and var is not None
    scale = gamma / np.sqrt(var.astype(np.float64) + attrs.get("epsilon", 1e-5))
    shift = beta - mean * scale
    op = _sole_producer(b, node.input[0], x)
    if op is not None and op["fn"] == "conv2d":
        w, bias = b.params[op["inputs"][1]], b.params[op["inputs"][2]]
        b.params[op["inputs"][1]] = (w * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
        b.params[op["inputs"][2]] = (bias * scale + shift).astype(np.float32)
        b.put(node.output[0], x.ir, x.shape)
        return
    if len(x.shape) not in (2, 3, 4):
        raise _NodeError(f"BatchNormalization of a {len(x.shape)}-D input is not supported")
    c = x.shape[1]
    wn = b.weight(f"{node.output[0]}:w", scale.reshape(c, 1, 1, 1))
    bn = b.weight(f"{node.output[0]}:b", shift)
    attrs1 = {"stride": 1, "pad": 0, "groups": c}
    image = _Val(x.ir, (*x.shape, *(1,) * (4 - len(x.shape))))  # [N,C] / [N,C,L] seen 4-D
    out = b.emit("conv2d", [b.ir(image), wn, bn], attrs1, node.output[0])
    b.put(node.output[0], out, x.shape)


_BN_INPUTS = ("scale", "B", "input_mean", "input_var")


def _gemm(b: _Builder, node: Any) -> None:
    attrs = _only(node, {"alpha": _any, "beta": _any, "transA": _zero, "transB": _any})
    x = b.act(node.input[0])
    w = b.const(node, 1, "B")
    assert w is not None
    w = (w.T if attrs.get("transB", 0) else w) * attrs.get("alpha", 1.0)
    c = b.const(node, 2, "C")
    bias = np.zeros(w.shape[1]) if c is None else c * attrs.get("beta", 1.0)
    if bias.size not in (1, w.shape[1]) or bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
        raise _NodeError(f"C of shape {list(bias.shape)} is not a row bias")
    _linear(b, node, x, w, np.broadcast_to(bias.reshape(-1), (w.shape[1],)))


def _linear(b: _Builder, node: Any, x: _Val, w: np.ndarray, bias: np.ndarray) -> None:
    wn, bn = b.weight(f"{node.output[0]}:w", w), b.weight(f"{node.output[0]}:b", bias)
    b.put(node.output[0], b.emit("linear", [b.ir(x), wn, bn], {}, node.output[0]))


def _transpose(b: _Builder, node: Any) -> None:
    attrs = _only(node, {"perm": _any})
    x = b.act(node.input[0])
    perm = tuple(attrs.get("perm", range(len(x.shape) - 1, -1, -1)))
    view = {"view": x.shape, "axes": perm}
    b.put(node.output[0], b.emit("permute", [x.ir], view, node.output[0]))


def _view(b: _Builder, node: Any, shape: Sequence[int]) -> None:
    x = b.act(node.input[0])
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) != math.prod(x.shape) or any(d < 1 for d in shape):
        raise _NodeError(f"cannot view {list(x.shape)} as {list(shape)}")
    b.put(node.output[0], x.ir, shape)


def _reshape(b: _Builder, node: Any) -> None:
    attrs = _only(node, {"allowzero": _zero})
    del attrs
    x = b.act(node.input[0])
    target = b.const(node, 1, "the shape")
    assert target is not None
    dims = [x.shape[i] if d == 0 else int(d) for i, d in enumerate(target.tolist())]
    if dims.count(-1) == 1:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = math.prod(x.shape) // known if known else 0
    _view(b, node, dims)


def _flatten(b: _Builder, node: Any) -> None:
    attrs = _only(node, {"axis": _any})
    x = b.act(node.input[0])
    axis = int(attrs.get("axis", 1))
    axis = axis + len(x.shape) if axis < 0 else axis
    _view(b, node, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


def _axes(b: _Builder, node: Any) -> list[int] | None:
    attrs = _only(node, {"axes": _any})
    if "axes" in attrs:
        return list(attrs["axes"])
    given = b.const(node, 1, "axes")
    return None if given is None else [int(a) for a in given.tolist()]


def _squeeze(b: _Builder, node: Any) -> None:
    x = b.act(node.input[0])
    axes = _axes(b, node)
    rank = len(x.shape)
    drop = (
        {a % rank for a in axes}
        if axes is not None
        else {i for i, d in enumerate(x.shape) if d == 1}
    )
    if any(x.shape[a] != 1 for a in drop):
        raise _NodeError(f"cannot squeeze axes {sorted(drop)} of {list(x.shape)}")
    _view(b, node, [d for i, d in enumerate(x.shape) if i not in drop])


def _unsqueeze(b: _Builder, node: Any) -> None:
    x = b.act(node.input[0])
    axes = _axes(b, node)
    if axes is None:
        raise _NodeError("axes are missing")
    rank = len(x.shape) + len(axes)
    shape = list(x.shape)
    for a in sorted(a % rank for a in axes):
        shape.insert(a, 1)
    _view(b, node, shape)


def _identity(b: _Builder, node: Any) -> None:
    _only(node, {"ratio": _any, "seed": _any})
    if node.op_type == "Dropout":
        _unused(b, node, 1)
        training = b.const(node, 2, "training_mode")
        if training is not None and bool(training):
            raise _NodeError("training_mode=1 is not supported (inference only)")
    x = b.act(node.input[0])
    _view(b, node, x.shape)


# --- elem ops: broadcasting binaries, unaries, reductions, shape ops -------------------------


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _axis_of(axis: int, rank: int) -> int:
    """ONNX's ``axis`` (negative: from the end) as an index into ``rank`` axes."""
    a = int(axis) + rank if axis < 0 else int(axis)
    if not 0 <= a < rank:
        raise _NodeError(f"axis {axis} is out of range for rank {rank}")
    return a


def _operand(b: _Builder, node: Any, i: int) -> str:
    """Input ``i`` as an IR tensor: the activation in its own shape, or the constant as a
    weight of its own size (0-d: ``[1]``), which the operator broadcasts."""
    name = node.input[i]
    if name in b.vals:
        return b.ir(b.vals[name])
    return b.weight(f"{node.output[0]}:c", b.consts[name])


def _emit_as(b: _Builder, node: Any, fn: str, inputs: list[str], attrs: dict[str, Any]) -> None:
    b.put(node.output[0], b.emit(fn, inputs, attrs, node.output[0]))


_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow"}


def _binary(b: _Builder, node: Any) -> None:
    """Add / Sub / Mul / Div / Pow with NumPy broadcasting; either side an activation or a
    constant (kept at its own size). A constant added to (or subtracted from) the output of a
    ``linear`` / ``conv2d`` goes into its bias where valid; ``x ** c`` with a scalar ``c`` of
    2, 0.5 or 1 is ``mul(x, x)``, ``sqrt(x)`` or nothing."""
    _only(node, {})
    fn = _BINARY[node.op_type]
    a, c = node.input[0], node.input[1]
    if a in b.vals and c in b.consts:
        x, k = b.vals[a], b.consts[c].astype(np.float64)
        if fn == "pow" and _pow_by(b, node, x, k):
            return
        if fn in ("add", "sub") and _into_bias(b, node, x, k if fn == "add" else -k):
            return
    elif (
        a in b.consts
        and fn == "add"
        and _into_bias(b, node, b.act(c), b.consts[a].astype(np.float64))
    ):
        return
    _emit_as(b, node, fn, [_operand(b, node, 0), _operand(b, node, 1)], {})
    if fn == "add":
        _fuse_layernorm(b, node.output[0])


_LN_FNS = ["reduce_mean", "sub", "mul", "reduce_mean", "add", "sqrt", "div", "mul", "add"]
"""A LayerNorm over the last axis as exporters decompose it, in IR ops: ``mu = mean(x)``,
``d = x - mu``, ``d * d`` (Pow 2), its mean, ``+ eps``, ``sqrt``, ``d / sd``, ``* gamma``,
``+ beta``."""


def _weight_beside(b: _Builder, op: dict[str, Any], act: str) -> tuple[str, np.ndarray] | None:
    """The weight operand (name, value) of the binary IR op ``op`` whose other one is
    ``act``; None when there is none."""
    ins = op["inputs"]
    if len(ins) != 2 or act not in ins:
        return None
    w = ins[1] if ins[0] == act else ins[0]
    return (w, b.params[w]) if w in b.params else None


def _fuse_layernorm(b: _Builder, name: str) -> None:
    """Replace the last nine IR ops by one ``layernorm`` when they are :data:`_LN_FNS` over
    one input, gamma and beta fit the last axis, eps is one positive number, and nothing
    but the pattern's own nodes reads its intermediate tensors (checked against the ONNX
    graph: every use of their ONNX names is a use inside the pattern)."""
    ops = b.ops[-9:]
    if [o["fn"] for o in ops] != _LN_FNS:
        return
    t = [o["output"] for o in ops]
    x = ops[0]["inputs"][0]
    shape = b.tensors[x][0]
    red = {"axes": [len(shape) - 1], "keepdims": 1}
    wiring = [[x], [x, t[0]], [t[1], t[1]], [t[2]], None, [t[4]], [t[1], t[5]]]
    if any(w is not None and o["inputs"] != w for o, w in zip(ops, wiring, strict=False)):
        return
    if ops[0]["attrs"] != red or ops[3]["attrs"] != red:
        return
    eps, gamma, beta = (_weight_beside(b, ops[i], t[i - 1]) for i in (4, 7, 8))
    d = shape[-1]
    if eps is None or gamma is None or beta is None or eps[1].size != 1 or eps[1].item() <= 0:
        return
    if not all(_fits_last(w.shape, shape) for _, w in (gamma, beta)):
        return
    if any(b.tensors[t[i]][0] != shape for i in (1, 2, 6, 7, 8)) or not _private(b, t):
        return
    for o in ops:
        del b.tensors[o["output"]], b.producer[o["output"]]
        b.op_names.discard(o["name"])
    for n in [n for n, v in b.vals.items() if v.ir in t]:
        del b.vals[n]
    for w, _ in (eps, gamma, beta):
        del b.tensors[w], b.params[w]
    del b.ops[-9:]
    gn = b.weight(f"{name}:gamma", np.broadcast_to(gamma[1].reshape(-1), (d,)))
    bn = b.weight(f"{name}:beta", np.broadcast_to(beta[1].reshape(-1), (d,)))
    out = b.emit("layernorm", [x, gn, bn], {"eps": float(eps[1].item())}, name)
    b.put(name, out)


def _fits_last(w: tuple[int, ...], x: tuple[int, ...]) -> bool:
    """A weight of shape ``w`` broadcasts along ``x``'s last axis only."""
    return len(w) <= len(x) and math.prod(w[:-1]) == 1 and w[-1] in (1, x[-1])


def _private(b: _Builder, t: list[str]) -> bool:
    """The pattern's intermediate tensors ``t[:-1]`` are each one ONNX value (no view of
    them) that only the pattern's own nodes read."""
    if any(i not in b.origin for i in t):
        return False
    names = [b.origin[i] for i in t]
    alias = Counter(v.ir for v in b.vals.values())
    producers = {o: n for n in b.model.graph.node for o in n.output if o in names}
    if any(alias[i] != 1 for i in t[:-1]) or len(producers) != len(t):
        return False
    reads = Counter(i for n in producers.values() for i in n.input)
    return all(b.uses[n] == reads[n] for n in names[:-1])


def _pow_by(b: _Builder, node: Any, x: _Val, k: np.ndarray) -> bool:
    if k.size != 1 or np.broadcast_shapes(x.shape, k.shape) != x.shape:
        return False
    e = float(k.reshape(-1)[0])
    if e == 1.0:
        _view(b, node, x.shape)
    elif e in (2.0, 0.5):
        xi = b.ir(x)
        _emit_as(b, node, "mul" if e == 2.0 else "sqrt", [xi, xi] if e == 2.0 else [xi], {})
    return e in (1.0, 2.0, 0.5)


def _neg(b: _Builder, node: Any) -> None:
    _only(node, {})
    minus = b.weight(f"{node.output[0]}:c", np.array([-1.0]))
    _emit_as(b, node, "mul", [b.ir(b.act(node.input[0])), minus], {})


def _reciprocal(b: _Builder, node: Any) -> None:
    _only(node, {})
    one = b.weight(f"{node.output[0]}:c", np.array([1.0]))
    _emit_as(b, node, "div", [one, b.ir(b.act(node.input[0]))], {})


def _hardsigmoid(b: _Builder, node: Any) -> None:
    attrs = _only(node, {"alpha": _finite, "beta": _finite})
    ab = {"alpha": float(attrs.get("alpha", 0.2)), "beta": float(attrs.get("beta", 0.5))}
    _emit_as(b, node, "hardsigmoid", [b.ir(b.act(node.input[0]))], ab)


def _bound(b: _Builder, node: Any, i: int, attrs: Mapping[str, Any], key: str) -> float:
    given = b.const(node, i, key)
    if given is None:
        return float(attrs.get(key, -math.inf if key == "min" else math.inf))
    if given.size != 1 or math.isnan(float(given.reshape(-1)[0])):
        raise _NodeError(f"{key} must be one number, got {given.tolist()!r:.60}")
    return float(given.reshape(-1)[0])


def _clip(b: _Builder, node: Any) -> None:
    """Clip(0, 6) is ``relu6``, Clip(0, inf) ``relu``, any other ``clip`` (an infinite bound
    is none)."""
    attrs = _only(node, {"min": _any, "max": _any})
    low, high = _bound(b, node, 1, attrs, "min"), _bound(b, node, 2, attrs, "max")
    x = b.ir(b.act(node.input[0]))
    fn = {(0.0, 6.0): "relu6", (0.0, math.inf): "relu"}.get((low, high))
    if fn is not None:
        _emit_as(b, node, fn, [x], {})
        return
    bounds = {k: v if math.isfinite(v) else None for k, v in (("min", low), ("max", high))}
    _emit_as(b, node, "clip", [x], bounds)


def _gelu(b: _Builder, node: Any) -> None:
    """Gelu: ``approximate='tanh'`` is the IR's default ``gelu``, ``'none'`` (ONNX's default)
    the erf form."""
    form = _show(_only(node, {"approximate": _any}).get("approximate", b"none"))
    if form not in ("tanh", "none"):
        raise _NodeError(f"unsupported attribute value approximate={quote(form)}")
    attrs = {"approximate": "none"} if form == "none" else {}
    _emit_as(b, node, "gelu", [b.ir(b.act(node.input[0]))], attrs)


def _matmul(b: _Builder, node: Any) -> None:
    """By a 2-D constant: ``linear`` (zero bias); otherwise ``matmul`` with broadcast batch
    dims, either side a constant (a batched weight). 1-D operands are not supported."""
    _only(node, {})
    a, c = node.input[0], node.input[1]
    if a in b.vals and c in b.consts and b.consts[c].ndim == 2:
        w = b.consts[c]
        _linear(b, node, b.vals[a], w, np.zeros(w.shape[1]))
        return
    shapes = [b.vals[n].shape if n in b.vals else b.consts[n].shape for n in (a, c)]
    if min(len(s) for s in shapes) < 2:
        raise _NodeError(f"MatMul of {list(shapes[0])} and {list(shapes[1])}: 1-D operands")
    _emit_as(b, node, "matmul", [_operand(b, node, 0), _operand(b, node, 1)], {})


def _softmax(b: _Builder, node: Any) -> None:
    """Softmax on any axis. Before opset 13 ONNX coerces the input to 2-D at ``axis``
    (default 1) and normalises over everything after it: mapped only where that is one axis
    (all the others after ``axis`` have size 1)."""
    attrs = _only(node, {"axis": _any})
    x = b.act(node.input[0])
    rank = len(x.shape)
    axis = _axis_of(attrs.get("axis", -1 if b.opset >= 13 else 1), rank)
    if b.opset < 13:
        inner = [i for i in range(axis, rank) if x.shape[i] != 1] or [rank - 1]
        if len(inner) > 1:
            raise _NodeError(
                f"only the last axis (or one axis with size-1 axes after it) is supported "
                f"before opset 13, which normalises {list(x.shape)} over every axis from "
                f"axis={attrs.get('axis', 1)} on"
            )
        axis = inner[0]
    _emit_as(b, node, "softmax", [b.ir(x)], {} if axis == rank - 1 else {"axis": axis})


def _layernorm(b: _Builder, node: Any) -> None:
    """Over the axes from ``axis`` to the end: ``layernorm`` of the input seen as
    ``[..., prod(x.shape[axis:])]`` (a copy when ``axis`` is not the last)."""
    attrs = _only(node, {"axis": _any, "epsilon": _any, "stash_type": _any})
    _unused(b, node, 1)
    x = b.act(node.input[0])
    axis = _axis_of(attrs.get("axis", -1), len(x.shape))
    inner = x.shape[axis:]
    n = math.prod(inner)
    gamma = b.const(node, 1, "scale")
    assert gamma is not None
    beta = b.const(node, 2, "B")
    beta = np.zeros(inner) if beta is None else beta
    gn = b.weight(f"{node.output[0]}:gamma", np.broadcast_to(gamma, inner).reshape(n))
    bn = b.weight(f"{node.output[0]}:beta", np.broadcast_to(beta, inner).reshape(n))
    flat = _Val(x.ir, (*x.shape[:axis], n))
    eps = {"eps": float(attrs.get("epsilon", 1e-5))}
    out = b.emit("layernorm", [b.ir(flat), gn, bn], eps, node.output[0])
    b.put(node.output[0], out, x.shape)


def _reduce_mean(b: _Builder, node: Any) -> None:
    """Axes from the attribute (opset < 18) or the second input (18); none: every axis, or
    nothing with ``noop_with_empty_axes``. A mean over every axis without keepdims (a scalar)
    is not supported."""
    attrs = _only(node, {"axes": _any, "keepdims": _any, "noop_with_empty_axes": _any})
    x = b.act(node.input[0])
    rank = len(x.shape)
    given = b.const(node, 1, "axes")
    axes = list(attrs.get("axes", [] if given is None else given.reshape(-1).tolist()))
    if not axes and attrs.get("noop_with_empty_axes", 0):
        _view(b, node, x.shape)
        return
    norm = sorted({_axis_of(a, rank) for a in axes} if axes else range(rank))
    if len(norm) != len(axes or norm):
        raise _NodeError(f"axes {axes} repeat an axis")
    keep = int(attrs.get("keepdims", 1))
    if keep not in (0, 1):
        raise _NodeError(f"unsupported attribute value keepdims={keep}")
    _emit_as(b, node, "reduce_mean", [b.ir(x)], {"axes": tuple(norm), "keepdims": keep})


def _concat(b: _Builder, node: Any) -> None:
    """Activations and constants (weights) joined; empty constants dropped."""
    attrs = _only(node, {"axis": _any})
    picks = [i for i, n in enumerate(node.input) if n and (n in b.vals or b.consts[n].size)]
    first = node.input[picks[0]]
    rank = len(b.vals[first].shape if first in b.vals else b.consts[first].shape)
    axis = _axis_of(attrs["axis"], rank)
    if len(picks) == 1:
        _view(b, node, b.act(first).shape)
        return
    _emit_as(b, node, "concat", [_operand(b, node, i) for i in picks], {"axis": axis})


def _slice_inputs(b: _Builder, node: Any) -> list[list[int] | None]:
    """``[starts, ends, axes, steps]`` from the attributes (opset < 10) or the inputs."""
    attrs = _only(node, {"starts": _any, "ends": _any, "axes": _any})
    if "starts" in attrs:
        axes = attrs.get("axes")
        return [list(attrs["starts"]), list(attrs["ends"]), axes and list(axes), None]
    got = [b.const(node, i, what) for i, what in enumerate(_SLICE_INPUTS, 1)]
    return [None if v is None else [int(d) for d in v.reshape(-1).tolist()] for v in got]


_SLICE_INPUTS = ("starts", "ends", "axes", "steps")


def _slice_axis(start: int, end: int, step: int, dim: int) -> tuple[int, int]:
    """ONNX's clamping of one axis: ``(begin, size)`` (size 0: empty)."""
    if step == 0:
        raise _NodeError("a step of 0")
    start, end = (v + dim if v < 0 else v for v in (start, end))
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        return start, max(0, -(-(end - start) // step))
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return start, max(0, -(-(start - end) // -step))


def _slice(b: _Builder, node: Any) -> None:
    x = b.act(node.input[0])
    starts, ends, axes, steps = _slice_inputs(b, node)
    assert starts is not None and ends is not None
    rank = len(x.shape)
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise _NodeError("starts, ends, axes and steps differ in length")
    begin, step, size = [0] * rank, [1] * rank, list(x.shape)
    seen: set[int] = set()
    for s0, e0, a0, st in zip(starts, ends, axes, steps, strict=True):
        a = _axis_of(a0, rank)
        if a in seen:
            raise _NodeError(f"axis {a0} is sliced twice")
        seen.add(a)
        begin[a], size[a] = _slice_axis(s0, e0, st, x.shape[a])
        step[a] = st
        if size[a] == 0:
            raise _NodeError(f"the slice of axis {a0} is empty, which is not supported")
    if size == list(x.shape) and all(s == 1 for s in step):
        _view(b, node, x.shape)
        return
    attrs = {"begin": tuple(begin), "step": tuple(step), "size": tuple(size)}
    _emit_as(b, node, "slice", [b.ir(x)], attrs)


def _gather(b: _Builder, node: Any) -> None:
    """Constant indices (any rank; negative from the end) on an activation: ``gather`` of
    the flattened indices, seen with ONNX's output shape."""
    attrs = _only(node, {"axis": _any})
    if node.input[0] not in b.vals:
        raise _NodeError("Gather of a constant by computed indices is not supported")
    x = b.vals[node.input[0]]
    idx = b.const(node, 1, "indices")
    assert idx is not None
    axis = _axis_of(attrs.get("axis", 0), len(x.shape))
    dim = x.shape[axis]
    flat = [int(i) + dim if i < 0 else int(i) for i in idx.reshape(-1).tolist()]
    if not flat or any(not 0 <= i < dim for i in flat):
        raise _NodeError(f"indices {idx.tolist()!r:.60} out of range for a dimension of {dim}")
    scalar = int(idx.ndim == 0)
    attrs1 = {"axis": axis, "indices": tuple(flat), "scalar": scalar}
    out = b.emit("gather", [b.ir(x)], attrs1, node.output[0])
    b.put(node.output[0], out, (*x.shape[:axis], *idx.shape, *x.shape[axis + 1 :]))


def _cast(b: _Builder, node: Any) -> None:
    """Cast of a (float32) activation to float32: nothing; any other target is refused."""
    _only(node, {"to": lambda v: v == _FLOAT, "saturate": _any})
    _view(b, node, b.act(node.input[0]).shape)


def _expand(b: _Builder, node: Any) -> None:
    x = b.act(node.input[0])
    _only(node, {})
    shape = b.const(node, 1, "the shape")
    assert shape is not None
    out = tuple(int(d) for d in np.broadcast_shapes(x.shape, tuple(shape.reshape(-1).tolist())))
    if out == x.shape:
        _view(b, node, x.shape)
        return
    _emit_as(b, node, "expand", [b.ir(x)], {"shape": out})


# --- end elem ops ------------------------------------------------------------------------------


# --- spatial ops: Conv, ConvTranspose, pools, Resize / Upsample ----------------------------


_PADDING = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def _auto_pad(v: Any) -> bool:
    return _show(v) in _PADDING


def _flag(v: Any) -> bool:
    return v in (0, 1)


def _geometry(attrs: Mapping[str, Any], k: Sequence[int], size: Sequence[int]) -> dict[str, Any]:
    """The IR window attributes (``stride``, ``dilation``, ``pad`` as ``[top, left, bottom,
    right]``) of a 2-D Conv / pool node on an input of spatial ``size``; ``auto_pad`` SAME_*
    becomes explicit pads (output ``ceil(size / stride)``; the odd pad at the end for
    SAME_UPPER, at the start for SAME_LOWER)."""
    strides = [int(v) for v in attrs.get("strides", [1, 1])]
    dilations = [int(v) for v in attrs.get("dilations", [1, 1])]
    pads = [int(v) for v in attrs.get("pads", [0, 0, 0, 0])]
    if len(k) != 2 or len(size) != 2 or len(strides) != 2 or len(dilations) != 2:
        raise _NodeError(f"only 2-D windows are supported, kernel {list(k)}")
    if len(pads) != 4 or min(pads) < 0 or min(strides) < 1 or min(dilations) < 1:
        raise _NodeError(f"strides {strides}, dilations {dilations}, pads {pads} are not valid")
    mode = _show(attrs.get("auto_pad", "NOTSET"))
    if mode != "NOTSET" and any(pads):
        raise _NodeError(f"auto_pad {mode} with explicit pads {pads}")
    if mode.startswith("SAME") and max(dilations) > 1:
        raise _NodeError(
            f"auto_pad {mode} with dilations {dilations}: onnxruntime pads a pool as if "
            "undilated (the ONNX spec: dilated) and refuses a Conv; give explicit pads"
        )
    if mode.startswith("SAME"):
        for i in range(2):
            ext = dilations[i] * (k[i] - 1) + 1
            total = max((-(-size[i] // strides[i]) - 1) * strides[i] + ext - size[i], 0)
            small = total // 2
            pads[i], pads[i + 2] = (
                (small, total - small)
                if mode == "SAME_UPPER"
                else (
                    total - small,
                    small,
                )
            )
    return {"stride": strides, "dilation": dilations, "pad": pads}


def _compact(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Window attributes in the IR's short form where it says the same: one int for equal
    values, defaults (dilation 1, output_padding 0, ceil_mode 0) left out."""
    short: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, list) and len(set(value)) == 1:
            value = value[0]
        if (key, value) not in (("dilation", 1), ("output_padding", 0), ("ceil_mode", 0)):
            short[key] = value
    return short


_CONV_ATTRS: dict[str, Callable[[Any], bool]] = {
    "auto_pad": _auto_pad,
    "dilations": _any,
    "group": _any,
    "kernel_shape": _any,
    "pads": _any,
    "strides": _any,
}


def _conv_inputs(
    b: _Builder, node: Any, extra: Mapping[str, Callable[[Any], bool]], transposed: bool
) -> tuple[dict[str, Any], _Val, np.ndarray, np.ndarray]:
    """A Conv's or ConvTranspose's attributes, input, 4-D weight and bias (zeros when left
    out, one per output channel: ``w[0]``, or ``w[1] * group`` when ``transposed``), checked
    alike."""
    attrs = _only(node, {**_CONV_ATTRS, **extra})
    x = b.act(node.input[0])
    w = b.const(node, 1, "the weight")
    assert w is not None  # the checker requires the input
    if w.ndim != 4 or len(x.shape) != 4:
        raise _NodeError(f"only 2-D convolutions are supported, weight shape {list(w.shape)}")
    k = list(attrs.get("kernel_shape", w.shape[2:]))
    if k != list(w.shape[2:]):
        raise _NodeError(f"kernel_shape {k} does not match the weight {list(w.shape)}")
    bias = b.const(node, 2, "the bias")
    n = w.shape[1] * int(attrs.get("group", 1)) if transposed else w.shape[0]
    return attrs, x, w, np.zeros(n, np.float32) if bias is None else bias


def _emit_conv(b: _Builder, node: Any, fn: str, x: _Val, w: Any, bias: Any, conv: Any) -> None:
    wn, bn = b.weight(f"{node.output[0]}:w", w), b.weight(f"{node.output[0]}:b", bias)
    b.put(node.output[0], b.emit(fn, [b.ir(x), wn, bn], _compact(conv), node.output[0]))


def _conv(b: _Builder, node: Any) -> None:
    attrs, x, w, bias = _conv_inputs(b, node, {}, transposed=False)
    conv = {**_geometry(attrs, w.shape[2:], x.shape[2:]), "groups": int(attrs.get("group", 1))}
    _emit_conv(b, node, "conv2d", x, w, bias, conv)


def _conv_transpose(b: _Builder, node: Any) -> None:
    extra = {"output_padding": _any, "output_shape": _any}
    attrs, x, w, bias = _conv_inputs(b, node, extra, transposed=True)
    groups = int(attrs.get("group", 1))
    conv = {**_transposed_geometry(attrs, w.shape[2:], x.shape[2:]), "groups": groups}
    _emit_conv(b, node, "conv_transpose2d", x, w, bias, conv)


def _transposed_geometry(
    attrs: Mapping[str, Any], k: Sequence[int], size: Sequence[int]
) -> dict[str, Any]:
    """ConvTranspose's IR attributes. ``output_shape`` (or ``auto_pad`` SAME_*: ``size *
    stride``) fixes the output size: the total padding is the rest of ``stride * (size - 1)
    + output_padding + extent``, its odd half at the end for SAME_UPPER and at the start
    otherwise, as onnxruntime pads."""
    mode = _show(attrs.get("auto_pad", "NOTSET"))
    base = {**attrs, "auto_pad": "NOTSET" if mode.startswith("SAME") else mode}
    geo = _geometry({key: v for key, v in base.items() if key != "output_shape"}, k, size)
    geo["output_padding"] = [int(v) for v in attrs.get("output_padding", [0, 0])]
    if len(geo["output_padding"]) != 2 or min(geo["output_padding"]) < 0:
        raise _NodeError(f"output_padding {geo['output_padding']} is not valid")
    shape = attrs.get("output_shape")
    if shape is None and mode.startswith("SAME"):
        shape = [size[i] * geo["stride"][i] for i in range(2)]
    if shape is not None:
        shape = [int(v) for v in shape][-2:]
        if any(geo["pad"]) or len(shape) != 2:
            raise _NodeError(f"output_shape {shape} with explicit pads {geo['pad']}")
        for i in range(2):
            s, d, op = geo["stride"][i], geo["dilation"][i], geo["output_padding"][i]
            total = s * (size[i] - 1) + op + d * (k[i] - 1) + 1 - shape[i]
            if total < 0:
                raise _NodeError(f"output_shape {shape} is larger than the convolution gives")
            big = total - total // 2
            first, last = (total // 2, big) if mode == "SAME_UPPER" else (big, total // 2)
            geo["pad"][i], geo["pad"][i + 2] = first, last
    return geo


def _pool_attrs(b: _Builder, node: Any, extra: Mapping[str, Callable[[Any], bool]]) -> Any:
    """The checked attributes of a MaxPool / AveragePool node, its input, and the IR
    window attributes (``k`` and ``ceil_mode`` included)."""
    attrs = _only(
        node,
        {
            "auto_pad": _auto_pad,
            "ceil_mode": _flag,
            "dilations": _any,
            "kernel_shape": _any,
            "pads": _any,
            "strides": _any,
            **extra,
        },
    )
    x = b.act(node.input[0])
    k = [int(v) for v in attrs["kernel_shape"]]
    if len(x.shape) != 4 or len(k) != 2:
        raise _NodeError(f"only 2-D pooling is supported, kernel_shape {k}")
    pool = _geometry(attrs, k, x.shape[2:])
    pool.update(k=k, ceil_mode=int(attrs.get("ceil_mode", 0)))
    return attrs, x, pool


def _maxpool(b: _Builder, node: Any) -> None:
    _, x, pool = _pool_attrs(b, node, {"storage_order": _any})
    _unused(b, node, 1)  # Indices (the only output storage_order changes)
    _pool_emit(b, node, "maxpool", x, pool)


def _avgpool(b: _Builder, node: Any) -> None:
    attrs, x, pool = _pool_attrs(b, node, {"count_include_pad": _flag})
    pool["count_include_pad"] = int(attrs.get("count_include_pad", 0))
    _pool_emit(b, node, "avgpool", x, pool)


def _pool_emit(b: _Builder, node: Any, fn: str, x: _Val, pool: dict[str, Any]) -> None:
    """Emit the pool; with ceil_mode, refuse the case where onnxruntime drops a last window
    that would start in the end padding but ONNX shape inference (1.23) keeps it."""
    out = b.emit(fn, [b.ir(x)], _compact(pool), node.output[0])
    inferred, shape = b.inferred.get(node.output[0]), b.tensors[out][0]
    if pool["ceil_mode"] and inferred and None not in inferred and inferred != shape:
        raise _NodeError(
            f"ceil_mode=1 with a last window starting in the padding: onnxruntime gives "
            f"{list(shape)}, ONNX shape inference {list(inferred)}; not supported"
        )
    b.put(node.output[0], out)


def _global_pool(fn: str) -> Callable[[_Builder, Any], None]:
    """GlobalAveragePool / GlobalMaxPool: the IR's ``[N, C]`` result, seen as ``[N, C, 1, 1]``."""

    def mapper(b: _Builder, node: Any) -> None:
        _only(node, {})
        x = b.act(node.input[0])
        out = b.emit(fn, [b.ir(x)], {}, node.output[0])
        b.put(node.output[0], out, (*x.shape[:2], 1, 1))

    return mapper


_COORDS = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _resize(b: _Builder, node: Any) -> None:
    """Resize (opset 10, 11, 13, 18, 19): nearest or (bi)linear over H and W of an NCHW
    input, from constant scales or sizes, as two interpolation matrices (weights)."""
    attrs = _only(
        node,
        {
            "mode": lambda v: _show(v) in ("nearest", "linear"),
            "coordinate_transformation_mode": lambda v: _show(v) in _COORDS,
            "nearest_mode": lambda v: _show(v) in _NEAREST,
            "exclude_outside": _zero,
            "cubic_coeff_a": _any,
            "extrapolation_value": _any,
            "antialias": _zero,
            "keep_aspect_ratio_policy": lambda v: _show(v) == "stretch",
            "axes": _any,
        },
    )
    x = b.act(node.input[0])
    if b.opset < 11:  # Resize-10: (X, scales), asymmetric coordinates
        scales, sizes = b.const(node, 1, "scales"), None
        coord, nearest = "asymmetric", "simple"
    else:
        b.const(node, 1, "roi")  # only tf_crop_and_resize reads it: a constant, unused
        scales, sizes = b.const(node, 2, "scales"), b.const(node, 3, "sizes")
        coord = _show(attrs.get("coordinate_transformation_mode", "half_pixel"))
        nearest = _show(attrs.get("nearest_mode", "round_prefer_floor"))
    axes = attrs.get("axes")
    _resize_emit(b, node, x, _show(attrs.get("mode", "nearest")), coord, nearest,
                 _per_axis(x, scales, sizes, axes))  # fmt: skip


def _upsample(b: _Builder, node: Any) -> None:
    """Upsample (opset 7 attribute ``scales``, opset 9 input): asymmetric coordinates."""
    attrs = _only(node, {"mode": lambda v: _show(v) in ("nearest", "linear"), "scales": _any})
    x = b.act(node.input[0])
    given = attrs.get("scales")
    scales = np.asarray(given, np.float32) if given is not None else b.const(node, 1, "scales")
    if scales is not None and scales.size and float(scales.min()) < 1:
        raise _NodeError(f"scales {scales.tolist()} below 1 (the ONNX spec and onnxruntime: >= 1)")
    mode = _show(attrs.get("mode", "nearest"))
    _resize_emit(b, node, x, mode, "asymmetric", "simple", _per_axis(x, scales, None, None))


def _per_axis(
    x: _Val, scales: np.ndarray | None, sizes: np.ndarray | None, axes: Sequence[int] | None
) -> list[tuple[int, float]]:
    """``(output size, scale)`` for H and W; N and C must keep their size."""
    rank = len(x.shape)
    if rank != 4:
        raise _NodeError(f"only 4-D NCHW inputs can be resized, got {list(x.shape)}")
    scales = None if scales is None or scales.size == 0 else scales
    sizes = None if sizes is None or sizes.size == 0 else sizes
    if (scales is None) == (sizes is None):
        raise _NodeError("exactly one of scales and sizes must be given")
    picked = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    given = (scales if scales is not None else sizes).reshape(-1).tolist()  # type: ignore[union-attr]
    if len(given) != len(picked) or len(set(picked)) != len(picked):
        raise _NodeError(f"{len(given)} scales/sizes for axes {picked}")
    full: list[tuple[int, float]] = []
    for axis, size in enumerate(x.shape):
        value = given[picked.index(axis)] if axis in picked else None
        if value is None:
            out, scale = size, 1.0
        elif scales is not None:
            scale = float(np.float32(value))
            out = _scaled_size(axis, size, scale)
        else:
            out, scale = int(value), float(np.float32(value) / np.float32(size))
        if out < 1 or scale <= 0:
            raise _NodeError(f"resizing axis {axis} of size {size} to {out}")
        full.append((out, scale))
    if any(full[a] != (x.shape[a], 1.0) for a in (0, 1)):  # onnxruntime resamples N, C too
        raise _NodeError(
            "only the spatial axes H and W may be resized (N and C keep their size, "
            f"scale 1), got sizes {[o for o, _ in full]} by scales "
            f"[{', '.join(f'{s:.9g}' for _, s in full)}]"
        )
    return full[2:]


def _scaled_size(axis: int, size: int, scale: float) -> int:
    """``floor(size * scale)`` (the ONNX spec, exact) where onnxruntime, which multiplies in
    float32, gives the same; where they disagree (e.g. 10 * 0.7), refused."""
    exact = math.floor(size * Fraction(scale))
    f32 = int(np.floor(np.float32(size) * np.float32(scale)))
    if f32 != exact:
        raise _NodeError(
            f"scale {scale:.9g} on axis {axis} of size {size}: onnxruntime gives {f32} and the "
            f"ONNX spec {exact} elements; give sizes instead of scales"
        )
    return exact


def _resize_emit(
    b: _Builder,
    node: Any,
    x: _Val,
    mode: str,
    coord: str,
    nearest: str,
    axes: list[tuple[int, float]],
) -> None:
    mats = [
        _interpolation(size, out, scale, mode, coord, nearest)
        for size, (out, scale) in zip(x.shape[2:], axes, strict=True)
    ]
    ah, aw = b.weight(f"{node.output[0]}:ah", mats[0]), b.weight(f"{node.output[0]}:aw", mats[1])
    b.put(node.output[0], b.emit("resize", [b.ir(x), ah, aw], {}, node.output[0]))


def _interpolation(
    size: int, out: int, scale: float, mode: str, coord: str, nearest: str
) -> np.ndarray:
    """The ``[out, size]`` matrix resizing one axis (each row: the weights its output element
    takes from the input elements). ``coord`` maps an output index to an input coordinate
    (ONNX's coordinate_transformation_mode); nearest picks one element by ``nearest`` (ONNX's
    nearest_mode; ``simple``, Resize-10 / Upsample: floor, ceil when downsampling); linear
    splits between the two neighbours of the coordinate clamped to ``[0, size - 1]``. The
    coordinates are computed in float32, in onnxruntime's order of operations, so that ties
    (an exact integer; for the round modes a .5 within :data:`_TIE`) fall the same way."""
    if out * size > FOLD_LIMIT // 4:
        raise _NodeError(f"an interpolation matrix of {out}x{size} exceeds {FOLD_LIMIT} bytes")
    f32, i = np.float32, np.arange(out, dtype=np.float32)
    if coord == "align_corners":
        src = i * f32(size - 1) / f32(out - 1) if out > 1 else np.zeros(out, f32)
    elif coord == "asymmetric":
        src = i / f32(scale)
    elif coord == "pytorch_half_pixel" and out == 1:
        src = np.zeros(out, f32)
    else:  # half_pixel, pytorch_half_pixel
        src = (i + f32(0.5)) / f32(scale) - f32(0.5)
    mat = np.zeros((out, size))
    rows = np.arange(out)
    if mode == "nearest":
        idx = _round(src, "ceil" if nearest == "simple" and scale < 1 else nearest)
        mat[rows, np.clip(idx, 0, size - 1)] = 1.0
        return mat
    src = np.clip(src, f32(0.0), f32(size - 1))
    low = np.floor(src).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    frac = src - low
    np.add.at(mat, (rows, low), 1.0 - frac)
    np.add.at(mat, (rows, high), frac)
    return mat


_TIE = 1e-6
"""onnxruntime (1.32, CPU) takes a float32 coordinate within this of a .5 as a tie, which
round_prefer_floor / round_prefer_ceil then break their way."""
_TIE_UNSURE = 1.9e-6
"""Beyond :data:`_TIE` and below this (the next float32 step where the sweep against
onnxruntime shows no tie) the tolerance is not pinned down: a coordinate there whose
rounding the tie would change is refused."""


def _round(src: np.ndarray, nearest: str) -> np.ndarray:
    """Input coordinates (float32) to indices by ONNX's nearest_mode, as onnxruntime does."""
    if nearest == "ceil":
        rounded = np.ceil(src)
    elif nearest in ("floor", "simple"):
        rounded = np.floor(src)
    else:
        low = np.floor(src)
        frac = src - low
        off = np.abs(frac - np.float32(0.5))
        up = frac > np.float32(0.5)
        prefer = nearest == "round_prefer_ceil"
        unsure = (off > np.float32(_TIE)) & (off < np.float32(_TIE_UNSURE)) & (up != prefer)
        if unsure.any():
            j = int(np.flatnonzero(unsure)[0])
            raise _NodeError(
                f"nearest_mode {nearest}: output element {j} maps to input coordinate "
                f"{float(src[j]):.9g}, too close to a tie to round as onnxruntime does; give "
                "another output size or nearest_mode floor / ceil instead"
            )
        rounded = low + np.where(off <= np.float32(_TIE), prefer, up)
    return np.asarray(rounded, dtype=np.int64)


# --- end spatial ops ----------------------------------------------------------------------


_MAPPERS: dict[str, Callable[[_Builder, Any], None]] = {
    "Relu": _unary("relu"),
    "Conv": _conv,  # spatial
    "BatchNormalization": _batchnorm,
    "Gemm": _gemm,
    # --- spatial ops ---
    "MaxPool": _maxpool,
    "AveragePool": _avgpool,
    "GlobalAveragePool": _global_pool("avgpool_global"),
    "GlobalMaxPool": _global_pool("maxpool_global"),
    "ConvTranspose": _conv_transpose,
    "Resize": _resize,
    "Upsample": _upsample,
    # --- end spatial ops ---
    "Transpose": _transpose,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Identity": _identity,
    "Dropout": _identity,
    # --- elem ops ---
    "Add": _binary,
    "Sub": _binary,
    "Mul": _binary,
    "Div": _binary,
    "Pow": _binary,
    "Neg": _neg,
    "Reciprocal": _reciprocal,
    "Sigmoid": _unary("sigmoid"),
    "HardSigmoid": _hardsigmoid,
    "HardSwish": _unary("hardswish"),
    "Tanh": _unary("tanh"),
    "Erf": _unary("erf"),
    "Sqrt": _unary("sqrt"),
    "Exp": _unary("exp"),
    "Clip": _clip,
    "Gelu": _gelu,
    "MatMul": _matmul,
    "Softmax": _softmax,
    "LayerNormalization": _layernorm,
    "ReduceMean": _reduce_mean,
    "Concat": _concat,
    "Slice": _slice,
    "Gather": _gather,
    "Cast": _cast,
    "Expand": _expand,
    # --- end elem ops ---
}
"""ONNX operators (default domain) and how each maps onto IR operators."""
