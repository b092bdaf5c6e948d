"""GET /thumbnails: crops of a dataset's own files only, cached, with IMM's errors."""

from __future__ import annotations

import io
import json
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from openimm.gallery.thumbnails import Thumbnails
from openimm.gallery.web import gallery_wsgi

if TYPE_CHECKING:
    from conftest import Album


def _get(album: Album, cache: Path, query: dict[str, str], **headers: str) -> Any:
    app = gallery_wsgi(_no_api, lambda: Thumbnails(album.app, cache), None)
    replies: list[Any] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/thumbnails",
        "QUERY_STRING": urllib.parse.urlencode(query),
        **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
    }
    body = b"".join(app(environ, lambda status, hdrs: replies.append((status, dict(hdrs)))))
    status, reply_headers = replies[0]
    return int(status.split()[0]), reply_headers, body


def _no_api(environ: Any, start_response: Any) -> list[bytes]:
    raise AssertionError("the gallery's routes never reach the operations")


def _face(album: Album) -> tuple[str, str]:
    (uri,) = album.add("red", 1)
    album.drain()
    return uri, str(album.file(uri)["Figures"][0]["FigureId"])


def test_a_face_crop_is_a_square_jpeg_cached_with_an_etag(album: Album, tmp_path: Path) -> None:
    uri, figure = _face(album)
    query = {**album.dataset, "URI": uri, "FigureId": figure, "Size": "64"}
    status, headers, body = _get(album, tmp_path / "cache", query)
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert "private" in headers["Cache-Control"]
    image = Image.open(io.BytesIO(body))
    assert image.format == "JPEG" and max(image.size) <= 64
    assert image.size[0] == image.size[1]
    assert len(list((tmp_path / "cache").rglob("*.jpg"))) == 1
    again = _get(album, tmp_path / "cache", query, if_none_match=headers["ETag"])
    assert again[0] == 304 and again[2] == b""


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("oss://other-bucket/red0.png", "ResourceNotFound"),  # not a file of the dataset
        ("oss://photos/../table.db", "InvalidArgument"),
        ("oss://openimm-work/x.png", "Forbidden.RAM"),
        ("/etc/passwd", "InvalidArgument"),
    ],
)
def test_nothing_outside_the_dataset_is_served(
    album: Album, tmp_path: Path, uri: str, code: str
) -> None:
    _face(album)
    status, headers, body = _get(album, tmp_path, {**album.dataset, "URI": uri})
    assert status >= 400 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["Code"] == code


def test_a_face_of_another_file_is_not_found(album: Album, tmp_path: Path) -> None:
    uri, _ = _face(album)
    (other,) = album.add("lime", 1)
    album.drain()
    figure = str(album.file(other)["Figures"][0]["FigureId"])
    status, _, body = _get(album, tmp_path, {**album.dataset, "URI": uri, "FigureId": figure})
    assert status == 404 and json.loads(body)["Code"] == "ResourceNotFound"
