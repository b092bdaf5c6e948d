"""The platform adapters end to end: recorded-shape events in, replies and app calls out."""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import re
import sys
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus

import pytest

from openimm.api.wire import INTERNAL_MESSAGE, dumps, error_body, error_response, new_request_id
from openimm.errors import (
    ImmError,
    InternalError,
    InvalidArgument,
    ResourceNotFound,
    ServiceUnavailable,
)
from openimm.platform.application import STAGES, Application
from openimm.platform.entry import (
    MAX_BODY_BYTES,
    OPERATIONS,
    dead_letter_handler,
    http_router_handler,
    object_created_handler,
    operation_handler,
    stage_handler,
)
from openimm.platform.queue_events import BatchProcessingError
from openimm.ports import StorageUnavailable

ROOT = Path(__file__).resolve().parents[2]


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Loaded by path: tests/ is not a package, and the test directory may not be on sys.path.
fixtures = _load_module("event_fixtures", ROOT / "tests" / "event_fixtures.py")
load_event: Callable[[str], Any] = fixtures.load_event
load_json: Callable[[str], Any] = fixtures.load_json

FC_REQUEST_ID = "1-6745a2b1-0f3a9c2e-7d1b4e5a6c8f"
LAMBDA_REQUEST_ID = "BqK5ZjQ2IAMEVdw="
DIRECT_REQUEST_ID = "9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
BODY = {"ProjectName": "demo", "Description": "家庭相册"}
UPPER_UUID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$")
HTTP_KINDS = ("fc_http", "lambda_http")
ALL_KINDS = (*HTTP_KINDS, "fc_direct", "lambda_direct")


# ---------------------------------------------------------------- fakes


class FakeApp:
    """An Application that records what it is asked and fails on demand."""

    def __init__(
        self,
        *,
        reply: Any = None,
        error: BaseException | None = None,
        fail_body: Callable[[dict[str, Any]], bool] = lambda body: False,
        fail_uri: Callable[[str], bool] = lambda uri: False,
    ) -> None:
        self.reply = {"ProjectName": "demo", "ProjectId": "p-1"} if reply is None else reply
        self.error = error
        self.fail_body = fail_body
        self.fail_uri = fail_uri
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.stages: list[tuple[str, dict[str, Any]]] = []
        self.objects: list[tuple[str, int | None, str | None]] = []
        self.max_deliveries = 5
        self.given_up: list[tuple[str, dict[str, Any], str]] = []
        self.give_up_error: BaseException | None = None

    def call(
        self, operation: str, body: dict[str, Any], request_id: str, http: Any = None
    ) -> dict[str, Any]:
        self.calls.append((operation, body, request_id))
        if self.error is not None:
            raise self.error
        return self.reply  # type: ignore[no-any-return]

    def run_stage(self, stage: str, body: dict[str, Any]) -> None:
        self.stages.append((stage, body))
        if self.fail_body(body):
            raise RuntimeError(f"stage {stage} failed")

    def give_up(self, stage: str, body: dict[str, Any], reason: str) -> None:
        self.given_up.append((stage, body, reason))
        if self.give_up_error is not None:
            raise self.give_up_error

    def object_created(self, uri: str, *, size: int | None, etag: str | None) -> None:
        self.objects.append((uri, size, etag))
        if self.fail_uri(uri):
            raise RuntimeError(f"indexing {uri} failed")


def _as_application(app: FakeApp) -> Application:
    return app  # the fake must satisfy the Protocol the handlers depend on


class FcContext:
    def __init__(self, request_id: str = DIRECT_REQUEST_ID) -> None:
        self.request_id = request_id
        self.function_name = "openimm-create_project"


class LambdaContext:
    def __init__(self, aws_request_id: str = DIRECT_REQUEST_ID) -> None:
        self.aws_request_id = aws_request_id
        self.function_name = "openimm-CreateProject"


def factory(app: FakeApp) -> Callable[[], Application]:
    return lambda: _as_application(app)


# ---------------------------------------------------------------- event builders


def http_event(
    kind: str,
    body: Any = BODY,
    *,
    path: str = "/CreateProject",
    method: str = "POST",
    query: dict[str, str] | None = None,
    b64: bool = False,
    raw_body: str | None = None,
    request_id: str | None = "keep",
) -> Any:
    """An HTTP event of `kind` built from its recorded fixture."""
    text = raw_body if raw_body is not None else json.dumps(body, ensure_ascii=False)
    if b64:
        text = base64.b64encode(text.encode("utf-8")).decode()
    if kind == "fc_http":
        event = load_json("fc_http_trigger")
        event["rawPath"] = path
        event["requestContext"]["http"].update(method=method, path=path)
        event["queryParameters"] = query or {}
    else:
        event = load_json("lambda_http_v2")
        event["rawPath"] = path
        event["routeKey"] = "$default"
        event["requestContext"]["http"].update(method=method, path=path)
        if query:
            event["queryStringParameters"] = query
    event["body"] = text
    event["isBase64Encoded"] = b64
    if request_id is None:
        del event["requestContext"]["requestId"]
    return json.dumps(event, ensure_ascii=False).encode() if kind == "fc_http" else event


def request_event(kind: str, body: Any = BODY, **options: Any) -> tuple[Any, Any]:
    """(event, context) of any kind carrying `body` as the IMM request."""
    if kind in HTTP_KINDS:
        return http_event(kind, body, **options), None
    if kind == "fc_direct":
        return json.dumps(body, ensure_ascii=False).encode(), FcContext()
    return body, LambdaContext()


def expected_host_id(kind: str) -> str:
    # IMM's HostId: the domain the client called; a direct invocation has none of its own
    domains = {"fc_http": "openimm-api-abcdefghij.cn-hangzhou.fcapp.run"}
    domains["lambda_http"] = load_json("lambda_http_v2")["requestContext"]["domainName"]
    return domains.get(kind, "openimm")


