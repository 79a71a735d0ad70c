"""Model graphs: tensors, operators and the builtin model zoo (pure Python, no NumPy).

A :class:`Graph` is a straight-line list of operators over named float32 tensors (NCHW for
images). Every operator records its FLOPs (a multiply-add counts 2) and the bytes it moves
(all inputs, weights included, read once plus the output written once), so the planner can
cost a model without running it, and :mod:`aegis_exec.kernels` can run it on NumPy or CuPy.

Operator kinds and functions (the exact semantics live in :mod:`aegis_exec.kernels`):

* ``conv2d``/``conv2d``: inputs ``(x[N,C,H,W], w[K,C//groups,R,S], b[K])``, window attrs
  (below) and ``groups``; BatchNorm is folded into the bias, as in inference.
  ``conv2d``/``conv_transpose2d``: ``(x[N,C,H,W], w[C,K//groups,R,S], b[K])``, window attrs,
  ``output_padding``, ``groups`` (ONNX ConvTranspose: the gradient of a conv2d).
* ``gemm``/``linear``: ``(a[...,Kd], w[Kd,Nd], b[Nd]) -> [...,Nd]``; ``gemm``/``matmul``:
  ``(a[...,M,Kd], b[...,Kd,Nd]) -> [...,M,Nd]``, batch dims broadcast (NumPy rules; at most
  3 batch dims where the two differ), either operand a weight, optional ``scale``.
* ``elementwise``: ``relu``, ``relu6``, ``layernorm`` (last axis, ``eps``), the pools (below)
  and ``permute`` (``view``: the shape the input is first reshaped to, ``axes``: the
  permutation; the contiguous result is seen with the output tensor's shape), and:

  - ``add``, ``sub``, ``mul``, ``div``, ``pow``: two inputs, either a weight or an
    activation, NumPy broadcasting; the output has the broadcast shape.
  - unary, output shaped like the input: ``sigmoid``, ``hardsigmoid`` (``max(0, min(1,
    alpha x + beta))``, attrs ``alpha``, ``beta``; defaults 0.2, 0.5), ``hardswish`` (``x *
    hardsigmoid(x, 1/6, 1/2)``), ``tanh``, ``erf``, ``sqrt``, ``exp``, ``clip`` (``min(max(x,
    min), max)``; attrs ``min``, ``max``: a number or None for no bound), ``gelu`` (attr
    ``approximate``: ``"tanh"``, the default, ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715
    x^3)))``, or ``"none"``, ``0.5 x (1 + erf(x / sqrt 2))``).
  - ``softmax`` over attr ``axis`` (non-negative; default the last axis).
  - ``reduce_mean``: attrs ``axes`` (sorted, distinct, non-negative) and ``keepdims`` 0|1
    (default 1; a mean down to a scalar is not a tensor the IR has).
  - ``concat``: 2 to :data:`MAX_CONCAT` inputs (weights or activations) along attr ``axis``
    (required, as for ``gather``: a graph file without it is refused).
  - ``slice``: attrs ``begin``, ``step`` (non-zero, may be negative), ``size``, one entry per
    axis: the output holds ``x[begin + step*i]`` for ``i < size`` on each axis, every index
    inside the axis (ONNX's negative and clamped bounds are normalised by the importer).
  - ``gather``: attrs ``axis``, ``indices`` (non-negative, at most :data:`MAX_INDICES`) and
    ``scalar`` (1: one index, and the axis is dropped; 0: the axis has ``len(indices)``).
  - ``expand``: attr ``shape``, the output's shape, to which the input broadcasts.

Spatial functions (one helper, :func:`window`, decides their geometry for the shape rules,
:mod:`aegis_core.graph.scratch` and the kernels alike). Window attrs: ``stride`` and
``dilation`` an int or ``[h, w]`` (default 1), ``pad`` an int or ``[top, left, bottom,
right]`` (default 0); the window spans ``dilation * (k - 1) + 1`` per axis and the output is
``(size + pads - span) // stride + 1``. A graph file with the old int ``stride`` / ``pad``
means the same as before.

* ``conv_transpose2d``: output ``stride * (size - 1) + output_padding + span - pads``
  (``output_padding [oh, ow]`` below ``stride`` or ``dilation``); every input pixel adds
  ``w`` times itself at ``stride`` spacing into the output, then the pads are cropped.
* ``maxpool`` (``x[N,C,H,W]``): ``k`` an int or ``[kh, kw]``, window attrs, ``ceil_mode``
  0|1 (1: the output size rounds up, but a last window starting in the bottom/right padding
  is dropped, as onnxruntime and PyTorch do; the rows it adds are padding too); padding is
  -inf; each pad below the window span. ``avgpool``: the same, padding 0, divided by the
  number of counted elements in the window: the input's (``count_include_pad`` 0) or the
  input's and the declared pads' (1; never ceil mode's extra rows).
* ``avgpool_global`` / ``maxpool_global``: ``[N,C,H,W] -> [N,C]``, mean / max over H and W.
* ``gemm``/``resize``: ``(x[N,C,H,W], ah[Ho,H], aw[Wo,W]) -> [N,C,Ho,Wo]``, ``out[n, c] =
  ah @ x[n, c] @ aw^T``: the interpolation matrices are weights (the ONNX importer builds them
  from Resize's mode and coordinate mapping), the kernel is two GEMMs.

FLOPs of the elementwise functions, per output element unless said otherwise (a documented
convention, close to what the kernels do): ``relu``, ``relu6``, ``add``, ``sub``, ``mul``,
``div``, ``pow``, ``tanh``, ``sqrt``, ``exp`` 1 (the transcendental ones counted as one
operation); ``permute``, ``concat``, ``slice``, ``gather`` and ``expand`` 1 (copies do no
arithmetic; the nominal 1 keeps every operator's cost positive); ``clip`` 2; ``sigmoid`` 4
(scale, tanh, scale, shift); ``hardsigmoid`` 4; ``hardswish`` 5; ``erf`` 16 (the rational
approximation the kernels use); ``softmax`` 5 (max, subtract, exp, sum, divide); ``gelu`` 8
(the cube, two multiply-adds, tanh, add, two multiplies), 20 with ``approximate="none"``
(erf, add, two multiplies); ``layernorm`` 8 (mean, subtract, square, mean, rsqrt, scale,
gamma, beta); ``maxpool`` and ``avgpool`` ``kh*kw`` (one compare or add per tap);
``avgpool_global``, ``maxpool_global`` and ``reduce_mean`` 1 per *input* element.
``conv2d`` ``2 * out * C//groups * R * S``; ``conv_transpose2d`` ``2 * (N*C*H*W) *
K//groups * R * S`` (per input element); ``resize`` ``2 * N*C*H*Wo*W + 2 * N*C*Ho*Wo*H``
(its two GEMMs).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aegis_core.model.errors import InputError

__all__ = ["FNS", "Graph", "Op", "Tensor", "WeightsRef", "Window", "load_graph", "window"]

ROLES = frozenset({"input", "weight", "activation"})
DTYPE_BYTES = {"float32": 4, "float16": 2, "float64": 8}

FNS: dict[str, str] = {
    "conv2d": "conv2d",
    "linear": "gemm",
    "matmul": "gemm",
    "relu": "elementwise",
    "relu6": "elementwise",
    "gelu": "elementwise",
    "add": "elementwise",
    "mul": "elementwise",
    "softmax": "elementwise",
    "layernorm": "elementwise",
    "maxpool": "elementwise",
    "avgpool_global": "elementwise",
    "permute": "elementwise",
    # --- elem ops ---
    "sub": "elementwise",
    "div": "elementwise",
    "pow": "elementwise",
    "sigmoid": "elementwise",
    "hardsigmoid": "elementwise",
    "hardswish": "elementwise",
    "tanh": "elementwise",
    "erf": "elementwise",
    "sqrt": "elementwise",
    "exp": "elementwise",
    "clip": "elementwise",
    "reduce_mean": "elementwise",
    "concat": "elementwise",
    "slice": "elementwise",
    "gather": "elementwise",
    "expand": "elementwise",
    # --- end elem ops ---
    # --- spatial ops ---
    "conv_transpose2d": "conv2d",
    "avgpool": "elementwise",
    "maxpool_global": "elementwise",
    "resize": "gemm",
    # --- end spatial ops ---
}
"""Every operator function and the kind it belongs to."""

_FLOPS_PER_ELEMENT = {
    "softmax": 5,
    "gelu": 8,
    "layernorm": 8,
    # --- elem ops ---
    "sigmoid": 4,
    "hardsigmoid": 4,
    "hardswish": 5,
    "erf": 16,
    "clip": 2,
    # --- end elem ops ---
}
_GRAPH_FORMAT = "aegis-graph/1"


class _ShapeError(ValueError):
    """A shape that does not fit an operator (turned into InputError by the callers)."""


def _prod(shape: Sequence[int]) -> int:
    return math.prod(shape)


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named float32 tensor: the graph input, a weight, or an activation."""

    name: str
    shape: tuple[int, ...]
    role: str
    dtype: str = "float32"

    @property
    def size(self) -> int:
        """Number of elements."""
        return _prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * DTYPE_BYTES[self.dtype]


