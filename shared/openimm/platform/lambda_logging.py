"""On Lambda, every log line is one JSON object carrying the invocation's request id.

Powertools' formatter does the JSON; it is put on the root logger's handlers, so the
modules keep logging through the standard library and know nothing of Lambda. Off
Lambda (Function Compute, one machine) nothing changes: their log services already
tag each line with the request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

Handler = Callable[[Any, Any], Any]

_formatter: Any = None


def with_request_logging(handler: Handler, env: Mapping[str, str] | None = None) -> Handler:
    """The handler, logging in JSON with `function_request_id` when it runs on Lambda."""
    env = os.environ if env is None else env
    # set by Lambda's runtime itself (AWS_Lambda_python3.12), never by a test or a user
    if not env.get("AWS_EXECUTION_ENV", "").startswith("AWS_Lambda_"):
        return handler
    formatter = _install(env)

    def logged(event: Any, context: Any) -> Any:
        request_id = getattr(context, "aws_request_id", None)
        with formatter.append_context_keys(function_request_id=request_id):
            return handler(event, context)

    return logged


def _install(env: Mapping[str, str]) -> Any:
    """Powertools' JSON formatter on the root logger's handlers (once per process)."""
    global _formatter
    if _formatter is None:
        from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

        _formatter = LambdaPowertoolsFormatter(
            service=env.get("POWERTOOLS_SERVICE_NAME", "openimm"), utc=True
        )
        root = logging.getLogger()
        if not root.handlers:  # the Lambda runtime installs one; a test may not
            root.addHandler(logging.StreamHandler())
        for handler in root.handlers:
            handler.setFormatter(_formatter)
        root.setLevel(env.get("OPENIMM_LOG_LEVEL", "INFO").upper())
    return _formatter