def expected_request_id(kind: str) -> str:
    return {"fc_http": FC_REQUEST_ID, "lambda_http": LAMBDA_REQUEST_ID}.get(kind, DIRECT_REQUEST_ID)


def parse_reply(kind: str, reply: Any) -> tuple[int | None, dict[str, Any], dict[str, str]]:
    """(HTTP status or None, IMM payload, headers) of a handler's reply."""
    if kind in HTTP_KINDS:
        assert set(reply) == {"statusCode", "headers", "body", "isBase64Encoded"}
        assert reply["isBase64Encoded"] is False
        assert isinstance(reply["body"], str)
        return reply["statusCode"], json.loads(reply["body"]), reply["headers"]
    assert isinstance(reply, dict)
    json.dumps(reply)  # the runtime must be able to serialise it
    return None, reply, {}


def assert_error(kind: str, reply: Any, status: int, code: str) -> dict[str, Any]:
    got_status, payload, _ = parse_reply(kind, reply)
    if kind in HTTP_KINDS:
        assert got_status == status
    assert set(payload) == {"RequestId", "HostId", "Code", "Message"}
    assert payload["Code"] == code
    assert payload["RequestId"]
    return payload


# ---------------------------------------------------------------- wire


def test_new_request_id_looks_like_imm() -> None:
    ids = {new_request_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(UPPER_UUID.match(rid) for rid in ids)


def test_dumps_is_compact_and_keeps_unicode() -> None:
    assert dumps({"a": [1, 2], "名": "张三"}) == '{"a":[1,2],"名":"张三"}'
    with pytest.raises(ValueError):
        dumps({"score": float("nan")})


def test_error_response_for_imm_errors() -> None:
    status, body = error_response(ResourceNotFound("dataset family not found"), "RID")
    assert status == 404
    assert body == {
        "RequestId": "RID",
        "Code": "ResourceNotFound",
        "Message": "dataset family not found",
    }
    assert error_response(ServiceUnavailable("busy"), "RID")[0] == 503
    assert error_body(ResourceNotFound("x"), "RID") == {
        "RequestId": "RID",
        "Code": "ResourceNotFound",
        "Message": "x",
    }


def test_storage_unavailable_is_a_503_that_names_no_path() -> None:
    full = StorageUnavailable("/srv/openimm-data/table.db: database or disk is full")
    status, body = error_response(full, "RID")
    assert status == 503 and body["Code"] == "ServiceUnavailable"
    assert "Try again later" in body["Message"] and "/srv" not in body["Message"]


def test_error_response_hides_unexpected_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    try:
        raise KeyError("secret-table-name")
    except KeyError as exc:
        status, body = error_response(exc, "RID")
    assert status == 500
    assert body == {"RequestId": "RID", "Code": "InternalError", "Message": INTERNAL_MESSAGE}
    assert "secret" not in json.dumps(body)
    assert any(record.exc_info for record in caplog.records)


# ---------------------------------------------------------------- operations


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_over_every_kind(operation: str, kind: str) -> None:
    app = FakeApp(reply={"Result": operation, "名字": "张三"})
    handler = operation_handler(operation, app=factory(app))
    event, context = request_event(kind, path=f"/{operation}")

    status, payload, headers = parse_reply(kind, handler(event, context))

    rid = expected_request_id(kind)
    assert app.calls == [(operation, BODY, rid)]
    assert payload == {"RequestId": rid, "Result": operation, "名字": "张三"}
    assert next(iter(payload)) == "RequestId"
    if kind in HTTP_KINDS:
        assert status == 200
        assert headers["Content-Type"].startswith("application/json")
        assert headers["x-acs-request-id"] == rid


@pytest.mark.parametrize("name", ["fc_http_trigger", "lambda_http_v2", "fc_direct"])
def test_recorded_events_as_delivered(name: str) -> None:
    app = FakeApp()
    reply = operation_handler("CreateProject", app=factory(app))(load_event(name), FcContext())
    assert app.calls[0][:2] == ("CreateProject", BODY)
    kind = {"fc_http_trigger": "fc_http", "lambda_http_v2": "lambda_http"}.get(name, "fc_direct")
    _, payload, _ = parse_reply(kind, reply)
    assert payload["RequestId"] == expected_request_id(kind)


def test_fc_http_event_arrives_as_bytes() -> None:
    assert isinstance(load_event("fc_http_trigger"), bytes)
    assert isinstance(load_event("lambda_http_v2"), dict)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_application_reply_cannot_set_the_request_id(kind: str) -> None:
    app = FakeApp(reply={"RequestId": "forged", "TaskId": "t"})
    event, context = request_event(kind)
    _, payload, _ = parse_reply(kind, operation_handler("GetTask", factory(app))(event, context))
    assert payload == {"RequestId": expected_request_id(kind), "TaskId": "t"}


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_request_id_is_generated_without_platform_id(kind: str) -> None:
    app = FakeApp()
    event = http_event(kind, request_id=None)
    _, payload, headers = parse_reply(
        kind, operation_handler("CreateProject", factory(app))(event, None)
    )
    assert UPPER_UUID.match(payload["RequestId"])
    assert app.calls[0][2] == payload["RequestId"] == headers["x-acs-request-id"]


def test_direct_request_id_without_context_is_generated() -> None:
    app = FakeApp()
    reply = operation_handler("CreateProject", factory(app))(dict(BODY), None)
    assert UPPER_UUID.match(reply["RequestId"])


def test_unknown_operation_handler_is_refused_at_import() -> None:
    with pytest.raises(ValueError):
        operation_handler("DeleteEverything")
    with pytest.raises(ValueError):
        http_router_handler(operations=["CreateProject", "DeleteEverything"])


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_matching_action_is_accepted_and_stripped(kind: str) -> None:
    app = FakeApp()
    event, context = request_event(kind, {**BODY, "Action": "CreateProject"})
    parse_reply(kind, operation_handler("CreateProject", factory(app))(event, context))
    assert app.calls[0][1] == BODY


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_other_action_is_refused(kind: str) -> None:
    app = FakeApp()
    event, context = request_event(kind, {**BODY, "Action": "GetTask"})
    reply = operation_handler("CreateProject", factory(app))(event, context)
    assert_error(kind, reply, 400, "InvalidOperation")
    assert app.calls == []


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_imm_error_keeps_its_status_and_code(kind: str) -> None:
    app = FakeApp(error=ResourceNotFound("The project demo does not exist."))
    event, context = request_event(kind)
    reply = operation_handler("GetTask", factory(app))(event, context)
    payload = assert_error(kind, reply, 404, "ResourceNotFound")
    assert payload == {
        "RequestId": expected_request_id(kind),
        "HostId": expected_host_id(kind),
        "Code": "ResourceNotFound",
        "Message": "The project demo does not exist.",
    }


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_unexpected_error_is_a_bare_internal_error(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    app = FakeApp(error=RuntimeError("password=hunter2 at db.internal:5432"))
    event, context = request_event(kind)
    reply = operation_handler("GetTask", factory(app))(event, context)
    payload = assert_error(kind, reply, 500, "InternalError")
    assert payload["Message"] == INTERNAL_MESSAGE
    assert "hunter2" not in json.dumps(reply, ensure_ascii=False)
    assert any(
        record.exc_info and "hunter2" in str(record.exc_info[1]) for record in caplog.records
    )


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_failing_application_factory_is_an_internal_error(kind: str) -> None:
    def broken() -> Application:
        raise RuntimeError("TABLESTORE_ENDPOINT is not set")

    event, context = request_event(kind)
    reply = operation_handler("ListTasks", broken)(event, context)
    assert "TABLESTORE" not in json.dumps(reply)
    assert_error(kind, reply, 500, "InternalError")


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("bad", [["not", "a", "dict"], {"vector": float("nan")}, {"x": object()}])
def test_unencodable_reply_is_an_internal_error(kind: str, bad: Any) -> None:
    event, context = request_event(kind)
    reply = operation_handler("GetTask", factory(FakeApp(reply=bad)))(event, context)
    assert_error(kind, reply, 500, "InternalError")


def test_imm_5xx_error_is_passed_through() -> None:
    event, context = request_event("lambda_http")
    reply = operation_handler("GetTask", factory(FakeApp(error=InternalError("boom"))))(
        event, context
    )
    assert assert_error("lambda_http", reply, 500, "InternalError")["Message"] == "boom"


def test_imm_error_subclass_code_survives() -> None:
    class ThrottledError(ImmError):
        code = "Throttling"
        http_status = 429

    event, context = request_event("fc_http")
    reply = operation_handler("GetTask", factory(FakeApp(error=ThrottledError("slow down"))))(
        event, context
    )
    assert assert_error("fc_http", reply, 429, "Throttling")["Message"] == "slow down"


# ---------------------------------------------------------------- HTTP requests


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "OPTIONS"])
def test_only_post_is_allowed(kind: str, method: str) -> None:
    app = FakeApp()
    reply = operation_handler("CreateProject", factory(app))(http_event(kind, method=method), None)
    assert_error(kind, reply, 405, "InvalidOperation")
    assert reply["headers"]["Allow"] == "POST"
    assert app.calls == []


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"', "", "   ", "null", '{"a": NaN}'])
def test_body_must_be_a_json_object(kind: str, raw: str) -> None:
    app = FakeApp()
    reply = operation_handler("CreateProject", factory(app))(http_event(kind, raw_body=raw), None)
    payload = assert_error(kind, reply, 400, "InvalidArgument")
    assert payload["Message"] == "body must be a JSON object"
    assert app.calls == []


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_base64_body_is_decoded(kind: str) -> None:
    app = FakeApp()
    reply = operation_handler("CreateProject", factory(app))(http_event(kind, b64=True), None)
    assert parse_reply(kind, reply)[0] == 200
    assert app.calls[0][1] == BODY


