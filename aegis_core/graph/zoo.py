"""The builtin model zoo (resnet18, mobilenet_v2, bert_tiny, mlp, tiny_cnn) built from the real
layer shapes, and a scenario task's graph."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aegis_core.model.errors import InputError, ScenarioError

if TYPE_CHECKING:
    from aegis_core.model.scenario import Scenario, Task
from aegis_core.graph.ir import (
    FNS,
    MAX_GRAPH_BYTES,
    Graph,
    Op,
    Tensor,
    _exec_bytes,
    _flops,
    _freeze,
    _infer,
    _ShapeError,
)
from aegis_core.graph.onnx_import import InputShapeError
from aegis_core.graph.scratch import scratch_shapes
from aegis_core.graph.weights import imported, is_onnx, load_graph_file, load_weights


class _Builder:
    """Appends operators with named weights (``{prefix}.w``, ``.b``, ...) and outputs
    (``{prefix}.out``), computing shapes, FLOPs and bytes as it goes."""

    def __init__(self, name: str, batch: int, input_shape: tuple[int, ...]) -> None:
        self.name, self.batch, self.input_shape = name, batch, input_shape
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.x = self._tensor("input", (batch, *input_shape), "input")

    def _tensor(self, name: str, shape: tuple[int, ...], role: str) -> str:
        if name in self.tensors:
            raise _ShapeError(f"duplicate tensor name {name!r}")  # pragma: no cover - a bug
        self.tensors[name] = Tensor(name, shape, role)
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def op(
        self,
        prefix: str,
        fn: str,
        inputs: Sequence[str],
        out_shape: tuple[int, ...] | None = None,
        **attrs: Any,
    ) -> str:
        ins = [self.shape(i) for i in inputs]
        shape = _infer(fn, attrs, ins)
        out = self._tensor(f"{prefix}.out", out_shape or shape, "activation")
        size = self.tensors[out].size
        nbytes = sum(self.tensors[i].nbytes for i in inputs) + self.tensors[out].nbytes
        frozen = tuple((k, _freeze(v)) for k, v in attrs.items())
        flops = _flops(fn, attrs, ins, size)
        self.ops.append(Op(prefix, FNS[fn], fn, tuple(inputs), out, frozen, flops, nbytes))
        return out

    def conv(
        self, x: str, prefix: str, k: int, r: int, stride: int = 1, pad: int = 0, groups: int = 1
    ) -> str:
        c = self.shape(x)[1]
        w = self._tensor(f"{prefix}.w", (k, c // groups, r, r), "weight")
        b = self._tensor(f"{prefix}.b", (k,), "weight")
        return self.op(prefix, "conv2d", [x, w, b], stride=stride, pad=pad, groups=groups)

    def linear(self, x: str, prefix: str, n: int) -> str:
        w = self._tensor(f"{prefix}.w", (self.shape(x)[-1], n), "weight")
        b = self._tensor(f"{prefix}.b", (n,), "weight")
        return self.op(prefix, "linear", [x, w, b])

    def layernorm(self, x: str, prefix: str) -> str:
        h = self.shape(x)[-1]
        g = self._tensor(f"{prefix}.gamma", (h,), "weight")
        b = self._tensor(f"{prefix}.beta", (h,), "weight")
        return self.op(prefix, "layernorm", [x, g, b], eps=1e-5)

    def permute(
        self, x: str, prefix: str, view: tuple[int, ...], axes: tuple[int, ...], merge: bool = False
    ) -> str:
        shape = tuple(view[a] for a in axes)
        out = (*shape[:-2], shape[-2] * shape[-1]) if merge else shape
        return self.op(prefix, "permute", [x], out, view=view, axes=axes)

    def graph(self, out: str) -> Graph:
        return Graph(
            self.name, self.batch, self.input_shape, self.tensors, tuple(self.ops), self.x, out
        )


def _resnet18(b: _Builder) -> str:
    x = b.op("relu1", "relu", [b.conv(b.x, "conv1", 64, 7, stride=2, pad=3)])
    x = b.op("maxpool", "maxpool", [x], k=3, stride=2, pad=1)
    for stage, ch in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            y = b.op(f"{p}.relu1", "relu", [b.conv(x, f"{p}.conv1", ch, 3, stride, 1)])
            y = b.conv(y, f"{p}.conv2", ch, 3, 1, 1)
            if stride != 1 or b.shape(x)[1] != ch:
                x = b.conv(x, f"{p}.downsample", ch, 1, stride)
            x = b.op(f"{p}.relu2", "relu", [b.op(f"{p}.add", "add", [y, x])])
    return b.linear(b.op("avgpool", "avgpool_global", [x]), "fc", 1000)


_MOBILENET_V2 = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
"""Inverted residual settings (expansion t, channels c, repeats n, first stride s)."""


def _mobilenet_v2(b: _Builder) -> str:
    x = b.op("stem.relu", "relu6", [b.conv(b.x, "stem", 32, 3, stride=2, pad=1)])
    i = 0
    for t, c, n, s in _MOBILENET_V2:
        for j in range(n):
            p, stride, c_in = f"block{i}", s if j == 0 else 1, b.shape(x)[1]
            i += 1
            y = x
            if t != 1:
                y = b.op(f"{p}.expand.relu", "relu6", [b.conv(y, f"{p}.expand", c_in * t, 1)])
            hidden = b.shape(y)[1]
            y = b.conv(y, f"{p}.dw", hidden, 3, stride, 1, groups=hidden)
            y = b.conv(b.op(f"{p}.dw.relu", "relu6", [y]), f"{p}.project", c, 1)
            x = b.op(f"{p}.add", "add", [y, x]) if stride == 1 and c_in == c else y
    x = b.op("head.relu", "relu6", [b.conv(x, "head", 1280, 1)])
    return b.linear(b.op("avgpool", "avgpool_global", [x]), "fc", 1000)


_BERT_HIDDEN, _BERT_HEADS, _BERT_FF, _BERT_LAYERS = 128, 2, 512, 2


def _bert_tiny(b: _Builder) -> str:
    x = b.x
    n, s, h = b.batch, b.input_shape[0], _BERT_HIDDEN
    heads, d = _BERT_HEADS, _BERT_HIDDEN // _BERT_HEADS
    split = (n, s, heads, d)
    for layer in range(_BERT_LAYERS):
        p = f"layer{layer}"
        q = b.permute(b.linear(x, f"{p}.q", h), f"{p}.q.heads", split, (0, 2, 1, 3))
        k = b.permute(b.linear(x, f"{p}.k", h), f"{p}.k.heads", split, (0, 2, 3, 1))
        v = b.permute(b.linear(x, f"{p}.v", h), f"{p}.v.heads", split, (0, 2, 1, 3))
        att = b.op(f"{p}.scores", "matmul", [q, k], scale=1.0 / math.sqrt(d))
        att = b.op(f"{p}.softmax", "softmax", [att])
        ctx = b.op(f"{p}.context", "matmul", [att, v])
        ctx = b.permute(ctx, f"{p}.merge", (n, heads, s, d), (0, 2, 1, 3), merge=True)
        y = b.op(f"{p}.attn.add", "add", [b.linear(ctx, f"{p}.attn.out", h), x])
        x = b.layernorm(y, f"{p}.attn.norm")
        y = b.op(f"{p}.ffn.gelu", "gelu", [b.linear(x, f"{p}.ffn.in", _BERT_FF)])
        y = b.op(f"{p}.ffn.add", "add", [b.linear(y, f"{p}.ffn.out", h), x])
        x = b.layernorm(y, f"{p}.ffn.norm")
    return x


def _mlp(b: _Builder) -> str:
    x = b.linear(b.x, "fc1", 1024)
    x = b.linear(b.op("relu1", "relu", [x]), "fc2", 1024)
    return b.linear(b.op("relu2", "relu", [x]), "fc3", 1024)


def _tiny_cnn(b: _Builder) -> str:
    x = b.x
    for i, (ch, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        x = b.op(f"relu{i}", "relu", [b.conv(x, f"conv{i}", ch, 3, stride, 1)])
    return b.linear(b.op("avgpool", "avgpool_global", [x]), "fc", 10)


MODELS: dict[str, tuple[int, ...]] = {
    "resnet18": (3, 224, 224),
    "mobilenet_v2": (3, 224, 224),
    "bert_tiny": (128, _BERT_HIDDEN),
    "mlp": (1024,),
    "tiny_cnn": (3, 32, 32),
}
"""Builtin model name -> default per-sample input shape."""

_BUILDERS: dict[str, Callable[[_Builder], str]] = {
    "resnet18": _resnet18,
    "mobilenet_v2": _mobilenet_v2,
    "bert_tiny": _bert_tiny,
    "mlp": _mlp,
    "tiny_cnn": _tiny_cnn,
}
_MIN_SPATIAL = {"resnet18": 32, "mobilenet_v2": 32, "tiny_cnn": 4}
"""Smallest height/width: the model's total downsampling, so its last feature map is >= 1x1
of real pixels (not padding)."""


def _check_shape(name: str, shape: tuple[int, ...]) -> None:
    default = MODELS[name]
    if len(shape) != len(default) or not all(v >= 1 for v in shape):
        raise InputError(
            f"model {name!r}: input shape {shape} must be {len(default)} positive sizes "
            f"like the default {default}"
        )
    low = _MIN_SPATIAL.get(name)
    if low is not None and min(shape[1:]) < low:
        raise InputError(
            f"model {name!r}: input shape {shape} is too small for its strides: "
            f"height and width must be >= {low}"
        )
    if name == "bert_tiny" and shape[1] != _BERT_HIDDEN:
        raise InputError(
            f"model {name!r}: input shape {shape} must be (seq, {_BERT_HIDDEN}): "
            f"the hidden size is fixed at {_BERT_HIDDEN}"
        )


def build_model(name: str, batch: int = 1, input_shape: Sequence[int] | None = None) -> Graph:
    """The builtin model ``name`` (see :data:`MODELS`) for ``batch`` samples of ``input_shape``
    (default: the model's). Random weights are the executor's business: a graph has shapes only.
    """
    if name not in _BUILDERS:
        raise InputError(f"unknown model {name!r}; builtin models: {', '.join(sorted(MODELS))}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"model {name!r}: batch must be a positive integer, got {batch!r}")
    shape = MODELS[name] if input_shape is None else tuple(input_shape)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in shape):
        raise InputError(f"model {name!r}: input shape {shape} must hold integers")
    _check_shape(name, shape)
    builder = _Builder(name, batch, shape)
    try:
        return builder.graph(_BUILDERS[name](builder))
    except _ShapeError as exc:  # pragma: no cover - _check_shape rejects these first
        raise InputError(f"model {name!r}: input shape {shape} does not fit: {exc}") from exc


def resolve_model(model: str, batch: int = 1, input_shape: Sequence[int] | None = None) -> Graph:
    """The one way every command turns a task's ``model`` into a graph: a builtin name is
    built, a ``*.onnx`` file imported for ``batch`` and ``input_shape`` (once per process:
    :func:`~aegis_core.graph.weights.imported`), anything else is read as a graph file
    (parsed and validated, its ``weights`` file too: any other file is refused). Either way,
    what the executor would allocate for it (tensors and kernel scratch, 4 bytes an element)
    is checked against :data:`MAX_GRAPH_BYTES` before anything is. InputError otherwise."""
    if model in MODELS:
        graph = build_model(model, batch, input_shape)
    elif is_onnx(model):
        graph = imported(model, batch, input_shape).graph
    else:
        graph = load_graph_file(model)
        load_weights(graph)  # a bad weights file is refused before any work
    total = sum(_exec_bytes(t.shape) for t in graph.tensors.values()) + sum(
        _exec_bytes(shape) for op in graph.ops for shape in scratch_shapes(op, graph).values()
    )
    if total > MAX_GRAPH_BYTES:
        raise InputError(
            f"model {model!r}: its tensors and kernel scratch take {total} bytes, over the cap "
            f"of {MAX_GRAPH_BYTES} bytes"
        )
    return graph


def task_graph(scenario: Scenario, task: Task) -> Graph | None:
    """The task's model graph (None: no model); a ScenarioError names the task and field."""
    if task.model is None:
        return None
    try:
        return resolve_model(task.model, task.batch, task.input_shape)
    except InputError as exc:
        builtin_shape = task.model in MODELS and task.input_shape is not None
        field = "input_shape" if builtin_shape or isinstance(exc, InputShapeError) else "model"
        raise ScenarioError(scenario.path, str(exc), task=task.name, field=field) from exc


def check_models(scenario: Scenario) -> Scenario:
    """``scenario`` once every task's model resolves (:func:`resolve_model`): every command
    calls this before any work or output, so all of them accept and refuse the same models."""
    for task in scenario.tasks:
        task_graph(scenario, task)
    return scenario
