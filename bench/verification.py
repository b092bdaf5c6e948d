"""Face verification accuracy of the embedders on a labelled face set (LFW-style).

    python bench/verification.py LFW_DEV [--embedders dlib,dlib-noflip] [--limit N]

LFW_DEV is a folder with LABELS.csv (`path,identity,...`, paths relative to it), one
person per image, the person being the largest face (deep-funneled LFW is made so).
Each image is decoded, RetinaFace finds its largest face, and each embedder aligns and
embeds it; vectors are cached per embedder in a .npz under --cache, so a rerun or a
larger --limit computes only what is missing. Pairs: every genuine (same identity)
pair and a fixed-seed sample of impostor pairs; the distance is 1 - cosine similarity,
and an image without a face makes its pairs +inf (never accepted).

Printed per embedder: accuracy at the best threshold, 10-fold (threshold fit on 9 folds,
scored on the 10th; both classes weigh half, as LFW's 50/50 pairs do), TAR at FAR 1e-3
and 1e-4, and the EER; then the mean and spread of each embedder's impostor distances,
the constants a fusion pins (vision/fused_embedder.py). Fusions (embedders.FUSIONS, e.g.
`fused`) are built from their parts' cached vectors by the production code, so naming
one embeds only the parts.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from embedders import EMBEDDERS, FUSIONS, available, fingerprint, fusion_vectors, make_embedder
from verification_metrics import (
    Floats,
    cosine_distances,
    cv_accuracy,
    equal_error_rate,
    genuine_pairs,
    impostor_norm,
    impostor_pairs,
    tar_at_far,
)

from openimm.vision import (
    DecodedImage,
    DetectedFace,
    FaceEmbedder,
    RetinaFaceDetector,
    decode_image,
)

FARS = (1e-3, 1e-4)
BATCH = 16
SAVE_EVERY = 256


@dataclass(frozen=True)
class LabelledImage:
    path: str
    identity: str


@dataclass
class Embeddings:
    """One embedder's vectors for images of the set, by path; zeros where no face."""

    paths: list[str]
    vectors: npt.NDArray[np.float32]
    found: npt.NDArray[np.bool_]


def read_labels(folder: Path) -> list[LabelledImage]:
    """The set's images in LABELS.csv order."""
    with (folder / "LABELS.csv").open(newline="") as handle:
        return [LabelledImage(row["path"], row["identity"]) for row in csv.DictReader(handle)]


def subset(images: list[LabelledImage], limit: int | None, seed: int) -> list[LabelledImage]:
    """Whole identities in a fixed-seed order until `limit` images: keeps genuine pairs."""
    if limit is None or limit >= len(images):
        return images
    by_identity: dict[str, list[LabelledImage]] = {}
    for image in images:
        by_identity.setdefault(image.identity, []).append(image)
    names = sorted(by_identity)
    chosen: list[LabelledImage] = []
    for index in np.random.default_rng(seed).permutation(len(names)):
        chosen.extend(by_identity[names[int(index)]])
        if len(chosen) >= limit:
            break
    return chosen[:limit]


def cache_file(cache: Path, folder: Path, embedder: str) -> Path:
    """Where an embedder's vectors for this set live: keyed by the set and the embedder's code."""
    digest = hashlib.sha256((folder / "LABELS.csv").read_bytes()).hexdigest()[:12]
    return cache / f"{folder.name}-{digest}-{embedder}-{fingerprint(embedder)}.npz"


def load_cache(path: Path) -> dict[str, tuple[npt.NDArray[np.float32], bool]]:
    if not path.exists():
        return {}
    with np.load(path) as data:
        return {
            str(p): (v, bool(f))
            for p, v, f in zip(data["paths"], data["vectors"], data["found"], strict=True)
        }