@pytest.mark.parametrize("kind", HTTP_KINDS)
# invalid bytes, and the UTF-8 spelling of a lone surrogate (which no UTF-8 is)
@pytest.mark.parametrize("raw", [b'{"a":"\xff\xfe"}', b'{"a":"\xed\xa0\x80"}'])
def test_body_must_be_utf8(kind: str, raw: bytes) -> None:
    event = http_event(kind)
    data = json.loads(event) if isinstance(event, bytes) else event
    data.update(body=base64.b64encode(raw).decode(), isBase64Encoded=True)
    event = json.dumps(data).encode() if isinstance(event, bytes) else data
    reply = operation_handler("CreateProject", factory(FakeApp()))(event, None)
    payload = assert_error(kind, reply, 400, "InvalidArgument")
    assert payload["Message"] == "body is not valid UTF-8 text"


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_invalid_base64_is_refused(kind: str) -> None:
    event = http_event(kind)
    data = json.loads(event) if isinstance(event, bytes) else event
    data.update(body="%%%not-base64%%%", isBase64Encoded=True)
    event = json.dumps(data).encode() if isinstance(event, bytes) else data
    reply = operation_handler("CreateProject", factory(FakeApp()))(event, None)
    assert_error(kind, reply, 400, "InvalidArgument")


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize("b64", [False, True])
def test_body_limit_is_one_mebibyte(kind: str, b64: bool) -> None:
    def body_of(size: int) -> str:
        return '{"a":"' + "x" * (size - 8) + '"}'

    app = FakeApp()
    handler = operation_handler("IndexFileMeta", factory(app))
    at_limit = body_of(MAX_BODY_BYTES)
    assert len(at_limit.encode()) == MAX_BODY_BYTES
    assert parse_reply(kind, handler(http_event(kind, raw_body=at_limit, b64=b64), None))[0] == 200
    over = handler(http_event(kind, raw_body=body_of(MAX_BODY_BYTES + 1), b64=b64), None)
    assert "exceeds" in assert_error(kind, over, 400, "InvalidArgument")["Message"]
    assert len(app.calls) == 1


