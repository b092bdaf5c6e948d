"""The AWS deployment end to end on a moto server: template.yml's functions as Lambda runs them.

The table, buckets, queues (with their redrive policies) and topic are created from
template.yml's own definitions (tests/aws_template.py), and every function gets the
environment the template gives it. The official IMM SDK calls the Api function through
an HTTP API (payload 2.0) on a real socket, signing with the stack's AccessKeys; S3 upload
events go to the function the bucket notifies; each queue feeds its function through an
emulated event source mapping with the template's batch size (partial failures,
visibility timeouts), and moto's own redrive moves what never succeeds to the queue's
dead-letter queue, which feeds the dead-letter function; the completion notification is
read from an SQS queue subscribed to the stack's SNS topic.

Faults, injected where the platform would meet them:
- a poison photo whose reading kills the instance every time (out of memory): it dies
  on every delivery, lands in the dead-letter queue, and the dead-letter function fails it;
- a poison photo whose reading raises every time: on its last delivery the stage
  function gives up on it itself, with the error as the reason;
- an embed instance that dies mid-batch once, after finishing the first record;
- a detect message delivered twice, and an S3 event delivered twice.
The task still succeeds, with the poisons failed and nothing doubled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_imm20200930.client import Client

from aws_sandbox import REGION, SANDBOX
from aws_template import Deployment as StackOnMoto
from aws_template import deploy
from function_code import load_handler
from function_faults import InstanceCrash
from imm_story import (
    CRASHING,
    PEOPLE,
    RAISING,
    check_notification,
    check_outcome,
    check_people,
    has_ended,
    open_dataset,
    photo_files,
    sdk,
    start_clustering,
)
from lambda_emulator import (
    EventSourceMapping,
    HttpApi,
    run_mappings,
    s3_object_created,
)

pytestmark = pytest.mark.models

# The queues' visibility as the mappings use it: the template's (6x each function's
# timeout, up to 90 minutes) cut to what one photo's stage needs on a slow machine, so
# that five deliveries of a poison take seconds
VISIBILITY_S = 6
# the topic IMM's requests name (OPENIMM_DEFAULT_TOPIC, the stack's TaskTopic)
TOPIC = "openimm-tasks"


@dataclass
class Deployment:
    """What the story left behind, for the tests to look at."""

    sdk: Client
    project: str
    dataset: str
    photos: str
    task_id: str = ""
    seconds: float = 0.0
    max_deliveries: int = 5
    # deliveries of the crashing photo's detect messages, counted as the poller hands them out
    crashing_deliveries: int = 0
    # by the queue each mapping feeds
    mappings: dict[str, EventSourceMapping] = field(default_factory=dict)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    dead_letters_left: dict[str, int] = field(default_factory=dict)


def _handler(stack: StackOnMoto, function: str) -> Any:
    """The callable a template function runs: its image's command, or its zip handler."""
    properties = stack.template["Resources"][function]["Properties"]
    if "ImageConfig" in properties:
        spec = properties["ImageConfig"]["Command"][0]  # relative to the image's /var/task
    else:
        spec = f"{properties['CodeUri'].rstrip('/')}/{properties['Handler']}"
    return load_handler(spec)


