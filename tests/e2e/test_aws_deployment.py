"""The AWS deployment end to end on a moto server: the functions as Lambda runs them.

The official IMM SDK calls the api function through an HTTP API (payload 2.0) on a real
socket, with access keys on; S3 upload events go to the upload function; each stage
queue feeds its function through an emulated event source mapping (batches, partial
failures, visibility timeouts) and moto's own redrive moves what never succeeds to the
queue's dead-letter queue, which feeds the dead-letter function; the completion
notification is read from an SQS queue subscribed to the SNS topic.

Faults, injected where the platform would meet them:
- a poison photo whose reading kills the instance every time (out of memory): it dies
  five times, lands in the dead-letter queue, and the dead-letter function fails it;
- a poison photo whose reading raises every time: on its fifth delivery the stage
  function gives up on it itself, with the error as the reason;
- an embed instance that dies mid-batch once, after finishing the first record;
- a detect message delivered twice, and an S3 event delivered twice.
The task still succeeds, with the poisons failed and nothing doubled.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_imm20200930 import models as imm
from alibabacloud_imm20200930.client import Client
from alibabacloud_tea_openapi import models as openapi

from aws_sandbox import REGION, SANDBOX, dynamo_table
from lambda_emulator import (
    ACCOUNT,
    EventSourceMapping,
    HttpApi,
    InstanceCrash,
    run_mappings,
    s3_object_created,
)

pytestmark = pytest.mark.models

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("detect", "embed", "cluster", "search")
MAX_DELIVERIES = 5
# long enough for one photo's stage on a slow machine, short enough for five deliveries
VISIBILITY_S = 6
KEY_ID, SECRET = "AKID-e2e", "e2e-secret"
PEOPLE = ["obama.jpg", "obama2.jpg", "obama3.jpg", "32bit.png", "biden.jpg"]
CRASHING, RAISING = "poison/crashes.jpg", "poison/raises.jpg"


@dataclass
class Deployment:
    """What the story left behind, for the tests to look at."""

    sdk: Client
    project: str
    dataset: str
    photos: str
    task_id: str = ""
    seconds: float = 0.0
    mappings: dict[str, EventSourceMapping] = field(default_factory=dict)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    dead_letters_left: dict[str, int] = field(default_factory=dict)


def _load_handler(folder: str) -> Any:
    import importlib.util

    path = ROOT / "functions" / folder / "index.py"
    spec = importlib.util.spec_from_file_location(f"aws_e2e_{folder}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def _provision(prefix: str) -> dict[str, str]:
    """The resources and the functions' environment (as template.yml would give them)."""
    table, photos, work = f"{prefix}items", f"{prefix}photos", f"{prefix}work"
    dynamo_table(table)
    s3 = SANDBOX.client("s3")
    s3.create_bucket(Bucket=photos)
    s3.create_bucket(Bucket=work)
    sqs = SANDBOX.client("sqs")
    for stage in STAGES:
        dlq = sqs.create_queue(QueueName=f"{prefix}{stage}-dlq")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
        policy = {
            "deadLetterTargetArn": arn["Attributes"]["QueueArn"],
            "maxReceiveCount": MAX_DELIVERIES,
        }
        sqs.create_queue(
            QueueName=f"{prefix}{stage}",
            Attributes={
                "RedrivePolicy": json.dumps(policy),
                "VisibilityTimeout": str(VISIBILITY_S),
            },
        )
    return {
        "OPENIMM_BACKEND": "aws",
        "OPENIMM_REGION": REGION,
        "OPENIMM_OWNER_ID": ACCOUNT,
        "OPENIMM_DYNAMODB_TABLE": table,
        "OPENIMM_SQS_PREFIX": prefix,
        "OPENIMM_SNS_ARN_PREFIX": f"arn:aws:sns:{REGION}:{ACCOUNT}:{prefix}",
        "OPENIMM_WORK_BUCKET": work,
        "OPENIMM_DEFAULT_TOPIC": "tasks",
        "OPENIMM_MAX_DELIVERIES": str(MAX_DELIVERIES),
        "OPENIMM_TRIGGER_PROJECT": "album",
        "OPENIMM_TRIGGER_DATASET": "family",
        "OPENIMM_PHOTOS_BUCKET": photos,
    }