def test_multibyte_body_size_counts_bytes() -> None:
    text = '{"a":"' + "张" * (MAX_BODY_BYTES // 3) + '"}'
    reply = operation_handler("IndexFileMeta", factory(FakeApp()))(
        http_event("lambda_http", raw_body=text), None
    )
    assert_error("lambda_http", reply, 400, "InvalidArgument")


@pytest.mark.parametrize("kind", ["fc_direct", "lambda_direct"])
@pytest.mark.parametrize("event", [b"{broken", b"[1,2]", b"", "plain text", 42, None])
def test_direct_garbage_gets_an_error_body(kind: str, event: Any) -> None:
    app = FakeApp()
    reply = operation_handler("CreateProject", factory(app))(event, FcContext())
    payload = assert_error(kind, reply, 400, "InvalidArgument")
    assert payload["RequestId"] == DIRECT_REQUEST_ID
    assert app.calls == []


# ---------------------------------------------------------------- router


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/CreateProject", None, "CreateProject"),
        ("/prod/GetTask", None, "GetTask"),
        ("/openimm/QueryFigureClusters/", None, "QueryFigureClusters"),
        ("/", {"Action": "ListTasks"}, "ListTasks"),
        ("/CreateProject", {"Action": "GetTask"}, "GetTask"),
    ],
)
def test_router_picks_the_operation(
    kind: str, path: str, query: dict[str, str] | None, expected: str
) -> None:
    app = FakeApp()
    reply = http_router_handler(factory(app))(http_event(kind, path=path, query=query), None)
    assert parse_reply(kind, reply)[0] == 200
    assert app.calls == [(expected, BODY, expected_request_id(kind))]


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize(
    ("path", "query", "body", "code"),
    [
        ("/DeleteEverything", None, BODY, "InvalidOperation"),
        ("/", None, BODY, "MissingParameter"),
        ("/", {"Action": "GetTask"}, {**BODY, "Action": "ListTasks"}, "InvalidArgument"),
        ("/", {"Action": "createproject"}, BODY, "InvalidOperation"),
    ],
)
def test_router_refuses_bad_operations(
    kind: str, path: str, query: dict[str, str] | None, body: dict[str, Any], code: str
) -> None:
    app = FakeApp()
    reply = http_router_handler(factory(app))(http_event(kind, body, path=path, query=query), None)
    assert_error(kind, reply, 400, code)
    assert app.calls == []


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_router_checks_method_first(kind: str) -> None:
    reply = http_router_handler(factory(FakeApp()))(
        http_event(kind, path="/Nope", method="GET"), None
    )
    assert_error(kind, reply, 405, "InvalidOperation")


@pytest.mark.parametrize("kind", ["fc_direct", "lambda_direct"])
def test_router_direct_invocation_uses_action(kind: str) -> None:
    app = FakeApp()
    event, context = request_event(kind, {**BODY, "Action": "CreateDataset"})
    _, payload, _ = parse_reply(kind, http_router_handler(factory(app))(event, context))
    assert app.calls == [("CreateDataset", BODY, DIRECT_REQUEST_ID)]
    assert payload["RequestId"] == DIRECT_REQUEST_ID
    event, context = request_event(kind, BODY)
    assert_error(kind, http_router_handler(factory(app))(event, context), 400, "MissingParameter")


def test_router_restricted_operations() -> None:
    handler = http_router_handler(factory(FakeApp()), operations=["GetTask"])
    reply = handler(http_event("fc_http", path="/CreateProject"), None)
    assert_error("fc_http", reply, 400, "InvalidOperation")


# ---------------------------------------------------------------- stages


STAGE_BODIES = [json.loads(record["body"]) for record in load_json("sqs_stage_batch")["Records"]]


def test_stage_direct_invocation_fc_bytes_and_lambda_dict() -> None:
    app = FakeApp()
    handler = stage_handler("detect", factory(app))
    assert handler(load_event("fc_direct_stage"), FcContext()) is None
    assert handler(load_json("fc_direct_stage"), LambdaContext()) is None
    assert app.stages == [("detect", STAGE_BODIES[0])] * 2


def test_stage_named_in_the_message_must_match() -> None:
    app = FakeApp()
    handler = stage_handler("embed", factory(app))
    handler({**STAGE_BODIES[1], "stage": "embed"}, None)
    assert app.stages == [("embed", {**STAGE_BODIES[1], "stage": "embed"})]
    with pytest.raises(ImmError):
        handler({**STAGE_BODIES[1], "stage": "detect"}, None)
    assert len(app.stages) == 1


@pytest.mark.parametrize("event", [b"[1,2]", b"{broken", "42", {"Records": [{"foo": 1}]}])
def test_stage_refuses_what_it_cannot_read(event: Any) -> None:
    app = FakeApp()
    with pytest.raises(Exception):  # noqa: B017 - any raise makes the platform retry
        stage_handler("cluster", factory(app))(event, None)
    assert app.stages == []


def test_stage_failure_propagates_for_retry() -> None:
    app = FakeApp(fail_body=lambda body: True)
    with pytest.raises(RuntimeError, match="stage detect failed"):
        stage_handler("detect", factory(app))(load_event("fc_direct_stage"), None)


def test_unknown_stage_is_refused_at_import() -> None:
    with pytest.raises(ValueError):
        stage_handler("resize")


def test_sqs_batch_all_succeed() -> None:
    app = FakeApp()
    reply = stage_handler("embed", factory(app))(load_event("sqs_stage_batch"), LambdaContext())
    assert reply == {"batchItemFailures": []}
    assert app.stages == [("embed", body) for body in STAGE_BODIES]


