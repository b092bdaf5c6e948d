"""The folders `openimm run` read in place as buckets, remembered in the state directory.

A run mounts its folder as a bucket for its own process; `openimm serve` on the same
state directory reads the same photos (the gallery's thumbnails) only if it knows the
mount too. `mounts.json` maps bucket names to absolute folder paths.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

FILE_NAME = "mounts.json"


def remembered_mounts(data_dir: Path) -> dict[str, Path]:
    """The buckets runs mounted on this state directory (none when no run did)."""
    try:
        raw = json.loads((data_dir / FILE_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(b): Path(p) for b, p in raw.items() if isinstance(p, str) and Path(p).is_absolute()}


def remember_mount(data_dir: Path, bucket: str, folder: Path) -> None:
    """Record that `bucket` is `folder` (absolute), replacing what the bucket was."""
    mounts = {b: str(p) for b, p in remembered_mounts(data_dir).items()}
    mounts[bucket] = str(folder.resolve())
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=data_dir, suffix=".part")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(mounts, out, indent=1, sort_keys=True)
    Path(tmp).replace(data_dir / FILE_NAME)
