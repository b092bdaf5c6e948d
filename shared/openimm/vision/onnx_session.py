"""One onnxruntime session per model file and process, created on first use.

Sessions are safe to call from several threads, so every detector or embedder that names
the same file shares one. Intra-op threads come from $OPENIMM_THREADS, else from the
process's analysis concurrency: the cores this process may use divided by how many
analyses it runs at once (`share_cores_among`), at least one. Two stage workers on two
cores each running two-thread sessions oversubscribe the cores: on 80 photos that cost
2.6x the CPU time (42 s against 16 s of user time) and nearly doubled the wall time.
Threads never spin waiting for work, for the same reason: a spinning thread takes a
core that another analysis of this process, or another function instance, could use.
Graphs here are single chains, so there is no inter-op parallelism to give. A graph is
optimised for this machine once and kept (vision/optimized_graphs.py).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openimm.vision.optimized_graphs import optimized_graph, writable_spot

THREADS_ENV = "OPENIMM_THREADS"

_lock = threading.Lock()
_sessions: dict[str, Any] = {}
_concurrency = 1


def available_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def share_cores_among(analyses: int) -> None:
    """Say how many analyses this process runs at once; sessions made later use the
    cores divided among them. Sessions already made keep their threads."""
    global _concurrency
    _concurrency = max(1, analyses)


def threads() -> int:
    """Intra-op threads per session: $OPENIMM_THREADS, else the cores per analysis."""
    configured = os.environ.get(THREADS_ENV, "").strip()
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            pass
    return max(1, available_cores() // _concurrency)


def onnx_session(path: Path | str, *, model: Callable[[], bytes] | None = None) -> Any:
    """The process-wide CPU session for one ONNX file.

    `model`, if given, builds the graph to run (a rewrite of the file, say) on first use;
    `path` is then only the cache key, which must name that graph.
    """
    key = str(path)
    with _lock:
        session = _sessions.get(key)
        if session is None:
            session = _create(key, model)
            _sessions[key] = session
            return_freed_heap()
    return session


def _create(key: str, model: Callable[[], bytes] | None) -> Any:
    """A session of the graph optimised for this machine before, else optimised now (and
    kept for the next process where the model folder can be written)."""
    import onnxruntime as ort

    from openimm.vision.model_store import model_dir

    # a graph built in memory depends on code as well as on its file: not kept
    graph = optimized_graph(key, model_dir()) if model is None else None
    if graph is not None and graph.is_file():
        try:
            return _session(str(graph), ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        except Exception:  # a damaged file: optimise again
            graph.unlink(missing_ok=True)
    source = key if model is None else model()
    spot = writable_spot(graph) if graph is not None else None
    if graph is None or spot is None:
        return _session(source, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    try:
        session = _session(source, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, save_to=spot)
    except Exception:  # e.g. the disk filled up while saving: build it without the copy (a
        # graph that cannot load at all fails again, with its own error)
        spot.unlink(missing_ok=True)
        return _session(source, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    try:
        spot.replace(graph)
    except OSError:  # the session stands; only the copy for the next process is lost
        spot.unlink(missing_ok=True)
    return session


def _session(source: str | bytes, level: Any, save_to: Path | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = level
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
        # saving an NCHWc graph warns that it suits only this machine: the cache key says so
        options.log_severity_level = 3
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def return_freed_heap() -> None:
    """Hand the heap that building a session freed back to the system, where glibc can.

    Parsing and optimising a graph frees as much as the session keeps, but glibc holds
    freed memory for reuse: without this, FaceNet's session held 226 MB of resident
    memory instead of 102, and the default networks together about 220 MB more.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to hand back this way
        return
    trim(0)


def fixed_dims(session: Any) -> tuple[int | None, ...]:
    """The first input's shape, None where the model leaves a dimension free."""
    shape = session.get_inputs()[0].shape
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)
