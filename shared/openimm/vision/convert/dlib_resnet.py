"""dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1.dat) as an ONNX graph.

The .dat file is dlib's own serialisation of `anet_type` from dlib's
dnn_face_recognition_ex.cpp: a 29-convolution ResNet whose batch norms were frozen into
`affine` layers, on 150x150 RGB chips, ending in a 128-d `fc_no_bias` under `loss_metric`.

Encoding (dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h):
- integer: a control byte (bit 7: negative, low 4 bits: byte count), then the absolute
  value little-endian in that many bytes;
- real: two integers, mantissa then exponent, value = mantissa * 2**exponent (exponents
  32000..32002 mean +inf, -inf, NaN);
- string: its length as an integer, then the bytes; bool: ASCII '1' or '0';
- tensor: version 2, then n, k, nr, nc, then n*k*nr*nc float32 little-endian;
  alias tensor (a view into a layer's flat parameters): version 1, then n, k, nr, nc.

Nesting (dlib/dnn/core.h): every wrapper writes its version, then its subnetwork, then its
own state, so the file holds the versions top-down, then the input layer, then each
layer's state bottom-up. Tag and skip wrappers write nothing but a version, not even their
id, so the architecture cannot be read from the file: it is spelt out below and every
layer's name and hyper-parameters in the file are checked against it.

Graph: input `chips`, uint8 RGB, NHWC (N, 150, 150, 3), the layout aligned chips come in;
normalised in the graph exactly like dlib's input layer, (x - mean[c]) / 256 in float32.
Output `descriptors`, float32 (N, 128), unnormalised like dlib's. The batch is dynamic.

dlib conventions kept: convolutions and poolings pad kernel/2 only at stride 1 (none at
stride 2) and round output sizes down; `add_prev` adds tensors of different shapes by
zero-padding both at the end of every dimension (a stride-2 branch can come out one row
smaller than its pooled shortcut, and has more channels); `avg_pool_everything` is a
global average; `fc_no_bias` multiplies the flattened (k, nr, nc) input by a
(inputs, outputs) matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
INPUT_NAME = "chips"
OUTPUT_NAME = "descriptors"
PRODUCER = "openimm.vision.convert.dlib_resnet"

Floats = npt.NDArray[np.float32]


class DlibFormatError(ValueError):
    """The file is not the dlib network this converter knows."""


# ---- the architecture (forward order, bottom up) ------------------------------------------


@dataclass(frozen=True)
class Conv:
    filters: int
    size: int
    stride: int

    @property
    def padding(self) -> int:
        # con_'s default: kernel/2 at stride 1, none otherwise
        return self.size // 2 if self.stride == 1 else 0


@dataclass(frozen=True)
class Affine:
    pass


@dataclass(frozen=True)
class Relu:
    pass


@dataclass(frozen=True)
class Pool:
    kind: str  # "max" or "avg"
    size: int  # 0: the whole input (avg_pool_everything)
    stride: int

    @property
    def padding(self) -> int:
        return self.size // 2 if self.stride == 1 and self.size else 0


@dataclass(frozen=True)
class Tag:
    tag: int


@dataclass(frozen=True)
class Skip:
    tag: int


@dataclass(frozen=True)
class AddPrev:
    tag: int


@dataclass(frozen=True)
class Fc:
    outputs: int


Layer = Conv | Affine | Relu | Pool | Tag | Skip | AddPrev | Fc


def _residual(filters: int) -> list[Layer]:
    # ares: relu<add_prev1<affine<con<relu<affine<con<tag1<SUBNET>>>>>>>>
    return [
        Tag(1), Conv(filters, 3, 1), Affine(), Relu(), Conv(filters, 3, 1), Affine(),
        AddPrev(1), Relu(),
    ]  # fmt: skip


def _residual_down(filters: int) -> list[Layer]:
    # ares_down: relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block(stride 2)<tag1<SUBNET>>>>>>>
    return [
        Tag(1), Conv(filters, 3, 2), Affine(), Relu(), Conv(filters, 3, 1), Affine(),
        Tag(2), Skip(1), Pool("avg", 2, 2), AddPrev(2), Relu(),
    ]  # fmt: skip


def anet_layers() -> list[Layer]:
    """dlib's anet_type, input side first."""
    layers: list[Layer] = [Conv(32, 7, 2), Affine(), Relu(), Pool("max", 3, 2)]
    layers += _residual(32) * 3  # alevel4
    layers += _residual_down(64) + _residual(64) * 3  # alevel3
    layers += _residual_down(128) + _residual(128) * 2  # alevel2
    layers += _residual_down(256) + _residual(256) * 2  # alevel1
    layers += _residual_down(256)  # alevel0
    layers += [Pool("avg", 0, 1), Fc(128)]
    return layers


