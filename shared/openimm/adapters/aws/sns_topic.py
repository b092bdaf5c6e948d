"""Topic on SNS: logical topic `t` is the SNS topic `<arn_prefix>t`.

The ARN is built, not looked up, so publishing needs sns:Publish only. The message is
the envelope's JSON; subscribers with raw delivery get exactly what MNS would send.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from openimm.adapters.aws.errors import aws_errors
from openimm.ports import JSON, Topic


class SnsTopic(Topic):
    """Publishes each envelope as one SNS message of its JSON."""

    def __init__(self, client: Any, arn_prefix: str, *, create_missing: bool = False) -> None:
        # e.g. "arn:aws:sns:eu-west-1:123456789012:openimm-"
        self._client = client
        self._arn_prefix = arn_prefix
        # Deployed topics come from the template; creating them is for sandboxes.
        self._create_missing = create_missing
        self._created: set[str] = set()
        self._lock = threading.Lock()

    def _publish(self, topic: str, message: JSON) -> None:
        arn = self._arn_prefix + topic
        with aws_errors(f"publish to {arn}"):
            if self._create_missing:
                self._create(arn)
            self._client.publish(TopicArn=arn, Message=json.dumps(message, ensure_ascii=False))

    def _create(self, arn: str) -> None:
        # Held while creating: another thread must not publish before the topic exists.
        with self._lock:
            if arn not in self._created:
                self._client.create_topic(Name=arn.rsplit(":", 1)[1])
                self._created.add(arn)
