"""The state directory must take writes before a command opens its database and queue in it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class StateDirectoryUnusable(Exception):
    """The state directory cannot be created or written (read-only, not a folder, full)."""


def check_writable(data_dir: Path) -> None:
    """Create `data_dir` if needed and write a probe file in it; StateDirectoryUnusable if not."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".openimm-probe-") as probe:
            # a full disk often accepts the open and refuses the bytes, so write and sync some
            probe.write(b"\0" * 65536)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        cause = exc.strerror or type(exc).__name__
        raise StateDirectoryUnusable(
            f"the state directory {data_dir} cannot be written ({cause}); "
            "choose another with --data or $OPENIMM_DATA"
        ) from exc
