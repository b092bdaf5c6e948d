"""The OSS adapter's exact HTTP requests, and the service model's documented answers."""

from __future__ import annotations

import oss2
import pytest
import requests

from aliyun_models.oss_service import OssService
from openimm.adapters.aliyun.oss_blobs import OssBlobStore
from openimm.ports import BlobNotFound, ForeignObject, PortError, StorageUnavailable

ENDPOINT = "https://oss-cn-hangzhou.aliyuncs.com"
URI = "oss://photos/results/r.json"


@pytest.fixture
def service() -> OssService:
    return OssService(["photos"])


@pytest.fixture
def store(service: OssService) -> OssBlobStore:
    auth = oss2.StsAuth("key-id", "secret", "security-token")
    return OssBlobStore(auth, ENDPOINT, session=oss2.Session(adapter=service))


def test_an_output_is_created_only_where_nothing_is(
    service: OssService, store: OssBlobStore
) -> None:
    store.write_output(URI, b"{}", content_type="application/json")
    head, put = service.sent[-2:]
    # oss2 quotes the whole key, slashes too
    assert head.method == "HEAD"
    assert head.url == "https://photos.oss-cn-hangzhou.aliyuncs.com/results%2Fr.json"
    assert put.method == "PUT"
    assert put.headers["x-oss-forbid-overwrite"] == "true"
    assert put.headers["x-oss-meta-openimm-output"] == "1"
    assert put.headers["Content-Type"] == "application/json"
    assert put.headers["x-oss-security-token"] == "security-token"
    assert "If-Match" not in put.headers


def test_an_output_is_replaced_only_at_the_etag_read(
    service: OssService, store: OssBlobStore
) -> None:
    store.write_output(URI, b"{}")
    etag = store.head(URI).etag
    store.write_output(URI, b'{"n": 2}')
    put = service.sent[-1]
    assert put.headers["If-Match"] == f'"{etag}"'
    assert "x-oss-forbid-overwrite" not in put.headers


def test_a_foreign_object_appearing_meanwhile_is_not_replaced(
    service: OssService, store: OssBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_head = store._head

    # absent at the check, written by the user before OpenIMM's PUT arrives
    def absent_then_written(uri: object) -> object:
        service_store = OssBlobStore(oss2.Auth("u", "s"), ENDPOINT, oss2.Session(adapter=service))
        service_store.write(str(uri), b"the user's file")
        raise BlobNotFound(str(uri))

    monkeypatch.setattr(store, "_head", absent_then_written)
    with pytest.raises(ForeignObject):
        store.write_output(URI, b"{}")
    monkeypatch.setattr(store, "_head", real_head)
    assert store.read(URI) == b"the user's file"
    assert service.sent[-2].headers["x-oss-forbid-overwrite"] == "true"


def test_the_service_answers_conditions_with_its_codes(service: OssService) -> None:
    session = oss2.Session(adapter=service)
    bucket = oss2.Bucket(oss2.Auth("k", "s"), ENDPOINT, "photos", session=session)
    bucket.put_object("k", b"1")
    with pytest.raises(oss2.exceptions.ServerError) as raised:
        bucket.put_object("k", b"2", headers={"x-oss-forbid-overwrite": "true"})
    assert (raised.value.status, raised.value.code) == (409, "FileAlreadyExists")
    with pytest.raises(oss2.exceptions.ServerError) as raised:
        bucket.put_object("k", b"2", headers={"If-Match": '"0000"'})
    assert (raised.value.status, raised.value.code) == (412, "PreconditionFailed")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object("nope")


def test_listing_pages_on_the_continuation_token(service: OssService, store: OssBlobStore) -> None:
    for i in range(150):
        store.write(f"oss://photos/p/{i:03d}.jpg", b"x")
    service.sent.clear()
    listed = [info.uri for info in store.list("oss://photos/p/")]
    assert listed == [f"oss://photos/p/{i:03d}.jpg" for i in range(150)]
    pages = [r for r in service.sent if r.method == "GET"]
    assert len(pages) == 2
    assert "list-type=2" in (pages[0].url or "")
    assert "continuation-token=p%2F099.jpg" in (pages[1].url or "")


def test_sdk_errors_become_port_errors(service: OssService, store: OssBlobStore) -> None:
    with pytest.raises(BlobNotFound):
        store.read("oss://no-such-bucket/x")
    with pytest.raises(BlobNotFound):
        store.head("oss://photos/missing")

    def down(request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        raise requests.ConnectionError("connection refused")

    service.send = down  # type: ignore[method-assign]
    with pytest.raises(StorageUnavailable):
        store.read("oss://photos/x")
    unsigned = OssBlobStore(oss2.AnonymousAuth(), ENDPOINT, oss2.Session(adapter=OssService([])))
    with pytest.raises(PortError):
        unsigned.write("oss://photos/x", b"x")
