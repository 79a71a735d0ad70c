"""What the executor's kernels allocate beside a graph's tensors: per-operator scratch buffers
(im2col columns, padded inputs), sized once here."""

from __future__ import annotations

from aegis_core.graph.ir import Graph, Op


def _is_pointwise(op: Op, graph: Graph) -> bool:
    w = graph.tensors[op.inputs[1]].shape
    return w[2] == w[3] == 1 and op.attr("stride", 1) == 1 and op.attr("pad", 0) == 0


def _padded_shape(shape: tuple[int, ...], pad: int) -> tuple[int, ...]:
    return (shape[0], shape[1], shape[2] + 2 * pad, shape[3] + 2 * pad)


def scratch_shapes(op: Op, graph: Graph) -> dict[str, tuple[int, ...]]:
    """Scratch buffers ``op`` needs, by keyword of its kernel: conv ``padded`` (when
    ``pad > 0``) and ``cols`` ``[N, groups, C//groups*R*S, P*Q]`` (not for pointwise convs);
    maxpool ``padded``; softmax ``red`` (``x``'s shape with 1 on its axis); ``erf`` and
    ``gelu`` with ``approximate="none"`` ``tmp`` (``x``'s shape); layernorm ``mean``/``std``
    (``[..., 1]``)."""
    x = graph.tensors[op.inputs[0]].shape
    pad = op.attr("pad", 0)
    ws: dict[str, tuple[int, ...]] = {}
    if op.fn in ("conv2d", "maxpool") and pad > 0:
        ws["padded"] = _padded_shape(x, pad)
    if op.fn == "conv2d" and not _is_pointwise(op, graph):
        n, _, p, q = graph.tensors[op.output].shape
        w = graph.tensors[op.inputs[1]].shape
        groups = op.attr("groups", 1)
        ws["cols"] = (n, groups, w[1] * w[2] * w[3], p * q)
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
