"""The SDK clients behind the Alibaba Cloud adapters, built from an AliyunConfig."""

from __future__ import annotations

import oss2
import tablestore as ots
from mns.account import Account

from openimm.adapters.aliyun.config import AliyunConfig
from openimm.adapters.aliyun.mns_queue import MnsQueue
from openimm.adapters.aliyun.mns_topic import MnsTopic
from openimm.adapters.aliyun.oss_blobs import OssBlobStore
from openimm.adapters.aliyun.tablestore_table import TablestoreTableStore


def tablestore_table(
    config: AliyunConfig, instance: str, table: str = "openimm_items", endpoint: str = ""
) -> TablestoreTableStore:
    """The TableStore on a Tablestore instance's table (created beforehand, see its schema).

    `endpoint` replaces the region's default one, e.g. the instance's internet endpoint
    for a function with no VPC access (the default inside FC is the VPC endpoint).
    """
    creds = config.credentials
    client = ots.OTSClient(
        endpoint or config.tablestore_endpoint(instance),
        creds.access_key_id,
        creds.access_key_secret,
        instance,
        sts_token=creds.security_token,
    )
    return TablestoreTableStore(client, table)


def oss_blobs(config: AliyunConfig) -> OssBlobStore:
    """The BlobStore on the region's OSS buckets."""
    creds = config.credentials
    if creds.security_token:  # a role's temporary credentials (FC, STS)
        auth = oss2.StsAuth(creds.access_key_id, creds.access_key_secret, creds.security_token)
    else:
        auth = oss2.Auth(creds.access_key_id, creds.access_key_secret)
    return OssBlobStore(auth, config.oss_endpoint())


def mns_topic(config: AliyunConfig, account_id: str) -> MnsTopic:
    """The Topic on an account's MNS topics in the region."""
    return MnsTopic(_mns_account(config, account_id))


def mns_queue(
    config: AliyunConfig, account_id: str, prefix: str = "openimm-", wait_seconds: int = 0
) -> MnsQueue:
    """The Queue on an account's MNS queues `<prefix><name>` in the region."""
    return MnsQueue(_mns_account(config, account_id), prefix, wait_seconds=wait_seconds)


def _mns_account(config: AliyunConfig, account_id: str) -> Account:
    # One account (one HTTP connection) per adapter: each adapter serialises its own calls.
    creds = config.credentials
    return Account(
        config.mns_endpoint(account_id),
        creds.access_key_id,
        creds.access_key_secret,
        creds.security_token or "",
    )
