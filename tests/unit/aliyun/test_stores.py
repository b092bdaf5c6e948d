"""The Alibaba Cloud stores built from OPENIMM_* and ALIBABA_CLOUD_* variables."""

from __future__ import annotations

import pytest

from aliyun_models.mns_service import MnsService
from openimm.adapters.aliyun import AliyunSettings, aliyun_stores
from openimm.adapters.aliyun.config import from_environment

NAMES = {"OPENIMM_TABLESTORE_INSTANCE": "openimm-prod", "OPENIMM_MNS_ACCOUNT_ID": "1234567890"}
KEYS = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "id",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "token",
    "ALIBABA_CLOUD_REGION": "cn-shanghai",
}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "OPENIMM_TABLESTORE_INSTANCE"),
        ({"OPENIMM_TABLESTORE_INSTANCE": "openimm-prod"}, "OPENIMM_MNS_ACCOUNT_ID"),
        ({**NAMES, "OPENIMM_TABLESTORE_INSTANCE": "9lives"}, "OPENIMM_TABLESTORE_INSTANCE"),
        ({**NAMES, "OPENIMM_MNS_ACCOUNT_ID": "acct"}, "OPENIMM_MNS_ACCOUNT_ID"),
        ({**NAMES, "OPENIMM_MNS_QUEUE_PREFIX": "under_score"}, "OPENIMM_MNS_QUEUE_PREFIX"),
        ({**NAMES, "OPENIMM_MNS_WAIT_SECONDS": "31"}, "OPENIMM_MNS_WAIT_SECONDS"),
    ],
)
def test_a_missing_or_malformed_variable_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        AliyunSettings.from_env(env)


def test_defaults() -> None:
    settings = AliyunSettings.from_env(NAMES)
    assert settings == AliyunSettings("openimm-prod", "1234567890")
    assert (settings.tablestore_table, settings.queue_prefix, settings.wait_seconds) == (
        "openimm_items",
        "openimm-",
        0,
    )


def test_stores_on_the_named_resources() -> None:
    settings = AliyunSettings.from_env(
        {
            **NAMES,
            "OPENIMM_TABLESTORE_TABLE": "items",
            "OPENIMM_TABLESTORE_ENDPOINT": "https://openimm-prod.cn-shanghai.ots.aliyuncs.com",
            "OPENIMM_MNS_QUEUE_PREFIX": "imm-",
            "OPENIMM_MNS_WAIT_SECONDS": "5",
        }
    )
    stores = aliyun_stores(settings, from_environment(KEYS))
    assert stores.table.table_name == "items"
    assert stores.table._client.host == "https://openimm-prod.cn-shanghai.ots.aliyuncs.com"
    assert stores.blobs._endpoint == "https://oss-cn-shanghai.aliyuncs.com"
    # queue and topic each have their own account (connection), on the same endpoint
    assert stores.queue._account is not stores.topic._account
    assert stores.queue._account.mns_client.host == "1234567890.mns.cn-shanghai.aliyuncs.com"
    assert stores.topic._account.mns_client.host == "1234567890.mns.cn-shanghai.aliyuncs.com"
    service = MnsService([], ["imm-detect"])
    service.attach(stores.queue._account)
    stores.queue.send("detect", {"n": 1})
    (request,) = service.sent
    assert request.uri == "/queues/imm-detect/messages"
    assert request.header["security-token"] == "token"
    assert stores.queue._wait_seconds == 5


def test_credentials_and_region_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("FC_REGION", raising=False)
    with pytest.raises(ValueError, match="ALIBABA_CLOUD"):
        aliyun_stores(AliyunSettings.from_env(NAMES))
