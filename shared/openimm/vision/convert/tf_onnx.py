"""A frozen TensorFlow graph's nodes to an ONNX graph, without TensorFlow: the shared emitter.

Readers of a serialised graph (facenet_tf: a GraphDef .pb; tfjs_graph: a TF.js model.json
and its weight shards) give `TfNode`s whose constants hold numpy arrays; `Emitter` turns
them into ONNX nodes with the `onnx` package. Nothing here runs at serving time.

Layout: TensorFlow computes in NHWC, ONNX convolutions in NCHW. The ONNX model keeps the
graph's NHWC input (so a batch of RGB crops goes in as is), transposes it once, and every
4-D activation after that stays NCHW; weights are transposed at conversion time instead.
A tensor leaves NCHW only where an op needs TensorFlow's element order (a reshape of a map
larger than 1x1, a reduction, the graph output).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

OPSET = 17
IR_VERSION = 8

Array = npt.NDArray[Any]

_BATCH_NORMS = {"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"}
_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Sqrt": "Sqrt"}
_BINARY = {
    "Add": "Add",
    "AddV2": "Add",
    "Sub": "Sub",
    "Mul": "Mul",
    "RealDiv": "Div",
    "Maximum": "Max",
    "Minimum": "Min",
}
# NHWC axis -> NCHW axis
_TO_NCHW_AXIS = (0, 2, 3, 1)


class ConversionError(ValueError):
    """The graph uses something this converter does not map."""


@dataclass
class TfNode:
    """One NodeDef: data inputs as 'node' or 'node:k' (control inputs dropped)."""

    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Any]


def producer_of(tensor: str) -> str:
    """The node producing a tensor named 'node' or 'node:k'."""
    return tensor.split(":", 1)[0]


# -- graph rewrites on the TensorFlow side --------------------------------------------


def _consumer_counts(nodes: dict[str, TfNode]) -> Counter[str]:
    return Counter(producer_of(i) for node in nodes.values() for i in node.inputs)


def batch_norm_affine(node: TfNode, nodes: dict[str, TfNode]) -> tuple[Array, Array]:
    """Per-channel (multiplier, offset) of an inference-mode batch norm."""
    if node.attrs.get("is_training", False):
        raise ConversionError(f"{node.name}: batch norm in training mode")
    if node.attrs.get("data_format", "NHWC") != "NHWC":
        raise ConversionError(f"{node.name}: data_format {node.attrs['data_format']}")
    scale, offset, mean, variance = (
        const_value(nodes, name).astype(np.float64) for name in node.inputs[1:5]
    )
    epsilon = float(node.attrs.get("epsilon", 1e-3))
    multiplier = scale / np.sqrt(variance + epsilon)
    return multiplier, offset - mean * multiplier


def fold_batch_norms(nodes: dict[str, TfNode]) -> None:
    """Fold each batch norm that follows a MatMul or Conv2D (maybe reshaped) into its weights."""
    consumers = _consumer_counts(nodes)
    for node in [n for n in nodes.values() if n.op in _BATCH_NORMS]:
        channels = const_value(nodes, node.inputs[3]).shape[0]
        producer = nodes[producer_of(node.inputs[0])]
        while (
            producer.op == "Reshape"
            and consumers[producer.name] == 1
            and int(const_value(nodes, producer.inputs[1])[-1]) == channels
        ):
            producer = nodes[producer_of(producer.inputs[0])]
        if producer.op not in ("MatMul", "Conv2D") or consumers[producer.name] != 1:
            continue
        if producer.attrs.get("transpose_b", False):
            continue
        weights = nodes[producer_of(producer.inputs[1])]
        if weights.op != "Const" or consumers[weights.name] != 1:
            continue
        multiplier, offset = batch_norm_affine(node, nodes)
        # HWIO convolution filters and [in, out] matrices both end in the output channel
        weights.attrs["value"] = (weights.attrs["value"] * multiplier).astype(np.float32)
        offset_name = f"{node.name}/folded_offset"
        nodes[offset_name] = TfNode(offset_name, "Const", [], {"value": offset.astype(np.float32)})
        node.op, node.inputs, node.attrs = "BiasAdd", [node.inputs[0], offset_name], {}


def const_value(nodes: dict[str, TfNode], tensor: str) -> Array:
    """The value of a constant tensor, through any Identity nodes."""
    node = nodes[producer_of(tensor)]
    while node.op == "Identity":
        node = nodes[producer_of(node.inputs[0])]
    if node.op != "Const":
        raise ConversionError(f"{tensor} must be a constant, is produced by {node.op}")
    value: Array = node.attrs["value"]
    return value


def post_order(nodes: dict[str, TfNode], output: str) -> list[TfNode]:
    """Nodes the output depends on, each after its inputs (iterative: the graph is deep)."""
    order: list[TfNode] = []
    done: set[str] = set()
    stack: list[tuple[str, bool]] = [(output, False)]
    while stack:
        name, expanded = stack.pop()
        if name in done:
            continue
        if expanded:
            done.add(name)
            order.append(nodes[name])
            continue
        stack.append((name, True))
        for tensor in reversed(nodes[name].inputs):
            if producer_of(tensor) not in done:
                stack.append((producer_of(tensor), False))
    return order


# -- ONNX emission ---------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """An ONNX tensor standing for a TensorFlow tensor: shape in TF order, -1 unknown."""

    name: str
    shape: tuple[int, ...]
    nchw: bool = False


def window(
    size: int, kernel: int, stride: int, dilation: int, padding: str
) -> tuple[int, int, int]:
    """(output size, pad before, pad after) of TensorFlow's SAME or VALID padding."""
    span = (kernel - 1) * dilation + 1
    if padding == "VALID":
        return (size - span) // stride + 1, 0, 0
    if padding != "SAME":
        raise ConversionError(f"padding {padding} is not supported")
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    # TensorFlow puts the odd pixel at the end, like ONNX's SAME_UPPER
    return out, total // 2, total - total // 2


