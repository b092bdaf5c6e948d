"""decode_image: orientation, colour modes, and refusal of bad or oversized files."""

from __future__ import annotations

import io
import struct
import time
import zlib
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from openimm.errors import InvalidFile
from openimm.vision import decode_image
from openimm.vision.decode import DETECTION_PIXELS, reduction
from openimm.vision.file_pixels import in_file_pixels
from openimm.vision.types import Box, DecodedImage, DetectedFace, HeadPose

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height (1-bit grey) but carries only a few bytes of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _red_left_blue_right(width: int = 40, height: int = 20) -> Image.Image:
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def _close(pixel: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool(np.abs(pixel.astype(int) - np.array(colour)).max() < 40)


def test_plain_jpeg_is_rgb_uint8() -> None:
    image = decode_image(_encode(_red_left_blue_right(), "JPEG", quality=95))
    assert (image.width, image.height, image.format, image.orientation) == (40, 20, "JPEG", 1)
    assert image.rgb.shape == (20, 40, 3)
    assert image.rgb.dtype == np.uint8
    assert image.pixels == 800


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_6_is_turned_upright(fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    data = _encode(_red_left_blue_right(), fmt, exif=exif.tobytes())

    image = decode_image(data)

    assert image.orientation == 6
    assert (image.width, image.height) == (20, 40)
    # turning clockwise brings the stored left (red) half to the top
    assert _close(image.rgb[5, 10], RED)
    assert _close(image.rgb[35, 10], BLUE)


def test_exif_orientation_3_is_turned_half_round() -> None:
    exif = Image.Exif()
    exif[0x0112] = 3
    image = decode_image(_encode(_red_left_blue_right(), "PNG", exif=exif.tobytes()))
    assert image.orientation == 3
    assert (image.width, image.height) == (40, 20)
    assert _close(image.rgb[10, 5], BLUE)
    assert _close(image.rgb[10, 35], RED)


def test_out_of_range_orientation_is_ignored() -> None:
    exif = Image.Exif()
    exif[0x0112] = 42
    image = decode_image(_encode(_red_left_blue_right(), "PNG", exif=exif.tobytes()))
    assert image.orientation == 1
    assert (image.width, image.height) == (40, 20)


def test_huge_png_is_refused_from_its_header() -> None:
    data = _png_header_only(20000, 20000)
    started = time.perf_counter()
    with pytest.raises(InvalidFile) as caught:
        decode_image(data)
    assert time.perf_counter() - started < 0.5
    assert caught.value.message == "image has 400000000 pixels, more than the limit 100000000"


def test_pixel_limit_applies_below_pillows_own_bomb_limit() -> None:
    # 108 M pixels: above our limit, where Pillow only warns (and pytest turns warnings into errors)
    with pytest.raises(InvalidFile, match="108000000 pixels, more than the limit 100000000"):
        decode_image(_png_header_only(12000, 9000))


def test_custom_pixel_limit() -> None:
    data = _encode(_red_left_blue_right(), "PNG")
    with pytest.raises(InvalidFile, match="800 pixels, more than the limit 799"):
        decode_image(data, max_pixels=799)
    assert decode_image(data, max_pixels=800).pixels == 800


def test_truncated_jpeg_is_invalid() -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8))
    data = _encode(noise, "JPEG", quality=90)
    with pytest.raises(InvalidFile, match="truncated"):
        decode_image(data[: len(data) // 2])


def test_truncated_png_is_invalid() -> None:
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8))
    data = _encode(noise, "PNG")
    with pytest.raises(InvalidFile):
        decode_image(data[: len(data) - 100])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is a text file\n",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
        b"%!PS-Adobe-3.0 EPSF",
    ],
    ids=["empty", "text", "pdf", "eps"],
)
def test_non_images_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidFile):
        decode_image(data)


def test_text_file_message() -> None:
    with pytest.raises(InvalidFile, match="file is not a supported image"):
        decode_image(b"just some words")


def test_rgba_is_composited_on_white() -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255))
    decoded = decode_image(_encode(image, "PNG"))
    assert decoded.rgb.shape == (4, 4, 3)
    assert tuple(decoded.rgb[0, 0]) == BLUE
    assert tuple(decoded.rgb[3, 3]) == (255, 255, 255)


def test_palette_and_grey_and_bilevel() -> None:
    palette = _red_left_blue_right().convert("P")
    assert _close(decode_image(_encode(palette, "PNG")).rgb[10, 5], RED)
    grey = Image.new("L", (3, 3), 77)
    assert tuple(decode_image(_encode(grey, "PNG")).rgb[1, 1]) == (77, 77, 77)
    bilevel = Image.new("1", (3, 3), 1)
    assert tuple(decode_image(_encode(bilevel, "PNG")).rgb[1, 1]) == (255, 255, 255)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100], [65535, 257 * 200]], dtype=np.uint16)
    decoded = decode_image(_encode(Image.fromarray(values), "PNG"))
    assert decoded.rgb[:, :, 0].tolist() == [[0, 100], [255, 200]]
    assert (decoded.rgb[:, :, 0] == decoded.rgb[:, :, 2]).all()


