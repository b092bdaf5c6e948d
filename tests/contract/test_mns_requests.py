"""The MNS topic adapter's exact request, and the service model's documented answers."""

from __future__ import annotations

import json

import mns.account
import pytest
from mns.mns_exception import MNSClientNetworkException

from aliyun_models.mns_service import MnsService
from openimm.adapters.aliyun.mns_topic import MnsTopic
from openimm.ports import Envelope, PortError, StorageUnavailable

ENVELOPE = Envelope("id-1", "acs:imm", "FigureClustering:Succeeded", "s", "t", '{"a":1}')


@pytest.fixture
def service() -> MnsService:
    return MnsService(["imm-events"])


@pytest.fixture
def topic(service: MnsService) -> MnsTopic:
    account = mns.account.Account(
        "https://123.mns.cn-hangzhou.aliyuncs.com", "key-id", "secret", "security-token"
    )
    service.attach(account)
    return MnsTopic(account)


def test_the_envelope_is_the_message_body(service: MnsService, topic: MnsTopic) -> None:
    topic.publish("imm-events", ENVELOPE)
    (request,) = service.sent
    assert (request.method, request.uri) == ("POST", "/topics/imm-events/messages")
    assert request.header["security-token"] == "security-token"
    assert json.loads(service.topics["imm-events"][0]) == ENVELOPE.to_json()


def test_sdk_errors_become_port_errors(
    service: MnsService, topic: MnsTopic, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PortError, match="TopicNotExist"):
        topic.publish("no-such-topic", ENVELOPE)
    with pytest.raises(PortError, match="InvalidArgument"):
        topic.publish("under_score", ENVELOPE)

    def down(request: object) -> object:
        raise MNSClientNetworkException("NetWorkException", "connection refused")

    monkeypatch.setattr(service, "send_request", down)
    service.attach(topic._account)
    with pytest.raises(StorageUnavailable):
        topic.publish("imm-events", ENVELOPE)
