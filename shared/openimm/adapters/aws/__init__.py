"""Adapters on AWS: one DynamoDB table, S3 buckets, SQS queues, SNS topics."""

from __future__ import annotations

from openimm.adapters.aws.dynamodb_table import DynamoTableStore
from openimm.adapters.aws.s3_blobs import S3BlobStore
from openimm.adapters.aws.sns_topic import SnsTopic
from openimm.adapters.aws.sqs_queue import SqsQueue
from openimm.adapters.aws.stores import AwsSettings, AwsStores, aws_stores

__all__ = [
    "AwsSettings",
    "AwsStores",
    "DynamoTableStore",
    "S3BlobStore",
    "SnsTopic",
    "SqsQueue",
    "aws_stores",
]
