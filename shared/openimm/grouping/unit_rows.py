"""Embeddings stacked into one float32 matrix of unit rows, checked on the way."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Embedding = npt.NDArray[np.float32]


def unit_rows(vectors: Sequence[npt.ArrayLike] | Embedding, *, owned: bool = False) -> Embedding:
    """One row per vector, renormalised; ValueError on mixed shapes, NaN, inf or zero.

    `owned`: `vectors` is a matrix the caller gives up; renormalised in place when it
    is a writable float32 one, instead of copied.
    """
    if not len(vectors):
        return np.zeros((0, 0), dtype=np.float32)
    unit: Embedding
    if owned and isinstance(vectors, np.ndarray) and _writable_float32(vectors):
        # at 100k faces a copy is 256 MB of fresh memory: seconds on a busy host
        unit = vectors
    else:
        # one float32 copy, normalised in place: at a million faces each extra copy is
        # GBs; np.array refuses shapes that disagree (a set of shapes first took a third
        # as long, np.stack half as long again)
        try:
            unit = np.array(vectors, dtype=np.float32)
        except (TypeError, ValueError):
            unit = np.zeros((0, 0, 0), dtype=np.float32)
    if unit.ndim != 2:
        dims = sorted({np.shape(vector) for vector in vectors})
        raise ValueError(f"embeddings must be 1-D vectors of one dimension, got {dims}")
    # squared norms by einsum: np.linalg.norm along an axis is 50x slower at this size;
    # a NaN or inf anywhere in a row makes its sum non-finite (as does overflow, which
    # the float64 check below then tells apart)
    squares = np.einsum("ij,ij->i", unit, unit)
    odd = ~np.isfinite(squares)
    if odd.any():
        if not np.isfinite(unit[odd]).all():
            raise ValueError("embeddings must be finite")
        squares[odd] = np.inf
    if (squares == 0.0).any():
        raise ValueError("embeddings must be non-zero")
    # renormalised because thresholds on cosines silently drift on slightly off-unit input
    norms = np.sqrt(squares.astype(np.float64))
    if odd.any():
        norms[odd] = np.linalg.norm(unit[odd].astype(np.float64), axis=1)
    unit /= norms[:, None].astype(np.float32)
    return unit


def _writable_float32(matrix: npt.NDArray[np.generic]) -> bool:
    return (
        matrix.ndim == 2
        and matrix.dtype == np.float32
        and matrix.flags.writeable
        and matrix.flags.c_contiguous
    )
