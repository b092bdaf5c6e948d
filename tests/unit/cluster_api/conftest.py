"""An in-process OpenIMM whose stand-in detector and embedder read a person from a colour.

The `shot_album` also measures photos for similar-image clusters with the real networks
(vision/shot_analysis.py): those tests upload real photos, not colours.

The stand-ins are tests/standins.py's; with the colours below the cosines are:
red . rose = 0.99, red . lime = 0.64, red . blue = 0.31. The clustering thresholds
are set here (join 0.80, seed 0.85), not taken from the embedder defaults, so that
these tests do not move when the calibrated thresholds do.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from openimm.api.operations import Application
from openimm.bootstrap import Parts, Settings, build
from openimm.errors import ImmError
from openimm.vision.shot_analysis import ShotAnalyser
from standins import colour_parts

PROJECT, DATASET = "album", "family"
COLOURS = {
    "red": (200, 30, 30),
    "rose": (200, 30, 60),
    "lime": (120, 200, 30),
    "blue": (30, 30, 200),
    "grey": (128, 128, 128),
}


class Album:
    """One project and dataset, and the calls the tests make on them."""

    def __init__(self, parts: Parts, app: Application, notices: Path) -> None:
        self.parts = parts
        self.app = app
        self._notices = notices
        self.notices_path = notices
        self.dataset = {"ProjectName": PROJECT, "DatasetName": DATASET}

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.app.call(operation, body, "req-1")

    def error(self, operation: str, body: dict[str, Any]) -> ImmError:
        """The IMM error the call raises (it must raise one)."""
        with pytest.raises(ImmError) as caught:
            self.app.call(operation, body, "req-1")
        return caught.value

    def photo(self, name: str, colour: str, size: int = 160) -> str:
        buffer = io.BytesIO()
        Image.new("RGB", (size, size), COLOURS[colour]).save(buffer, "PNG")
        uri = f"oss://photos/{name}"
        self.parts.blobs.write(uri, buffer.getvalue())
        return uri

    def add(self, colour: str, count: int, prefix: str | None = None) -> list[str]:
        """Upload and index `count` photos of one colour."""
        uris = [self.photo(f"{prefix or colour}{i}.png", colour) for i in range(count)]
        self.call("BatchIndexFileMeta", {**self.dataset, "Files": [{"URI": u} for u in uris]})
        return uris

    def drain(self) -> None:
        """Run every queued stage message until the queues are empty."""
        while True:
            progressed = False
            for stage in ("detect", "embed", "cluster", "search"):
                for message in self.parts.queue.receive(
                    stage, max_messages=10, visibility_timeout=30
                ):
                    self.app.run_stage(stage, message.body)
                    self.parts.queue.ack(message)
                    progressed = True
            if not progressed:
                return

    def cluster(self) -> dict[str, Any]:
        """Run a clustering task to its end; the task as GetTask shows it."""
        task_id = self.call("CreateFigureClusteringTask", self.dataset)["TaskId"]
        self.drain()
        return self.task("FaceClustering", task_id)

    def task(self, task_type: str, task_id: str) -> dict[str, Any]:
        return self.call(
            "GetTask", {"ProjectName": PROJECT, "TaskType": task_type, "TaskId": task_id}
        )

    def clusters(self) -> list[dict[str, Any]]:
        return list(self.call("QueryFigureClusters", self.dataset)["FigureClusters"])

    def cluster_of(self, uri: str) -> dict[str, Any]:
        """The cluster holding the (only) face of a photo."""
        (figure,) = self.file(uri)["Figures"]
        return self.get(figure["FigureClusterId"])

    def get(self, cluster_id: str) -> dict[str, Any]:
        reply = self.call("GetFigureCluster", {**self.dataset, "ObjectId": cluster_id})
        return dict(reply["FigureCluster"])

    def file(self, uri: str) -> dict[str, Any]:
        (row,) = self.call("GetFileMeta", {**self.dataset, "URI": uri})["Files"]
        return dict(row)

    def figure_row(self, uri: str) -> dict[str, Any]:
        """The stored figure row (private fields included) of a photo's face."""
        (figure,) = self.file(uri)["Figures"]
        (row,) = self.app.figures.get_many(PROJECT, DATASET, [figure["FigureId"]])
        return row

    def notices(self) -> list[dict[str, Any]]:
        return [json.loads(envelope["content"]) for envelope in self.envelopes()]

    def envelopes(self) -> list[dict[str, Any]]:
        lines = self._notices.read_text().splitlines() if self._notices.exists() else []
        return [json.loads(line)["message"] for line in lines]

    def upload(self, name: str, data: bytes) -> str:
        uri = f"oss://photos/{name}"
        self.parts.blobs.write(uri, data)
        return uri

    def index(self, uris: list[str]) -> None:
        self.call("BatchIndexFileMeta", {**self.dataset, "Files": [{"URI": u} for u in uris]})

    def group_similar(self) -> dict[str, Any]:
        """Run a similar-image clustering task to its end; the task as GetTask shows it."""
        task_id = self.call("CreateSimilarImageClusteringTask", self.dataset)["TaskId"]
        self.drain()
        return self.task("SimilarImageClustering", task_id)

    def similar_clusters(self, **query: Any) -> list[dict[str, Any]]:
        reply = self.call("QuerySimilarImageClusters", {**self.dataset, **query})
        return list(reply["SimilarImageClusters"])


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return colour_parts(tmp_path)


@pytest.fixture
def open_album(parts: Parts, tmp_path: Path) -> Callable[..., Album]:
    """An Album whose settings differ from the tests' defaults by `changes`."""

    def make(**changes: Any) -> Album:
        settings = Settings(data_dir=tmp_path, join_similarity=0.80, seed_similarity=0.85)
        app = build(dataclasses.replace(settings, **changes), parts)
        app.call("CreateProject", {"ProjectName": PROJECT}, "r")
        app.call("CreateDataset", {"ProjectName": PROJECT, "DatasetName": DATASET}, "r")
        return Album(parts, app, tmp_path / "notices.jsonl")

    return make


@pytest.fixture
def album(open_album: Callable[..., Album]) -> Iterator[Album]:
    yield open_album()


@pytest.fixture
def shot_album(parts: Parts, open_album: Callable[..., Album], model_dir: Path) -> Iterator[Album]:
    """An album whose photos are also measured for similar-image clusters."""
    parts.shots = ShotAnalyser()
    yield open_album()
