"""Real photos for demos and tests, taken from pinned registry packages and sha256-verified.

face_recognition 1.3.0 (sdist, MIT) ships its test photos: obama.jpg, obama2.jpg (speaking
at a lectern), obama3.jpg (standing, small face), biden.jpg, two crops that cut the face
(obama_partial_face*.jpg) and 32bit.png (obama2 with an alpha channel). insightface 2.1
(wheel) ships t1.jpg (six people round a poker table) and Tom_Hanks_54745.png (a 112x112
aligned face crop). The archives are only downloaded and read; nothing is installed or run
by us (pip itself prepares the sdist's metadata to resolve it).
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from openimm.vision.model_store import (
    ModelFetchError,
    file_matches,
    install_verified,
    pip_download,
)

SAMPLE_DIR_ENV = "OPENIMM_SAMPLE_DIR"


@dataclass(frozen=True)
class SamplePhoto:
    """One pinned photo: which distribution holds it, where, and its sha256."""

    name: str
    requirement: str
    sdist: bool
    path: str
    sha256: str


_FR = "face_recognition==1.3.0"
_FR_DIR = "face_recognition-1.3.0/tests/test_images/"
_IF = "insightface==2.1"
_IF_DIR = "insightface/data/images/"

SAMPLES: tuple[SamplePhoto, ...] = (
    SamplePhoto("biden.jpg", _FR, True, _FR_DIR + "biden.jpg",
                "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
    SamplePhoto("obama.jpg", _FR, True, _FR_DIR + "obama.jpg",
                "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
    SamplePhoto("obama2.jpg", _FR, True, _FR_DIR + "obama2.jpg",
                "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
    SamplePhoto("obama3.jpg", _FR, True, _FR_DIR + "obama3.jpg",
                "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
    SamplePhoto("obama_partial_face.jpg", _FR, True, _FR_DIR + "obama_partial_face.jpg",
                "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117"),
    SamplePhoto("obama_partial_face2.jpg", _FR, True, _FR_DIR + "obama_partial_face2.jpg",
                "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028"),
    SamplePhoto("32bit.png", _FR, True, _FR_DIR + "32bit.png",
                "44dca895a7d635a4aedddd91a4f37af9a8a5b44e66154282a24645a757b5f627"),
    SamplePhoto("Tom_Hanks_54745.png", _IF, False, _IF_DIR + "Tom_Hanks_54745.png",
                "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083"),
    SamplePhoto("t1.jpg", _IF, False, _IF_DIR + "t1.jpg",
                "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489"),
)  # fmt: skip


def sample_dir() -> Path:
    """Default cache: $OPENIMM_SAMPLE_DIR, else $XDG_CACHE_HOME (~/.cache)/openimm/sample-photos."""
    configured = os.environ.get(SAMPLE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "openimm" / "sample-photos"


def _read_member(archive_path: Path, member: str, *, sdist: bool) -> bytes:
    # read members as bytes; never extract to disk, so archive paths cannot escape `dest`
    try:
        if sdist:
            with tarfile.open(archive_path, "r:*") as tar:
                stream = tar.extractfile(member)
                if stream is None:
                    raise ModelFetchError(f"{archive_path.name}: {member} is not a file")
                with stream:
                    return stream.read()
        with zipfile.ZipFile(archive_path) as archive:
            return archive.read(member)
    except KeyError as exc:
        raise ModelFetchError(f"{archive_path.name} has no {member}") from exc
    except (tarfile.TarError, zipfile.BadZipFile) as exc:
        raise ModelFetchError(f"{archive_path.name} is not a valid archive: {exc}") from exc


def fetch_sample_photos(dest: Path) -> Path:
    """Make sure every sample photo is in `dest`, verified; download only what is missing."""
    dest.mkdir(parents=True, exist_ok=True)
    missing = [s for s in SAMPLES if not file_matches(dest / s.name, s.sha256)]
    by_source: dict[tuple[str, bool], list[SamplePhoto]] = {}
    for sample in missing:
        by_source.setdefault((sample.requirement, sample.sdist), []).append(sample)
    for (requirement, sdist), samples in by_source.items():
        with tempfile.TemporaryDirectory(prefix="openimm-samples-") as tmp:
            archive = pip_download(requirement, Path(tmp), sdist=sdist)
            for sample in samples:
                data = _read_member(archive, sample.path, sdist=sdist)
                install_verified(
                    data, dest / sample.name, sample.sha256,
                    origin=f"{requirement}:{sample.path}",
                )  # fmt: skip
    return dest
