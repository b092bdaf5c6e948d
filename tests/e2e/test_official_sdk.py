"""Alibaba Cloud's own IMM SDK, unmodified, against `openimm serve`: every operation, both
signature versions (ACS3-HMAC-SHA256, the default, and the older v2 HMAC-SHA1).

The SDK sends `POST /` with the operation in a header or the query, every parameter in
the query, lists and maps as JSON text, numbers and booleans as text; it reads the JSON
reply into its own models and an error body into ClientException. The server has access
keys configured, so every signature is checked, and each key's grants with it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alibabacloud_imm20200930 import models as imm
from alibabacloud_imm20200930.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils import Utils

from imm_client import imm_client
from serve_process import ServeProcess

pytestmark = pytest.mark.models

BUCKET = "photos"
SECRET = "sdk-test-secret"
KEYS = {
    "AccessKeys": [
        {
            "AccessKeyId": "LTAI-test",
            "AccessKeySecret": SECRET,
            "Projects": {"album-*": "write"},
            "Buckets": {BUCKET: "read", "results": "write"},
        },
        {
            "AccessKeyId": "LTAI-reader",
            "AccessKeySecret": "reader-secret",
            "Projects": {"album-*": "read"},
            "Buckets": {BUCKET: "read"},
        },
    ]
}
PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "32bit.png", "biden.jpg"]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, sample_photos: Path, model_dir: Path
) -> Iterator[ServeProcess]:
    data = tmp_path_factory.mktemp("sdk-state")
    (data / "buckets" / BUCKET).mkdir(parents=True)
    for name in PHOTOS:
        shutil.copy(sample_photos / name, data / "buckets" / BUCKET / name)
    process = ServeProcess(data, env={"OPENIMM_ACCESS_KEYS": json.dumps(KEYS)})
    yield process
    process.stop()


def _client(
    server: ServeProcess, signature: str, key: str = "LTAI-test", secret: str = SECRET
) -> Client:
    return imm_client(server.port, key, secret, signature)


def _until_ended(get: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        task = get().body
        if task.status != "Running":
            return task
        time.sleep(0.3)
    raise AssertionError("task still running")


@pytest.mark.parametrize("signature", ["acs3", "v2"])
def test_every_operation_through_the_official_sdk(server: ServeProcess, signature: str) -> None:
    sdk = _client(server, signature)
    project, dataset = f"album-{signature}", "family"
    uris = [f"oss://{BUCKET}/{name}" for name in PHOTOS]
    done: set[str] = set()

    def call(operation: str, request: Any) -> Any:
        done.add(operation)
        method = "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")
        return getattr(sdk, method)(request).body

    call("CreateProject", imm.CreateProjectRequest(project_name=project))
    call("CreateDataset", imm.CreateDatasetRequest(project_name=project, dataset_name=dataset))
    files = [imm.InputFile(uri=u) for u in uris[:4]]
    call(
        "BatchIndexFileMeta",
        imm.BatchIndexFileMetaRequest(project_name=project, dataset_name=dataset, files=files),
    )
    call(
        "IndexFileMeta",
        imm.IndexFileMetaRequest(
            project_name=project, dataset_name=dataset, file=imm.InputFile(uri=uris[4])
        ),
    )
    notification = imm.Notification(mns=imm.MNS(topic_name="album-events"))
    created = call(
        "CreateFigureClusteringTask",
        imm.CreateFigureClusteringTaskRequest(
            project_name=project,
            dataset_name=dataset,
            user_data='{"album": 1}',
            tags={"run": "sdk"},
            notification=notification,
        ),
    )
    task = _until_ended(
        lambda: sdk.get_task(
            imm.GetTaskRequest(
                project_name=project, task_type="FaceClustering", task_id=created.task_id
            )
        )
    )
    done.add("GetTask")
    assert task.status == "Succeeded", task
    assert task.user_data == '{"album": 1}' and task.tags == {"run": "sdk"}

    clusters = call(
        "QueryFigureClusters",
        imm.QueryFigureClustersRequest(
            project_name=project, dataset_name=dataset, max_results=10, with_total_count=True
        ),
    )
    assert clusters.total_count == 1
    cluster = clusters.figure_clusters[0]
    assert cluster.image_count == 4 and cluster.object_id.startswith("Cluster-")
    one = call(
        "GetFigureCluster",
        imm.GetFigureClusterRequest(
            project_name=project, dataset_name=dataset, object_id=cluster.object_id
        ),
    )
    assert one.figure_cluster.face_count == 4
    many = call(
        "BatchGetFigureCluster",
        imm.BatchGetFigureClusterRequest(
            project_name=project, dataset_name=dataset, object_ids=[cluster.object_id]
        ),
    )
    assert [c.object_id for c in many.figure_clusters] == [cluster.object_id]

    def rename(name: str) -> imm.UpdateFigureClusterRequest:
        named = imm.FigureClusterForReq(
            object_id=cluster.object_id, name=name, meta_lock_version=cluster.meta_lock_version
        )
        return imm.UpdateFigureClusterRequest(
            project_name=project, dataset_name=dataset, figure_cluster=named
        )

    call("UpdateFigureCluster", rename("Barack"))
    with pytest.raises(ClientException) as conflict:  # the same lock version again
        call("UpdateFigureCluster", rename("Stale"))
    assert conflict.value.code == "ConcurrentUpdateConflict"

    meta = call(
        "GetFileMeta",
        imm.GetFileMetaRequest(project_name=project, dataset_name=dataset, uri=uris[0]),
    )
    assert meta.files[0].figures[0].figure_cluster_id == cluster.object_id
    call(
        "UpdateFileMeta",
        imm.UpdateFileMetaRequest(
            project_name=project,
            dataset_name=dataset,
            file=imm.InputFile(uri=uris[0], custom_labels={"place": "lectern"}),
        ),
    )
    with pytest.raises(ClientException) as same:
        call(
            "CreateFigureClustersMergingTask",
            imm.CreateFigureClustersMergingTaskRequest(
                project_name=project,
                dataset_name=dataset,
                from_=cluster.object_id,
                to=cluster.object_id,
            ),
        )
    assert same.value.code == "InvalidArgument" and same.value.status_code == 400

    similar = call(
        "CreateSimilarImageClusteringTask",
        imm.CreateSimilarImageClusteringTaskRequest(project_name=project, dataset_name=dataset),
    )
    assert (
        _until_ended(
            lambda: sdk.get_task(
                imm.GetTaskRequest(
                    project_name=project,
                    task_type="SimilarImageClustering",
                    task_id=similar.task_id,
                )
            )
        ).status
        == "Succeeded"
    )
    call(
        "QuerySimilarImageClusters",
        imm.QuerySimilarImageClustersRequest(
            project_name=project, dataset_name=dataset, max_results=10
        ),
    )
    search = call(
        "CreateFacesSearchingTask",
        imm.CreateFacesSearchingTaskRequest(
            project_name=project,
            dataset_name=dataset,
            max_result=3,
            sources=[imm.CreateFacesSearchingTaskRequestSources(uri=uris[1])],
        ),
    )
    assert (
        _until_ended(
            lambda: sdk.get_task(
                imm.GetTaskRequest(
                    project_name=project, task_type="FacesSearching", task_id=search.task_id
                )
            )
        ).status
        == "Succeeded"
    )
    found = call(
        "SearchImageFigureCluster",
        imm.SearchImageFigureClusterRequest(
            project_name=project, dataset_name=dataset, source_uri=uris[2]
        ),
    )
    assert found.clusters[0].cluster_id == cluster.object_id
    queried = call(
        "SimpleQuery",
        imm.SimpleQueryRequest(
            project_name=project,
            dataset_name=dataset,
            query=imm.SimpleQuery(
                field="Figures.FigureClusterId", operation="eq", value=cluster.object_id
            ),
        ),
    )
    assert len(queried.files) == cluster.image_count
    datasets = call(
        "ListDatasets", imm.ListDatasetsRequest(project_name=project, prefix=dataset[:2])
    )
    assert [d.dataset_name for d in datasets.datasets] == [dataset]
    for file in queried.files:
        assert cluster.object_id in {f.figure_cluster_id for f in file.figures}
    faces = call(
        "DetectImageFaces", imm.DetectImageFacesRequest(project_name=project, source_uri=uris[4])
    )
    assert len(faces.faces) == 1
    compared = call(
        "CompareImageFaces",
        imm.CompareImageFacesRequest(
            project_name=project,
            source=imm.CompareImageFacesRequestSource(uri1=uris[0], uri2=uris[1]),
        ),
    )
    assert compared.similarity > 0.5
    listed = call(
        "ListTasks",
        imm.ListTasksRequest(project_name=project, max_results=10, task_types=["FaceClustering"]),
    )
    assert [t.task_id for t in listed.tasks] == [created.task_id]
    call(
        "DeleteFileMeta",
        imm.DeleteFileMetaRequest(project_name=project, dataset_name=dataset, uri=uris[4]),
    )
    with pytest.raises(ClientException) as gone:
        call(
            "GetFileMeta",
            imm.GetFileMetaRequest(project_name=project, dataset_name=dataset, uri=uris[4]),
        )
    assert gone.value.code == "ResourceNotFound" and gone.value.status_code == 404
    from openimm.platform.entry import OPERATIONS

    assert done == set(OPERATIONS)


def _raw_post(server: ServeProcess, query: dict[str, str], headers: dict[str, str]) -> Any:
    request = urllib.request.Request(
        f"{server.url}/?{urllib.parse.urlencode(query)}", data=b"", headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def _acs3_headers(server: ServeProcess, query: dict[str, str], signed_at: float) -> dict[str, str]:
    """ACS3 headers made by the SDK's own signing function, sent by hand to replay them."""
    empty = hashlib.sha256(b"").hexdigest()
    headers = {
        "host": f"127.0.0.1:{server.port}",
        "x-acs-action": "ListTasks",
        "x-acs-version": "2020-09-30",
        "x-acs-date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(signed_at)),
        "x-acs-signature-nonce": uuid.uuid4().hex,
        "x-acs-content-sha256": empty,
    }
    signing = SimpleNamespace(pathname="/", query=query, headers=headers, method="POST")
    headers["Authorization"] = Utils.get_authorization(
        signing, "ACS3-HMAC-SHA256", empty, "LTAI-test", SECRET
    )
    return headers


