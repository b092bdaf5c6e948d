"""What every contract model shares: IMM's key spelling, times, names, URIs, JSON-string params."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from openimm.api.limits import (
    ID_MAX_CHARS,
    LABEL_KEY_MAX_BYTES,
    LABEL_VALUE_MAX_BYTES,
    LABELS_MAX_ITEMS,
    NAME_MAX_CHARS,
    TEXT_MAX_BYTES,
    TOPIC_NAME_MAX_CHARS,
    URI_MAX_BYTES,
    USER_DATA_MAX_BYTES,
)

__all__ = [
    "Id",
    "ImmModel",
    "JsonDecoded",
    "Name",
    "NonEmptyStr",
    "OssUri",
    "RequestModel",
    "StringMap",
    "Text",
    "Time",
    "TopicName",
    "UserData",
    "format_time",
    "imm_name",
    "lone_surrogate_at",
    "parse_time",
]

# IMM spells these words in capitals inside its PascalCase keys (URI, OSSURI, AgeSD, MNS...).
_ACRONYMS = {
    "uri": "URI",
    "oss": "OSS",
    "exif": "EXIF",
    "sd": "SD",
    "mns": "MNS",
    "mq": "MQ",
    "etag": "ETag",
}

# Error type of every check written here; parse.py shows its message as it is.
CUSTOM_ERROR = "openimm_invalid"


def imm_name(field_name: str) -> str:
    """The IMM key of a snake_case field name: `oss_uri` -> `OSSURI`, `object_id` -> `ObjectId`."""
    return "".join(_ACRONYMS.get(part, part.capitalize()) for part in field_name.split("_"))


def _invalid(reason: str) -> PydanticCustomError:
    return PydanticCustomError(CUSTOM_ERROR, reason)


class ImmModel(BaseModel):
    """Base of every contract model: snake_case in Python, IMM's PascalCase on the wire."""

    # Validation by field name too, so services build responses with Python names.
    model_config = ConfigDict(
        alias_generator=imm_name, populate_by_name=True, extra="ignore", defer_build=True
    )

    def dump(self) -> dict[str, Any]:
        """The wire form: IMM's keys, JSON types, absent values left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class RequestModel(ImmModel):
    """Base of request models (and their nested objects): immutable, nulls count as absent."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        # A JSON null is how many clients leave a parameter out; a required one is then missing.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


# ------------------------------------------------------------------ times

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})"
)


def format_time(epoch_seconds: float) -> str:
    """RFC 3339 in UTC with microseconds, e.g. `2022-01-14T02:10:52.839480+00:00`."""
    # Fixed width so stored strings sort as times; a numeric offset (as IMM writes)
    # also parses with Python 3.10's datetime.fromisoformat.
    moment = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds")


