"""The AWS stores built from the environment alone reach the endpoint it names."""

from __future__ import annotations

import json

import pytest

from aws_sandbox import REGION, SANDBOX, dynamo_table, fresh_name, sns_published
from openimm.adapters.aws import AwsSettings, aws_stores
from openimm.ports import Envelope


def test_stores_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # AWS_ENDPOINT_URL is boto3's own (>= 1.28): the adapters need no endpoint setting.
    monkeypatch.setenv("AWS_ENDPOINT_URL", SANDBOX.endpoint())
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    table, bucket = fresh_name("table"), fresh_name("bucket")
    dynamo_table(table)
    SANDBOX.client("s3").create_bucket(Bucket=bucket)
    arn_prefix = f"arn:aws:sns:{REGION}:123456789012:{fresh_name('topic')}-"
    settings = AwsSettings.from_env(
        {
            "OPENIMM_DYNAMODB_TABLE": table,
            "OPENIMM_SQS_PREFIX": fresh_name("queue") + "-",
            "OPENIMM_SNS_ARN_PREFIX": arn_prefix,
            "OPENIMM_AWS_CREATE_MISSING": "1",
        }
    )
    stores = aws_stores(settings)
    stores.table.put("tasks", "p", "s", {"v": 1})
    assert stores.table.get("tasks", "p", "s") is not None
    stores.blobs.write(f"s3://{bucket}/k", b"v")
    assert stores.blobs.read(f"oss://{bucket}/k") == b"v"
    stores.queue.send("jobs", {"n": 1})
    assert [m.body for m in stores.queue.receive("jobs")] == [{"n": 1}]
    stores.topic.publish("events", Envelope("i", "s", "t", "sub", "now", "{}"))
    [(name, message)] = sns_published(arn_prefix)
    assert (name, json.loads(message)["id"]) == ("events", "i")


def test_settings_need_the_topic_arn_prefix() -> None:
    with pytest.raises(ValueError, match="OPENIMM_SNS_ARN_PREFIX"):
        AwsSettings.from_env({})
    settings = AwsSettings.from_env({"OPENIMM_SNS_ARN_PREFIX": "arn:aws:sns:r:1:o-"})
    assert (settings.table, settings.queue_prefix, settings.create_missing) == (
        "openimm",
        "openimm-",
        False,
    )


def test_the_aws_backend_is_chosen_by_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from openimm.adapters.aws import DynamoTableStore, S3BlobStore, SnsTopic, SqsQueue
    from openimm.bootstrap import Settings, stores

    table = fresh_name("table")
    dynamo_table(table)
    env = {
        "AWS_ENDPOINT_URL": SANDBOX.endpoint(),
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "OPENIMM_BACKEND": "aws",
        "OPENIMM_DYNAMODB_TABLE": table,
        "OPENIMM_SNS_ARN_PREFIX": f"arn:aws:sns:{REGION}:123456789012:openimm-",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    chosen = stores(Settings.from_env(env))
    assert isinstance(chosen.table, DynamoTableStore)
    assert isinstance(chosen.blobs, S3BlobStore)
    assert isinstance(chosen.queue, SqsQueue)
    assert isinstance(chosen.topic, SnsTopic)
    chosen.table.put("tasks", "p", "s", {"v": 2})
    record = chosen.table.get("tasks", "p", "s")
    assert record is not None and record.data == {"v": 2}
