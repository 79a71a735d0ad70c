"""Export a graph of the IR (:mod:`aegis_core.graph.ir`) and its weights as an ONNX model.

:func:`to_onnx` writes one ONNX node (or a few) per IR operator, the weights as initializers,
the graph's input and output under their IR names with their IR shapes (opset
:data:`OPSET`). It is how the onnxruntime backend runs a model that has no ONNX file of its
own (a builtin, a graph file): with the weights the numpy backend uses (a graph file's real
ones, :func:`aegis_core.graph.weights.load_weights`, else the seeded random ones of
:func:`aegis_exec.kernels.init_params`), its outputs are comparable.

The mapping is the table :data:`EXPORTERS` (IR ``fn`` -> a function emitting its nodes); an
IR operator without an entry is refused, before anything is built, by :func:`unexportable`
(one line naming the model, the operator and its fn), as is a geometry onnxruntime refuses
though the IR accepts it (a pool pad not below its kernel, a ConvTranspose output_padding not
below its stride). The ``onnx`` package is imported
lazily, by :func:`to_onnx` only: the core never needs it otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from aegis_core.graph.ir import Graph, Op, Window, window
from aegis_core.model.errors import ONNX_PIP_HINT, InputError, quote

__all__ = ["EXPORTERS", "OPSET", "to_onnx", "unexportable"]

OPSET = 19
"""The ONNX opset written (17: LayerNormalization is an operator of its own; 19: AveragePool
takes dilations; since 18 ReduceMean's axes are an input)."""

IR_VERSION = 8
"""The ONNX IR version written (every onnxruntime since 1.10 reads it)."""

EXPORT_LIMIT = (2 << 30) - (1 << 24)
"""The most weight bytes a model exported in one piece may hold (protobuf's 2 GiB, less a
margin for the graph itself)."""

_GELU_C = math.sqrt(2.0 / math.pi)


class _Emit:
    """The nodes and initializers of the model being written (``onnx.helper`` in ``h``)."""

    def __init__(self, onnx: Any, graph: Graph) -> None:
        self.h = onnx.helper
        self.numpy_helper = onnx.numpy_helper
        self.graph = graph
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def fresh(self, hint: str) -> str:
        """A tensor name no IR tensor has."""
        while True:
            self._n += 1
            name = f"{hint}/aegis{self._n}"
            if name not in self.graph.tensors:
                return name

    def node(self, op_type: str, inputs: Sequence[str], out: str | None = None,
             **attrs: Any) -> str:  # fmt: skip
        """Append one node; returns its output (``out``, or a fresh name)."""
        name = out if out is not None else self.fresh(op_type)
        self.nodes.append(self.h.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        """An initializer holding ``value`` (float32 by default; int64 for shapes)."""
        name = self.fresh("const")
        self.inits.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        return self.graph.tensors[name].shape

    def reshape(self, x: str, shape: Sequence[int], out: str | None = None) -> str:
        return self.node("Reshape", [x, self.const(list(shape), np.int64)], out)


def _geometry(e: _Emit, op: Op) -> tuple[Window, dict[str, list[int]]]:
    """The op's :func:`aegis_core.graph.ir.window` (a convolution's taps from its weight) and
    its ONNX attributes. The IR's ``pad`` ``[top, left, bottom, right]`` is ONNX's ``pads``
    order as it is (the begins of H and W, then their ends)."""
    win = _window(e.graph, op)
    attrs = {"kernel_shape": list(win.k), "strides": list(win.stride), "pads": list(win.pad),
             "dilations": list(win.dilation)}  # fmt: skip
    return win, attrs


def _window(graph: Graph, op: Op) -> Window:
    """The op's :func:`aegis_core.graph.ir.window` (a convolution's taps from its weight)."""
    taps = graph.tensors[op.inputs[1]].shape[2:] if op.kind == "conv2d" else None
    return window(dict(op.attrs), None if taps is None else (taps[0], taps[1]))


def _ort_refuses(graph: Graph, op: Op) -> str | None:
    """A geometry the IR (and ONNX) accept that onnxruntime refuses to load or run: a pool's
    pad at or past its kernel size ("Pad should be smaller than kernel"), a ConvTranspose's
    output_padding at or past its stride (ORT's output-size check), on either axis."""
    if op.fn in ("maxpool", "avgpool"):
        win = _window(graph, op)
        if any(p >= win.k[i % 2] for i, p in enumerate(win.pad)):
            return (f"pad {list(win.pad)} is not below its kernel {list(win.k)}, which "
                    "onnxruntime refuses")  # fmt: skip
    if op.fn == "conv_transpose2d":
        win = _window(graph, op)
        if any(o >= s for o, s in zip(win.output_padding, win.stride, strict=True)):
            return (f"output_padding {list(win.output_padding)} is not below its stride "
                    f"{list(win.stride)}, which onnxruntime refuses")  # fmt: skip
    return None


def _conv2d(e: _Emit, op: Op) -> None:
    e.node("Conv", op.inputs, op.output, group=int(op.attr("groups", 1)), **_geometry(e, op)[1])


def _linear(e: _Emit, op: Op) -> None:
    a, w, b = op.inputs
    e.node("Add", [e.node("MatMul", [a, w]), b], op.output)


def _matmul(e: _Emit, op: Op) -> None:
    scale = op.attr("scale")
    if scale is None:
        e.node("MatMul", op.inputs, op.output)
    else:
        e.node("Mul", [e.node("MatMul", op.inputs), e.const(scale)], op.output)


def _direct(op_type: str) -> Callable[[_Emit, Op], None]:
    def emit(e: _Emit, op: Op) -> None:
        e.node(op_type, op.inputs, op.output)

    return emit


def _relu6(e: _Emit, op: Op) -> None:
    e.node("Clip", [op.inputs[0], e.const(0.0), e.const(6.0)], op.output)


def _gelu(e: _Emit, op: Op) -> None:
    """``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (``approximate`` ``"tanh"``, the
    default) or ``0.5 x (1 + erf(x / sqrt 2))`` (``"none"``), written out in opset-17 nodes."""
    x = op.inputs[0]
    if op.attr("approximate", "tanh") == "none":
        inner = e.node("Erf", [e.node("Mul", [x, e.const(1.0 / math.sqrt(2.0))])])
    else:
        cube = e.node("Mul", [e.node("Mul", [x, x]), x])
        poly = e.node("Add", [x, e.node("Mul", [cube, e.const(0.044715)])])
        inner = e.node("Tanh", [e.node("Mul", [poly, e.const(_GELU_C)])])
    half = e.node("Mul", [x, e.const(0.5)])
    e.node("Mul", [half, e.node("Add", [inner, e.const(1.0)])], op.output)


def _softmax(e: _Emit, op: Op) -> None:
    axis = op.attr("axis", len(e.shape(op.inputs[0])) - 1)
    e.node("Softmax", op.inputs, op.output, axis=int(axis))


def _layernorm(e: _Emit, op: Op) -> None:
    e.node("LayerNormalization", op.inputs, op.output, axis=-1,
           epsilon=float(op.attr("eps", 1e-5)))  # fmt: skip


def _maxpool(e: _Emit, op: Op) -> None:
    e.node("MaxPool", op.inputs, op.output, ceil_mode=int(op.attr("ceil_mode", 0)),
           **_geometry(e, op)[1])  # fmt: skip


def _avgpool_global(e: _Emit, op: Op) -> None:
    e.node("Flatten", [e.node("GlobalAveragePool", op.inputs)], op.output, axis=1)


def _permute(e: _Emit, op: Op) -> None:
    view = e.reshape(op.inputs[0], op.attr("view"))
    moved = e.node("Transpose", [view], perm=list(op.attr("axes")))
    e.reshape(moved, e.shape(op.output), op.output)


# --- elem ops ---

_INT64_MIN = int(np.iinfo(np.int64).min)
"""ONNX Slice's "to the beginning" end for a negative step (any negative end would wrap)."""


def _hardsigmoid(e: _Emit, op: Op) -> None:
    e.node("HardSigmoid", op.inputs, op.output, alpha=float(op.attr("alpha", 0.2)),
           beta=float(op.attr("beta", 0.5)))  # fmt: skip


def _clip(e: _Emit, op: Op) -> None:
    """``Clip(x, min, max)``; a bound that is None is an omitted optional input (``""``)."""
    bounds = [op.attr(k) for k in ("min", "max")]
    e.node("Clip", [op.inputs[0], *("" if b is None else e.const(float(b)) for b in bounds)],
           op.output)  # fmt: skip


def _reduce_mean(e: _Emit, op: Op) -> None:
    """Opset 18 on: the axes are an input."""
    axes = e.const([int(a) for a in op.attr("axes")], np.int64)
    e.node("ReduceMean", [op.inputs[0], axes], op.output, keepdims=int(op.attr("keepdims", 1)))


def _concat(e: _Emit, op: Op) -> None:
    e.node("Concat", op.inputs, op.output, axis=int(op.attr("axis")))


def _slice(e: _Emit, op: Op) -> None:
    """The IR's ``begin`` / ``step`` / ``size`` as ONNX ``starts`` / ``ends`` / ``steps``: the
    end is one step past the last element, :data:`_INT64_MIN` where that is before index 0."""
    begin, step, size = (op.attr(k) for k in ("begin", "step", "size"))
    past = [b + s * n for b, s, n in zip(begin, step, size, strict=True)]
    ends = [end if end >= 0 else _INT64_MIN for end in past]
    starts, axes = e.const(list(begin), np.int64), e.const(list(range(len(begin))), np.int64)
    e.node("Slice", [op.inputs[0], starts, e.const(ends, np.int64), axes,
                     e.const(list(step), np.int64)], op.output)  # fmt: skip


def _gather(e: _Emit, op: Op) -> None:
    """Constant indices: a 0-d index (``scalar`` 1) drops the axis, a 1-d list keeps it."""
    indices = list(op.attr("indices"))
    value = indices[0] if op.attr("scalar", 0) else indices
    e.node("Gather", [op.inputs[0], e.const(value, np.int64)], op.output,
           axis=int(op.attr("axis")))  # fmt: skip


def _expand(e: _Emit, op: Op) -> None:
    e.node("Expand", [op.inputs[0], e.const(list(op.attr("shape")), np.int64)], op.output)


# --- end elem ops ---

# --- spatial ops ---


def _conv_transpose2d(e: _Emit, op: Op) -> None:
    """ConvTranspose: the IR's weight ``[C, K//groups, R, S]`` is ONNX's layout as it is."""
    win, attrs = _geometry(e, op)
    e.node("ConvTranspose", op.inputs, op.output, group=int(op.attr("groups", 1)),
           output_padding=list(win.output_padding), **attrs)  # fmt: skip


def _avgpool(e: _Emit, op: Op) -> None:
    """AveragePool (dilations: opset 19); ``count_include_pad`` 1 counts the declared pads,
    never ceil mode's extra rows, as the IR does."""
    e.node("AveragePool", op.inputs, op.output, ceil_mode=int(op.attr("ceil_mode", 0)),
           count_include_pad=int(op.attr("count_include_pad", 0)),
           **_geometry(e, op)[1])  # fmt: skip


def _maxpool_global(e: _Emit, op: Op) -> None:
    e.node("Flatten", [e.node("GlobalMaxPool", op.inputs)], op.output, axis=1)


def _resize(e: _Emit, op: Op) -> None:
    """``ah @ x @ aw^T`` as two MatMuls: ``x[N,C,H,W] @ aw^T[W,Wo]``, then ``ah[Ho,H]`` (2-D,
    broadcast over N and C) ``@`` that ``[N,C,H,Wo]``."""
    x, ah, aw = op.inputs
    rows = e.node("MatMul", [x, e.node("Transpose", [aw], perm=[1, 0])])
    e.node("MatMul", [ah, rows], op.output)


# --- end spatial ops ---


EXPORTERS: dict[str, Callable[[_Emit, Op], None]] = {
    "conv2d": _conv2d,
    "linear": _linear,
    "matmul": _matmul,
    "relu": _direct("Relu"),
    "relu6": _relu6,
    "gelu": _gelu,
    "add": _direct("Add"),
    "mul": _direct("Mul"),
    "softmax": _softmax,
    "layernorm": _layernorm,
    "maxpool": _maxpool,
    "avgpool_global": _avgpool_global,
    "permute": _permute,
    # --- elem ops ---
    "sub": _direct("Sub"),
    "div": _direct("Div"),
    "pow": _direct("Pow"),
    "sigmoid": _direct("Sigmoid"),
    "hardsigmoid": _hardsigmoid,
    "hardswish": _direct("HardSwish"),
    "tanh": _direct("Tanh"),
    "erf": _direct("Erf"),
    "sqrt": _direct("Sqrt"),
    "exp": _direct("Exp"),
    "clip": _clip,
    "reduce_mean": _reduce_mean,
    "concat": _concat,
    "slice": _slice,
    "gather": _gather,
    "expand": _expand,
    # --- end elem ops ---
    # --- spatial ops ---
    "conv_transpose2d": _conv_transpose2d,
    "avgpool": _avgpool,
    "maxpool_global": _maxpool_global,
    "resize": _resize,
    # --- end spatial ops ---
}
"""IR ``fn`` -> the function that appends its ONNX nodes (writing the op's output tensor under
its IR name and shape). ``_direct(op_type)`` serves every fn that is one ONNX node with the
same inputs (Add, Mul, Relu, ...; the binaries broadcast as ONNX's do, NumPy's rules). A new
IR fn is one entry here (and its test in tests/test_onnx_export.py)."""


def unexportable(graph: Graph) -> str | None:
    """Why ``graph`` cannot be exported (one line naming the model, the operator and its fn),
    or None; needs no ``onnx``."""
    for op in graph.ops:
        if op.fn not in EXPORTERS:
            return (f"model {quote(graph.name)}: operator {quote(op.name)} ({op.fn}) has no "
                    "ONNX export yet")  # fmt: skip
        refused = _ort_refuses(graph, op)
        if refused is not None:
            return f"model {quote(graph.name)}: operator {quote(op.name)} ({op.fn}): {refused}"
    if graph.weights_bytes > EXPORT_LIMIT:
        return (f"model {quote(graph.name)}: {graph.weights_bytes} bytes of weights, more "
                f"than one ONNX model holds ({EXPORT_LIMIT})")  # fmt: skip
    return None


def to_onnx(graph: Graph, params: Mapping[str, np.ndarray]) -> bytes:
    """``graph`` with the weights ``params`` (float32 arrays by weight tensor name, e.g.
    :func:`aegis_exec.kernels.init_params`) as a serialized ONNX model. InputError when an
    operator has no export (see :func:`unexportable`), a weight is missing, or ``onnx`` is
    not installed."""
    problem = unexportable(graph)
    if problem is not None:
        raise InputError(problem)
    try:
        import onnx
    except ImportError:
        raise InputError(
            f"exporting a model to ONNX needs the onnx package: {ONNX_PIP_HINT}"
        ) from None
    e = _Emit(onnx, graph)
    for name, t in graph.tensors.items():
        if t.role != "weight":
            continue
        if name not in params:
            raise InputError(f"model {quote(graph.name)}: no value for weight {quote(name)}")
        value = np.ascontiguousarray(params[name], dtype=np.float32).reshape(t.shape)
        e.inits.append(onnx.numpy_helper.from_array(value, name))
    for op in graph.ops:
        EXPORTERS[op.fn](e, op)
    float_ = onnx.TensorProto.FLOAT
    inp, out = graph.tensors[graph.input], graph.tensors[graph.output]
    model = e.h.make_model(
        e.h.make_graph(
            e.nodes,
            graph.name,
            [e.h.make_tensor_value_info(inp.name, float_, list(inp.shape))],
            [e.h.make_tensor_value_info(out.name, float_, list(out.shape))],
            e.inits,
        ),
        opset_imports=[e.h.make_opsetid("", OPSET)],
        producer_name="aegisrt",
    )
    model.ir_version = IR_VERSION
    data: bytes = model.SerializeToString()
    return data
