"""Malformed requests against every operation: no reply may be a 5xx.

    python bench/fuzz.py              # the per-operation summary table
    python bench/fuzz.py --seed 7     # another draw of the random bodies

An in-process OpenIMM on a temporary state directory (local adapters; the colour
stand-ins of tests/standins.py in place of the vision models, since the fuzz is about
the API's edge) is sent, through the HTTP router as FC's HTTP trigger delivers requests,
at least 200 malformed bodies per operation: bodies that are not JSON, not UTF-8, too
deep or too large; then, from a valid body per operation, every field (and every field
the operation knows but the body leaves out) replaced by a value of the wrong type, an
over-long or lone-surrogate string, a path trick, a huge list; each required field left
out; unknown fields; the same values in IMM's RPC style (query parameters, JSON text).

One row per operation: bodies sent, the statuses and codes seen, and the 5xx count.
tests/functional/test_fuzz.py runs the same bodies in CI and fails on any 5xx or on an
error body that is not `{RequestId, Code, Message}` with a plain message.
"""

from __future__ import annotations

import argparse
import base64
import copy
import io
import json
import logging
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from openimm.api.limits import MAX_BATCH
from openimm.api.parse import OPERATIONS as REQUEST_MODELS
from openimm.api.wire import INTERNAL_MESSAGE
from openimm.bootstrap import Settings
from openimm.platform.entry import MAX_BODY_BYTES, OPERATIONS

PROJECT, DATASET = "fuzz", "set"
PHOTO, OTHER_PHOTO = "oss://photos/red0.png", "oss://photos/blue0.png"
DOOMED = "oss://photos/doomed.png"  # DeleteFileMeta's
# An object whose URI is just under the key limit and grows sixfold as escaped JSON:
# a hundred of them are more than a queue message holds.
LONG_PHOTO = "oss://photos/" + "/".join(["照片" * 40] * 4) + ".png"
# Solid colours are people to the stand-ins; three photos each make two clusters.
PEOPLE = {"red": (200, 30, 30), "blue": (30, 30, 200)}

Handler = Callable[[Any, Any], Any]
VALID = "valid"


# ---------------------------------------------------------------- the valid bodies


@dataclass(frozen=True)
class Fixtures:
    """Ids of things that exist, so that mutations start from a request that works."""

    cluster_id: str
    other_cluster_id: str
    figure_id: str
    task_id: str


def valid_bodies(f: Fixtures) -> dict[str, dict[str, Any]]:
    """A body per operation that the application accepts."""
    dataset = {"ProjectName": PROJECT, "DatasetName": DATASET}
    return {
        "CreateProject": {"ProjectName": "fuzz-new", "Description": "made by the fuzz"},
        "CreateDataset": {"ProjectName": PROJECT, "DatasetName": "made", "Description": "d"},
        "IndexFileMeta": {**dataset, "File": {"URI": PHOTO, "CustomId": "c1"}},
        "BatchIndexFileMeta": {
            **dataset,
            "Files": [{"URI": PHOTO, "CustomLabels": {"k": "v"}}, {"URI": OTHER_PHOTO}],
            "UserData": "u",
        },
        "DeleteFileMeta": {**dataset, "URI": DOOMED},
        "GetFileMeta": {**dataset, "URI": PHOTO},
        "UpdateFileMeta": {
            **dataset,
            "File": {
                "URI": PHOTO,
                "CustomId": "c2",
                "CustomLabels": {"a": "b"},
                "Figures": [{"FigureId": f.figure_id, "FigureClusterId": f.cluster_id}],
            },
        },
        "CreateFigureClusteringTask": {**dataset, "Tags": {"t": "1"}, "UserData": "u"},
        "GetFigureCluster": {**dataset, "ObjectId": f.cluster_id},
        "BatchGetFigureCluster": {**dataset, "ObjectIds": [f.cluster_id, f.other_cluster_id]},
        "QueryFigureClusters": {
            **dataset,
            "MaxResults": 10,
            "Sort": "FaceCount",
            "Order": "desc",
            "CreateTimeRange": {"Start": "2020-01-01T00:00:00Z"},
        },
        "UpdateFigureCluster": {
            **dataset,
            "FigureCluster": {"ObjectId": f.cluster_id, "Name": "someone", "CustomLabels": {}},
        },
        "CreateFigureClustersMergingTask": {
            **dataset,
            "From": f.other_cluster_id,
            "To": f.cluster_id,
        },
        "SearchImageFigureCluster": {**dataset, "SourceURI": PHOTO},
        "CreateSimilarImageClusteringTask": {**dataset, "UserData": "u"},
        "QuerySimilarImageClusters": {**dataset, "MaxResults": 5},
        "CreateFacesSearchingTask": {**dataset, "Sources": [{"URI": PHOTO}], "MaxResult": 3},
        "DetectImageFaces": {"ProjectName": PROJECT, "SourceURI": PHOTO},
        "CompareImageFaces": {
            "ProjectName": PROJECT,
            "Source": {"URI1": PHOTO, "URI2": OTHER_PHOTO},
        },
        "GetTask": {"ProjectName": PROJECT, "TaskType": "FaceClustering", "TaskId": f.task_id},
        "ListTasks": {"ProjectName": PROJECT, "MaxResults": 10, "TaskTypes": ["FaceClustering"]},
        "ListDatasets": {"ProjectName": PROJECT, "MaxResults": 5, "Prefix": "d"},
        "SimpleQuery": {
            **dataset,
            "MaxResults": 5,
            "Query": {"Field": "Figures.FigureClusterId", "Operation": "eq", "Value": f.cluster_id},
        },
    }