def _subscribe(prefix: str, topic: str) -> str:
    """An SQS queue subscribed to the topic with raw delivery: it gets what MNS would."""
    sns, sqs = SANDBOX.client("sns"), SANDBOX.client("sqs")
    arn = sns.create_topic(Name=f"{prefix}{topic}")["TopicArn"]
    url = sqs.create_queue(QueueName=f"{prefix}{topic}-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=arn,
        Protocol="sqs",
        Endpoint=queue_arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    return str(url)


def _drain(url: str) -> list[dict[str, Any]]:
    sqs, got = SANDBOX.client("sqs"), []
    while True:
        reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not reply.get("Messages"):
            return got
        for message in reply["Messages"]:
            got.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture(scope="module")
def deployment(sample_photos: Path, model_dir: Path) -> Iterator[Deployment]:
    import openimm.bootstrap as bootstrap
    from openimm.adapters.aws.s3_blobs import S3BlobStore
    from openimm.api.operations import Application

    prefix = f"e2e{uuid.uuid4().hex[:8]}-"
    env = _provision(prefix)
    inbox = _subscribe(prefix, "tasks")
    keys = {"AccessKeys": [{"AccessKeyId": KEY_ID, "AccessKeySecret": SECRET}]}
    keys["AccessKeys"][0].update(Projects={"album": "write"}, Buckets={"*": "read"})
    env |= {
        "OPENIMM_ACCESS_KEYS": json.dumps(keys),
        "AWS_ENDPOINT_URL": SANDBOX.endpoint(),
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        # as on Lambda, where an HTTP caller must sign (set here without the Lambda
        # variables, whose JSON logging would change this test session's log handlers)
        "OPENIMM_TRUST_UNSIGNED_HTTP": "0",
        "OPENIMM_MODEL_DIR": str(model_dir),
    }
    crash = {"armed": True}

    def reading(original: Any) -> Any:
        def read(self: Any, uri: str, **options: Any) -> bytes:
            if uri.endswith(CRASHING):
                raise InstanceCrash(f"out of memory reading {uri}")
            if uri.endswith(RAISING):
                raise RuntimeError(f"reading {uri} broke")
            return bytes(original(self, uri, **options))

        return read

    def staging(original: Any) -> Any:
        def run_stage(self: Any, stage: str, body: dict[str, Any]) -> None:
            if stage == "embed" and crash.get("uri") == body.get("uri"):
                del crash["uri"]
                raise InstanceCrash("embed instance died mid-batch")
            original(self, stage, body)

        return run_stage

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.setattr(S3BlobStore, "read", reading(S3BlobStore.read))
        patch.setattr(Application, "run_stage", staging(Application.run_stage))
        patch.setattr(bootstrap, "_instance", None)
        api = HttpApi(_load_handler("api"))
        config = openapi.Config(
            access_key_id=KEY_ID,
            access_key_secret=SECRET,
            endpoint=f"127.0.0.1:{api.port}",
            protocol="http",
            region_id=REGION,
        )
        story = Deployment(Client(config), "album", "family", env["OPENIMM_PHOTOS_BUCKET"])
        try:
            _tell_the_story(story, env, sample_photos, prefix, crash)
            story.notifications = _drain(inbox)
            sqs = SANDBOX.client("sqs")
            for stage in STAGES:
                url = sqs.get_queue_url(QueueName=f"{prefix}{stage}-dlq")["QueueUrl"]
                story.dead_letters_left[stage] = _backlog(url)
            yield story
        finally:
            api.stop()


def _backlog(url: str) -> int:
    attributes = SANDBOX.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def _tell_the_story(
    story: Deployment, env: dict[str, str], photos: Path, prefix: str, crash: dict[str, Any]
) -> None:
    sdk = story.sdk
    sdk.create_project(imm.CreateProjectRequest(project_name=story.project))
    sdk.create_dataset(
        imm.CreateDatasetRequest(project_name=story.project, dataset_name=story.dataset)
    )
    s3 = SANDBOX.client("s3")
    uploads = {name: (photos / name).read_bytes() for name in PEOPLE}
    uploads[CRASHING] = (photos / "t1.jpg").read_bytes()
    uploads[RAISING] = (photos / "Tom_Hanks_54745.png").read_bytes()
    on_upload = _load_handler("on_object_created")
    for key, data in uploads.items():
        etag = s3.put_object(Bucket=story.photos, Key=key, Body=data)["ETag"]
        event = s3_object_created(story.photos, key, len(data), etag)
        on_upload(event, None)
        if key == PEOPLE[0]:
            on_upload(event, None)  # S3 delivers at least once
    created = sdk.create_figure_clustering_task(
        imm.CreateFigureClusteringTaskRequest(
            project_name=story.project,
            dataset_name=story.dataset,
            notification=imm.Notification(mns=imm.MNS(topic_name="tasks")),
            user_data="e2e",
        )
    ).body
    story.task_id = created.task_id

    sqs = SANDBOX.client("sqs")
    batch_sizes = {"detect": 1, "embed": 3, "cluster": 1, "search": 1}
    for stage in STAGES:
        for queue, folder in ((stage, f"stage_{stage}"), (f"{stage}-dlq", "stage_dead_letter")):
            url = sqs.get_queue_url(QueueName=f"{prefix}{queue}")["QueueUrl"]
            story.mappings[queue] = EventSourceMapping(
                sqs,
                url,
                _load_handler(folder),
                batch_size=batch_sizes[stage] if queue == stage else 10,
                visibility_s=VISIBILITY_S,
                function_name=f"openimm-{queue}",
                # the embed function waits for full batches, so a crash falls mid-batch
                batching_window_s=5 if queue == "embed" else 0,
            )
    duplicated: list[str] = []

    def duplicate_first(records: list[dict[str, Any]]) -> None:
        if not duplicated:  # the queue hands the same message out twice
            duplicated.append(records[0]["body"])
            sqs.send_message(QueueUrl=story.mappings["detect"].queue_url, MessageBody=duplicated[0])

    def crash_mid_batch(records: list[dict[str, Any]]) -> None:
        # once: the instance finishes the batch's first record and dies on the second
        if crash.get("armed") and len(records) >= 2:
            crash.update(armed=False, uri=json.loads(records[1]["body"])["uri"])

    story.mappings["detect"].before_invoke = duplicate_first
    story.mappings["embed"].before_invoke = crash_mid_batch

    def ended() -> bool:
        task = sdk.get_task(
            imm.GetTaskRequest(
                project_name=story.project, task_type="FaceClustering", task_id=story.task_id
            )
        ).body
        return bool(task.status != "Running")

    story.seconds = run_mappings(story.mappings.values(), ended, timeout_s=600)


def _file(story: Deployment, key: str) -> Any:
    reply = story.sdk.get_file_meta(
        imm.GetFileMetaRequest(
            project_name=story.project,
            dataset_name=story.dataset,
            uri=f"oss://{story.photos}/{key}",
        )
    ).body
    (meta,) = reply.files
    return meta


def test_the_task_succeeds_with_the_poisons_failed(deployment: Deployment) -> None:
    task = deployment.sdk.get_task(
        imm.GetTaskRequest(
            project_name=deployment.project,
            task_type="FaceClustering",
            task_id=deployment.task_id,
        )
    ).body
    assert (task.status, task.progress, task.user_data) == ("Succeeded", 100, "e2e")
    crashed, raised = _file(deployment, CRASHING), _file(deployment, RAISING)
    assert crashed.object_status == "failed"
    assert "gave no answer" in crashed.reason
    assert raised.object_status == "failed"
    assert "RuntimeError: reading" in raised.reason and "broke" in raised.reason
    print(
        f"\ntask {task.status} in {deployment.seconds:.1f} s of polling;",
        f"{CRASHING}: {crashed.reason!r}; {RAISING}: {raised.reason!r}",
    )


def test_one_person_one_cluster_nothing_doubled(deployment: Deployment) -> None:
    clusters = deployment.sdk.query_figure_clusters(
        imm.QueryFigureClustersRequest(
            project_name=deployment.project, dataset_name=deployment.dataset, max_results=10
        )
    ).body.figure_clusters
    assert [(c.face_count, c.image_count) for c in clusters] == [(4, 4)]
    faces = {name: len(_file(deployment, name).figures or []) for name in PEOPLE}
    assert faces == dict.fromkeys(PEOPLE, 1), faces
    assert all(_file(deployment, name).object_status == "succeeded" for name in PEOPLE)


def test_the_faults_happened_as_planned(deployment: Deployment) -> None:
    mappings = deployment.mappings
    # the crashing photo has two detect messages (indexing's and the task's), each
    # delivered until the redrive policy took it
    assert mappings["detect"].crashes == 2 * MAX_DELIVERIES
    assert mappings["embed"].crashes == 1
    assert mappings["detect-dlq"].invocations >= 1
    assert deployment.dead_letters_left == dict.fromkeys(STAGES, 0)
    for name, mapping in mappings.items():
        print(
            f"{name:11} invocations {mapping.invocations:3}  crashes {mapping.crashes:2}  "
            f"failed records {mapping.failed_records:2}"
        )


def test_one_completion_notification_on_the_topic(deployment: Deployment) -> None:
    (envelope,) = deployment.notifications
    content = json.loads(envelope["content"]) if "content" in envelope else envelope
    assert envelope["type"] == "imm:Task:FaceClustering", envelope
    assert content["TaskId"] == deployment.task_id and content["Status"] == "Succeeded"
    assert content["ProjectName"] == deployment.project and content["UserData"] == "e2e"
