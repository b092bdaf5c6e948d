"""`openimm run` end to end beside face_recognition, each a cold process on the same photos.

bench/vision.py prints the table; this module makes the runs. OpenIMM's row is the main
job as a user starts it: `openimm run FOLDER` with default settings and a fresh data
directory, timed from process start to exit (import, model loading, analysis, clustering
and the report). The peer's row is a fresh process that imports face_recognition and, for
every photo of the folder, decodes it, finds faces (HOG, upsample 1) and encodes them:
what its users run, without any clustering. Both processes are pinned to the same cores;
peak RSS is each process's own (os.wait4).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# the peer's whole job, as its README shows it, over a folder; prints the faces it found
PEER_SCRIPT = """
import sys
from pathlib import Path
import face_recognition
faces = 0
for path in sorted(Path(sys.argv[1]).iterdir()):
    image = face_recognition.load_image_file(path)
    boxes = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
    faces += len(face_recognition.face_encodings(image, known_face_locations=boxes))
print(faces)
"""

# cold start: a fresh process until every model of the main job (people) has answered
# once; the similar-image network loads only when a similar-image task first needs it
OPENIMM_COLD_SCRIPT = """
from openimm.bootstrap import Settings, configured_parts
from openimm.vision.warm_up import warm_up
parts = configured_parts(Settings.from_env())
warm_up(parts.detector, parts.embedder, parts.attributes)
"""

PEER_COLD_SCRIPT = """
import numpy as np
import face_recognition
tiny = np.zeros((64, 64, 3), np.uint8)
face_recognition.face_locations(tiny, number_of_times_to_upsample=1, model="hog")
face_recognition.face_encodings(tiny, known_face_locations=[(8, 56, 56, 8)])
"""


@dataclass(frozen=True)
class Run:
    """One cold process over one folder."""

    seconds: float
    faces: int
    peak_rss_mb: float


def _pinned(cores: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])


def _environment() -> dict[str, str]:
    """This environment without OpenIMM settings: the run uses its defaults."""
    keep = {"OPENIMM_MODEL_DIR", "OPENIMM_SAMPLE_DIR"}
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENIMM_") or k in keep}


def timed_process(
    command: list[str], cores: int, env: dict[str, str] | None = None
) -> tuple[float, str, float]:
    """(wall seconds, stdout, peak RSS MB) of one fresh process pinned to `cores` cores."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=err,
            env=env if env is not None else _environment(),
            preexec_fn=lambda: _pinned(cores),
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} ... failed ({process.returncode}):\n{stderr}")
    return seconds, stdout, usage.ru_maxrss / 1024


def openimm_run(folder: Path, cores: int) -> Run:
    """`openimm run FOLDER --json` with default settings in a fresh data directory."""
    command = str(Path(sys.executable).with_name("openimm"))
    with tempfile.TemporaryDirectory(prefix="openimm-bench-run-") as data:
        seconds, stdout, rss = timed_process(
            [command, "run", str(folder), "--data", data, "--json"], cores
        )
    report = json.loads(stdout)
    if report["task"]["Status"] != "Succeeded" or report["unanalysed_files"]:
        raise SystemExit(f"openimm run on {folder} did not succeed: {report['task']}")
    faces = sum(c["FaceCount"] for c in report["clusters"]) + len(report["unclustered"])
    return Run(seconds, faces, rss)


def peer_run(folder: Path, cores: int) -> Run:
    """face_recognition over the folder in a fresh process."""
    seconds, stdout, rss = timed_process(
        [sys.executable, "-c", PEER_SCRIPT, str(folder)], cores, env=dict(os.environ)
    )
    return Run(seconds, int(stdout.strip().splitlines()[-1]), rss)


def cold_start(peer: bool, cores: int) -> float:
    """Seconds from a fresh process to every default model having answered once."""
    script = PEER_COLD_SCRIPT if peer else OPENIMM_COLD_SCRIPT
    env = dict(os.environ) if peer else _environment()
    return timed_process([sys.executable, "-c", script], cores, env=env)[0]
