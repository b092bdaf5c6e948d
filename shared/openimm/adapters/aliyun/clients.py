"""The SDK clients behind the Alibaba Cloud adapters, built from an AliyunConfig."""

from __future__ import annotations

import oss2
import tablestore as ots
from mns.account import Account

from openimm.adapters.aliyun.config import AliyunConfig
from openimm.adapters.aliyun.mns_topic import MnsTopic
from openimm.adapters.aliyun.oss_blobs import OssBlobStore
from openimm.adapters.aliyun.tablestore_table import TablestoreTableStore


def tablestore_table(
    config: AliyunConfig, instance: str, table: str = "openimm_items"
) -> TablestoreTableStore:
    """The TableStore on a Tablestore instance's table (created beforehand, see its schema)."""
    creds = config.credentials
    client = ots.OTSClient(
        config.tablestore_endpoint(instance),
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
    creds = config.credentials
    account = Account(
        config.mns_endpoint(account_id),
        creds.access_key_id,
        creds.access_key_secret,
        creds.security_token or "",
    )
    return MnsTopic(account)
