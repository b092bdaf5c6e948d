"""Bring-your-own models: SCRFD, YuNet, ArcFace and SFace decoding on tiny ONNX graphs.

No registry package ships these weights, so each test builds a graph with the public
inputs and outputs of its kind, whose outputs are made from the input so that a decoder
must read the right channels with the right normalisation and decode the right geometry
to find the known boxes, landmarks and vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from openimm.vision import DecodedImage
from openimm.vision.arcface import ARCFACE_TEMPLATE, align_112
from openimm.vision.batch_detector import SmallFaces
from openimm.vision.byo_models import (
    ArcFaceEmbedder,
    ModelSpecError,
    ScrfdDetector,
    SFaceEmbedder,
    YuNetDetector,
    detector_from_config,
    detector_from_env,
    embedder_from_config,
    small_faces_from_config,
)
from openimm.vision.types import Box, DetectedFace, HeadPose

OPSET = 13
STRIDES = (8, 16, 32)
# landmark offsets from a cell's anchor, in strides: right eye, left eye, nose, mouth r, l
KPS = [0.5, 0.5, 2.5, 0.5, 1.5, 2.0, 0.8, 3.2, 2.2, 3.2]


def _const(
    name: str, values: Sequence[float] | np.ndarray, dtype: int = TensorProto.FLOAT
) -> object:
    array = np.asarray(values, dtype=np.int64 if dtype == TensorProto.INT64 else np.float32)
    return helper.make_node(
        "Constant",
        [],
        [name],
        value=helper.make_tensor(name + "_v", dtype, array.shape, array.ravel().tolist()),
    )


def _save(nodes: list[object], inputs: list[object], outputs: list[object], path: Path) -> Path:
    graph = helper.make_graph(nodes, "test", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _per_cell(
    nodes: list[object], source: str, stride: int, channel: int, prefix: str, anchors: int
) -> str:
    """(N, cells * anchors, 1): the mean of one input channel over each stride x stride cell."""
    nodes += [
        _const(f"{prefix}_s", [channel], TensorProto.INT64),
        _const(f"{prefix}_e", [channel + 1], TensorProto.INT64),
        _const(f"{prefix}_ax", [1], TensorProto.INT64),
        helper.make_node(
            "Slice", [source, f"{prefix}_s", f"{prefix}_e", f"{prefix}_ax"], [f"{prefix}_c"]
        ),
        helper.make_node(
            "AveragePool",
            [f"{prefix}_c"],
            [f"{prefix}_p"],
            kernel_shape=[stride, stride],
            strides=[stride, stride],
        ),
        helper.make_node("Transpose", [f"{prefix}_p"], [f"{prefix}_t"], perm=[0, 2, 3, 1]),
        _const(f"{prefix}_u", [3], TensorProto.INT64),
        helper.make_node("Unsqueeze", [f"{prefix}_t", f"{prefix}_u"], [f"{prefix}_q"]),
        helper.make_node("Concat", [f"{prefix}_q"] * anchors, [f"{prefix}_a"], axis=3),
    ]
    return f"{prefix}_a"  # (N, h, w, anchors, 1)


def _flat(nodes: list[object], source: str, width: int, name: str, batched: bool) -> None:
    shape = [0, -1, width] if batched else [-1, width]
    nodes += [
        _const(name + "_shape", shape, TensorProto.INT64),
        helper.make_node("Reshape", [source, name + "_shape"], [name]),
    ]


def _filled(nodes: list[object], like: str, values: Sequence[float], name: str) -> str:
    """A tensor shaped like `like` (last axis 1) holding `values` along its last axis."""
    nodes += [
        _const(name + "_zero", [0.0]),
        _const(name + "_vals", values),
        helper.make_node("Mul", [like, name + "_zero"], [name + "_z"]),
        helper.make_node("Add", [name + "_z", name + "_vals"], [name + "_f"]),
    ]
    return name + "_f"


def scrfd_graph(
    path: Path,
    distances: Sequence[float],
    *,
    batched: bool = True,
    size: tuple[int, int] | None = None,
) -> Path:
    """SCRFD I/O: constant distances and offsets; the score of a cell is the mean of one
    normalised channel over it: red for stride 8, green for 16, blue for 32."""
    batch: int | str = "N" if batched and size is None else 1
    hw: list[int | str] = list(size) if size else ["H", "W"]
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, *hw])
    nodes: list[object] = []
    heads: dict[str, list[str]] = {"score": [], "bbox": [], "kps": []}
    for channel, stride in enumerate(STRIDES):
        cells = _per_cell(nodes, "input.1", stride, channel, f"s{stride}", anchors=2)
        for head, values in (("score", None), ("bbox", distances), ("kps", KPS)):
            name = f"{head}_{stride}"
            src = cells if values is None else _filled(nodes, cells, values, name)
            _flat(nodes, src, 1 if values is None else len(values), name, batched)
            heads[head].append(name)
    widths = {"score": 1, "bbox": 4, "kps": 10}
    outs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [*lead, f"n_{n}", widths[head]])
        for lead in ([["N"]] if batched else [[]])
        for head in ("score", "bbox", "kps")
        for n in heads[head]
    ]
    return _save(nodes, [x], outs, path)


def yunet_graph(path: Path, bbox: Sequence[float]) -> Path:
    """YuNet I/O: cls = mean red (BGR channel 2) / 255 per cell, obj = 0.9, constant geometry."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "H", "W"])
    nodes: list[object] = []
    names = []
    for stride in STRIDES:
        cells = _per_cell(nodes, "input", stride, 2, f"s{stride}", anchors=1)
        nodes += [
            _const(f"k{stride}", [1 / 255]),
            helper.make_node("Mul", [cells, f"k{stride}"], [f"c{stride}"]),
        ]
        for head, values in (("cls", None), ("obj", [0.9]), ("bbox", bbox), ("kps", KPS)):
            name = f"{head}_{stride}"
            src = f"c{stride}" if values is None else _filled(nodes, f"c{stride}", values, name)
            _flat(nodes, src, 1 if values is None else len(values), name, batched=True)
            names.append(name)
    # the file's order differs from the decoder's: outputs are found by name
    widths = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
    outs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, f"n_{n}", widths[n.split("_")[0]]])
        for n in reversed(names)
    ]
    return _save(nodes, [x], outs, path)


