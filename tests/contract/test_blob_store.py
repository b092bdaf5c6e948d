"""What every BlobStore adapter must do (plus folder-only rules at the end)."""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from aws_sandbox import SANDBOX, fresh_name
from openimm.adapters.aws.s3_blobs import S3BlobStore
from openimm.adapters.local import FolderBlobStore
from openimm.ports import (
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    ForeignObject,
    InvalidUri,
    PortError,
    StorageUnavailable,
    parse_blob_uri,
)


def test_write_read_head(blob_store: BlobStore, bucket: str) -> None:
    uri = f"oss://{bucket}/photos/2024/a.jpg"
    blob_store.write(uri, b"jpeg bytes", content_type="image/jpeg")
    assert blob_store.read(uri) == b"jpeg bytes"
    info = blob_store.head(uri)
    assert info.uri == uri
    assert info.size == len(b"jpeg bytes")
    assert info.etag
    assert info.modified > 0
    assert info.content_type == "image/jpeg"


def test_overwrite_changes_content_and_etag(blob_store: BlobStore, bucket: str) -> None:
    uri = f"oss://{bucket}/x.bin"
    blob_store.write(uri, b"one")
    first = blob_store.head(uri).etag
    blob_store.write(uri, b"two!")
    assert blob_store.read(uri) == b"two!"
    assert blob_store.head(uri).etag != first


def test_outputs_never_replace_an_object_openimm_did_not_write(
    blob_store: BlobStore, bucket: str
) -> None:
    theirs, ours = f"oss://{bucket}/photo.jpg", f"oss://{bucket}/results/r.json"
    blob_store.write(theirs, b"a photo")
    with pytest.raises(ForeignObject):
        blob_store.check_output(theirs)
    with pytest.raises(ForeignObject):
        blob_store.write_output(theirs, b"{}")
    assert blob_store.read(theirs) == b"a photo"
    assert not blob_store.head(theirs).openimm_output
    blob_store.check_output(ours)  # absent: may be written
    blob_store.write_output(ours, b'{"n": 1}', content_type="application/json")
    assert blob_store.head(ours).openimm_output
    blob_store.write_output(ours, b'{"n": 2}')  # its own output: may be replaced
    assert blob_store.read(ours) == b'{"n": 2}'
    blob_store.write(ours, b"the user's edit")  # rewritten by someone else: theirs now
    assert not blob_store.head(ours).openimm_output
    with pytest.raises(ForeignObject):
        blob_store.write_output(ours, b'{"n": 3}')
    assert blob_store.read(ours) == b"the user's edit"


def test_missing_object(blob_store: BlobStore, bucket: str) -> None:
    with pytest.raises(BlobNotFound):
        blob_store.read(f"oss://{bucket}/nope")
    with pytest.raises(BlobNotFound):
        blob_store.head(f"oss://{bucket}/no/such/thing.jpg")
    blob_store.write(f"oss://{bucket}/folder/file", b"x")
    with pytest.raises(BlobNotFound):
        blob_store.read(f"oss://{bucket}/folder")


def test_max_bytes(blob_store: BlobStore, bucket: str) -> None:
    uri = f"oss://{bucket}/big"
    blob_store.write(uri, b"0123456789")
    assert blob_store.read(uri, max_bytes=10) == b"0123456789"
    with pytest.raises(BlobTooLarge):
        blob_store.read(uri, max_bytes=9)


def test_local_file_has_the_bytes_and_is_cleaned_up(blob_store: BlobStore, bucket: str) -> None:
    # over several streamed chunks, so the pieces are joined in order
    data = os.urandom(3 * 1024 * 1024 + 17)
    uri = f"oss://{bucket}/videos/clip.mp4"
    blob_store.write(uri, data)
    with blob_store.local_file(uri, max_bytes=len(data)) as path:
        assert path.read_bytes() == data
        assert path.suffix == ".mp4"
    if blob_store._own_file(parse_blob_uri(uri)) is None:
        assert not path.exists()  # a streamed copy is deleted; an own file stays
    assert blob_store.read(uri) == data


