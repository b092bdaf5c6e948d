"""Credentials and endpoints for the Alibaba Cloud adapters."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from openimm.adapters.aliyun.clients import mns_topic, oss_blobs, tablestore_table
from openimm.adapters.aliyun.config import Credentials, from_environment, from_fc_context

KEYS = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}


def test_outside_function_compute_the_public_endpoints() -> None:
    config = from_environment({**KEYS, "ALIBABA_CLOUD_REGION": "cn-hangzhou"})
    assert config.credentials == Credentials("id", "secret", None)
    assert config.oss_endpoint() == "https://oss-cn-hangzhou.aliyuncs.com"
    assert config.tablestore_endpoint("imm") == "https://imm.cn-hangzhou.ots.aliyuncs.com"
    assert config.mns_endpoint("123") == "https://123.mns.cn-hangzhou.aliyuncs.com"


def test_inside_function_compute_the_internal_endpoints_and_the_role() -> None:
    env = {
        **KEYS,
        "ALIBABA_CLOUD_SECURITY_TOKEN": "token",
        "FC_REGION": "cn-shanghai",
        "FC_FUNCTION_NAME": "openimm-api",
    }
    config = from_environment(env)
    assert config.credentials.security_token == "token"
    assert config.oss_endpoint() == "https://oss-cn-shanghai-internal.aliyuncs.com"
    assert config.mns_endpoint("123") == "https://123.mns.cn-shanghai-internal.aliyuncs.com"
    assert (
        config.tablestore_endpoint("imm") == "https://imm.cn-shanghai.vpc.tablestore.aliyuncs.com"
    )


@pytest.mark.parametrize(
    "env",
    [{}, {"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_REGION": "cn-hangzhou"}, KEYS],
)
def test_missing_keys_or_region_are_named(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"ALIBABA_CLOUD|FC_REGION"):
        from_environment(env)


def test_credentials_from_an_fc_context() -> None:
    creds = SimpleNamespace(access_key_id="id", access_key_secret="s", security_token="t")
    assert from_fc_context(SimpleNamespace(credentials=creds)) == Credentials("id", "s", "t")
    with pytest.raises(ValueError):
        from_fc_context(SimpleNamespace(credentials=None))


def test_clients_are_built_with_the_role_token() -> None:
    env = {**KEYS, "ALIBABA_CLOUD_SECURITY_TOKEN": "token", "ALIBABA_CLOUD_REGION": "cn-beijing"}
    config = from_environment(env)
    blobs = oss_blobs(config)
    assert blobs._endpoint == "https://oss-cn-beijing.aliyuncs.com"
    assert blobs._auth.__class__.__name__ == "StsAuth"
    table = tablestore_table(config, "imm")
    assert table.table_name == "openimm_items"
    credentials = table._client.credentials_provider.get_credentials()
    assert credentials.get_security_token() == "token"
    topic = mns_topic(config, "123")
    assert topic._account.mns_client.host == "123.mns.cn-beijing.aliyuncs.com"
