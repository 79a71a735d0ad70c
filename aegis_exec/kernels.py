"""Operator kernels written once against an array module ``xp`` (NumPy or CuPy, passed in).

Every kernel writes into preallocated buffers (``out=``, :func:`xp.copyto`, in-place ufuncs)
and allocates no array, so that :meth:`CompiledGraph.run` can be captured into a CUDA graph
with CuPy. Views are free: reshapes of contiguous buffers, transposes, slices and
``xp.lib.stride_tricks.as_strided``. Matrix products are called only with C-contiguous
operands of equal batch shape (CuPy copies, or builds pointer arrays, otherwise).

This module never imports CuPy: the caller hands in the module. :func:`reference` is an
independent float64 NumPy implementation of the same semantics, for tests.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from aegis_core.graph.ir import Graph, Op
from aegis_core.graph.scratch import scratch_shapes as workspace
from aegis_core.graph.weights import load_weights
from aegis_core.memory.planner import ws_key

from .arena import Placement, address

__all__ = [
    "CompiledGraph",
    "add",
    "avgpool_global",
    "conv2d",
    "gelu",
    "init_params",
    "layernorm",
    "linear",
    "matmul",
    "maxpool",
    "mul",
    "permute",
    "reference",
    "relu",
    "relu6",
    "softmax",
    "workspace",
]

Array = Any
"""An ``xp`` array (numpy.ndarray or cupy.ndarray)."""

_GELU_C = math.sqrt(2.0 / math.pi)


# --- kernels ------------------------------------------------------------------------------


def _pad_into(xp: ModuleType, x: Array, padded: Array, pad: int, value: float) -> None:
    """``padded`` = ``x`` surrounded by ``pad`` rows/columns of ``value`` (NCHW)."""
    hp, wp = padded.shape[2], padded.shape[3]
    padded[:, :, :pad, :].fill(value)
    padded[:, :, hp - pad :, :].fill(value)
    padded[:, :, pad : hp - pad, :pad].fill(value)
    padded[:, :, pad : hp - pad, wp - pad :].fill(value)
    xp.copyto(padded[:, :, pad : hp - pad, pad : wp - pad], x)


def _im2col(xp: ModuleType, src: Array, cols: Array, rs: tuple[int, int], stride: int) -> None:
    """``cols[n, g, (c, r, s), (p, q)] = src[n, g*Cg + c, p*stride + r, q*stride + s]``."""
    n, groups, _, _ = cols.shape
    c, r, s = src.shape[1] // groups, rs[0], rs[1]
    sn, sc, sh, sw = src.strides
    p = (src.shape[2] - r) // stride + 1
    q = (src.shape[3] - s) // stride + 1
    view = xp.lib.stride_tricks.as_strided(
        src,
        shape=(n, groups, c, r, s, p, q),
        strides=(sn, c * sc, sc, sh, sw, stride * sh, stride * sw),
    )
    xp.copyto(cols.reshape(n, groups, c, r, s, p, q), view)


def conv2d(
    xp: ModuleType,
    x: Array,
    w: Array,
    b: Array,
    out: Array,
    *,
    stride: int,
    pad: int,
    groups: int,
    padded: Array | None = None,
    cols: Array | None = None,
) -> None:
    """``out = conv(x, w) + b`` by im2col + GEMM. ``padded`` is needed when ``pad > 0``;
    ``cols`` may be None for a pointwise conv (1x1, stride 1, no pad), which multiplies ``x``
    directly."""
    n, c, h, wd = x.shape
    k, r, s = w.shape[0], w.shape[2], w.shape[3]
    kg, pq = k // groups, out.shape[2] * out.shape[3]
    src = x
    if pad:
        _pad_into(xp, x, padded, pad, 0.0)
        src = padded
    if cols is None:
        cols = src.reshape(n, groups, c // groups, h * wd)
    else:
        _im2col(xp, src, cols, (r, s), stride)
    wg = w.reshape(groups, kg, -1)
    out4 = out.reshape(n, groups, kg, pq)
    for i in range(n):
        if groups == 1:
            xp.matmul(wg[0], cols[i, 0], out=out4[i, 0])
        else:
            xp.matmul(wg, cols[i], out=out4[i])
    out3 = out.reshape(n, k, pq)
    xp.add(out3, b.reshape(k, 1), out=out3)


def linear(xp: ModuleType, a: Array, w: Array, b: Array, out: Array) -> None:
    """``out = a @ w + b`` with ``a[..., Kd]`` flattened to a 2-D product."""
    a2 = a.reshape(-1, a.shape[-1])
    o2 = out.reshape(-1, out.shape[-1])
    xp.matmul(a2, w, out=o2)
    xp.add(o2, b, out=o2)


def matmul(xp: ModuleType, a: Array, b: Array, out: Array, scale: float | None = None) -> None:
    """``out = (a @ b) * scale`` over equal batch dims."""
    xp.matmul(a, b, out=out)
    if scale is not None:
        xp.multiply(out, scale, out=out)


def relu(xp: ModuleType, x: Array, out: Array) -> None:
    xp.maximum(x, 0.0, out=out)


def relu6(xp: ModuleType, x: Array, out: Array) -> None:
    xp.maximum(x, 0.0, out=out)
    xp.minimum(out, 6.0, out=out)


def gelu(xp: ModuleType, x: Array, out: Array) -> None:
    """``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, in place in ``out``."""
    xp.multiply(x, x, out=out)
    xp.multiply(out, 0.044715, out=out)
    xp.add(out, 1.0, out=out)
    xp.multiply(out, x, out=out)
    xp.multiply(out, _GELU_C, out=out)
    xp.tanh(out, out=out)
    xp.add(out, 1.0, out=out)
    xp.multiply(out, x, out=out)
    xp.multiply(out, 0.5, out=out)


def add(xp: ModuleType, a: Array, b: Array, out: Array) -> None:
    xp.add(a, b, out=out)


def mul(xp: ModuleType, a: Array, b: Array, out: Array) -> None:
    xp.multiply(a, b, out=out)


def _rows(x: Array) -> Array:
    """``x[..., L]`` seen as ``[..., L, 1]``: reducing its axis -2 is a last-axis reduction
    that CuPy does not send to CUB's segmented reduce, which allocates (arrays and temporary
    storage) on every call; CuPy's own reduction kernel writes straight into ``out``."""
    return x.reshape(*x.shape, 1)


