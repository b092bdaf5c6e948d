"""Bytes to an upright RGB image, refusing anything that is not a sane, complete image.

The pixel limit is checked on the header dimensions, before any pixel is decoded. Any
failure of the decoder (unknown format, truncated data, corrupt chunks) becomes
InvalidFile: the input is untrusted and a bad file is a per-file failure, never a crash.

Large images. Face detection never looks at more than DETECTION_PIXELS of an image (its
finest small-face level, vision/batch_detector.py), so analysis asks for at least that
many (`reduce_to`) and a larger file is decoded reduced by a whole factor: a 100 MP photo
becomes 25 MP, 75 MB of RGB instead of 300. A JPEG is reduced inside the decoder (DCT
scaling: the full-size pixels never exist); a large PNG is decoded strip by strip as it
is inflated, each strip reduced before the next (vision/png_strips.py, which also spares
a large PNG that is not reduced Pillow's whole copy); other formats are reduced right
after decoding, before the conversion to RGB and the copy to numpy. The decoded image
says by how much (`DecodedImage.scale`) and keeps the file's own size (`full_width`,
`full_height`), so callers report boxes and dimensions in the file's pixels
(vision/file_pixels.py). Faces are embedded from the reduced pixels, which are at least
as many as the detector saw them with.
"""

from __future__ import annotations

import io
import math
import re
import warnings

import numpy as np
from PIL import (  # noqa: F401  (importing a plugin registers its format with Image.open)
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from openimm.errors import InvalidFile
from openimm.vision.png_strips import decode_png_strips, png_exif
from openimm.vision.types import DecodedImage, Pixels

DEFAULT_MAX_PIXELS = 100_000_000
# SmallFaces.max_pixels (vision/batch_detector.py): the most pixels detection looks at
DETECTION_PIXELS = 16_000_000
# a PNG larger than this is decoded strip by strip (vision/png_strips.py), never whole:
# below it Pillow's whole copy (4 bytes a pixel) is small, and its decoder is faster
STRIPS_FROM_PIXELS = 16_000_000
# Formats IMM accepts that Pillow decodes natively; EPS, PDF and the like stay closed,
# since some of them shell out to external programs. Multi-picture JPEGs open as JPEG.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
EXIF_ORIENTATION = 0x0112
_WHITE = (255, 255, 255)
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_AVERAGED = ("L", "LA", "RGB", "RGBA", "I", "F", "CMYK", "YCbCr")


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, reduce_to: int | None = None
) -> DecodedImage:
    """Decode an image file, apply its EXIF orientation and return RGB uint8 pixels;
    with `reduce_to`, reduced by the largest whole factor that keeps that many pixels."""
    if not data:
        raise InvalidFile("file is empty")
    # Pillow's own bomb warning fires at 89M pixels, below our limit; our check replaces it.
    # catch_warnings is process-global, but the worst a race can do is let one warning through.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return _decode(data, max_pixels, reduce_to)
        except InvalidFile:
            raise
        except Image.DecompressionBombError as exc:
            raise InvalidFile(_bomb_message(exc, max_pixels)) from exc
        except UnidentifiedImageError as exc:
            raise InvalidFile("file is not a supported image") from exc
        except MemoryError as exc:
            raise InvalidFile("image is too large to decode") from exc
        except Exception as exc:  # untrusted input: any decoder error means a bad file
            raise InvalidFile(f"image cannot be decoded: {_reason(exc)}") from exc


