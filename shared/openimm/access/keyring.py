"""Access keys and what each may touch, read from a keys file or the environment.

The keys file is JSON (README, "Access keys"):

    {"AccessKeys": [{"AccessKeyId": "...", "AccessKeySecret": "...",
                     "Projects": {"album-*": "write"}, "Buckets": {"photos": "read"}}]}

A grant names a project or bucket, or a pattern of them (`*` matches any run of
characters), and a mode: "read", or "write" (which includes read).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

KEYS_FILE_ENV = "OPENIMM_ACCESS_KEYS_FILE"
KEYS_ENV = "OPENIMM_ACCESS_KEYS"


class Mode(IntEnum):
    """What a request does to a project or bucket; a grant of WRITE covers READ."""

    READ = 1
    WRITE = 2


@dataclass(frozen=True)
class Grants:
    """Project and bucket patterns, each with the mode granted."""

    projects: tuple[tuple[str, Mode], ...] = ()
    buckets: tuple[tuple[str, Mode], ...] = ()

    def allows_project(self, name: str, mode: Mode) -> bool:
        """Whether some project grant matching `name` covers `mode`."""
        return _allows(self.projects, name, mode)

    def allows_bucket(self, name: str, mode: Mode) -> bool:
        """Whether some bucket grant matching `name` covers `mode`."""
        return _allows(self.buckets, name, mode)


def _allows(grants: tuple[tuple[str, Mode], ...], name: str, mode: Mode) -> bool:
    return any(
        granted >= mode and fnmatch.fnmatchcase(name, pattern) for pattern, granted in grants
    )


EVERYTHING = Grants(projects=(("*", Mode.WRITE),), buckets=(("*", Mode.WRITE),))


@dataclass(frozen=True)
class AccessKey:
    """One key pair; the secret stays out of reprs and logs."""

    key_id: str
    secret: str = field(repr=False)
    grants: Grants


class Keyring:
    """The configured access keys, by id."""

    def __init__(self, keys: list[AccessKey]) -> None:
        self._keys = {key.key_id: key for key in keys}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key_id: str) -> AccessKey | None:
        """The key with that id, if configured."""
        return self._keys.get(key_id)


# ---------------------------------------------------------------- the file

_Pattern = Annotated[str, Field(min_length=1, max_length=256)]


class _KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_key_id: Annotated[str, Field(alias="AccessKeyId", min_length=1, max_length=128)]
    access_key_secret: Annotated[SecretStr, Field(alias="AccessKeySecret", min_length=8)]
    projects: Annotated[
        dict[_Pattern, Literal["read", "write"]], Field(alias="Projects", default_factory=dict)
    ]
    buckets: Annotated[
        dict[_Pattern, Literal["read", "write"]], Field(alias="Buckets", default_factory=dict)
    ]


class _KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_keys: Annotated[list[_KeyEntry], Field(alias="AccessKeys", min_length=1)]


class KeysFileError(ValueError):
    """The keys file or variable cannot be used; the message says why (never a secret)."""


def parse_keyring(text: str | bytes, origin: str) -> Keyring:
    """A keyring from keys-file JSON; `origin` names it in errors."""
    try:
        parsed = _KeysFile.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise KeysFileError(f"{origin}: {where}: {first['msg']}") from None
    ids = [entry.access_key_id for entry in parsed.access_keys]
    repeated = sorted({key_id for key_id in ids if ids.count(key_id) > 1})
    if repeated:
        raise KeysFileError(f"{origin}: AccessKeyId {repeated[0]!r} appears more than once")
    return Keyring(
        [
            AccessKey(
                entry.access_key_id,
                entry.access_key_secret.get_secret_value(),
                Grants(_modes(entry.projects), _modes(entry.buckets)),
            )
            for entry in parsed.access_keys
        ]
    )


def _modes(grants: Mapping[str, str]) -> tuple[tuple[str, Mode], ...]:
    return tuple((pattern, Mode[mode.upper()]) for pattern, mode in grants.items())


def keyring_from_env(env: Mapping[str, str] | None = None) -> Keyring | None:
    """The keyring the environment configures, or None when it configures none."""
    env = os.environ if env is None else env
    path, text = env.get(KEYS_FILE_ENV), env.get(KEYS_ENV)
    if path and text:
        raise KeysFileError(f"set {KEYS_FILE_ENV} or {KEYS_ENV}, not both")
    if path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise KeysFileError(f"{KEYS_FILE_ENV}: cannot read {path}: {exc.strerror}") from None
        return parse_keyring(data, path)
    if text:
        return parse_keyring(text, KEYS_ENV)
    return None