def parse_time(text: str) -> float:
    """Epoch seconds of an RFC 3339 time with an offset (`Z` or `+08:00`, up to 9 decimals)."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset in ("Z", "z"):
        zone = timezone.utc
    else:
        sign = -1 if offset[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    moment = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=zone
    )
    return moment.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def _time_text(value: Any) -> Any:
    # Rows keep epoch seconds; the wire wants text.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_time(value)
    return value


Time = Annotated[str, BeforeValidator(_time_text)]
"""A response time: epoch seconds are formatted with format_time, text is kept."""


def _check_rfc3339(value: str) -> str:
    try:
        parse_time(value)
    except ValueError:
        raise _invalid("must be an RFC 3339 time such as 2022-01-14T10:10:52+08:00") from None
    return value


RequestTime = Annotated[str, AfterValidator(_check_rfc3339)]


# ------------------------------------------------------------------ names, ids, data, URIs


def _check_not_empty(value: str) -> str:
    if not value:
        raise _invalid("must not be empty")
    return value


NonEmptyStr = Annotated[str, AfterValidator(_check_not_empty)]


def _matching(pattern: str, reason: str) -> AfterValidator:
    """A check that the whole value matches `pattern`, else `reason`."""
    compiled = re.compile(pattern, re.DOTALL)

    def check(value: str) -> str:
        if compiled.fullmatch(value) is None:
            raise _invalid(reason)
        return value

    return AfterValidator(check)


def _at_most_bytes(limit: int) -> AfterValidator:
    def check(value: str) -> str:
        if len(value.encode("utf-8")) > limit:
            raise _invalid(f"must be at most {limit} bytes in UTF-8")
        return value

    return AfterValidator(check)


Name = Annotated[
    str,
    _matching(
        rf"[A-Za-z_][A-Za-z0-9_-]{{0,{NAME_MAX_CHARS - 1}}}",
        f"must be 1 to {NAME_MAX_CHARS} characters of letters, digits, hyphens (-) and "
        "underscores (_), and start with a letter or an underscore",
    ),
]
"""A ProjectName or DatasetName."""

Id = Annotated[
    NonEmptyStr,
    _matching(
        rf"[\x21-\x7e]{{1,{ID_MAX_CHARS}}}",
        f"must be 1 to {ID_MAX_CHARS} printable ASCII characters without spaces",
    ),
]
"""An ObjectId, FigureId, TaskId...: the key of a row."""

# What the Topic port publishes to (ports.py); refused here, not when the task ends.
TopicName = Annotated[
    str,
    _matching(
        rf"[A-Za-z0-9_.:-]{{1,{TOPIC_NAME_MAX_CHARS}}}",
        f"must be 1 to {TOPIC_NAME_MAX_CHARS} letters, digits, hyphens (-), "
        "underscores (_), dots (.) and colons (:)",
    ),
]

UserData = Annotated[str, _at_most_bytes(USER_DATA_MAX_BYTES)]
Text = Annotated[str, _at_most_bytes(TEXT_MAX_BYTES)]
"""Free text kept on a row (CustomId, Title, a cluster's Name) or matched against one."""

# Structure only; whether the bucket exists or may be read is checked by the blob store.
def _not_a_boolean(value: Any) -> Any:
    # pydantic's lax mode reads true as 1: a count given as a boolean is a client's mistake
    if isinstance(value, bool):
        raise _invalid("must be an integer")
    return value


Count = Annotated[int, BeforeValidator(_not_a_boolean)]
"""An integer parameter (MaxResults, ...): a number or its text, never a boolean."""

OssUri = Annotated[
    str,
    _matching(
        r"oss://[a-z0-9][a-z0-9.-]{0,62}/[^/\\\x00][^\x00]*",
        "must be an OSS URI of the form oss://bucket/object",
    ),
    _at_most_bytes(URI_MAX_BYTES),
]


# ------------------------------------------------------------------ text that is not Unicode

# A lone UTF-16 surrogate (JSON allows the escape "\ud800") is no character: UTF-8 cannot
# encode it, so no store, log or reply could hold it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_at(value: Any) -> tuple[str | int, ...] | None:
    """Where decoded JSON first holds a lone surrogate (in a key or a string), or None."""
    # Iterative: a body may nest as deep as its parser allowed.
    pending: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while pending:
        path, node = pending.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return path
        elif isinstance(node, dict):
            for key in node:
                if isinstance(key, str) and _SURROGATE.search(key):
                    return (*path, key)
            pending.extend(((*path, key), item) for key, item in reversed(node.items()))
        elif isinstance(node, list):
            items = list(enumerate(node))
            pending.extend(((*path, index), item) for index, item in reversed(items))
    return None


NOT_UNICODE = "is not valid Unicode text: it holds a lone surrogate (\\ud800 to \\udfff)"


# ------------------------------------------------------------------ JSON-string parameters


def _from_json(value: Any) -> Any:
    # RPC-style clients send maps and lists as JSON text (Tags='{"a":"b"}'); anything that
    # does not decode is left for the type check to reject with a clean message.
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except (ValueError, RecursionError):
        return value
    if lone_surrogate_at(decoded) is not None:
        raise _invalid(NOT_UNICODE)
    return decoded


JsonDecoded = BeforeValidator(_from_json)
"""Marks a map/list/object parameter that may arrive as a JSON string."""


def _string_map(value: Any) -> Any:
    value = _from_json(value)
    if not isinstance(value, dict):
        return value
    # IMM keeps label and tag values as strings; scalars are taken in their JSON spelling.
    return {
        key: json.dumps(item) if isinstance(item, (bool, int, float)) else item
        for key, item in value.items()
        if item is not None
    }


def _check_string_map(value: dict[str, str]) -> dict[str, str]:
    if len(value) > LABELS_MAX_ITEMS:
        raise _invalid(f"must have at most {LABELS_MAX_ITEMS} entries")
    for key, item in value.items():
        if len(key.encode("utf-8")) > LABEL_KEY_MAX_BYTES:
            raise _invalid(f"must have keys of at most {LABEL_KEY_MAX_BYTES} bytes in UTF-8")
        if len(item.encode("utf-8")) > LABEL_VALUE_MAX_BYTES:
            raise _invalid(f"must have values of at most {LABEL_VALUE_MAX_BYTES} bytes in UTF-8")
    return value


StringMap = Annotated[
    dict[str, str], BeforeValidator(_string_map), AfterValidator(_check_string_map)
]
"""A string-to-string map (Tags, CustomLabels), also accepted as JSON text."""
