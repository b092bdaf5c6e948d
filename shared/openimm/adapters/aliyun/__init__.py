"""Adapters on Alibaba Cloud (extra `aliyun`): Tablestore tables, OSS buckets, MNS queues and
topics."""

from __future__ import annotations

from openimm.adapters.aliyun.mns_queue import MnsQueue
from openimm.adapters.aliyun.mns_topic import MnsTopic
from openimm.adapters.aliyun.oss_blobs import OssBlobStore
from openimm.adapters.aliyun.stores import AliyunSettings, AliyunStores, aliyun_stores
from openimm.adapters.aliyun.tablestore_table import TablestoreTableStore

__all__ = [
    "AliyunSettings",
    "AliyunStores",
    "MnsQueue",
    "MnsTopic",
    "OssBlobStore",
    "TablestoreTableStore",
    "aliyun_stores",
]