def test_sqs_batch_reports_partial_failures() -> None:
    app = FakeApp(fail_body=lambda body: body["uri"].endswith("b.jpg"))
    reply = stage_handler("detect", factory(app))(load_event("sqs_stage_batch"), LambdaContext())
    assert reply == {
        "batchItemFailures": [{"itemIdentifier": "d1f2a3b4-0002-4c5d-8e9f-0a1b2c3d4e02"}]
    }
    assert [body["uri"][-5:] for _, body in app.stages] == ["a.jpg", "b.jpg", "c.jpg"]


def test_sqs_batch_unreadable_record_is_a_failure_of_its_own() -> None:
    event = load_json("sqs_stage_batch")
    event["Records"][0]["body"] = "{not json"
    event["Records"][2]["body"] = "[1, 2]"
    app = FakeApp()
    reply = stage_handler("detect", factory(app))(event, None)
    assert reply == {
        "batchItemFailures": [
            {"itemIdentifier": "d1f2a3b4-0001-4c5d-8e9f-0a1b2c3d4e01"},
            {"itemIdentifier": "d1f2a3b4-0003-4c5d-8e9f-0a1b2c3d4e03"},
        ]
    }
    assert len(app.stages) == 1


def test_sqs_batch_fails_only_when_every_record_failed() -> None:
    app = FakeApp(fail_body=lambda body: True)
    with pytest.raises(BatchProcessingError):
        stage_handler("cluster", factory(app))(load_event("sqs_stage_batch"), None)
    assert len(app.stages) == 3


def test_sqs_fifo_batch_stops_at_the_first_failure() -> None:
    event = load_json("sqs_stage_batch")
    for record in event["Records"]:
        record["eventSourceARN"] += ".fifo"
    app = FakeApp(fail_body=lambda body: body["uri"].endswith("b.jpg"))
    reply = stage_handler("detect", factory(app))(event, None)
    assert reply == {
        "batchItemFailures": [
            {"itemIdentifier": "d1f2a3b4-0002-4c5d-8e9f-0a1b2c3d4e02"},
            {"itemIdentifier": "d1f2a3b4-0003-4c5d-8e9f-0a1b2c3d4e03"},
        ]
    }
    assert [body["uri"][-5:] for _, body in app.stages] == ["a.jpg", "b.jpg"]


def test_sqs_last_delivery_gives_up_with_the_reason() -> None:
    # b.jpg is on its 3rd delivery in the recorded batch: with 3 allowed, it is given up
    app = FakeApp(fail_body=lambda body: body["uri"].endswith(("a.jpg", "b.jpg")))
    app.max_deliveries = 3
    reply = stage_handler("detect", factory(app))(load_event("sqs_stage_batch"), None)
    assert reply == {
        "batchItemFailures": [{"itemIdentifier": "d1f2a3b4-0001-4c5d-8e9f-0a1b2c3d4e01"}]
    }
    assert [(stage, body["uri"][-5:], reason) for stage, body, reason in app.given_up] == [
        ("detect", "b.jpg", "RuntimeError: stage detect failed")
    ]


def test_sqs_give_up_that_fails_leaves_the_message_to_the_dead_letter_queue() -> None:
    app = FakeApp(fail_body=lambda body: body["uri"].endswith("b.jpg"))
    app.max_deliveries = 3
    app.give_up_error = StorageUnavailable("table unreachable")
    reply = stage_handler("detect", factory(app))(load_event("sqs_stage_batch"), None)
    assert reply == {
        "batchItemFailures": [{"itemIdentifier": "d1f2a3b4-0002-4c5d-8e9f-0a1b2c3d4e02"}]
    }


def dead_letters(queue: str, bodies: list[Any], reason: str | None = None) -> dict[str, Any]:
    event = load_json("sqs_stage_batch")
    records = []
    for index, body in enumerate(bodies):
        record = dict(event["Records"][index % 3])
        record["messageId"] = f"dead-{index}"
        record["eventSourceARN"] = f"arn:aws:sqs:us-east-1:123456789012:{queue}"
        record["body"] = body if isinstance(body, str) else json.dumps(body)
        if reason is not None:
            record["messageAttributes"] = {
                "openimm-reason": {"stringValue": reason, "dataType": "String"}
            }
        records.append(record)
    return {"Records": records}


@pytest.mark.parametrize(
    ("queue", "stage"),
    [("openimm-detect-dlq", "detect"), ("app_embed-dlq", "embed"), ("cluster-dlq", "cluster")],
)
def test_dead_letters_fail_their_file_or_task(queue: str, stage: str) -> None:
    app = FakeApp()
    reply = dead_letter_handler(factory(app))(dead_letters(queue, STAGE_BODIES[:2]), None)
    assert reply == {"batchItemFailures": []}
    assert [(s, body) for s, body, _ in app.given_up] == [(stage, b) for b in STAGE_BODIES[:2]]
    assert "gave no answer" in app.given_up[0][2]


def test_dead_letter_keeps_the_reason_it_was_given_up_with() -> None:
    app = FakeApp()
    event = dead_letters("openimm-search-dlq", [{"task_id": "t-1"}], reason="ValueError: bad")
    dead_letter_handler(factory(app))(event, None)
    assert app.given_up == [("search", {"task_id": "t-1"}, "ValueError: bad")]


@pytest.mark.parametrize(
    ("queue", "body"),
    [
        ("openimm-detect-dlq", "{not json"),
        ("openimm-detect-dlq", [1, 2]),
        ("openimm-uploads-dlq", {"task_id": "t-1"}),
    ],
)
def test_dead_letter_naming_nothing_is_dropped(queue: str, body: Any) -> None:
    app = FakeApp()
    reply = dead_letter_handler(factory(app))(dead_letters(queue, [body]), None)
    assert reply == {"batchItemFailures": []}
    assert app.given_up == []