class Emitter:
    """Appends the ONNX nodes and initialisers computing TensorFlow nodes, in order."""

    def __init__(self, nodes: dict[str, TfNode], input_name: str) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.tf = nodes
        self.consumers = _consumer_counts(nodes)
        self.values: dict[str, Value] = {}
        self.onnx_nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.initializer_names: set[str] = set()
        self.conv_nodes: dict[str, Any] = {}
        self.graph_inputs: list[Any] = []
        self.frozen_batch = -1
        self.input_name = input_name

    def model(self, tensor: str, output: str, graph_name: str, producer: tuple[str, str]) -> Any:
        """The checked ONNX model of the emitted nodes, TensorFlow `tensor` its output `output`."""
        import onnx
        from onnx import helper

        result = self.to_tf_layout(self.values[tensor])
        if result.name != output:
            self.node("Identity", [result.name], output)
        graph_output = helper.make_tensor_value_info(
            output, onnx.TensorProto.FLOAT, ["N", *result.shape[1:]]
        )
        graph = helper.make_graph(
            self.onnx_nodes, graph_name, self.graph_inputs, [graph_output],
            initializer=self.initializers,
        )  # fmt: skip
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name=producer[0],
            producer_version=producer[1],
            ir_version=IR_VERSION,
        )
        onnx.checker.check_model(model)
        return model

    # helpers

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        """Append one ONNX node named after its one output; return that output."""
        self.onnx_nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def initializer(self, name: str, array: Array) -> str:
        """Add a constant once under `name`; return the name."""
        if name not in self.initializer_names:
            self.initializer_names.add(name)
            self.initializers.append(
                self.numpy_helper.from_array(np.ascontiguousarray(array), name)
            )
        return name

    def is_const(self, tensor: str) -> bool:
        """True when the tensor is a constant (through any Identity nodes)."""
        node = self.tf[producer_of(tensor)]
        while node.op == "Identity":
            node = self.tf[producer_of(node.inputs[0])]
        return node.op == "Const"

    def const(self, tensor: str) -> Array:
        """The value of a constant tensor."""
        return const_value(self.tf, tensor)

    def to_tf_layout(self, value: Value) -> Value:
        """The value in TensorFlow's element order (NCHW maps transposed back to NHWC)."""
        if not value.nchw:
            return value
        name = self.node("Transpose", [value.name], f"{value.name}/nhwc", perm=[0, 2, 3, 1])
        return Value(name, value.shape)

    def operand(self, tensor: str, like: Value) -> str:
        """A constant operand as an initializer, laid out to broadcast against `like`."""
        array = self.const(tensor)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        if like.nchw and array.ndim == 1 and array.size > 1:
            array = array.reshape(-1, 1, 1)
        elif like.nchw and array.ndim == 4:
            array = array.transpose(0, 3, 1, 2)
        elif like.nchw and array.ndim not in (0, 1):
            raise ConversionError(f"cannot lay out constant {tensor} of shape {array.shape}")
        return self.initializer(f"{producer_of(tensor)}/value", array)

    # ops

    def emit(self, node: TfNode) -> None:
        """Append the ONNX nodes computing one TensorFlow node (constants are pulled lazily)."""
        handlers = {
            "Placeholder": self.placeholder,
            "Identity": self.identity,
            "Conv2D": self.conv2d,
            "BiasAdd": self.bias_add,
            "Square": self.square,
            "Rsqrt": self.rsqrt,
            "MaxPool": self.max_pool,
            "AvgPool": self.avg_pool,
            "ConcatV2": self.concat_v2,
            "Reshape": self.reshape,
            "Squeeze": self.squeeze,
            "MatMul": self.mat_mul,
            "Sum": self.sum,
            **dict.fromkeys(_BATCH_NORMS, self.batch_norm),
        }
        if node.op == "Const":
            return
        if node.op in _UNARY:
            x = self.values[node.inputs[0]]
            self.values[node.name] = Value(
                self.node(_UNARY[node.op], [x.name], node.name), x.shape, x.nchw
            )
        elif node.op in _BINARY:
            self.binary(node, _BINARY[node.op])
        elif node.op in handlers:
            handlers[node.op](node)
        else:
            raise ConversionError(f"{node.name}: op {node.op} is not supported")

    def placeholder(self, node: TfNode) -> None:
        shape = tuple(node.attrs.get("shape", ()))
        if node.name != self.input_name or len(shape) != 4:
            raise ConversionError(f"unexpected placeholder {node.name} {shape}")
        self.frozen_batch = shape[0]
        dims = ["N", *shape[1:]]
        self.graph_inputs.append(
            self.helper.make_tensor_value_info(self.input_name, 1, dims)  # 1: FLOAT
        )
        name = self.node(
            "Transpose", [self.input_name], f"{self.input_name}/nchw", perm=[0, 3, 1, 2]
        )
        self.values[node.name] = Value(name, (-1, *shape[1:]), nchw=True)

    def identity(self, node: TfNode) -> None:
        self.values[node.name] = self.values[node.inputs[0]]

    def conv2d(self, node: TfNode) -> None:
        x = self.values[node.inputs[0]]
        if not x.nchw or node.attrs.get("data_format", "NHWC") != "NHWC":
            raise ConversionError(f"{node.name}: expected an NHWC input")
        weights = self.const(node.inputs[1]).astype(np.float32)
        kh, kw, _, cout = weights.shape
        strides = node.attrs.get("strides", [1, 1, 1, 1])
        dilations = node.attrs.get("dilations", [1, 1, 1, 1])
        padding = node.attrs.get("padding", "VALID")
        oh, top, bottom = window(x.shape[1], kh, strides[1], dilations[1], padding)
        ow, left, right = window(x.shape[2], kw, strides[2], dilations[2], padding)
        w = self.initializer(f"{node.name}/W", weights.transpose(3, 2, 0, 1))
        self.node(
            "Conv", [x.name, w], node.name,
            kernel_shape=[kh, kw], strides=[strides[1], strides[2]],
            dilations=[dilations[1], dilations[2]], pads=[top, left, bottom, right],
        )  # fmt: skip
        self.conv_nodes[node.name] = self.onnx_nodes[-1]
        self.values[node.name] = Value(node.name, (-1, oh, ow, cout), nchw=True)

    def bias_add(self, node: TfNode) -> None:
        x_tensor, bias_tensor = node.inputs
        conv = self.conv_nodes.get(x_tensor)
        if conv is not None and len(conv.input) == 2 and self.consumers[x_tensor] == 1:
            bias = self.const(bias_tensor).astype(np.float32)
            conv.input.append(self.initializer(f"{x_tensor}/B", bias))
            self.values[node.name] = self.values[x_tensor]
            return
        self.binary(node, "Add")

    def binary(self, node: TfNode, op: str) -> None:
        a_tensor, b_tensor = node.inputs
        if self.is_const(a_tensor) and self.is_const(b_tensor):
            raise ConversionError(f"{node.name}: both operands constant")
        if self.is_const(a_tensor):
            b = self.values[b_tensor]
            inputs, like = [self.operand(a_tensor, b), b.name], b
        elif self.is_const(b_tensor):
            a = self.values[a_tensor]
            inputs, like = [a.name, self.operand(b_tensor, a)], a
        else:
            a, b = self.values[a_tensor], self.values[b_tensor]
            if a.nchw != b.nchw:
                a, b = self.to_tf_layout(a), self.to_tf_layout(b)
            inputs, like = [a.name, b.name], a
        self.values[node.name] = Value(self.node(op, inputs, node.name), like.shape, like.nchw)

    def square(self, node: TfNode) -> None:
        x = self.values[node.inputs[0]]
        self.values[node.name] = Value(
            self.node("Mul", [x.name, x.name], node.name), x.shape, x.nchw
        )

    def rsqrt(self, node: TfNode) -> None:
        x = self.values[node.inputs[0]]
        root = self.node("Sqrt", [x.name], f"{node.name}/sqrt")
        self.values[node.name] = Value(self.node("Reciprocal", [root], node.name), x.shape, x.nchw)

    def pool(self, node: TfNode, op: str) -> None:
        x = self.values[node.inputs[0]]
        if not x.nchw or node.attrs.get("data_format", "NHWC") != "NHWC":
            raise ConversionError(f"{node.name}: expected an NHWC input")
        ksize, strides = node.attrs["ksize"], node.attrs["strides"]
        padding = node.attrs.get("padding", "VALID")
        oh, top, bottom = window(x.shape[1], ksize[1], strides[1], 1, padding)
        ow, left, right = window(x.shape[2], ksize[2], strides[2], 1, padding)
        # ONNX pooling ignores padded cells, as TensorFlow does (max and average alike)
        self.node(
            op, [x.name], node.name, kernel_shape=[ksize[1], ksize[2]],
            strides=[strides[1], strides[2]], pads=[top, left, bottom, right],
        )  # fmt: skip
        self.values[node.name] = Value(node.name, (-1, oh, ow, x.shape[3]), nchw=True)

    def max_pool(self, node: TfNode) -> None:
        self.pool(node, "MaxPool")

    def avg_pool(self, node: TfNode) -> None:
        self.pool(node, "AveragePool")

    def concat_v2(self, node: TfNode) -> None:
        parts = [self.values[t] for t in node.inputs[:-1]]
        axis = int(self.const(node.inputs[-1]))
        rank = len(parts[0].shape)
        axis %= rank
        nchw = all(p.nchw for p in parts)
        if not nchw:
            parts = [self.to_tf_layout(p) for p in parts]
        shape = list(parts[0].shape)
        shape[axis] = sum(p.shape[axis] for p in parts)
        onnx_axis = _TO_NCHW_AXIS[axis] if nchw else axis
        self.node("Concat", [p.name for p in parts], node.name, axis=onnx_axis)
        self.values[node.name] = Value(node.name, tuple(shape), nchw)

    def reshape(self, node: TfNode) -> None:
        x = self.values[node.inputs[0]]
        # NCHW and NHWC hold a 1x1 map's elements in the same order: no transpose needed
        if x.nchw and x.shape[1] * x.shape[2] != 1:
            x = self.to_tf_layout(x)
        target = [int(d) for d in self.const(node.inputs[1])]
        if len(target) >= 2 and target[0] == self.frozen_batch:
            target[0] = 0  # the batch the graph was frozen with: take the input's instead
        per_item = math.prod(x.shape[1:])
        rest = target[1:]
        if target[0] != -1 and -1 in rest:
            known = math.prod(d for d in rest if d != -1)
            rest[rest.index(-1)] = per_item // known
        shape_name = self.initializer(f"{node.name}/shape", np.array(target, dtype=np.int64))
        self.node("Reshape", [x.name, shape_name], node.name)
        self.values[node.name] = Value(node.name, (-1, *rest))

    def squeeze(self, node: TfNode) -> None:
        x = self.to_tf_layout(self.values[node.inputs[0]])
        axes = [a % len(x.shape) for a in node.attrs.get("squeeze_dims", [])]
        if not axes:
            axes = [i for i, d in enumerate(x.shape) if d == 1]
        axes_name = self.initializer(f"{node.name}/axes", np.array(axes, dtype=np.int64))
        self.node("Squeeze", [x.name, axes_name], node.name)
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        self.values[node.name] = Value(node.name, shape)

    def mat_mul(self, node: TfNode) -> None:
        a = self.to_tf_layout(self.values[node.inputs[0]])
        if node.attrs.get("transpose_a", False) or len(a.shape) != 2:
            raise ConversionError(f"{node.name}: only [batch, features] x constant is mapped")
        weights = self.const(node.inputs[1]).astype(np.float32)
        if node.attrs.get("transpose_b", False):
            weights = weights.T
        w = self.initializer(f"{node.name}/W", weights)
        self.node("MatMul", [a.name, w], node.name)
        self.values[node.name] = Value(node.name, (a.shape[0], weights.shape[1]))

    def sum(self, node: TfNode) -> None:
        x = self.to_tf_layout(self.values[node.inputs[0]])
        axes = sorted(int(a) % len(x.shape) for a in np.atleast_1d(self.const(node.inputs[1])))
        keep = bool(node.attrs.get("keep_dims", False))
        axes_name = self.initializer(f"{node.name}/axes", np.array(axes, dtype=np.int64))
        self.node("ReduceSum", [x.name, axes_name], node.name, keepdims=int(keep))
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        self.values[node.name] = Value(node.name, shape)

    def batch_norm(self, node: TfNode) -> None:
        x = self.values[node.inputs[0]]
        multiplier, offset = batch_norm_affine(node, self.tf)
        shape = (-1, 1, 1) if x.nchw else (-1,)
        m = self.initializer(
            f"{node.name}/multiplier", multiplier.astype(np.float32).reshape(shape)
        )
        b = self.initializer(f"{node.name}/offset", offset.astype(np.float32).reshape(shape))
        scaled = self.node("Mul", [x.name, m], f"{node.name}/scaled")
        self.values[node.name] = Value(self.node("Add", [scaled, b], node.name), x.shape, x.nchw)
