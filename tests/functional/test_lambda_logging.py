"""On Lambda, log lines are JSON objects carrying the invocation's request id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from openimm.platform import lambda_logging
from openimm.platform.lambda_logging import with_request_logging

LAMBDA = {
    "AWS_LAMBDA_FUNCTION_NAME": "openimm-stage-detect",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
}


class Context:
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"


@pytest.fixture
def root_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The root logger with one stream handler, as the Lambda runtime leaves it."""
    stream = io.StringIO()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [logging.StreamHandler(stream)])
    monkeypatch.setattr(lambda_logging, "_formatter", None)
    level = root.level
    yield stream
    root.setLevel(level)


def _log_and_answer(event: Any, context: Any) -> str:
    logging.getLogger("openimm.pipeline.stages").warning("file %s failed", event["uri"])
    return "ok"


def test_each_line_is_json_with_the_request_id(root_stream: io.StringIO) -> None:
    handler = with_request_logging(_log_and_answer, LAMBDA)
    assert handler({"uri": "s3://photos/a.jpg"}, Context()) == "ok"
    line = json.loads(root_stream.getvalue().splitlines()[-1])
    assert line["message"] == "file s3://photos/a.jpg failed"
    assert line["level"] == "WARNING" and line["service"] == "openimm"
    assert line["function_request_id"] == Context.aws_request_id
    # the key belongs to that invocation only
    logging.getLogger("openimm").warning("between invocations")
    assert "function_request_id" not in json.loads(root_stream.getvalue().splitlines()[-1])


def test_off_lambda_the_handler_is_left_alone(root_stream: io.StringIO) -> None:
    for env in ({"FC_FUNCTION_NAME": "x"}, {"AWS_LAMBDA_FUNCTION_NAME": "as a test sets it"}):
        assert with_request_logging(_log_and_answer, env) is _log_and_answer
    _log_and_answer({"uri": "oss://photos/a.jpg"}, None)
    assert root_stream.getvalue() == "file oss://photos/a.jpg failed\n"
