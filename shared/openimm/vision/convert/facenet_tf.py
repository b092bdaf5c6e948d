"""FaceNet's frozen TensorFlow graph (a GraphDef .pb) to an ONNX graph, without TensorFlow.

The GraphDef is read straight from the protobuf wire format: a frozen graph needs only a
handful of message types (GraphDef, NodeDef, AttrValue, TensorProto, TensorShapeProto), so a
small reader replaces a TensorFlow install. The ONNX graph is written by tf_onnx's
emitter; nothing here runs at serving time.

The shipped graph was frozen for inference (no training switch, batch norms already folded
into the convolutions, `*_bn_offset` biases) with a batch of one. Its remaining batch norm
(on the bottleneck) is folded into the MatMul weights, and reshape targets whose leading
entry is that frozen batch size copy the input's batch instead, so the ONNX model takes
any batch. Output is fully determined by the input file: fixed names, opset and IR version,
deterministic serialisation.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from openimm.vision.convert.tf_onnx import (
    Array,
    ConversionError,
    Emitter,
    TfNode,
    fold_batch_norms,
    post_order,
)

INPUT_NAME = "input"
OUTPUT_NAME = "embeddings"
PRODUCER = "openimm.vision.convert.facenet_tf"
PRODUCER_VERSION = "1"

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
# TensorFlow DataType enum -> numpy
_DTYPES: dict[int, Any] = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    9: np.int64,
    10: np.bool_,
}


# -- protobuf wire format --------------------------------------------------------------


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of one message; varints as int, the rest as bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | memoryview
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _FIXED64:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == _LENGTH:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == _FIXED32:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ConversionError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _as_bytes(value: int | memoryview) -> memoryview:
    if isinstance(value, int):
        raise ConversionError("expected a length-delimited field, found a varint")
    return value


def _as_int(value: int | memoryview) -> int:
    if not isinstance(value, int):
        raise ConversionError("expected a varint field")
    return _signed(value)


def _text(value: int | memoryview) -> str:
    return bytes(_as_bytes(value)).decode("utf-8")


def _varints(wire: int, value: int | memoryview) -> list[int]:
    """A repeated integer field: packed (one length-delimited run) or one element."""
    if wire == _VARINT:
        return [_as_int(value)]
    buf, pos, out = _as_bytes(value), 0, []
    while pos < len(buf):
        item, pos = _varint(buf, pos)
        out.append(_signed(item))
    return out


def _floats(value: int | memoryview, fmt: str) -> list[float]:
    """A repeated float field: packed or one fixed-width element, the same bytes either way."""
    return [v for (v,) in struct.iter_unpack(fmt, bytes(_as_bytes(value)))]


# -- TensorFlow messages ---------------------------------------------------------------


def _shape(buf: memoryview) -> tuple[int, ...]:
    dims: list[int] = []
    for number, _, value in _fields(buf):
        if number == 2:
            size = 0
            for dim_number, _, dim_value in _fields(_as_bytes(value)):
                if dim_number == 1:
                    size = _as_int(dim_value)
            dims.append(size)
    return tuple(dims)


def _tensor(buf: memoryview) -> Array:
    dtype_code, content = 1, b""
    shape: tuple[int, ...] = ()
    values: list[Any] = []
    for number, wire, value in _fields(buf):
        if number == 1:
            dtype_code = _as_int(value)
        elif number == 2:
            shape = _shape(_as_bytes(value))
        elif number == 4:
            content = bytes(_as_bytes(value))
        elif number == 5:
            values += _floats(value, "<f")
        elif number == 6:
            values += _floats(value, "<d")
        elif number in (7, 10, 11):
            values += _varints(wire, value)
    dtype = _DTYPES.get(dtype_code)
    if dtype is None:
        raise ConversionError(f"unsupported tensor dtype {dtype_code}")
    count = math.prod(shape)
    if content:
        return np.frombuffer(content, dtype=dtype).reshape(shape).copy()
    if len(values) == count:
        return np.array(values, dtype=dtype).reshape(shape)
    # TensorFlow stores a tensor of identical values as one value, to be repeated
    fill = values[-1] if values else 0
    return np.full(shape, fill, dtype=dtype)


def _attr(buf: memoryview) -> Any:
    for number, _, value in _fields(buf):
        if number == 1:
            items: list[Any] = []
            for item_number, item_wire, item in _fields(_as_bytes(value)):
                if item_number == 2:
                    items.append(_text(item))
                elif item_number in (3, 5, 6):
                    items += _varints(item_wire, item)
                elif item_number == 4:
                    items += _floats(item, "<f")
            return items
        if number == 2:
            return _text(value)
        if number in (3, 6):
            return _as_int(value)
        if number == 4:
            return struct.unpack("<f", bytes(_as_bytes(value)))[0]
        if number == 5:
            return bool(_as_int(value))
        if number == 7:
            return _shape(_as_bytes(value))
        if number == 8:
            return _tensor(_as_bytes(value))
    return None


def _node(buf: memoryview) -> TfNode:
    node = TfNode(name="", op="", inputs=[], attrs={})
    for number, _, value in _fields(buf):
        if number == 1:
            node.name = _text(value)
        elif number == 2:
            node.op = _text(value)
        elif number == 3:
            name = _text(value)
            if not name.startswith("^"):
                node.inputs.append(name[:-2] if name.endswith(":0") else name)
        elif number == 5:
            key, attr = "", None
            for entry_number, _, entry in _fields(_as_bytes(value)):
                if entry_number == 1:
                    key = _text(entry)
                elif entry_number == 2:
                    attr = _attr(_as_bytes(entry))
            node.attrs[key] = attr
    return node


def read_graph_def(data: bytes) -> dict[str, TfNode]:
    """The nodes of a serialised GraphDef, by name."""
    nodes: dict[str, TfNode] = {}
    for number, _, value in _fields(memoryview(data)):
        if number == 1:
            node = _node(_as_bytes(value))
            nodes[node.name] = node
    return nodes


def _encoded_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _encoded_field(number: int, wire: int, value: int | memoryview) -> bytes:
    key = _encoded_varint(number << 3 | wire)
    if isinstance(value, int):
        return key + _encoded_varint(value)
    if wire == _LENGTH:
        return key + _encoded_varint(len(value)) + bytes(value)
    return key + bytes(value)


def without_control_inputs(data: bytes) -> bytes:
    """The GraphDef with its control-dependency inputs ('^node') dropped, all else as is.

    Control inputs only order execution; OpenCV's TensorFlow importer rejects them, so its
    reference runs get the graph without them.
    """
    out = bytearray()
    for number, wire, value in _fields(memoryview(data)):
        if number != 1:
            out += _encoded_field(number, wire, value)
            continue
        node = bytearray()
        for field_number, field_wire, field in _fields(_as_bytes(value)):
            if not (field_number == 3 and _text(field).startswith("^")):
                node += _encoded_field(field_number, field_wire, field)
        out += _encoded_field(number, _LENGTH, memoryview(bytes(node)))
    return bytes(out)


def _build_model(nodes: dict[str, TfNode]) -> Any:

    if OUTPUT_NAME not in nodes:
        raise ConversionError(f"the graph has no node named {OUTPUT_NAME!r}")
    fold_batch_norms(nodes)
    emitter = Emitter(nodes, INPUT_NAME)
    for node in post_order(nodes, OUTPUT_NAME):
        emitter.emit(node)
    if not emitter.graph_inputs:
        raise ConversionError(f"the output does not depend on a placeholder {INPUT_NAME!r}")
    return emitter.model(
        OUTPUT_NAME, OUTPUT_NAME, "facenet_inception_resnet_v1", (PRODUCER, PRODUCER_VERSION)
    )


def convert_facenet(pb_path: Path | str, onnx_path: Path | str) -> None:
    """Convert FaceNet's frozen GraphDef at `pb_path` into an ONNX model at `onnx_path`."""
    nodes = read_graph_def(Path(pb_path).read_bytes())
    model = _build_model(nodes)
    Path(onnx_path).write_bytes(model.SerializeToString(deterministic=True))
