"""Uploads: FC OSS trigger, or S3 events (direct, via SQS, SNS or EventBridge)."""

from __future__ import annotations

from openimm.platform.entry import object_created_handler

handler = object_created_handler()