# ---- reading dlib's serialisation ---------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise DlibFormatError(f"truncated at byte {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        value = int.from_bytes(self._take(control & 0x0F), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        return special[exponent] if exponent in special else math.ldexp(mantissa, exponent)

    def text(self) -> str:
        return self._take(self.integer()).decode("latin-1")

    def flag(self) -> bool:
        value = self._take(1)
        if value not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {value!r} at byte {self.pos - 1}")
        return value == b"1"

    def tensor(self) -> Floats:
        self.version(2, "tensor")
        shape = tuple(self.integer() for _ in range(4))
        count = math.prod(shape)
        return np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, ...]:
        self.version(1, "alias_tensor")
        return tuple(self.integer() for _ in range(4))

    def version(self, accepted: int | tuple[int, ...], what: str) -> int:
        value = self.integer()
        if value not in (accepted if isinstance(accepted, tuple) else (accepted,)):
            raise DlibFormatError(f"{what}: unexpected version {value} at byte {self.pos}")
        return value

    def name(self, expected: str) -> None:
        found = self.text()
        if found != expected:
            raise DlibFormatError(f"expected layer {expected!r}, found {found!r}")

    def check(self, what: str, found: object, expected: object) -> None:
        if found != expected:
            raise DlibFormatError(f"{what}: file has {found}, the architecture {expected}")


@dataclass(frozen=True)
class DlibNetwork:
    """The parsed network: input normalisation and each layer's parameters."""

    means: tuple[float, float, float]
    size: int
    layers: tuple[Layer, ...]
    params: tuple[dict[str, Floats], ...]


def _split(flat: Floats, *shapes: tuple[int, ...]) -> list[Floats]:
    out, offset = [], 0
    for shape in shapes:
        count = math.prod(shape)
        out.append(flat[offset : offset + count].reshape(shape))
        offset += count
    if offset != flat.size:
        raise DlibFormatError(f"{flat.size} parameters where {offset} were expected")
    return out