def test_who_gets_in(server: ServeProcess) -> None:
    """Signed, unsigned, unknown key, wrong secret, other project, read-only key, replay."""
    seen: list[tuple[str, int, str]] = []

    def sdk_call(case: str, client: Client, call: Callable[[Client], Any]) -> None:
        try:
            call(client)
            seen.append((case, 200, "-"))
        except ClientException as refused:
            seen.append((case, refused.status_code, refused.code))

    def list_tasks(project: str) -> Callable[[Client], Any]:
        request = imm.ListTasksRequest(project_name=project, max_results=10)
        return lambda client: client.list_tasks(request)

    create = imm.CreateProjectRequest(project_name="album-reader")
    _client(server, "acs3").create_project(imm.CreateProjectRequest(project_name="album-x"))
    for version in ("acs3", "v2"):
        sdk_call(f"signed ({version})", _client(server, version), list_tasks("album-x"))
        sdk_call(
            f"unknown key ({version})",
            _client(server, version, "LTAI-nobody", SECRET),
            list_tasks("album-x"),
        )
        sdk_call(
            f"wrong secret ({version})",
            _client(server, version, "LTAI-test", "not-the-secret"),
            list_tasks("album-x"),
        )
        sdk_call(f"other project ({version})", _client(server, version), list_tasks("family"))
        sdk_call(
            f"read-only key writes ({version})",
            _client(server, version, "LTAI-reader", "reader-secret"),
            lambda client: client.create_project(create),
        )
    sdk_call(
        "bucket not granted",
        _client(server, "acs3"),
        lambda client: client.detect_image_faces(
            imm.DetectImageFacesRequest(project_name="album-x", source_uri="oss://private/a.jpg")
        ),
    )
    query = {"Action": "ListTasks", "Version": "2020-09-30", "ProjectName": "album-x"}
    status, body = _raw_post(server, query, {})
    seen.append(("unsigned", status, body["Code"]))
    rpc = {"ProjectName": "album-x"}
    headers = _acs3_headers(server, rpc, time.time())
    for case in ("signed by hand", "the same request again"):
        status, body = _raw_post(server, rpc, headers)
        seen.append((case, status, body.get("Code", "-")))
    status, body = _raw_post(server, rpc, _acs3_headers(server, rpc, time.time() - 20 * 60))
    seen.append(("signed 20 minutes ago", status, body["Code"]))

    print("\n" + "\n".join(f"{case:32} {status} {code}" for case, status, code in seen))
    assert seen == [
        ("signed (acs3)", 200, "-"),
        ("unknown key (acs3)", 404, "InvalidAccessKeyId.NotFound"),
        ("wrong secret (acs3)", 400, "SignatureDoesNotMatch"),
        ("other project (acs3)", 403, "Forbidden.RAM"),
        ("read-only key writes (acs3)", 403, "Forbidden.RAM"),
        ("signed (v2)", 200, "-"),
        ("unknown key (v2)", 404, "InvalidAccessKeyId.NotFound"),
        ("wrong secret (v2)", 400, "SignatureDoesNotMatch"),
        ("other project (v2)", 403, "Forbidden.RAM"),
        ("read-only key writes (v2)", 403, "Forbidden.RAM"),
        ("bucket not granted", 403, "Forbidden.RAM"),
        ("unsigned", 400, "MissingAccessKeyId"),
        ("signed by hand", 200, "-"),
        ("the same request again", 400, "SignatureNonceUsed"),
        ("signed 20 minutes ago", 400, "InvalidTimeStamp.Expired"),
    ]
