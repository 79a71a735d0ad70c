"""Operator kernels written once against an array module ``xp`` (NumPy or CuPy, passed in).

Every kernel writes into preallocated buffers (``out=``, :func:`xp.copyto`, in-place ufuncs)
and allocates no array, so that :meth:`CompiledGraph.run` can be captured into a CUDA graph
with CuPy. Views are free: reshapes of contiguous buffers, transposes, slices and
``xp.lib.stride_tricks.as_strided``. Matrix products are called with C-contiguous operands;
``matmul``'s batch dims may broadcast (on the CUDA-graph path :mod:`.backends.sgemm` takes
them as zero strides; plain CuPy may copy). Reductions see their input as ``[pre, L, post]``
and reduce the middle axis (:func:`_rows`, :func:`_around`).

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
    "clip",
    "concat",
    "conv2d",
    "div",
    "erf",
    "exp",
    "expand",
    "gather",
    "gelu",
    "hardsigmoid",
    "hardswish",
    "init_params",
    "layernorm",
    "linear",
    "matmul",
    "maxpool",
    "mul",
    "permute",
    "pow_",
    "reduce_mean",
    "reference",
    "relu",
    "relu6",
    "seeded_input",
    "sigmoid",
    "slice_",
    "softmax",
    "sqrt",
    "sub",
    "tanh",
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
    """``out = (a @ b) * scale``, batch dims broadcast (NumPy rules)."""
    xp.matmul(a, b, out=out)
    if scale is not None:
        xp.multiply(out, scale, out=out)


def relu(xp: ModuleType, x: Array, out: Array) -> None:
    xp.maximum(x, 0.0, out=out)


def relu6(xp: ModuleType, x: Array, out: Array) -> None:
    xp.maximum(x, 0.0, out=out)
    xp.minimum(out, 6.0, out=out)


def gelu(
    xp: ModuleType, x: Array, out: Array, *, approximate: str = "tanh", tmp: Array | None = None
) -> None:
    """``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, in place in ``out``;
    ``approximate="none"``: ``0.5 x (1 + erf(x / sqrt(2)))`` (``tmp``: a scratch like ``x``)."""
    if approximate == "none":
        _erf_into(xp, x, out, tmp, _SQRT_HALF)
        xp.add(out, 1.0, out=out)
        xp.multiply(out, x, out=out)
        xp.multiply(out, 0.5, out=out)
        return
    xp.multiply(x, x, out=out)
    xp.multiply(out, 0.044715, out=out)
    xp.add(out, 1.0, out=out)
    xp.multiply(out, x, out=out)
    xp.multiply(out, _GELU_C, out=out)
    xp.tanh(out, out=out)
    xp.add(out, 1.0, out=out)
    xp.multiply(out, x, out=out)
    xp.multiply(out, 0.5, out=out)


def _rows(x: Array) -> Array:
    """``x[..., L]`` seen as ``[..., L, 1]``: reducing its axis -2 is a last-axis reduction
    that CuPy does not send to CUB's segmented reduce, which allocates (arrays and temporary
    storage) on every call; CuPy's own reduction kernel writes straight into ``out``."""
    return x.reshape(*x.shape, 1)


def softmax(xp: ModuleType, x: Array, out: Array, *, red: Array, axis: int | None = None) -> None:
    """Softmax over ``axis`` (None: the last); ``red`` is ``x``'s shape with 1 on the axis.
    ``x`` is seen as ``[pre, L, post]`` and reduced over its middle axis (the last axis:
    ``post = 1``, :func:`_rows`)."""
    x3, red3 = _around(x, axis), _around(red, axis)
    out3, red2 = _around(out, axis), red3.reshape(red3.shape[0], red3.shape[2])
    xp.max(x3, axis=1, out=red2)
    xp.subtract(x3, red3, out=out3)
    xp.exp(out3, out=out3)
    xp.sum(out3, axis=1, out=red2)
    xp.divide(out3, red3, out=out3)


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