def test_sixteen_bit_tiff() -> None:
    values = np.full((5, 6), 257 * 50, dtype=np.uint16)
    decoded = decode_image(_encode(Image.fromarray(values), "TIFF"))
    assert (decoded.width, decoded.height, decoded.format) == (6, 5, "TIFF")
    assert int(decoded.rgb[0, 0, 0]) == 50


def test_cmyk_jpeg_and_tiff() -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    for fmt in ("JPEG", "TIFF"):
        decoded = decode_image(_encode(cmyk, fmt))
        assert decoded.rgb.shape == (8, 8, 3)
        assert _close(decoded.rgb[4, 4], RED), fmt


def test_webp_bmp_gif() -> None:
    source = _red_left_blue_right()
    for fmt in ("WEBP", "BMP", "GIF"):
        decoded = decode_image(_encode(source, fmt))
        assert decoded.format == fmt
        assert _close(decoded.rgb[10, 5], RED), fmt


# ---------------------------------------------------------------- reduced decoding


def test_reduction_keeps_at_least_the_pixels_asked_for() -> None:
    assert reduction(100_000_000, None) == 1
    assert reduction(63_000_000, DETECTION_PIXELS) == 1  # under 4x: kept whole
    assert reduction(99_990_000, DETECTION_PIXELS) == 2  # a 10000x9999 photo: 25 MP
    for pixels in (64_000_000, 150_000_000, 10**9):
        factor = reduction(pixels, DETECTION_PIXELS)
        assert pixels / factor**2 >= DETECTION_PIXELS > pixels / (factor + 1) ** 2


def test_detection_pixels_is_what_the_detector_looks_at() -> None:
    # reducing below the detector's finest level would lose the small faces it finds
    from openimm.vision.batch_detector import SmallFaces

    assert SmallFaces().max_pixels <= DETECTION_PIXELS


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_large_image_is_decoded_reduced_and_keeps_its_size(fmt: str) -> None:
    data = _encode(_red_left_blue_right(2000, 1500), fmt, quality=95)

    image = decode_image(data, reduce_to=700_000)

    assert image.scale == 2
    assert (image.width, image.height) == (1000, 750) == image.rgb.shape[1::-1]
    assert (image.full_width, image.full_height) == (2000, 1500)
    assert _close(image.rgb[10, 10], RED) and _close(image.rgb[10, 990], BLUE)


def test_a_reduced_jpeg_never_goes_below_the_pixels_asked_for() -> None:
    data = _encode(_red_left_blue_right(2000, 1500), "JPEG")
    # factor 3 is allowed; the decoder scales by powers of two, so it takes 2
    image = decode_image(data, reduce_to=300_000)
    assert image.pixels >= 300_000 and image.scale == 2
    assert decode_image(data, reduce_to=100_000).scale == 4


def test_a_reduced_image_is_turned_upright_with_its_full_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(_red_left_blue_right(2000, 1000), "JPEG", exif=exif.tobytes())

    image = decode_image(data, reduce_to=400_000)

    assert (image.scale, image.orientation) == (2, 6)
    assert (image.width, image.height) == (500, 1000)
    assert (image.full_width, image.full_height) == (1000, 2000)
    assert _close(image.rgb[10, 250], RED) and _close(image.rgb[990, 250], BLUE)


@pytest.mark.parametrize("mode", ["L", "P", "1", "LA", "RGBA", "I;16"])
def test_every_colour_mode_reduces(mode: str) -> None:
    data = _encode(Image.new(mode, (1200, 1000)), "PNG")
    image = decode_image(data, reduce_to=300_000)
    assert (image.scale, image.width, image.height) == (2, 600, 500)


def test_small_images_and_plain_calls_are_not_reduced() -> None:
    data = _encode(_red_left_blue_right(2000, 1500), "PNG")
    assert decode_image(data).scale == 1
    image = decode_image(data, reduce_to=DETECTION_PIXELS)
    assert (image.scale, image.width, image.full_width) == (1, 2000, 2000)


def test_a_face_found_reduced_is_reported_in_the_files_pixels() -> None:
    rgb = np.zeros((500, 600, 3), np.uint8)
    image = DecodedImage(rgb, 600, 500, "PNG", scale=2, full_width=1199, full_height=1000)
    face = DetectedFace(
        box=Box(left=100, top=50, width=40, height=60),
        landmarks=((110.0, 70.0), (130.0, 70.0), (120.0, 80.0), (112.0, 95.0), (128.0, 95.0)),
        confidence=0.9,
        head_pose=HeadPose(0.0, 0.0, 0.0),
        sharpness=0.5,
        quality=0.7,
    )
    edge = replace(face, box=Box(left=580, top=10, width=20, height=20))

    found = in_file_pixels(face, image)

    assert found.box == Box(left=200, top=100, width=80, height=120)
    assert found.landmarks[0] == (220.5, 140.5)
    assert (found.confidence, found.quality) == (0.9, 0.7)
    assert in_file_pixels(edge, image).box == Box(left=1160, top=20, width=39, height=40)
    assert in_file_pixels(face, DecodedImage(rgb, 600, 500, "PNG")) is face
