"""tests/aws_template.py builds template.yml's own resources on moto, as the template says."""

from __future__ import annotations

import json

import pytest

from aws_sandbox import SANDBOX, sns_published
from aws_template import Deployment, deploy, load_template
from openimm.access.keyring import keyring_from_env
from openimm.adapters.aws import AwsSettings, aws_stores
from openimm.ports import Envelope

STAGES = ("detect", "embed", "cluster", "search")
TEMPLATE = load_template()


def _properties(logical: str) -> dict[str, object]:
    properties = TEMPLATE["Resources"][logical]["Properties"]
    assert isinstance(properties, dict)
    return properties


@pytest.fixture(scope="module")
def stack() -> Deployment:
    return deploy()


def test_the_table_is_the_templates(stack: Deployment) -> None:
    dynamo = SANDBOX.client("dynamodb")
    table = dynamo.describe_table(TableName=stack.names["Table"])["Table"]
    assert table["KeySchema"] == _properties("Table")["KeySchema"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = dynamo.describe_time_to_live(TableName=stack.names["Table"])["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_each_stage_queue_and_its_dead_letters_are_the_templates(stack: Deployment) -> None:
    sqs = SANDBOX.client("sqs")
    max_deliveries = int(stack.function_env("StageDetect")["OPENIMM_MAX_DELIVERIES"])
    for stage in STAGES:
        queue, dead = f"{stage.capitalize()}Queue", f"{stage.capitalize()}DeadLetters"
        assert stack.names[queue] == f"{stack.stack}-{stage}"
        assert stack.names[dead] == f"{stack.stack}-{stage}-dlq"
        got = sqs.get_queue_attributes(QueueUrl=stack.queue_urls[queue], AttributeNames=["All"])
        attributes = got["Attributes"]
        assert int(attributes["VisibilityTimeout"]) == _properties(queue)["VisibilityTimeout"]
        assert json.loads(attributes["RedrivePolicy"]) == {
            "deadLetterTargetArn": stack.arns[dead],
            "maxReceiveCount": max_deliveries,
        }
        got = sqs.get_queue_attributes(QueueUrl=stack.queue_urls[dead], AttributeNames=["All"])
        assert got["Attributes"]["QueueArn"] == stack.arns[dead]
        assert int(got["Attributes"]["MessageRetentionPeriod"]) == 14 * 24 * 3600


def test_the_buckets_and_topic_exist(stack: Deployment) -> None:
    s3 = SANDBOX.client("s3")
    for bucket in ("PhotoBucket", "WorkBucket"):
        block = s3.get_public_access_block(Bucket=stack.names[bucket])
        assert all(block["PublicAccessBlockConfiguration"].values()), bucket
    assert stack.names["PhotoBucket"] == f"{stack.stack}-photos"
    sns = SANDBOX.client("sns")
    assert sns.get_topic_attributes(TopicArn=stack.arns["TaskTopic"])["Attributes"]


def test_a_functions_environment_reaches_the_stacks_resources(
    stack: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = stack.function_env("StageCluster")
    for name in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", env["AWS_SECRET_ACCESS_KEY"])
    assert env["OPENIMM_BACKEND"] == "aws"
    keyring = keyring_from_env(env)
    assert keyring is not None
    settings = AwsSettings.from_env(env)
    assert not settings.create_missing  # the template made everything
    stores = aws_stores(settings)

    stores.table.put("tasks", "p", "s", {"v": 1})
    assert stores.table.get("tasks", "p", "s") is not None
    work, photos = env["OPENIMM_WORK_BUCKET"], stack.names["PhotoBucket"]
    stores.blobs.write(f"oss://{work}/chips/k", b"v")
    SANDBOX.client("s3").put_object(Bucket=photos, Key="a.jpg", Body=b"jpeg")
    assert stores.blobs.read(f"oss://{photos}/a.jpg") == b"jpeg"
    for stage in STAGES:
        stores.queue.send(stage, {"stage": stage})
        url = stack.queue_urls[f"{stage.capitalize()}Queue"]
        [message] = SANDBOX.client("sqs").receive_message(QueueUrl=url)["Messages"]
        assert json.loads(message["Body"]) == {"stage": stage}
    stores.topic.publish(env["OPENIMM_DEFAULT_TOPIC"], Envelope("i", "s", "t", "sub", "now", "{}"))
    [(topic, sent)] = sns_published(env["OPENIMM_SNS_ARN_PREFIX"])
    assert (env["OPENIMM_SNS_ARN_PREFIX"] + topic, json.loads(sent)["id"]) == (
        stack.arns["TaskTopic"],
        "i",
    )


def test_parameters_reach_the_queues_and_the_environment() -> None:
    stack = deploy({"MaxDeliveries": "3", "TriggerProject": "album", "TriggerDataset": "family"})
    env = stack.function_env("OnObjectCreated")
    assert (env["OPENIMM_TRIGGER_PROJECT"], env["OPENIMM_TRIGGER_DATASET"]) == ("album", "family")
    assert env["OPENIMM_MAX_DELIVERIES"] == "3"
    got = SANDBOX.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_urls["EmbedQueue"], AttributeNames=["RedrivePolicy"]
    )
    assert json.loads(got["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == 3
    with pytest.raises(KeyError):
        stack.function_env("Table")


def test_triggers_are_the_templates(stack: Deployment) -> None:
    triggers = {(t.function, t.queue): t for t in stack.queue_triggers()}
    assert set(triggers) == {
        *((f"Stage{stage.capitalize()}", f"{stage.capitalize()}Queue") for stage in STAGES),
        *(("StageDeadLetter", f"{stage.capitalize()}DeadLetters") for stage in STAGES),
    }
    detect = triggers[("StageDetect", "DetectQueue")]
    assert (detect.url, detect.batch_size) == (stack.queue_urls["DetectQueue"], 1)
    assert detect.visibility_timeout == _properties("DetectQueue")["VisibilityTimeout"]
    assert all(t.report_item_failures for t in triggers.values())
    assert stack.upload_triggers() == {stack.names["PhotoBucket"]: "OnObjectCreated"}
