"""Fixtures that run every contract test against every adapter of a port.

A new adapter (Tablestore, DynamoDB, OSS, S3, MNS, SQS) joins by adding one factory
to the dict of its port; the tests themselves do not change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mns.account
import oss2
import pytest
import tablestore as ots

from aliyun_models.mns_service import MnsService
from aliyun_models.oss_service import OssService
from aliyun_models.tablestore_service import TablestoreService
from aws_sandbox import REGION, SANDBOX, dynamo_table, fresh_name, sns_published
from openimm.adapters.aliyun.mns_queue import MnsQueue
from openimm.adapters.aliyun.mns_topic import MnsTopic
from openimm.adapters.aliyun.oss_blobs import OssBlobStore
from openimm.adapters.aliyun.tablestore_table import TablestoreTableStore
from openimm.adapters.aws.dynamodb_table import DynamoTableStore
from openimm.adapters.aws.s3_blobs import S3BlobStore
from openimm.adapters.aws.sns_topic import SnsTopic
from openimm.adapters.aws.sqs_queue import SqsQueue
from openimm.adapters.local import FolderBlobStore, JsonlTopic, SqliteQueue, SqliteTableStore
from openimm.ports import JSON, BlobStore, Queue, TableStore, Topic


@dataclass
class BlobSpace:
    """A store and a bucket the tests may write into."""

    store: BlobStore
    bucket: str


@dataclass
class TopicProbe:
    """A topic and a way to see what reached it, as (topic name, message) pairs."""

    topic: Topic
    published: Callable[[], list[tuple[str, JSON]]]


def _jsonl_probe(tmp_path: Path) -> TopicProbe:
    path = tmp_path / "notifications.jsonl"

    def published() -> list[tuple[str, JSON]]:
        if not path.exists():
            return []
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        return [(line["topic"], line["message"]) for line in lines]

    return TopicProbe(JsonlTopic(path), published)


def _tablestore(tmp_path: Path) -> TableStore:
    """The real OTSClient, its network calls answered by the in-memory service model."""
    client = ots.OTSClient(
        "https://openimm-test.cn-hangzhou.ots.aliyuncs.com", "key-id", "secret", "openimm-test"
    )
    store = TablestoreTableStore(client)
    TablestoreService.attach(client, {store.table_name: list(store.primary_key_names)})
    return store


OSS_ENDPOINT = "https://oss-cn-hangzhou.aliyuncs.com"


def _oss(tmp_path: Path) -> BlobSpace:
    """oss2's real Bucket and HTTP stack, the socket replaced by the in-memory service model."""
    service = OssService(["contract-bucket"])
    session = oss2.Session(adapter=service)
    store = OssBlobStore(oss2.Auth("key-id", "secret"), OSS_ENDPOINT, session=session)
    return BlobSpace(store, "contract-bucket")


def _mns_probe(tmp_path: Path) -> TopicProbe:
    """The MNS SDK's real Account and Topic, its HTTP connection answered by the model."""
    service = MnsService(["imm-events", "t"])
    account = mns.account.Account("https://123.mns.cn-hangzhou.aliyuncs.com", "key-id", "secret")
    service.attach(account)

    def published() -> list[tuple[str, JSON]]:
        return [(n, json.loads(body)) for n, bodies in service.topics.items() for body in bodies]

    return TopicProbe(MnsTopic(account), published)


MNS_ENDPOINT = "https://123.mns.cn-hangzhou.aliyuncs.com"
# the logical queues the contract tests use, each with its dead letters, under a prefix
MNS_QUEUES = [f"openimm-{q}{dlq}" for q in ("jobs", "a", "b") for dlq in ("", "-dlq")]


def _mns_queue(tmp_path: Path) -> Callable[[], Queue]:
    """The MNS SDK's real Account and Queue; every handle's connection answered by one model."""
    service = MnsService([], MNS_QUEUES)

    def open_one() -> Queue:
        account = mns.account.Account(MNS_ENDPOINT, "key-id", "secret")
        service.attach(account)
        return MnsQueue(account, "openimm-")

    return open_one


