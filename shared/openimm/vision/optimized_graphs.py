"""Graphs onnxruntime has already optimised for this machine, kept beside the models.

Optimising a graph fully (ORT_ENABLE_ALL: node fusions and the NCHWc layout for this CPU's
vector width) is most of creating a session: FaceNet's took 0.45 s, against 0.1 s to load
the graph it leaves, which runs 20% faster than one optimised at the basic level (35 ms
against 44 ms a face). So the first session of a model on a machine saves its optimised
graph, and later processes load that with optimisation off: a cold `openimm run` starts
sooner. The graph holds this CPU's layout, so its name covers the model file (path, size,
time), the onnxruntime version and the CPU's instruction-set flags. Where the folder cannot
be written (a read-only function bundle) nothing is kept, nor is a graph built in memory
(a rewrite of a file, which depends on the code that made it).
"""

from __future__ import annotations

import hashlib
import os
import platform
from functools import lru_cache
from pathlib import Path

FOLDER = "optimized"


@lru_cache(maxsize=1)
def _machine() -> str:
    """This CPU's instruction-set flags, which decide the layout an optimised graph uses."""
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def optimized_graph(path: str, models: Path) -> Path | None:
    """Where the optimised graph of the model file `path` is kept under `models`; None
    when there is no such file."""
    import onnxruntime as ort

    source = Path(path)
    try:
        stat = source.stat()
    except OSError:
        return None
    identity = "\n".join(
        [
            str(source.resolve()),
            str(stat.st_size),
            str(stat.st_mtime_ns),
            ort.__version__,
            _machine(),
        ]
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:20]
    return models / FOLDER / f"{source.stem}-{digest}.onnx"


def writable_spot(graph: Path) -> Path | None:
    """A private file beside `graph` to save it to, None when its folder cannot be written."""
    try:
        graph.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(graph.parent, os.W_OK):
        return None
    return graph.with_name(f".{graph.name}.{os.getpid()}.part")
