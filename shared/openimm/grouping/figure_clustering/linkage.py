"""Average linkage for seeding: the similar-pair scan and the exact agglomeration.

Dense nearest-neighbour chain (`_average_linkage`) for small sets and for whole
clusters in the re-examination; at scale, the same chain on the sparse graph of pairs
above the threshold (`_SparseLinkage`), since average-linkage groups never span two
connected components of that graph and a dense matrix of 100k faces does not fit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from openimm.grouping.figure_clustering import scans
from openimm.grouping.figure_clustering.config import Embedding
from openimm.grouping.figure_clustering.scans import _Flags, _top_directions


def _components(
    vectors: Embedding, files: npt.NDArray[np.intp], threshold: float
) -> list[npt.NDArray[np.intp]]:
    """Connected components (of 2+) of the graph linking different-file pairs >= threshold.

    Average linkage only merges groups whose mean similarity reaches the threshold, which
    needs at least one such pair between them, so every group lies inside one component
    and linkage per component gives exactly the global result. Components are sorted by
    their smallest index, members ascending.
    """
    n = vectors.shape[0]
    pairs = _similar_pairs(vectors, files, threshold)
    head = pairs[0].astype(np.intp)
    tail = pairs[1].astype(np.intp)

    # min-label hooking with pointer jumping: every index points at or below itself, so
    # there are no cycles, and at the fixed point each edge's ends share one root
    parent = np.arange(n)
    while True:
        low = np.minimum(parent[head], parent[tail])
        high = np.maximum(parent[head], parent[tail])
        differ = low != high
        if not differ.any():
            break
        np.minimum.at(parent, high[differ], low[differ])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    order = np.argsort(parent, kind="stable")
    _, starts, sizes = np.unique(parent[order], return_index=True, return_counts=True)
    return [
        order[begin : begin + size] for begin, size in zip(starts, sizes, strict=True) if size > 1
    ]


# ---------------------------------------------------------------- seeding at scale
#
# Seeding is exact average linkage over every unclustered eligible face. Two costs
# dominate at 100k faces: finding the pairs above the threshold (a scan of all pairs,
# done once, in tiles: O(n^2 d) time, O(tile) memory) and the linkage itself. The
# similar-pair graph of a real library has one giant component (a face meets thousands
# of strangers, and a few reach the threshold), so a dense matrix per component does
# not fit; `_SparseLinkage` runs the same nearest-neighbour chain on the pair graph.


def _similar_pairs(
    vectors: Embedding, files: npt.NDArray[np.intp], threshold: float
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], Embedding]:
    """Pairs i < j of different files with cosine >= threshold: (i, j, cosine).

    The upper triangle only, tile by tile, so each pair is computed once and memory
    stays at one tile; pairs come out sorted by i, then j within each tile.
    """
    n = vectors.shape[0]
    heads: list[npt.NDArray[np.int32]] = []
    tails: list[npt.NDArray[np.int32]] = []
    sims: list[Embedding] = []
    block = np.empty(scans.TILE_ROWS * scans.TILE_COLS, dtype=np.float32)
    hit = np.empty(scans.TILE_ROWS * scans.TILE_COLS, dtype=bool)
    for r0 in range(0, n, scans.TILE_ROWS):
        rows = vectors[r0 : r0 + scans.TILE_ROWS]
        for c0 in range(r0, n, scans.TILE_COLS):
            cols = vectors[c0 : c0 + scans.TILE_COLS]
            # flat buffers reshaped, so that matmul writes in place without a copy
            tile = block[: len(rows) * len(cols)].reshape(len(rows), len(cols))
            np.matmul(rows, cols.T, out=tile)
            mask = hit[: tile.size].reshape(tile.shape)
            np.greater_equal(tile, threshold, out=mask)
            flat = np.flatnonzero(mask)
            if not flat.size:
                continue
            i, j = np.divmod(flat, len(cols))
            i += r0
            j += c0
            keep = (j > i) & (files[i] != files[j])
            heads.append(i[keep].astype(np.int32))
            tails.append(j[keep].astype(np.int32))
            sims.append(tile.reshape(-1)[flat[keep]])
    if not heads:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
    return np.concatenate(heads), np.concatenate(tails), np.concatenate(sims)


_Ints = npt.NDArray[np.int64]


_Floats = npt.NDArray[np.float64]


# a group's neighbours: labels (sorted once clean), the summed cosines W over the face
# pairs known so far, how many pairs that is, which sums are upper bounds, dirty
_Row = tuple[_Ints, _Floats, _Floats | None, _Flags | None, bool]


# below this many faces the bound saves less than its basis (an eigendecomposition) costs
_BOUND_MIN_FACES = 20_000


class _SparseLinkage:
    """Average linkage on the graph of face pairs >= threshold, stopped below it.

    The same nearest-neighbour chain as `_average_linkage`, hence the same groups, with
    a sparse row per group instead of a dense matrix. What keeps it exact without every
    pair's cosine: the mean cosine between groups A and B is S_A . S_B / (|A| |B|), S
    being a group's sum of unit vectors, so any pair's value is one dot product away;
    and any pair of groups at or above the threshold has a face pair at or above it,
    so the pair graph names every candidate. A row keeps, per neighbour group, the sum
    of the face pairs known to be similar (W) and their count; the unknown rest are
    each below the threshold, which bounds the mean from above. Only candidates whose
    bound could beat the best exact value get a dot product; a row entry whose bound
    falls below the threshold is dropped. A projection of the sums on their top
    principal directions bounds, at an eighth of the cost, the entries that are mostly
    unknown (a face's strangers after it joined a group), so that they leave the row
    early. Memory is O(pairs + n d).
    """

    def __init__(
        self,
        sums: Embedding,
        pairs: tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], Embedding],
        files: npt.NDArray[np.intp],
        threshold: float,
    ) -> None:
        head, tail, sims = pairs
        n, dims = sums.shape
        self.t = threshold
        # consumed: row i becomes the sum of group i's vectors
        self.sums = sums
        self.size = np.ones(n)
        self.parent = np.arange(n, dtype=np.int64)
        self.active = np.ones(n, dtype=bool)
        self.scratch = np.zeros(n, dtype=bool)
        self.rows: dict[int, _Row] = {}
        # each face's neighbours as two sorted slices: the pairs it heads (j > i, in
        # scan order) and the ones it tails (i < j, sorted stably by j)
        self.fwd_ptr, self.fwd_nbr, self.fwd_w = _csr(head, tail, sims, n)
        self.bwd_ptr, self.bwd_nbr, self.bwd_w = _csr(tail, head, sims, n)
        self.pairs = (head, tail, sims)
        # faces of one file never share a group: each face's file mates
        self.forbidden: dict[int, _Ints] = {}
        order = np.argsort(files, kind="stable").astype(np.int64)
        bounds = np.flatnonzero(np.diff(files[order])) + 1
        starts = np.concatenate(([0], bounds))
        stops = np.concatenate((bounds, [order.size]))
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            if stop - start > 1:
                mates = order[start:stop]
                for face in mates.tolist():
                    self.forbidden[face] = mates[mates != face]
        self.proj: Embedding | None = None
        if dims > scans.BOUND_DIMS and n >= _BOUND_MIN_FACES:
            # float32 is plenty for a basis: the bound holds for any orthonormal one
            self.proj = sums @ _top_directions(sums)
            self.square = np.einsum("ij,ij->i", sums, sums).astype(np.float64)
            self.residual = np.zeros(n)
            for face in range(0, n, 65536):
                self._set_residual(np.arange(face, min(n, face + 65536)))

    def _set_residual(self, groups: _Ints) -> None:
        # |S - P^T P S|, the part of a sum outside the projection, from |S|^2 - |PS|^2;
        # a relative floor keeps float rounding from making it too small
        assert self.proj is not None
        projected = self.proj[groups].astype(np.float64)
        inside = np.einsum("ij,ij->i", projected, projected)
        square = self.square[groups]
        self.residual[groups] = np.sqrt(np.maximum(square - inside, 0.0) + 1e-7 * square)

    def find(self, labels: _Ints) -> _Ints:
        """Current group of each label, compressing the paths walked."""
        parent = self.parent
        root = parent[labels]
        step = parent[root]
        if (step != root).any():
            while True:
                root = step
                step = parent[root]
                if (step == root).all():
                    break
            parent[labels] = root
        return root

    def _raw(self, face: int) -> tuple[_Ints, _Floats]:
        b0, b1 = self.bwd_ptr[face], self.bwd_ptr[face + 1]
        f0, f1 = self.fwd_ptr[face], self.fwd_ptr[face + 1]
        labels = np.concatenate([self.bwd_nbr[b0:b1], self.fwd_nbr[f0:f1]]).astype(np.int64)
        sums = np.concatenate([self.bwd_w[b0:b1], self.fwd_w[f0:f1]]).astype(np.float64)
        return labels, sums

    def nearest(self, g: int, prev: int) -> tuple[int, float]:
        """Group g's most similar group at or above the threshold, exactly: (label, mean).

        `prev` (the chain's previous element, or -1) wins a tie. (-1, -inf) if none.
        """
        t = self.t
        row = self.rows.get(g)
        cnt: _Floats | None
        bnd: _Flags | None
        if row is None:
            lab, w = self._raw(g)
            cnt, bnd, dirty = None, None, False
        else:
            lab, w, cnt, bnd, dirty = row
        if not lab.size:
            return -1, -np.inf
        root = self.parent[lab]
        mates = self.forbidden.get(g)
        if dirty or (root != lab).any():
            # neighbours merged since: relabel, then add up the parts of each group
            root = self.find(lab)
            ok = self.active[root] & (root != g)
            if mates is not None:
                ok &= ~self._marked(root, mates, g)
            root, w = root[ok], w[ok]
            cnt = np.ones(root.size) if cnt is None else cnt[ok]
            bnd = np.zeros(root.size, dtype=bool) if bnd is None else bnd[ok]
            if root.size > 1:
                order = np.argsort(root, kind="stable")
                root = root[order]
                first = np.empty(root.size, dtype=bool)
                first[0] = True
                np.not_equal(root[1:], root[:-1], out=first[1:])
                if first.all():
                    w, cnt, bnd = w[order], cnt[order], bnd[order]
                else:
                    starts = np.flatnonzero(first)
                    w = np.add.reduceat(w[order], starts)
                    cnt = np.add.reduceat(cnt[order], starts)
                    bnd = np.logical_or.reduceat(bnd[order], starts)
                    root = root[starts]
            lab = root
        else:
            ok = self.active[root]
            if mates is not None:
                ok &= ~self._marked(root, mates, g)
            if not ok.all():
                lab, w = lab[ok], w[ok]
                if cnt is not None and bnd is not None:
                    cnt, bnd = cnt[ok], bnd[ok]
        if not lab.size:
            self.rows[g] = (lab, w, cnt, bnd, False)
            return -1, -np.inf
        pairs = self.size[lab] * self.size[g]
        if cnt is None or bnd is None:
            if self.size[g] == 1.0 and (pairs == 1.0).all():
                # untouched face among untouched faces: the row is exact cosines
                j = int(np.argmax(w))
                return self._tie(lab, w, int(lab[j]), float(w[j]), prev)
            cnt, bnd = np.ones(lab.size), np.zeros(lab.size, dtype=bool)
        exact = (cnt == pairs) & ~bnd
        if exact.all():
            value = w / pairs
        else:
            w, cnt, bnd = w.copy(), cnt.copy(), bnd.copy()
            value = (w + t * (pairs - cnt)) / pairs
            if self.proj is not None:
                loose = np.flatnonzero((2.0 * cnt < pairs) & (value >= t))
                if loose.size:
                    h = lab[loose]
                    bound = (
                        self.proj[h] @ self.proj[g] + self.residual[h] * self.residual[g]
                    ) / pairs[loose] + scans.BOUND_SLACK
                    tighter = np.minimum(value[loose], bound)
                    value[loose] = tighter
                    w[loose], cnt[loose], bnd[loose] = tighter * pairs[loose], pairs[loose], True
            known = value[exact]
            best = float(known.max()) if known.size else -np.inf
            pending = np.where(exact, -np.inf, value)
            while True:
                j = int(np.argmax(pending))
                if pending[j] < t or pending[j] < best:
                    break
                total = float(self.sums[lab[j]] @ self.sums[g])
                w[j], cnt[j], bnd[j], exact[j] = total, pairs[j], False, True
                value[j] = total / pairs[j]
                pending[j] = -np.inf
                best = max(best, float(value[j]))
        keep = value >= t
        if not keep.all():
            lab, w, cnt, bnd, value, exact = (
                lab[keep],
                w[keep],
                cnt[keep],
                bnd[keep],
                value[keep],
                exact[keep],
            )
        self.rows[g] = (lab, w, cnt, bnd, False)
        if not exact.any():
            return -1, -np.inf
        value = np.where(exact, value, -np.inf)
        j = int(np.argmax(value))
        return self._tie(lab, value, int(lab[j]), float(value[j]), prev)

    def _marked(self, labels: _Ints, mates: _Ints, g: int) -> _Flags:
        groups = self.find(mates)
        self.forbidden[g] = groups
        self.scratch[groups] = True
        marked = self.scratch[labels]
        self.scratch[groups] = False
        return marked

    @staticmethod
    def _tie(lab: _Ints, value: _Floats, near: int, best: float, prev: int) -> tuple[int, float]:
        # ties go to the chain's previous element, as in the dense chain
        if prev >= 0 and prev != near:
            k = int(np.searchsorted(lab, prev))
            if k < lab.size and lab[k] == prev and value[k] >= best:
                return prev, float(value[k])
        return near, best

    def merge(self, a: int, b: int, mean: float) -> None:
        """Join groups a and b (mean cosine `mean`) under the smaller label."""
        keep, gone = min(a, b), max(a, b)
        parts = [self._row_of(a), self._row_of(b)]
        self.rows[keep] = (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
            np.concatenate([p[3] for p in parts]),
            True,
        )
        size_a, size_b = self.size[a], self.size[b]
        self.size[keep] = size_a + size_b
        self.sums[keep] += self.sums[gone]
        if self.proj is not None:
            # |S_a + S_b|^2 = |S_a|^2 + |S_b|^2 + 2 * (sum of the cosines between them)
            self.square[keep] = self.square[a] + self.square[b] + 2.0 * mean * size_a * size_b
            self.proj[keep] += self.proj[gone]
            self._set_residual(np.array([keep]))
        self.parent[gone] = keep
        self.active[gone] = False
        mates = [
            m for m in (self.forbidden.pop(a, None), self.forbidden.pop(b, None)) if m is not None
        ]
        if mates:
            self.forbidden[keep] = np.concatenate(mates)

    def _row_of(self, g: int) -> tuple[_Ints, _Floats, _Floats, _Flags]:
        row = self.rows.pop(g, None)
        if row is None:
            lab, w = self._raw(g)
            return lab, w, np.ones(lab.size), np.zeros(lab.size, dtype=bool)
        lab, w, cnt, bnd, _ = row
        if cnt is None or bnd is None:
            return lab, w, np.ones(lab.size), np.zeros(lab.size, dtype=bool)
        return lab, w, cnt, bnd

    def merge_mutual_nearest(self) -> None:
        """Merge every pair of faces that are each other's nearest: where any chain starts."""
        head, tail, sims = self.pairs
        n = self.size.size
        best = np.full(n, -np.inf, dtype=np.float32)
        np.maximum.at(best, head, sims)
        np.maximum.at(best, tail, sims)
        # the smallest label among a face's equally near faces, as the chain would pick
        near = np.full(n, n, dtype=np.int64)
        at_head = sims == best[head]
        np.minimum.at(near, head[at_head], tail[at_head])
        at_tail = sims == best[tail]
        np.minimum.at(near, tail[at_tail], head[at_tail])
        faces = np.flatnonzero(near < n)
        faces = faces[(near[near[faces]] == faces) & (faces < near[faces])]
        for face in faces.tolist():
            self.merge(face, int(near[face]), float(best[face]))

    def groups(self) -> list[npt.NDArray[np.intp]]:
        """Groups of 2+ faces, ordered by their first face, members ascending."""
        n = self.size.size
        label = self.find(np.arange(n, dtype=np.int64))
        order = np.argsort(label, kind="stable")
        cuts = np.flatnonzero(np.diff(label[order])) + 1
        return [g for g in np.split(order, cuts) if g.size > 1]


def _csr(
    src: npt.NDArray[np.int32], dst: npt.NDArray[np.int32], w: Embedding, n: int
) -> tuple[_Ints, npt.NDArray[np.int32], Embedding]:
    order = np.argsort(src, kind="stable")
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=ptr[1:])
    return ptr, dst[order], w[order]


def _sparse_average_linkage(
    vectors: Embedding, files: npt.NDArray[np.intp], threshold: float
) -> list[npt.NDArray[np.intp]]:
    """Average-linkage groups (of 2+) of unit vectors, never two faces of one file.

    The same groups as `_average_linkage` on their full similarity matrix; `vectors`
    is consumed.
    """
    link = _SparseLinkage(vectors, _similar_pairs(vectors, files, threshold), files, threshold)
    # reciprocal nearest pairs merge first in any exact order; doing it in bulk saves
    # a tenth of the chain's steps
    link.merge_mutual_nearest()
    n = vectors.shape[0]
    chain: list[int] = []
    on_chain: set[int] = set()
    start = 0
    while True:
        if not chain:
            while start < n and not link.active[start]:
                start += 1
            if start == n:
                break
            chain.append(start)
            on_chain.add(start)
        top = chain[-1]
        prev = chain[-2] if len(chain) > 1 else -1
        near, mean = link.nearest(top, prev)
        if near < 0:
            for node in chain:
                link.active[node] = False
            chain.clear()
            on_chain.clear()
            continue
        if near != prev and near in on_chain:
            # a value recomputed by another path differed in its last bits; merging
            # the pair at hand keeps the chain finite
            near = prev
            pair = link.size[top] * link.size[prev]
            mean = float(link.sums[top] @ link.sums[prev]) / pair
        if near == prev:
            chain.pop()
            chain.pop()
            on_chain.discard(top)
            on_chain.discard(prev)
            link.merge(top, near, mean)
        else:
            chain.append(near)
            on_chain.add(near)
    return link.groups()


def _average_linkage(
    sims: Embedding, threshold: float, sizes: npt.NDArray[np.float32] | None = None
) -> list[list[int]]:
    """Groups (of 2+) from average-linkage agglomeration stopped below `threshold`.

    `sims` is a symmetric similarity matrix with -inf on the diagonal and between faces
    that must never share a group; it is consumed. The nearest-neighbour-chain algorithm
    gives the same groups as merging the globally most similar pair first, in O(n^2)
    time, because average linkage is reducible: a merged group is never more similar to
    a third one than the better of its parts was. A cannot-link keeps that property
    (-inf survives the weighted mean), so forbidden merges need no extra bookkeeping.
    """
    n = sims.shape[0]
    # items may be groups already (clusters): a merge weighs each side by its faces
    sizes = np.ones(n, dtype=np.float32) if sizes is None else sizes.astype(np.float32)
    groups: list[list[int]] = [[i] for i in range(n)]
    active = np.ones(n, dtype=bool)
    chain: list[int] = []
    start = 0
    while True:
        if not chain:
            while start < n and not active[start]:
                start += 1
            if start == n:
                break
            chain.append(start)
        top = chain[-1]
        row = sims[top]
        nearest = int(np.argmax(row))
        # ties go to the previous chain element, which guarantees the chain terminates
        if len(chain) > 1 and row[chain[-2]] >= row[nearest]:
            nearest = chain[-2]
        if row[nearest] < threshold:
            # similarities grow along the chain, so no chain element can ever reach the
            # threshold again: retire them all
            for node in chain:
                active[node] = False
                sims[node, :] = -np.inf
                sims[:, node] = -np.inf
            chain.clear()
            continue
        if len(chain) > 1 and nearest == chain[-2]:
            chain.pop()
            chain.pop()
            keep, gone = min(top, nearest), max(top, nearest)
            merged = (sizes[keep] * sims[keep] + sizes[gone] * sims[gone]) / (
                sizes[keep] + sizes[gone]
            )
            sims[keep, :] = merged
            sims[:, keep] = merged
            sims[keep, keep] = -np.inf
            sims[gone, :] = -np.inf
            sims[:, gone] = -np.inf
            sizes[keep] += sizes[gone]
            groups[keep].extend(groups[gone])
            groups[gone] = []
            active[gone] = False
        else:
            chain.append(nearest)
    return [sorted(group) for group in groups if len(group) > 1]
