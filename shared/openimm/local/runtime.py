"""One machine's OpenIMM: the application plus the queue workers that run its stages.

Only one process per data directory runs workers (an exclusive lock file); it is
then safe to make messages that a killed process held visible again at once,
instead of waiting for their visibility timeout.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from openimm.api.operations import Application
from openimm.bootstrap import Parts, Settings, build, configured_parts
from openimm.local.storage_reserve import StorageReserve
from openimm.local.workers import QueueWorkers
from openimm.pipeline.outages import outage_of
from openimm.pipeline.stages import STAGES
from openimm.ports import StorageUnavailable
from openimm.vision.onnx_session import share_cores_among
from openimm.vision.warm_up import warm_up_in_background

log = logging.getLogger(__name__)


class LocalRuntime:
    """Builds the local application and, when this process may, runs its workers."""

    def __init__(
        self,
        settings: Settings,
        *,
        threads: int = 2,
        parts: Parts | None = None,
        warm_up: bool = False,
    ) -> None:
        """`warm_up`: load the face networks while the first messages are being sent
        (`openimm run`, which has photos to analyse as soon as it starts)."""
        self.settings = settings
        self._warm_up = warm_up
        self._warming: threading.Thread | None = None
        self.reserve = StorageReserve(Path(settings.data_dir) / ".openimm-reserve")
        self.parts = parts or configured_parts(settings)
        if self.parts.on_storage_outage is None:
            self.parts.on_storage_outage = self.reserve.release
        self.app: Application = build(settings, self.parts)
        self._threads = threads
        self._lock_file: IO[str] | None = None
        self.workers: QueueWorkers | None = None

    def start_workers(self) -> bool:
        """Start the stage workers; False when another process already runs them."""
        path = Path(self.settings.data_dir) / "workers.lock"
        handle = path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            log.warning("another process runs the workers of %s", self.settings.data_dir)
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle
        self.reserve.keep()
        release = getattr(self.parts.queue, "release_in_flight", None)
        if callable(release):
            released = release()
            if released:
                log.info("made %s unfinished messages visible again", released)
        # the workers analyse this many files at once: each network gets its share of cores
        share_cores_among(self._threads)
        self.workers = QueueWorkers(
            self.parts.queue,
            {stage: self._stage_runner(stage) for stage in STAGES},
            threads=self._threads,
            max_attempts=self.settings.max_deliveries,
            on_dead_letter=self.app.give_up,
            on_receive_error=self._receive_failed,
        )
        listen = getattr(self.parts.queue, "add_send_listener", None)
        if callable(listen):
            listen(self.workers.nudge)
        if self._warm_up:
            parts = self.parts
            self._warming = warm_up_in_background(parts.detector, parts.embedder, parts.attributes)
        self.workers.start()
        return True

    def _stage_runner(self, stage: str) -> Any:
        def run(body: dict[str, Any]) -> None:
            if not self.reserve.keep():
                # still full: the space released is for recording that, not for work
                full = StorageUnavailable(f"the disk of {self.settings.data_dir} is full")
                outage = outage_of(full)
                assert outage is not None
                self.app.pipeline.stop_for_outage(stage, body, outage)
                return
            self.app.run_stage(stage, body)

        return run

    def _receive_failed(self, exc: Exception) -> None:
        # a queue that cannot even be read on a full disk: free the space kept for this
        if isinstance(exc, StorageUnavailable):
            self.reserve.release()

    def close(self) -> None:
        """Stop the workers and release the lock."""
        if self.workers is not None:
            self.workers.stop(timeout=30)
            self.workers = None
        if self._warming is not None:
            # not left loading a network while the interpreter shuts down (a run with
            # nothing to analyse ends in a fraction of a second)
            self._warming.join(timeout=30)
            self._warming = None
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
