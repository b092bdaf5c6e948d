"""What every contract model shares: IMM's key spelling, times, names, URIs, JSON-string params."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "ImmModel",
    "JsonDecoded",
    "Name",
    "NonEmptyStr",
    "OssUri",
    "RequestModel",
    "StringMap",
    "Time",
    "UserData",
    "format_time",
    "imm_name",
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
    model_config = ConfigDict(alias_generator=imm_name, populate_by_name=True, extra="ignore")

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


# ------------------------------------------------------------------ names, data, URIs

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")


def _check_name(value: str) -> str:
    if _NAME.fullmatch(value) is None:
        raise _invalid(
            "must be 1 to 128 characters of letters, digits, hyphens (-) and underscores (_), "
            "and start with a letter or an underscore"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]
"""A ProjectName or DatasetName."""

USER_DATA_MAX_BYTES = 2048


def _check_user_data(value: str) -> str:
    if len(value.encode("utf-8")) > USER_DATA_MAX_BYTES:
        raise _invalid(f"must be at most {USER_DATA_MAX_BYTES} bytes in UTF-8")
    return value


UserData = Annotated[str, AfterValidator(_check_user_data)]

# Structure only; whether the bucket exists or may be read is checked by the blob store.
_OSS_URI = re.compile(r"oss://[a-z0-9][a-z0-9.-]{0,62}/[^/\\\x00][^\x00]*", re.DOTALL)


def _check_oss_uri(value: str) -> str:
    if _OSS_URI.fullmatch(value) is None:
        raise _invalid("must be an OSS URI of the form oss://bucket/object")
    return value


OssUri = Annotated[str, AfterValidator(_check_oss_uri)]


def _check_not_empty(value: str) -> str:
    if not value:
        raise _invalid("must not be empty")
    return value


NonEmptyStr = Annotated[str, AfterValidator(_check_not_empty)]


# ------------------------------------------------------------------ JSON-string parameters


def _from_json(value: Any) -> Any:
    # RPC-style clients send maps and lists as JSON text (Tags='{"a":"b"}'); anything that
    # does not decode is left for the type check to reject with a clean message.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


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


StringMap = Annotated[dict[str, str], BeforeValidator(_string_map)]
"""A string-to-string map (Tags, CustomLabels), also accepted as JSON text."""
