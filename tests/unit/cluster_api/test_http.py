"""The new operations through the HTTP router a deployed `api` function runs (Lambda HTTP v2)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from alibabacloud_tea_openapi.utils import Utils

from openimm.access.gate import AccessGate
from openimm.access.keyring import parse_keyring
from openimm.access.nonces import TableNonces
from openimm.platform.entry import http_router_handler

if TYPE_CHECKING:
    from conftest import Album

EVENTS = Path(__file__).resolve().parents[2] / "events"


def _post(album: Album, operation: str, body: Any) -> tuple[int, dict[str, Any]]:
    event = json.loads((EVENTS / "lambda_http_v2.json").read_text())
    event["rawPath"] = f"/{operation}"
    event["routeKey"] = "$default"
    event["requestContext"]["http"].update(method="POST", path=f"/{operation}")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    event["isBase64Encoded"] = False
    reply = http_router_handler(lambda: album.app)(event, None)
    payload = json.loads(reply["body"])
    assert payload["RequestId"]
    return reply["statusCode"], payload


def test_every_new_operation_answers_over_http(album: Album) -> None:
    reds, limes = album.add("red", 3), album.add("lime", 3)
    album.cluster()
    red, lime = album.cluster_of(reds[0])["ObjectId"], album.cluster_of(limes[0])["ObjectId"]
    version = album.get(red)["MetaLockVersion"]

    status, reply = _post(
        album,
        "UpdateFigureCluster",
        {
            **album.dataset,
            "FigureCluster": {"ObjectId": red, "MetaLockVersion": version, "Name": "Ann"},
        },
    )
    assert (status, set(reply)) == (200, {"RequestId"})

    status, reply = _post(
        album, "SearchImageFigureCluster", {**album.dataset, "SourceURI": reds[1]}
    )
    assert status == 200 and [c["ClusterId"] for c in reply["Clusters"]] == [red]
    assert set(reply["Clusters"][0]) == {"ClusterId", "Similarity", "Boundary"}

    face = album.file(reds[2])["Figures"][0]["FigureId"]
    status, reply = _post(
        album,
        "UpdateFileMeta",
        {
            **album.dataset,
            "File": json.dumps(
                {"URI": reds[2], "Figures": [{"FigureId": face, "FigureClusterId": lime}]}
            ),
        },
    )
    assert (status, set(reply)) == (200, {"RequestId"})

    status, reply = _post(
        album,
        "CreateFigureClustersMergingTask",
        {**album.dataset, "Froms": json.dumps([lime]), "To": red},
    )
    assert status == 200 and set(reply) == {"RequestId", "TaskId", "EventId"}
    album.drain()
    status, reply = _post(
        album,
        "GetTask",
        {"ProjectName": "album", "TaskType": "FigureClustersMerging", "TaskId": reply["TaskId"]},
    )
    assert status == 200 and reply["Status"] == "Succeeded"
    cluster = album.get(red)
    assert cluster["Name"] == "Ann" and cluster["FaceCount"] == 6


@pytest.mark.parametrize(
    ("operation", "body", "status", "code"),
    [
        (
            "UpdateFigureCluster",
            {"FigureCluster": {"ObjectId": "{red}", "MetaLockVersion": 1, "Name": "x"}},
            409,
            "ConcurrentUpdateConflict",
        ),
        (
            "UpdateFigureCluster",
            {"FigureCluster": {"ObjectId": "Cluster-no"}},
            404,
            "ResourceNotFound",
        ),
        ("UpdateFigureCluster", {}, 400, "MissingParameter"),
        (
            "CreateFigureClustersMergingTask",
            {"From": "{lime}", "Froms": ["{lime}"], "To": "{red}"},
            400,
            "InvalidArgument",
        ),
        (
            "CreateFigureClustersMergingTask",
            {"From": "{red}", "To": "{red}"},
            400,
            "InvalidArgument",
        ),
        (
            "CreateFigureClustersMergingTask",
            {"From": "{lime}", "To": "Cluster-no"},
            404,
            "ResourceNotFound",
        ),
        ("CreateFigureClustersMergingTask", {"To": "{red}"}, 400, "MissingParameter"),
        ("UpdateFileMeta", {"File": {"URI": "oss://photos/none.png"}}, 404, "ResourceNotFound"),
        ("UpdateFileMeta", {"File": 3}, 400, "InvalidArgument"),
        (
            "SearchImageFigureCluster",
            {"SourceURI": "oss://photos/none.png"},
            404,
            "ResourceNotFound",
        ),
        ("SearchImageFigureCluster", {"SourceURI": "{text}"}, 400, "InvalidFile"),
        ("SearchImageFigureCluster", {"SourceURI": 5}, 400, "InvalidArgument"),
    ],
)
def test_errors_have_imm_status_and_code(
    album: Album, operation: str, body: dict[str, Any], status: int, code: str
) -> None:
    reds, limes = album.add("red", 3), album.add("lime", 3)
    album.cluster()
    red, lime = album.cluster_of(reds[0])["ObjectId"], album.cluster_of(limes[0])["ObjectId"]
    album.call(
        "UpdateFigureCluster", {**album.dataset, "FigureCluster": {"ObjectId": red, "Name": "a"}}
    )
    album.parts.blobs.write("oss://photos/notes.png", b"not an image")
    text = json.dumps(body).replace("{red}", red).replace("{lime}", lime)
    text = text.replace("{text}", "oss://photos/notes.png")
    got, reply = _post(album, operation, {**album.dataset, **json.loads(text)})
    assert (got, reply["Code"]) == (status, code)
    assert set(reply) == {"RequestId", "HostId", "Code", "Message"}
    assert "Traceback" not in reply["Message"]


@pytest.mark.models
def test_similar_image_clustering_over_http(shot_album: Album, sample_photos: Path) -> None:
    photo = sample_photos / "obama2.jpg"
    copy = shot_album.upload("copy.png", (sample_photos / "32bit.png").read_bytes())
    uris = [shot_album.upload("photo.jpg", photo.read_bytes()), copy]
    shot_album.index(uris)
    status, created = _post(
        shot_album,
        "CreateSimilarImageClusteringTask",
        {**shot_album.dataset, "UserData": "u", "Notification": {"MNS": {"TopicName": "t"}}},
    )
    assert status == 200 and set(created) == {"RequestId", "TaskId", "EventId"}
    shot_album.drain()
    status, task = _post(
        shot_album,
        "GetTask",
        {"ProjectName": "album", "TaskType": "SimilarImageClustering", "TaskId": created["TaskId"]},
    )
    assert (status, task["Status"], task["UserData"]) == (200, "Succeeded", "u")
    status, reply = _post(shot_album, "QuerySimilarImageClusters", shot_album.dataset)
    (cluster,) = reply["SimilarImageClusters"]
    assert status == 200 and sorted(f["URI"] for f in cluster["Files"]) == sorted(uris)
    assert shot_album.envelopes()[-1]["type"] == "imm:Task:SimilarImageClustering"


@pytest.mark.parametrize(
    ("operation", "body", "status", "code"),
    [
        ("QuerySimilarImageClusters", {"NextToken": "bm90IGEgdG9rZW4="}, 400, "InvalidArgument"),
        ("QuerySimilarImageClusters", {"MaxResults": 101}, 400, "InvalidArgument"),
        ("QuerySimilarImageClusters", {"MaxResults": -1}, 400, "InvalidArgument"),
        ("QuerySimilarImageClusters", {"Sort": 3}, 400, "InvalidArgument"),
        ("QuerySimilarImageClusters", {"Sort": "Name"}, 400, "InvalidArgument"),
        ("QuerySimilarImageClusters", {"Order": "sideways"}, 400, "InvalidArgument"),
        ("QuerySimilarImageClusters", {"MaxResults": "many"}, 400, "InvalidArgument"),
        ("QuerySimilarImageClusters", {"DatasetName": "nowhere"}, 404, "ResourceNotFound"),
        ("CreateSimilarImageClusteringTask", {"UserData": "x" * 2049}, 400, "InvalidArgument"),
        ("CreateSimilarImageClusteringTask", {"Tags": "[1, 2]"}, 400, "InvalidArgument"),
        ("CreateSimilarImageClusteringTask", {"Notification": "{no"}, 400, "InvalidArgument"),
        ("CreateSimilarImageClusteringTask", {"DatasetName": 7}, 400, "InvalidArgument"),
        ("CreateSimilarImageClusteringTask", {"DatasetName": "nowhere"}, 404, "ResourceNotFound"),
        ("CreateSimilarImageClusteringTask", {"DatasetName": None}, 400, "MissingParameter"),
        # the stand-in album measures no photos: the operation is off there
        ("CreateSimilarImageClusteringTask", {}, 400, "InvalidOperation"),
    ],
)
def test_similar_image_errors_have_imm_status_and_code(
    album: Album, operation: str, body: dict[str, Any], status: int, code: str
) -> None:
    got, reply = _post(album, operation, {**album.dataset, **body})
    assert (got, reply["Code"]) == (status, code)
    assert set(reply) == {"RequestId", "HostId", "Code", "Message"}
    assert "Traceback" not in reply["Message"]


@pytest.mark.parametrize(
    ("operation", "field"),
    [("CreateFacesSearchingTask", "Notification"), ("DetectImageFaces", "SourceURI")],
)
def test_http_callers_may_not_name_openimms_work_bucket(
    album: Album, operation: str, field: str
) -> None:
    own = "oss://openimm-work/task-results/x.json"
    query = album.photo("q/red.png", "red")
    body: dict[str, Any] = {**album.dataset, "Sources": [{"URI": query}], "SourceURI": query}
    body[field] = {"ExtendedMessageURI": own} if field == "Notification" else own
    status, reply = _post(album, operation, body)
    assert (status, reply["Code"]) == (403, "Forbidden.RAM")
    assert "work bucket" in reply["Message"]


@pytest.mark.parametrize("kind", ["fc_http", "lambda_http", "fc_http without Host"])
def test_cloud_triggers_check_sdk_signatures(album: Album, kind: str) -> None:
    """An ACS3 request as the SDK signs it, through each cloud trigger's event (and one
    whose event leaves the Host header out: the trigger's domain stands for it)."""
    name = "lambda_http_v2" if kind == "lambda_http" else "fc_http_trigger"
    template = json.loads((EVENTS / f"{name}.json").read_text())
    host = template["requestContext"]["domainName"] if "without" in kind else "openimm.example.com"
    keys = {"AccessKeys": [{"AccessKeyId": "LTAI-c", "AccessKeySecret": "cloud-secret"}]}
    keys["AccessKeys"][0]["Projects"] = {"album": "read"}
    album.app.gate = AccessGate(
        parse_keyring(json.dumps(keys), "test"), TableNonces(album.parts.table)
    )

    def send(secret: str) -> tuple[int, dict[str, Any]]:
        query = {"ProjectName": "album", "MaxResults": "5"}
        headers = {
            "host": host,
            "x-acs-action": "ListTasks",
            "x-acs-version": "2020-09-30",
            "x-acs-date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "x-acs-signature-nonce": f"{secret}-{kind}",
            "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
        }
        signing = SimpleNamespace(pathname="/", query=query, headers=headers, method="POST")
        headers["Authorization"] = Utils.get_authorization(
            signing, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"], "LTAI-c", secret
        )
        sent = {k: v for k, v in headers.items() if not ("without" in kind and k == "host")}
        event = json.loads(json.dumps(template))
        event.update(rawPath="/", body="", isBase64Encoded=False, headers=sent)
        event["requestContext"]["http"].update(method="POST", path="/")
        fc = kind.startswith("fc_http")
        event["queryParameters" if fc else "queryStringParameters"] = query
        raw = json.dumps(event).encode() if fc else event
        reply = http_router_handler(lambda: album.app)(raw, None)
        return reply["statusCode"], json.loads(reply["body"])

    status, reply = send("cloud-secret")
    assert status == 200 and reply["Tasks"] == []
    status, reply = send("not-the-secret")
    assert (status, reply["Code"]) == (400, "SignatureDoesNotMatch")
    assert reply["HostId"] == host
