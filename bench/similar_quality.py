"""Similar-image grouping against labels, beside an imagededup-style pHash baseline.

    python bench/similar_quality.py SIMILAR_DIR [--kodak DIR] [--no-verify]

SIMILAR_DIR holds one folder per labelled set, each with a LABELS.csv (path,group_id,...);
photos in `--kodak` (default SIMILAR_DIR/photos/kodak24) are different photos of often
similar scenes. Rows of the table:

- each labelled set alone, then all of them with the Kodak photos as singletons;
- synthetic bursts: each Kodak photo, a 5% crop on every side, exposure x0.7 and x1.3,
  a JPEG quality-50 copy, a 3%/2% shift, a 3 degree rotation (scaled 1.08 to fill the
  frame) and a Gaussian blur of 2 px: 8 frames per group;
- hard negatives: the left and the right 45% of each Kodak photo, two views of one place
  that share no pixel; every image is its own group, so any grouped pair is wrong;
- the synthetic bursts again, grouped incrementally: the photo, crop and exposure frames
  first, then the rest joining the clusters of the first run.

Columns: pairwise precision / recall / F of openimm.grouping.similar_images (the
Open-NSFW embedding, pHash, ORB + RANSAC verification of borderline pairs; `--no-verify`
runs it without the verifier) and of the baseline: imagededup's PHash (the image resized
to 32x32 with Lanczos, grey, an unnormalised 2-D DCT-II, bit = coefficient >= median of
the 8x8 lowest frequencies without the DC term), every pair within Hamming distance 10
(imagededup's default max_distance_threshold) counted as duplicates, as find_duplicates
lists each image's duplicates. Ours is a partition and is scored with cluster_metrics;
the baseline's duplicate lists are not, and are scored pair by pair.

Every image is measured as the detect stage measures a photo (vision/shot_analysis.py,
the embedding kept as float16 as domain/shots.py stores it), so the figures are those of
production. Then the ImageScore check: in how many bursts the original outranks each of
its copies (a 1 px blur and Gaussian noise of 6 levels added for the score only), and the
time per image of each step.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from cluster_metrics import quality
from PIL import Image

from openimm.grouping.similar_images import (
    GroupingConfig,
    GroupingOutcome,
    ImageToGroup,
    group_similar_images,
)
from openimm.vision import decode_image
from openimm.vision.geometric_match import same_shot
from openimm.vision.shot_analysis import ShotAnalyser, ShotFeatures
from openimm.vision.types import DecodedImage, Pixels

BASELINE_BITS = 10
PRODUCTION = "shot features (detect stage)"
BURST_KINDS = ("orig", "crop5", "dark", "bright", "jpeg50", "shift", "rot3", "blur")
FIRST_RUN_KINDS = ("orig", "crop5", "dark", "bright")
SCORE_ONLY_KINDS = ("blur1", "noise6")


@dataclass
class Item:
    """One image of a set: its name, true group and everything measured on it."""

    name: str
    group: str
    rgb: Pixels
    data: bytes | None = None
    shot: ShotFeatures | None = None
    baseline_hash: int = 0


def labelled_sets(root: Path) -> dict[str, list[Item]]:
    """Every set under root that has a LABELS.csv, by folder name."""
    sets: dict[str, list[Item]] = {}
    for labels in sorted(root.glob("*/LABELS.csv")):
        with labels.open(newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
        items = []
        for row in rows:
            data = (labels.parent / row["path"]).read_bytes()
            items.append(Item(row["path"], row["group_id"], decode_image(data).rgb, data))
        sets[labels.parent.name] = items
    return sets


def _jpeg(rgb: Pixels, quality_level: int) -> Pixels:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality_level)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def frames(rgb: Pixels) -> dict[str, Pixels]:
    """The synthetic burst of one photo, and the copies made for the score check only."""
    h, w = rgb.shape[:2]
    shift = np.float32([[1, 0, 0.03 * w], [0, 1, 0.02 * h]])
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), 3.0, 1.08)
    noise = np.random.default_rng(0).normal(0.0, 6.0, rgb.shape)
    return {
        "orig": rgb,
        "crop5": rgb[round(0.05 * h) : round(0.95 * h), round(0.05 * w) : round(0.95 * w)],
        "dark": np.clip(rgb * 0.7, 0, 255).astype(np.uint8),
        "bright": np.clip(rgb * 1.3, 0, 255).astype(np.uint8),
        "jpeg50": _jpeg(rgb, 50),
        "shift": cv2.warpAffine(rgb, shift, (w, h), borderMode=cv2.BORDER_REFLECT),
        "rot3": cv2.warpAffine(rgb, rotation, (w, h), borderMode=cv2.BORDER_REFLECT),
        "blur": cv2.GaussianBlur(rgb, (0, 0), 2.0),
        "blur1": cv2.GaussianBlur(rgb, (0, 0), 1.0),
        "noise6": np.clip(rgb + noise, 0, 255).astype(np.uint8),
    }


def synthetic_sets(kodak: list[Path]) -> tuple[list[Item], list[Item], list[Item]]:
    """Burst frames, score-only copies and far-apart halves of the Kodak photos."""
    bursts: list[Item] = []
    extra: list[Item] = []
    halves: list[Item] = []
    for path in kodak:
        rgb = decode_image(path.read_bytes()).rgb
        for kind, frame in frames(rgb).items():
            item = Item(f"{path.stem}/{kind}", path.stem, np.ascontiguousarray(frame))
            (bursts if kind in BURST_KINDS else extra).append(item)
        width = round(0.45 * rgb.shape[1])
        for side, part in (("left", rgb[:, :width]), ("right", rgb[:, -width:])):
            name = f"{path.stem}/{side}"
            halves.append(Item(name, name, np.ascontiguousarray(part)))
    return bursts, extra, halves


def imagededup_phash(rgb: Pixels) -> int:
    """imagededup's PHash of an RGB image, as a 64-bit int."""
    small = Image.fromarray(rgb).resize((32, 32), Image.Resampling.LANCZOS).convert("L")
    pixels = np.asarray(small, dtype=np.float64)
    n = np.arange(32)
    # scipy.fftpack.dct's unnormalised type II: 2 * sum x[n] cos(pi k (2n + 1) / 2N)
    basis = 2.0 * np.cos(np.pi * n[:, None] * (2 * n[None, :] + 1) / 64.0)
    low = (basis @ pixels @ basis.T)[:8, :8].ravel()
    bits = low >= np.median(low[1:])
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