def test_dead_letter_refused_by_the_application_is_dropped_but_an_outage_is_retried() -> None:
    app = FakeApp()
    app.give_up_error = InvalidArgument("a detect message needs uri")
    handler = dead_letter_handler(factory(app))
    assert handler(dead_letters("openimm-detect-dlq", [{"x": 1}]), None) == {
        "batchItemFailures": []
    }
    app.give_up_error = StorageUnavailable("table unreachable")
    event = dead_letters("openimm-detect-dlq", STAGE_BODIES[:2])
    with pytest.raises(BatchProcessingError):
        handler(event, None)


def test_eventbridge_dead_letter_names_the_stage_queue() -> None:
    original = load_json("fc_eventbridge_mns")
    letter = load_json("fc_eventbridge_mns")
    letter["subject"] = "acs:mns:cn-hangzhou:1234567890123456:queues/openimm-dead-letters"
    letter["data"]["messageBody"] = json.dumps(original)
    app = FakeApp()
    assert dead_letter_handler(factory(app))(json.dumps(letter).encode(), None) is None
    assert [(s, body) for s, body, _ in app.given_up] == [("detect", STAGE_BODIES[0])]


def test_dead_letter_handler_refuses_other_events() -> None:
    with pytest.raises(ValueError):
        dead_letter_handler(factory(FakeApp()))({"hello": 1}, None)


def test_eventbridge_mns_single_message() -> None:
    app = FakeApp()
    assert stage_handler("detect", factory(app))(load_event("fc_eventbridge_mns"), None) is None
    assert app.stages == [("detect", STAGE_BODIES[0])]


def test_eventbridge_mns_batch_with_base64_body() -> None:
    app = FakeApp()
    stage_handler("embed", factory(app))(load_event("fc_eventbridge_mns_batch"), None)
    assert app.stages == [("embed", STAGE_BODIES[1]), ("embed", STAGE_BODIES[2])]


def test_eventbridge_mns_batch_failure_fails_the_delivery_after_trying_all() -> None:
    app = FakeApp(fail_body=lambda body: body["uri"].endswith("b.jpg"))
    with pytest.raises(BatchProcessingError):
        stage_handler("embed", factory(app))(load_event("fc_eventbridge_mns_batch"), None)
    assert len(app.stages) == 2


def test_eventbridge_mns_unreadable_body() -> None:
    event = load_json("fc_eventbridge_mns")
    event["data"]["messageBody"] = "not json, not base64!"
    with pytest.raises(ValueError):
        stage_handler("detect", factory(FakeApp()))(json.dumps(event).encode(), None)


def test_stage_factory_failure_fails_the_invocation() -> None:
    def broken() -> Application:
        raise RuntimeError("no queue configured")

    with pytest.raises(RuntimeError):
        stage_handler("detect", broken)(load_event("sqs_stage_batch"), None)


# ---------------------------------------------------------------- objects


OSS_KEY = "photos/family trip/张三+李四 100%.jpg"
OSS_URI = f"oss://openimm-photos/{OSS_KEY}"
S3_URI = f"s3://openimm-photos/{OSS_KEY}"


def test_fc_oss_trigger_key_is_used_verbatim() -> None:
    app = FakeApp()
    assert object_created_handler(factory(app))(load_event("fc_oss_trigger"), FcContext()) is None
    assert app.objects == [(OSS_URI, 122539, "688A7BF4F233DC9C88A80BF985AB7329")]


def test_s3_put_key_is_url_decoded() -> None:
    app = FakeApp()
    object_created_handler(factory(app))(load_event("s3_put"), LambdaContext())
    assert app.objects == [(S3_URI, 122539, "0123456789abcdef0123456789abcdef")]


@pytest.mark.parametrize(
    ("sent", "key"),
    [
        ("my+photo.jpg", "my photo.jpg"),
        ("my%2Bphoto.jpg", "my+photo.jpg"),
        ("my%20photo.jpg", "my photo.jpg"),
        ("%E4%BD%A0%E5%A5%BD/%E7%85%A7%E7%89%87.png", "你好/照片.png"),
        ("100%25+done.jpg", "100% done.jpg"),
        (quote_plus("a b+c/ü 你.jpg", safe="/"), "a b+c/ü 你.jpg"),
    ],
)
def test_s3_key_decoding(sent: str, key: str) -> None:
    event = load_json("s3_put")
    event["Records"][0]["s3"]["object"]["key"] = sent
    app = FakeApp()
    object_created_handler(factory(app))(event, None)
    assert app.objects[0][0] == f"s3://openimm-photos/{key}"


@pytest.mark.parametrize("key", ["my+photo.jpg", "my%2Bphoto.jpg", "a b/你好 照片.png", "100%.jpg"])
def test_oss_key_is_never_decoded(key: str) -> None:
    event = load_json("fc_oss_trigger")
    event["events"][0]["oss"]["object"]["key"] = key
    app = FakeApp()
    object_created_handler(factory(app))(json.dumps(event, ensure_ascii=False).encode(), None)
    assert app.objects[0][0] == f"oss://openimm-photos/{key}"


def test_s3_in_sqs_with_sns_envelope_and_test_event() -> None:
    app = FakeApp()
    reply = object_created_handler(factory(app))(load_event("s3_in_sqs"), LambdaContext())
    assert reply == {"batchItemFailures": []}
    assert app.objects == [
        (S3_URI, 122539, "0123456789abcdef0123456789abcdef"),
        ("s3://openimm-photos/photos/b été.png", 2048, "fedcba9876543210fedcba9876543210"),
    ]


def test_s3_in_sqs_partial_failure() -> None:
    app = FakeApp(fail_uri=lambda uri: uri.endswith(".png"))
    reply = object_created_handler(factory(app))(load_event("s3_in_sqs"), None)
    assert reply == {
        "batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]
    }


def test_s3_in_sqs_foreign_message_is_a_failure() -> None:
    event = load_json("s3_in_sqs")
    event["Records"][2]["body"] = json.dumps({"hello": "world"})
    reply = object_created_handler(factory(FakeApp()))(event, None)
    assert reply == {
        "batchItemFailures": [{"itemIdentifier": "6a1a8e5c-1f2b-4c3d-9e4f-5a6b7c8d9e0f"}]
    }


