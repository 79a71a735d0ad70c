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

from aegis_core.graph.ir import Graph, Op, Window, window
from aegis_core.graph.scratch import scratch_shapes as workspace
from aegis_core.graph.weights import load_weights
from aegis_core.memory.planner import ws_key

from .arena import Placement, address

__all__ = [
    "CompiledGraph",
    "add",
    "avgpool",
    "avgpool_global",
    "clip",
    "concat",
    "conv2d",
    "conv_transpose2d",
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
    "maxpool_global",
    "mul",
    "permute",
    "pow_",
    "reduce_mean",
    "reference",
    "relu",
    "relu6",
    "resize",
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


def permute(
    xp: ModuleType, x: Array, out: Array, *, view: tuple[int, ...], axes: tuple[int, ...]
) -> None:
    """``out = x.reshape(view).transpose(axes)``, contiguous, seen with ``out``'s shape."""
    shape = tuple(view[a] for a in axes)
    xp.copyto(out.reshape(shape), x.reshape(view).transpose(axes))


# --- spatial ops: convolutions, pools, resize -----------------------------------------------


def _pad_into(xp: ModuleType, x: Array, padded: Array, top: int, left: int, value: float) -> None:
    """``padded`` = ``x`` placed at ``(top, left)``, every other element ``value`` (NCHW)."""
    h, w = x.shape[2], x.shape[3]
    padded[:, :, :top, :].fill(value)
    padded[:, :, top + h :, :].fill(value)
    padded[:, :, top : top + h, :left].fill(value)
    padded[:, :, top : top + h, left + w :].fill(value)
    xp.copyto(padded[:, :, top : top + h, left : left + w], x)


def _source(
    xp: ModuleType, x: Array, win: Window, padded: Array | None, value: float = 0.0
) -> Array:
    """The input as the windows see it: ``padded`` filled (pads ``value``), else ``x``."""
    if padded is None:
        return x
    _pad_into(xp, x, padded, win.pad[0], win.pad[1], value)
    return padded


def _tap(src: Array, win: Window, r: int, s: int, pq: tuple[int, int]) -> Array:
    """The ``[N, C, P, Q]`` view of ``src`` that window tap ``(r, s)`` reads."""
    (sh, sw), (dh, dw), (p, q) = win.stride, win.dilation, pq
    h0, w0 = r * dh, s * dw
    return src[:, :, h0 : h0 + sh * (p - 1) + 1 : sh, w0 : w0 + sw * (q - 1) + 1 : sw]


def _im2col(xp: ModuleType, src: Array, cols: Array, win: Window, pq: tuple[int, int]) -> None:
    """``cols[n, g, (c, r, s), (p, q)] = src[n, g*Cg + c, p*sh + r*dh, q*sw + s*dw]``."""
    n, groups, _, _ = cols.shape
    c, (r, s), (p, q) = src.shape[1] // groups, win.k, pq
    sn, sc, sh, sw = src.strides
    view = xp.lib.stride_tricks.as_strided(
        src,
        shape=(n, groups, c, r, s, p, q),
        strides=(
            sn,
            c * sc,
            sc,
            win.dilation[0] * sh,
            win.dilation[1] * sw,
            win.stride[0] * sh,
            win.stride[1] * sw,
        ),
    )
    xp.copyto(cols.reshape(n, groups, c, r, s, p, q), view)


def _grouped_matmul(xp: ModuleType, wg: Array, cols: Array, out: Array) -> None:
    """``out[i, g] = wg[g] @ cols[i, g]`` for every sample ``i`` and group ``g``: one GEMM per
    sample (batched over the groups; a plain 2-D one for a single group)."""
    for i in range(cols.shape[0]):
        if wg.shape[0] == 1:
            xp.matmul(wg[0], cols[i, 0], out=out[i, 0])
        else:
            xp.matmul(wg, cols[i], out=out[i])


def conv2d(
    xp: ModuleType,
    x: Array,
    w: Array,
    b: Array,
    out: Array,
    *,
    stride: Any,
    pad: Any,
    groups: int,
    dilation: Any = 1,
    padded: Array | None = None,
    cols: Array | None = None,
) -> None:
    """``out = conv(x, w) + b`` by im2col + GEMM, geometry from :func:`ir.window`.
    ``padded`` is needed when padded; ``cols`` may be None for a pointwise conv (1x1,
    stride 1, no pad), which multiplies ``x`` directly."""
    n, c, h, wd = x.shape
    k, r, s = w.shape[0], w.shape[2], w.shape[3]
    win = window({"stride": stride, "pad": pad, "dilation": dilation}, (r, s))
    kg, pq = k // groups, out.shape[2] * out.shape[3]
    src = _source(xp, x, win, padded)
    if cols is None:
        cols = src.reshape(n, groups, c // groups, h * wd)
    else:
        _im2col(xp, src, cols, win, (out.shape[2], out.shape[3]))
    _grouped_matmul(xp, w.reshape(groups, kg, -1), cols, out.reshape(n, groups, kg, pq))
    out3 = out.reshape(n, k, pq)
    xp.add(out3, b.reshape(k, 1), out=out3)


def conv_transpose2d(
    xp: ModuleType,
    x: Array,
    w: Array,
    b: Array,
    out: Array,
    *,
    stride: Any,
    pad: Any,
    dilation: Any,
    output_padding: Any,
    groups: int,
    wt: Array,
    cols: Array,
    full: Array | None = None,
) -> None:
    """``out`` = the transposed convolution of ``x`` by ``w[C, K//groups, R, S]``, plus ``b``:
    per group one GEMM ``cols = w_g^T @ x_g`` (every input pixel's contribution to every
    tap), then col2im: tap ``(r, s)`` of ``cols`` is added at stride into the uncropped
    output (``full``, or ``out`` itself when nothing is cropped), finally cropped by the
    pads. ``wt`` holds the weight transposed per group (copied here: a GEMM operand must be
    C-contiguous)."""
    n, c, h, wd = x.shape
    kg, r, s = w.shape[1], w.shape[2], w.shape[3]
    k, cg = kg * groups, c // groups
    win = window(
        {"stride": stride, "pad": pad, "dilation": dilation, "output_padding": output_padding},
        (r, s),
    )
    xp.copyto(wt, w.reshape(groups, cg, kg * r * s).transpose(0, 2, 1))
    _grouped_matmul(xp, wt, x.reshape(n, groups, cg, h * wd), cols)
    dst = out if full is None else full
    dst.fill(0.0)
    taps = cols.reshape(n, k, r, s, h, wd)
    for ri in range(r):
        for si in range(s):
            view = _tap(dst, win, ri, si, (h, wd))
            xp.add(view, taps[:, :, ri, si], out=view)
    if full is not None:
        top, left = win.pad[0], win.pad[1]
        xp.copyto(out, full[:, :, top : top + out.shape[2], left : left + out.shape[3]])
    xp.add(out, b.reshape(1, k, 1, 1), out=out)


def _pool_taps(
    xp: ModuleType, src: Array, out: Array, win: Window, reduce: Callable[..., Any]
) -> None:
    """``out`` = ``reduce`` (``xp.maximum`` or ``xp.add``) over the window taps of ``src``."""
    pq = (out.shape[2], out.shape[3])
    for r in range(win.k[0]):
        for s in range(win.k[1]):
            tap = _tap(src, win, r, s, pq)
            if r == 0 and s == 0:
                xp.copyto(out, tap)
            else:
                reduce(out, tap, out=out)


def maxpool(
    xp: ModuleType,
    x: Array,
    out: Array,
    *,
    k: Any,
    stride: Any,
    pad: Any,
    dilation: Any = 1,
    ceil_mode: int = 0,
    padded: Array | None = None,
) -> None:
    """Max over the windows (padding, ceil mode's included, is -inf): one ``maximum`` per
    tap."""
    win = window({"k": k, "stride": stride, "pad": pad, "dilation": dilation})
    _pool_taps(xp, _source(xp, x, win, padded, -math.inf), out, win, xp.maximum)


def avgpool(
    xp: ModuleType,
    x: Array,
    out: Array,
    *,
    k: Any,
    stride: Any,
    pad: Any,
    dilation: Any,
    ceil_mode: int,
    count_include_pad: int,
    padded: Array | None = None,
    mask: Array | None = None,
    count: Array | None = None,
) -> None:
    """Mean over the windows: the sum of the taps (padding is 0) divided by the number of
    counted elements — ``kh*kw`` when every window counts as many (no ``mask``), else the
    taps of ``mask`` (1 on the input, and on the declared pads with ``count_include_pad``;
    never on ceil mode's extra rows) summed into ``count``."""
    win = window({"k": k, "stride": stride, "pad": pad, "dilation": dilation})
    _pool_taps(xp, _source(xp, x, win, padded), out, win, xp.add)
    if mask is None or count is None:
        xp.multiply(out, 1.0 / (win.k[0] * win.k[1]), out=out)
        return
    h, w = x.shape[2], x.shape[3]
    top, left, bottom, right = win.pad
    mask.fill(0.0)
    if count_include_pad:
        mask[:, :, : top + h + bottom, : left + w + right].fill(1.0)
    else:
        mask[:, :, top : top + h, left : left + w].fill(1.0)
    _pool_taps(xp, mask, count, win, xp.add)
    xp.maximum(count, 1.0, out=count)
    xp.divide(out, count, out=out)


def avgpool_global(xp: ModuleType, x: Array, out: Array) -> None:
    """``[N, C, H, W] -> [N, C]`` mean over the spatial axes."""
    n, c = x.shape[0], x.shape[1]
    xp.mean(x.reshape(n, c, -1, 1), axis=-2, out=out.reshape(n, c, 1))


def maxpool_global(xp: ModuleType, x: Array, out: Array) -> None:
    """``[N, C, H, W] -> [N, C]`` max over the spatial axes."""
    n, c = x.shape[0], x.shape[1]
    xp.max(x.reshape(n, c, -1, 1), axis=-2, out=out.reshape(n, c, 1))


def resize(
    xp: ModuleType,
    x: Array,
    ah: Array,
    aw: Array,
    out: Array,
    *,
    awt: Array,
    ahb: Array,
    tmp: Array,
) -> None:
    """``out[n, c] = ah @ x[n, c] @ aw^T``: two GEMMs, first along W (all rows at once into
    ``tmp``, by ``awt``: ``aw`` transposed, copied C-contiguous), then along H per sample
    (``ahb``: ``ah`` copied once per channel, so that the product has equal batch shapes and
    CuPy builds no pointer arrays)."""
    n, c, h, w = x.shape
    wo = out.shape[3]
    xp.copyto(awt, aw.T)
    xp.copyto(ahb, ah)
    xp.matmul(x.reshape(n * c * h, w), awt, out=tmp.reshape(n * c * h, wo))
    for i in range(n):
        xp.matmul(ahb, tmp[i], out=out[i])


# --- end spatial ops ------------------------------------------------------------------------


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
    # --- spatial ops ---
    "conv_transpose2d": conv_transpose2d,
    "avgpool": avgpool,
    "maxpool_global": maxpool_global,
    "resize": resize,
    # --- end spatial ops ---
}
_REQUIRED: Any = object()
"""An :data:`_ATTRS` default for an attribute the IR requires (Graph validation refuses an op
without it: there is no default to decide here)."""
_ATTRS: dict[str, dict[str, Any]] = {
    "conv2d": {"stride": 1, "pad": 0, "groups": 1, "dilation": 1},
    "matmul": {"scale": None},
    "layernorm": {"eps": 1e-5},
    "maxpool": {"k": 1, "stride": 1, "pad": 0, "dilation": 1, "ceil_mode": 0},
    "permute": {"view": (), "axes": ()},
    # --- elem ops ---
    "gelu": {"approximate": "tanh"},
    "softmax": {"axis": None},
    "hardsigmoid": {"alpha": 0.2, "beta": 0.5},
    "clip": {"min": None, "max": None},
    "reduce_mean": {"axes": _REQUIRED, "keepdims": 1},
    "concat": {"axis": _REQUIRED},
    "slice": {"begin": _REQUIRED, "step": _REQUIRED, "size": _REQUIRED},
    "gather": {"axis": _REQUIRED, "indices": _REQUIRED, "scalar": 0},
    "expand": {"shape": _REQUIRED},
    # --- end elem ops ---
    # --- spatial ops ---
    "conv_transpose2d": {
        "stride": 1,
        "pad": 0,
        "dilation": 1,
        "output_padding": 0,
        "groups": 1,
    },
    "avgpool": {
        "k": 1,
        "stride": 1,
        "pad": 0,
        "dilation": 1,
        "ceil_mode": 0,
        "count_include_pad": 0,
    },
    # --- end spatial ops ---
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
    missing = [k for k, v in kwargs.items() if v is _REQUIRED]
    if missing:  # a Graph never has this: validation requires the attributes
        raise ValueError(f"op {op.name!r} ({op.fn}): missing attributes {missing}")
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


def _ref_op(op: Op, ins: list[Any], out_shape: tuple[int, ...]) -> Any:
    x = ins[0]
    fn = op.fn
    if fn in _ELEM_REF:
        return _ELEM_REF[fn](op, ins, out_shape)
    if fn in _REF_SPATIAL:
        return _REF_SPATIAL[fn](op, ins, out_shape)
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


# --- spatial ops: float64 references -------------------------------------------------------


def _ref_window(op: Op, ins: list[Any]) -> Window:
    w = ins[1].shape if op.fn.startswith("conv") else None
    return window(dict(op.attrs), None if w is None else (w[2], w[3]))


def _ref_conv(x: Any, w: Any, b: Any, op: Op) -> Any:
    """Direct convolution: one einsum per tap over the zero-padded input."""
    win, g = _ref_window(op, [x, w]), op.attr("groups", 1)
    top, left, bottom, right = win.pad
    n, c = x.shape[:2]
    k, cg, r_, s_ = w.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    p, q = win.out(x.shape[2], x.shape[3])
    wg = w.reshape(g, k // g, cg, r_, s_)
    out = np.zeros((n, g, k // g, p, q))
    for r in range(r_):
        for s in range(s_):
            tap = _tap(xp_, win, r, s, (p, q))
            out += np.einsum("ngcpq,gkc->ngkpq", tap.reshape(n, g, c // g, p, q), wg[:, :, :, r, s])
    return out.reshape(n, k, p, q) + b.reshape(1, k, 1, 1)


def _ref_conv_transpose(op: Op, ins: list[Any], out_shape: tuple[int, ...]) -> Any:
    """The transposed convolution as a plain convolution (stride 1, same dilation) of the
    input with ``stride - 1`` zeros inserted between its elements, padded by ``extent - 1 -
    pad`` (``+ output_padding`` at the bottom/right), by the flipped, channel-swapped kernel."""
    x, w, b = ins
    win, g = _ref_window(op, ins), op.attr("groups", 1)
    n, c, h, wd = x.shape
    _, kg, r, s = w.shape
    (sh, sw), (eh, ew), (oh, ow) = win.stride, win.extent, win.output_padding
    up = np.zeros((n, c, sh * (h - 1) + 1, sw * (wd - 1) + 1))
    up[:, :, ::sh, ::sw] = x
    top, left, bottom, right = win.pad
    want = (eh - 1 - top, ew - 1 - left, eh - 1 - bottom + oh, ew - 1 - right + ow)
    grow = [max(v, 0) for v in want]
    up = np.pad(up, ((0, 0), (0, 0), (grow[0], grow[2]), (grow[1], grow[3])))
    cut = [g_ - v for g_, v in zip(grow, want, strict=True)]
    up = up[:, :, cut[0] : up.shape[2] - cut[2], cut[1] : up.shape[3] - cut[3]]
    flipped = w.reshape(g, c // g, kg, r, s).transpose(0, 2, 1, 3, 4).reshape(g * kg, c // g, r, s)
    flipped = flipped[:, :, ::-1, ::-1]
    conv = Op("ref", "conv2d", "conv2d", (), "", (("groups", g), ("dilation", win.dilation)))
    return _ref_conv(up, flipped, b, conv)


def _ref_pool(op: Op, ins: list[Any], out_shape: tuple[int, ...]) -> Any:
    """Pools by index arithmetic: every tap's input row/column, whether it is inside the
    input, and (average) the counted elements per window."""
    x, win = ins[0], window(dict(op.attrs))
    h, w = x.shape[2], x.shape[3]
    p, q = win.out(h, w)
    top, left, bottom, right = win.pad
    ih = np.arange(p)[:, None] * win.stride[0] - top + np.arange(win.k[0]) * win.dilation[0]
    iw = np.arange(q)[:, None] * win.stride[1] - left + np.arange(win.k[1]) * win.dilation[1]
    inside = ((ih >= 0) & (ih < h))[:, :, None, None] & ((iw >= 0) & (iw < w))[None, None]
    taps = x[:, :, np.clip(ih, 0, h - 1)][:, :, :, :, np.clip(iw, 0, w - 1)]  # N,C,P,kh,Q,kw
    taps = taps.transpose(0, 1, 2, 4, 3, 5)  # N,C,P,Q,kh,kw
    inside = inside.transpose(0, 2, 1, 3)
    if op.fn == "maxpool":
        return np.where(inside, taps, -np.inf).max(axis=(4, 5))
    total = np.where(inside, taps, 0.0).sum(axis=(4, 5))
    if op.attr("count_include_pad", 0):
        declared = ((ih >= -top) & (ih < h + bottom))[:, :, None, None] & (
            (iw >= -left) & (iw < w + right)
        )[None, None]
        return total / declared.transpose(0, 2, 1, 3).sum(axis=(2, 3))
    return total / np.maximum(inside.sum(axis=(2, 3)), 1)


def _ref_maxpool(x: Any, op: Op) -> Any:
    return _ref_pool(op, [x], ())


_REF_SPATIAL: dict[str, Callable[[Op, list[Any], tuple[int, ...]], Any]] = {
    "conv2d": lambda op, ins, out: _ref_conv(ins[0], ins[1], ins[2], op),
    "conv_transpose2d": _ref_conv_transpose,
    "maxpool": _ref_pool,
    "avgpool": _ref_pool,
    "avgpool_global": lambda op, ins, out: ins[0].mean(axis=(2, 3)),
    "maxpool_global": lambda op, ins, out: ins[0].max(axis=(2, 3)),
    "resize": lambda op, ins, out: np.einsum("oh,nchw,pw->ncop", ins[1], ins[0], ins[2]),
}

# --- end spatial ops ------------------------------------------------------------------------
