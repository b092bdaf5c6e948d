"""int8 quantisation of the default networks: CPU time and output agreement against fp32.

    python bench/quantised.py [--photos FOLDER] [--runs 5] [--out DIR]

Calibration inputs are what the default path feeds each network on the pinned sample
photos (local/samples.py: face_recognition's and insightface's test photos), recorded
by running the production detector and embedders over them, so the calibration set can
be rebuilt on any machine. Each network is quantised statically (QDQ, per-channel int8
weights) in a few variants and timed, with one onnxruntime thread and the production
batch shapes, in this thread's CPU time (other load on the machine does not inflate it):
FaceNet and dlib's ResNet at one face's batch (FaceNet: the face; dlib: the face and its
mirror), RetinaFace at the canvases of the first photo of FOLDER (default: the sample
photos). Agreement is the cosine between fp32 and int8 vectors of the calibration
faces (embedders) or the largest score difference over anchors (detector); the
recognition quality benches (verification, cluster_quality, search) decide adoption.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OPENIMM_THREADS", "1")

NETWORKS = {
    "facenet-vggface2": "facenet-vggface2.onnx",
    "dlib_face_recognition_resnet_model_v1": "dlib_face_recognition_resnet_model_v1.onnx",
    "retinaface-mnet": "retinaface-mnet.onnx",
}


def record_feeds(photos: list[Path]) -> dict[str, list[dict[str, np.ndarray]]]:
    """Every input the default path feeds each network for these photos, by model stem."""
    import onnxruntime as ort

    from openimm.bootstrap import Settings, configured_parts
    from openimm.vision import onnx_session
    from openimm.vision.decode import decode_image

    feeds: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
    run = ort.InferenceSession.run

    def recording_run(session: Any, outputs: Any, feed: dict[str, Any], *a: Any) -> Any:
        names = {id(s): Path(k).stem for k, s in onnx_session._sessions.items()}
        feeds[names.get(id(session), "?")].append({k: np.array(v) for k, v in feed.items()})
        return run(session, outputs, feed, *a)

    ort.InferenceSession.run = recording_run  # type: ignore[method-assign]
    try:
        parts = configured_parts(Settings.from_env())
        for path in photos:
            image = decode_image(path.read_bytes())
            faces = parts.detector.detect(image)
            if faces:
                parts.embedder.embed([parts.embedder.align(image, f) for f in faces])
    finally:
        ort.InferenceSession.run = run  # type: ignore[method-assign]
    return feeds


class Feeds:
    """CalibrationDataReader over recorded feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._rows = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._rows, None)


