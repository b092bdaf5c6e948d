"""Topic on MNS topics: IMM's envelope, as JSON, is the message body."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mns.mns_exception import MNSClientNetworkException, MNSExceptionBase, MNSServerException
from mns.topic import TopicMessage

from openimm.ports import JSON, PortError, StorageUnavailable, Topic

# MNS's codes for a service that cannot take the message now, whatever the message
_OUTAGES = {"InternalError", "ServiceUnavailable", "TimeExpired", "AccessDenied"}


class MnsTopic(Topic):
    """Publishes to the MNS topics of one account (`mns.account.Account`)."""

    def __init__(self, account: Any) -> None:
        self._account = account
        # The account's client holds one HTTP connection, which threads must not share;
        # a task publishes once, so taking turns costs nothing that matters.
        self._lock = threading.Lock()

    def _publish(self, topic: str, message: JSON) -> None:
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        with self._lock, _sdk_errors(topic):
            self._account.get_topic(topic).publish_message(TopicMessage(body))


@contextmanager
def _sdk_errors(topic: str) -> Iterator[None]:
    """Translate the MNS SDK's errors into port errors, in one place."""
    try:
        yield
    except MNSClientNetworkException as exc:
        raise StorageUnavailable(f"MNS unreachable for topic {topic}: {exc.message}") from exc
    except MNSServerException as exc:
        if exc.type in _OUTAGES:
            raise StorageUnavailable(f"MNS {exc.type} for topic {topic}") from exc
        raise PortError(f"MNS {exc.type} for topic {topic}: {exc.message}") from exc
    except MNSExceptionBase as exc:  # the SDK's own checks of the request
        raise PortError(f"MNS {exc.type} for topic {topic}: {exc.message}") from exc
