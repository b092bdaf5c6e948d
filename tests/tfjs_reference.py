"""A plain numpy interpreter of TF.js graph nodes: the reference the ONNX conversion is checked by.

Written from TensorFlow's op definitions, NHWC throughout, float64, one node at a time,
and independent of the converter's emitter (no layout tricks, no rewrites): what it
computes is what TF.js computes for the same graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from openimm.vision.convert.tf_onnx import TfNode

Array = npt.NDArray[Any]


def _pad_amounts(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int, int]:
    if padding == "VALID":
        return (size - kernel) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _patches(x: Array, kh: int, kw: int, strides: list[int], padding: str) -> Array:
    """(N, OH, OW, KH, KW, C) windows of an NHWC map, zero-padded as TensorFlow pads."""
    _, h, w, _ = x.shape
    oh, top, bottom = _pad_amounts(h, kh, strides[1], padding)
    ow, left, right = _pad_amounts(w, kw, strides[2], padding)
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    rows = np.arange(oh)[:, None] * strides[1] + np.arange(kh)[None, :]
    cols = np.arange(ow)[:, None] * strides[2] + np.arange(kw)[None, :]
    return padded[:, rows[:, None, :, None], cols[None, :, None, :], :]


def conv2d(x: Array, filters: Array, strides: list[int], padding: str) -> Array:
    """TensorFlow's Conv2D: NHWC input, HWIO filters."""
    kh, kw = filters.shape[:2]
    return np.einsum("nhwijc,ijco->nhwo", _patches(x, kh, kw, strides, padding), filters)


def depthwise(x: Array, filters: Array, strides: list[int], padding: str) -> Array:
    """TensorFlow's DepthwiseConv2dNative: HWCM filters, output channel c * M + m."""
    kh, kw, c, m = filters.shape
    out = np.einsum("nhwijc,ijcm->nhwcm", _patches(x, kh, kw, strides, padding), filters)
    return out.reshape(*out.shape[:3], c * m)


def _fused(node: TfNode, core: Array, args: list[Array]) -> Array:
    ops = node.attrs.get("fused_ops", [])
    out = core + args[0] if ops and ops[0] == "BiasAdd" else core
    for op in ops[1:]:
        if op == "Relu":
            out = np.maximum(out, 0)
        elif op == "Relu6":
            out = np.clip(out, 0, 6)
        elif op == "Prelu":
            out = np.where(out >= 0, out, out * args[1])
        else:
            raise NotImplementedError(op)
    return out


def run(nodes: dict[str, TfNode], feed: dict[str, Array], output: str) -> Array:
    """The value of `output` for the placeholder values in `feed`."""
    values: dict[str, Array] = {k: np.asarray(v, dtype=np.float64) for k, v in feed.items()}

    def value(name: str) -> Array:
        if name not in values:
            values[name] = evaluate(nodes[name])
        return values[name]

    def evaluate(node: TfNode) -> Array:
        a = node.attrs
        if node.op == "Const":
            return np.asarray(a["value"])
        ins = [value(i) for i in node.inputs]
        op = node.op
        strides, padding = a.get("strides", [1, 1, 1, 1]), a.get("padding", "VALID")
        simple = {
            "Relu": lambda: np.maximum(ins[0], 0),
            "Abs": lambda: np.abs(ins[0]),
            "Add": lambda: ins[0] + ins[1],
            "AddV2": lambda: ins[0] + ins[1],
            "Sub": lambda: ins[0] - ins[1],
            "Mul": lambda: ins[0] * ins[1],
            "Maximum": lambda: np.maximum(ins[0], ins[1]),
            "Minimum": lambda: np.minimum(ins[0], ins[1]),
            "Square": lambda: ins[0] ** 2,
            "Rsqrt": lambda: 1 / np.sqrt(ins[0]),
            "Identity": lambda: ins[0],
        }
        if op in simple:
            return simple[op]()
        if op in ("Conv2D", "_FusedConv2D"):
            core = conv2d(ins[0], ins[1], strides, padding)
            return core if op == "Conv2D" else _fused(node, core, ins[2:])
        if op in ("DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"):
            core = depthwise(ins[0], ins[1], strides, padding)
            return core if op == "DepthwiseConv2dNative" else _fused(node, core, ins[2:])
        if op in ("MatMul", "_FusedMatMul"):
            right = ins[1].T if a.get("transpose_b", False) else ins[1]
            core = ins[0] @ right
            return core if op == "MatMul" else _fused(node, core, ins[2:])
        if op == "Pad":
            return np.pad(ins[0], ins[1].astype(int))
        if op == "Reshape":
            return ins[0].reshape([len(ins[0]), *[int(d) for d in ins[1][1:]]])
        if op == "Squeeze":
            return np.squeeze(ins[0], axis=tuple(a.get("squeeze_dims", [])))
        if op in ("Sum", "Mean"):
            axes = tuple(int(i) for i in np.atleast_1d(ins[1]))
            reduce = np.sum if op == "Sum" else np.mean
            return reduce(ins[0], axis=axes, keepdims=bool(a.get("keep_dims", False)))
        raise NotImplementedError(op)

    return value(output)