# --- elem ops: broadcasting binaries, unaries, reductions, shape ops -----------------------

_SQRT_HALF = math.sqrt(0.5)
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
"""Abramowitz & Stegun 7.1.26: ``erf(x) = 1 - t (a1 + t (a2 + ...)) exp(-x^2)``,
``t = 1 / (1 + p |x|)``, odd in ``x``; absolute error below 1.5e-7."""


def add(xp: ModuleType, a: Array, b: Array, out: Array) -> None:
    xp.add(a, b, out=out)


def sub(xp: ModuleType, a: Array, b: Array, out: Array) -> None:
    xp.subtract(a, b, out=out)


def mul(xp: ModuleType, a: Array, b: Array, out: Array) -> None:
    xp.multiply(a, b, out=out)


def div(xp: ModuleType, a: Array, b: Array, out: Array) -> None:
    xp.divide(a, b, out=out)


def pow_(xp: ModuleType, a: Array, b: Array, out: Array) -> None:
    xp.power(a, b, out=out)


def sigmoid(xp: ModuleType, x: Array, out: Array) -> None:
    """``1 / (1 + exp(-x))`` as ``0.5 tanh(x / 2) + 0.5`` (no overflow)."""
    xp.multiply(x, 0.5, out=out)
    xp.tanh(out, out=out)
    xp.multiply(out, 0.5, out=out)
    xp.add(out, 0.5, out=out)


def hardsigmoid(xp: ModuleType, x: Array, out: Array, *, alpha: float, beta: float) -> None:
    """``max(0, min(1, alpha x + beta))``."""
    xp.multiply(x, alpha, out=out)
    xp.add(out, beta, out=out)
    xp.maximum(out, 0.0, out=out)
    xp.minimum(out, 1.0, out=out)


def hardswish(xp: ModuleType, x: Array, out: Array) -> None:
    """``x * hardsigmoid(x, 1/6, 1/2)``."""
    hardsigmoid(xp, x, out, alpha=1.0 / 6.0, beta=0.5)
    xp.multiply(out, x, out=out)


def tanh(xp: ModuleType, x: Array, out: Array) -> None:
    xp.tanh(x, out=out)


def sqrt(xp: ModuleType, x: Array, out: Array) -> None:
    xp.sqrt(x, out=out)


def exp(xp: ModuleType, x: Array, out: Array) -> None:
    xp.exp(x, out=out)


def _erf_into(xp: ModuleType, x: Array, out: Array, tmp: Array, scale: float) -> None:
    """``out = erf(scale * x)`` (:data:`_ERF_A`), with ``tmp`` a scratch of ``x``'s shape."""
    xp.absolute(x, out=tmp)
    xp.multiply(tmp, _ERF_P * scale, out=tmp)
    xp.add(tmp, 1.0, out=tmp)
    xp.reciprocal(tmp, out=tmp)  # t
    xp.multiply(tmp, _ERF_A[4], out=out)
    for a in _ERF_A[3::-1]:
        xp.add(out, a, out=out)
        xp.multiply(out, tmp, out=out)
    xp.multiply(x, x, out=tmp)
    xp.multiply(tmp, -scale * scale, out=tmp)
    xp.exp(tmp, out=tmp)
    xp.multiply(out, tmp, out=out)
    xp.subtract(1.0, out, out=out)
    xp.copysign(out, x, out=out)


def erf(xp: ModuleType, x: Array, out: Array, *, tmp: Array) -> None:
    """The error function (:data:`_ERF_A`); ``tmp`` is a scratch buffer of ``x``'s shape."""
    _erf_into(xp, x, out, tmp, 1.0)


