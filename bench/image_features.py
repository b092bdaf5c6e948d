"""Near-duplicate features: same-group against different-group distances, and their cost.

    python bench/image_features.py SIMILAR_DIR [--kodak DIR] [--repeat N]

SIMILAR_DIR holds one folder per labelled set, each with a LABELS.csv (path,group_id,...)
naming its images; photos in `--kodak` (default SIMILAR_DIR/photos/kodak24) join as
singletons, different photos of often similar scenes. A second, synthetic set turns each
Kodak photo into a burst: the photo, a 5% crop on every side, exposure x0.7 and x1.3,
a JPEG quality-50 copy and a 3%/2% shift.

For each feature (embedding cosine distance, pHash and dHash Hamming distance, colour
distance) it prints the distribution of same-group and of different-group pair distances,
the pair AUC (chance that a same-group pair is closer than a different-group pair) and,
where a threshold is documented in openimm.vision.image_features, how many pairs of each
kind fall on the wrong side. Then the milliseconds per image of each step, and of
ImageFeatureExtractor.extract (one image) and extract_batch (8 images).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import similar_quality
from PIL import Image

from openimm.vision import decode_image
from openimm.vision.colour_signature import colour_distance, colour_signature
from openimm.vision.image_embedding import ImageEmbedder
from openimm.vision.image_features import (
    NEAR_DUPLICATE_COSINE,
    NEAR_DUPLICATE_PHASH,
    ImageFeatureExtractor,
    ImageFeatures,
    cosine_distance,
    working_copy,
)
from openimm.vision.image_ops import grey
from openimm.vision.image_quality import image_quality
from openimm.vision.perceptual_hash import dhash, hamming, phash
from openimm.vision.types import DecodedImage, Pixels

Labelled = list[tuple[str, str, DecodedImage, bytes | None]]  # name, group, image, file


def load_sets(root: Path, kodak: Path | None) -> Labelled:
    """Every labelled image under root, then the Kodak photos as singletons."""
    items: Labelled = []
    for labels in sorted(root.glob("*/LABELS.csv")):
        with labels.open(newline="", encoding="utf-8") as stream:
            for row in csv.DictReader(stream):
                data = (labels.parent / row["path"]).read_bytes()
                items.append((row["path"], row["group_id"], decode_image(data), data))
    for path in sorted(kodak.glob("*.png")) if kodak else []:
        data = path.read_bytes()
        items.append((path.name, path.stem, decode_image(data), data))
    return items


def _image(rgb: Pixels) -> DecodedImage:
    rgb = np.ascontiguousarray(rgb)
    return DecodedImage(rgb=rgb, width=rgb.shape[1], height=rgb.shape[0], format="RAW")


def _jpeg(rgb: Pixels, quality: int) -> Pixels:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def bursts(kodak: Path) -> Labelled:
    """Six frames per Kodak photo: itself, crop, darker, brighter, JPEG q50, shifted."""
    items: Labelled = []
    for path in sorted(kodak.glob("*.png")):
        every = similar_quality.frames(decode_image(path.read_bytes()).rgb)
        for kind in ("orig", "crop5", "dark", "bright", "jpeg50", "shift"):
            frame = every[kind]
            items.append((f"{path.stem}/{kind}", path.stem, _image(frame), None))
    return items


Distance = Callable[[ImageFeatures, ImageFeatures], float]
MEASURES: dict[str, tuple[Distance, float | None]] = {
    "embedding cosine": (
        lambda a, b: cosine_distance(a.embedding, b.embedding),
        NEAR_DUPLICATE_COSINE,
    ),
    "pHash bits": (lambda a, b: float(hamming(a.phash, b.phash)), float(NEAR_DUPLICATE_PHASH)),
    "dHash bits": (lambda a, b: float(hamming(a.dhash, b.dhash)), None),
    "colour": (lambda a, b: colour_distance(a.colour, b.colour), None),
}


def report(title: str, items: Labelled, features: list[ImageFeatures]) -> None:
    """Same-group and different-group distance distributions of each measure."""
    print(f"\n== {title}: {len(items)} images, {len({g for _, g, _, _ in items})} groups")
    pairs = list(itertools.combinations(range(len(items)), 2))
    same_pair = np.array([items[i][1] == items[j][1] for i, j in pairs])
    for name, (distance, threshold) in MEASURES.items():
        d = np.array([distance(features[i], features[j]) for i, j in pairs])
        same_at, diff_at = np.flatnonzero(same_pair), np.flatnonzero(~same_pair)
        worst_same = pairs[same_at[np.argmax(d[same_at])]]
        best_diff = pairs[diff_at[np.argmin(d[diff_at])]]
        same, diff = d[same_pair], d[~same_pair]
        auc = float(
            (same[:, None] < diff[None, :]).mean() + 0.5 * (same[:, None] == diff[None, :]).mean()
        )
        line = (
            f"{name:17s} same n={same.size:4d} med {np.median(same):6.3f} "
            f"p95 {np.percentile(same, 95):6.3f} max {same.max():6.3f} | "
            f"diff n={diff.size:5d} min {diff.min():6.3f} p5 {np.percentile(diff, 5):6.3f} "
            f"med {np.median(diff):6.3f} | AUC {auc:.4f}"
        )  # fmt: skip
        if threshold is not None:
            line += (
                f" | at {threshold:g}: same above {int((same > threshold).sum())}, "
                f"diff at or below {int((diff <= threshold).sum())}"
            )
        print(line)
        if name == "embedding cosine":
            for t in (0.10, 0.12, 0.14, 0.16):
                print(f"{'':17s} single linkage at {t:.2f}: {components(items, features, t)}")
        print(
            f"{'':17s} farthest same: {items[worst_same[0]][0]} ~ {items[worst_same[1]][0]}; "
            f"closest different: {items[best_diff[0]][0]} ~ {items[best_diff[1]][0]}"
        )


def per_transform(items: Labelled, features: list[ImageFeatures]) -> None:
    """Largest distance of each synthetic frame kind to its original, per measure."""
    originals = {
        g: f for (name, g, _, _), f in zip(items, features, strict=True) if name.endswith("/orig")
    }
    kinds = sorted({name.split("/")[1] for name, _, _, _ in items} - {"orig"})
    print(f"{'max to original':17s} " + " ".join(f"{k:>7s}" for k in kinds))
    for measure, (distance, _) in MEASURES.items():
        worst = {k: 0.0 for k in kinds}
        for (name, group, _, _), f in zip(items, features, strict=True):
            kind = name.split("/")[1]
            if kind != "orig":
                worst[kind] = max(worst[kind], distance(originals[group], f))
        print(f"{measure:17s} " + " ".join(f"{worst[k]:7.3f}" for k in kinds))


def components(items: Labelled, features: list[ImageFeatures], threshold: float) -> str:
    """Single-linkage groups at an embedding threshold, against the labels."""
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(len(items)), 2):
        if cosine_distance(features[i].embedding, features[j].embedding) <= threshold:
            parent[root(i)] = root(j)
    found: dict[int, set[str]] = {}
    for i, (_, group, _, _) in enumerate(items):
        found.setdefault(root(i), set()).add(group)
    labels = {group for _, group, _, _ in items}
    mixed = sum(1 for groups in found.values() if len(groups) > 1)
    return f"{len(found)} components for {len(labels)} groups, {mixed} mixing groups"


def _ms(step: Callable[[], object], repeat: int, per: int = 1) -> float:
    step()  # warm-up: session creation, first allocation
    start = time.perf_counter()
    for _ in range(repeat):
        step()
    return (time.perf_counter() - start) * 1000 / (repeat * per)


def timings(items: Labelled, extractor: ImageFeatureExtractor, repeat: int) -> None:
    """Milliseconds per image of each step and of the whole extraction."""
    sample = [image for _, _, image, _ in items[:8]]
    raw = [data for _, _, _, data in items[:8]]
    views = [working_copy(image.rgb) for image in sample]
    embedder = extractor.embedder
    steps: dict[str, Callable[[], object]] = {
        "working copy (<=1024 px)": lambda: [working_copy(i.rgb) for i in sample],
        "embedding, batch of 8": lambda: embedder.embed(views),
        "pHash + dHash": lambda: [(phash(grey(v)), dhash(grey(v))) for v in views],
        "colour signature": lambda: [colour_signature(v) for v in views],
        "quality": lambda: [image_quality(grey(v)) for v in views],
        "extract_batch of 8": lambda: extractor.extract_batch(sample, raw),
    }
    shape = sample[0].rgb.shape
    print(f"\n== ms per image ({len(sample)} images of {shape[1]}x{shape[0]} px, {repeat} runs)")
    for name, step in steps.items():
        print(f"{name:26s} {_ms(step, repeat, len(sample)):7.1f}")
    singles: dict[str, Callable[[], object]] = {
        "extract, one image": lambda: extractor.extract(sample[0], raw[0]),
        "embedding, batch of 1": lambda: embedder.embed(views[:1]),
    }
    for name, step in singles.items():
        print(f"{name:26s} {_ms(step, repeat * 4):7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("similar", type=Path)
    parser.add_argument("--kodak", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    kodak = args.kodak or args.similar / "photos" / "kodak24"
    extractor = ImageFeatureExtractor(ImageEmbedder())
    labelled = load_sets(args.similar, kodak if kodak.is_dir() else None)
    features = extractor.extract_batch(
        [image for _, _, image, _ in labelled], [data for _, _, _, data in labelled]
    )
    report("labelled sets + Kodak singletons", labelled, features)
    if kodak.is_dir():
        synthetic = bursts(kodak)
        burst_features = extractor.extract_batch([i for _, _, i, _ in synthetic])
        report("synthetic Kodak bursts", synthetic, burst_features)
        per_transform(synthetic, burst_features)
    timings(labelled, extractor, args.repeat)


if __name__ == "__main__":
    main()