def _subscribe(topic_arn: str) -> str:
    """An SQS queue subscribed to the topic with raw delivery: it gets what MNS would."""
    sns, sqs = SANDBOX.client("sns"), SANDBOX.client("sqs")
    arn = topic_arn
    url = sqs.create_queue(QueueName=f"{topic_arn.rsplit(':', 1)[1]}-inbox")["QueueUrl"]
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

    stack = deploy({"TriggerProject": "album", "TriggerDataset": "family"})
    inbox = _subscribe(stack.arns["TaskTopic"])
    [key] = stack.access_keys["AccessKeys"]
    env = stack.function_env("Api") | {"OPENIMM_MODEL_DIR": str(model_dir)}
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
        api = HttpApi(_handler(stack, "Api"))
        client = sdk(api.port, key["AccessKeyId"], key["AccessKeySecret"], REGION)
        story = Deployment(client, "album", "family", stack.names["PhotoBucket"])
        story.max_deliveries = int(env["OPENIMM_MAX_DELIVERIES"])
        try:
            _tell_the_story(story, stack, sample_photos, crash)
            story.notifications = _drain(inbox)
            for name, url in stack.queue_urls.items():
                if name.endswith("DeadLetters"):
                    story.dead_letters_left[name] = _backlog(url)
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
    story: Deployment, stack: StackOnMoto, photos: Path, crash: dict[str, Any]
) -> None:
    client = story.sdk
    open_dataset(client, story.project, story.dataset)
    s3 = SANDBOX.client("s3")
    on_upload = _handler(stack, stack.upload_triggers()[story.photos])
    for key, data in photo_files(photos).items():
        etag = s3.put_object(Bucket=story.photos, Key=key, Body=data)["ETag"]
        event = s3_object_created(story.photos, key, len(data), etag)
        on_upload(event, None)
        if key == PEOPLE[0]:
            on_upload(event, None)  # S3 delivers at least once
    story.task_id = start_clustering(client, story.project, story.dataset, TOPIC, "e2e")

    sqs = SANDBOX.client("sqs")
    for trigger in stack.queue_triggers():
        assert trigger.report_item_failures
        story.mappings[trigger.queue] = EventSourceMapping(
            sqs,
            trigger.url,
            _handler(stack, trigger.function),
            batch_size=trigger.batch_size,
            visibility_s=VISIBILITY_S,
            function_name=trigger.function,
            # the embed function waits for full batches, so that a crash falls mid-batch
            batching_window_s=5 if trigger.queue == "EmbedQueue" else 0,
        )
    duplicated: list[str] = []

    def duplicate_first(records: list[dict[str, Any]]) -> None:
        story.crashing_deliveries += sum(CRASHING in record["body"] for record in records)
        if not duplicated:  # the queue hands the same message out twice
            duplicated.append(records[0]["body"])
            sqs.send_message(
                QueueUrl=story.mappings["DetectQueue"].queue_url, MessageBody=duplicated[0]
            )

    def crash_mid_batch(records: list[dict[str, Any]]) -> None:
        # once: the instance finishes the batch's first record and dies on the second
        if crash.get("armed") and len(records) >= 2:
            crash.update(armed=False, uri=json.loads(records[1]["body"])["uri"])

    story.mappings["DetectQueue"].before_invoke = duplicate_first
    story.mappings["EmbedQueue"].before_invoke = crash_mid_batch

    def ended() -> bool:
        return has_ended(client, story.project, story.task_id)

    story.seconds = run_mappings(story.mappings.values(), ended, timeout_s=600)


def test_the_task_succeeds_with_the_poisons_failed(deployment: Deployment) -> None:
    said = check_outcome(
        deployment.sdk,
        deployment.project,
        deployment.dataset,
        deployment.photos,
        deployment.task_id,
        "e2e",
    )
    print(f"\n{said} ({deployment.seconds:.1f} s of polling)")


def test_one_person_one_cluster_nothing_doubled(deployment: Deployment) -> None:
    check_people(deployment.sdk, deployment.project, deployment.dataset, deployment.photos)


def test_the_faults_happened_as_planned(deployment: Deployment) -> None:
    mappings = deployment.mappings
    # the crashing photo has two detect messages (indexing's and the task's), each
    # delivered until the redrive policy took it; both can come in one batch, whose
    # instance then dies once for two deliveries
    tries = deployment.max_deliveries
    assert deployment.crashing_deliveries == 2 * tries
    assert tries <= mappings["DetectQueue"].crashes <= 2 * tries
    assert mappings["EmbedQueue"].crashes == 1
    assert mappings["DetectDeadLetters"].invocations >= 1
    assert set(deployment.dead_letters_left.values()) == {0}
    for name, mapping in mappings.items():
        print(
            f"{name:18} invocations {mapping.invocations:3}  crashes {mapping.crashes:2}  "
            f"failed records {mapping.failed_records:2}"
        )


def test_one_completion_notification_on_the_topic(deployment: Deployment) -> None:
    (envelope,) = deployment.notifications
    check_notification(envelope, deployment.task_id, deployment.project, "e2e")