def _read_layer(reader: _Reader, layer: Layer) -> dict[str, Floats]:
    if isinstance(layer, Conv):
        reader.name("con_4")
        flat = reader.tensor().ravel()
        reader.check("con num_filters", reader.integer(), layer.filters)
        reader.check("con nr, nc", (reader.integer(), reader.integer()), (layer.size,) * 2)
        reader.check("con strides", (reader.integer(), reader.integer()), (layer.stride,) * 2)
        reader.check("con padding", (reader.integer(), reader.integer()), (layer.padding,) * 2)
        filters, biases = reader.alias(), reader.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            reader.real()
        reader.check(
            "con filters", (filters[0], *filters[2:]), (layer.filters,) + (layer.size,) * 2
        )
        reader.check("con biases", biases, (1, layer.filters, 1, 1))
        weight, bias = _split(flat, filters, (layer.filters,))
        return {"weight": weight, "bias": bias}
    if isinstance(layer, Affine):
        reader.name("affine_")
        flat = reader.tensor().ravel()
        gamma, beta = reader.alias(), reader.alias()
        reader.check("affine mode (0: per channel)", reader.integer(), 0)
        reader.check("affine beta", beta, gamma)
        scale, shift = _split(flat, gamma, beta)
        return {"scale": scale.reshape(1, -1, 1, 1), "shift": shift.reshape(1, -1, 1, 1)}
    if isinstance(layer, Relu):
        reader.name("relu_")
        return {}
    if isinstance(layer, AddPrev):
        reader.name("add_prev_")
        return {}
    if isinstance(layer, Pool):
        reader.name(f"{layer.kind}_pool_2")
        reader.check("pool nr, nc", (reader.integer(), reader.integer()), (layer.size,) * 2)
        reader.check("pool strides", (reader.integer(), reader.integer()), (layer.stride,) * 2)
        reader.check("pool padding", (reader.integer(), reader.integer()), (layer.padding,) * 2)
        return {}
    if isinstance(layer, Fc):
        reader.name("fc_2")
        reader.check("fc num_outputs", reader.integer(), layer.outputs)
        inputs = reader.integer()
        flat = reader.tensor().ravel()
        weights, _biases = reader.alias(), reader.alias()
        reader.check("fc bias mode (1: no bias)", reader.integer(), 1)
        for _ in range(4):
            reader.real()
        reader.check("fc weights", weights[:2], (inputs, layer.outputs))
        (matrix,) = _split(flat, (inputs, layer.outputs))
        return {"matrix": matrix}
    raise AssertionError(layer)  # tags and skips have no state


def read_dlib_resnet(data: bytes) -> DlibNetwork:
    """Parse dlib_face_recognition_resnet_model_v1.dat, checked against anet_type."""
    reader = _Reader(data)
    reader.version(1, "add_loss_layer")
    reader.name("loss_metric_2")
    _margin, _threshold = reader.real(), reader.real()  # training only
    layers = anet_layers()
    versions: list[int] = []
    for depth, layer in enumerate(reversed(layers)):
        if isinstance(layer, Tag | Skip):
            versions.append(reader.version(1, f"tag/skip layer {depth}"))
        elif depth == len(layers) - 1:  # the add_layer holding the input layer
            versions.append(reader.version((2, 3), "input add_layer"))
        else:
            versions.append(reader.version((1, 2), f"add_layer {depth}"))
    versions.reverse()
    reader.name("input_rgb_image_sized")
    means = (reader.real(), reader.real(), reader.real())
    size = reader.integer()
    reader.check("input nc", reader.integer(), size)
    params: list[dict[str, Floats]] = []
    for index, (layer, version) in enumerate(zip(layers, versions, strict=True)):
        if isinstance(layer, Tag | Skip):
            params.append({})
            continue
        params.append(_read_layer(reader, layer))
        for _ in range(3):  # setup called, gradient stale, outputs disabled
            reader.flag()
        _x_grad, _cached_output = reader.tensor(), reader.tensor()  # training state
        if index == 0:
            reader.tensor()  # grad_final
            if version >= 3:
                reader.integer()  # sample expansion factor
        elif version >= 2:
            reader.tensor()  # params_grad
    if reader.pos != len(data):
        raise DlibFormatError(f"{len(data) - reader.pos} bytes left after the network")
    return DlibNetwork(means, size, tuple(layers), tuple(params))


# ---- building the ONNX graph --------------------------------------------------------------