# ---------------------------------------------------------------- the malformed values


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


# Values of the wrong type, or of the right type but out of every range.
WRONG_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    -0.0,
    2**31,
    2**63,
    10**30,
    -(10**30),
    1e308,
    "",
    " ",
    "\t\n",
    "null",
    "true",
    "-1",
    "NaN",
    "Infinity",
    "1e999",
    "9" * 5000,
    "\ud800",
    "a\udfffb",
    "\x00",
    "a\x00b",
    "😀",
    "x" * 300,
    "x" * 3000,
    "é" * 1500,
    "x" * 70000,
    [],
    [None],
    [1, 2],
    ["a"],
    [[[]]],
    {},
    {"a": 1},
    {"\ud800": "x"},
    {"k" * 300: "v" * 3000},
    {str(i): str(i) for i in range(300)},
    _nested(60),
    "{",
    "[1,",
    '{"a":',
    "[" * 5000 + "]" * 5000,
    '{"URI":"\\ud800"}',
    '["\\udc00"]',
]

# Strings that try to leave a bucket, name another scheme, or break a key.
URI_TRICKS: list[str] = [
    "oss://photos/../x.png",
    "oss://photos/a/../../x.png",
    "oss://photos/./red.png",
    "oss://photos//red.png",
    "oss://photos/",
    "oss:///red.png",
    "oss://",
    "oss:/photos/red.png",
    "file:///etc/passwd",
    "/etc/passwd",
    "../../etc/passwd",
    "C:\\Windows\\win.ini",
    "oss://photos/a%00b.png",
    "oss://photos/a\x00b.png",
    "oss://photos/a\\..\\b.png",
    "oss://photos/red.png\n",
    " oss://photos/red.png",
    "OSS://photos/red.png",
    "oss://PHOTOS/red.png",
    "oss://p/red.png",
    "oss://" + "b" * 64 + "/x.png",
    "oss://photos/" + "k" * 1100,
    "oss://photos/" + "é" * 400,
    "oss://photos/" + "k" * 1010,
    "oss://photos/\ud800.png",
    "oss://photos/missing.png",
    "oss://nobucket/red.png",
    "s3://photos/red.png",
    "http://example.com/red.png",
    "pds://domains/d/drives/1/files/f/revisions/1",
]