def test_sns_trigger() -> None:
    app = FakeApp()
    object_created_handler(factory(app))(load_event("sns_s3"), None)
    assert app.objects == [
        ("s3://openimm-photos/photos/b été.png", 2048, "fedcba9876543210fedcba9876543210")
    ]


def test_eventbridge_s3() -> None:
    app = FakeApp()
    object_created_handler(factory(app))(load_event("eventbridge_s3"), None)
    assert app.objects == [(S3_URI, 122539, "0123456789abcdef0123456789abcdef")]


def test_eventbridge_oss() -> None:
    app = FakeApp()
    object_created_handler(factory(app))(load_event("fc_eventbridge_oss"), None)
    assert app.objects == [(OSS_URI, 122539, "688A7BF4F233DC9C88A80BF985AB7329")]


def test_oss_notification_through_mns() -> None:
    envelope = load_json("fc_eventbridge_mns")
    oss = load_event("fc_oss_trigger")
    envelope["data"]["messageBody"] = base64.b64encode(oss).decode()
    app = FakeApp()
    object_created_handler(factory(app))([envelope], None)
    assert app.objects == [(OSS_URI, 122539, "688A7BF4F233DC9C88A80BF985AB7329")]


def test_removed_objects_are_ignored() -> None:
    oss = load_json("fc_oss_trigger")
    oss["events"][0]["eventName"] = "ObjectRemoved:DeleteObject"
    s3 = load_json("s3_put")
    s3["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    del s3["Records"][0]["s3"]["object"]["size"]
    app = FakeApp()
    handler = object_created_handler(factory(app))
    handler(json.dumps(oss).encode(), None)
    handler(s3, None)
    assert app.objects == []


def test_quoted_etag_and_string_size() -> None:
    event = load_json("s3_put")
    event["Records"][0]["s3"]["object"].update(eTag='"abc"', size="42")
    app = FakeApp()
    object_created_handler(factory(app))(event, None)
    assert app.objects[0][1:] == (42, "abc")


def test_many_objects_one_failure_tries_all_then_fails() -> None:
    event = load_json("fc_oss_trigger")
    first = event["events"][0]
    event["events"] = [
        {**first, "oss": {**first["oss"], "object": {**first["oss"]["object"], "key": f"k{i}.jpg"}}}
        for i in range(3)
    ]
    app = FakeApp(fail_uri=lambda uri: uri.endswith("k1.jpg"))
    with pytest.raises(BatchProcessingError):
        object_created_handler(factory(app))(json.dumps(event).encode(), None)
    assert [uri[-6:] for uri, _, _ in app.objects] == ["k0.jpg", "k1.jpg", "k2.jpg"]


def test_single_object_failure_propagates() -> None:
    app = FakeApp(fail_uri=lambda uri: True)
    with pytest.raises(RuntimeError, match="indexing"):
        object_created_handler(factory(app))(load_event("fc_oss_trigger"), None)


@pytest.mark.parametrize(
    "event", [b"{}", {"Records": []}, {"hello": 1}, load_json("fc_direct"), b"not json"]
)
def test_unrecognised_object_event(event: Any) -> None:
    with pytest.raises(ValueError):
        object_created_handler(factory(FakeApp()))(event, None)


def test_object_event_without_key_fails() -> None:
    event = load_json("s3_put")
    event["Records"][0]["s3"]["object"]["key"] = ""
    with pytest.raises(ValueError):
        object_created_handler(factory(FakeApp()))(event, None)


# ---------------------------------------------------------------- deployed functions


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


FUNCTIONS_DIR = ROOT / "functions"
OPERATION_FOLDERS = {_snake(operation): operation for operation in OPERATIONS}
STAGE_FOLDERS = {f"stage_{stage}": stage for stage in STAGES}
EXPECTED_FOLDERS = {
    *OPERATION_FOLDERS,
    *STAGE_FOLDERS,
    "api",
    "on_object_created",
    "stage_dead_letter",
}
# FC 3.0 function names: a letter or underscore, then letters, digits, '_' or '-', <= 64.
FC_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


def _function_folders() -> list[str]:
    return sorted(path.parent.name for path in FUNCTIONS_DIR.glob("*/index.py"))


def _load_index(folder: str) -> ModuleType:
    return _load_module(f"openimm_function_{folder}", FUNCTIONS_DIR / folder / "index.py")


def test_function_folders_are_complete_and_valid_names() -> None:
    assert set(_function_folders()) == EXPECTED_FOLDERS
    assert OPERATION_FOLDERS["create_figure_clustering_task"] == "CreateFigureClusteringTask"
    for folder in EXPECTED_FOLDERS:
        assert FC_FUNCTION_NAME.match(f"openimm-prod-{folder}"), folder


@pytest.mark.parametrize("folder", sorted(EXPECTED_FOLDERS))
def test_function_index_exposes_a_thin_handler(folder: str) -> None:
    source = (FUNCTIONS_DIR / folder / "index.py").read_text(encoding="utf-8")
    assert len([line for line in source.splitlines() if line.strip()]) <= 4
    module = _load_index(folder)
    assert callable(module.handler)


@pytest.fixture
def bootstrapped(monkeypatch: pytest.MonkeyPatch) -> FakeApp:
    """A fake `openimm.bootstrap` whose application() is a FakeApp, as deployed code sees it."""
    app = FakeApp()
    module = types.ModuleType("openimm.bootstrap")
    module.application = lambda: app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "openimm.bootstrap", module)
    return app


@pytest.mark.parametrize("folder", sorted(OPERATION_FOLDERS))
def test_operation_function_serves_its_operation(folder: str, bootstrapped: FakeApp) -> None:
    reply = _load_index(folder).handler(dict(BODY), LambdaContext())
    assert bootstrapped.calls == [(OPERATION_FOLDERS[folder], BODY, DIRECT_REQUEST_ID)]
    assert reply["RequestId"] == DIRECT_REQUEST_ID