def save_cache(path: Path, entries: dict[str, tuple[npt.NDArray[np.float32], bool]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    paths = sorted(entries)
    partial = path.with_suffix(".partial.npz")
    np.savez(
        partial,
        paths=np.asarray(paths),
        vectors=np.stack([entries[p][0] for p in paths]),
        found=np.asarray([entries[p][1] for p in paths]),
    )
    partial.replace(path)


def largest_face(detector: RetinaFaceDetector, image: DecodedImage) -> DetectedFace | None:
    faces = detector.detect(image)
    return max(faces, key=lambda f: f.box.width * f.box.height, default=None)


def embed_set(
    folder: Path,
    images: list[LabelledImage],
    names: list[str],
    cache: Path,
) -> dict[str, Embeddings]:
    """Vectors of each image's largest face for each embedder, from the cache where it can."""
    fused = [n for n in names if n in FUSIONS]
    if fused:
        parts = sorted({p for n in fused for p in FUSIONS[n][:2]} | (set(names) - set(fused)))
        result = embed_set(folder, images, parts, cache)
        for name in fused:
            dlib, facenet, _ = FUSIONS[name]
            vectors = {p: result[p].vectors for p in (dlib, facenet)}
            result[name] = Embeddings(
                paths=result[dlib].paths,
                vectors=fusion_vectors(name, vectors),
                found=result[dlib].found & result[facenet].found,
            )
        return {n: result[n] for n in names}
    entries = {name: load_cache(cache_file(cache, folder, name)) for name in names}
    todo = [im for im in images if any(im.path not in entries[n] for n in names)]
    if todo:
        embedders = {name: make_embedder(name) for name in names}
        detector = RetinaFaceDetector()
        start = time.perf_counter()
        for offset in range(0, len(todo), BATCH):
            _embed_batch(folder, todo[offset : offset + BATCH], embedders, detector, entries)
            done = offset + BATCH
            if done % SAVE_EVERY == 0 or done >= len(todo):
                for name in names:
                    save_cache(cache_file(cache, folder, name), entries[name])
                rate = min(done, len(todo)) / (time.perf_counter() - start)
                left = max(len(todo) - done, 0) / rate
                print(
                    f"  embedded {min(done, len(todo))}/{len(todo)} images, {rate:.1f}/s, "
                    f"{left / 60:.1f} min left",
                    file=sys.stderr,
                    flush=True,
                )
    result = {}
    for name in names:
        rows = [entries[name][im.path] for im in images]
        result[name] = Embeddings(
            paths=[im.path for im in images],
            vectors=np.stack([v for v, _ in rows]).astype(np.float32),
            found=np.asarray([f for _, f in rows], dtype=bool),
        )
    return result


def _embed_batch(
    folder: Path,
    batch: list[LabelledImage],
    embedders: dict[str, FaceEmbedder],
    detector: RetinaFaceDetector,
    entries: dict[str, dict[str, tuple[npt.NDArray[np.float32], bool]]],
) -> None:
    located = []
    for item in batch:
        image = decode_image((folder / item.path).read_bytes())
        located.append((item, image, largest_face(detector, image)))
    for name, embedder in embedders.items():
        missing = [(it, im, f) for it, im, f in located if it.path not in entries[name]]
        with_face = [(it, im, f) for it, im, f in missing if f is not None]
        vectors = embedder.embed([embedder.align(im, f) for _, im, f in with_face])
        for (item, _, _), vector in zip(with_face, vectors, strict=True):
            entries[name][item.path] = (vector, True)
        for item, _, face in missing:
            if face is None:
                entries[name][item.path] = (np.zeros(embedder.dim, dtype=np.float32), False)


@dataclass(frozen=True)
class Scores:
    """Distances of the genuine and impostor pairs under one embedder or fusion."""

    genuine: Floats
    impostor: Floats


def report_line(label: str, scores: Scores, found: str) -> str:
    accuracy, spread, threshold = cv_accuracy(scores.genuine, scores.impostor)
    tars = [tar_at_far(scores.genuine, scores.impostor, far)[0] for far in FARS]
    eer, _ = equal_error_rate(scores.genuine, scores.impostor)
    return (
        f"{label:<34} {found:>11}  {accuracy:.4f} ± {spread:.4f}  {threshold:7.3f}  "
        + "  ".join(f"{t:8.4f}" for t in tars)
        + f"  {eer:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="labelled face set with LABELS.csv (lfw-dev)")
    parser.add_argument(
        "--embedders",
        default=None,
        help=f"comma-separated, from {', '.join([*EMBEDDERS, *FUSIONS])} (default: all)",
    )
    parser.add_argument("--limit", type=int, default=None, help="first N images (whole ids)")
    parser.add_argument("--impostors", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "openimm-bench-cache",
        help="where embeddings are kept between runs",
    )
    args = parser.parse_args()

    names = args.embedders.split(",") if args.embedders else available()
    images = subset(read_labels(args.folder), args.limit, args.seed)
    embeddings = embed_set(args.folder, images, names, args.cache)
    labels = [im.identity for im in images]
    genuine = genuine_pairs(labels)
    impostor = impostor_pairs(labels, args.impostors, args.seed)

    print(
        f"{args.folder.name}: {len(images)} images, {len(set(labels))} identities; "
        f"pairs: {genuine[0].size} genuine, {impostor[0].size} impostor (seed {args.seed})"
    )
    print("distance 1 - cosine; a pair with an image without a face is never accepted")
    allowed = ", ".join(f"{int(far * impostor[0].size)} at FAR {far:.0e}" for far in FARS)
    print(f"impostor pairs accepted at most: {allowed} (few: TAR there is noisy)")
    print(
        f"{'embedder':<34} {'faces found':>11}  {'accuracy (10-fold)':<17}  {'thresh':>7}  "
        + "  ".join(f"{'TAR@' + format(far, '.0e'):>8}" for far in FARS)
        + "  EER"
    )
    scores: dict[str, Scores] = {}
    for name in names:
        emb = embeddings[name]
        scores[name] = Scores(
            cosine_distances(emb.vectors, *genuine, emb.found),
            cosine_distances(emb.vectors, *impostor, emb.found),
        )
        found = f"{int(emb.found.sum())}/{len(images)}"
        print(report_line(name, scores[name], found))

    for name in names:
        mean, std = impostor_norm(scores[name].impostor)
        print(f"  {name}: impostor distance mean {mean:.4f}, std {std:.4f}")


if __name__ == "__main__":
    main()
