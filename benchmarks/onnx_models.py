"""Whole test networks as ONNX files, written the way exporters write them (``onnx.helper``
only: no torch, no download): a dynamic batch dimension ``N`` (and dynamic spatial / sequence
dimensions), shape sub-graphs (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``),
``Constant`` nodes, ``Conv`` + ``BatchNormalization`` pairs, seeded weights scaled so that
activations stay of order 1 (He-scaled convolutions, BN statistics near identity).

* ``resnet_blocks``: stem conv 7x7/2 + BN + Relu + MaxPool 3x3/2, a basic block and a strided
  basic block with a 1x1/2 downsample, GlobalAveragePool, Flatten, Gemm — input [N, 3, H, W];
* ``mobilenetv3_block``: stem conv + HardSwish, an inverted residual (1x1 expand, depthwise
  3x3, HardSwish, squeeze-excite GlobalAveragePool -> 1x1 Conv -> Relu -> 1x1 Conv ->
  HardSigmoid -> Mul broadcast, 1x1 project, residual Add) — input [N, 3, H, W];
* ``transformer_encoder``: one pre-LN encoder layer on [N, T, D]: LayerNorm decomposed
  (ReduceMean / Sub / Pow / Sqrt / Div / Mul / Add), multi-head attention (Q/K/V MatMul + Add,
  Reshape to heads through a shape sub-graph, Transpose, batched MatMul, Div by sqrt(d),
  Softmax, MatMul, Transpose, Reshape, projection), residual, LayerNormalization and an MLP
  with the erf Gelu (Div -> Erf -> Add 1 -> Mul -> Mul 0.5), residual;
* ``conv_decoder``: a small U-Net: Conv + BN + Relu encoder (strides 2), ConvTranspose
  (stride 2), Concat of skip features, Resize nearest x2 (scales) and linear half_pixel (sizes
  from the skip's shape), Sigmoid output — input [N, 3, H, W] (H, W multiples of 8).

``MODELS`` maps each name to ``(build, input_shape)``: ``build()`` returns the ModelProto
(the same bytes every call), ``input_shape`` the per-sample shape the tests and the demo use.

Usage: ``python benchmarks/onnx_models.py --out DIR`` writes ``DIR/<name>.onnx`` for each
(``scenarios/models/`` holds the committed ones; tests/test_onnx_models.py checks they are
what this script writes).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from onnx import ModelProto, TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


class _Net:
    """Nodes and initializers of one model; every name unique; weights from one seeded
    stream of uniform draws (stable across NumPy versions)."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._count = 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def node(self, op: str, inputs: list[str], stem: str | None = None, **attrs: Any) -> str:
        out = self.fresh(stem or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"/{out}/{op}", **attrs))
        return out

    def weight(self, stem: str, value: np.ndarray) -> str:
        name = self.fresh(stem)
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def uniform(self, shape: tuple[int, ...], std: float, mean: float = 0.0) -> np.ndarray:
        half = std * math.sqrt(3.0)  # U(-a, a) has std a / sqrt(3)
        return mean + self.rng.uniform(-half, half, shape)

    def constant(self, value: np.ndarray | float | list[int], stem: str = "const") -> str:
        """A ``Constant`` node, as exporters write scalars and shapes."""
        if isinstance(value, np.ndarray):
            arr = value
        else:
            arr = np.asarray(value, dtype=np.int64 if isinstance(value, list) else np.float32)
        out = self.fresh(stem)
        tensor = numpy_helper.from_array(arr, f"{out}_value")
        self.nodes.append(
            helper.make_node("Constant", [], [out], name=f"/{out}/Constant", value=tensor)
        )
        return out

    # --- layers -----------------------------------------------------------------------------
    def conv(
        self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
        bias: bool = False, gain: float = 2.0,
    ) -> str:  # fmt: skip
        fan_in = cin // groups * k * k
        w = self.weight("conv.weight", self.uniform((cout, cin // groups, k, k),
                                                    math.sqrt(gain / fan_in)))  # fmt: skip
        inputs = [x, w]
        if bias:
            inputs.append(self.weight("conv.bias", self.uniform((cout,), 0.05)))
        p = k // 2
        return self.node("Conv", inputs, "conv", kernel_shape=[k, k], strides=[stride, stride],
                         pads=[p, p, p, p], group=groups, dilations=[1, 1])  # fmt: skip

    def bn(self, x: str, c: int) -> str:
        gamma = self.weight("bn.weight", self.uniform((c,), 0.1, 1.0))
        beta = self.weight("bn.bias", self.uniform((c,), 0.05))
        mean = self.weight("bn.running_mean", self.uniform((c,), 0.05))
        var = self.weight("bn.running_var", self.uniform((c,), 0.1, 1.0))
        return self.node("BatchNormalization", [x, gamma, beta, mean, var], "bn", epsilon=1e-5,
                         momentum=0.9)  # fmt: skip

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                gain: float = 2.0) -> str:  # fmt: skip
        return self.bn(self.conv(x, cin, cout, k, stride, groups, gain=gain), cout)

    def linear(self, x: str, din: int, dout: int, gain: float = 1.0) -> str:
        """``MatMul`` by a [din, dout] weight then ``Add`` of the bias (torch's Linear on 3-D)."""
        w = self.weight("linear.weight", self.uniform((din, dout), math.sqrt(gain / din)))
        b = self.weight("linear.bias", self.uniform((dout,), 0.05))
        return self.node("Add", [self.node("MatMul", [x, w]), b])

    def dim(self, shape: str, axis: int) -> str:
        """``Unsqueeze(Gather(shape, axis), 0)``: one dimension as a 1-element int64 tensor."""
        g = self.node("Gather", [shape, self.constant(np.array(axis, np.int64), "idx")], axis=0)
        return self.node("Unsqueeze", [g, self.constant([0], "axes")])

    def model(self, x: tuple[str, list[Any]], y: tuple[str, list[Any]]) -> ModelProto:
        graph = helper.make_graph(
            self.nodes,
            self.name,
            [helper.make_tensor_value_info(x[0], TensorProto.FLOAT, x[1])],
            [helper.make_tensor_value_info(y[0], TensorProto.FLOAT, y[1])],
            self.inits,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="aegisrt-benchmarks")  # fmt: skip
        m.ir_version = IR_VERSION
        return m


