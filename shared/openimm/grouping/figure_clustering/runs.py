"""One clustering run, and a run too large to seed at once as runs over its parts.

The phases in order: join, seed, join again against the new clusters, relaxed join,
re-examination and merges, then strict joins against whatever changed until nothing
does, so that every face left independent failed against each cluster as the run
leaves it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from openimm.grouping.figure_clustering.assignments import _assignments
from openimm.grouping.figure_clustering.config import (
    _UNCLUSTERED,
    UNAVAILABLE,
    Assignment,
    ClusteringConfig,
    ClusteringOutcome,
    FaceColumns,
    FaceToCluster,
)
from openimm.grouping.figure_clustering.joins import _join, _join_standing_out
from openimm.grouping.figure_clustering.merges import (
    _absorb_joinable,
    _merge_cohesive,
    _record_merge,
    _reexamine,
)
from openimm.grouping.figure_clustering.run_state import _State
from openimm.grouping.figure_clustering.seeding import _linked_to_new, _seed, _seed_apart
from openimm.grouping.unit_rows import unit_rows


def cluster_figures(
    faces: Sequence[FaceToCluster],
    config: ClusteringConfig,
    new_cluster_id: Callable[[], str],
    curated: Collection[str] = (),
    settled: Collection[str] | None = None,
) -> ClusteringOutcome:
    """Run one incremental clustering pass over all faces of a dataset.

    `curated` clusters carry a user's work (a name, labels, a chosen cover): like those
    holding faces placed by hand, a merge never takes their id away.

    `settled` names the clusters whose members are exactly as the previous run left
    them (None: not known, everything is examined again). Faces that run left
    INDEPENDENT are then tried only against clusters that changed since or change in
    this run, seeding relinks only the unclustered faces linked to a new face (through
    pairs at seed_similarity), and the re-examination looks only around changed
    clusters: the rest was decided by the previous run on the same evidence. A run
    then costs in proportion to what is new, not to the library (100k faces + 1k:
    seconds instead of tens). Not told, and with more than 100k faces to place, the run
    goes in parts (`_in_parts`).
    """
    ordered = sorted(faces, key=lambda face: face.figure_id)
    loose = [face for face in ordered if not face.pinned and face.cluster_id in _UNCLUSTERED]
    if settled is None and len(loose) > _RUN_FACES:
        return _in_parts(ordered, loose, config, new_cluster_id, curated)
    return _run(_columns(ordered), config, new_cluster_id, curated, settled)


def cluster_face_columns(
    faces: FaceColumns,
    config: ClusteringConfig,
    new_cluster_id: Callable[[], str],
    curated: Collection[str] = (),
    settled: Collection[str] | None = None,
) -> ClusteringOutcome:
    """`cluster_figures` of faces given as columns, whose vectors the run may normalise in place.

    The same decisions and outcome as the FaceToCluster objects of the same faces: a
    caller holding 100k faces as arrays (the face shard) spares building them.
    """
    ids = faces.figure_ids
    if any(a >= b for a, b in itertools.pairwise(ids)):
        faces = faces.take(sorted(range(len(faces)), key=ids.__getitem__))
    loose = int(np.count_nonzero(~faces.pinned & _unclustered(faces.cluster_ids)))
    if settled is None and loose > _RUN_FACES:
        return cluster_figures(faces.faces(), config, new_cluster_id, curated)
    unit = replace(faces, vectors=unit_rows(faces.vectors, owned=True))
    return _run(unit, config, new_cluster_id, curated, settled)


def _columns(ordered: Sequence[FaceToCluster]) -> FaceColumns:
    return FaceColumns.of(ordered, unit_rows([face.embedding for face in ordered]))


def _unclustered(cluster_ids: Sequence[str]) -> npt.NDArray[np.bool_]:
    return np.array([cid in _UNCLUSTERED for cid in cluster_ids], dtype=bool)


# unclustered faces one run weighs at once when nothing is known to be settled: above
# it seeding's pairs grow with the square of the largest person's photos (a synthetic
# 1M library held about 500M pairs, 8 GiB), so a larger library is clustered in parts
_RUN_FACES = 100_000


def _in_parts(
    ordered: list[FaceToCluster],
    loose: list[FaceToCluster],
    config: ClusteringConfig,
    new_cluster_id: Callable[[], str],
    curated: Collection[str],
) -> ClusteringOutcome:
    """One run over a library too large to seed at once, as runs over its arrival in parts.

    The unclustered faces come in parts of _RUN_FACES (in figure id order, which is no
    particular order of people), each part a run told that the clusters are as the run
    before left them: what FigureClusters.run does when runs follow the uploads, and
    what five increments on lfw-dev measure (within a point of one run).
    """
    held = [face for face in ordered if face.pinned or face.cluster_id not in _UNCLUSTERED]
    parts = -(-len(loose) // _RUN_FACES)
    now: dict[str, FaceToCluster] = {face.figure_id: face for face in held}
    reported: dict[str, Assignment] = {}
    created: list[str] = []
    born: set[str] = set()
    merged: dict[str, str] = {}
    settled: set[str] | None = None
    for part in range(parts):
        # new to these runs, whatever an earlier task said: weighed against every cluster
        now.update(
            (face.figure_id, replace(face, cluster_id=UNAVAILABLE)) for face in loose[part::parts]
        )
        outcome = _run(
            _columns(sorted(now.values(), key=lambda f: f.figure_id)),
            config,
            new_cluster_id,
            curated,
            settled,
        )
        for a in outcome.assignments:
            reported[a.figure_id] = a
            now[a.figure_id] = replace(now[a.figure_id], cluster_id=a.cluster_id)
        born.update(outcome.created)
        created = [c for c in created if c not in outcome.merged] + outcome.created
        for gone, survivor in outcome.merged.items():
            _record_merge(merged, gone, survivor)
        settled = {face.cluster_id for face in now.values()} - _UNCLUSTERED
    return ClusteringOutcome(
        assignments=[reported[face.figure_id] for face in ordered if not face.pinned],
        created=created,
        # clusters born and merged away within this run were never the caller's
        merged={gone: survivor for gone, survivor in merged.items() if gone not in born},
    )


def _run(
    faces: FaceColumns,
    config: ClusteringConfig,
    new_cluster_id: Callable[[], str],
    curated: Collection[str],
    settled: Collection[str] | None,
) -> ClusteringOutcome:
    """One clustering run over faces sorted by figure id, unit vectors (`cluster_figures`)."""
    state = _State(faces, settled)
    candidates = np.flatnonzero(~faces.pinned & _unclustered(faces.cluster_ids)).tolist()
    weighed = state.clock
    _join(state, candidates, config)
    eligible = [i for i in state.unassigned(candidates) if faces.seed_eligible[i]]
    if settled is not None:
        eligible = _linked_to_new(state, eligible, config.seed_similarity)
    created = _seed(state, eligible, config, new_cluster_id)
    created += _seed_apart(state, candidates, config, new_cluster_id)
    if created:
        # against the new clusters and those the first join grew; the rest weighed alike
        since, weighed = weighed, state.clock
        _join(state, state.unassigned(candidates), config, since=since)
    _join_standing_out(state, state.unassigned(candidates), config)
    merged = _reexamine(state, config, frozenset(curated))
    _absorb_joinable(state, config, frozenset(curated), merged)
    _merge_cohesive(state, config, frozenset(curated), merged)
    # the faces still out against whatever changed after it was frozen for a strict
    # join, until nothing does: every face a run leaves independent has then failed
    # against each cluster as the run leaves it, which lets the next run skip the
    # clusters that stay as they are (`settled`)
    while state.clock > weighed:
        since, weighed = weighed, state.clock
        _join(state, state.unassigned(candidates), config, since=since)
    return ClusteringOutcome(
        assignments=_assignments(state, config),
        created=[c for c in created if c not in merged],
        merged=merged,
    )