def split_rows(feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Each batch item on its own: calibration sees single inputs."""
    return [
        {k: v[i : i + 1] for k, v in feed.items()}
        for feed in feeds
        for i in range(len(next(iter(feed.values()))))
    ]


def quantise(source: Path, target: Path, feeds: list[dict[str, np.ndarray]], variant: str) -> None:
    """A QDQ int8 copy of `source` calibrated on `feeds`."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_suffix(".pre.onnx")
    model = onnx.load(str(source))
    if max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:
        # per-channel DequantizeLinear (its `axis`) needs opset 13: RetinaFace's is 11
        model = version_converter.convert_version(model, 13)
    upgraded = target.with_suffix(".opset.onnx")
    onnx.save(model, str(upgraded))
    quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
    if variant == "dynamic":
        quantize_dynamic(str(prepared), str(target), per_channel=True, weight_type=QuantType.QInt8)
        return
    activations = QuantType.QInt8 if "s8" in variant else QuantType.QUInt8
    method = CalibrationMethod.Percentile if "pct" in variant else CalibrationMethod.MinMax
    extra: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if "pw" in variant:
        # only full convolutions, not depthwise ones nor the output heads (RetinaFace)
        nodes = onnx.load(str(prepared)).graph.node
        options["op_types_to_quantize"] = ["Conv"]
        options["nodes_to_exclude"] = [
            n.name
            for n in nodes
            if n.op_type == "Conv"
            and (any(a.name == "group" and a.i > 1 for a in n.attribute) or "head" in n.name)
        ]
    if method == CalibrationMethod.Percentile:
        extra["CalibPercentile"] = 99.999
    quantize_static(
        str(prepared),
        str(target),
        Feeds(split_rows(feeds)),
        quant_format=QuantFormat.QOperator if "qop" in variant else QuantFormat.QDQ,
        activation_type=activations,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range="rr" in variant,
        calibrate_method=method,
        extra_options=extra,
        **options,
    )


def session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def cpu_ms(sess: Any, feed: dict[str, np.ndarray], runs: int) -> float:
    """Least thread CPU time of one run, in ms."""
    sess.run(None, feed)
    best = float("inf")
    for _ in range(runs):
        start = time.thread_time()
        sess.run(None, feed)
        best = min(best, time.thread_time() - start)
    return 1000 * best


def agreement(name: str, fp32: Any, int8: Any, feeds: list[dict[str, np.ndarray]]) -> str:
    """How far the int8 outputs are from fp32's on the calibration feeds."""
    if name == "retinaface-mnet":
        worst = 0.0
        for feed in feeds:
            a, b = fp32.run(None, feed)[1], int8.run(None, feed)[1]
            worst = max(worst, float(np.abs(a[..., 1] - b[..., 1]).max()))
        return f"max score diff {worst:.3f}"
    cosines = []
    for feed in feeds:
        a, b = fp32.run(None, feed)[0], int8.run(None, feed)[0]
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        cosines.extend((a * b).sum(axis=1).tolist())
    return f"cosine to fp32 min {min(cosines):.4f} mean {np.mean(cosines):.4f} ({len(cosines)})"


def timing_feed(name: str, feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """A production-shaped input: one face for FaceNet, a face and its mirror for dlib, the
    largest canvas for RetinaFace."""
    if name == "retinaface-mnet":
        return max(feeds, key=lambda f: next(iter(f.values())).size)
    if name == "facenet-vggface2":
        return {k: v[:1] for k, v in feeds[0].items()}
    return {k: v[:2] for k, v in feeds[0].items()}


def production_int8(name: str) -> Path | None:
    """The int8 graph the default path makes (vision/quantised_graphs.py), if it makes one."""
    from openimm.vision.facenet_embedder import FaceNetEmbedder
    from openimm.vision.model_store import model_dir
    from openimm.vision.onnx_embedder import OnnxDlibEmbedder
    from openimm.vision.quantised_graphs import quantised_graph

    embedders: dict[str, Any] = {
        "facenet-vggface2": FaceNetEmbedder(int8=True),
        "dlib_face_recognition_resnet_model_v1": OnnxDlibEmbedder(int8=True),
    }
    if name not in embedders:
        return None
    embedders[name]._session()  # makes the copy if this machine has none yet
    return quantised_graph(model_dir() / NETWORKS[name], model_dir())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--photos", type=Path, action="append", default=[], help="RetinaFace timing photos"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--variants",
        default="",
        help="also try recipes, comma-separated: u8, s8 (activations), -rr (7-bit weights), "
        "-pct (percentile ranges), -qop (QOperator), dynamic; e.g. u8,s8-rr,dynamic",
    )
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "openimm-int8")
    args = parser.parse_args()

    from openimm.local.samples import fetch_sample_photos, sample_dir
    from openimm.vision.model_store import model_dir

    samples = sorted(fetch_sample_photos(sample_dir()).iterdir())
    calibration = record_feeds(samples)
    timings = {"samples": calibration}
    for folder in args.photos:
        timings[folder.name] = record_feeds(sorted(folder.iterdir())[:1])
    args.out.mkdir(parents=True, exist_ok=True)
    variants = [v for v in args.variants.split(",") if v]
    print(f"load average {os.getloadavg()[0]:.2f}; one onnxruntime thread; thread CPU ms per run")
    for name in args.networks.split(","):
        source = model_dir() / NETWORKS[name]
        feeds = calibration[name]
        fp32 = session(source)
        graphs: list[tuple[str, Path | None]] = [("default", production_int8(name))]
        for variant in variants:
            target = args.out / f"{name}-{variant}.onnx"
            start = time.perf_counter()
            try:
                quantise(source, target, feeds, variant)
            except Exception as exc:  # a variant the tool cannot make: say so, go on
                print(f"  {variant:<10} failed: {exc}")
                continue
            print(f"  ({variant} made in {time.perf_counter() - start:.1f} s)")
            graphs.append((variant, target))
        made = [(label, session(path)) for label, path in graphs if path is not None]
        for where, recorded in timings.items():
            detector = name == "retinaface-mnet"
            # an embedder's input is one chip whatever the photo: timed once
            if name not in recorded or (detector == (where == "samples") and args.photos):
                continue
            feed = timing_feed(name, recorded[name])
            shape = "x".join(map(str, next(iter(feed.values())).shape))
            base = cpu_ms(fp32, feed, args.runs)
            print(f"{name}, input {shape} ({where}): fp32 {base:.1f} ms")
            for label, int8 in made:
                ms = cpu_ms(int8, feed, args.runs)
                print(
                    f"  int8 {label:<10} {ms:7.1f} ms  x{base / ms:.2f}  "
                    + agreement(name, fp32, int8, feeds)
                )


if __name__ == "__main__":
    sys.exit(main())
