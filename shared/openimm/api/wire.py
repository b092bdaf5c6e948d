"""The wire format shared by every entry point: request ids, error bodies, JSON text."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from openimm.errors import ImmError, InternalError, ServiceUnavailable
from openimm.ports import StorageUnavailable

_log = logging.getLogger(__name__)

# Deliberately vague: whatever escaped is an implementation detail, and its text may
# hold paths, hostnames or data of other tenants.
INTERNAL_MESSAGE = "The request processing has failed due to some unknown error."
STORAGE_MESSAGE = (
    "The service cannot read or write its storage now (full, read-only or unreachable). "
    "Try again later."
)


def new_request_id() -> str:
    """A fresh request id shaped like IMM's: an uppercase UUID."""
    return str(uuid.uuid4()).upper()


def error_response(
    exc: BaseException, request_id: str, host_id: str | None = None
) -> tuple[int, dict[str, Any]]:
    """The HTTP status and `{RequestId, Code, Message}` body for an exception, with the
    `HostId` the client called when given."""
    if isinstance(exc, ImmError):
        if exc.http_status >= 500:
            _log.error("request %s failed: %s", request_id, exc.code, exc_info=exc)
        else:
            _log.info("request %s rejected: %s: %s", request_id, exc.code, exc.message)
        status, code, message = exc.http_status, exc.code, exc.message
    elif isinstance(exc, StorageUnavailable):
        # the machine, not the request: a client may try again once space or access is back
        _log.error("request %s failed, storage unavailable: %s", request_id, exc)
        status, code = ServiceUnavailable.http_status, ServiceUnavailable.code
        message = STORAGE_MESSAGE
    else:
        _log.error("request %s failed unexpectedly", request_id, exc_info=exc)
        status, code, message = InternalError.http_status, InternalError.code, INTERNAL_MESSAGE
    body = {"RequestId": request_id, "Code": code, "Message": message}
    if host_id is not None:
        body["HostId"] = host_id
    return status, body


def error_body(exc: BaseException, request_id: str) -> dict[str, Any]:
    """The `{RequestId, Code, Message}` body for an exception (see `error_response`)."""
    return error_response(exc, request_id)[1]


def dumps(obj: Any) -> str:
    """Compact JSON text, non-ASCII kept as is; NaN and infinities are refused."""
    # allow_nan=False: those tokens are not JSON and break strict clients.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
