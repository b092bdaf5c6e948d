"""The page's own files, shipped as package data and read once per process."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class StaticFile:
    data: bytes
    content_type: str
    etag: str


# bounded: a name asked for that is not there is kept too, and names are the client's choice
@lru_cache(maxsize=64)
def static_file(name: str) -> StaticFile | None:
    """The file `name` of gallery/static (a plain name: no folders, so no way out)."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or "\\" in name or name.startswith(".") or suffix not in _TYPES:
        return None
    entry = resources.files("openimm.gallery").joinpath("static", name)
    if not entry.is_file():
        return None
    data = entry.read_bytes()
    return StaticFile(data, _TYPES[suffix], hashlib.sha256(data).hexdigest()[:32])
