"""mounts.json: a run's folder stays readable as its bucket to a later serve."""

from __future__ import annotations

from pathlib import Path

from openimm.bootstrap import Settings, stores
from openimm.local.mount_book import remember_mount, remembered_mounts
from openimm.local.run_summary import gallery_url


def test_a_remembered_mount_is_read_by_the_next_process(tmp_path: Path) -> None:
    photos = tmp_path / "My Photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"jpeg bytes")
    state = tmp_path / "state"
    remember_mount(state, "my-photos", photos)
    remember_mount(state, "other", tmp_path)
    assert remembered_mounts(state) == {"my-photos": photos.resolve(), "other": tmp_path}
    blobs = stores(Settings(data_dir=state)).blobs
    assert blobs.read("oss://my-photos/a.jpg", max_bytes=100) == b"jpeg bytes"


def test_no_or_a_broken_file_remembers_nothing(tmp_path: Path) -> None:
    assert remembered_mounts(tmp_path) == {}
    (tmp_path / "mounts.json").write_text("{not json")
    assert remembered_mounts(tmp_path) == {}


def test_the_gallery_url_names_the_dataset() -> None:
    assert gallery_url("album", "my photos") == (
        "http://127.0.0.1:8080/?project=album&dataset=my+photos"
    )