# Whole bodies that are not a JSON object in UTF-8.
RAW_BODIES: list[tuple[str, str | bytes]] = [
    ("empty body", ""),
    ("blank body", "  \n"),
    ("null", "null"),
    ("array", "[]"),
    ("number", "1"),
    ("string", '"CreateProject"'),
    ("true", "true"),
    ("truncated", '{"ProjectName": "fuzz"'),
    ("trailing garbage", '{"ProjectName": "fuzz"} x'),
    ("single quotes", "{'ProjectName': 'fuzz'}"),
    ("NaN literal", '{"ProjectName": NaN}'),
    ("Infinity literal", '{"MaxResults": Infinity}'),
    ("huge exponent", '{"MaxResults": 1e400}'),
    ("huge integer", '{"MaxResults": ' + "9" * 5000 + "}"),
    ("deep arrays", "[" * 100000 + "]" * 100000),
    ("deep objects", '{"a":' * 50000 + "1" + "}" * 50000),
    ("deep in a field", '{"ProjectName":' + "[" * 3000 + "]" * 3000 + "}"),
    ("lone surrogate escape in a key", '{"\\ud800": 1}'),
    ("lone surrogate escape", '{"ProjectName": "\\ud800"}'),
    ("lone low surrogate escape", '{"ProjectName": "a\\udc00"}'),
    ("raw lone surrogate", '{"ProjectName": "\ud800"}'),
    ("NUL escape", '{"ProjectName": "\\u0000"}'),
    ("invalid UTF-8", b'{"ProjectName": "\xff\xfe"}'),
    ("UTF-8 of a surrogate", b'{"ProjectName": "\xed\xa0\x80"}'),
    ("overlong UTF-8", b'{"ProjectName": "\xc0\xaf"}'),
    ("truncated UTF-8", b'{"ProjectName": "\xe4\xb8"}'),
    ("UTF-16", '{"ProjectName": "fuzz"}'.encode("utf-16")),
    ("latin-1", '{"ProjectName": "caf\xe9"}'.encode("latin-1")),
    ("BOM", b'\xef\xbb\xbf{"ProjectName": "fuzz"}'),
    ("oversized", '{"ProjectName": "' + "x" * (MAX_BODY_BYTES + 10) + '"}'),
    ("duplicate keys", '{"ProjectName": "a", "ProjectName": "\\ud800"}'),
]


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One request: a label saying what is wrong with it, and the trigger event."""

    label: str
    event: dict[str, Any]


def http_event(
    operation: str,
    body: str | bytes,
    *,
    query: dict[str, str] | None = None,
    content_type: str = "application/json",
    path: str | None = None,
) -> dict[str, Any]:
    """An FC 3.0 HTTP trigger event; bytes that are not UTF-8 go Base64, as FC sends them."""
    encoded = isinstance(body, bytes)
    text = base64.b64encode(body).decode() if isinstance(body, bytes) else body
    route = f"/{operation}" if path is None else path
    return {
        "version": "v1",
        "rawPath": route,
        "body": text,
        "isBase64Encoded": encoded,
        "headers": {"Content-Type": content_type},
        "queryParameters": query or {},
        "requestContext": {
            "requestId": "fuzz",
            "http": {"method": "POST", "path": route},
        },
    }


def _json(body: Any) -> str:
    # allow_nan: the fuzz also sends what strict clients would refuse to write
    return json.dumps(body, ensure_ascii=False)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place inside a body: object members and list items, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _replace(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    node: Any = changed
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return changed


def _remove(body: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    node: Any = changed
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return changed


def _spell(path: tuple[Any, ...]) -> str:
    return ".".join(str(step + 1) if isinstance(step, int) else step for step in path)


def _rpc_text(value: Any) -> str:
    # RPC-style parameters are text: strings as they are, the rest as JSON text
    return value if isinstance(value, str) else json.dumps(value)


def cases(operation: str, valid: dict[str, Any], rng: random.Random) -> list[Case]:
    """The malformed requests for one operation, in a fixed order for a seed."""
    out: list[Case] = []

    def add(label: str, body: Any) -> None:
        out.append(Case(label, http_event(operation, _json(body))))

    for label, raw in RAW_BODIES:
        out.append(Case(label, http_event(operation, raw)))
    for length in (1, 7, 40):
        garbage = bytes(rng.randrange(256) for _ in range(length))
        out.append(Case(f"{length} random bytes", http_event(operation, garbage)))

    add(VALID, valid)
    known = [alias for alias in _aliases(operation) if alias not in valid]
    paths = list(_paths(valid)) + [(alias,) for alias in known]
    for path in paths:
        for value in WRONG_VALUES:
            add(f"{_spell(path)} = {_short(value)}", _replace(valid, path, value))
    for path in [p for p in paths if p[0] in known or isinstance(_at(valid, p), str)]:
        for trick in URI_TRICKS:
            add(f"{_spell(path)} = {_short(trick)}", _replace(valid, path, trick))
    for path in list(_paths(valid)):
        add(f"without {_spell(path)}", _remove(valid, path))
    for path in [p for p in _paths(valid) if isinstance(_at(valid, p), list)]:
        item = _at(valid, path)[0]
        add(f"{_spell(path)} x {MAX_BATCH + 1}", _replace(valid, path, [item] * (MAX_BATCH + 1)))
        add(f"{_spell(path)} x 5000", _replace(valid, path, [item] * 5000))
        add(f"{_spell(path)} good then bad", _replace(valid, path, [item, _bad_twin(item)]))
        if isinstance(item, dict) and "URI" in item:
            long_items = [{**item, "URI": LONG_PHOTO}] * MAX_BATCH
            add(f"{_spell(path)} x {MAX_BATCH} long URIs", _replace(valid, path, long_items))
    add("unknown field", {**valid, "Unknown": "x"})
    add("unknown fields with odd values", {**valid, "\ud800": 1, "": None, "x" * 2000: [1]})
    add("every field null", dict.fromkeys(valid))
    add("lowercase keys", {key.lower(): value for key, value in valid.items()})
    for value in ("\ud800", "[" * 5000, "NaN", "1e999", "{", "9" * 5000, "x" * 3000):
        for name in list(valid) + known[:2]:
            params = {key: _rpc_text(item) for key, item in valid.items()}
            params.update(Action=operation, **{name: value})
            out.append(
                Case(
                    f"RPC {name} = {_short(value)}",
                    http_event(operation, "", query=params, path="/"),
                )
            )
    return out


def _aliases(operation: str) -> list[str]:
    model = REQUEST_MODELS[operation]
    return [info.alias or name for name, info in model.model_fields.items()]


def _at(body: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        body = body[step]
    return body


def _bad_twin(item: Any) -> Any:
    """The same kind of batch item, made invalid: a path trick for a file, else a surrogate."""
    if isinstance(item, dict) and "URI" in item:
        return {**item, "URI": "oss://photos/../red0.png"}
    if isinstance(item, dict):
        return {**item, "ObjectId": "\ud800"}
    return "\ud800"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} chars)"


# ---------------------------------------------------------------- replies


@dataclass
class Tally:
    """What one operation answered."""

    bodies: int = 0
    valid_status: int | None = None
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)


def reply_problem(status: int, body_text: Any) -> tuple[str | None, str | None]:
    """(the IMM code, what is wrong with the reply or None) of one HTTP reply."""
    if not isinstance(body_text, str):
        return None, "the reply body is not text"
    try:
        body_text.encode("utf-8")
        payload = json.loads(body_text)
    except (UnicodeEncodeError, ValueError):
        return None, "the reply body is not JSON in UTF-8"
    if status == 200:
        return None, None
    if not isinstance(payload, dict) or not {"RequestId", "Code", "Message"} <= set(payload):
        return None, f"the error body is not {{RequestId, Code, Message}}: {body_text[:200]}"
    code, message = payload["Code"], payload["Message"]
    if status >= 500:
        return code, f"{status} {code}: {message}"
    if not isinstance(message, str) or not message.strip() or message == INTERNAL_MESSAGE:
        return code, f"no plain message: {message!r}"
    leaks = ("object at 0x", "Traceback", "Input should", "pydantic", "type=")
    if len(message) > 2000 or any(leak in message for leak in leaks):
        return code, f"the message is not plain: {message[:200]}"
    return code, None


class _Escapes(logging.Handler):
    """Keeps the exceptions the handler logged, to say what lay behind a 5xx."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.caught: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.caught.append(record.exc_info[1])