def _rename_output(net: _Net, value: str, name: str) -> None:
    """Give the last node's output the graph output's name."""
    last = net.nodes[-1]
    assert last.output[0] == value
    last.output[0] = name


def resnet_blocks(seed: int = 0, width: int = 16, classes: int = 10) -> ModelProto:
    net = _Net("resnet_blocks", seed)
    h = net.node("Relu", [net.conv_bn("input", 3, width, 7, stride=2)])
    h = net.node("MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])

    def block(x: str, cin: int, cout: int, stride: int) -> str:
        r = net.node("Relu", [net.conv_bn(x, cin, cout, 3, stride)])
        r = net.conv_bn(r, cout, cout, 3, gain=1.0)  # the residual branch starts small
        skip = x if stride == 1 and cin == cout else net.conv_bn(x, cin, cout, 1, stride)
        return net.node("Relu", [net.node("Add", [r, skip])])

    h = block(h, width, width, 1)
    h = block(h, width, 2 * width, 2)
    h = net.node("Flatten", [net.node("GlobalAveragePool", [h])], axis=1)
    w = net.weight("fc.weight", net.uniform((classes, 2 * width), math.sqrt(1.0 / (2 * width))))
    b = net.weight("fc.bias", net.uniform((classes,), 0.05))
    y = net.node("Gemm", [h, w, b], alpha=1.0, beta=1.0, transB=1)
    _rename_output(net, y, "logits")
    return net.model(("input", ["N", 3, "H", "W"]), ("logits", ["N", classes]))


def mobilenetv3_block(seed: int = 1, c: int = 16, expand: int = 4) -> ModelProto:
    net = _Net("mobilenetv3_block", seed)
    x = net.node("HardSwish", [net.conv_bn("input", 3, c, 3, stride=2)])
    e = c * expand
    h = net.node("HardSwish", [net.conv_bn(x, c, e, 1)])
    h = net.node("HardSwish", [net.conv_bn(h, e, e, 3, groups=e)])  # depthwise
    s = net.node("GlobalAveragePool", [h])
    s = net.node("Relu", [net.conv(s, e, e // 4, 1, bias=True)])
    s = net.node("HardSigmoid", [net.conv(s, e // 4, e, 1, bias=True, gain=1.0)],
                 alpha=1.0 / 6.0, beta=0.5)  # fmt: skip
    h = net.node("Mul", [h, s])  # [N, e, H, W] x [N, e, 1, 1]
    h = net.conv_bn(h, e, c, 1, gain=1.0)  # project, no activation
    y = net.node("Add", [x, h])
    _rename_output(net, y, "output")
    return net.model(("input", ["N", 3, "H", "W"]), ("output", ["N", c, "Ho", "Wo"]))


def _layernorm_decomposed(net: _Net, x: str, d: int) -> str:
    mean = net.node("ReduceMean", [x], axes=[-1], keepdims=1)
    diff = net.node("Sub", [x, mean])
    var = net.node("ReduceMean", [net.node("Pow", [diff, net.constant(2.0)])], axes=[-1],
                   keepdims=1)  # fmt: skip
    std = net.node("Sqrt", [net.node("Add", [var, net.constant(1e-5)])])
    norm = net.node("Div", [diff, std])
    gamma = net.weight("ln.weight", net.uniform((d,), 0.1, 1.0))
    beta = net.weight("ln.bias", net.uniform((d,), 0.05))
    return net.node("Add", [net.node("Mul", [norm, gamma]), beta])


def transformer_encoder(seed: int = 2, d: int = 32, heads: int = 4, mlp: int = 64) -> ModelProto:
    net = _Net("transformer_encoder", seed)
    dh = d // heads
    shape = net.node("Shape", ["input"])
    n, t = net.dim(shape, 0), net.dim(shape, 1)
    to_heads = net.node("Concat", [n, t, net.constant([heads]), net.constant([dh])], axis=0)
    to_model = net.node("Concat", [n, t, net.constant([d])], axis=0)
    a = _layernorm_decomposed(net, "input", d)
    q, k, v = (net.node("Reshape", [net.linear(a, d, d), to_heads]) for _ in range(3))
    q = net.node("Transpose", [q], perm=[0, 2, 1, 3])  # [N, H, T, dh]
    k = net.node("Transpose", [k], perm=[0, 2, 3, 1])  # [N, H, dh, T]
    v = net.node("Transpose", [v], perm=[0, 2, 1, 3])
    scores = net.node("Div", [net.node("MatMul", [q, k]), net.constant(math.sqrt(dh))])
    p = net.node("Softmax", [scores], axis=-1)
    ctx = net.node("Transpose", [net.node("MatMul", [p, v])], perm=[0, 2, 1, 3])
    ctx = net.node("Reshape", [ctx, to_model])
    h = net.node("Add", ["input", net.linear(ctx, d, d)])
    gamma = net.weight("norm2.weight", net.uniform((d,), 0.1, 1.0))
    beta = net.weight("norm2.bias", net.uniform((d,), 0.05))
    b = net.node("LayerNormalization", [h, gamma, beta], axis=-1, epsilon=1e-5)
    u = net.linear(b, d, mlp, gain=2.0)
    erf = net.node("Erf", [net.node("Div", [u, net.constant(math.sqrt(2.0))])])
    g = net.node("Mul", [net.node("Mul", [u, net.node("Add", [erf, net.constant(1.0)])]),
                         net.constant(0.5)])  # fmt: skip
    y = net.node("Add", [h, net.linear(g, mlp, d)])
    _rename_output(net, y, "output")
    return net.model(("input", ["N", "T", d]), ("output", ["N", "T", d]))


def conv_decoder(seed: int = 3, c: int = 16) -> ModelProto:
    net = _Net("conv_decoder", seed)

    def cbr(x: str, cin: int, cout: int, stride: int = 1) -> str:
        return net.node("Relu", [net.conv_bn(x, cin, cout, 3, stride)])

    e1 = cbr("input", 3, c)  # H
    e2 = cbr(e1, c, 2 * c, 2)  # H/2
    e3 = cbr(e2, 2 * c, 2 * c, 2)  # H/4
    e4 = cbr(e3, 2 * c, 4 * c, 2)  # H/8
    w = net.weight("up.weight", net.uniform((4 * c, 2 * c, 3, 3), math.sqrt(2.0 / (4 * c * 9))))
    b = net.weight("up.bias", net.uniform((2 * c,), 0.05))
    u = net.node("ConvTranspose", [e4, w, b], kernel_shape=[3, 3], strides=[2, 2],
                 pads=[1, 1, 1, 1], output_padding=[1, 1])  # fmt: skip  # H/4
    u = net.node("Relu", [u])
    d3 = cbr(net.node("Concat", [u, e3], axis=1), 4 * c, 2 * c)
    empty = net.constant(np.zeros(0, np.float32), "roi")
    scales = net.constant(np.array([1.0, 1.0, 2.0, 2.0], np.float32), "scales")
    up = net.node("Resize", [d3, empty, scales], mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")  # fmt: skip
    d2 = cbr(net.node("Concat", [up, e2], axis=1), 4 * c, c)  # H/2
    # F.interpolate(x, size=skip.shape[2:], mode="bilinear"): sizes from a shape sub-graph
    hw = net.node("Slice", [net.node("Shape", [e1]), net.constant([2]), net.constant([4])])
    nc = net.node("Slice", [net.node("Shape", [d2]), net.constant([0]), net.constant([2])])
    sizes = net.node("Concat", [nc, hw], axis=0)
    up = net.node("Resize", [d2, empty, "", sizes], mode="linear",
                  coordinate_transformation_mode="half_pixel")  # fmt: skip
    d1 = cbr(net.node("Concat", [up, e1], axis=1), 2 * c, c)  # H
    logit = net.conv(d1, c, 1, 3, bias=True, gain=1.0)
    y = net.node("Sigmoid", [logit])
    _rename_output(net, y, "mask")
    return net.model(("input", ["N", 3, "H", "W"]), ("mask", ["N", 1, "H", "W"]))


MODELS: dict[str, tuple[Callable[[], ModelProto], tuple[int, ...]]] = {
    "resnet_blocks": (resnet_blocks, (3, 32, 32)),
    "mobilenetv3_block": (mobilenetv3_block, (3, 32, 32)),
    "transformer_encoder": (transformer_encoder, (16, 32)),
    "conv_decoder": (conv_decoder, (3, 32, 32)),
}
"""name -> (build, the per-sample input shape the tests and the demo scenario use)."""


def write(out: Path) -> list[Path]:
    """Write every model to ``out/<name>.onnx`` (checked with ``onnx.checker``)."""
    import onnx

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (build, _shape) in MODELS.items():
        model = build()
        onnx.checker.check_model(model, full_check=True)
        path = out / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the models")
    args = parser.parse_args(argv)
    for path in write(args.out):
        print(f"{path} {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
