"""Bad input never gives a 5xx: bench/fuzz.py's malformed bodies against a real local OpenIMM.

The application is the one `openimm serve` runs (SQLite, folders, the durable queue, the
real image embeddings of similar-image clusters) with the colour stand-ins as face
models; requests go through the HTTP router as FC's trigger delivers them. `pytest -s`
prints the per-operation table `python bench/fuzz.py` prints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench_scripts import load_bench
from openimm.api.operations import Application
from openimm.bootstrap import Parts
from openimm.platform.entry import OPERATIONS, http_router_handler

pytestmark = pytest.mark.models

SEED = 13
MIN_BODIES = 200


fuzz = load_bench("fuzz")


@dataclass
class Service:
    parts: Parts
    app: Application
    fixtures: Any

    def send(self, operation: str, body: Any) -> tuple[int, dict[str, Any]]:
        handler = http_router_handler(app=lambda: self.app)
        reply = handler(fuzz.http_event(operation, json.dumps(body)), None)
        return reply["statusCode"], json.loads(reply["body"])


@pytest.fixture
def service(tmp_path: Path, model_dir: Path) -> Iterator[Service]:
    yield Service(*fuzz.stand_in_service(tmp_path))


def test_no_malformed_body_gets_a_5xx(service: Service) -> None:
    handler = http_router_handler(app=lambda: service.app)

    tallies = fuzz.run(handler, fuzz.valid_bodies(service.fixtures), SEED)

    print("\n" + fuzz.table(tallies))
    assert list(tallies) == list(OPERATIONS)
    for operation, tally in tallies.items():
        assert tally.bodies >= MIN_BODIES, operation
        # the mutations start from a request that works
        assert tally.valid_status == 200, operation
    problems = [problem for tally in tallies.values() for problem in tally.problems]
    assert problems == []
    assert sum(tally.server_errors for tally in tallies.values()) == 0


# ---------------------------------------------------------------- batches


# An object key OSS takes (1019 bytes, folders of 200 characters so that each name
# stays under the file system's 255) whose URI is over the 1024 bytes a table key holds.
LONG_KEY = "/".join(["k" * 200] * 5) + "/" + "x" * 10 + ".png"


BAD_SECOND_FILES = {
    "missing object": ({"URI": "oss://photos/missing.png"}, 404, "Files.2.URI"),
    "path trick": ({"URI": "oss://photos/../red0.png"}, 400, "Files.2.URI"),
    "lone surrogate": ({"URI": fuzz.OTHER_PHOTO, "CustomId": "\ud800"}, 400, "Files.2.CustomId"),
    "URI over the key limit": ({"URI": f"oss://photos/{LONG_KEY}"}, 400, "Files.2.URI"),
    "too many labels": (
        {"URI": fuzz.OTHER_PHOTO, "CustomLabels": {str(i): "v" for i in range(101)}},
        400,
        "Files.2.CustomLabels",
    ),
    "wrong type": ({"URI": fuzz.OTHER_PHOTO, "Title": ["a"]}, 400, "Files.2.Title"),
}


@pytest.mark.parametrize("case", list(BAD_SECOND_FILES))
def test_a_batch_with_one_bad_file_changes_nothing(service: Service, case: str) -> None:
    bad, status, named = BAD_SECOND_FILES[case]
    if case == "URI over the key limit":
        # the object exists: only the store's key limit stands in the way
        service.parts.blobs.write(bad["URI"], fuzz.photo((200, 30, 30)))
    dataset = {"ProjectName": fuzz.PROJECT, "DatasetName": "fresh"}
    service.app.call("CreateDataset", dataset, "setup")

    got, reply = service.send(
        "BatchIndexFileMeta", {**dataset, "Files": [{"URI": fuzz.PHOTO}, bad]}
    )

    assert got == status
    assert named in reply["Message"]
    assert list(service.app.catalog.files(fuzz.PROJECT, "fresh")) == []
    assert service.parts.queue.receive("detect", max_messages=10) == []


def test_surrogates_in_rpc_json_text_are_refused(service: Service) -> None:
    handler = http_router_handler(app=lambda: service.app)
    query = {
        "Action": "BatchIndexFileMeta",
        "ProjectName": fuzz.PROJECT,
        "DatasetName": fuzz.DATASET,
        "Files": '[{"URI": "oss://photos/red0.png", "CustomId": "\\udc00"}]',
    }

    reply = handler(fuzz.http_event("BatchIndexFileMeta", "", query=query, path="/"), None)

    assert reply["statusCode"] == 400
    message = json.loads(reply["body"])["Message"]
    assert message.startswith("The parameter Files is not valid Unicode text")