def _dynamo(tmp_path: Path) -> TableStore:
    name = fresh_name("table")
    return DynamoTableStore(dynamo_table(name), name)


def _s3(tmp_path: Path) -> BlobSpace:
    client = SANDBOX.client("s3")
    bucket = fresh_name("bucket")
    client.create_bucket(Bucket=bucket)
    return BlobSpace(S3BlobStore(client), bucket)


def _sqs(tmp_path: Path) -> Callable[[], Queue]:
    # Queues are created on first use under a prefix of this test's own.
    prefix = fresh_name("queue") + "-"
    return lambda: SqsQueue(SANDBOX.client("sqs"), prefix, create_missing=True)


def _sns_probe(tmp_path: Path) -> TopicProbe:
    arn_prefix = f"arn:aws:sns:{REGION}:123456789012:{fresh_name('topic')}-"
    topic = SnsTopic(SANDBOX.client("sns"), arn_prefix, create_missing=True)

    def published() -> list[tuple[str, JSON]]:
        return [(name, json.loads(message)) for name, message in sns_published(arn_prefix)]

    return TopicProbe(topic, published)


# Each factory gets a fresh folder; a queue factory returns an opener, since some tests
# need two independent handles on the same queues.
TABLE_FACTORIES: dict[str, Callable[[Path], TableStore]] = {
    "sqlite-file": lambda tmp: SqliteTableStore(tmp / "table.db"),
    "sqlite-memory": lambda tmp: SqliteTableStore(":memory:"),
    "tablestore": _tablestore,
    "dynamodb": _dynamo,
}
BLOB_FACTORIES: dict[str, Callable[[Path], BlobSpace]] = {
    "folder": lambda tmp: BlobSpace(FolderBlobStore(tmp / "buckets"), "contract-bucket"),
    "oss": _oss,
    "s3": _s3,
}
QUEUE_FACTORIES: dict[str, Callable[[Path], Callable[[], Queue]]] = {
    "sqlite-file": lambda tmp: lambda: SqliteQueue(tmp / "queue.db"),
    "sqs": _sqs,
    "mns": _mns_queue,
}
TOPIC_FACTORIES: dict[str, Callable[[Path], TopicProbe]] = {
    "jsonl": _jsonl_probe,
    "mns": _mns_probe,
    "sns": _sns_probe,
}


def _close(adapter: Any) -> None:
    close = getattr(adapter, "close", None)
    if callable(close):
        close()


@pytest.fixture(params=sorted(TABLE_FACTORIES))
def table_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TableStore]:
    store = TABLE_FACTORIES[request.param](tmp_path)
    yield store
    _close(store)


@pytest.fixture(params=sorted(BLOB_FACTORIES))
def blob_space(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobSpace]:
    space = BLOB_FACTORIES[request.param](tmp_path)
    yield space
    _close(space.store)


@pytest.fixture
def blob_store(blob_space: BlobSpace) -> BlobStore:
    return blob_space.store


@pytest.fixture
def bucket(blob_space: BlobSpace) -> str:
    return blob_space.bucket


@pytest.fixture(params=sorted(QUEUE_FACTORIES))
def open_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Queue]]:
    opened: list[Queue] = []
    factory = QUEUE_FACTORIES[request.param](tmp_path)

    def open_one() -> Queue:
        handle = factory()
        opened.append(handle)
        return handle

    yield open_one
    for handle in opened:
        _close(handle)


@pytest.fixture
def queue(open_queue: Callable[[], Queue]) -> Queue:
    return open_queue()


@pytest.fixture(params=sorted(TOPIC_FACTORIES))
def topic_probe(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TopicProbe]:
    probe = TOPIC_FACTORIES[request.param](tmp_path)
    yield probe
    _close(probe.topic)


@pytest.fixture
def topic(topic_probe: TopicProbe) -> Topic:
    return topic_probe.topic


@pytest.fixture
def published(topic_probe: TopicProbe) -> Callable[[], list[tuple[str, JSON]]]:
    """What reached the topic so far, as (topic name, message) pairs."""
    return topic_probe.published
