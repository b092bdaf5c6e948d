"""The gallery's crop cache stays under its cap, sending the least recently used out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from openimm.gallery.crop_cache import CropCache


def _etag(number: int) -> str:
    return f"{number:02d}" + "ab" * 15


def test_the_least_recently_used_go_when_the_cap_is_passed(tmp_path: Path) -> None:
    cache = CropCache(tmp_path / "crops", cap_bytes=350)
    for number in range(3):
        cache.write(_etag(number), bytes([number]) * 100)
    # written long ago, in order; then the first is looked at again
    for number in range(3):
        path = tmp_path / "crops" / _etag(number)[:2] / f"{_etag(number)}.jpg"
        os.utime(path, (1000 + number, 1000 + number))
    assert cache.read(_etag(0)) == bytes([0]) * 100
    cache.write(_etag(3), b"\x03" * 100)  # 400 bytes: over the cap
    assert cache.read(_etag(1)) is None  # the least recently used
    assert [cache.read(_etag(n)) is not None for n in (0, 2, 3)] == [True, True, True]
    assert cache.size() == 300


def test_a_cache_found_over_its_cap_is_trimmed_at_the_first_write(tmp_path: Path) -> None:
    big = CropCache(tmp_path / "crops", cap_bytes=10_000)
    for number in range(20):
        big.write(_etag(number), b"x" * 100)
    assert big.size() == 2000
    # a later process with a smaller cap: down to nine tenths of it
    small = CropCache(tmp_path / "crops", cap_bytes=1000)
    small.write(_etag(20), b"y" * 100)
    assert small.size() <= 900
    assert small.read(_etag(20)) is not None


def test_every_tenth_of_the_cap_written_looks_at_the_folder_again(tmp_path: Path) -> None:
    # another process's writes are seen: this one alone would count only its own
    mine, theirs = (CropCache(tmp_path / "crops", cap_bytes=2000) for _ in range(2))
    for number in range(15):
        theirs.write(_etag(number), b"t" * 100)
    for number in range(15, 40):
        mine.write(_etag(number), b"m" * 100)
        assert mine.size() <= 2000 + 2 * 200 + 100


def test_a_cap_below_one_byte_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        CropCache(tmp_path, cap_bytes=0)