Timings = dict[str, list[float]]


def measure(items: Sequence[Item], analyser: ShotAnalyser, timings: Timings) -> None:
    """Measure every item as production does, and the baseline hash; time both."""
    for item in items:
        start = time.perf_counter()
        item.shot = analyser.analyse(_decoded(item.rgb), item.data)
        timings[PRODUCTION].append(time.perf_counter() - start)
        item.baseline_hash = _timed(timings["baseline pHash"], imagededup_phash, item.rgb)


T = TypeVar("T")


def _timed(into: list[float], step: Callable[[Pixels], T], rgb: Pixels) -> T:
    start = time.perf_counter()
    value = step(rgb)
    into.append(time.perf_counter() - start)
    return value


def _decoded(rgb: Pixels) -> DecodedImage:
    return DecodedImage(rgb=rgb, width=rgb.shape[1], height=rgb.shape[0], format="RAW")


def to_group(item: Item, cluster_id: str | None = None) -> ImageToGroup:
    """What the grouping is given about one measured image."""
    assert item.shot is not None
    return ImageToGroup(
        file_id=item.name,
        embedding=item.shot.embedding.astype(np.float16).astype(np.float32),
        phash=item.shot.phash,
        captured_at=item.shot.captured_at,
        score=item.shot.score.overall,
        cluster_id=cluster_id,
        examined=cluster_id is not None,
    )


class Ours:
    """Runs openimm's grouping over measured items, counting verifications and time."""

    def __init__(self, verify: bool) -> None:
        self.verify = verify
        self.seconds = 0.0
        self.images = 0
        self.verifications = 0
        self._ids = itertools.count(1)

    def run(self, items: Sequence[Item], previous: dict[str, str | None]) -> GroupingOutcome:
        """Group the items, given the clusters of an earlier run (item name -> cluster id)."""
        by_name = {item.name: item for item in items}

        def check(a: str, b: str) -> bool | None:
            first, second = by_name[a].shot, by_name[b].shot
            if first is None or second is None:
                return None
            return same_shot(first.keypoints, second.keypoints)

        start = time.perf_counter()
        outcome = group_similar_images(
            [to_group(item, previous.get(item.name)) for item in items],
            GroupingConfig(),
            lambda: f"cluster-{next(self._ids)}",
            check if self.verify else None,
        )
        self.seconds += time.perf_counter() - start
        self.images += len(items)
        self.verifications += outcome.verifications
        return outcome


def pair_scores(together: set[tuple[int, int]], truth: Sequence[str]) -> tuple[float, float, float]:
    """Pairwise precision, recall and F of a set of index pairs said to be duplicates."""
    same = {(i, j) for i, j in itertools.combinations(range(len(truth)), 2) if truth[i] == truth[j]}
    right = len(together & same)
    precision = right / len(together) if together else 1.0
    recall = right / len(same) if same else 1.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f


