"""Similarity scans at scale: tile sizes, the tiled product and a projected upper bound.

Every phase compares many faces with many faces or centroids; doing it tile by tile
keeps memory at one tile whatever the library's size. Where most pairs are far apart,
a cosine bound from the top principal directions rules them out cheaply and only the
pairs it cannot rule out are computed in full. The sizes are read through this module
so that one setting reaches every phase.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from openimm.grouping.figure_clustering.config import Embedding


def _tiles(
    rows: Embedding, cols: Embedding, taken: npt.NDArray[np.intp] | None = None
) -> Iterator[tuple[int, int, Embedding]]:
    """rows @ cols.T tile by tile: (first row, first column, tile).

    `taken`: the rows are rows[taken], gathered a tile's worth at a time (a gather of
    33k faces at once is 86 MB of fresh memory, which costs more than their products).
    """
    count = rows.shape[0] if taken is None else taken.size
    for r0 in range(0, count, TILE_ROWS):
        if taken is None:
            block = rows[r0 : r0 + TILE_ROWS]
        else:
            block = np.take(rows, taken[r0 : r0 + TILE_ROWS], axis=0)
        for c0 in range(0, cols.shape[0], TILE_COLS):
            yield r0, c0, block @ cols[c0 : c0 + TILE_COLS].T


class _ProjectedBound:
    """An upper bound on unit vectors' cosines, at the cost of their top principal part.

    x.y = Px.Py + Rx.Ry <= Px.Py + |Rx| |Ry| for the projection P onto any orthonormal
    basis and R the rest; on the top principal directions |R| is small (fused vectors:
    0.5% of their variance is outside the top 128), so few pairs pass the bound without
    passing the threshold, and only those are computed in full.

    Over the rows `rows` of `matrix`, which are read where they are: a copy of 25k rows
    of 640 dimensions is 64 MB of fresh memory, which cost a busy host half a second.
    """

    def __init__(self, matrix: Embedding, rows: npt.NDArray[np.intp]) -> None:
        self.matrix = matrix
        self.rows = rows
        # a few thousand rows estimate the directions well; the bound holds whatever they are
        sample = matrix[rows[:: max(1, rows.size // 4096)]]
        basis = _top_directions(sample)
        # the projection, and |R| as one more coordinate: the product of two rows is then
        # the bound itself, with no pass over each tile to add |Rx| |Ry|
        dims = basis.shape[1]
        self.coords = np.empty((rows.size, dims + 1), dtype=np.float32)
        for start in range(0, rows.size, TILE_COLS):
            part = rows[start : start + TILE_COLS]
            self.coords[start : start + part.size, :dims] = matrix[part] @ basis
        projected = self.coords[:, :dims]
        inside = np.einsum("ij,ij->i", projected, projected)
        self.coords[:, dims] = np.sqrt(np.maximum(1.0 - inside, 0.0) + BOUND_SLACK)

    def reached(self, ring: npt.NDArray[np.intp], threshold: float) -> _Flags:
        """Positions in `rows` with a cosine >= threshold to one at `ring`, exactly."""
        reached = np.zeros(self.rows.size, dtype=bool)
        for r0, c0, tile in _tiles(self.coords, self.coords, ring):
            rows = ring[r0 : r0 + tile.shape[0]]
            cols = c0 + np.flatnonzero((tile >= threshold - BOUND_SLACK).any(axis=0))
            cols = cols[~reached[cols]]
            if cols.size:
                exact = self.matrix[self.rows[rows]] @ self.matrix[self.rows[cols]].T
                reached[cols[(exact >= threshold).any(axis=0)]] = True
        return reached


def _top_directions(rows: Embedding) -> Embedding:
    """The BOUND_DIMS principal directions (uncentred) of these rows, one per column.

    Found by subspace iteration from a fixed start rather than a full eigendecomposition:
    the same share of the rows' length outside them on 640-D faces, in a third of the
    time (the 640x640 decomposition was 0.09 s of a 1k-face run). Any orthonormal basis
    keeps the bound true; a good one only makes it tighter.
    """
    gram = (rows.T @ rows).astype(np.float64)
    wanted = min(BOUND_DIMS, gram.shape[0])
    start = np.random.default_rng(0).standard_normal((gram.shape[0], wanted + _OVERSAMPLE))
    span = np.linalg.qr(gram @ start)[0]
    for _ in range(_ITERATIONS):
        span = np.linalg.qr(gram @ span)[0]
    # the directions within that span, strongest first
    within = np.linalg.eigh(span.T @ gram @ span)[1][:, ::-1][:, :wanted]
    return np.ascontiguousarray(span @ within, dtype=np.float32)


# subspace iteration for _top_directions: extra directions carried, and rounds; on
# 640-D faces two rounds leave as much outside the top 128 as the exact ones do
_OVERSAMPLE = 16
_ITERATIONS = 2


# faces per row and per column of one tile of a similarity scan (16 MB of float32)
TILE_ROWS = 1024


TILE_COLS = 4096


_Flags = npt.NDArray[np.bool_]


# dimensions of the projection behind the cheap upper bound on a group pair's cosine
BOUND_DIMS = 128


# slack on that bound for float32 rounding of the projected sums
BOUND_SLACK = 1e-4
