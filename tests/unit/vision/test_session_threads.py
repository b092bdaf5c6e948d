"""Networks share the cores among the analyses a process runs at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openimm.vision import onnx_session
from openimm.vision.onnx_session import available_cores, share_cores_among, threads


@pytest.fixture(autouse=True)
def _one_analysis(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OPENIMM_THREADS", raising=False)
    yield
    share_cores_among(1)


def test_one_analysis_gets_every_core() -> None:
    share_cores_among(1)
    assert threads() == available_cores()


def test_workers_divide_the_cores_and_each_keeps_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_session, "available_cores", lambda: 2)
    share_cores_among(2)
    assert threads() == 1
    share_cores_among(8)
    assert threads() == 1
    monkeypatch.setattr(onnx_session, "available_cores", lambda: 8)
    share_cores_among(2)
    assert threads() == 4


def test_the_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    share_cores_among(2)
    monkeypatch.setenv("OPENIMM_THREADS", "3")
    assert threads() == 3
    monkeypatch.setenv("OPENIMM_THREADS", "many")
    assert threads() >= 1


def test_handing_freed_heap_back_is_safe_anywhere() -> None:
    # glibc trims; elsewhere the call does nothing rather than fail a session's creation
    onnx_session.return_freed_heap()
