"""Handler factories: each returns the `handler(event, context)` a deployed function exposes.

Handlers stay thin: work out which trigger sent the event, decode it, call the
application, and encode the reply in the form that trigger expects. Every request
error becomes an IMM error body through `openimm.api.wire.error_response`.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from openimm.access.signatures import HttpRequest
from openimm.api.wire import dumps, error_response, new_request_id
from openimm.errors import ImmError, InvalidArgument, InvalidOperation, MissingParameter
from openimm.platform import fc_http, lambda_http
from openimm.platform._base import as_event, loads
from openimm.platform.application import STAGES, AppFactory, Application, default_application
from openimm.platform.direct import DirectRequest, context_request_id
from openimm.platform.fc_http import FcHttpEvent
from openimm.platform.lambda_http import LambdaHttpEvent
from openimm.platform.lambda_logging import with_request_logging
from openimm.platform.oss_trigger import OssTriggerEvent, oss_cloud_event
from openimm.platform.queue_events import (
    MnsCloudEvent,
    is_sqs_batch,
    mns_batch,
    process_all,
    process_sqs_batch,
    queue_name,
    receive_count,
)
from openimm.platform.rpc_request import is_rpc_request, rpc_parameters
from openimm.platform.s3_records import (
    S3Event,
    S3EventBridgeEvent,
    SnsEvent,
    is_test_event,
    records_in_message,
)
from openimm.ports import DEAD_LETTER_REASON, WrappedLetter
from openimm.version import openimm_version

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

_log = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Any]

OPERATIONS = (
    "CreateProject",
    "CreateDataset",
    "IndexFileMeta",
    "BatchIndexFileMeta",
    "DeleteFileMeta",
    "GetFileMeta",
    "UpdateFileMeta",
    "CreateFigureClusteringTask",
    "GetFigureCluster",
    "BatchGetFigureCluster",
    "QueryFigureClusters",
    "UpdateFigureCluster",
    "CreateFigureClustersMergingTask",
    "SearchImageFigureCluster",
    "CreateSimilarImageClusteringTask",
    "QuerySimilarImageClusters",
    "CreateFacesSearchingTask",
    "DetectImageFaces",
    "CompareImageFaces",
    "GetTask",
    "ListTasks",
    "SimpleQuery",
    "ListDatasets",
)

MAX_BODY_BYTES = 1024 * 1024
NOT_AN_OBJECT = "body must be a JSON object"
NOT_UTF8 = "body is not valid UTF-8 text"


class MethodNotAllowed(InvalidOperation):
    """Only POST carries an IMM request; the HTTP status says so."""

    http_status = 405


# ---------------------------------------------------------------- requests


class _HttpRequest(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> Mapping[str, str]: ...
    @property
    def body(self) -> str | None: ...
    @property
    def is_base64_encoded(self) -> bool: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def host(self) -> str | None: ...
    def header(self, name: str) -> str | None: ...


_Reply = Callable[[int, str, Mapping[str, str]], dict[str, Any]]


@dataclass(frozen=True)
class _Read:
    params: dict[str, Any]
    names: list[str]
    segment: str | None
    signed: HttpRequest | None


@dataclass(frozen=True)
class _Inbound:
    """One request, whatever carried it, and how to answer in the carrier's form."""

    request_id: str
    http: _HttpRequest | None
    http_reply: _Reply | None
    direct: Any = None

    @property
    def host_id(self) -> str:
        """The host the client addressed (IMM's HostId), or the function's for a direct call."""
        host = self.http.host if self.http is not None else None
        return (host or "openimm")[:255]

    def read(self) -> _Read:
        """The parameters, the operation names the request gives, its path segment, and
        the request as its signature sees it (None for a direct invocation)."""
        if self.http is None:
            if not isinstance(self.direct, Mapping):
                raise InvalidArgument(NOT_AN_OBJECT)
            request = DirectRequest(self.direct)
            return _Read(request.params(), _names(None, request.action), None, None)
        if self.http.method != "POST":
            raise MethodNotAllowed(f"method {self.http.method or '?'} is not allowed; use POST")
        raw = _body_bytes(self.http)
        headers = {k.lower(): v for k, v in self.http.headers.items() if isinstance(v, str)}
        if "host" not in headers and self.http.host:
            # a trigger that keeps the Host header out of its event still names the domain
            # the client called, which is what the client signed as `host`
            headers["host"] = self.http.host
        query = {k: v for k, v in self.http.query.items() if isinstance(v, str)}
        signed = HttpRequest(self.http.method, self.http.path, query, headers, raw)
        action = self.http.header("x-acs-action")
        content_type = self.http.header("content-type")
        if is_rpc_request(action, self.http.query, content_type, raw):
            version = self.http.header("x-acs-version")
            params = rpc_parameters(self.http.query, raw, content_type, version)
            return _Read(params, _names(action, self.http.query.get("Action")), None, signed)
        data = _json_object(raw)
        body_action = data.pop("Action", None)
        query_action = self.http.query.get("Action")
        segment = next((part for part in reversed(self.http.path.split("/")) if part), None)
        return _Read(data, _names(query_action, body_action), segment, signed)

    def answer(self, status: int, payload: dict[str, Any], headers: Mapping[str, str]) -> Any:
        """The reply in the carrier's form."""
        if self.http_reply is None:
            # Serialise now so an unencodable reply fails here, as an IMM error,
            # rather than in the runtime after the handler returned.
            dumps(payload)
            return payload
        all_headers = {
            "Content-Type": "application/json; charset=utf-8",
            "x-acs-request-id": self.request_id,
            **headers,
        }
        return self.http_reply(status, dumps(payload), all_headers)


