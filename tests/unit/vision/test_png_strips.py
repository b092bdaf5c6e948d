"""A PNG decoded strip by strip gives exactly the pixels of Pillow's whole decode."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from openimm.errors import InvalidFile
from openimm.vision import decode
from openimm.vision.decode import _to_rgb, decode_image
from openimm.vision.png_strips import decode_png_strips, png_exif


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _every_filter_png(pixels: np.ndarray) -> bytes:
    """An RGB PNG whose rows use the five filter types in turn (None, Sub, Up, Average,
    Paeth), so every predictor meets a strip boundary."""
    height, width, _ = pixels.shape
    raw = pixels.reshape(height, width * 3).astype(np.int32)
    rows = []
    for y in range(height):
        kind = y % 5
        x = raw[y]
        a = np.concatenate([np.zeros(3, np.int32), x[:-3]])  # left
        b = raw[y - 1] if y else np.zeros_like(x)  # above
        c = np.concatenate([np.zeros(3, np.int32), b[:-3]])  # above left
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        predicted = [np.zeros_like(x), a, b, (a + b) // 2, paeth][kind]
        rows.append(bytes([kind]) + ((x - predicted) % 256).astype(np.uint8).tobytes())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + _chunk(b"IEND", b"")
    )


def _whole(data: bytes, factor: int) -> np.ndarray:
    rgb = _to_rgb(Image.open(io.BytesIO(data)))
    return np.asarray(rgb.reduce(factor) if factor > 1 else rgb)


def _noise(height: int, width: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    shape = (height, width, channels) if channels > 1 else (height, width)
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_every_filter_across_strip_boundaries(factor: int) -> None:
    data = _every_filter_png(_noise(61, 47, 3))
    # about seven rows a strip: a dozen boundaries, each after a different filter
    strips = decode_png_strips(data, factor, _to_rgb, strip_bytes=47 * 3 * 7)
    assert strips is not None
    assert np.array_equal(strips, _whole(data, factor))


@pytest.mark.parametrize(
    ("mode", "channels"), [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4), ("P", 3)]
)
def test_every_colour_type(mode: str, channels: int) -> None:
    image = Image.fromarray(_noise(50, 40, channels))
    if mode == "P":
        image = image.quantize(32)
    elif mode != image.mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **({"transparency": 3} if mode == "P" else {}))
    data = buffer.getvalue()
    for factor in (1, 2):
        strips = decode_png_strips(data, factor, _to_rgb, strip_bytes=400)
        assert strips is not None and np.array_equal(strips, _whole(data, factor)), mode


def test_unusual_layouts_are_left_to_the_whole_decode() -> None:
    sixteen = io.BytesIO()
    Image.fromarray(_noise(20, 20, 1).astype(np.uint16) * 200).save(sixteen, "PNG")
    # Pillow writes no interlaced PNG: the same file, its header saying Adam7
    plain = _every_filter_png(_noise(20, 20, 3))
    header = bytearray(plain[16:29])
    header[12] = 1
    interlaced = plain[:8] + _chunk(b"IHDR", bytes(header)) + plain[33:]
    for data in (sixteen.getvalue(), interlaced, b"GIF89a..."):
        assert decode_png_strips(data, 2, _to_rgb) is None


def test_a_truncated_stream_is_an_invalid_file() -> None:
    data = _every_filter_png(_noise(40, 40, 3))
    cut = data[: len(data) // 2]
    # the last chunk is cut short, then missing entirely: both are a truncated file
    with pytest.raises(InvalidFile, match="truncated"):
        decode_png_strips(cut, 1, _to_rgb, strip_bytes=500)
    whole_chunks = data[: data.index(b"IDAT") - 4] + _chunk(b"IEND", b"")
    assert decode_png_strips(whole_chunks, 1, _to_rgb) is None  # no image data at all
    idat_start = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[idat_start : idat_start + 4])
    body = data[idat_start + 8 : idat_start + 8 + length]
    half = _chunk(b"IDAT", body[: len(body) // 2])
    short = data[:idat_start] + half + _chunk(b"IEND", b"")
    with pytest.raises(InvalidFile, match="truncated"):
        decode_png_strips(short, 1, _to_rgb, strip_bytes=500)


def test_decode_image_takes_the_strips_with_orientation(monkeypatch: pytest.MonkeyPatch) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(_noise(60, 80, 3)).save(buffer, "PNG", exif=exif.tobytes())
    data = buffer.getvalue()
    assert png_exif(data) is not None
    whole = decode_image(data, reduce_to=1000)

    monkeypatch.setattr(decode, "STRIPS_FROM_PIXELS", 0)
    taken: list[int] = []
    real = decode.decode_png_strips

    def counted(*args: object, **kwargs: object) -> object:
        taken.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(decode, "decode_png_strips", counted)
    strips = decode_image(data, reduce_to=1000)

    assert taken and strips.orientation == 6
    assert (strips.scale, strips.full_width, strips.full_height) == (2, 60, 80)
    assert np.array_equal(strips.rgb, whole.rgb)
