"""Degenerate images end with no face or a plain reason, never a library's assertion."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from openimm.bootstrap import Settings, build, configured_parts

pytestmark = pytest.mark.models


def _png(pixels: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, "PNG")
    return buffer.getvalue()


IMAGES = {
    "1x1": _png(np.zeros((1, 1, 3), np.uint8), "RGB"),
    "1x500": _png(np.full((500, 1, 3), 128, np.uint8), "RGB"),
    "500x1": _png(np.full((1, 500, 3), 128, np.uint8), "RGB"),
    "3x2": _png(np.full((2, 3, 3), 128, np.uint8), "RGB"),
    "31x4000": _png(np.random.default_rng(1).integers(0, 255, (4000, 31, 3), np.uint8), "RGB"),
    "one-colour": _png(np.full((300, 300, 3), 200, np.uint8), "RGB"),
    "alpha-only": _png(np.zeros((300, 300, 4), np.uint8), "RGBA"),
    "grey-alpha-1x1": _png(np.zeros((1, 1, 2), np.uint8), "LA"),
}
LIBRARY_WORDS = ("OpenCV", "Assertion", "error:", "Traceback", "cv2")


def test_each_ends_plainly_in_every_path(tmp_path: Path, model_dir: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    parts = configured_parts(settings)
    app = build(settings, parts)
    scope = {"ProjectName": "p", "DatasetName": "d"}
    app.call("CreateProject", {"ProjectName": "p"}, "r")
    app.call("CreateDataset", scope, "r")
    uris = {name: f"oss://photos/{name}.png" for name in IMAGES}
    for name, data in IMAGES.items():
        parts.blobs.write(uris[name], data)
        faces = app.call("DetectImageFaces", {"ProjectName": "p", "SourceURI": uris[name]}, "r")
        assert faces["Faces"] == [], name
    files = [{"URI": uri} for uri in uris.values()]
    app.call("BatchIndexFileMeta", {**scope, "Files": files}, "r")
    for operation in ("CreateFigureClusteringTask", "CreateSimilarImageClusteringTask"):
        app.call(operation, scope, "r")
    errors = _drain(parts, app)
    assert errors == [], errors
    for name, uri in uris.items():
        (meta,) = app.call("GetFileMeta", {**scope, "URI": uri}, "r")["Files"]
        assert meta["ObjectStatus"] in ("succeeded", "failed"), (name, meta)
        reason = meta.get("Reason") or ""
        assert not any(word in reason for word in LIBRARY_WORDS), (name, reason)
        assert not meta.get("Figures"), name
    tasks = app.call("ListTasks", {"ProjectName": "p"}, "r")["Tasks"]
    assert sorted(task["Status"] for task in tasks) == ["Succeeded", "Succeeded"], tasks


def _drain(parts: Any, app: Any) -> list[str]:
    """Run every stage message once; what any of them raised."""
    errors = []
    while True:
        progressed = False
        for stage in ("detect", "embed", "cluster", "search"):
            for message in parts.queue.receive(stage, max_messages=10, visibility_timeout=60):
                progressed = True
                try:
                    app.run_stage(stage, message.body)
                except Exception as exc:
                    errors.append(f"{stage} {message.body.get('uri')}: {exc}")
                parts.queue.ack(message)
        if not progressed:
            return errors