def test_local_file_refuses_too_large_and_missing(blob_store: BlobStore, bucket: str) -> None:
    uri = f"oss://{bucket}/big.mov"
    blob_store.write(uri, b"0123456789")
    with pytest.raises(BlobTooLarge), blob_store.local_file(uri, max_bytes=9):
        pytest.fail("a file over the limit must not be handed out")
    with pytest.raises(BlobNotFound), blob_store.local_file(f"oss://{bucket}/absent.mp4"):
        pytest.fail("an absent object has no file")


def test_read_mapped_has_the_bytes_and_outlives_a_replacement(
    blob_store: BlobStore, bucket: str
) -> None:
    uri = f"oss://{bucket}/work/segment.seg"
    data = os.urandom(1024 * 1024 + 5)
    blob_store.write(uri, data)
    mapped = blob_store.read_mapped(uri)
    assert mapped[:] == data
    # replaced whole (and removed) while mapped: the map keeps the bytes it was given
    blob_store.write(uri, b"other")
    blob_store.remove(uri)
    assert mapped[:] == data
    with pytest.raises(BlobNotFound):
        blob_store.read_mapped(uri)
    blob_store.write(uri, b"")
    assert blob_store.read_mapped(uri)[:] == b""


def test_local_file_counts_the_bytes_it_streams(
    blob_store: BlobStore, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the size read first may be stale: an object that grew is refused while copying, or,
    # read in place, by the size of the file handed out
    uri = f"oss://{bucket}/grown.mp4"
    blob_store.write(uri, b"x" * 100)
    stale = replace(blob_store.head(uri), size=10)
    monkeypatch.setattr(blob_store, "_head", lambda _uri: stale)
    with pytest.raises(BlobTooLarge), blob_store.local_file(uri, max_bytes=50):
        pytest.fail("the copy must stop at the limit")


def test_remove(blob_store: BlobStore, bucket: str) -> None:
    uri = f"oss://{bucket}/a/b/c.txt"
    blob_store.write(uri, b"x")
    blob_store.remove(uri)
    blob_store.remove(uri)
    with pytest.raises(BlobNotFound):
        blob_store.head(uri)
    assert list(blob_store.list(f"oss://{bucket}/")) == []


def test_list_in_key_order_with_prefix(blob_store: BlobStore, bucket: str) -> None:
    keys = ["a/b", "a-c", "a0", "a/d/e", "b.jpg", "ab/x", "a/b2"]
    for key in keys:
        blob_store.write(f"oss://{bucket}/{key}", key.encode())
    everything = [i.uri for i in blob_store.list(f"oss://{bucket}/")]
    assert everything == [f"oss://{bucket}/{k}" for k in sorted(keys)]
    under_a = [i.uri.split("/", 3)[3] for i in blob_store.list(f"oss://{bucket}/a/")]
    assert under_a == ["a/b", "a/b2", "a/d/e"]
    starting_a = [i.uri.split("/", 3)[3] for i in blob_store.list(f"oss://{bucket}/a")]
    assert starting_a == sorted(k for k in keys if k.startswith("a"))
    partial = [i.uri.split("/", 3)[3] for i in blob_store.list(f"oss://{bucket}/a/b")]
    assert partial == ["a/b", "a/b2"]
    info = next(iter(blob_store.list(f"oss://{bucket}/b.jpg")))
    assert (info.size, info.content_type) == (len(b"b.jpg"), "image/jpeg")
    assert list(blob_store.list(f"oss://{bucket}/zzz")) == []


@pytest.mark.parametrize(
    "key",
    ["../x", "a/../../x", "/x", "a//x", "./x", "a/./x", "a/..", "nul\x00byte", "back\\slash", ""],
)
def test_keys_that_could_escape_are_refused(blob_store: BlobStore, bucket: str, key: str) -> None:
    uri = f"oss://{bucket}/{key}"
    with pytest.raises(InvalidUri):
        blob_store.write(uri, b"x")
    with pytest.raises(InvalidUri):
        blob_store.read(uri)
    with pytest.raises(InvalidUri):
        blob_store.head(uri)
    with pytest.raises(InvalidUri):
        blob_store.remove(uri)


@pytest.mark.parametrize(
    "uri",
    ["", "oss:/b/x", "http://bucket/x", "oss://B-UPPER/x", "oss://ab/x", "oss://bucket", "x\n"],
)
def test_malformed_uris_are_refused(blob_store: BlobStore, uri: str) -> None:
    with pytest.raises(InvalidUri):
        blob_store.read(uri)


def test_trailing_newline_is_not_ignored(blob_store: BlobStore, bucket: str) -> None:
    with pytest.raises(InvalidUri):
        blob_store.write(f"oss://{bucket}/x\n", b"x")
    with pytest.raises(InvalidUri):
        blob_store.write(f"oss://{bucket}\n/x", b"x")


def test_percent_dots_are_a_literal_key(blob_store: BlobStore, bucket: str) -> None:
    uri = f"oss://{bucket}/%2e%2e/x"
    blob_store.write(uri, b"literal")
    assert blob_store.read(uri) == b"literal"
    assert [i.uri for i in blob_store.list(f"oss://{bucket}/")] == [uri]


@pytest.mark.parametrize("prefix", ["../", "a/../", "a/..", "x\x00", "a\\b"])
def test_list_refuses_escaping_prefixes(blob_store: BlobStore, bucket: str, prefix: str) -> None:
    with pytest.raises(InvalidUri):
        list(blob_store.list(f"oss://{bucket}/{prefix}"))


def test_s3_scheme_is_accepted(blob_store: BlobStore, bucket: str) -> None:
    blob_store.write(f"s3://{bucket}/k", b"v")
    assert blob_store.read(f"s3://{bucket}/k") == b"v"
    assert [i.uri for i in blob_store.list(f"s3://{bucket}/")] == [f"s3://{bucket}/k"]


# ---------------------------------------------------------------- folder only


def test_folder_layout_and_atomic_write(tmp_path: Path) -> None:
    store = FolderBlobStore(tmp_path / "root")
    store.write("oss://my-bucket/a/b.txt", b"hello")
    path = tmp_path / "root" / "my-bucket" / "a" / "b.txt"
    assert path.read_bytes() == b"hello"
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.txt"]  # no temp files left
    assert store.head("oss://my-bucket/a/b.txt").etag == hashlib.md5(b"hello").hexdigest()


def test_folder_percent_dots_stay_inside(tmp_path: Path) -> None:
    store = FolderBlobStore(tmp_path / "root")
    store.write("oss://bkt/%2e%2e/x", b"x")
    assert (tmp_path / "root" / "bkt" / "%2e%2e" / "x").exists()
    assert not (tmp_path / "root" / "x").exists()


def test_folder_refuses_symlinks_out_of_a_bucket(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    bucket = tmp_path / "root" / "bkt"
    bucket.mkdir(parents=True)
    (bucket / "link").symlink_to(outside, target_is_directory=True)
    (bucket / "file-link").symlink_to(outside / "secret")
    (bucket / "ok").write_bytes(b"ok")
    store = FolderBlobStore(tmp_path / "root")
    for key in ("link/secret", "file-link"):
        with pytest.raises(InvalidUri):
            store.read(f"oss://bkt/{key}")
    with pytest.raises(InvalidUri):
        store.write("oss://bkt/link/new", b"x")
    assert not (outside / "new").exists()
    assert [i.uri for i in store.list("oss://bkt/")] == ["oss://bkt/ok"]
    assert list(store.list("oss://bkt/link/")) == []


def test_folder_mounted_bucket(tmp_path: Path) -> None:
    photos = tmp_path / "my photos"
    (photos / "2023" / "trip").mkdir(parents=True)
    (photos / "2023" / "trip" / "IMG_1.JPG").write_bytes(b"1")
    (photos / "2023" / "a.png").write_bytes(b"22")
    (photos / "top.heic").write_bytes(b"333")
    (photos / ".openimm-abc.tmp").write_bytes(b"half written")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "linked.jpg").write_bytes(b"4444")
    (photos / "album").symlink_to(elsewhere, target_is_directory=True)
    # A link back up the tree is not followed: the listing would never end.
    (photos / "2023" / "loop").symlink_to(photos, target_is_directory=True)
    store = FolderBlobStore(tmp_path / "root", mounts={"photos": photos})

    listed = {i.uri: i.size for i in store.list("oss://photos/")}
    assert list(listed) == sorted(listed)
    assert listed == {
        "oss://photos/2023/a.png": 2,
        "oss://photos/2023/trip/IMG_1.JPG": 1,
        "oss://photos/album/linked.jpg": 4,
        "oss://photos/top.heic": 3,
    }
    assert store.read("oss://photos/album/linked.jpg") == b"4444"
    assert [i.uri for i in store.list("oss://photos/2023/t")] == [
        "oss://photos/2023/trip/IMG_1.JPG"
    ]
    assert not (tmp_path / "root" / "photos").exists()
    with pytest.raises(ValueError):
        FolderBlobStore(tmp_path / "root", mounts={"other": tmp_path / "missing"})


def test_folder_skips_names_no_uri_can_address(tmp_path: Path) -> None:
    bucket = tmp_path / "root" / "bkt"
    bucket.mkdir(parents=True)
    (bucket / "back\\slash").write_bytes(b"x")
    (bucket / "new\nline").write_bytes(b"x")
    (bucket / "fine").write_bytes(b"x")
    if os.name == "posix":
        (bucket / os.fsdecode(b"bad\xff")).write_bytes(b"x")
    store = FolderBlobStore(tmp_path / "root")
    assert [i.uri for i in store.list("oss://bkt/")] == ["oss://bkt/fine"]


def test_folder_file_where_a_folder_is_needed(tmp_path: Path) -> None:
    store = FolderBlobStore(tmp_path / "root")
    store.write("oss://bkt/a", b"file")
    with pytest.raises(PortError):
        store.write("oss://bkt/a/b", b"x")
    assert store.read("oss://bkt/a") == b"file"


def test_folder_write_on_a_full_disk_is_storage_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FolderBlobStore(tmp_path / "root")

    def full(*args: object, **kwargs: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "open", full)
    with pytest.raises(StorageUnavailable, match="No space left"):
        store.write("oss://bkt/a", b"x")
    assert not list((tmp_path / "root").rglob("*.tmp"))


# ---------------------------------------------------------------- S3 only


def test_s3_output_put_is_conditional() -> None:
    """An object put between write_output's check and its PUT is never overwritten."""
    client = SANDBOX.client("s3")
    bucket = fresh_name("bucket")
    client.create_bucket(Bucket=bucket)
    store = S3BlobStore(client)
    uri = parse_blob_uri(f"s3://{bucket}/r.json")
    store.write(str(uri), b"arrived meanwhile")
    with pytest.raises(ForeignObject):
        store._write_output(uri, b"{}", None, None)  # checked absent: If-None-Match *
    store.write_output(str(uri) + ".out", b"1")
    ours = parse_blob_uri(str(uri) + ".out")
    stale = store.head(str(ours))
    store.write_output(str(ours), b"2")
    with pytest.raises(ForeignObject):
        store._write_output(ours, b"3", None, stale)  # replaced meanwhile: If-Match fails
    assert store.read(str(uri)) == b"arrived meanwhile"
    assert store.read(str(ours)) == b"2"