def clip(xp: ModuleType, x: Array, out: Array, *, min: float | None, max: float | None) -> None:
    """``min(max(x, min), max)``; a bound of None is no bound."""
    if min is None and max is None:
        xp.copyto(out, x)
        return
    if min is not None:
        xp.maximum(x, min, out=out)
    if max is not None:
        xp.minimum(out if min is not None else x, max, out=out)


def _around(x: Array, axis: int | None) -> Array:
    """``x`` seen as ``[prod(before axis), x.shape[axis], prod(after axis)]``."""
    axis = x.ndim - 1 if axis is None else axis
    return x.reshape(math.prod(x.shape[:axis]), x.shape[axis], -1)


def reduce_mean(
    xp: ModuleType, x: Array, out: Array, *, axes: tuple[int, ...], keepdims: int
) -> None:
    """Mean over ``axes`` (sorted). Adjacent axes: ``x`` seen as ``[pre, reduced, post]``
    and its middle axis reduced (the last axes: ``post = 1``, the :func:`_rows` form)."""
    del keepdims  # the output's own shape says it; the buffer is the same
    first, last = axes[0], axes[-1]
    if last - first + 1 == len(axes):
        pre, post = math.prod(x.shape[:first]), math.prod(x.shape[last + 1 :])
        xp.mean(x.reshape(pre, -1, post), axis=1, out=out.reshape(pre, post))
        return
    kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    xp.mean(x, axis=axes, keepdims=True, out=out.reshape(kept))


def concat(xp: ModuleType, *arrays: Array, axis: int) -> None:
    """``out`` (the last argument) = the inputs joined along ``axis``."""
    out, start = arrays[-1], 0
    for a in arrays[:-1]:
        n = a.shape[axis]
        xp.copyto(out[(slice(None),) * axis + (slice(start, start + n),)], a)
        start += n


def _slices(
    begin: tuple[int, ...], step: tuple[int, ...], size: tuple[int, ...]
) -> tuple[Any, ...]:
    """Python slices taking ``begin + step * i`` for ``i < size`` on each axis."""
    return tuple(
        slice(b, (b + s * n) if b + s * n >= 0 else None, s)
        for b, s, n in zip(begin, step, size, strict=True)
    )


def slice_(
    xp: ModuleType,
    x: Array,
    out: Array,
    *,
    begin: tuple[int, ...],
    step: tuple[int, ...],
    size: tuple[int, ...],
) -> None:
    """``out`` = the strided part of ``x`` (``begin + step * i`` on each axis)."""
    xp.copyto(out, x[_slices(begin, step, size)])


def gather(
    xp: ModuleType, x: Array, out: Array, *, axis: int, indices: tuple[int, ...], scalar: int
) -> None:
    """``out`` = ``x`` at ``indices`` along ``axis`` (``scalar``: one index, the axis
    dropped). Evenly spaced indices are one strided copy, others one copy each."""
    del scalar  # the output's own shape says it
    out = out.reshape(*x.shape[:axis], len(indices), *x.shape[axis + 1 :])
    lead = (slice(None),) * axis
    n, first = len(indices), indices[0]
    step = indices[1] - first if n > 1 else 1
    if step != 0 and all(i == first + step * k for k, i in enumerate(indices)):
        xp.copyto(out, x[(*lead, *_slices((first,), (step,), (n,)))])
        return
    for k, i in enumerate(indices):
        xp.copyto(out[(*lead, slice(k, k + 1))], x[(*lead, slice(i, i + 1))])


def expand(xp: ModuleType, x: Array, out: Array, *, shape: tuple[int, ...]) -> None:
    """``out`` = ``x`` broadcast to ``shape`` (the output's shape)."""
    del shape
    xp.copyto(out, x)


# --- workspaces and binding ---------------------------------------------------------------


