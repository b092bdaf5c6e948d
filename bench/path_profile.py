"""Where the analysis of one photo spends its time, per stage and per network.

    python bench/path_profile.py FOLDER [--limit N] [--threads 1] [--similar-images]

Runs the detect and embed stages' vision work with the default settings (the detector,
embedder and attributes `openimm run` uses; with `--similar-images` also the measures a
similar-image task takes of each photo) over the photos of
FOLDER in this process, one photo at a time, after one warm-up photo. Prints
milliseconds per photo for each stage (decode, detect, attributes, align, embed,
similar-image features) and, inside them, for each onnxruntime network and the
similar-image measures; `calls` counts network runs. `--threads` is onnxruntime's
intra-op threads ($OPENIMM_THREADS). Times are this thread's CPU time, so other work
on the machine does not inflate them; with the default single onnxruntime thread the
networks run on this thread too, and the figures are the CPU cost of a photo, which is
what a 2-core machine analysing two photos at once pays per photo.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Clock:
    """Seconds and calls per name."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def wrap(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        """`call`, timed under `name`."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds[name] += time.thread_time() - start
                self.calls[name] += 1

        return timed


def instrument(clock: Clock) -> None:
    """Time every onnxruntime run by its model file, and the similar-image measures."""
    import onnxruntime as ort

    from openimm.vision import onnx_session, shot_analysis

    run = ort.InferenceSession.run

    def named_run(session: Any, *args: Any, **kwargs: Any) -> Any:
        names = {id(s): Path(k.split("#")[0]).stem for k, s in onnx_session._sessions.items()}
        return clock.wrap(f"  net {names.get(id(session), '?')}", run)(session, *args, **kwargs)

    ort.InferenceSession.run = named_run  # type: ignore[method-assign]
    for name in ("image_score", "keypoints"):
        setattr(shot_analysis, name, clock.wrap(f"  {name}", getattr(shot_analysis, name)))


def align_all(embedder: Any, image: Any, faces: list[Any]) -> list[Any]:
    """Every face's chip, as the detect stage aligns them."""
    return [embedder.align(image, face) for face in faces]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--similar-images", action="store_true")
    args = parser.parse_args()
    os.environ["OPENIMM_THREADS"] = str(args.threads)
    from openimm.bootstrap import Settings, configured_parts
    from openimm.local.media_files import IMAGE_SUFFIXES
    from openimm.vision.decode import decode_image

    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    files = files[: args.limit + 1]
    if len(files) < 2:
        raise SystemExit(f"{args.folder}: needs at least 2 photos")
    parts = configured_parts(Settings.from_env())
    clock = Clock()
    instrument(clock)
    faces_found = 0
    for index, path in enumerate(files):
        if index == 1:  # the first photo loads the networks: not part of the figures
            clock.seconds.clear()
            clock.calls.clear()
            faces_found = 0
            begin = time.thread_time()
        data = path.read_bytes()
        image = clock.wrap("decode", decode_image)(data)
        faces = clock.wrap("detect", parts.detector.detect)(image)
        faces_found += len(faces)
        if faces and parts.attributes is not None:
            clock.wrap("attributes", parts.attributes.estimate)(image, faces)
        if faces:
            chips = clock.wrap("align", align_all)(parts.embedder, image, faces)
            clock.wrap("embed", parts.embedder.embed)(chips)
        if args.similar_images and parts.shots is not None:
            clock.wrap("similar-image features", parts.shots.analyse)(image, data)
    photos = len(files) - 1
    total = time.thread_time() - begin
    print(
        f"{photos} photos of {args.folder.name}, {faces_found} faces, onnxruntime threads "
        f"{args.threads}: {1000 * total / photos:.1f} ms of CPU per photo"
    )
    print(f"{'stage / network':<40}{'ms/photo':>10}{'share':>8}{'calls':>8}")
    for name, seconds in sorted(clock.seconds.items(), key=lambda kv: -kv[1]):
        share = seconds / total
        calls = clock.calls[name] if name.startswith("  net") else ""
        print(f"{name:<40}{1000 * seconds / photos:>10.1f}{share:>8.0%}{calls!s:>8}")


if __name__ == "__main__":
    sys.exit(main())
