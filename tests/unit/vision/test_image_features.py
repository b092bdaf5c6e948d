"""Image features for near-duplicate grouping, on variants of the sample photos made here."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from openimm.vision import decode_image
from openimm.vision.capture_time import (
    DATE_TIME_ORIGINAL,
    EXIF_IFD,
    OFFSET_TIME_ORIGINAL,
    SUBSEC_TIME_ORIGINAL,
    capture_time,
    parse_capture_time,
)
from openimm.vision.colour_signature import SIGNATURE_DIM, colour_distance, colour_signature
from openimm.vision.image_embedding import (
    EMBEDDING_DIM,
    INPUT_NAME,
    MODEL_NAME,
    POOLED_OUTPUT,
    ImageEmbedder,
    network_input,
)
from openimm.vision.image_features import (
    NEAR_DUPLICATE_COSINE,
    ImageFeatureExtractor,
    ImageFeatures,
    cosine_distance,
)
from openimm.vision.image_quality import image_quality
from openimm.vision.onnx_outputs import expose_outputs
from openimm.vision.perceptual_hash import dhash, hamming, phash
from openimm.vision.types import DecodedImage, Pixels

# Documented closeness of edited copies (measured: cosine <= 0.036, pHash <= 16 bits for a
# 4% crop, <= 2 otherwise) and distance of different photos (cosine >= 0.15, pHash >= 26).
COPY_COSINE = 0.05
REENCODED_PHASH = 4
REENCODED_DHASH = 6
DIFFERENT_PHASH = 16


def _image(rgb: Pixels) -> DecodedImage:
    rgb = np.ascontiguousarray(rgb)
    return DecodedImage(rgb=rgb, width=rgb.shape[1], height=rgb.shape[0], format="RAW")


def _jpeg(rgb: Pixels, quality: int = 60, exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    if exif is None:
        Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    else:
        Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, exif=exif)
    return buffer.getvalue()


def _photo(folder: Path, name: str) -> DecodedImage:
    return decode_image((folder / name).read_bytes())


def _variants(rgb: Pixels) -> dict[str, Pixels]:
    h, w = rgb.shape[:2]
    return {
        "jpeg60": decode_image(_jpeg(rgb)).rgb,
        "half": cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
        "crop4": rgb[round(0.04 * h) : round(0.96 * h), round(0.04 * w) : round(0.96 * w)],
        "brighter": np.clip(rgb * 1.25, 0, 255).astype(np.uint8),
        "darker": np.clip(rgb * 0.75, 0, 255).astype(np.uint8),
    }


@pytest.fixture(scope="module")
def extractor(model_dir: Path) -> ImageFeatureExtractor:
    return ImageFeatureExtractor(ImageEmbedder(model_dir / MODEL_NAME))


# --- the model and its rewritten outputs -------------------------------------------------


@pytest.mark.models
def test_rewritten_graph_keeps_the_model(model_dir: Path) -> None:
    import onnxruntime as ort

    shipped = (model_dir / MODEL_NAME).read_bytes()
    original = ort.InferenceSession(shipped, providers=["CPUExecutionProvider"])
    classifier = original.get_outputs()[0].name
    both = ort.InferenceSession(
        expose_outputs(shipped, [POOLED_OUTPUT, classifier]), providers=["CPUExecutionProvider"]
    )
    assert [o.name for o in both.get_outputs()] == [POOLED_OUTPUT, classifier]
    batch = np.random.default_rng(0).uniform(-120, 130, (2, 224, 224, 3)).astype(np.float32)
    pooled, scores = both.run(None, {INPUT_NAME: batch})
    np.testing.assert_allclose(scores, original.run(None, {INPUT_NAME: batch})[0], atol=1e-6)
    assert pooled.shape == (2, EMBEDDING_DIM)
    assert pooled.min() >= 0.0  # the mean of ReLU outputs
    assert np.linalg.norm(pooled[0] - pooled[1]) > 0.0


def test_expose_outputs_rejects_what_is_not_a_model() -> None:
    with pytest.raises(ValueError):
        expose_outputs(b"\x0a\x05abc", ["x"])  # a field running past the end
    with pytest.raises(ValueError):
        expose_outputs(b"\x08\x01", ["x"])  # a valid message with no graph
    with pytest.raises(ValueError):
        expose_outputs(b"", [])


def test_network_input_is_the_whole_frame_in_bgr_minus_mean() -> None:
    rgb = np.zeros((300, 500, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    x = network_input(rgb)
    assert x.shape == (224, 224, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], [-104.0, -117.0, 200.0 - 123.0])


# --- embedding ---------------------------------------------------------------------------


@pytest.mark.models
def test_edited_copies_are_close_and_different_photos_far(
    extractor: ImageFeatureExtractor, sample_photos: Path
) -> None:
    for name in ("obama.jpg", "t1.jpg"):
        original = _photo(sample_photos, name)
        reference = extractor.extract(original)
        for kind, rgb in _variants(original.rgb).items():
            copy = extractor.extract(_image(rgb))
            distance = cosine_distance(reference.embedding, copy.embedding)
            assert distance < COPY_COSINE, (name, kind, distance)
    others = [_photo(sample_photos, n) for n in ("obama.jpg", "obama2.jpg", "biden.jpg", "t1.jpg")]
    features = extractor.extract_batch(others)
    for i in range(len(features)):
        for j in range(i + 1, len(features)):
            distance = cosine_distance(features[i].embedding, features[j].embedding)
            assert distance > NEAR_DUPLICATE_COSINE, (i, j, distance)


@pytest.mark.models
def test_features_have_the_documented_shapes(
    extractor: ImageFeatureExtractor, sample_photos: Path
) -> None:
    image = _photo(sample_photos, "biden.jpg")
    features = extractor.extract(image)
    assert isinstance(features, ImageFeatures)
    assert features.embedding.shape == (EMBEDDING_DIM,) and features.embedding.dtype == np.float32
    assert abs(float(np.linalg.norm(features.embedding)) - 1.0) < 1e-5
    assert features.colour.shape == (SIGNATURE_DIM,) and features.colour.dtype == np.float32
    assert abs(float(np.linalg.norm(features.colour)) - 1.0) < 1e-5
    assert 0 <= features.phash < 2**64 and 0 <= features.dhash < 2**64
    assert (features.width, features.height) == (image.width, image.height)
    assert features.captured_at is None
    assert 0.0 <= features.quality.overall <= 1.0


@pytest.mark.models
def test_batch_equals_one_by_one(extractor: ImageFeatureExtractor, sample_photos: Path) -> None:
    images = [_photo(sample_photos, n) for n in ("obama.jpg", "t1.jpg", "obama3.jpg")]
    batch = extractor.extract_batch(images, [None, None, None], [1.0, None, 3.0])
    for image, together in zip(images, batch, strict=True):
        alone = extractor.extract(image)
        assert cosine_distance(alone.embedding, together.embedding) < 1e-5
        assert (alone.phash, alone.dhash) == (together.phash, together.dhash)
    assert [f.captured_at for f in batch] == [1.0, None, 3.0]
    assert extractor.extract_batch([]) == []
    with pytest.raises(ValueError):
        extractor.extract_batch(images, [None])


@pytest.mark.models
def test_capture_time_comes_from_the_file_else_from_the_caller(
    extractor: ImageFeatureExtractor, sample_photos: Path
) -> None:
    image = _photo(sample_photos, "obama.jpg")
    data = _jpeg(image.rgb, exif=_exif("2020:01:02 03:04:05", "5"))
    taken = datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp() + 0.5
    assert extractor.extract(image, data, captured_at=7.0).captured_at == taken
    assert extractor.extract(image, _jpeg(image.rgb), captured_at=7.0).captured_at == 7.0


# --- perceptual hashes and colour --------------------------------------------------------


def test_hashes_are_stable_under_reencoding_and_resizing(sample_photos: Path) -> None:
    for name in ("obama.jpg", "obama2.jpg", "t1.jpg", "biden.jpg"):
        rgb = _photo(sample_photos, name).rgb
        variants = _variants(rgb)
        for kind in ("jpeg60", "half"):
            assert hamming(phash(rgb), phash(variants[kind])) <= REENCODED_PHASH, (name, kind)
            assert hamming(dhash(rgb), dhash(variants[kind])) <= REENCODED_DHASH, (name, kind)
        again = decode_image(_jpeg(variants["jpeg60"], quality=90)).rgb
        assert hamming(phash(variants["jpeg60"]), phash(again)) <= 2


def test_hashes_of_different_photos_differ(sample_photos: Path) -> None:
    names = ("obama.jpg", "obama2.jpg", "biden.jpg", "t1.jpg")
    hashes = [phash(_photo(sample_photos, n).rgb) for n in names]
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            assert hamming(hashes[i], hashes[j]) >= DIFFERENT_PHASH, (names[i], names[j])


def test_hash_bits_follow_the_definition() -> None:
    # brighter to the right in every row: each dHash bit compares a pixel to its left one
    ramp = np.tile(np.linspace(0, 255, 90).astype(np.uint8), (80, 1))
    assert dhash(ramp) == 2**64 - 1
    assert dhash(ramp[:, ::-1].copy()) == 0
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    assert phash(flat) == 1 << 63  # only the DC term (first bit) exceeds the median, 0
    assert hamming(0, 2**64 - 1) == 64 and hamming(5, 5) == 0


def test_colour_signature_compares_colour_distributions(sample_photos: Path) -> None:
    rgb = _photo(sample_photos, "t1.jpg").rgb
    same = colour_signature(rgb)
    assert colour_distance(same, colour_signature(decode_image(_jpeg(rgb)).rgb)) < 0.02
    red = np.zeros((50, 50, 3), dtype=np.uint8)
    red[..., 0] = 255
    blue = np.zeros((50, 50, 3), dtype=np.uint8)
    blue[..., 2] = 255
    assert colour_distance(colour_signature(red), colour_signature(blue)) == pytest.approx(1.0)
    assert colour_distance(colour_signature(red), colour_signature(red)) == pytest.approx(0.0)


# --- capture time ------------------------------------------------------------------------


def _exif(date: str, subsec: str | None = None, offset: str | None = None) -> Image.Exif:
    exif = Image.Exif()
    ifd = exif.get_ifd(EXIF_IFD)
    ifd[DATE_TIME_ORIGINAL] = date
    if subsec is not None:
        ifd[SUBSEC_TIME_ORIGINAL] = subsec
    if offset is not None:
        ifd[OFFSET_TIME_ORIGINAL] = offset
    return exif


def test_capture_time_read_from_exif_written_here() -> None:
    rgb = np.full((32, 48, 3), 90, dtype=np.uint8)
    wall = datetime(2023, 7, 14, 18, 30, 15, tzinfo=timezone.utc)
    data = _jpeg(rgb, exif=_exif("2023:07:14 18:30:15", "250"))
    assert capture_time(data) == pytest.approx(wall.timestamp() + 0.25)
    with_offset = _jpeg(rgb, exif=_exif("2023:07:14 18:30:15", None, "+02:00"))
    assert capture_time(with_offset) == (wall - timedelta(hours=2)).timestamp()
    assert capture_time(_jpeg(rgb)) is None
    assert capture_time(None) is None
    assert capture_time(b"not an image") is None
    assert capture_time(_jpeg(rgb, exif=_exif("0000:00:00 00:00:00"))) is None


def test_parse_capture_time_accepts_camera_spellings() -> None:
    base = datetime(2019, 2, 3, 4, 5, 6, tzinfo=timezone.utc).timestamp()
    assert parse_capture_time("2019:02:03 04:05:06\x00") == base
    assert parse_capture_time(b"2019:02:03 04:05:06", b"07") == pytest.approx(base + 0.07)
    assert parse_capture_time("2019:02:03 04:05:06", None, "-05:30") == base + 5.5 * 3600
    assert parse_capture_time("    :  :     :  :  ") is None
    assert parse_capture_time(None) is None
    assert parse_capture_time(20190203) is None


# --- quality -----------------------------------------------------------------------------


def test_quality_is_lower_for_a_blurred_or_badly_exposed_copy(sample_photos: Path) -> None:
    for name in ("obama.jpg", "t1.jpg"):
        rgb = _photo(sample_photos, name).rgb
        sharp = image_quality(rgb)
        blurred = image_quality(cv2.GaussianBlur(rgb, (0, 0), 2.0))
        assert 0.0 <= blurred.sharpness < sharp.sharpness - 0.3 <= 1.0, name
        assert blurred.overall < sharp.overall
        burnt = image_quality(np.clip(rgb.astype(np.float32) * 3.0, 0, 255).astype(np.uint8))
        assert burnt.exposure < sharp.exposure - 0.3, name
        assert 0.0 <= burnt.exposure <= 1.0
    assert image_quality(np.zeros((40, 40, 3), dtype=np.uint8)) == image_quality(
        np.zeros((40, 40), dtype=np.uint8)
    )
    assert image_quality(np.zeros((40, 40, 3), dtype=np.uint8)).overall == 0.0


def test_importing_the_modules_loads_no_native_library() -> None:
    code = (
        "import sys, openimm.vision.image_features\n"
        "print(','.join(m for m in ('cv2', 'onnxruntime', 'dlib') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
