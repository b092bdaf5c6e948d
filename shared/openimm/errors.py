"""The IMM error family: one class per IMM error code, each with its HTTP status.

Every layer raises these; exactly one function (`openimm.api.wire.error_body`) turns
them into the `{RequestId, Code, Message}` body. Anything else that escapes a
service becomes `InternalError` without internals.
"""

from __future__ import annotations


class ImmError(Exception):
    """Base of every error a client may see."""

    code = "InternalError"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ImmError):
    code = "InvalidArgument"
    http_status = 400


class MissingParameter(ImmError):
    code = "MissingParameter"
    http_status = 400


class InvalidOperation(ImmError):
    """The request is well formed, but the operation is unknown or not allowed."""

    code = "InvalidOperation"
    http_status = 400


class ResourceNotFound(ImmError):
    code = "ResourceNotFound"
    http_status = 404


class ResourceAlreadyExists(ImmError):
    code = "ResourceAlreadyExists"
    http_status = 409


class ConcurrentUpdateConflict(ImmError):
    code = "ConcurrentUpdateConflict"
    http_status = 409


class LimitExceeded(ImmError):
    code = "LimitExceededError"
    http_status = 400


class InternalError(ImmError):
    code = "InternalError"
    http_status = 500


class ServiceUnavailable(ImmError):
    code = "ServiceUnavailable"
    http_status = 503


class Throttling(ImmError):
    """Too many requests are running now; the same request may succeed shortly."""

    code = "Throttling"
    http_status = 503


class MissingAccessKeyId(ImmError):
    """Access keys are configured and the request is not signed."""

    code = "MissingAccessKeyId"
    http_status = 400


class IncompleteSignature(ImmError):
    """The request is signed, but not in a form OpenIMM can check."""

    code = "IncompleteSignature"
    http_status = 400


class InvalidAccessKeyIdNotFound(ImmError):
    code = "InvalidAccessKeyId.NotFound"
    http_status = 404


class SignatureDoesNotMatch(ImmError):
    code = "SignatureDoesNotMatch"
    http_status = 400


class SignatureNonceUsed(ImmError):
    code = "SignatureNonceUsed"
    http_status = 400


class InvalidTimeStampExpired(ImmError):
    code = "InvalidTimeStamp.Expired"
    http_status = 400


class SessionExpired(ImmError):
    """A gallery session cookie (access/sessions.py) that expired or whose key changed;
    named as Alibaba Cloud names an expired STS token, the nearest thing it has."""

    code = "InvalidSecurityToken.Expired"
    http_status = 400


class InvalidTimeStampFormat(ImmError):
    code = "InvalidTimeStamp.Format"
    http_status = 400


class Forbidden(ImmError):
    """The key is valid, but not granted the project or bucket the request touches."""

    code = "Forbidden.RAM"
    http_status = 403


class InvalidFile(ImmError):
    """A file cannot be analysed (not an image, truncated, too large): a per-file failure."""

    code = "InvalidFile"
    http_status = 400


def first_line(exc: BaseException) -> str:
    """An exception's first line of text (the cause; detail follows), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
