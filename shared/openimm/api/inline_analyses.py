"""How many requests that analyse an image while the caller waits run at once.

DetectImageFaces, CompareImageFaces and SearchImageFigureCluster decode, detect and
embed inside the request. Each holds a decoded image and the detector's activations
(a few hundred MB for a large photo), so a burst of them could take a process past its
memory; beyond the limit a request is refused at once with IMM's busy answer
(Throttling, 503) instead of waiting for memory or a core, and the client retries.
The limit is per process: `openimm serve` runs one HTTP process per core.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from openimm.errors import Throttling

INLINE_OPERATIONS = frozenset({"DetectImageFaces", "CompareImageFaces", "SearchImageFigureCluster"})
# two per process: on two cores each analysis has a core, and two large photos at once
# stay well under a gigabyte
DEFAULT_MAX_INLINE_ANALYSES = 2


class InlineAnalyses:
    """Slots for the image analyses running at once in this process."""

    def __init__(self, limit: int = DEFAULT_MAX_INLINE_ANALYSES) -> None:
        if limit < 1:
            raise ValueError("at least one inline analysis must be allowed")
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def slot(self, operation: str) -> Iterator[None]:
        """Hold a slot while the block runs; Throttling when every slot is taken."""
        if not self._slots.acquire(blocking=False):
            raise Throttling(
                f"{operation} was not run: this server is already analysing "
                f"{self.limit} image{'s' if self.limit != 1 else ''} at once, "
                "the most it runs together. Please try again shortly."
            )
        try:
            yield
        finally:
            self._slots.release()
