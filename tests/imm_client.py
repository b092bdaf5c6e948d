"""Alibaba Cloud's own IMM client, pointed at an `openimm serve` on loopback."""

from __future__ import annotations

from alibabacloud_imm20200930.client import Client
from alibabacloud_tea_openapi import models as openapi


def imm_client(port: int, key: str, secret: str, signature: str = "acs3") -> Client:
    """A client signing with `key` (ACS3, the SDK's default, or "v2")."""
    config = openapi.Config(
        access_key_id=key,
        access_key_secret=secret,
        endpoint=f"127.0.0.1:{port}",
        protocol="http",
        region_id="cn-local",
        signature_version="v2" if signature == "v2" else None,
    )
    return Client(config)
