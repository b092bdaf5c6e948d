"""One onnxruntime session per model file and process, created on first use.

Sessions are safe to call from several threads, so every detector or embedder that names
the same file shares one. Threads come from $OPENIMM_THREADS (default 2): intra-op
parallelism only, since the graphs here are single chains.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

THREADS_ENV = "OPENIMM_THREADS"

_lock = threading.Lock()
_sessions: dict[str, Any] = {}


def threads() -> int:
    """Intra-op threads per session, from $OPENIMM_THREADS."""
    try:
        return max(1, int(os.environ.get(THREADS_ENV, "2")))
    except ValueError:
        return 2


def onnx_session(path: Path | str, *, model: Callable[[], bytes] | None = None) -> Any:
    """The process-wide CPU session for one ONNX file.

    `model`, if given, builds the graph to run (a rewrite of the file, say) on first use;
    `path` is then only the cache key, which must name that graph.
    """
    key = str(path)
    with _lock:
        session = _sessions.get(key)
        if session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads()
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(
                key if model is None else model(),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
            _sessions[key] = session
    return session


def fixed_dims(session: Any) -> tuple[int | None, ...]:
    """The first input's shape, None where the model leaves a dimension free."""
    shape = session.get_inputs()[0].shape
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)