def _decode(data: bytes, max_pixels: int, reduce_to: int | None) -> DecodedImage:
    with Image.open(io.BytesIO(data), formats=FORMATS) as image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise InvalidFile("image has no pixels")
        if width * height > max_pixels:
            raise InvalidFile(
                f"image has {width * height} pixels, more than the limit {max_pixels}"
            )
        fmt = "JPEG" if image.format == "MPO" else (image.format or "UNKNOWN")
        orientation = _orientation(image, data)
        factor = reduction(width * height, reduce_to)
        strips = None
        if fmt == "PNG" and width * height > STRIPS_FROM_PIXELS:
            strips = decode_png_strips(data, factor, _to_rgb)
        if strips is not None:
            scale = factor
            pixels = np.ascontiguousarray(_turned(strips, orientation))
        else:
            scale, pixels = _decode_whole(image, fmt, orientation, factor, reduce_to)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise InvalidFile("image cannot be converted to RGB")
    turned = orientation in (5, 6, 7, 8)
    return DecodedImage(
        rgb=pixels,
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
        format=fmt,
        orientation=orientation,
        scale=scale,
        full_width=height if turned else width,
        full_height=width if turned else height,
    )


def _decode_whole(
    image: Image.Image, fmt: str, orientation: int, factor: int, reduce_to: int | None
) -> tuple[int, Pixels]:
    """Pillow's decode of the whole file, then reduced in the file's own mode."""
    width, height = image.size
    scale = 1
    if factor > 1 and fmt == "JPEG":
        # libjpeg scales by 1/2, 1/4 or 1/8 while decoding; draft picks the largest
        # that does not go below the size asked for
        image.draft(None, (-(-width // factor), -(-height // factor)))
        scale = round(max(width / image.size[0], height / image.size[1]))
    image.load()  # raises on truncated data: LOAD_TRUNCATED_IMAGES stays off
    rest = reduction(image.size[0] * image.size[1], reduce_to)
    reduced = _reduce(image, rest) if rest > 1 else image
    upright = ImageOps.exif_transpose(reduced) if orientation != 1 else reduced
    rgb = _to_rgb(upright)
    del reduced, upright
    pixels: Pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    return scale * rest, pixels


def _turned(pixels: Pixels, orientation: int) -> Pixels:
    """Pixels as stored, turned upright as EXIF `orientation` says (Pillow's transposes)."""
    turns = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }
    turn = turns.get(orientation)
    return pixels if turn is None else turn(pixels)


def reduction(pixels: int, reduce_to: int | None) -> int:
    """The largest whole factor per side that leaves at least `reduce_to` of `pixels`."""
    if not reduce_to or pixels < 4 * reduce_to:
        return 1
    return max(1, math.isqrt(pixels // reduce_to))


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    # box averaging in the file's own mode (1 byte a pixel for grey or palette images
    # would become 4 as RGB); modes Pillow cannot average are converted first
    if image.mode in _AVERAGED:
        return image.reduce(factor)
    return _to_rgb(image).reduce(factor)


def _orientation(image: Image.Image, data: bytes) -> int:
    try:
        if image.format == "PNG":
            # Pillow's PNG getexif decodes the whole image to look for an eXIf chunk
            # after the pixels; reading the chunks is enough
            exif = Image.Exif()
            raw = png_exif(data)
            if raw:
                exif.load(raw)
        else:
            exif = image.getexif()
        value = exif.get(EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block should not sink an otherwise good photo
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT or mode == "I":
        return _wide_grey_to_rgb(image)
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # transparent areas keep arbitrary colour values; show them on white as viewers do
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("1", "F"):
        image = image.convert("L")
    return image.convert("RGB")


def _wide_grey_to_rgb(image: Image.Image) -> Image.Image:
    # Pillow's convert clips 16-bit values at 255 instead of scaling them
    values = np.asarray(image).astype(np.float64)
    if image.mode in _SIXTEEN_BIT or float(values.max(initial=0.0)) > 255.0:
        top = 65535.0 if float(values.max(initial=0.0)) <= 65535.0 else float(values.max())
        values = values * (255.0 / top)
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))


def _bomb_message(exc: Exception, max_pixels: int) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    if found:
        return f"image has {found.group(1)} pixels, more than the limit {max_pixels}"
    return "image is too large to decode"


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    if "truncated" in text.lower():
        return "file is truncated"
    return text[:200] if text else type(exc).__name__
