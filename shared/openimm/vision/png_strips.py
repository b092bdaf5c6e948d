"""A large PNG decoded a strip of rows at a time, each strip reduced before the next.

Pillow decodes a PNG whole (4 bytes a pixel for RGB: 400 MB for 100 MP) before anything
can reduce it. Here the compressed stream is inflated one strip of rows at a time, and
each strip goes to Pillow as a small PNG of its own: the same header with the strip's
height, the chunks that say how to read pixels (palette, transparency, colour profile),
and the strip's rows stored uncompressed. PNG filters predict a row from the one above,
so a strip is led by the last row of the strip before, already unfiltered (filter type
None), and that row is dropped again after decoding. Each strip is then converted to
RGB and reduced into the output array. Memory: the output, plus one strip (8 MB of rows).

Only the common layout takes this path: 8 bits a sample, not interlaced, not animated.
Anything else returns None, and the caller decodes the file whole.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image

from openimm.errors import InvalidFile
from openimm.vision.types import Pixels

SIGNATURE = b"\x89PNG\r\n\x1a\n"
STRIP_BYTES = 8 * 1024 * 1024
# samples a pixel, by PNG colour type: grey, RGB, palette, grey + alpha, RGBA
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# chunks before the image data that change how pixels read; the rest stay behind
_KEPT = (b"PLTE", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT")
_ANIMATED = (b"acTL", b"fcTL")

ToRgb = Callable[[Image.Image], Image.Image]


def decode_png_strips(
    data: bytes, factor: int, to_rgb: ToRgb, *, strip_bytes: int = STRIP_BYTES
) -> Pixels | None:
    """RGB pixels of a PNG reduced by `factor` (box average), decoded strip by strip;
    None when the file's layout is not one this reads (decode it whole instead)."""
    layout = _layout(data)
    if layout is None:
        return None
    header, kept, idat = layout
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or interlace != 0 or colour not in _SAMPLES:
        return None
    stride = width * _SAMPLES[colour] + 1  # a filter-type byte leads every row
    rows = max(1, strip_bytes // stride // factor) * factor
    out = np.empty((math.ceil(height / factor), math.ceil(width / factor), 3), np.uint8)
    stream = _Inflated(idat)
    above: bytes | None = None
    done = 0
    while done < height:
        count = min(rows, height - done)
        raw = stream.take(count * stride)
        lead = b"" if above is None else b"\x00" + above
        strip = _strip_image(header, kept, count + (above is not None), lead + raw)
        if above is not None:
            strip = strip.crop((0, 1, width, count + 1))
        above = strip.crop((0, count - 1, width, count)).tobytes()
        if len(above) != stride - 1:
            return None  # Pillow chose a mode whose bytes are not the file's samples
        rgb = to_rgb(strip)
        if factor > 1:
            rgb = rgb.reduce(factor)
        top = done // factor
        out[top : top + rgb.height] = np.asarray(rgb, dtype=np.uint8)
        done += count
    return out


def png_exif(data: bytes) -> bytes | None:
    """The body of a PNG's eXIf chunk (before or after the pixels), None without one."""
    if not data.startswith(SIGNATURE):
        return None
    at = len(SIGNATURE)
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind == b"eXIf":
            return data[at + 8 : at + 8 + length]
        if kind == b"IEND":
            return None
        at += 12 + length
    return None


def _layout(data: bytes) -> tuple[bytes, list[bytes], list[memoryview]] | None:
    """IHDR's body, the kept chunks (whole), and the IDAT bodies; None if unusual."""
    if not data.startswith(SIGNATURE):
        return None
    view = memoryview(data)
    at = len(SIGNATURE)
    header = b""
    kept: list[bytes] = []
    idat: list[memoryview] = []
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", view[at : at + 8])
        end = at + 12 + length
        if end > len(data):
            raise InvalidFile("image cannot be decoded: file is truncated")
        body = view[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = bytes(body)
        elif kind in _ANIMATED:
            return None
        elif kind == b"IDAT":
            idat.append(body)
        elif kind in _KEPT and not idat:
            kept.append(bytes(view[at:end]))
        elif kind == b"IEND":
            break
        at = end
    if len(header) != 13 or not idat:
        return None
    return header, kept, idat


def _chunk(kind: bytes, body: bytes) -> tuple[bytes, ...]:
    # in pieces, joined once with the rest of the strip's PNG
    crc = zlib.crc32(body, zlib.crc32(kind))
    return struct.pack(">I", len(body)), kind, body, struct.pack(">I", crc)


def _strip_image(header: bytes, kept: list[bytes], rows: int, raw: bytes) -> Image.Image:
    strip_header = header[:4] + struct.pack(">I", rows) + header[8:]
    png = b"".join(
        (
            SIGNATURE,
            *_chunk(b"IHDR", strip_header),
            *kept,
            *_chunk(b"IDAT", zlib.compress(raw, 0)),  # stored: copying, not compressing
            *_chunk(b"IEND", b""),
        )
    )
    image = Image.open(io.BytesIO(png), formats=("PNG",))
    image.load()
    return image


class _Inflated:
    """The image data's inflated bytes, taken in pieces of a set length."""

    def __init__(self, parts: list[memoryview]) -> None:
        self._parts: Iterator[memoryview] = iter(parts)
        self._inflater = zlib.decompressobj()
        self._pending: bytes | memoryview = b""

    def take(self, size: int) -> bytes:
        pieces: list[bytes] = []
        wanted = size
        while wanted > 0:
            if not self._pending:
                following = next(self._parts, None)
                if following is None or self._inflater.eof:
                    raise InvalidFile("image cannot be decoded: file is truncated")
                self._pending = following
            piece = self._inflater.decompress(self._pending, wanted)
            self._pending = self._inflater.unconsumed_tail
            pieces.append(piece)
            wanted -= len(piece)
            if self._inflater.eof and wanted > 0:
                raise InvalidFile("image cannot be decoded: file is truncated")
        return b"".join(pieces)
