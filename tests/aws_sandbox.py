"""One moto server on 127.0.0.1 for the whole test session, started on first use."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

REGION = "us-east-1"
# the server logs every request; the test output needs none of it
logging.getLogger("werkzeug").setLevel(logging.WARNING)


class _SerialMotoServer(ThreadedMotoServer):
    """Moto answering one request at a time.

    Moto's backends take no locks, so two concurrent UpdateItem ADDs can both read the
    old value; the services themselves apply each write atomically. Serialising the
    requests gives the atomicity the contract tests rely on (and that AWS gives).
    """

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serial(environ: Any, start_response: Any) -> Any:
            with lock:
                return list(app(environ, start_response))

        self._server = make_server(
            self._ip_address, self._port, serial, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


class MotoSandbox:
    """A lazily started ThreadedMotoServer and clients of it with dummy credentials."""

    def __init__(self) -> None:
        self._server: ThreadedMotoServer | None = None
        self._endpoint = ""
        self._lock = threading.Lock()

    def endpoint(self) -> str:
        """The server's URL, starting it if need be."""
        with self._lock:
            if self._server is None:
                self._server = _SerialMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
                self._server.start()
                host, port = self._server.get_host_and_port()
                self._endpoint = f"http://{host}:{port}"
            return self._endpoint

    def client(self, service: str) -> Any:
        """A boto3 client of `service` talking to the session's moto server."""
        return boto3.session.Session().client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint(),
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        """Stop the server if it was started."""
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None


def fresh_name(kind: str) -> str:
    """A name no other test uses, so that each test starts empty on the shared server."""
    return f"contract-{kind}-{uuid.uuid4().hex[:12]}"


SANDBOX = MotoSandbox()


def sns_published(arn_prefix: str) -> list[tuple[str, str]]:
    """(topic name after the prefix, message) of what moto's SNS topics of `arn_prefix` got.

    Read from moto's own record (the server runs in this process) rather than through a
    subscription, which would have to exist before the first publish to each topic.
    """
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    topics = sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics
    return [
        (arn[len(arn_prefix) :], sent[1])
        for arn, topic in sorted(topics.items())
        if arn.startswith(arn_prefix)
        for sent in topic.sent_notifications
    ]


def dynamo_table(name: str) -> Any:
    """Create the one table the DynamoDB adapter needs (as template.yml will) and a client."""
    client = SANDBOX.client("dynamodb")
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    return client
