"""What the deployment end-to-end tests ask a deployment through the official IMM SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alibabacloud_imm20200930 import models as imm
from alibabacloud_imm20200930.client import Client
from alibabacloud_tea_openapi import models as openapi

# real people among the sample photos: four of one person (the first four), one of another
PEOPLE = ["obama.jpg", "obama2.jpg", "obama3.jpg", "32bit.png", "biden.jpg"]
# two more photos that are made to fail: one kills its instance, one raises, every time
CRASHING, RAISING = "poison/crashes.jpg", "poison/raises.jpg"
POISON_SOURCES = {CRASHING: "t1.jpg", RAISING: "Tom_Hanks_54745.png"}


def sdk(port: int, key_id: str, secret: str, region: str) -> Client:
    """The official client, signing with ACS3, pointed at a local HTTP front."""
    config = openapi.Config(
        access_key_id=key_id,
        access_key_secret=secret,
        endpoint=f"127.0.0.1:{port}",
        protocol="http",
        region_id=region,
    )
    return Client(config)


def open_dataset(client: Client, project: str, dataset: str) -> None:
    """CreateProject and CreateDataset."""
    client.create_project(imm.CreateProjectRequest(project_name=project))
    client.create_dataset(imm.CreateDatasetRequest(project_name=project, dataset_name=dataset))


def photo_files(photos: Path) -> dict[str, bytes]:
    """The story's uploads by object key: the people, then the two poisons."""
    files = {name: (photos / name).read_bytes() for name in PEOPLE}
    files |= {key: (photos / name).read_bytes() for key, name in POISON_SOURCES.items()}
    return files


def start_clustering(client: Client, project: str, dataset: str, topic: str, data: str) -> str:
    """CreateFigureClusteringTask notifying `topic`; its TaskId."""
    request = imm.CreateFigureClusteringTaskRequest(
        project_name=project,
        dataset_name=dataset,
        notification=imm.Notification(mns=imm.MNS(topic_name=topic)),
        user_data=data,
    )
    return str(client.create_figure_clustering_task(request).body.task_id)


def clustering_task(client: Client, project: str, task_id: str) -> Any:
    """GetTask of a figure clustering task."""
    request = imm.GetTaskRequest(project_name=project, task_type="FaceClustering", task_id=task_id)
    return client.get_task(request).body


def has_ended(client: Client, project: str, task_id: str) -> bool:
    """Whether the figure clustering task is no longer running."""
    return bool(clustering_task(client, project, task_id).status != "Running")


def check_outcome(
    client: Client, project: str, dataset: str, bucket: str, task_id: str, data: str
) -> str:
    """The task succeeded whole, the poisons failed with their reasons; a line saying so."""
    task = clustering_task(client, project, task_id)
    assert (task.status, task.progress, task.user_data) == ("Succeeded", 100, data)
    crashed, raised = check_poisons(client, project, dataset, bucket)
    return f"task {task.status}; {CRASHING}: {crashed!r}; {RAISING}: {raised!r}"


def file_meta(client: Client, project: str, dataset: str, uri: str) -> Any:
    """GetFileMeta of one file."""
    request = imm.GetFileMetaRequest(project_name=project, dataset_name=dataset, uri=uri)
    (meta,) = client.get_file_meta(request).body.files
    return meta


def check_people(client: Client, project: str, dataset: str, bucket: str) -> None:
    """One cluster of the four photos of one person; one face a photo, none doubled."""
    request = imm.QueryFigureClustersRequest(
        project_name=project, dataset_name=dataset, max_results=10
    )
    clusters = client.query_figure_clusters(request).body.figure_clusters
    assert [(c.face_count, c.image_count) for c in clusters] == [(4, 4)]
    got = client.get_figure_cluster(
        imm.GetFigureClusterRequest(
            project_name=project, dataset_name=dataset, object_id=clusters[0].object_id
        )
    ).body.figure_cluster
    assert (got.object_id, got.face_count, got.image_count) == (clusters[0].object_id, 4, 4)
    metas = {name: file_meta(client, project, dataset, f"oss://{bucket}/{name}") for name in PEOPLE}
    assert {name: len(meta.figures or []) for name, meta in metas.items()} == dict.fromkeys(
        PEOPLE, 1
    )
    assert {meta.object_status for meta in metas.values()} == {"succeeded"}
    # the cluster is the four photos of the one person
    members = {
        name for name, meta in metas.items() if meta.figures[0].figure_cluster_id == got.object_id
    }
    assert members == set(PEOPLE[:4])


def check_poisons(client: Client, project: str, dataset: str, bucket: str) -> tuple[str, str]:
    """Both poisons failed: the crashing one without an error, the raising one with its
    own; their reasons."""
    crashed = file_meta(client, project, dataset, f"oss://{bucket}/{CRASHING}")
    raised = file_meta(client, project, dataset, f"oss://{bucket}/{RAISING}")
    assert crashed.object_status == "failed"
    assert "did not finish in any delivery" in crashed.reason
    assert raised.object_status == "failed"
    assert raised.reason.startswith("analysis failed: RuntimeError: reading oss://")
    return crashed.reason, raised.reason


def check_notification(envelope: dict[str, Any], task_id: str, project: str, data: str) -> None:
    """The completion notification is IMM's envelope of the succeeded task."""
    content = json.loads(envelope["content"])
    assert envelope["type"] == "imm:Task:FaceClustering", envelope
    assert content["TaskId"] == task_id and content["Status"] == "Succeeded"
    assert content["ProjectName"] == project and content["UserData"] == data
