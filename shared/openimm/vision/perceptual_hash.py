"""64-bit perceptual hashes of an image, compared by Hamming distance.

- pHash: the grey image shrunk to 32x32, its 2-D DCT, the 8x8 lowest frequencies; bit i
  is set when coefficient i (row-major, DC first) exceeds the median of the 64. Robust to
  re-encoding, resizing and global brightness or contrast changes; crops and shifts move
  it more.
- dHash: the grey image shrunk to 9x8; bit i is set when a pixel is brighter than its left
  neighbour (row-major). Cheaper, a little less stable under re-encoding.

The most significant bit is the first, so the hashes are unsigned Python ints in
[0, 2**64); hamming() counts differing bits (0..64). Shrinking uses area averaging, so
the hash of a large photo equals that of its downscaled copy up to a few bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openimm.vision.image_ops import grey
from openimm.vision.types import Pixels

HASH_BITS = 64
PHASH_SIDE = 32
PHASH_LOW = 8


def phash(image: Pixels) -> int:
    """DCT perceptual hash of an RGB or grey uint8 image."""
    import cv2

    small = cv2.resize(grey(image), (PHASH_SIDE, PHASH_SIDE), interpolation=cv2.INTER_AREA)
    spectrum = cv2.dct(small.astype(np.float32))
    low = spectrum[:PHASH_LOW, :PHASH_LOW].ravel()
    return _pack(low > np.median(low))


def dhash(image: Pixels) -> int:
    """Horizontal-gradient hash of an RGB or grey uint8 image."""
    import cv2

    small = cv2.resize(grey(image), (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    return _pack(small[:, 1:] > small[:, :-1])


def hamming(a: int, b: int) -> int:
    """Number of bits in which two hashes differ."""
    return (a ^ b).bit_count()


def _pack(bits: np.ndarray[Any, np.dtype[np.bool_]]) -> int:
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")