def embedder_graph(path: Path, weights: np.ndarray, *, batch: int | str = "N") -> Path:
    """112x112 in, (N, D) out: the mean of each channel over the chip's left half, times W."""
    x = helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, 3, 112, 112])
    y = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [batch, weights.shape[1]])
    nodes = [
        _const("s", [0], TensorProto.INT64),
        _const("e", [56], TensorProto.INT64),
        _const("ax", [3], TensorProto.INT64),
        helper.make_node("Slice", ["data", "s", "e", "ax"], ["left"]),
        helper.make_node("GlobalAveragePool", ["left"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        _const("w", weights),
        helper.make_node("MatMul", ["flat", "w"], ["fc1"]),
    ]
    return _save(nodes, [x], [y], path)


RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _scene(
    width: int, height: int, squares: Sequence[tuple[int, int, int]], colour: tuple[int, ...] = RED
) -> DecodedImage:
    """Grey image with coloured squares (left, top, side): the test graphs' 'faces'."""
    rgb = np.full((height, width, 3), 128, dtype=np.uint8)
    for left, top, side in squares:
        rgb[top : top + side, left : left + side] = colour
    return DecodedImage(rgb, width, height, "PNG")


def _expected(
    anchor: tuple[float, float], box: Sequence[float], scale: float, stride: int = 8
) -> DetectedFace:
    """What the decoders must report (box in canvas px around the anchor, then / scale)."""
    x1, y1, x2, y2 = (v / scale for v in box)
    points = tuple(
        (
            (anchor[0] + KPS[2 * i] * stride) / scale,
            (anchor[1] + KPS[2 * i + 1] * stride) / scale,
        )
        for i in range(5)
    )
    box_px = Box(round(x1), round(y1), round(x2 - x1), round(y2 - y1))
    return DetectedFace(box_px, points, 1.0, HeadPose(0, 0, 0), 0.0, 0.0)


def _same_geometry(found: DetectedFace, expected: DetectedFace) -> None:
    assert found.box == expected.box
    assert np.allclose(found.landmarks, expected.landmarks, atol=1e-3)


def test_scrfd_decodes_scores_boxes_and_landmarks(tmp_path: Path) -> None:
    path = scrfd_graph(tmp_path / "det.onnx", distances=[1.0, 1.5, 3.0, 4.5])
    detector = ScrfdDetector(path, max_side=200, refine=False)
    # 400x240 at scale 0.5: the square fills the stride-8 cell (8, 4) alone
    faces = detector.detect(_scene(400, 240, [(128, 64, 16)]))
    assert len(faces) == 1
    # SCRFD's anchor is the cell's corner, (8, 4) * 8; distances are in strides
    _same_geometry(faces[0], _expected((64.0, 32.0), (56, 20, 88, 68), 0.5))
    assert faces[0].confidence == pytest.approx((255 - 127.5) / 128, abs=1e-4)


def test_scrfd_decodes_every_stride(tmp_path: Path) -> None:
    d = (0.5, 0.5, 1.0, 1.5)
    path = scrfd_graph(tmp_path / "det.onnx", distances=d)
    detector = ScrfdDetector(path, max_side=200, refine=False)
    image = _scene(400, 240, [(128, 64, 16)])
    image.rgb[128:160, 64:96] = GREEN  # canvas cell (2, 4) of stride 16
    image.rgb[64:128, 256:320] = BLUE  # canvas cell (4, 1) of stride 32
    faces = sorted(detector.detect(image), key=lambda f: f.box.width)
    assert len(faces) == 3
    for face, (cx, cy), stride in zip(faces, [(64, 32), (32, 64), (128, 32)], STRIDES, strict=True):
        box = (cx - d[0] * stride, cy - d[1] * stride, cx + d[2] * stride, cy + d[3] * stride)
        _same_geometry(face, _expected((cx, cy), box, 0.5, stride))


def test_scrfd_reads_normalised_rgb(tmp_path: Path) -> None:
    path = scrfd_graph(tmp_path / "det.onnx", distances=[1.0, 1.5, 3.0, 4.5])
    detector = ScrfdDetector(path, refine=False)
    # red in BGR order: a decoder feeding BGR would see it
    assert detector.detect(_scene(200, 120, [(64, 32, 8)], BLUE)) == []
    # grey 128 is (128 - 127.5) / 128 after normalisation: far below the threshold
    assert detector.detect(_scene(200, 120, [])) == []


def test_scrfd_file_exported_for_one_image(tmp_path: Path) -> None:
    path = scrfd_graph(tmp_path / "det.onnx", distances=[1.0, 1.5, 3.0, 4.5], batched=False)
    detector = ScrfdDetector(path, max_side=200, refine=False)
    images = [_scene(400, 240, [(128, 64, 16)]), _scene(400, 240, [])]
    found = detector.detect_batch(images)
    assert [len(f) for f in found] == [1, 0]
    _same_geometry(found[0][0], _expected((64.0, 32.0), (56, 20, 88, 68), 0.5))


def test_scrfd_file_with_a_fixed_input_size(tmp_path: Path) -> None:
    path = scrfd_graph(tmp_path / "det.onnx", distances=[1.0, 1.5, 3.0, 4.5], size=(224, 224))
    detector = ScrfdDetector(path, refine=False)
    # 448x200 fits the 224x224 input at scale 0.5, the rest padded
    faces = detector.detect_batch([_scene(448, 200, [(128, 64, 16)]), _scene(448, 200, [])])
    assert [len(f) for f in faces] == [1, 0]
    _same_geometry(faces[0][0], _expected((64.0, 32.0), (56, 20, 88, 68), 0.5))
    # refinement turns and scales the face on the same fixed canvas
    assert len(ScrfdDetector(path).detect(_scene(448, 200, [(128, 64, 16)]))) == 1


def test_detect_batch_matches_detect_one_by_one(tmp_path: Path) -> None:
    path = scrfd_graph(tmp_path / "det.onnx", distances=[1.0, 1.5, 3.0, 4.5])
    detector = ScrfdDetector(path, refine=False)
    images = [
        _scene(400, 240, [(128, 64, 16)]),
        _scene(400, 240, [(200, 96, 16), (40, 40, 16)]),
        _scene(300, 500, [(64, 256, 16)]),  # another canvas size: another call
        _scene(400, 240, []),
    ]
    batched = detector.detect_batch(images)
    assert batched == [detector.detect(image) for image in images]
    assert [len(faces) for faces in batched] == [1, 2, 1, 0]


def test_small_faces_are_found_in_tiles_at_native_resolution(tmp_path: Path) -> None:
    path = scrfd_graph(tmp_path / "det.onnx", distances=[1.5, 1.5, 1.5, 1.5])
    image = _scene(3000, 2000, [(2210, 1333, 16)])  # 16 px: a speck once shrunk to 640
    coarse = ScrfdDetector(path, score_threshold=0.7, refine=False)
    fine = ScrfdDetector(path, score_threshold=0.7, small_faces=SmallFaces(), refine=False)
    assert coarse.detect(image) == []
    faces = fine.detect(image)
    assert len(faces) == 1
    box = faces[0].box
    assert (box.width, box.height) == (24, 24)
    # centred on the corner of a fully red stride-8 cell of a tile: inside the square
    assert 2210 <= box.left + 12 <= 2226 and 1333 <= box.top + 12 <= 1349


def test_refinement_keeps_the_face(tmp_path: Path) -> None:
    path = scrfd_graph(tmp_path / "det.onnx", distances=[1.0, 1.5, 3.0, 4.5])
    image = _scene(400, 240, [(128, 64, 16)])
    plain = ScrfdDetector(path, max_side=200, refine=False).detect(image)
    refined = ScrfdDetector(path, max_side=200).detect(image)
    assert len(refined) == 1
    a, b = plain[0].box, refined[0].box
    assert abs((a.left + a.width / 2) - (b.left + b.width / 2)) < 16
    assert abs((a.top + a.height / 2) - (b.top + b.height / 2)) < 16


def test_yunet_decodes_scores_boxes_and_landmarks(tmp_path: Path) -> None:
    size = [float(np.log(4.0)), float(np.log(6.0))]
    path = yunet_graph(tmp_path / "yunet.onnx", bbox=[0.5, 0.25, *size])
    detector = YuNetDetector(path, max_side=200, refine=False)
    faces = detector.detect(_scene(400, 240, [(128, 64, 16)]))
    assert len(faces) == 1
    # YuNet's points are (column + d) * stride: cell (8, 4) -> anchor (64, 32)
    centre = ((8 + 0.5) * 8, (4 + 0.25) * 8)
    box = (centre[0] - 16, centre[1] - 24, centre[0] + 16, centre[1] + 24)
    _same_geometry(faces[0], _expected((64.0, 32.0), box, 0.5))
    assert faces[0].confidence == pytest.approx(np.sqrt(0.9), abs=1e-4)


def test_yunet_reads_raw_bgr(tmp_path: Path) -> None:
    path = yunet_graph(tmp_path / "yunet.onnx", bbox=[0.5, 0.5, 1.0, 1.0])
    detector = YuNetDetector(path, refine=False)
    assert detector.detect(_scene(200, 120, [(64, 32, 8)], BLUE)) == []


def test_alignment_puts_the_landmarks_on_the_template() -> None:
    rgb = np.random.default_rng(5).integers(0, 256, (200, 220, 3), dtype=np.uint8)
    image = DecodedImage(rgb, 220, 200, "PNG")
    for dx, dy in ((0, 0), (30, 40)):
        points = tuple((float(x + dx), float(y + dy)) for x, y in ARCFACE_TEMPLATE)
        face = DetectedFace(Box(0, 0, 1, 1), points, 1.0, HeadPose(0, 0, 0), 1.0, 1.0)
        assert np.array_equal(align_112(image, face), rgb[dy : dy + 112, dx : dx + 112])


def _chip(left: tuple[int, int, int], right: tuple[int, int, int]) -> np.ndarray:
    chip = np.empty((112, 112, 3), dtype=np.uint8)
    chip[:, :56], chip[:, 56:] = left, right
    return chip


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


WEIGHTS = np.random.default_rng(11).normal(size=(3, 512)).astype(np.float32)


def test_arcface_embeds_normalised_rgb(tmp_path: Path) -> None:
    embedder = ArcFaceEmbedder(embedder_graph(tmp_path / "w600k.onnx", WEIGHTS), flip=False)
    assert embedder.dim == 512 and embedder.name.startswith("arcface-")
    chips = [_chip((255, 0, 0), (0, 0, 255)), _chip((10, 200, 30), (0, 0, 0))]
    vectors = embedder.embed(chips)
    means = np.array(
        [[1.0, -1.0, -1.0], [(10 - 127.5) / 127.5, (200 - 127.5) / 127.5, -97.5 / 127.5]]
    )
    assert vectors.dtype == np.float32 and vectors.shape == (2, 512)
    assert np.allclose(vectors, _unit(means @ WEIGHTS), atol=1e-5)
    assert embedder.embed([]).shape == (0, 512)


def test_arcface_flip_averages_the_mirrored_chip(tmp_path: Path) -> None:
    embedder = ArcFaceEmbedder(embedder_graph(tmp_path / "w600k.onnx", WEIGHTS))
    vector = embedder.embed([_chip((255, 0, 0), (0, 0, 255))])[0]
    seen, mirrored = np.array([1.0, -1.0, -1.0]), np.array([-1.0, -1.0, 1.0])
    expected = _unit(_unit(seen @ WEIGHTS) + _unit(mirrored @ WEIGHTS))
    assert np.allclose(vector, expected, atol=1e-5)


def test_sface_embeds_raw_rgb_one_chip_at_a_time(tmp_path: Path) -> None:
    weights = np.random.default_rng(12).normal(size=(3, 128)).astype(np.float32)
    embedder = SFaceEmbedder(embedder_graph(tmp_path / "sface.onnx", weights, batch=1), flip=False)
    assert embedder.dim == 128 and embedder.name.startswith("sface-")
    chips = [_chip((255, 0, 0), (0, 0, 0)), _chip((1, 2, 3), (9, 9, 9))]
    vectors = embedder.embed(chips)
    assert np.allclose(vectors, _unit(np.array([[255.0, 0, 0], [1, 2, 3]]) @ weights), atol=1e-5)


def test_embedders_of_different_files_have_different_names(tmp_path: Path) -> None:
    a = ArcFaceEmbedder(embedder_graph(tmp_path / "a.onnx", WEIGHTS))
    b = ArcFaceEmbedder(embedder_graph(tmp_path / "b.onnx", WEIGHTS * 2))
    assert a.name != b.name


def test_specs_name_the_model(tmp_path: Path) -> None:
    det = scrfd_graph(tmp_path / "det_10g.onnx", distances=[1, 1, 1, 1])
    yunet = yunet_graph(tmp_path / "yunet.onnx", bbox=[0, 0, 1, 1])
    arc = embedder_graph(tmp_path / "w600k_r50.onnx", WEIGHTS)
    assert isinstance(detector_from_config(f"scrfd:{det}"), ScrfdDetector)
    assert isinstance(detector_from_config(f" YuNet : {yunet} "), YuNetDetector)
    assert isinstance(embedder_from_config(f"arcface:{arc}"), ArcFaceEmbedder)
    assert isinstance(embedder_from_config(f"sface:{arc}"), SFaceEmbedder)
    assert embedder_from_config("fused").dim == 128 + 512  # dlib + FaceNet, nothing loaded yet
    env = {"OPENIMM_DETECTOR": f"scrfd:{det}", "OPENIMM_SMALL_FACES": "off"}
    detector = detector_from_env(env)
    assert isinstance(detector, ScrfdDetector) and detector.small_faces is None


def test_bad_specs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError, match="unknown detector"):
        detector_from_config("mtcnn:/x.onnx")
    with pytest.raises(ModelSpecError, match="not found"):
        detector_from_config(f"scrfd:{tmp_path / 'missing.onnx'}")
    with pytest.raises(ModelSpecError, match="needs a model file"):
        embedder_from_config("arcface")
    stray = tmp_path / "stray.onnx"
    stray.write_bytes(b"")
    with pytest.raises(ModelSpecError, match="built in"):
        detector_from_config(f"retinaface:{stray}")
    with pytest.raises(ModelSpecError, match="built in"):
        embedder_from_config(f"fused:{stray}")
    with pytest.raises(ModelSpecError):
        small_faces_from_config("fine")


def test_small_face_setting() -> None:
    assert small_faces_from_config("off") is None
    assert small_faces_from_config("0.75") == SmallFaces(scale=0.75)
    assert small_faces_from_config(None) == SmallFaces()
