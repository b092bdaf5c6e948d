"""The FC give-up path: a stage's -dlq queue, delivered by its MNS trigger, to the
dead-letter function, for both kinds of letter the queue holds."""

from __future__ import annotations

import base64
import json
from typing import Any

import mns.account
import pytest

from aliyun_models.mns_service import MnsService
from event_fixtures import load_json
from openimm.adapters.aliyun.mns_queue import MnsQueue
from openimm.platform.entry import dead_letter_handler

STAGE_BODY = json.loads(load_json("fc_eventbridge_mns")["data"]["messageBody"])


class GivingUp:
    """The part of the Application the dead-letter function uses."""

    def __init__(self) -> None:
        self.given_up: list[tuple[str, dict[str, Any], str]] = []

    def give_up(self, stage: str, body: dict[str, Any], reason: str) -> None:
        self.given_up.append((stage, body, reason))


def _deliver(event: dict[str, Any]) -> GivingUp:
    app = GivingUp()
    dead_letter_handler(lambda: app)(json.dumps(event).encode(), None)  # type: ignore[arg-type, return-value]
    return app


def test_the_trigger_s_own_dead_letter_fails_the_file() -> None:
    # the stage's trigger gave up after its retries: the letter is the event it could not deliver
    [(stage, body, reason)] = _deliver(load_json("fc_eventbridge_mns_dlq_platform")).given_up
    assert (stage, body) == ("detect", STAGE_BODY)
    assert "detect" in reason


@pytest.mark.xfail(
    strict=True,
    reason="platform.entry's MNS dead letters do not read MnsQueue.dead_letter's "
    '{"dead_letter": {queue, reason, body}} yet (see the fc-deploy report)',
)
def test_a_letter_written_by_the_queue_adapter_keeps_its_reason() -> None:
    service = MnsService([], ["openimm-detect", "openimm-detect-dlq"])
    account = mns.account.Account("https://123.mns.cn-hangzhou.aliyuncs.com", "id", "secret")
    service.attach(account)
    queue = MnsQueue(account, "openimm-")
    queue.send("detect", STAGE_BODY)
    [message] = queue.receive("detect")
    queue.dead_letter(message, "UnidentifiedImageError: cannot identify image file")
    [stored] = service.queues.peek("openimm-detect-dlq", 1)
    # the trigger decodes the SDK's base64 (IsBase64Decode) and delivers the JSON text
    event = load_json("fc_eventbridge_mns_dlq_openimm")
    event["data"]["messageBody"] = base64.b64decode(stored.body).decode()
    assert _deliver(event).given_up == [
        ("detect", STAGE_BODY, "UnidentifiedImageError: cannot identify image file")
    ]
