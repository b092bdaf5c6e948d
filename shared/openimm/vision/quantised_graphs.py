"""int8 copies of the face embedding networks, derived once per machine and kept beside the models.

FaceNet and dlib's ResNet run 1.9x and 1.6x faster (one thread's CPU time per face) with
int8 weights and activations than in float32 on an AVX2 CPU without VNNI
(bench/quantised.py), and their vectors keep the benches' quality (bench/README.md,
"quantised.py"). The recipe is onnxruntime's static quantisation: QDQ nodes, int8
weights per output channel, uint8 activations, and weights of 7 bits (`reduce_range`):
AVX2's u8 x s8 multiply-add sums pairs of products into int16 and saturates on full-range
weights, which took FaceNet's vectors to a cosine of 0.63 with their float32 selves (0.998
with 7 bits). Activation ranges are calibrated (min/max) on what the network is fed for
the faces of the pinned sample photos (local/samples.py; mirrored too where the embedder
mirrors), so the graph is rebuilt alike from pinned files on any machine (the same bytes
each time on one machine). $OPENIMM_INT8=0 keeps the float32 networks.

The copy is made on first use, under `FOLDER` beside the optimised graphs, named by the
source file (a pinned model by its sha256, any other file by path, size and time), the
onnxruntime version and `RECIPE`. It costs the sample photos' download (once; they are
also the demo's) and about 15 s of CPU (12 s FaceNet, 3 s dlib), with a peak of about
600 MB, the first time; the next processes load it. A read-only model folder (a Lambda
image, an FC layer) gets its copies where it is built (`openimm models fetch --int8`):
packing the files changes their path or time, not their sha256. Where the folder cannot
be written, the samples cannot be had or the quantisation fails, the float32 network is
used: its vectors are interchangeable with the int8 ones (on
lfw-dev the fused vectors' cosine is 0.9993 at the median, 0.984 at worst, and pairs of
one of each verify as well as pairs of either), so a dataset may hold both.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from openimm.vision.optimized_graphs import writable_spot

INT8_ENV = "OPENIMM_INT8"
FOLDER = "quantised"
# bump when the way the graph is made changes, so older copies are not reused; that
# includes the calibration's inputs (v2: the detector's refined boxes and landmarks)
RECIPE = "qdq-u8-s8-per-channel-reduce-range-minmax-v2"

Feed = dict[str, np.ndarray[Any, Any]]

log = logging.getLogger(__name__)
_lock = threading.Lock()
_failed: set[Path] = set()


def quantised_graph(source: Path, models: Path) -> Path | None:
    """Where the int8 copy of the model file `source` is kept under `models`; None when
    there is no such file."""
    import onnxruntime as ort

    from openimm.vision.model_store import manifest

    try:
        stat = source.stat()
    except OSError:
        return None
    pinned = next((e for e in manifest() if e.name == source.name and e.sha256), None)
    if pinned is not None and pinned.size in (0, stat.st_size):
        # what the model store itself trusts on its hot path (a size, never a re-hash)
        origin = [f"sha256:{pinned.sha256}"]
    else:
        origin = [str(source.resolve()), str(stat.st_size), str(stat.st_mtime_ns)]
    identity = "\n".join([*origin, ort.__version__, RECIPE])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:20]
    return models / FOLDER / f"{source.stem}-int8-{digest}.onnx"


def int8_model(source: Path, calibration: Callable[[], list[Feed]]) -> Path | None:
    """The int8 copy of `source`, made now from `calibration`'s inputs if it is not kept
    yet; None where it cannot be kept or made (the caller runs `source`)."""
    from openimm.vision.model_store import model_dir

    if os.environ.get(INT8_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return None
    graph = quantised_graph(source, model_dir())
    if graph is None:
        return None
    with _lock:
        if graph.is_file():
            return graph
        if graph in _failed:
            return None
        spot = writable_spot(graph)
        if spot is None:
            return None
        try:
            quantise(source, spot, calibration())
            spot.replace(graph)
        except Exception:  # offline without the samples, a full disk: float32 serves
            log.warning("could not make the int8 copy of %s; using float32", source.name)
            _failed.add(graph)
            spot.unlink(missing_ok=True)
            return None
    return graph


def failed_copies() -> list[Path]:
    """The int8 copies this process could not make (their networks run in float32)."""
    with _lock:
        return sorted(_failed)


class EmbeddingNetwork:
    """An embedder's network: its int8 copy where asked for and it can be had, else the
    pinned file, chosen on the first session asked for (not again for every batch)."""

    def __init__(self, model_name: str, calibration: Callable[[], list[Feed]] | None) -> None:
        self._name = model_name
        # None: the float32 network
        self._calibration = calibration
        self._path: Path | None = None

    def session(self) -> Any:
        """The onnxruntime session of the chosen graph."""
        from openimm.vision.model_store import model_path
        from openimm.vision.onnx_session import onnx_session

        if self._path is None:
            source = model_path(self._name)
            graph = int8_model(source, self._calibration) if self._calibration else None
            self._path = graph or source
        return onnx_session(self._path)


class _Feeds:
    """onnxruntime's CalibrationDataReader over prepared inputs."""

    def __init__(self, feeds: list[Feed]) -> None:
        self._rows = iter(feeds)

    def get_next(self) -> Feed | None:
        return next(self._rows, None)


def quantise(source: Path, target: Path, feeds: list[Feed]) -> None:
    """Write the int8 (QDQ) copy of `source` to `target`, activation ranges from `feeds`."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not feeds:
        raise ValueError("no calibration inputs")
    with tempfile.TemporaryDirectory(prefix="openimm-int8-") as tmp:
        model = onnx.load(str(source))
        if max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:
            # a per-channel DequantizeLinear (its `axis`) needs opset 13
            model = version_converter.convert_version(model, 13)
        upgraded, prepared = Path(tmp, "source.onnx"), Path(tmp, "prepared.onnx")
        onnx.save(model, str(upgraded))
        del model
        # folds batch norms into convolutions, so each is quantised once
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(target),
            _Feeds(feeds),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            calibrate_method=CalibrationMethod.MinMax,
        )


def sample_chips(
    align: Callable[[Any, Any], np.ndarray[Any, Any]], *, mirrored: bool
) -> list[np.ndarray[Any, Any]]:
    """`align`'s chip of every face RetinaFace finds on the pinned sample photos, in a fixed
    order; with `mirrored` each chip's mirror image follows it."""
    from openimm.local.samples import SAMPLES, fetch_sample_photos, sample_dir
    from openimm.vision.decode import decode_image
    from openimm.vision.retinaface import RetinaFaceDetector

    folder = fetch_sample_photos(sample_dir())
    detector = RetinaFaceDetector()
    chips = []
    for sample in SAMPLES:
        image = decode_image((folder / sample.name).read_bytes())
        for face in detector.detect(image):
            chip = align(image, face)
            chips += [chip, np.ascontiguousarray(chip[:, ::-1])] if mirrored else [chip]
    return chips
