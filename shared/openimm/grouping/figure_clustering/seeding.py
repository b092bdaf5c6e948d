"""Seeding: new clusters from faces that joined nothing.

Average linkage among the seed-eligible unclustered faces at seed_similarity (exact,
on the sparse pair graph: linkage.py), a group becoming a cluster when it holds
min_seed_images distinct images (IMM's rule). When the previous run's clusters are
known settled, only faces linked to a new face are relinked (`_linked_to_new`): the
rest would link as before. Then groups that stand apart from every other face
(`_seed_apart`): the few photos of one person in a small album.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from openimm.grouping.apart_seeding import ApartTest, groups_standing_apart
from openimm.grouping.figure_clustering import scans
from openimm.grouping.figure_clustering.config import _UNCLUSTERED, ClusteringConfig
from openimm.grouping.figure_clustering.linkage import _sparse_average_linkage
from openimm.grouping.figure_clustering.run_state import _State
from openimm.grouping.figure_clustering.scans import _ProjectedBound, _tiles


def _seed(
    state: _State,
    candidates: list[int],
    config: ClusteringConfig,
    new_cluster_id: Callable[[], str],
) -> list[str]:
    """Form new clusters from groups of unclustered, seed-eligible faces."""
    if len(candidates) < max(config.min_seed_images, 2):
        return []
    vectors = state.vectors[candidates]
    _, files = np.unique([state.file_ids[i] for i in candidates], return_inverse=True)
    created: list[str] = []
    for group in _sparse_average_linkage(vectors, files, config.seed_similarity):
        if len(group) < config.min_seed_images:
            continue
        faces = [candidates[int(local)] for local in group]
        if len({state.file_ids[i] for i in faces}) < config.min_seed_images:
            continue
        created.append(_new_cluster(state, faces, new_cluster_id))
    return created


def _new_cluster(state: _State, faces: list[int], new_cluster_id: Callable[[], str]) -> str:
    """Create a cluster of these faces under a fresh id from the caller's factory."""
    cluster_id = new_cluster_id()
    if cluster_id in _UNCLUSTERED or cluster_id in state.members:
        raise ValueError(f"new_cluster_id returned a reserved or used id {cluster_id!r}")
    state.add(cluster_id, faces)
    return cluster_id


# faces of a dataset above which nothing is seeded apart: among that many a face always
# has others about as near (the synthetic 100k and 1M libraries seeded no group), while
# the scan of the free faces' nearest would cost minutes a part in a run from nothing
_APART_FACES = 100_000


def _seed_apart(
    state: _State,
    candidates: list[int],
    config: ClusteringConfig,
    new_cluster_id: Callable[[], str],
) -> list[str]:
    """Form new clusters from groups that stand apart (grouping/apart_seeding.py).

    Looked for from every unclustered eligible face, or, when the run knows what is
    settled, from the new ones alone: a group of older faces passed in an earlier run
    or cannot pass now, since faces that arrived since only come nearer.
    """
    floor = config.apart_seed_similarity
    rest = state.unassigned(candidates)
    if floor is None or len(rest) < config.min_seed_images or state.size > _APART_FACES:
        return []
    unclustered = np.array([now is None for now in state.cluster_of], dtype=bool)
    open_ = unclustered & state.seed_eligible & ~state.pinned
    anchors = np.asarray(rest, dtype=np.intp)
    if state.fresh is not None:
        anchors = anchors[~state.retried[anchors]]
    files = state.file_codes()
    test = ApartTest(floor, config.apart_seed_margin, config.min_seed_images)
    groups = groups_standing_apart(state.vectors, files, open_, anchors, test)
    return [_new_cluster(state, group.tolist(), new_cluster_id) for group in groups]


def _linked_to_new(state: _State, candidates: list[int], threshold: float) -> list[int]:
    """The candidates linked to a face new in this run through pairs >= threshold.

    Average-linkage groups never span two components of that pair graph, so the
    components without a new face would link as the previous run linked them. Grown
    from the new faces outwards, one ring of neighbours per scan: the cost is the
    component's size times the candidates, not the candidates squared.
    """
    chosen = np.asarray(candidates, dtype=np.intp)
    inside = ~state.retried[chosen]
    ring = np.flatnonzero(inside)
    dims = state.vectors.shape[1]
    bound, vectors = None, None
    if dims > 2 * scans.BOUND_DIMS and min(ring.size, chosen.size) >= _RING_BOUND_MIN:
        bound = _ProjectedBound(state.vectors, chosen)
    else:
        vectors = state.vectors[chosen]
    while ring.size:
        if vectors is not None:
            reached = np.zeros(chosen.size, dtype=bool)
            for _, c0, tile in _tiles(vectors[ring], vectors):
                reached[c0 + np.flatnonzero((tile >= threshold).any(axis=0))] = True
        else:
            assert bound is not None
            reached = bound.reached(ring, threshold)
        ring = np.flatnonzero(reached & ~inside)
        inside |= reached
    return [int(i) for i in chosen[inside]]


# rings of new faces and candidates both at least this large scan in the projection:
# below it the basis (a 640x640 eigendecomposition, ~0.07 s) costs more than it saves
_RING_BOUND_MIN = 256