def _names(*candidates: Any) -> list[str]:
    return [name for name in candidates if isinstance(name, str) and name]


def _inbound(event: Any, context: Any) -> _Inbound:
    try:
        data = as_event(event)
    except (ValueError, RecursionError):
        data = None
    if FcHttpEvent.matches(data):
        fc = FcHttpEvent(data)
        return _Inbound(fc.request_id or new_request_id(), fc, fc_http.reply)
    if LambdaHttpEvent.matches(data):
        aws = LambdaHttpEvent(data)
        return _Inbound(aws.request_id or new_request_id(), aws, lambda_http.reply)
    return _Inbound(context_request_id(context) or new_request_id(), None, None, data)


def _body_bytes(request: _HttpRequest) -> bytes:
    text = request.body or ""
    if request.is_base64_encoded:
        # Base64 is 4/3 of the payload: refuse oversized bodies before decoding them.
        if len(text) > (MAX_BODY_BYTES + 2) // 3 * 4 + 4:
            raise InvalidArgument(f"body exceeds {MAX_BODY_BYTES} bytes")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument("body is not valid Base64") from None
    else:
        raw = text.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidArgument(f"body exceeds {MAX_BODY_BYTES} bytes")
    return raw


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = loads(raw)
    except UnicodeDecodeError:
        raise InvalidArgument(NOT_UTF8) from None
    except (ValueError, RecursionError):
        raise InvalidArgument(NOT_AN_OBJECT) from None
    if not isinstance(data, dict):
        raise InvalidArgument(NOT_AN_OBJECT)
    return data


def _serve(
    event: Any,
    context: Any,
    factory: AppFactory,
    choose: Callable[[list[str], str | None], str],
    *,
    documented: bool = False,
) -> Any:
    inbound = _inbound(event, context)
    if documented and _asks_for_document(inbound.http):
        from openimm.api.openapi import openapi_document

        return inbound.answer(200, openapi_document(openimm_version()), {})
    try:
        request = inbound.read()
        operation = choose(request.names, request.segment)
        result = factory().call(operation, request.params, inbound.request_id, request.signed)
        if not isinstance(result, dict):
            raise TypeError(f"{operation} returned {type(result).__name__}, not a dict")
        payload = {"RequestId": inbound.request_id}
        payload.update((key, value) for key, value in result.items() if key != "RequestId")
        return inbound.answer(200, payload, {})
    except Exception as exc:
        status, error = error_response(exc, inbound.request_id, inbound.host_id)
        headers = {"Allow": "POST"} if isinstance(exc, MethodNotAllowed) else {}
        return inbound.answer(status, error, headers)


def _asks_for_document(http: _HttpRequest | None) -> bool:
    # The contract is public: no signature is needed to read it.
    return http is not None and http.method == "GET" and http.path.endswith("/openapi.json")


# ---------------------------------------------------------------- operations


