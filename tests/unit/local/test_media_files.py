"""Which files of a folder `openimm run` indexes, and which it skips with a reason."""

from __future__ import annotations

import os
from pathlib import Path

from openimm.local.media_files import NOT_UTF8, folder_media


def test_media_files_become_uris_relative_to_the_folder(tmp_path: Path) -> None:
    (tmp_path / "2019").mkdir()
    (tmp_path / "2019" / "beach day.JPG").write_bytes(b"x")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    (tmp_path / ".thumbs").mkdir()
    (tmp_path / ".thumbs" / "a.jpg").write_bytes(b"x")

    media = folder_media(tmp_path, "album")

    assert media.uris == ["oss://album/2019/beach day.JPG", "oss://album/clip.mp4"]
    assert media.skipped == []


def test_a_name_that_is_not_utf8_is_skipped_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    # Linux file names are bytes; Python hands the undecodable ones over as surrogates
    (tmp_path / os.fsdecode(b"\xff.jpg")).write_bytes(b"x")
    (tmp_path / os.fsdecode(b"caf\xe9")).mkdir()
    (tmp_path / os.fsdecode(b"caf\xe9") / "b.png").write_bytes(b"x")

    media = folder_media(tmp_path, "album")

    assert media.uris == ["oss://album/a.jpg"]
    assert sorted(f.path for f in media.skipped) == ["\\xff.jpg", "caf\\xe9/b.png"]
    assert all(f.reason == NOT_UTF8 for f in media.skipped)
