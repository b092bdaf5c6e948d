"""Credentials and endpoints for Alibaba Cloud, from Function Compute or the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str
    security_token: str | None = None


@dataclass(frozen=True)
class AliyunConfig:
    """Where the services are and who calls them."""

    region: str
    credentials: Credentials
    # inside Function Compute the VPC-internal endpoints are free of traffic charges
    internal: bool = False

    def oss_endpoint(self) -> str:
        """The OSS endpoint of the region."""
        suffix = "-internal" if self.internal else ""
        return f"https://oss-{self.region}{suffix}.aliyuncs.com"

    def mns_endpoint(self, account_id: str) -> str:
        """The MNS endpoint of an Alibaba Cloud account (its numeric id) in the region."""
        suffix = "-internal" if self.internal else ""
        return f"https://{account_id}.mns.{self.region}{suffix}.aliyuncs.com"

    def tablestore_endpoint(self, instance: str) -> str:
        """The endpoint of a Tablestore instance in the region."""
        if self.internal:  # the VPC address, what a function inside the region reaches
            return f"https://{instance}.{self.region}.vpc.tablestore.aliyuncs.com"
        return f"https://{instance}.{self.region}.ots.aliyuncs.com"


def from_environment(env: Mapping[str, str] | None = None) -> AliyunConfig:
    """Read `ALIBABA_CLOUD_*` variables (which Function Compute also sets for its role)."""
    env = os.environ if env is None else env
    key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "")
    secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "")
    if not key_id or not secret:
        raise ValueError("ALIBABA_CLOUD_ACCESS_KEY_ID and _SECRET are needed")
    region = env.get("ALIBABA_CLOUD_REGION") or env.get("FC_REGION", "")
    if not region:
        raise ValueError("ALIBABA_CLOUD_REGION (or FC_REGION inside Function Compute) is needed")
    token = env.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None
    # FC_FUNCTION_NAME is set for every Function Compute invocation
    inside_fc = "FC_FUNCTION_NAME" in env
    return AliyunConfig(region, Credentials(key_id, secret, token), internal=inside_fc)


def from_fc_context(context: object) -> Credentials:
    """The temporary credentials of the function's role, from an FC invocation context."""
    creds = getattr(context, "credentials", None)
    # FC's Python runtime: context.credentials.access_key_id, .access_key_secret, .security_token
    key_id = getattr(creds, "access_key_id", None)
    secret = getattr(creds, "access_key_secret", None)
    token = getattr(creds, "security_token", None)
    if not key_id or not secret:
        raise ValueError("the FC context carries no credentials")
    return Credentials(str(key_id), str(secret), str(token) if token else None)
