"""What the executor's kernels allocate beside a graph's tensors: per-operator scratch buffers
(im2col columns, padded inputs), sized once here."""

from __future__ import annotations

from collections.abc import Callable

from aegis_core.graph.ir import Graph, Op, Window, window


def scratch_shapes(op: Op, graph: Graph) -> dict[str, tuple[int, ...]]:
    """Scratch buffers ``op`` needs, by keyword of its kernel: conv ``padded`` (when padded)
    and ``cols`` ``[N, groups, C//groups*R*S, P*Q]`` (not for pointwise convs); the spatial
    ops below (:func:`_conv`, :func:`_conv_transpose`, :func:`_pool`, :func:`_resize`);
    softmax ``red`` (``x``'s shape with 1 on its axis); ``erf`` and ``gelu`` with
    ``approximate="none"`` ``tmp`` (``x``'s shape); layernorm ``mean``/``std``
    (``[..., 1]``)."""
    x = graph.tensors[op.inputs[0]].shape
    ws: dict[str, tuple[int, ...]] = {}
    if op.fn in _SPATIAL:
        ws.update(_SPATIAL[op.fn](op, graph))
    ws.update(_elem_scratch(op, x))
    if op.fn == "layernorm":
        ws["mean"] = ws["std"] = (*x[:-1], 1)
    return ws


# --- elem ops -------------------------------------------------------------------------------


def _elem_scratch(op: Op, x: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    if op.fn == "softmax":
        axis = op.attr("axis", len(x) - 1)
        return {"red": (*x[:axis], 1, *x[axis + 1 :])}
    if op.fn == "erf" or (op.fn == "gelu" and op.attr("approximate", "tanh") == "none"):
        return {"tmp": x}
    return {}


# --- spatial ops ----------------------------------------------------------------------------

Shapes = dict[str, tuple[int, ...]]


def _conv(op: Op, graph: Graph) -> Shapes:
    """``padded`` ``[N, C, Hp, Wp]`` when padded; ``cols`` ``[N, groups, C//groups*R*S, P*Q]``
    unless pointwise (1x1, stride 1, no pad: the input is multiplied directly)."""
    x, w = graph.tensors[op.inputs[0]].shape, graph.tensors[op.inputs[1]].shape
    win = window(dict(op.attrs), (w[2], w[3]))
    ws: Shapes = {}
    if any(win.pad):
        ws["padded"] = (x[0], x[1], *win.padded(x[2], x[3]))
    if not win.pointwise:
        n, _, p, q = graph.tensors[op.output].shape
        ws["cols"] = (n, op.attr("groups", 1), w[1] * w[2] * w[3], p * q)
    return ws


def _conv_transpose(op: Op, graph: Graph) -> Shapes:
    """``wt`` ``[groups, K//groups*R*S, C//groups]`` (the weight transposed per group),
    ``cols`` ``[N, groups, K//groups*R*S, H*W]`` (the products before col2im) and, when
    pads or output_padding crop it, ``full`` ``[N, K, Hf, Wf]`` (the uncropped output)."""
    x, w = graph.tensors[op.inputs[0]].shape, graph.tensors[op.inputs[1]].shape
    out = graph.tensors[op.output].shape
    g = op.attr("groups", 1)
    taps = w[1] * w[2] * w[3]
    ws: Shapes = {"wt": (g, taps, x[1] // g), "cols": (x[0], g, taps, x[2] * x[3])}
    full = window(dict(op.attrs), (w[2], w[3])).full(x[2], x[3])
    if full != out[2:]:
        ws["full"] = (*out[:2], *full)
    return ws


def _pool(op: Op, graph: Graph) -> Shapes:
    """``padded`` ``[N, C, Hp, Wp]`` when padded (ceil mode's extra rows included); avgpool
    whose windows count different numbers of elements: ``mask`` ``[1, 1, Hp, Wp]`` (1 where
    an element counts) and ``count`` ``[1, 1, P, Q]`` (the divisor per window)."""
    x = graph.tensors[op.inputs[0]].shape
    win = window(dict(op.attrs))
    hp, wp = win.padded(x[2], x[3])
    ws: Shapes = {}
    if (hp, wp) != tuple(x[2:]):
        ws["padded"] = (x[0], x[1], hp, wp)
    if op.fn == "avgpool" and _uneven(win, x, op.attr("count_include_pad", 0)):
        ws["mask"] = (1, 1, hp, wp)
        ws["count"] = (1, 1, *graph.tensors[op.output].shape[2:])
    return ws


def _uneven(win: Window, x: tuple[int, ...], include_pad: int) -> bool:
    """Whether an average pool's windows hold different numbers of counted elements: some
    padding is not counted (``count_include_pad`` 0, or ceil mode's extra rows)."""
    declared = (x[2] + win.pad[0] + win.pad[2], x[3] + win.pad[1] + win.pad[3])
    counted = declared if include_pad else tuple(x[2:])
    return win.padded(x[2], x[3]) != counted


def _resize(op: Op, graph: Graph) -> Shapes:
    """``awt`` ``[W, Wo]`` (the column matrix transposed), ``ahb`` ``[C, Ho, H]`` (the row
    matrix once per channel) and ``tmp`` ``[N, C, H, Wo]`` (the input resized along W)."""
    x = graph.tensors[op.inputs[0]].shape
    ho, wo = graph.tensors[op.inputs[1]].shape[0], graph.tensors[op.inputs[2]].shape[0]
    return {"awt": (x[3], wo), "ahb": (x[1], ho, x[2]), "tmp": (*x[:3], wo)}


_SPATIAL: dict[str, Callable[[Op, Graph], Shapes]] = {
    "conv2d": _conv,
    "conv_transpose2d": _conv_transpose,
    "maxpool": _pool,
    "avgpool": _pool,
    "resize": _resize,
}

# --- end spatial ops ------------------------------------------------------------------------
