"""Direct invocations: the event is the IMM request object itself.

FC hands it over as JSON bytes, Lambda as a dict. The reply is the IMM response, or the
`{RequestId, Code, Message}` error body: a caller invoking the function directly wants
the IMM error, which an exception raised to the platform would hide.
"""

from __future__ import annotations

from typing import Any

from openimm.platform._base import EventView


class DirectRequest(EventView):
    """An IMM request object sent straight to the function."""

    __slots__ = ()

    @property
    def action(self) -> str | None:
        """The optional "Action" naming the operation (used by the router function)."""
        return self._str("Action")

    def params(self) -> dict[str, Any]:
        """The request parameters, without "Action"."""
        return {key: value for key, value in self._data.items() if key != "Action"}


def context_request_id(context: Any) -> str | None:
    """The platform's invocation id from the handler context (FC or Lambda)."""
    for attribute in ("request_id", "aws_request_id"):
        value = getattr(context, attribute, None)
        if isinstance(value, str) and value:
            return value
    return None