class _Graph:
    """Nodes and weights added in order, named by position so the bytes are reproducible."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []

    def const(self, name: str, value: npt.NDArray[Any]) -> str:
        self.weights.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        name = f"n{len(self.nodes):03d}_{op_type.lower()}"
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return 1 + (size + 2 * padding - kernel) // stride


def _pad_to(graph: _Graph, x: str, shape: tuple[int, ...], target: tuple[int, ...]) -> str:
    if shape == target:
        return x
    ends = [0] + [t - s for s, t in zip(shape, target, strict=True)]
    pads = np.array([0, 0, 0, 0, *ends], dtype=np.int64)
    return graph.op("Pad", [x, graph.const(f"pads_{len(graph.nodes):03d}", pads)])


def build_onnx(network: DlibNetwork) -> onnx.ModelProto:
    """The ONNX model computing the network's descriptors for uint8 NHWC RGB chips."""
    graph = _Graph()
    size = network.size
    x = graph.op("Cast", [INPUT_NAME], to=TensorProto.FLOAT)
    x = graph.op("Transpose", [x], perm=[0, 3, 1, 2])
    means = np.array(network.means, dtype=np.float32).reshape(1, 3, 1, 1)
    x = graph.op("Sub", [x, graph.const("input_means", means)])
    x = graph.op("Div", [x, graph.const("input_scale", np.array(256.0, dtype=np.float32))])
    shape: tuple[int, int, int] = (3, size, size)  # (k, nr, nc) as dlib counts them
    tags: dict[int, tuple[str, tuple[int, int, int]]] = {}
    for index, (layer, params) in enumerate(zip(network.layers, network.params, strict=True)):
        prefix = f"l{index:03d}"
        if isinstance(layer, Conv):
            weight = graph.const(f"{prefix}_weight", params["weight"])
            bias = graph.const(f"{prefix}_bias", params["bias"])
            k, p, s = layer.size, layer.padding, layer.stride
            x = graph.op(
                "Conv", [x, weight, bias], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4
            )
            side = _out_size(shape[1], k, s, p)
            shape = (layer.filters, side, _out_size(shape[2], k, s, p))
        elif isinstance(layer, Affine):
            x = graph.op("Mul", [x, graph.const(f"{prefix}_scale", params["scale"])])
            x = graph.op("Add", [x, graph.const(f"{prefix}_shift", params["shift"])])
        elif isinstance(layer, Relu):
            x = graph.op("Relu", [x])
        elif isinstance(layer, Pool) and layer.size == 0:
            x = graph.op("GlobalAveragePool", [x])
            shape = (shape[0], 1, 1)
        elif isinstance(layer, Pool):
            k, p, s = layer.size, layer.padding, layer.stride
            op_type = "MaxPool" if layer.kind == "max" else "AveragePool"
            x = graph.op(op_type, [x], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
            shape = (shape[0], _out_size(shape[1], k, s, p), _out_size(shape[2], k, s, p))
        elif isinstance(layer, Tag):
            tags[layer.tag] = (x, shape)
        elif isinstance(layer, Skip):
            x, shape = tags[layer.tag]
        elif isinstance(layer, AddPrev):
            other, other_shape = tags[layer.tag]
            target = tuple(max(a, b) for a, b in zip(shape, other_shape, strict=True))
            x = graph.op(
                "Add",
                [_pad_to(graph, x, shape, target), _pad_to(graph, other, other_shape, target)],
            )
            shape = (target[0], target[1], target[2])
        elif isinstance(layer, Fc):
            x = graph.op("Flatten", [x], axis=1)
            matrix = graph.const(f"{prefix}_matrix", params["matrix"])
            x = graph.op("MatMul", [x, matrix])
            shape = (layer.outputs, 1, 1)
    graph.nodes[-1].output[0] = OUTPUT_NAME
    chips = helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", size, size, 3])
    out = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", shape[0]])
    model = helper.make_model(
        helper.make_graph(graph.nodes, "dlib_face_recognition_resnet_model_v1", [chips], [out],
                          graph.weights),
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name=PRODUCER,
        producer_version="1",
    )  # fmt: skip
    onnx.checker.check_model(model)
    return model


def convert_dlib_resnet(dat_path: Path, onnx_path: Path) -> None:
    """Write dlib's face-recognition ResNet at `dat_path` as an ONNX model to `onnx_path`."""
    model = build_onnx(read_dlib_resnet(dat_path.read_bytes()))
    onnx_path.write_bytes(model.SerializeToString())