def run(handler: Handler, bodies: dict[str, dict[str, Any]], seed: int) -> dict[str, Tally]:
    """Send every operation's malformed requests; what each answered."""
    rng = random.Random(seed)
    tallies: dict[str, Tally] = {}
    escapes = _Escapes()
    wire_log = logging.getLogger("openimm.api.wire")
    wire_log.addHandler(escapes)
    # the replies are the subject here, not the service's log of them
    propagate, wire_log.propagate = wire_log.propagate, False
    try:
        for operation in OPERATIONS:
            tally = tallies[operation] = Tally()
            for case in cases(operation, bodies[operation], rng):
                escapes.caught.clear()
                reply = handler(case.event, None)
                status = reply["statusCode"]
                code, problem = reply_problem(status, reply["body"])
                tally.bodies += 1
                if case.label == VALID:
                    tally.valid_status = status
                tally.statuses[status] += 1
                tally.codes[code or "-"] += 1
                if problem:
                    behind = "".join(f" ({type(e).__name__}: {e})"[:300] for e in escapes.caught)
                    tally.problems.append(f"{operation} [{case.label}]: {problem}{behind}")
    finally:
        wire_log.removeHandler(escapes)
        wire_log.propagate = propagate
    return tallies


def table(tallies: dict[str, Tally]) -> str:
    """The summary: one Markdown row per operation, and a total."""
    rows = [
        "| operation | bodies | statuses | codes | 5xx |",
        "|---|---:|---|---|---:|",
    ]
    for operation, tally in tallies.items():
        statuses = " ".join(f"{s}: {n}" for s, n in sorted(tally.statuses.items()))
        codes = " ".join(f"{c}: {n}" for c, n in sorted(tally.codes.items()) if c != "-")
        rows.append(
            f"| {operation} | {tally.bodies} | {statuses} | {codes} | {tally.server_errors} |"
        )
    total = sum(t.bodies for t in tallies.values())
    errors = sum(t.server_errors for t in tallies.values())
    rows.append(f"| **all {len(tallies)}** | {total} | | | {errors} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- the application


def photo(colour: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG: one face to the colour stand-ins."""
    buffer = io.BytesIO()
    Image.new("RGB", (160, 160), colour).save(buffer, "PNG")
    return buffer.getvalue()


def prepare(
    call: Callable[[str, dict[str, Any]], dict[str, Any]],
    write: Callable[[str, bytes], None],
    drain: Callable[[], None],
) -> Fixtures:
    """A project, a dataset, indexed photos and two clusters; the ids the bodies use."""
    dataset = {"ProjectName": PROJECT, "DatasetName": DATASET}
    call("CreateProject", {"ProjectName": PROJECT})
    call("CreateDataset", dataset)
    uris = {f"oss://photos/{name}{i}.png": rgb for name, rgb in PEOPLE.items() for i in range(3)}
    uris[DOOMED] = uris[LONG_PHOTO] = (120, 200, 30)
    for uri, colour in uris.items():
        write(uri, photo(colour))
    call("BatchIndexFileMeta", {**dataset, "Files": [{"URI": uri} for uri in uris]})
    drain()
    task_id = call("CreateFigureClusteringTask", dataset)["TaskId"]
    drain()
    figures = call("GetFileMeta", {**dataset, "URI": PHOTO})["Files"][0]["Figures"]
    other = call("GetFileMeta", {**dataset, "URI": OTHER_PHOTO})["Files"][0]["Figures"]
    return Fixtures(
        cluster_id=figures[0]["FigureClusterId"],
        other_cluster_id=other[0]["FigureClusterId"],
        figure_id=figures[0]["FigureId"],
        task_id=task_id,
    )


def stand_in_settings(data_dir: Path) -> Settings:
    """The clustering thresholds tests/unit/cluster_api uses with the colour stand-ins."""
    return Settings(data_dir=data_dir, join_similarity=0.80, seed_similarity=0.85)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    from openimm.platform.entry import http_router_handler

    with tempfile.TemporaryDirectory() as folder:
        _, app, fixtures = stand_in_service(Path(folder))
        tallies = run(http_router_handler(app=lambda: app), valid_bodies(fixtures), args.seed)
    print(table(tallies))
    problems = [problem for tally in tallies.values() for problem in tally.problems]
    for problem in problems[:50]:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def stand_in_service(folder: Path) -> tuple[Any, Any, Fixtures]:
    """(parts, application, fixtures): OpenIMM on `folder` with the colour stand-ins (and
    the real image embedding of similar images), prepared for the valid bodies."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from openimm.bootstrap import build
    from openimm.vision.shot_analysis import ShotAnalyser
    from standins import colour_parts

    parts = colour_parts(folder)
    parts.shots = ShotAnalyser()
    app = build(stand_in_settings(folder), parts)

    def drain() -> None:
        drain_queues(parts.queue, app.run_stage)

    fixtures = prepare(lambda op, body: app.call(op, body, "fuzz"), parts.blobs.write, drain)
    return parts, app, fixtures


def drain_queues(queue: Any, run_stage: Callable[[str, dict[str, Any]], None]) -> None:
    """Run every queued stage message until the queues are empty."""
    while True:
        progressed = False
        for stage in ("detect", "embed", "cluster", "search"):
            for message in queue.receive(stage, max_messages=10, visibility_timeout=30):
                run_stage(stage, message.body)
                queue.ack(message)
                progressed = True
        if not progressed:
            return


if __name__ == "__main__":
    sys.exit(main())
