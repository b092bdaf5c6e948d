"""What the platform handlers need from the application, and nothing more.

The handlers depend on this Protocol only, so they load (and are tested) without the
services, models or cloud SDKs behind `openimm.bootstrap`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from openimm.access.signatures import HttpRequest

STAGES = ("detect", "embed", "cluster", "search")


class Application(Protocol):
    """The entry points of a running OpenIMM."""

    @property
    def max_deliveries(self) -> int:
        """Deliveries of a failing stage message before it is given up on."""
        ...

    def call(
        self,
        operation: str,
        body: dict[str, Any],
        request_id: str,
        http: HttpRequest | None = None,
    ) -> dict[str, Any]:
        """Run one IMM operation for the sender of `http` (None: a trusted direct call).

        Raises ImmError, including the refusals of a bad signature or a missing grant;
        the reply has no RequestId.
        """
        ...

    def run_stage(self, stage: str, body: dict[str, Any]) -> None:
        """Process one queued message of a pipeline stage; raising asks for a retry."""
        ...

    def give_up(self, stage: str, body: dict[str, Any], reason: str) -> None:
        """Fail the file or end the task of a stage message that will not be retried.

        Raises InvalidArgument when the body names no file or task to fail.
        """
        ...

    def object_created(self, uri: str, *, size: int | None, etag: str | None) -> None:
        """React to a new object at `oss://bucket/key` or `s3://bucket/key`."""
        ...


AppFactory = Callable[[], Application]


def default_application() -> Application:
    """The deployed application from `openimm.bootstrap`, imported at call time."""
    # Imported lazily so that importing a handler never pulls in the services, and a
    # broken configuration surfaces as an error reply instead of an import failure.
    from openimm.bootstrap import application

    return application()
