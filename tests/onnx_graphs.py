"""Small real ONNX graphs for the tests of how graphs are kept, optimised and quantised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def conv_model(path: Path) -> Path:
    """A 3x3 convolution, a bias and a ReLU: what the optimiser fuses and quantisation
    turns into an int8 kernel."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def unwritable_model_dir(beside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point $OPENIMM_MODEL_DIR under a file in `beside`, as in a read-only function
    bundle: no folder for kept graphs can be made there."""
    blocked = beside / "a-file"
    blocked.write_bytes(b"")
    monkeypatch.setenv("OPENIMM_MODEL_DIR", str(blocked / "models"))