def operation_handler(operation: str, app: AppFactory | None = None) -> Handler:
    """A handler serving one IMM operation over FC HTTP, Lambda HTTP or direct invocation."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}")
    factory = app or default_application

    def choose(names: list[str], _segment: str | None) -> str:
        # Each function has its own URL, so the path means nothing; an explicit Action
        # naming another operation is a misdirected request.
        for name in names:
            if name != operation:
                raise InvalidOperation(f"this endpoint serves {operation}, not {name}")
        return operation

    def handler(event: Any, context: Any) -> Any:
        return _serve(event, context, factory, choose)

    return with_request_logging(handler)


def http_router_handler(
    app: AppFactory | None = None, operations: Collection[str] = OPERATIONS
) -> Handler:
    """A handler serving every operation: `POST /<Operation>` or `?Action=<Operation>`."""
    factory = app or default_application
    known = frozenset(operations)
    unknown = known.difference(OPERATIONS)
    if unknown:
        raise ValueError(f"unknown operations {sorted(unknown)}")

    def choose(names: list[str], segment: str | None) -> str:
        # An explicit Action wins over the path, so `POST /?Action=X` and
        # `POST /prefix/X` both work behind any path prefix.
        if len(set(names)) > 1:
            raise InvalidArgument(f"conflicting Action values {sorted(set(names))}")
        name = names[0] if names else segment
        if not name:
            raise MissingParameter("Action is mandatory: POST /<Operation> or ?Action=")
        if name not in known:
            raise InvalidOperation(f"unknown operation {name!r}")
        return name

    def handler(event: Any, context: Any) -> Any:
        return _serve(event, context, factory, choose, documented=True)

    return with_request_logging(handler)


# ---------------------------------------------------------------- stages


def stage_handler(stage: str, app: AppFactory | None = None) -> Handler:
    """A handler for a queue-triggered pipeline stage (direct JSON, MNS, SQS batches)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    factory = app or default_application

    def handler(event: Any, context: Any) -> Any:
        data = as_event(event)
        application = factory()

        def run(message: Any) -> None:
            _run_stage(application, stage, message)

        def from_sqs(record: SQSRecord) -> None:
            message = loads(record.body)
            try:
                run(message)
            except Exception as exc:
                if receive_count(record) < application.max_deliveries:
                    raise
                # the last delivery the queue allows: give up here, with the reason, so
                # the task ends now (a crash instead leaves it to the dead-letter queue)
                _log.exception(
                    "%s message %s failed on its last delivery", stage, record.message_id
                )
                application.give_up(stage, dict(message), f"{type(exc).__name__}: {exc}")

        if is_sqs_batch(data):
            return process_sqs_batch(data, from_sqs)
        batch = mns_batch(data)
        if batch is not None:
            process_all(batch, lambda message: run(message.json_body()), "stage message")
            return None
        if isinstance(data, Mapping) and "Records" in data:
            raise ValueError("unrecognised batch event for a stage function")
        run(data)
        return None

    return with_request_logging(handler)


def _run_stage(application: Application, stage: str, message: Any) -> None:
    if not isinstance(message, Mapping):
        raise InvalidArgument("a stage message must be a JSON object")
    named = message.get("stage")
    if named is not None and named != stage:
        # Retrying cannot fix a message sent to the wrong stage; it ends in the DLQ.
        raise InvalidArgument(f"message for stage {named!r} reached stage {stage!r}")
    application.run_stage(stage, dict(message))


def dead_letter_handler(app: AppFactory | None = None) -> Handler:
    """A handler for the stages' dead-letter queues: fails each message's file or task.

    A message lands there when its stage did not finish on any delivery the queue
    allows: a timeout or a crashed instance (SQS's stages give up on errors themselves),
    or any failure behind an MNS trigger, which cannot tell a stage its last delivery.
    Nothing else would end its task. The stage is the one whose queue the letter came
    from (`<prefix><stage>-dlq`); the reason is the letter's, else the file's last error.
    """
    factory = app or default_application

    def handler(event: Any, context: Any) -> Any:
        data = as_event(event)
        application = factory()

        def from_sqs(record: SQSRecord) -> None:
            attribute = record.message_attributes[DEAD_LETTER_REASON]
            reason = attribute.string_value if attribute is not None else None
            _give_up(application, queue_name(record.event_source_arn), record.body, reason)

        if is_sqs_batch(data):
            return process_sqs_batch(data, from_sqs)
        batch = mns_batch(data)
        if batch is not None:
            process_all(batch, lambda letter: _give_up_mns(application, letter), "dead letter")
            return None
        raise ValueError("unrecognised dead-letter event")

    return with_request_logging(handler)


