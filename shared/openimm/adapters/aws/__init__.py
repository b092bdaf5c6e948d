"""Adapters on AWS: one DynamoDB table, S3 buckets, SQS queues, SNS topics."""

from __future__ import annotations

from openimm.adapters.aws.dynamodb_table import DynamoTableStore

__all__ = ["DynamoTableStore"]