@dataclass(frozen=True, slots=True)
class Op:
    """One operator: ``output = fn(*inputs)``, with its cost."""

    name: str
    kind: str
    fn: str
    inputs: tuple[str, ...]
    output: str
    attrs: tuple[tuple[str, Any], ...] = ()
    flops: int = 0
    bytes: int = 0

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default


# --- shape inference and cost: shared by the builder and by Graph validation -------------


def _infer(fn: str, attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The output shape of ``fn`` on inputs of shapes ``ins`` (``permute``: its view's
    permuted shape); raises _ShapeError when they do not fit."""
    if fn in _ELEM_SHAPES:
        return _ELEM_SHAPES[fn](attrs, ins)
    want = {"conv2d": 3, "linear": 3, "layernorm": 3}
    want.update(_SPATIAL_ARITY)
    if len(ins) != want.get(fn, 1):
        raise _ShapeError(f"{fn} takes {want.get(fn, 1)} inputs, got {len(ins)}")
    x = ins[0]
    if fn in _SPATIAL_INFER:
        return _SPATIAL_INFER[fn](attrs, ins)
    if fn == "linear":
        w, b = ins[1], ins[2]
        if len(x) < 1 or len(w) != 2 or x[-1] != w[0] or b != (w[1],):
            raise _ShapeError(f"linear {x} x {w} + {b} do not fit")
        return (*x[:-1], w[1])
    if fn == "layernorm" and (len(x) < 1 or ins[1] != (x[-1],) or ins[2] != (x[-1],)):
        raise _ShapeError(f"layernorm of {x} with gamma {ins[1]} and beta {ins[2]}")
    if fn == "permute":
        view, axes = tuple(attrs["view"]), tuple(attrs["axes"])
        if _prod(view) != _prod(x) or sorted(axes) != list(range(len(view))):
            raise _ShapeError(f"permute of {x} as view {view} with axes {axes}")
        return tuple(view[a] for a in axes)
    if fn not in FNS:
        raise _ShapeError(f"unknown operator function {fn!r}")
    return x


def _flops(fn: str, attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]], out: int) -> int:
    """FLOPs of ``fn`` given its input shapes and output size (multiply-add = 2)."""
    if fn in _SPATIAL_FLOPS:
        return _SPATIAL_FLOPS[fn](attrs, ins, out)
    if fn in ("linear", "matmul"):
        return 2 * out * ins[0][-1]
    if fn == "reduce_mean":
        return _prod(ins[0])
    if fn == "gelu" and attrs.get("approximate", "tanh") == "none":
        return out * _GELU_ERF_FLOPS
    return out * _FLOPS_PER_ELEMENT.get(fn, 1)


def _freeze(value: Any) -> Any:
    """JSON lists back to (nested) tuples, so attrs stay hashable."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class WeightsRef:
    """Where a graph's real weights are kept (None on a graph: builtin models and plain graph
    files get seeded random weights, :func:`aegis_exec.kernels.init_params`).

    ``kind`` ``"onnx"``: ``path`` is the ONNX model the graph was imported from (re-imported
    with the graph's batch and input shape to get them); ``"npz"``: a NumPy ``.npz`` file
    (no pickles) with one array per weight tensor, as ``aegis import -o`` writes it beside
    the graph file. ``sha256`` is the file's digest when the graph was made: a file changed
    since is refused, never read as if it still matched.
    """

    kind: str
    path: str
    sha256: str

    @property
    def onnx_path(self) -> str | None:
        """The ONNX model file, when the weights are read from one."""
        return self.path if self.kind == "onnx" else None


@dataclass(frozen=True)
class Graph:
    """A model as a straight-line operator list over named tensors (validated on creation).
    ``weights``: where its real weights are, if it has any (:class:`WeightsRef`)."""

    name: str
    batch: int
    input_shape: tuple[int, ...]
    tensors: Mapping[str, Tensor]
    ops: tuple[Op, ...]
    input: str
    output: str
    weights: WeightsRef | None = None

    def __post_init__(self) -> None:
        try:
            self._validate()
        except (KeyError, TypeError, ArithmeticError, _ShapeError) as exc:
            raise ValueError(f"graph {self.name!r}: {exc}") from exc

    def _validate(self) -> None:
        t = self.tensors
        if self.batch < 1 or not self.ops:
            raise _ShapeError("needs batch >= 1 and at least one operator")
        if t[self.input].role != "input" or t[self.input].shape != (
            self.batch,
            *self.input_shape,
        ):
            raise _ShapeError(f"input {self.input!r} must be [batch, *input_shape]")
        for tensor in t.values():
            if tensor.role not in ROLES or tensor.dtype not in DTYPE_BYTES:
                raise _ShapeError(
                    f"tensor {tensor.name!r}: role/dtype {tensor.role}/{tensor.dtype}"
                )
        ready = {n for n, v in t.items() if v.role != "activation"}
        for op in self.ops:
            if FNS.get(op.fn) != op.kind:
                raise _ShapeError(f"op {op.name!r}: unknown kind/fn {op.kind}/{op.fn}")
            _check_attrs(op)
            missing = [i for i in op.inputs if i not in ready]
            if missing or op.output in ready or t[op.output].role != "activation":
                raise _ShapeError(f"op {op.name!r}: inputs {missing} not ready or bad output")
            try:
                shape = _infer(op.fn, dict(op.attrs), [t[i].shape for i in op.inputs])
            except (_ShapeError, KeyError, TypeError) as exc:
                raise _ShapeError(f"op {op.name!r}: {exc}") from exc
            out = t[op.output].shape
            if shape != out and not (op.fn == "permute" and _prod(shape) == _prod(out)):
                raise _ShapeError(f"op {op.name!r}: output {out}, expected {shape}")
            ready.add(op.output)
        if self.output not in ready or t[self.output].role != "activation":
            raise _ShapeError(f"output {self.output!r} is not produced")

    @property
    def flops(self) -> int:
        return sum(op.flops for op in self.ops)

    @property
    def weights_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values() if t.role == "weight")

    @property
    def activation_bytes(self) -> int:
        """Bytes of the input and every activation (no reuse between them)."""
        return sum(t.nbytes for t in self.tensors.values() if t.role != "weight")

    def lifetimes(self) -> dict[str, tuple[int, int]]:
        """``{tensor: (first, last)}`` op indices, inclusive, for the input and each activation.

        ``first`` is the producing op (for the graph input, the first op that reads it);
        ``last`` is the last op that reads it, and the last op for the graph output. An
        activation that nothing reads lives at its producer only.
        """
        span: dict[str, tuple[int, int]] = {}
        for i, op in enumerate(self.ops):
            for name in op.inputs:
                if self.tensors[name].role == "weight":
                    continue
                first = span[name][0] if name in span else i
                span[name] = (first, i)
            span[op.output] = (i, i)
        out_first = span[self.output][0]
        span[self.output] = (out_first, len(self.ops) - 1)
        return span

    def chunks(self, n: int) -> list[range]:
        """``min(n, len(ops))`` contiguous, non-empty op ranges covering every op in order.

        Greedy prefix split: the ``k``-th cut is placed where the running FLOP sum comes closest
        to ``k/m`` of the total, leaving at least one op for each chunk still to come.
        """
        if n < 1:
            raise InputError(f"graph {self.name!r}: chunk count must be >= 1, got {n}")
        count = len(self.ops)
        m = min(n, count)
        cum = [0]
        for op in self.ops:
            cum.append(cum[-1] + op.flops)
        cuts = [0]
        for k in range(1, m):
            target = cum[-1] * k / m
            lo, hi = cuts[-1] + 1, count - (m - k)
            cuts.append(min(range(lo, hi + 1), key=lambda e: (abs(cum[e] - target), e)))
        cuts.append(count)
        return [range(a, b) for a, b in itertools.pairwise(cuts)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_dict` reads it back to an equal graph."""
        return {
            "format": _GRAPH_FORMAT,
            "name": self.name,
            "batch": self.batch,
            "input_shape": list(self.input_shape),
            "input": self.input,
            "output": self.output,
            "tensors": [
                {"name": t.name, "shape": list(t.shape), "role": t.role, "dtype": t.dtype}
                for t in self.tensors.values()
            ],
            "ops": [
                {
                    "name": op.name,
                    "kind": op.kind,
                    "fn": op.fn,
                    "inputs": list(op.inputs),
                    "output": op.output,
                    "attrs": {k: _thaw(v) for k, v in op.attrs},
                    "flops": op.flops,
                    "bytes": op.bytes,
                }
                for op in self.ops
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Graph:
        """Inverse of :meth:`to_dict`. ``flops``/``bytes`` of an op may be left out (computed).

        Every field is type- and range-checked before anything is built (integers are
        integers, not bools or floats; shapes have at most :data:`MAX_DIMS` sizes, each
        tensor at most :data:`MAX_GRAPH_BYTES`); raises ``ValueError`` naming the tensor or
        operator and the field, or ``KeyError`` for a missing one.
        """
        if d.get("format", _GRAPH_FORMAT) != _GRAPH_FORMAT:
            raise ValueError(f"unsupported graph format {d.get('format')!r}")
        for key, most in (("tensors", MAX_TENSORS), ("ops", MAX_OPS)):
            if len(_list(d, key)) > most:
                raise ValueError(f"field '{key}': {len(d[key])} entries, more than {most}")
        tensors: dict[str, Tensor] = {}
        for i, t in enumerate(_list(d, "tensors")):
            tensor = _tensor_from_dict(_object(t, f"tensors[{i}]"), f"tensors[{i}]")
            if tensor.name in tensors:
                raise ValueError(f"tensors[{i}]: duplicate tensor name {tensor.name!r}")
            tensors[tensor.name] = tensor
        _check_total(tensors.values())
        ops = tuple(
            _op_from_dict(_object(o, f"ops[{i}]"), tensors, f"ops[{i}]")
            for i, o in enumerate(_list(d, "ops"))
        )
        return cls(
            name=_text(d, "name", "graph"),
            batch=_integer(d, "batch", "graph", 1),
            input_shape=_shape(d["input_shape"], "graph: field 'input_shape'"),
            tensors=tensors,
            ops=ops,
            input=_text(d, "input", "graph"),
            output=_text(d, "output", "graph"),
        )


MAX_DIMS = 8
"""Most sizes a tensor shape may have (the kernels use at most 4)."""
MAX_GRAPH_BYTES = 1 << 36
"""64 GiB: the most a graph file's tensors may take together (as the executor keeps them, at 4
bytes an element; per tensor and in total), checked before anything is built or allocated."""
MAX_OPS = 4096
"""Most operators a graph file may hold (resnet18 has 70, mobilenet_v2 100): what depends on
the op count (chunking, the nested-sharing bounds) stays quick."""
MAX_TENSORS = 4 * MAX_OPS
"""Most tensors a graph file may hold (each op's output and a few weights)."""
MAX_COUNT = 1 << 62
"""Largest ``flops`` / ``bytes`` an operator may declare (int64 with headroom)."""


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: must be an object, got {type(value).__name__}")
    return value


def _list(d: Mapping[str, Any], key: str) -> list[Any]:
    value = d[key]
    if not isinstance(value, list):
        raise ValueError(f"field '{key}' must be a list, got {type(value).__name__}")
    return value


def _text(d: Mapping[str, Any], key: str, where: str) -> str:
    value = d[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: field '{key}' must be a non-empty string, got {value!r:.40}")
    return value


def _integer(d: Mapping[str, Any], key: str, where: str, minimum: int) -> int:
    value = d[key]
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or not minimum <= value <= MAX_COUNT:
        raise ValueError(
            f"{where}: field '{key}' must be an integer in [{minimum}, 2**62], got {value!r:.40}"
        )
    return int(value)


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= MAX_DIMS:
        raise ValueError(f"{where}: must be a list of 1 to {MAX_DIMS} positive integers")
    for v in value:
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_GRAPH_BYTES:
            raise ValueError(f"{where}: sizes must be positive integers, got {v!r:.40}")
    return tuple(value)


def _exec_bytes(shape: Sequence[int]) -> int:
    """Bytes the executor allocates for a tensor of ``shape`` (float32, whatever the dtype)."""
    return _prod(shape) * 4


def _tensor_from_dict(t: Mapping[str, Any], where: str) -> Tensor:
    name = _text(t, "name", where)
    where = f"tensor {name!r}"
    shape = _shape(t["shape"], f"{where}: field 'shape'")
    if _exec_bytes(shape) > MAX_GRAPH_BYTES:
        raise ValueError(
            f"{where}: field 'shape': {_prod(shape)} elements ({_exec_bytes(shape)} bytes) "
            f"exceed the cap of {MAX_GRAPH_BYTES} bytes"
        )
    role = _text(t, "role", where)
    dtype = t.get("dtype", "float32")
    if role not in ROLES:
        raise ValueError(f"{where}: field 'role' must be one of {', '.join(sorted(ROLES))}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"{where}: field 'dtype' must be one of {', '.join(DTYPE_BYTES)}")
    return Tensor(name, shape, role, dtype)


def _check_total(tensors: Iterable[Tensor]) -> None:
    total = sum(_exec_bytes(t.shape) for t in tensors)
    if total > MAX_GRAPH_BYTES:
        raise ValueError(
            f"field 'tensors': {total} bytes in all exceed the cap of {MAX_GRAPH_BYTES} bytes"
        )


def _op_from_dict(o: Mapping[str, Any], tensors: Mapping[str, Tensor], where: str) -> Op:
    name = _text(o, "name", where)
    where = f"op {name!r}"
    attrs_in = o.get("attrs", {})
    if not isinstance(attrs_in, Mapping):
        raise ValueError(f"{where}: field 'attrs' must be an object")
    attrs = tuple((str(k), _freeze(v)) for k, v in attrs_in.items())
    raw_inputs = o["inputs"]
    if not isinstance(raw_inputs, list) or not all(isinstance(i, str) for i in raw_inputs):
        raise ValueError(f"{where}: field 'inputs' must be a list of tensor names")
    inputs = tuple(raw_inputs)
    fn, kind, output = _text(o, "fn", where), _text(o, "kind", where), _text(o, "output", where)
    for key, ref in [*(("inputs", i) for i in inputs), ("output", output)]:
        if ref not in tensors:
            raise ValueError(f"{where}: field '{key}': no tensor named {ref!r:.60}")
    out = tensors[output]
    ins = [tensors[i] for i in inputs]
    flops = _integer(o, "flops", where, 0) if o.get("flops") is not None else None
    if flops is None:
        try:
            flops = _flops(fn, dict(attrs), [t.shape for t in ins], out.size)
        except (IndexError, KeyError, TypeError) as exc:
            raise ValueError(f"{where}: cannot cost {fn!r} on these inputs ({exc})") from exc
    nbytes = _integer(o, "bytes", where, 0) if o.get("bytes") is not None else None
    if nbytes is None:
        nbytes = sum(t.nbytes for t in ins) + out.nbytes
    return Op(name, kind, fn, inputs, output, attrs, flops, nbytes)


GRAPH_FILE_LIMIT = 16 << 20
"""16 MiB: the largest graph file read (resnet18's is about 60 KB)."""


def read_bounded(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path`` (``-``: standard input), at most ``limit`` of
    them (:func:`aegis_core.model.files.read_user_bytes`: a missing, unreadable, non-regular
    or larger file is an InputError naming it)."""
    import sys

    from aegis_core.model.files import read_user_bytes

    if str(path) != "-":
        return read_user_bytes(path, what, limit)
    data: bytes = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"-: larger than {limit} bytes: not a {what}")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(data: bytes, path: str | Path, what: str) -> Any:
    """Strict JSON (no NaN / Infinity); an InputError names the file and the line."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a valid {what}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not a valid {what}: invalid JSON at line {exc.lineno}: {exc.msg}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not a valid {what}: {exc}") from None


def load_graph(path: str | Path) -> Graph:
    """Read a graph written as JSON from :meth:`Graph.to_dict`; bad files raise InputError.
    The file is read bounded (:data:`GRAPH_FILE_LIMIT`) and must be a regular file."""
    doc = parse_json(read_bounded(path, GRAPH_FILE_LIMIT, "graph file"), path, "graph file")
    try:
        if not isinstance(doc, dict):
            raise ValueError("the top level is not a JSON object")
        return Graph.from_dict(doc)
    except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise InputError(f"{path}: not a valid graph file: {what}") from exc


def _check_attrs(op: Op) -> None:
    """Attribute types and ranges (a graph file may hold anything)."""
    for key, value in op.attrs:
        if key in _ELEM_ATTRS:
            _check_elem_attr(op, key, value)
        elif key in _SPATIAL_ATTRS:
            _check_window_attr(op.name, key, value)
        elif key in _INT_ATTRS:
            ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok or value < _INT_ATTRS[key]:
                raise _ShapeError(
                    f"op {op.name!r}: attribute {key} must be an integer >= {_INT_ATTRS[key]}, "
                    f"got {value!r}"
                )
        elif key in ("view", "axes"):
            low = 1 if key == "view" else 0
            ok = (
                isinstance(value, tuple)
                and 1 <= len(value) <= MAX_DIMS
                and all(
                    isinstance(v, int) and not isinstance(v, bool) and low <= v <= MAX_GRAPH_BYTES
                    for v in value
                )
            )
            if not ok:
                raise _ShapeError(
                    f"op {op.name!r}: attribute {key} must be a list of 1 to {MAX_DIMS} "
                    f"integers >= {low}, got {value!r:.60}"
                )
        elif key in _REAL_ATTRS and value is not None:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or (key == "eps" and value <= 0):
                raise _ShapeError(f"op {op.name!r}: attribute {key} must be a finite number")


_INT_ATTRS = {"groups": 1}
"""Integer attributes and their smallest allowed value."""


_REAL_ATTRS = ("eps", "scale")


# --- elem ops: broadcasting binaries, unaries, reductions, shape ops ----------------------

_GELU_ERF_FLOPS = 20
"""FLOPs per element of ``gelu`` with ``approximate="none"`` (the erf approximation, 16, and
the scale, add and two multiplies)."""
MAX_CONCAT = 64
"""Most inputs one ``concat`` takes."""
MAX_INDICES = 1 << 16
"""Most indices one ``gather`` takes (they are kept in the graph file)."""
MAX_BATCH_DIMS = 3
"""Most batch dimensions of a ``matmul`` whose operands' batch dims differ (broadcast): what
the capturable GEMM (:mod:`aegis_exec.backends.sgemm`) takes."""


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy's broadcast shape of ``a`` and ``b`` (aligned on the right)."""
    n = max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    if any(x != y and 1 not in (x, y) for x, y in zip(pa, pb, strict=True)):
        raise _ShapeError(f"shapes {a} and {b} do not broadcast")
    return tuple(max(x, y) for x, y in zip(pa, pb, strict=True))


def _count(fn: str, ins: Sequence[tuple[int, ...]], low: int, high: int) -> None:
    if not low <= len(ins) <= high:
        want = low if low == high else f"{low} to {high}"
        raise _ShapeError(f"{fn} takes {want} inputs, got {len(ins)}")


def _axis(attrs: Mapping[str, Any], rank: int, what: str, default: int | None = None) -> int:
    """``attrs``' axis, in range; without one ``default`` (None: the op requires it)."""
    if "axis" not in attrs and default is None:
        raise _ShapeError(f"{what} needs the attribute axis")
    axis = attrs.get("axis", default)
    if not 0 <= axis < rank:
        raise _ShapeError(f"{what} axis {axis} out of range for rank {rank}")
    return int(axis)


def _shape_binary(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    _count("a binary operator", ins, 2, 2)
    return _broadcast(ins[0], ins[1])


def _shape_unary(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    _count("a unary operator", ins, 1, 1)
    if attrs.get("approximate", "tanh") not in ("tanh", "none"):
        raise _ShapeError(
            f"gelu approximate must be 'tanh' or 'none', got {attrs['approximate']!r}"
        )
    return ins[0]


def _shape_matmul(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    _count("matmul", ins, 2, 2)
    a, b = ins
    if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
        raise _ShapeError(f"matmul {a} x {b} do not fit")
    batch = _broadcast(a[:-2], b[:-2])
    if a[:-2] != b[:-2] and len(batch) > MAX_BATCH_DIMS:
        raise _ShapeError(f"matmul {a} x {b}: more than {MAX_BATCH_DIMS} broadcast batch dims")
    return (*batch, a[-2], b[-1])


def _shape_softmax(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    _count("softmax", ins, 1, 1)
    _axis(attrs, len(ins[0]), "softmax", len(ins[0]) - 1)
    return ins[0]


def _shape_reduce(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    _count("reduce_mean", ins, 1, 1)
    x, axes, keep = ins[0], tuple(attrs["axes"]), attrs.get("keepdims", 1)
    if not axes or list(axes) != sorted(set(axes)) or axes[-1] >= len(x) or keep not in (0, 1):
        raise _ShapeError(f"reduce_mean of {x} over axes {axes} keepdims {keep}")
    if keep:
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    out = tuple(d for i, d in enumerate(x) if i not in axes)
    if not out:
        raise _ShapeError(f"reduce_mean of {x} over every axis without keepdims is a scalar")
    return out


def _shape_concat(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    _count("concat", ins, 2, MAX_CONCAT)
    x = ins[0]
    axis = _axis(attrs, len(x), "concat")
    for y in ins[1:]:
        if len(y) != len(x) or y[:axis] != x[:axis] or y[axis + 1 :] != x[axis + 1 :]:
            raise _ShapeError(f"concat of {x} and {y} along axis {axis}")
    return (*x[:axis], sum(y[axis] for y in ins), *x[axis + 1 :])


def _shape_slice(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """``begin`` / ``step`` / ``size`` per axis: element ``begin + step * i`` for ``i`` in
    ``range(size)``, each inside the axis (``step`` may be negative, never 0)."""
    _count("slice", ins, 1, 1)
    x = ins[0]
    begin, step, size = (tuple(attrs[k]) for k in ("begin", "step", "size"))
    if not len(begin) == len(step) == len(size) == len(x):
        raise _ShapeError(f"slice of {x}: begin/step/size need {len(x)} entries each")
    for d, b0, st, n in zip(x, begin, step, size, strict=True):
        if st == 0 or n < 1 or not 0 <= b0 < d or not 0 <= b0 + st * (n - 1) < d:
            raise _ShapeError(f"slice of {x}: begin {begin} step {step} size {size}")
    return tuple(int(n) for n in size)


def _shape_gather(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    _count("gather", ins, 1, 1)
    x, indices, scalar = ins[0], tuple(attrs["indices"]), attrs.get("scalar", 0)
    axis = _axis(attrs, len(x), "gather")
    if not 1 <= len(indices) <= MAX_INDICES or any(not 0 <= i < x[axis] for i in indices):
        raise _ShapeError(f"gather of {x} axis {axis}: indices must be in [0, {x[axis]})")
    if scalar not in (0, 1) or (scalar and (len(indices) != 1 or len(x) < 2)):
        raise _ShapeError(f"gather of {x}: scalar={scalar} needs one index and rank >= 2")
    return (*x[:axis], *(() if scalar else (len(indices),)), *x[axis + 1 :])


def _shape_expand(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    _count("expand", ins, 1, 1)
    shape = tuple(attrs["shape"])
    if _broadcast(ins[0], shape) != shape:
        raise _ShapeError(f"expand of {ins[0]} to {shape}")
    return shape


_ELEM_SHAPES: dict[
    str, Callable[[Mapping[str, Any], Sequence[tuple[int, ...]]], tuple[int, ...]]
] = {
    "add": _shape_binary,
    "sub": _shape_binary,
    "mul": _shape_binary,
    "div": _shape_binary,
    "pow": _shape_binary,
    "gelu": _shape_unary,
    "sigmoid": _shape_unary,
    "hardsigmoid": _shape_unary,
    "hardswish": _shape_unary,
    "tanh": _shape_unary,
    "erf": _shape_unary,
    "sqrt": _shape_unary,
    "exp": _shape_unary,
    "clip": _shape_unary,
    "matmul": _shape_matmul,
    "softmax": _shape_softmax,
    "reduce_mean": _shape_reduce,
    "concat": _shape_concat,
    "slice": _shape_slice,
    "gather": _shape_gather,
    "expand": _shape_expand,
}
"""Shape rules of the elem ops (``_infer`` asks here first)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ints(value: Any, low: int | None, most: int, nonzero: bool = False) -> bool:
    return (
        isinstance(value, tuple)
        and 1 <= len(value) <= most
        and all(
            _is_int(v) and abs(v) <= MAX_GRAPH_BYTES and (low is None or v >= low) for v in value
        )
        and not (nonzero and 0 in value)
    )


def _real(v: Any) -> bool:
    return _is_int(v) or (isinstance(v, float) and math.isfinite(v))


_ELEM_ATTRS: dict[str, Callable[[Any], bool]] = {
    "alpha": _real,
    "beta": _real,
    "min": lambda v: v is None or _real(v),
    "max": lambda v: v is None or _real(v),
    "approximate": lambda v: v in ("tanh", "none"),
    "axis": lambda v: _is_int(v) and 0 <= v < MAX_DIMS,
    "keepdims": lambda v: _is_int(v) and v in (0, 1),
    "scalar": lambda v: _is_int(v) and v in (0, 1),
    "begin": lambda v: _ints(v, 0, MAX_DIMS),
    "step": lambda v: _ints(v, None, MAX_DIMS, nonzero=True),
    "size": lambda v: _ints(v, 1, MAX_DIMS),
    "indices": lambda v: _ints(v, 0, MAX_INDICES),
    "shape": lambda v: _ints(v, 1, MAX_DIMS),
}
"""The elem ops' attributes and what each may hold (a graph file may hold anything)."""


def _check_elem_attr(op: Op, key: str, value: Any) -> None:
    if not _ELEM_ATTRS[key](value):
        raise _ShapeError(f"op {op.name!r}: attribute {key} has an invalid value {value!r:.60}")


# --- spatial ops: window geometry, shape rules, FLOPs and attribute checks ------------------


@dataclass(frozen=True, slots=True)
class Window:
    """The geometry of a 2-D sliding window (convolutions and pools), normalised: ``k`` the
    taps ``(R, S)``, ``stride`` and ``dilation`` per axis ``(h, w)``, ``pad`` ``(top, left,
    bottom, right)``; ``ceil_mode`` (pools): the output size rounds up, the last window
    still starting inside the input or its top/left padding, padded further at the
    bottom/right as needed; ``output_padding`` (transposed convs): extra rows/columns at the
    bottom/right of the output. Built by :func:`window`, used alike by the shape rules, the
    scratch sizes and the kernels."""

    k: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    ceil_mode: bool = False
    output_padding: tuple[int, int] = (0, 0)

    @property
    def extent(self) -> tuple[int, int]:
        """The span of one window per axis: ``dilation * (k - 1) + 1``."""
        return (
            self.dilation[0] * (self.k[0] - 1) + 1,
            self.dilation[1] * (self.k[1] - 1) + 1,
        )

    @property
    def pointwise(self) -> bool:
        """A 1x1 window, stride 1, no padding: the input itself is the im2col matrix."""
        return self.k == (1, 1) and self.stride == (1, 1) and not any(self.pad)

    def _axis(self, i: int, size: int) -> tuple[int, int]:
        """``(output size, padded extent)`` along axis ``i`` (0: H, 1: W) of ``size``."""
        lo, hi, s, ext = self.pad[i], self.pad[i + 2], self.stride[i], self.extent[i]
        span = size + lo + hi - ext
        if span < 0:
            raise _ShapeError(
                f"window {self.k} dilation {self.dilation} pads {self.pad} do not fit extent {size}"
            )
        out = span // s + 1
        if self.ceil_mode:
            out = -(-span // s) + 1
            if (out - 1) * s >= size + lo:  # the last window would start in the padding
                out -= 1
        return out, max(size + lo + hi, (out - 1) * s + ext)

    def out(self, h: int, w: int) -> tuple[int, int]:
        """The output's spatial size on an ``h x w`` input."""
        return self._axis(0, h)[0], self._axis(1, w)[0]

    def padded(self, h: int, w: int) -> tuple[int, int]:
        """The padded input's size (ceil mode's extra bottom/right rows included)."""
        return self._axis(0, h)[1], self._axis(1, w)[1]

    def transposed(self, h: int, w: int) -> tuple[int, int]:
        """The output size of the transposed convolution on an ``h x w`` input:
        ``stride * (size - 1) + output_padding + extent - pad_begin - pad_end``."""
        sizes = []
        for i, size in enumerate((h, w)):
            s, d, op = self.stride[i], self.dilation[i], self.output_padding[i]
            if op >= max(s, d):
                raise _ShapeError(f"output_padding {op} must be below stride {s} or dilation {d}")
            full = s * (size - 1) + op + self.extent[i]
            sizes.append(full - self.pad[i] - self.pad[i + 2])
        if min(sizes) < 1:
            raise _ShapeError(f"pads {self.pad} leave no output of a {h}x{w} input")
        return sizes[0], sizes[1]

    def full(self, h: int, w: int) -> tuple[int, int]:
        """The transposed convolution's uncropped output: ``stride * (size - 1) + extent +
        output_padding`` per axis (what the strided adds write into, before the pads are
        cropped)."""
        return (
            self.stride[0] * (h - 1) + self.extent[0] + self.output_padding[0],
            self.stride[1] * (w - 1) + self.extent[1] + self.output_padding[1],
        )


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    h, w = value
    return int(h), int(w)


def _pads(value: Any) -> tuple[int, int, int, int]:
    if isinstance(value, int):
        return value, value, value, value
    top, left, bottom, right = value
    return int(top), int(left), int(bottom), int(right)


def window(attrs: Mapping[str, Any], k: tuple[int, int] | None = None) -> Window:
    """The :class:`Window` of a conv / pool op from its attributes (``stride``, ``dilation``:
    an int or ``[h, w]``; ``pad``: an int or ``[top, left, bottom, right]``; defaults 1 / 1
    / 0). ``k``: a convolution's taps (from its weight); pools give theirs in ``attrs["k"]``."""
    return Window(
        k=_pair(attrs["k"]) if k is None else k,
        stride=_pair(attrs.get("stride", 1)),
        dilation=_pair(attrs.get("dilation", 1)),
        pad=_pads(attrs.get("pad", 0)),
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
        output_padding=_pair(attrs.get("output_padding", 0)),
    )


def _image(fn: str, x: tuple[int, ...]) -> tuple[int, ...]:
    if len(x) != 4:
        raise _ShapeError(f"{fn} needs an [N,C,H,W] input, got {x}")
    return x


def _infer_conv(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    x, w, b = ins
    g = attrs.get("groups", 1)
    if len(x) != 4 or len(w) != 4 or g < 1 or x[1] % g or w[0] % g or w[1] != x[1] // g:
        raise _ShapeError(f"conv2d of {x} with weight {w} and groups {g}")
    if b != (w[0],):
        raise _ShapeError(f"conv2d bias {b} for {w[0]} output channels")
    return (x[0], w[0], *window(attrs, (w[2], w[3])).out(x[2], x[3]))


def _infer_conv_transpose(
    attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]
) -> tuple[int, ...]:
    x, w, b = ins
    g = attrs.get("groups", 1)
    if len(x) != 4 or len(w) != 4 or g < 1 or x[1] % g or w[0] != x[1]:
        raise _ShapeError(f"conv_transpose2d of {x} with weight {w} and groups {g}")
    if b != (w[1] * g,):
        raise _ShapeError(f"conv_transpose2d bias {b} for {w[1] * g} output channels")
    return (x[0], w[1] * g, *window(attrs, (w[2], w[3])).transposed(x[2], x[3]))


def _infer_pool(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    x = _image("pool", ins[0])
    win = window(attrs)
    ext = win.extent
    if any(p >= ext[i % 2] for i, p in enumerate(win.pad)):
        raise _ShapeError(f"pool pads {win.pad} must be smaller than the window {ext}")
    return (x[0], x[1], *win.out(x[2], x[3]))


def _infer_global(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    return _image("global pool", ins[0])[:2]


def _infer_resize(attrs: Mapping[str, Any], ins: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    x, ah, aw = _image("resize", ins[0]), ins[1], ins[2]
    if len(ah) != 2 or len(aw) != 2 or ah[1] != x[2] or aw[1] != x[3]:
        raise _ShapeError(f"resize of {x} with matrices {ah} and {aw}")
    return (x[0], x[1], ah[0], aw[0])


_Shapes = Sequence[tuple[int, ...]]
_SPATIAL_INFER: dict[str, Callable[[Mapping[str, Any], _Shapes], tuple[int, ...]]] = {
    "conv2d": _infer_conv,
    "conv_transpose2d": _infer_conv_transpose,
    "maxpool": _infer_pool,
    "avgpool": _infer_pool,
    "avgpool_global": _infer_global,
    "maxpool_global": _infer_global,
    "resize": _infer_resize,
}
_SPATIAL_ARITY = {"conv_transpose2d": 3, "resize": 3}


def _taps(attrs: Mapping[str, Any]) -> int:
    kh, kw = _pair(attrs["k"])
    return kh * kw


_SPATIAL_FLOPS: dict[str, Callable[[Mapping[str, Any], _Shapes, int], int]] = {
    "conv2d": lambda a, ins, out: 2 * out * _prod(ins[1][1:]),
    "conv_transpose2d": lambda a, ins, out: 2 * _prod(ins[0]) * _prod(ins[1][1:]),
    "maxpool": lambda a, ins, out: out * _taps(a),
    "avgpool": lambda a, ins, out: out * _taps(a),
    "avgpool_global": lambda a, ins, out: _prod(ins[0]),
    "maxpool_global": lambda a, ins, out: _prod(ins[0]),
    "resize": lambda a, ins, out: (
        2 * _prod(ins[0][:3]) * ins[2][0] * ins[2][1] + 2 * out * ins[1][1]
    ),
}


_WINDOW_ATTRS = {
    "k": (1, 2),
    "stride": (1, 2),
    "dilation": (1, 2),
    "pad": (0, 4),
    "output_padding": (0, 2),
}
"""Window attributes: their smallest value and how many a list of them holds."""
_FLAG_ATTRS = ("ceil_mode", "count_include_pad")
_SPATIAL_ATTRS = frozenset({*_WINDOW_ATTRS, *_FLAG_ATTRS})


def _check_window_attr(name: str, key: str, value: Any) -> None:
    """A window attribute: an integer >= its least value or a list of 2 (``pad``: 4) of
    them; a flag: 0 or 1."""
    if key in _FLAG_ATTRS:
        if not _is_int(value) or value not in (0, 1):
            raise _ShapeError(f"op {name!r}: attribute {key} must be 0 or 1, got {value!r:.60}")
        return
    low, n = _WINDOW_ATTRS[key]
    ok = (_is_int(value) and value >= low) or (
        isinstance(value, tuple)
        and len(value) == n
        and all(_is_int(v) and low <= v <= MAX_GRAPH_BYTES for v in value)
    )
    if not ok or (_is_int(value) and value > MAX_GRAPH_BYTES):
        raise _ShapeError(
            f"op {name!r}: attribute {key} must be an integer >= {low} or a list of {n} such "
            f"integers, got {value!r:.60}"
        )


# --- end spatial ops ----------------------------------------------------------------------