def baseline(items: Sequence[Item]) -> tuple[float, float, float]:
    """imagededup-style duplicates: every pair within BASELINE_BITS of pHash."""
    together = {
        (i, j)
        for i, j in itertools.combinations(range(len(items)), 2)
        if (items[i].baseline_hash ^ items[j].baseline_hash).bit_count() <= BASELINE_BITS
    }
    return pair_scores(together, [item.group for item in items])


def _row(name: str, items: Sequence[Item], ours: tuple[float, ...], base: tuple[float, ...]) -> str:
    groups = len({item.group for item in items})
    cells = " | ".join(f"{p:5.3f} {r:5.3f} {f:5.3f}" for p, r, f in (ours, base))
    return f"{name:34s} {len(items):4d} {groups:4d} | {cells}"


def evaluate(name: str, items: Sequence[Item], ours: Ours) -> GroupingOutcome:
    """Print one table row, ours and the baseline on one set; our outcome."""
    outcome = ours.run(items, {})
    predicted = [outcome.assignments[item.name] for item in items]
    scored = quality(predicted, [item.group for item in items])
    print(_row(name, items, scored.pairwise, baseline(items)))
    return outcome


def incremental(name: str, items: Sequence[Item], ours: Ours) -> str:
    """The bursts in two runs: the first frames, then all frames with the first clusters."""
    first = [item for item in items if item.name.split("/")[1] in FIRST_RUN_KINDS]
    earlier = ours.run(first, {}).assignments
    kept = {n: c for n, c in earlier.items() if c is not None}
    assignments = ours.run(items, kept).assignments
    moved = sum(1 for n, c in kept.items() if assignments[n] != c)
    scored = quality([assignments[item.name] for item in items], [item.group for item in items])
    return _row(name, items, scored.pairwise, baseline(items)) + f"  ({moved} moved)"


def score_check(bursts: Sequence[Item], extra: Sequence[Item], grouped: GroupingOutcome) -> None:
    """In how many bursts the original's ImageScore beats each copy; the shots picked."""
    overall = {item.name: item.shot.score.overall for item in [*bursts, *extra] if item.shot}
    photos = sorted({item.group for item in bursts})
    print(f"\n== ImageScore: the original outranks its copy, of {len(photos)} photos")
    for kind in [k for k in BURST_KINDS if k != "orig"] + list(SCORE_ONLY_KINDS):
        ratios = [overall[f"{p}/orig"] / overall[f"{p}/{kind}"] for p in photos]
        wins = sum(1 for r in ratios if r > 1.0)
        spread = f"min {min(ratios):5.3f} med {np.median(ratios):5.3f}"
        print(f"{kind:8s} {wins:3d}   original / copy: {spread}")
    picked = Counter(members[0].split("/")[1] for members in grouped.clusters.values())
    print("best shot of each burst cluster, by kind:", dict(picked.most_common()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("similar", type=Path)
    parser.add_argument("--kodak", type=Path, default=None)
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args()
    kodak_dir = args.kodak or args.similar / "photos" / "kodak24"
    kodak = sorted(kodak_dir.glob("*.png")) if kodak_dir.is_dir() else []

    analyser = ShotAnalyser()
    # loads the network, so that no image's time includes it
    analyser.analyse(_decoded(np.zeros((64, 64, 3), dtype=np.uint8)), None)
    timings: Timings = {PRODUCTION: [], "baseline pHash": []}
    sets = labelled_sets(args.similar)
    singles = [
        Item(p.name, p.stem, decode_image(p.read_bytes()).rgb, p.read_bytes()) for p in kodak
    ]
    bursts, extra, halves = synthetic_sets(kodak)
    for items in [*sets.values(), singles, bursts, extra, halves]:
        if items:
            measure(items, analyser, timings)

    ours = Ours(verify=not args.no_verify)
    columns = f"{'ours P     R     F':17s} | imagededup pHash<=10 P R F"
    header = f"{'set':34s} {'imgs':>4s} {'grps':>4s} | {columns}"
    print(header)
    print("-" * len(header))
    for name, items in sets.items():
        evaluate(name, items, ours)
    everything = [item for items in sets.values() for item in items] + singles
    evaluate("labelled + Kodak singletons", everything, ours)
    if bursts:
        grouped = evaluate("synthetic Kodak bursts", bursts, ours)
        evaluate("far-apart halves (hard negatives)", halves, ours)
        print(incremental("bursts, incremental (2 runs)", bursts, ours))
        score_check(bursts, extra, grouped)

    print("\n== ms per image")
    for name, values in timings.items():
        print(f"{name:30s} {1000 * float(np.mean(values)):7.1f}")
    per_image = 1000 * ours.seconds / max(ours.images, 1)
    print(
        f"{'grouping (all rows above)':30s} {per_image:7.1f}  ({ours.verifications} verifications)"
    )


if __name__ == "__main__":
    main()