def softmax(xp: ModuleType, x: Array, out: Array, *, red: Array) -> None:
    """Softmax over the last axis; ``red`` is a ``[..., 1]`` scratch buffer."""
    xp.max(_rows(x), axis=-2, out=red)
    xp.subtract(x, red, out=out)
    xp.exp(out, out=out)
    xp.sum(_rows(out), axis=-2, out=red)
    xp.divide(out, red, out=out)


def layernorm(
    xp: ModuleType,
    x: Array,
    gamma: Array,
    beta: Array,
    out: Array,
    *,
    eps: float,
    mean: Array,
    std: Array,
) -> None:
    """Layer norm over the last axis; ``mean`` and ``std`` are ``[..., 1]`` scratch buffers.
    The centred square is formed in ``out`` and the centring redone, so no full-size scratch."""
    xp.mean(_rows(x), axis=-2, out=mean)
    xp.subtract(x, mean, out=out)
    xp.multiply(out, out, out=out)
    xp.mean(_rows(out), axis=-2, out=std)
    xp.add(std, eps, out=std)
    xp.sqrt(std, out=std)
    xp.subtract(x, mean, out=out)
    xp.divide(out, std, out=out)
    xp.multiply(out, gamma, out=out)
    xp.add(out, beta, out=out)


def maxpool(
    xp: ModuleType,
    x: Array,
    out: Array,
    *,
    k: int,
    stride: int,
    pad: int,
    padded: Array | None = None,
) -> None:
    """Max over ``k x k`` windows (padding is -inf): one ``maximum`` per tap."""
    src = x
    if pad:
        _pad_into(xp, x, padded, pad, -math.inf)
        src = padded
    p, q = out.shape[2], out.shape[3]
    for r in range(k):
        for s in range(k):
            tap = src[
                :, :, r : r + stride * (p - 1) + 1 : stride, s : s + stride * (q - 1) + 1 : stride
            ]
            if r == 0 and s == 0:
                xp.copyto(out, tap)
            else:
                xp.maximum(out, tap, out=out)


def avgpool_global(xp: ModuleType, x: Array, out: Array) -> None:
    """``[N, C, H, W] -> [N, C]`` mean over the spatial axes."""
    n, c = x.shape[0], x.shape[1]
    xp.mean(x.reshape(n, c, -1, 1), axis=-2, out=out.reshape(n, c, 1))


def permute(
    xp: ModuleType, x: Array, out: Array, *, view: tuple[int, ...], axes: tuple[int, ...]
) -> None:
    """``out = x.reshape(view).transpose(axes)``, contiguous, seen with ``out``'s shape."""
    shape = tuple(view[a] for a in axes)
    xp.copyto(out.reshape(shape), x.reshape(view).transpose(axes))


# --- workspaces and binding ---------------------------------------------------------------


