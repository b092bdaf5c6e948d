"""TF.js graph models convert to ONNX graphs that compute what the TF.js graph computes.

The graphs are small ones written here in TF.js's own format (model.json and a weight
shard), using every op and fused-op form the converter maps; the reference is a plain
numpy interpreter of the same nodes (tfjs_reference.py).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tfjs_reference
from openimm.vision.convert.tf_onnx import ConversionError
from openimm.vision.convert.tfjs_graph import convert_tfjs_graph, read_tfjs_graph

RNG = np.random.default_rng(7)


def _s(text: str) -> dict[str, str]:
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(*values: int) -> dict[str, Any]:
    return {"list": {"i": [str(v) for v in values]}}


def _conv_attrs(stride: int, padding: str, fused: list[str] | None = None) -> dict[str, Any]:
    attrs = {"strides": _ints(1, stride, stride, 1), "padding": _s(padding)}
    attrs["data_format"] = _s("NHWC")
    if fused is not None:
        attrs["fused_ops"] = {"list": {"s": [_s(op)["s"] for op in fused]}}
        attrs["num_args"] = {"i": "1"}
    return attrs


class GraphWriter:
    """Builds a TF.js graph model: nodes in model.json, constants' values in one shard."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.weights: list[tuple[str, np.ndarray[Any, Any]]] = []

    def op(self, name: str, op: str, *inputs: str, **attrs: Any) -> str:
        self.nodes.append({"name": name, "op": op, "input": list(inputs), "attr": attrs})
        return name

    def const(self, name: str, value: np.ndarray[Any, Any]) -> str:
        self.weights.append((name, value))
        dtype = "DT_INT32" if value.dtype == np.int32 else "DT_FLOAT"
        return self.op(name, "Const", dtype={"type": dtype})

    def random(self, name: str, *shape: int) -> str:
        return self.const(name, RNG.normal(0, 0.5, shape).astype(np.float32))

    def write(self, folder: Path, *, float16: bool = False) -> Path:
        specs, chunks = [], []
        for name, value in self.weights:
            spec: dict[str, Any] = {
                "name": name,
                "shape": list(value.shape),
                "dtype": "int32" if value.dtype == np.int32 else "float32",
            }
            if float16 and value.dtype == np.float32:
                spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
                chunks.append(value.astype("<f2").tobytes())
            else:
                chunks.append(value.tobytes())
            specs.append(spec)
        (folder / "tiny.bin").write_bytes(b"".join(chunks))
        document = {
            "format": "graph-model",
            "modelTopology": {"node": self.nodes},
            "weightsManifest": [{"paths": ["tiny.bin"], "weights": specs}],
        }
        path = folder / "tiny.json"
        path.write_text(json.dumps(document))
        return path


def _prelu(g: GraphWriter, name: str, x: str, channels: int) -> str:
    """TF's PReLU as MobileFaceNet_TF spells it: Relu(x) + c * (x - |x|)."""
    relu = g.op(f"{name}/Relu", "Relu", x)
    absolute = g.op(f"{name}/Abs", "Abs", x)
    sub = g.op(f"{name}/sub", "Sub", x, absolute)
    mul = g.op(f"{name}/mul_1", "Mul", sub, g.random(f"{name}/mul", channels))
    return g.op(f"{name}/add", "Add", relu, mul)


