"""The four Alibaba Cloud stores built from environment variables.

Credentials and region come from `ALIBABA_CLOUD_*` (which Function Compute sets for the
function's role) through config.from_environment; only OpenIMM's own names are read here:

| variable | meaning | default |
|---|---|---|
| OPENIMM_TABLESTORE_INSTANCE | the Tablestore instance | required |
| OPENIMM_TABLESTORE_TABLE | its table (schema in README) | openimm_items |
| OPENIMM_TABLESTORE_ENDPOINT | replaces the region's endpoint of the instance | (region's) |
| OPENIMM_MNS_ACCOUNT_ID | the numeric account id in the MNS endpoint | required |
| OPENIMM_MNS_QUEUE_PREFIX | stage queue `q` is the MNS queue `<prefix>q` | openimm- |
| OPENIMM_MNS_WAIT_SECONDS | long polling of receives, 0..30 s | 0 |

Notification topics are named by each request (IMM's Notification.MNS.TopicName), so
they take no prefix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from openimm.adapters.aliyun.clients import mns_queue, mns_topic, oss_blobs, tablestore_table
from openimm.adapters.aliyun.config import AliyunConfig, from_environment
from openimm.adapters.aliyun.mns_queue import MnsQueue
from openimm.adapters.aliyun.mns_topic import MnsTopic
from openimm.adapters.aliyun.oss_blobs import OssBlobStore
from openimm.adapters.aliyun.tablestore_table import TablestoreTableStore

# Tablestore: 3-16 letters, digits and hyphens, starting with a letter
_INSTANCE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{2,15}\Z")
# MNS queue names: letters, digits and hyphens, starting with a letter, up to 256 with the name
_QUEUE_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9-]{0,119})?\Z")


@dataclass(frozen=True)
class AliyunSettings:
    """Names of the Alibaba Cloud resources OpenIMM uses, read from OPENIMM_* variables."""

    tablestore_instance: str
    mns_account_id: str
    tablestore_table: str = "openimm_items"
    tablestore_endpoint: str = ""
    queue_prefix: str = "openimm-"
    wait_seconds: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AliyunSettings:
        """Settings from the environment; a missing or malformed variable is named."""
        env = os.environ if env is None else env
        instance = _required(env, "OPENIMM_TABLESTORE_INSTANCE")
        if not _INSTANCE.match(instance):
            raise ValueError(
                f"OPENIMM_TABLESTORE_INSTANCE is not a Tablestore instance name: {instance!r}"
            )
        account = _required(env, "OPENIMM_MNS_ACCOUNT_ID")
        if not account.isdigit():
            raise ValueError("OPENIMM_MNS_ACCOUNT_ID must be the numeric Alibaba Cloud account id")
        prefix = env.get("OPENIMM_MNS_QUEUE_PREFIX", "openimm-")
        if not _QUEUE_PREFIX.match(prefix):
            raise ValueError(
                f"OPENIMM_MNS_QUEUE_PREFIX is not the start of an MNS queue name: {prefix!r}"
            )
        wait = env.get("OPENIMM_MNS_WAIT_SECONDS", "0")
        if not wait.isdigit() or int(wait) > 30:
            raise ValueError("OPENIMM_MNS_WAIT_SECONDS must be a whole number of seconds, 0..30")
        return cls(
            tablestore_instance=instance,
            mns_account_id=account,
            tablestore_table=env.get("OPENIMM_TABLESTORE_TABLE") or "openimm_items",
            tablestore_endpoint=env.get("OPENIMM_TABLESTORE_ENDPOINT", ""),
            queue_prefix=prefix,
            wait_seconds=int(wait),
        )


@dataclass(frozen=True)
class AliyunStores:
    """A TableStore, BlobStore, Queue and Topic on Alibaba Cloud."""

    table: TablestoreTableStore
    blobs: OssBlobStore
    queue: MnsQueue
    topic: MnsTopic


def aliyun_stores(settings: AliyunSettings, config: AliyunConfig | None = None) -> AliyunStores:
    """The stores on SDK clients for `config` (default: from the ALIBABA_CLOUD_* variables).

    Inside Function Compute the role's credentials are temporary: build the stores again
    when FC hands out new ones rather than keeping them for the instance's lifetime.
    """
    config = config or from_environment()
    return AliyunStores(
        table=tablestore_table(
            config,
            settings.tablestore_instance,
            settings.tablestore_table,
            settings.tablestore_endpoint,
        ),
        blobs=oss_blobs(config),
        queue=mns_queue(
            config, settings.mns_account_id, settings.queue_prefix, settings.wait_seconds
        ),
        topic=mns_topic(config, settings.mns_account_id),
    )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ValueError(f"{name} is needed for OPENIMM_BACKEND=aliyun (see README)")
    return value
