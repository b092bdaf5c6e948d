"""The four AWS stores built from environment variables.

boto3 reads the region, the credentials and AWS_ENDPOINT_URL (a moto server or
LocalStack) from the environment itself; only OpenIMM's names are read here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import boto3

from openimm.adapters.aws.dynamodb_table import DynamoTableStore
from openimm.adapters.aws.s3_blobs import S3BlobStore
from openimm.adapters.aws.sns_topic import SnsTopic
from openimm.adapters.aws.sqs_queue import SqsQueue


@dataclass(frozen=True)
class AwsSettings:
    """Names of the AWS resources OpenIMM uses, read from OPENIMM_* variables."""

    table: str = "openimm"
    queue_prefix: str = "openimm-"
    # e.g. arn:aws:sns:eu-west-1:123456789012:openimm- (the template knows the account)
    topic_arn_prefix: str = ""
    # long polling of receives, 0..20 s
    wait_seconds: int = 0
    # the redrive policy of queues created when missing (the template sets its own)
    max_receives: int = 5
    # create missing queues and topics: for sandboxes, never for a deployment
    create_missing: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AwsSettings:
        """Settings from the environment; the topic's ARN prefix is required."""
        env = os.environ if env is None else env
        prefix = env.get("OPENIMM_SNS_ARN_PREFIX", "")
        if not prefix.startswith("arn:"):
            raise ValueError("OPENIMM_SNS_ARN_PREFIX must be an SNS ARN prefix (arn:aws:sns:...)")
        return cls(
            table=env.get("OPENIMM_DYNAMODB_TABLE", "openimm"),
            queue_prefix=env.get("OPENIMM_SQS_PREFIX", "openimm-"),
            topic_arn_prefix=prefix,
            wait_seconds=int(env.get("OPENIMM_SQS_WAIT_SECONDS", "0")),
            max_receives=int(env.get("OPENIMM_SQS_MAX_RECEIVES", "5")),
            create_missing=env.get("OPENIMM_AWS_CREATE_MISSING", "0") == "1",
        )


@dataclass(frozen=True)
class AwsStores:
    """A TableStore, BlobStore, Queue and Topic on AWS."""

    table: DynamoTableStore
    blobs: S3BlobStore
    queue: SqsQueue
    topic: SnsTopic


def aws_stores(settings: AwsSettings, session: boto3.session.Session | None = None) -> AwsStores:
    """The stores on clients of one boto3 session (the default one if none is given)."""
    session = session or boto3.session.Session()
    return AwsStores(
        table=DynamoTableStore(session.client("dynamodb"), settings.table),
        blobs=S3BlobStore(session.client("s3")),
        queue=SqsQueue(
            session.client("sqs"),
            settings.queue_prefix,
            create_missing=settings.create_missing,
            max_receives=settings.max_receives,
            wait_seconds=settings.wait_seconds,
        ),
        topic=SnsTopic(
            session.client("sns"),
            settings.topic_arn_prefix,
            create_missing=settings.create_missing,
        ),
    )