def test_api_function_routes(bootstrapped: FakeApp) -> None:
    handler = _load_index("api").handler
    handler(http_event("fc_http", path="/GetFigureCluster"), None)
    handler(http_event("lambda_http", path="/", query={"Action": "BatchGetFigureCluster"}), None)
    assert [call[0] for call in bootstrapped.calls] == ["GetFigureCluster", "BatchGetFigureCluster"]


@pytest.mark.parametrize("folder", sorted(STAGE_FOLDERS))
def test_stage_function_runs_its_stage(folder: str, bootstrapped: FakeApp) -> None:
    _load_index(folder).handler(load_event("sqs_stage_batch"), LambdaContext())
    assert [stage for stage, _ in bootstrapped.stages] == [STAGE_FOLDERS[folder]] * 3


def test_dead_letter_function_gives_up(bootstrapped: FakeApp) -> None:
    event = dead_letters("openimm-embed-dlq", STAGE_BODIES)
    _load_index("stage_dead_letter").handler(event, LambdaContext())
    assert [(stage, body) for stage, body, _ in bootstrapped.given_up] == [
        ("embed", body) for body in STAGE_BODIES
    ]


def test_object_function(bootstrapped: FakeApp) -> None:
    _load_index("on_object_created").handler(load_event("fc_oss_trigger"), FcContext())
    assert bootstrapped.objects == [(OSS_URI, 122539, "688A7BF4F233DC9C88A80BF985AB7329")]


def test_every_recorded_event_is_valid_json() -> None:
    for name in fixtures.event_names():
        data = load_json(name)
        assert isinstance(data, (dict, list)), name
        assert isinstance(load_event(name), bytes if name.startswith("fc_") else (dict, list))
    assert str(uuid.UUID(DIRECT_REQUEST_ID)) == DIRECT_REQUEST_ID


# ---------------------------------------------------------------- IMM's RPC style (the SDKs)

V2_PROTOCOL = {
    "Version": "2020-09-30",
    "Format": "JSON",
    "Timestamp": "2026-12-05T10:00:00Z",
    "SignatureNonce": "n-1",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureVersion": "1.0",
    "AccessKeyId": "LTAI-test",
    "Signature": "c2lnbmF0dXJl",
    "RegionId": "cn-hangzhou",
}


def _rpc_event(kind: str, query: dict[str, str], headers: dict[str, str], body: str = "") -> Any:
    event = http_event(kind, path="/", query=query, raw_body=body)
    data = json.loads(event) if kind == "fc_http" else event
    given = {name.lower() for name in headers}
    kept = {k: v for k, v in data.get("headers", {}).items() if k.lower() not in given}
    data["headers"] = {**kept, **headers}
    return json.dumps(data).encode() if kind == "fc_http" else data


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_acs3_requests_name_the_operation_in_a_header_and_pass_parameters_in_the_query(
    kind: str,
) -> None:
    app = FakeApp()
    query = {"ProjectName": "demo", "Tags": '{"team":"a"}', "MaxResults": "10"}
    headers = {"x-acs-action": "CreateProject", "x-acs-version": "2020-09-30"}
    reply = http_router_handler(factory(app))(_rpc_event(kind, query, headers), None)
    assert parse_reply(kind, reply)[0] == 200
    # text as sent: the request models decode JSON text and lax numbers themselves
    assert app.calls[0][:2] == ("CreateProject", query)


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_v2_requests_drop_the_protocol_parameters_and_read_a_form_body(kind: str) -> None:
    app = FakeApp()
    query = {"Action": "CreateProject", **V2_PROTOCOL, "ProjectName": "demo"}
    form = {"content-type": "application/x-www-form-urlencoded"}
    event = _rpc_event(kind, query, form, body="Description=%E5%AE%B6&Action=GetTask")
    reply = http_router_handler(factory(app))(event, None)
    assert parse_reply(kind, reply)[0] == 200
    assert app.calls[0][:2] == ("CreateProject", {"ProjectName": "demo", "Description": "家"})


@pytest.mark.parametrize(
    ("query", "headers", "body", "message"),
    [
        ({"ProjectName": "demo"}, {"x-acs-version": "2017-09-06"}, "", "2017-09-06"),
        ({"ProjectName": "demo"}, {"content-type": "text/plain"}, "ProjectName=x", "form"),
        ({"ProjectName": "demo"}, {"content-type": "application/x-www-form-urlencoded"},
         "%ZZ=1&&", "not valid"),
    ],
)  # fmt: skip
def test_malformed_rpc_requests_are_imm_errors(
    query: dict[str, str], headers: dict[str, str], body: str, message: str
) -> None:
    app = FakeApp()
    event = _rpc_event("lambda_http", query, {"x-acs-action": "CreateProject", **headers}, body)
    reply = http_router_handler(factory(app))(event, None)
    error = assert_error("lambda_http", reply, 400, "InvalidArgument")
    assert message in error["Message"] and not app.calls


# ---------------------------------------------------------------- the OpenAPI document


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_the_router_serves_a_valid_openapi_document(kind: str) -> None:
    from openapi_spec_validator import validate

    app = FakeApp()
    event = http_event(kind, None, path="/openapi.json", method="GET", raw_body="")
    status, document, headers = parse_reply(kind, http_router_handler(factory(app))(event, None))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    validate(document)
    assert document["openapi"] == "3.1.0" and app.calls == []
    assert sorted(path.strip("/") for path in document["paths"]) == sorted(OPERATIONS)
    schemas = document["components"]["schemas"]
    get_task = schemas["GetTaskRequest"]
    assert {"ProjectName", "TaskId", "TaskType"} <= set(get_task["properties"])
    assert "ProjectName" in get_task["required"]
    assert "FigureClusters" in schemas["QueryFigureClustersResponse"]["properties"]