_KERNELS: dict[str, Callable[..., None]] = {
    "conv2d": conv2d,
    "linear": linear,
    "matmul": matmul,
    "relu": relu,
    "relu6": relu6,
    "gelu": gelu,
    "add": add,
    "mul": mul,
    "softmax": softmax,
    "layernorm": layernorm,
    "maxpool": maxpool,
    "avgpool_global": avgpool_global,
    "permute": permute,
}
_ATTRS: dict[str, dict[str, Any]] = {
    "conv2d": {"stride": 1, "pad": 0, "groups": 1},
    "matmul": {"scale": None},
    "layernorm": {"eps": 1e-5},
    "maxpool": {"k": 1, "stride": 1, "pad": 0},
    "permute": {"view": (), "axes": ()},
}
"""Keyword attributes each kernel takes, with their defaults."""


def init_params(graph: Graph, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Deterministic random float32 weights and input (host NumPy), never zeros.

    Conv and linear weights are N(0, gain/fan_in) with gain 2 (He) when the output feeds a
    ReLU-like function and 1 otherwise (so residual sums stay O(1) through the depth); biases
    N(0, 0.1^2); layernorm gamma 1 + N(0, 0.1^2), beta N(0, 0.1^2); the input N(0, 1).
    """
    rng = np.random.default_rng(seed)
    activated = {i for op in graph.ops if op.fn in ("relu", "relu6", "gelu") for i in op.inputs}
    gains: dict[str, float] = {}
    for op in graph.ops:
        if op.fn in ("conv2d", "linear"):
            w = graph.tensors[op.inputs[1]].shape
            fan_in = math.prod(w[1:]) if op.fn == "conv2d" else w[0]
            gains[op.inputs[1]] = math.sqrt((2.0 if op.output in activated else 1.0) / fan_in)
        if op.fn == "layernorm":
            gains[op.inputs[1]] = -1.0  # marker: gamma around 1
    params: dict[str, np.ndarray] = {}
    for name, t in graph.tensors.items():
        if t.role != "weight":
            continue
        v = rng.standard_normal(t.shape)
        gain = gains.get(name)
        v = 1.0 + 0.1 * v if gain == -1.0 else v * (0.1 if gain is None else gain)
        params[name] = v.astype(np.float32)
    x = rng.standard_normal(graph.tensors[graph.input].shape).astype(np.float32)
    return params, x


def _bind(
    xp: ModuleType, op: Op, tensors: Mapping[str, Array], ws: Mapping[str, Array]
) -> Callable[[], None]:
    kwargs = {k: op.attr(k, d) for k, d in _ATTRS.get(op.fn, {}).items()}
    args = [tensors[i] for i in op.inputs]
    return functools.partial(_KERNELS[op.fn], xp, *args, tensors[op.output], **kwargs, **ws)


class CompiledGraph:
    """A graph bound to buffers of ``xp``: every tensor and scratch buffer allocated once.

    ``alloc(shape)`` returns an uninitialised, C-contiguous float32 ``xp`` array (default
    ``xp.empty``). With a ``placement`` (:mod:`aegis_exec.arena`), activations and scratch
    buffers are views at their planned offsets in a shared arena instead; ``nbytes`` counts
    what was allocated apart, ``addresses`` each buffer's first byte. Weights and the input
    get :func:`init_params` values (the weights are the graph's real ones where it has them,
    :func:`aegis_core.graph.weights.load_weights`). :meth:`run` allocates nothing.
    """

    def __init__(
        self,
        graph: Graph,
        xp: ModuleType,
        alloc: Callable[[tuple[int, ...]], Any] | None = None,
        *,
        seed: int = 0,
        placement: Placement | None = None,
    ) -> None:
        self.graph = graph
        self.xp = xp
        self.nbytes = 0
        self.addresses: dict[str, int] = {}
        make = alloc if alloc is not None else functools.partial(_empty, xp)

        def take(shape: tuple[int, ...], key: str) -> Array:
            buf = placement.view(key, tuple(shape)) if placement is not None else None
            if buf is None:  # not planned (weights, the input) or no plan: a buffer of its own
                buf = make(tuple(shape))
                self.nbytes += math.prod(shape) * 4
            if tuple(buf.shape) != tuple(shape) or buf.dtype != np.float32:
                raise ValueError(f"alloc({shape}) returned {buf.dtype} {buf.shape}")
            self.addresses[key] = address(buf)
            return buf

        self.tensors: dict[str, Array] = {n: take(t.shape, n) for n, t in graph.tensors.items()}
        self.workspaces = [
            {k: take(s, ws_key(i, k)) for k, s in workspace(op, graph).items()}
            for i, op in enumerate(graph.ops)
        ]
        params, x = init_params(graph, seed)
        real = load_weights(graph)  # an imported model's own weights; else random ones
        for name, value in (params if real is None else real).items():
            _upload(self.tensors[name], value)
        _upload(self.tensors[graph.input], x)
        self._calls = [
            _bind(xp, op, self.tensors, ws)
            for op, ws in zip(graph.ops, self.workspaces, strict=True)
        ]

    @property
    def output(self) -> Array:
        return self.tensors[self.graph.output]

    @property
    def inputs(self) -> Array:
        """The graph's input buffer (write a new sample into it in place)."""
        return self.tensors[self.graph.input]

    def run(self, ops: range | None = None) -> None:
        """Execute ``ops`` (default: all) in order, into the preallocated buffers."""
        calls = self._calls if ops is None else self._calls[ops.start : ops.stop : ops.step]
        for call in calls:
            call()


def _upload(buf: Array, host: np.ndarray) -> None:
    """Copy host values into ``buf``; on CuPy straight from the host (``ndarray.set``), so
    no temporary device array is allocated."""
    if isinstance(buf, np.ndarray):
        buf[...] = host
    else:
        buf.set(np.ascontiguousarray(host, dtype=np.float32))


def _empty(xp: ModuleType, shape: tuple[int, ...]) -> Array:
    return xp.empty(shape, dtype=xp.float32)


# --- float64 reference --------------------------------------------------------------------


def _ref_conv(x: Any, w: Any, b: Any, op: Op) -> Any:
    stride, pad, g = op.attr("stride", 1), op.attr("pad", 0), op.attr("groups", 1)
    n, c = x.shape[:2]
    k, cg, r_, s_ = w.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    p = (xp_.shape[2] - r_) // stride + 1
    q = (xp_.shape[3] - s_) // stride + 1
    wg = w.reshape(g, k // g, cg, r_, s_)
    out = np.zeros((n, g, k // g, p, q))
    for r in range(r_):
        for s in range(s_):
            tap = xp_[
                :, :, r : r + stride * (p - 1) + 1 : stride, s : s + stride * (q - 1) + 1 : stride
            ]
            out += np.einsum("ngcpq,gkc->ngkpq", tap.reshape(n, g, c // g, p, q), wg[:, :, :, r, s])
    return out.reshape(n, k, p, q) + b.reshape(1, k, 1, 1)


def _ref_maxpool(x: Any, op: Op) -> Any:
    k, stride, pad = op.attr("k"), op.attr("stride"), op.attr("pad")
    xp_ = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    p = (xp_.shape[2] - k) // stride + 1
    q = (xp_.shape[3] - k) // stride + 1
    taps = [
        xp_[:, :, r : r + stride * (p - 1) + 1 : stride, s : s + stride * (q - 1) + 1 : stride]
        for r in range(k)
        for s in range(k)
    ]
    return np.max(np.stack(taps), axis=0)


def _ref_op(op: Op, ins: list[Any], out_shape: tuple[int, ...]) -> Any:
    x = ins[0]
    fn = op.fn
    if fn == "conv2d":
        return _ref_conv(x, ins[1], ins[2], op)
    if fn == "linear":
        return x @ ins[1] + ins[2]
    if fn == "matmul":
        scale = op.attr("scale")
        return (x @ ins[1]) * (1.0 if scale is None else scale)
    if fn == "relu":
        return np.where(x > 0, x, 0.0)
    if fn == "relu6":
        return np.clip(x, 0.0, 6.0)
    if fn == "gelu":
        return 0.5 * x * (1.0 + np.tanh(_GELU_C * (x + 0.044715 * x**3)))
    if fn == "add":
        return x + ins[1]
    if fn == "mul":
        return x * ins[1]
    if fn == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if fn == "layernorm":
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + op.attr("eps", 1e-5)) * ins[1] + ins[2]
    if fn == "maxpool":
        return _ref_maxpool(x, op)
    if fn == "avgpool_global":
        return x.mean(axis=(2, 3))
    if fn == "permute":
        return x.reshape(op.attr("view")).transpose(op.attr("axes")).reshape(out_shape)
    raise ValueError(f"unknown operator function {fn!r}")


def reference(graph: Graph, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Run ``graph`` plainly in float64 NumPy (independent of the kernels above)."""
    values: dict[str, np.ndarray] = {graph.input: np.asarray(x, dtype=np.float64)}
    for name, v in params.items():
        values[name] = np.asarray(v, dtype=np.float64)
    for op in graph.ops:
        shape = graph.tensors[op.output].shape
        values[op.output] = _ref_op(op, [values[i] for i in op.inputs], shape)
    return np.asarray(values[graph.output])