_KERNELS: dict[str, Callable[..., None]] = {
    "conv2d": conv2d,
    "linear": linear,
    "matmul": matmul,
    "relu": relu,
    "relu6": relu6,
    "gelu": gelu,
    "softmax": softmax,
    "layernorm": layernorm,
    "maxpool": maxpool,
    "avgpool_global": avgpool_global,
    "permute": permute,
    # --- elem ops ---
    "add": add,
    "sub": sub,
    "mul": mul,
    "div": div,
    "pow": pow_,
    "sigmoid": sigmoid,
    "hardsigmoid": hardsigmoid,
    "hardswish": hardswish,
    "tanh": tanh,
    "erf": erf,
    "sqrt": sqrt,
    "exp": exp,
    "clip": clip,
    "reduce_mean": reduce_mean,
    "concat": concat,
    "slice": slice_,
    "gather": gather,
    "expand": expand,
    # --- end elem ops ---
}
_ATTRS: dict[str, dict[str, Any]] = {
    "conv2d": {"stride": 1, "pad": 0, "groups": 1},
    "matmul": {"scale": None},
    "layernorm": {"eps": 1e-5},
    "maxpool": {"k": 1, "stride": 1, "pad": 0},
    "permute": {"view": (), "axes": ()},
    # --- elem ops ---
    "gelu": {"approximate": "tanh"},
    "softmax": {"axis": None},
    "hardsigmoid": {"alpha": 0.2, "beta": 0.5},
    "clip": {"min": None, "max": None},
    "reduce_mean": {"axes": (), "keepdims": 1},
    "concat": {"axis": 0},
    "slice": {"begin": (), "step": (), "size": ()},
    "gather": {"axis": 0, "indices": (), "scalar": 0},
    "expand": {"shape": ()},
    # --- end elem ops ---
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
    return params, _draw_input(rng, graph)


SKIP_CHUNK = 1 << 16
"""How many normals :func:`seeded_input` draws at a time while skipping the weights' draws."""


def seeded_input(graph: Graph, seed: int = 0) -> np.ndarray:
    """The very input :func:`init_params` draws for ``seed``, without making the weights (a
    graph with real ones needs only the input): the same generator draws the weights'
    normals in the same order, :data:`SKIP_CHUNK` at a time into one reused buffer (NumPy's
    ``standard_normal`` fills element by element, so how the draws are split changes no
    value), then the input."""
    rng = np.random.default_rng(seed)
    skip = np.empty(SKIP_CHUNK)
    for t in graph.tensors.values():
        if t.role != "weight":
            continue
        for start in range(0, t.size, SKIP_CHUNK):
            rng.standard_normal(out=skip[: min(SKIP_CHUNK, t.size - start)])
    return _draw_input(rng, graph)


def _draw_input(rng: np.random.Generator, graph: Graph) -> np.ndarray:
    """The input's draw, after every weight's: N(0, 1), float32."""
    return rng.standard_normal(graph.tensors[graph.input].shape).astype(np.float32)


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
    :func:`aegis_core.graph.weights.load_weights`, and the input then
    :func:`seeded_input`'s, the same array). :meth:`run` allocates nothing.
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
        real = load_weights(graph)  # an imported model's own weights; else random ones
        params, x = init_params(graph, seed) if real is None else (real, seeded_input(graph, seed))
        for name, value in params.items():
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
    if fn in _ELEM_REF:
        return _ELEM_REF[fn](op, ins, out_shape)
    if fn == "conv2d":
        return _ref_conv(x, ins[1], ins[2], op)
    if fn == "linear":
        return x @ ins[1] + ins[2]
    if fn == "relu":
        return np.where(x > 0, x, 0.0)
    if fn == "relu6":
        return np.clip(x, 0.0, 6.0)
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


# --- elem ops' reference ---


def _np_erf(x: Any) -> Any:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _ref_gelu(op: Op, ins: list[Any], _: tuple[int, ...]) -> Any:
    x = ins[0]
    if op.attr("approximate", "tanh") == "none":
        return 0.5 * x * (1.0 + _np_erf(x / math.sqrt(2.0)))
    return 0.5 * x * (1.0 + np.tanh(_GELU_C * (x + 0.044715 * x**3)))


def _ref_softmax(op: Op, ins: list[Any], _: tuple[int, ...]) -> Any:
    axis = op.attr("axis", ins[0].ndim - 1)
    e = np.exp(ins[0] - ins[0].max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _ref_matmul(op: Op, ins: list[Any], _: tuple[int, ...]) -> Any:
    scale = op.attr("scale")
    return np.matmul(ins[0], ins[1]) * (1.0 if scale is None else scale)


def _ref_clip(op: Op, ins: list[Any], _: tuple[int, ...]) -> Any:
    lo, hi = op.attr("min"), op.attr("max")
    x = ins[0] if lo is None else np.maximum(ins[0], lo)
    return x if hi is None else np.minimum(x, hi)


def _ref_slice(op: Op, ins: list[Any], _: tuple[int, ...]) -> Any:
    index = [
        b + s * np.arange(n)
        for b, s, n in zip(op.attr("begin"), op.attr("step"), op.attr("size"), strict=True)
    ]
    return ins[0][np.ix_(*index)]


def _ref_gather(op: Op, ins: list[Any], _: tuple[int, ...]) -> Any:
    indices = list(op.attr("indices"))
    taken = np.take(ins[0], indices[0] if op.attr("scalar", 0) else indices, axis=op.attr("axis"))
    return taken


def _ref_hardsigmoid(x: Any, alpha: float, beta: float) -> Any:
    return np.clip(alpha * x + beta, 0.0, 1.0)


_ELEM_REF: dict[str, Callable[[Op, list[Any], tuple[int, ...]], Any]] = {
    "add": lambda op, ins, _: ins[0] + ins[1],
    "sub": lambda op, ins, _: ins[0] - ins[1],
    "mul": lambda op, ins, _: ins[0] * ins[1],
    "div": lambda op, ins, _: ins[0] / ins[1],
    "pow": lambda op, ins, _: np.power(ins[0], ins[1]),
    "gelu": _ref_gelu,
    "sigmoid": lambda op, ins, _: 1.0 / (1.0 + np.exp(-ins[0])),
    "hardsigmoid": lambda op, ins, _: _ref_hardsigmoid(
        ins[0], op.attr("alpha", 0.2), op.attr("beta", 0.5)
    ),
    "hardswish": lambda op, ins, _: ins[0] * _ref_hardsigmoid(ins[0], 1.0 / 6.0, 0.5),
    "tanh": lambda op, ins, _: np.tanh(ins[0]),
    "erf": lambda op, ins, _: _np_erf(ins[0]),
    "sqrt": lambda op, ins, _: np.sqrt(ins[0]),
    "exp": lambda op, ins, _: np.exp(ins[0]),
    "clip": _ref_clip,
    "matmul": _ref_matmul,
    "softmax": _ref_softmax,
    "reduce_mean": lambda op, ins, _: np.mean(
        ins[0], axis=tuple(op.attr("axes")), keepdims=bool(op.attr("keepdims", 1))
    ),
    "concat": lambda op, ins, _: np.concatenate(ins, axis=op.attr("axis")),
    "slice": _ref_slice,
    "gather": _ref_gather,
    "expand": lambda op, ins, out_shape: np.broadcast_to(ins[0], out_shape),
}
"""The elem ops' float64 reference (``_ref_op`` asks here first)."""


def reference(graph: Graph, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Run ``graph`` plainly in float64 NumPy (independent of the kernels above)."""
    values: dict[str, np.ndarray] = {graph.input: np.asarray(x, dtype=np.float64)}
    for name, v in params.items():
        values[name] = np.asarray(v, dtype=np.float64)
    for op in graph.ops:
        shape = graph.tensors[op.output].shape
        values[op.output] = _ref_op(op, [values[i] for i in op.inputs], shape)
    return np.asarray(values[graph.output])
