"""IMM's RPC style, as the official SDKs send it: parameters in the query, not in JSON.

`POST /` with the operation in the `x-acs-action` header (ACS3-HMAC-SHA256 signing) or in
`?Action=` (signature v2), every operation parameter a query parameter (a form body may
add more), maps and lists as JSON text, numbers and booleans as text. The request
models take text for those (api/base.py JsonDecoded, pydantic's lax numbers and booleans),
so this only gathers the parameters and drops the ones that belong to the protocol.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from openimm.errors import InvalidArgument

API_VERSION = "2020-09-30"
# the signature v2 and common parameters: the protocol's, never an operation's
PROTOCOL_PARAMETERS = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "Timestamp",
        "SignatureNonce",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureType",
        "Signature",
        "AccessKeyId",
        "SecurityToken",
        "RegionId",
    }
)
_FORM = "application/x-www-form-urlencoded"


def is_rpc_request(
    action_header: str | None, query: Mapping[str, str], content_type: str | None, body: bytes
) -> bool:
    """Whether a request is in the RPC style rather than `POST /<Operation>` with JSON."""
    if action_header:
        return True
    form = (content_type or "").split(";")[0].strip().lower() == _FORM
    return "Action" in query and (form or not body.strip())


def rpc_parameters(
    query: Mapping[str, str],
    body: bytes,
    content_type: str | None,
    version: str | None,
) -> dict[str, Any]:
    """The operation's parameters of an RPC-style request."""
    version = version or query.get("Version")
    if version and version != API_VERSION:
        raise InvalidArgument(
            f"The API version {version!r} is not served here; OpenIMM speaks IMM {API_VERSION}."
        )
    params: dict[str, Any] = {k: v for k, v in query.items() if k not in PROTOCOL_PARAMETERS}
    if body.strip():
        if (content_type or "").split(";")[0].strip().lower() != _FORM:
            raise InvalidArgument(
                f"An RPC-style request carries its parameters in the query or a {_FORM} body."
            )
        try:
            form = urllib.parse.parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, strict_parsing=True
            )
        except (UnicodeDecodeError, ValueError):
            raise InvalidArgument(f"The body is not valid {_FORM} text.") from None
        params.update((k, v) for k, v in form if k not in PROTOCOL_PARAMETERS)
    return params