def tiny_graph() -> GraphWriter:
    """Every mapped op: fused and plain convolutions, PReLU idioms, Pad, Mean, MatMul, L2."""
    g = GraphWriter()
    x = g.op(
        "img",
        "Placeholder",
        shape={"shape": {"dim": [{"size": "-1"}, {"size": "9"}, {"size": "9"}, {"size": "3"}]}},
    )
    conv = g.op(
        "conv", "_FusedConv2D", x, g.random("conv/w", 3, 3, 3, 8), g.random("conv/b", 8),
        **_conv_attrs(2, "SAME", ["BiasAdd"]),
    )  # fmt: skip
    act = _prelu(g, "p1", conv, 8)
    dw = g.op(
        "dw", "FusedDepthwiseConv2dNative", act, g.random("dw/w", 3, 3, 8, 1),
        g.random("dw/b", 8), **_conv_attrs(1, "SAME", ["BiasAdd", "Relu"]),
    )  # fmt: skip
    # the idiom on a rectified input, as TF.js leaves MobileFaceNet's depthwise layers
    residual = g.op(
        "after_dw",
        "Add",
        dw,
        g.op(
            "dw_term",
            "Mul",
            g.op("dw_sub", "Sub", dw, g.op("dw_abs", "Abs", dw)),
            g.random("dw_c", 8),
        ),
    )
    summed = g.op("res", "AddV2", residual, act)
    padded = g.op(
        "pad", "Pad", summed, g.const("pad/p", np.array([[0, 0], [1, 0], [0, 1], [0, 0]], np.int32))
    )
    plain = g.op(
        "dw2",
        "DepthwiseConv2dNative",
        padded,
        g.random("dw2/w", 2, 2, 8, 2),
        **_conv_attrs(1, "VALID"),
    )
    relu6 = g.op(
        "pw", "_FusedConv2D", plain, g.random("pw/w", 1, 1, 16, 6), g.random("pw/b", 6),
        **_conv_attrs(1, "SAME", ["BiasAdd", "Relu6"]),
    )  # fmt: skip
    clipped = g.op(
        "clip",
        "Minimum",
        g.op("max", "Maximum", relu6, g.const("zero", np.array(0.5, np.float32))),
        g.const("hi", np.array(2.0, np.float32)),
    )
    pooled = g.op("mean", "Mean", clipped, g.const("mean/axes", np.array([1, 2], np.int32)))
    dense = g.op(
        "fc", "_FusedMatMul", pooled, g.random("fc/w", 6, 5), g.random("fc/b", 5),
        fused_ops={"list": {"s": [_s("BiasAdd")["s"]]}}, transpose_a={"b": False},
        transpose_b={"b": False},
    )  # fmt: skip
    square = g.op("sq", "Square", dense)
    total = g.op(
        "sum", "Sum", square, g.const("sum/axes", np.array(1, np.int32)), keep_dims={"b": True}
    )
    floor = g.op("floor", "Maximum", total, g.const("eps", np.array(1e-10, np.float32)))
    g.op("embeddings", "Mul", dense, g.op("rsqrt", "Rsqrt", floor))
    return g


def _onnx_run(path: Path, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["img"]
    assert [o.name for o in session.get_outputs()] == ["embeddings"]
    return np.asarray(session.run(None, {"img": x.astype(np.float32)})[0])


@pytest.mark.parametrize("float16", [False, True])
def test_converted_graph_computes_what_the_tfjs_graph_computes(
    tmp_path: Path, float16: bool
) -> None:
    source = tiny_graph().write(tmp_path, float16=float16)
    built = tmp_path / "tiny.onnx"
    convert_tfjs_graph(source, built, "embeddings")
    x = RNG.uniform(-1, 1, (3, 9, 9, 3))
    reference = tfjs_reference.run(read_tfjs_graph(source), {"img": x}, "embeddings")
    converted = _onnx_run(built, x)
    assert converted.shape == reference.shape == (3, 5)
    assert np.abs(converted - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(converted, axis=1), 1, atol=1e-5)


def test_float16_weights_are_read_as_stored(tmp_path: Path) -> None:
    graph = tiny_graph()
    source = graph.write(tmp_path, float16=True)
    read = read_tfjs_graph(source)["conv/w"].attrs["value"]
    assert read.dtype == np.float32
    assert np.array_equal(read, dict(graph.weights)["conv/w"].astype(np.float16).astype(np.float32))


def test_conversion_is_deterministic(tmp_path: Path) -> None:
    source = tiny_graph().write(tmp_path)
    convert_tfjs_graph(source, tmp_path / "a.onnx", "embeddings")
    convert_tfjs_graph(source, tmp_path / "b.onnx", "embeddings")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_unmapped_op_and_short_weights_are_refused(tmp_path: Path) -> None:
    g = GraphWriter()
    x = g.op(
        "img",
        "Placeholder",
        shape={"shape": {"dim": [{"size": "-1"}, {"size": "4"}, {"size": "4"}, {"size": "1"}]}},
    )
    g.op("embeddings", "Erf", x)
    source = g.write(tmp_path)
    with pytest.raises(ConversionError, match="op Erf is not supported"):
        convert_tfjs_graph(source, tmp_path / "out.onnx", "embeddings")

    g = GraphWriter()
    g.random("w", 4)
    source = g.write(tmp_path)
    (tmp_path / "tiny.bin").write_bytes(b"\0" * 20)  # one float too many
    with pytest.raises(ConversionError, match="4 B short"):
        read_tfjs_graph(source)
    assert not (tmp_path / "out.onnx").exists()
