"""Choose which tensors an ONNX model returns, by rewriting its serialised bytes.

A pinned model is kept byte for byte as its package ships it (so its sha256 stays the
pinned one); when only an intermediate tensor is wanted, such as the pooled features
before a classifier, the graph's output list is replaced in memory before onnxruntime
loads it, and onnxruntime then prunes the nodes nobody reads.

ONNX files are protocol buffers: ModelProto field 7 is the GraphProto, GraphProto field 12
the repeated output ValueInfoProto, ValueInfoProto field 1 its name. Fields are
self-delimiting and may come in any order, so copying every other field verbatim and
appending new outputs gives a valid model without the `onnx` package. An output listed
by name only (no type) is allowed; onnxruntime infers its type and shape.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

MODEL_GRAPH = 7
GRAPH_OUTPUT = 12
VALUE_INFO_NAME = 1

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def expose_outputs(model: bytes, names: Sequence[str]) -> bytes:
    """The model with its graph outputs replaced by the tensors named (in that order)."""
    if not names:
        raise ValueError("at least one output is needed")
    out = bytearray()
    graphs = 0
    for field, wire, start, payload, end in _fields(model):
        if field == MODEL_GRAPH and wire == _LENGTH_DELIMITED:
            graph = _replace_outputs(model[payload:end], names)
            out += _length_delimited(MODEL_GRAPH, graph)
            graphs += 1
        else:
            out += model[start:end]
    if graphs != 1:
        raise ValueError(f"expected one graph in the model, found {graphs}")
    return bytes(out)


def _replace_outputs(graph: bytes, names: Sequence[str]) -> bytes:
    out = bytearray()
    for field, wire, start, _, end in _fields(graph):
        if not (field == GRAPH_OUTPUT and wire == _LENGTH_DELIMITED):
            out += graph[start:end]
    for name in names:
        value_info = _length_delimited(VALUE_INFO_NAME, name.encode("utf-8"))
        out += _length_delimited(GRAPH_OUTPUT, value_info)
    return bytes(out)


def _fields(buf: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, start of the key, start of the value, end) of each field."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, end = _read_varint(buf, pos)
        elif wire == _FIXED64:
            end = pos + 8
        elif wire == _FIXED32:
            end = pos + 4
        elif wire == _LENGTH_DELIMITED:
            length, pos = _read_varint(buf, pos)
            end = pos + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {start}")
        if end > len(buf):
            raise ValueError(f"protobuf field {field} at byte {start} runs past the end")
        yield field, wire, start, pos, end
        pos = end


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("malformed protobuf varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload
