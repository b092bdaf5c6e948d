"""Alibaba Cloud's own IMM SDK, unmodified, against `openimm serve`: every operation, both
signature versions (ACS3-HMAC-SHA256, the default, and the older v2 HMAC-SHA1).

The SDK sends `POST /` with the operation in a header or the query, every parameter in
the query, lists and maps as JSON text, numbers and booleans as text; it reads the JSON
reply into its own models and an error body into ClientException. No access keys are
configured on the server here, so the signatures are sent but not checked.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_imm20200930 import models as imm
from alibabacloud_imm20200930.client import Client
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_openapi.exceptions import ClientException

from serve_process import ServeProcess

pytestmark = pytest.mark.models

BUCKET = "photos"
PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "32bit.png", "biden.jpg"]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, sample_photos: Path, model_dir: Path
) -> Iterator[ServeProcess]:
    data = tmp_path_factory.mktemp("sdk-state")
    (data / "buckets" / BUCKET).mkdir(parents=True)
    for name in PHOTOS:
        shutil.copy(sample_photos / name, data / "buckets" / BUCKET / name)
    process = ServeProcess(data)
    yield process
    process.stop()


def _client(server: ServeProcess, signature: str) -> Client:
    config = openapi.Config(
        access_key_id="LTAI-test",
        access_key_secret="not-checked-here",
        endpoint=f"127.0.0.1:{server.port}",
        protocol="http",
        region_id="cn-local",
        signature_version="v2" if signature == "v2" else None,
    )
    return Client(config)


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
