"""AWS SDK errors translated into port errors, in one place for every AWS adapter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from openimm.ports import PortError, StorageUnavailable

# codes that say the service cannot be used now, whatever the request
_OUTAGES = frozenset(
    {
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "SlowDown",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "KMSThrottlingException",
        "AccessDenied",
        "AccessDeniedException",
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
    }
)


def error_code(exc: ClientError) -> str:
    """The service's error code of a failed call."""
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Raise StorageUnavailable for outages and PortError for other SDK failures."""
    try:
        yield
    except ClientError as exc:
        kind = StorageUnavailable if error_code(exc) in _OUTAGES else PortError
        raise kind(f"{what}: {exc}") from exc
    except BotoCoreError as exc:
        # connection refused, timeouts, missing credentials: nothing the item did
        raise StorageUnavailable(f"{what}: {exc}") from exc