def _give_up(application: Application, queue: str, raw: Any, reason: str | None) -> None:
    stage = stage_of_queue(queue)
    try:
        body = loads(raw) if isinstance(raw, (str, bytes)) else raw
    except ValueError:
        body = None
    if stage is None or not isinstance(body, Mapping):
        # Nothing names a file or task to fail; retrying would not change that, and the
        # letter stays in the logs.
        _log.error("dead letter from queue %r names no stage message: %.500r", queue, raw)
        return
    why = reason or (
        f"the {stage} stage did not finish in any delivery the queue allows "
        "(it timed out, or its instance crashed)"
    )
    try:
        application.give_up(stage, dict(body), why)
    except ImmError as exc:
        if exc.http_status >= 500:
            raise
        _log.error("dead letter from queue %r dropped: %s", queue, exc.message)


def _give_up_mns(application: Application, letter: MnsCloudEvent) -> None:
    original = letter.json_body()
    wrapped = WrappedLetter.from_json(original)
    if wrapped is not None:  # a letter the queue adapter wrote, with its reason
        _give_up(application, wrapped.queue, wrapped.body, wrapped.reason or None)
    elif MnsCloudEvent.matches(original):
        # EventBridge's own dead letter is the event it could not deliver, whose subject
        # names the stage's queue (acs:mns:<region>:<account>:queues/<name>)
        inner = MnsCloudEvent(original)
        _give_up(application, inner.queue, inner.json_body(), None)
    else:
        _give_up(application, letter.queue, original, None)


def stage_of_queue(name: str) -> str | None:
    """The stage whose queue (or its `-dlq`) this is: `<prefix><stage>[-dlq]`."""
    base = name.removesuffix("-dlq")
    found = [stage for stage in STAGES if base.endswith(stage)]
    return found[0] if len(found) == 1 else None


# ---------------------------------------------------------------- objects


class _ObjectEvent(Protocol):
    @property
    def event_name(self) -> str: ...
    @property
    def is_object_created(self) -> bool: ...
    @property
    def bucket_name(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def size(self) -> int | None: ...
    @property
    def etag(self) -> str | None: ...
    @property
    def uri(self) -> str: ...


def object_created_handler(app: AppFactory | None = None) -> Handler:
    """A handler for new objects: FC OSS trigger, S3 events, direct or via SQS/SNS/EventBridge."""
    factory = app or default_application

    def handler(event: Any, context: Any) -> Any:
        data = as_event(event)
        application = factory()

        def notify(item: _ObjectEvent) -> None:
            _notify(application, item)

        def from_sqs(record: SQSRecord) -> None:
            process_all(records_in_message(record.body), notify, "object event")

        if is_sqs_batch(data):
            return process_sqs_batch(data, from_sqs)
        process_all(_object_events(data), notify, "object event")
        return None

    return with_request_logging(handler)


def _notify(application: Application, item: _ObjectEvent) -> None:
    if not item.is_object_created:
        _log.info("ignoring %s event for %s", item.event_name or "unnamed", item.uri)
        return
    if not item.bucket_name or not item.key:
        raise ValueError("object event without bucket or key")
    application.object_created(item.uri, size=item.size, etag=item.etag)


def _object_events(data: Any) -> list[_ObjectEvent]:
    if OssTriggerEvent.matches(data):
        return list(OssTriggerEvent(data).records)
    if S3Event.matches(data):
        return list(S3Event(data).records)
    if SnsEvent.matches(data):
        return [record for text in SnsEvent(data).messages for record in records_in_message(text)]
    if S3EventBridgeEvent.matches(data):
        return [S3EventBridgeEvent(data)]
    single = oss_cloud_event(data)
    if single is not None:
        return [single]
    if isinstance(data, list) and data:
        cloud = [oss_cloud_event(item) for item in data]
        if all(item is not None for item in cloud):
            return [item for item in cloud if item is not None]
    batch = mns_batch(data)
    if batch is not None:
        # OSS event notifications delivered to an MNS queue: the body is the OSS event.
        return [item for message in batch for item in _oss_in_mns(message)]
    if is_test_event(data):
        return []
    raise ValueError("unrecognised object event")


def _oss_in_mns(message: MnsCloudEvent) -> list[_ObjectEvent]:
    body = message.json_body()
    if OssTriggerEvent.matches(body):
        return list(OssTriggerEvent(body).records)
    raise ValueError(f"MNS message {message.message_id} is not an OSS event")
