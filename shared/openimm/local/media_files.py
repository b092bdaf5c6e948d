"""The photos and videos of a folder that `openimm run` indexes, and the files it skips."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".3gp"}
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
NOT_UTF8 = "its name is not valid UTF-8 text, which an object key must be: rename it"


@dataclass(frozen=True)
class SkippedFile:
    """A media file left out before indexing, and why."""

    path: str  # relative to the folder, undecodable bytes written as \xNN
    reason: str


@dataclass(frozen=True)
class FolderMedia:
    """What a folder holds for one run: the object URIs to index and the skipped files."""

    uris: list[str]
    skipped: list[SkippedFile]


def folder_media(folder: Path, bucket: str) -> FolderMedia:
    """The media files under `folder` (hidden ones left out) as `oss://bucket/<path>` URIs."""
    uris: list[str] = []
    skipped: list[SkippedFile] = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() not in MEDIA_SUFFIXES or not path.is_file():
            continue
        key = relative.as_posix()
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            # Linux hands undecodable bytes over as surrogates; no store or JSON can hold them
            shown = key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            skipped.append(SkippedFile(shown, NOT_UTF8))
            continue
        uris.append(f"oss://{bucket}/{key}")
    return FolderMedia(uris, skipped)
