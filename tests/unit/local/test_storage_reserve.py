"""The space kept back for recording a full disk: released when it fills, kept again after."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import pytest

from openimm.local import storage_reserve
from openimm.local.storage_reserve import StorageReserve

Usage = namedtuple("Usage", "total used free")


def test_kept_released_and_kept_again(tmp_path: Path) -> None:
    reserve = StorageReserve(tmp_path / ".reserve", size=1024 * 1024)
    assert reserve.keep() and reserve.held
    assert (tmp_path / ".reserve").stat().st_size == 1024 * 1024
    assert reserve.release() and not reserve.held
    assert not (tmp_path / ".reserve").exists()
    assert not reserve.release()  # released once
    assert reserve.keep() and reserve.held


def test_not_taken_back_until_the_disk_has_it_twice_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 1024 * 1024
    reserve = StorageReserve(tmp_path / ".reserve", size=size)
    free = {"bytes": size + 1}  # the space just released, and little more
    monkeypatch.setattr(
        storage_reserve.shutil, "disk_usage", lambda path: Usage(0, 0, free["bytes"])
    )
    assert not reserve.keep() and not (tmp_path / ".reserve").exists()
    free["bytes"] = 2 * size
    assert reserve.keep()
