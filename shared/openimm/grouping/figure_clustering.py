"""IMM-compatible incremental face clustering: join existing clusters, seed new ones.

One call is one clustering run over a dataset. Faces that already have a cluster id
keep it; the unclustered ones (new, or independent from an earlier run) go through:

1. join - each against every cluster, on centroid and top-k evidence (`_join`);
2. seed - average linkage among the remaining seed-eligible faces (`_seed`), then
   groups that stand apart from every other face (`_seed_apart`: a small album);
3. join - the remaining faces, eligible or not, against every cluster, new ones included;
4. relaxed join - faces whose best cluster clearly stands out (`_join_standing_out`);
5. re-examination - clusters the evidence now joins merge (`_reexamine`), and a
   cluster each of whose faces would join a larger one goes into it (`_absorb_joinable`);
   strict joins then repeat against whatever changed until nothing does.

Whatever still fits nowhere is `INDEPENDENT` and is retried on the next run; a run that
is told which clusters are `settled` (as the previous run left them) retries it only
against clusters that changed.

Cost, for n candidates, c clustered faces and d dimensions: joining is O(n*c*d) time
and O(tile) memory (similarities are computed in tiles). Seeding scans all candidate
pairs in tiles, O(n^2*d) time, keeping only the pairs above `seed_similarity`, and runs
average linkage on that sparse pair graph (`_SparseLinkage`): memory O(pairs + n*d).
Measured by bench/cluster_scale.py: 100k faces of 640 dimensions from nothing in under
a minute on one core, 1k new faces added to them in about 2 s. The pairs grow with the
square of the largest person's photos: a synthetic 1M library whose most photographed
person has 28k eligible faces holds about 500M pairs (8 GiB). So a run over more than
100k unclustered faces, nothing being known settled, goes as runs over parts of 100k
would (`_in_parts`): the way a library is clustered when runs follow its uploads.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from openimm.grouping.apart_seeding import ApartTest, groups_standing_apart
from openimm.grouping.unit_rows import unit_rows

UNAVAILABLE = "figure-cluster-id-unavailable"
INDEPENDENT = "figure-cluster-id-independent"
_UNCLUSTERED = frozenset({UNAVAILABLE, INDEPENDENT})

Embedding = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class FaceToCluster:
    """One face as clustering sees it: identity, source file, vector and current state."""

    figure_id: str
    # faces sharing file_id never share a cluster: one person appears once per image
    file_id: str
    # unit vector; any dimension as long as every face in a run has the same one
    embedding: Embedding
    # UNAVAILABLE (never processed), INDEPENDENT (retry) or a real cluster id
    cluster_id: str
    # the caller's quality gate (size, pose, quality): only these faces may seed a cluster
    seed_eligible: bool
    # set manually: never moved, still counts as evidence for its cluster
    pinned: bool = False
    # the cluster a user moved this face out of: it and the face's cluster stay apart
    moved_from: str | None = None


@dataclass(frozen=True)
class ClusteringConfig:
    """Thresholds of one clustering run; defaults suit L2-normalised dlib ResNet vectors.

    dlib's classic cut (Euclidean 0.6 on raw descriptors) would be cosine 0.82 on unit
    vectors, far too permissive here: with normalisation and flip averaging, same-person
    pairs mostly score above 0.93-0.95 and different people below 0.90. Both defaults
    sit above that gap's midpoint so that precision wins; a missed join only leaves a
    face independent until more evidence arrives, a wrong one pollutes a cluster.
    """

    # cosine a candidate needs both to the cluster's normalised mean and on average to
    # its top_k most similar members; the mean of a same-person cluster scores higher
    # than single pairs (noise averages out), so the top-k gate is the binding one
    join_similarity: float = 0.92
    # average-linkage threshold among unclustered faces; stricter than joining because a
    # new cluster has no established evidence behind it
    seed_similarity: float = 0.93
    # distinct images of seed-eligible faces a new cluster needs (IMM: 3)
    min_seed_images: int = 3
    # members averaged for the robust part of the join evidence
    top_k: int = 3
    # logistic width of the confidence (`membership_confidence`): +3 widths above the
    # lowest cosine a face can join at gives 0.95
    confidence_scale: float = 0.01
    # A face below join_similarity still joins its best cluster when it reaches this
    # (centroid and top-k) and stands out by join_margin from both the next cluster and
    # its nearest faces that are clearly someone else (`_join_standing_out`). None: off.
    relaxed_join_similarity: float | None = None
    join_margin: float = 0.05
    # A face joins by the strict test only if its centroid cosine there beats its
    # centroid cosine to every other cluster by this much (0: off). A fixed cosine alone
    # does not hold as a library grows: among 200k synthetic faces fitted to lfw-dev,
    # one in five strict joins of 20k new faces went to a stranger's cluster; at 0.03
    # (fused) 4 of 4640 did, and lfw-dev's F stayed as it was at higher precision.
    runner_up_margin: float = 0.0
    # mean cosine between two clusters' faces at which the re-examination merges them
    # (`_reexamine`); None: seed_similarity. A little below it recovers people whom one
    # run's seeding split in two: from 0.88 to 0.875 on lfw-dev (fused) lifted one run's
    # pairwise recall from 0.947 to 0.967 at the same precision; 0.870 made a wrong merge.
    merge_similarity: float | None = None
    # cohesion at which two clusters merge when each beats the other's every other match
    # by runner_up_margin (None: off; `_merge_cohesive`): their faces' mean cosine
    # across over the geometric mean of the two clusters' own mean cosines within. One
    # person split in two is about as alike across as within; two lookalikes are not.
    # On lfw-dev (fused) every split of one person scored 0.944 or more, every pair of
    # different people 0.935 or less; 0.935 made wrong merges in five increments.
    cohesion_similarity: float | None = None
    # Seeding by a relative test (grouping/apart_seeding.py), after the strict seed: a
    # group of 3 to 12 eligible faces, each of whose nearest faces (of other images,
    # among every face of the dataset) are the other members, at a mean cosine of at
    # least this, the next nearest apart_seed_margin below the farthest of them. Where
    # few people compete (an album) 3-5 photos of one person often miss seed_similarity
    # but stand apart; among thousands, lookalikes come as near. None: off.
    apart_seed_similarity: float | None = None
    apart_seed_margin: float = 0.06

    def __post_init__(self) -> None:
        for name in ("join_similarity", "seed_similarity"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a cosine in [-1, 1], got {value}")
        if self.min_seed_images < 1:
            raise ValueError("min_seed_images must be at least 1")
        if self.top_k < 1:
            raise ValueError("top_k must be at least 1")
        if not self.confidence_scale > 0.0:
            raise ValueError("confidence_scale must be positive")
        relaxed = self.relaxed_join_similarity
        if relaxed is not None and not -1.0 <= relaxed <= self.join_similarity:
            raise ValueError("relaxed_join_similarity must be a cosine <= join_similarity")
        if not self.join_margin > 0.0:
            raise ValueError("join_margin must be positive")
        if not 0.0 <= self.runner_up_margin <= 2.0:
            raise ValueError("runner_up_margin must be a cosine difference in [0, 2]")
        merge = self.merge_similarity
        if merge is not None and not -1.0 <= merge <= 1.0:
            raise ValueError(f"merge_similarity must be a cosine in [-1, 1], got {merge}")
        cohesion = self.cohesion_similarity
        if cohesion is not None and not 0.0 < cohesion <= 1.0:
            raise ValueError(f"cohesion_similarity must be in (0, 1], got {cohesion}")
        apart = self.apart_seed_similarity
        if apart is not None and not -1.0 <= apart <= 1.0:
            raise ValueError(f"apart_seed_similarity must be a cosine in [-1, 1], got {apart}")
        if not self.apart_seed_margin > 0.0:
            raise ValueError("apart_seed_margin must be positive")


class Assignment(NamedTuple):
    """Where a face ends up after a run, with the confidence of that membership.

    A tuple: a run returns one per face, and a frozen dataclass cost 0.3 s per 100k.
    """

    figure_id: str
    cluster_id: str
    # 0..1, membership_confidence of its cosine to the cluster's mean; 0.0 when INDEPENDENT
    confidence: float


@dataclass(frozen=True)
class ClusteringOutcome:
    """Result of a run: where its faces are now, and the clusters created."""

    # sorted by figure_id: every non-pinned face that is new (UNAVAILABLE), joined a
    # cluster, or is in a cluster that changed (all of them when `settled` was not
    # given); the others are as they came, confidence included. The caller writes only
    # what differs from its rows.
    assignments: list[Assignment]
    # in creation order
    created: list[str]
    # clusters merged into another by the re-examination: gone id -> surviving id
    merged: dict[str, str] = field(default_factory=dict)


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
    return _run(ordered, config, new_cluster_id, curated, settled)


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
            sorted(now.values(), key=lambda f: f.figure_id),
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
    ordered: list[FaceToCluster],
    config: ClusteringConfig,
    new_cluster_id: Callable[[], str],
    curated: Collection[str],
    settled: Collection[str] | None,
) -> ClusteringOutcome:
    """One clustering run over faces sorted by figure id (see `cluster_figures`)."""
    state = _State(ordered, settled)
    candidates = [
        i for i, face in enumerate(ordered) if not face.pinned and face.cluster_id in _UNCLUSTERED
    ]
    weighed = state.clock
    _join(state, candidates, config)
    eligible = [i for i in state.unassigned(candidates) if ordered[i].seed_eligible]
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


class _State:
    """Mutable bookkeeping of one run: vectors, memberships and files per cluster."""

    def __init__(self, faces: list[FaceToCluster], settled: Collection[str] | None = None) -> None:
        self.faces = faces
        self.vectors = unit_rows([f.embedding for f in faces])
        self.members: dict[str, list[int]] = {}
        self.files: dict[str, set[str]] = {}
        self._centroids: dict[str, Embedding] = {}
        self._sum_norms: dict[str, float] = {}
        # a step count, and the step at which each cluster last changed in this run
        self.clock = 0
        self.changed_at: dict[str, int] = {}
        # faces an earlier run examined and left independent, when it is known what
        # changed since (`settled`): they are tried only against changed clusters
        self.retried = np.array(
            [settled is not None and face.cluster_id == INDEPENDENT for face in faces], dtype=bool
        )
        # pairs of clusters a user's move says are different people
        self.apart = {
            frozenset((face.moved_from, face.cluster_id))
            for face in faces
            if face.pinned and face.moved_from and face.cluster_id not in _UNCLUSTERED
        }
        if len({face.figure_id for face in faces}) != len(faces):
            seen = Counter(face.figure_id for face in faces)
            raise ValueError(f"duplicate figure_id {max(seen, key=seen.__getitem__)!r}")
        self.cluster_of: list[str | None] = [
            None if face.cluster_id in _UNCLUSTERED else face.cluster_id for face in faces
        ]
        for i, face in enumerate(faces):
            if self.cluster_of[i] is not None:
                self.members.setdefault(face.cluster_id, []).append(i)
                self.files.setdefault(face.cluster_id, set()).add(face.file_id)
        # clusters whose evidence differs from what the previous run saw (None: all)
        self.fresh = None if settled is None else set(self.members) - set(settled)

    def is_fresh(self, cluster_id: str) -> bool:
        """Whether a cluster changed since the previous run (or it is not known)."""
        return self.fresh is None or cluster_id in self.fresh

    def unassigned(self, indices: Sequence[int]) -> list[int]:
        """The given faces that are still in no cluster."""
        return [i for i in indices if self.cluster_of[i] is None]

    def add(self, cluster_id: str, indices: Sequence[int]) -> None:
        """Put faces into a cluster, creating it if new."""
        members = self.members.setdefault(cluster_id, [])
        files = self.files.setdefault(cluster_id, set())
        self._centroids.pop(cluster_id, None)
        self.clock += 1
        self.changed_at[cluster_id] = self.clock
        if self.fresh is not None:
            self.fresh.add(cluster_id)
        for i in indices:
            self.cluster_of[i] = cluster_id
            members.append(i)
            files.add(self.faces[i].file_id)

    def merge(self, survivor: str, gone: str) -> None:
        """Move every member of cluster `gone` into `survivor`."""
        self._centroids.pop(gone, None)
        self.files.pop(gone)
        self.add(survivor, self.members.pop(gone))

    def centroid(self, cluster_id: str) -> Embedding:
        """Normalised mean of a cluster's members (zero vector if they cancel out)."""
        cached = self._centroids.get(cluster_id)
        if cached is None:
            total: Embedding = self.vectors[self.members[cluster_id]].sum(axis=0)
            norm = float(np.linalg.norm(total))
            cached = (total / norm).astype(np.float32) if norm > 0.0 else total
            self._centroids[cluster_id] = cached
            self._sum_norms[cluster_id] = norm
        return cached

    def sum_norm(self, cluster_id: str) -> float:
        """Length of the sum of a cluster's member vectors."""
        self.centroid(cluster_id)
        return self._sum_norms[cluster_id]

    def centroids(self, cluster_ids: Sequence[str]) -> Embedding:
        """The centroids of these clusters, one row each."""
        return np.stack([self.centroid(cid) for cid in cluster_ids])


def _join(
    state: _State, candidates: list[int], config: ClusteringConfig, since: int | None = None
) -> None:
    """Put each candidate into its best passing cluster, at most one face per file.

    `since`: the candidates were weighed against every cluster at that step; only the
    clusters changed after it are looked at.
    """
    if not candidates or not state.members:
        return
    # statistics frozen for the whole pass: the result does not depend on visiting order
    cluster_ids = sorted(state.members)
    if since is not None:
        cluster_ids = [cid for cid in cluster_ids if state.changed_at.get(cid, 0) > since]
        if not cluster_ids:
            return
    centroids = state.centroids(cluster_ids)
    chosen = np.asarray(candidates)
    retried = state.retried[chosen] & (since is None)
    proposals = _join_proposals(state, chosen[~retried], cluster_ids, centroids, config)
    fresh = [col for col, cid in enumerate(cluster_ids) if state.is_fresh(cid)]
    if retried.any() and fresh:
        proposals += _join_proposals(
            state, chosen[retried], [cluster_ids[c] for c in fresh], centroids[fresh], config
        )
    if config.runner_up_margin > 0.0 and proposals:
        proposals = _clear_of_runners_up(state, proposals, config.runner_up_margin)
    _accept(state, proposals)


def _clear_of_runners_up(
    state: _State, proposals: list[tuple[float, str, str, int]], margin: float
) -> list[tuple[float, str, str, int]]:
    """The proposals whose centroid cosine beats the face's next cluster's by `margin`.

    Each proposal's runner-up is the face's most similar other cluster, all of them
    looked at, whichever were proposed: a face that passes for two clusters stands out
    for neither.
    """
    every = sorted(state.members)
    column = {cid: col for col, cid in enumerate(every)}
    faces = np.array([p[3] for p in proposals], dtype=np.intp)
    proposed = np.array([column[p[2]] for p in proposals], dtype=np.intp)
    runner_up = np.full(faces.size, -np.inf, dtype=np.float32)
    for r0, c0, tile in _tiles(state.vectors[faces], state.centroids(every)):
        rows = slice(r0, r0 + tile.shape[0])
        own = proposed[rows] - c0
        inside = np.flatnonzero((own >= 0) & (own < tile.shape[1]))
        tile[inside, own[inside]] = -np.inf
        runner_up[rows] = np.maximum(runner_up[rows], tile.max(axis=1))
    return [
        p
        for p, second in zip(proposals, runner_up.tolist(), strict=True)
        if not -p[0] - second < margin
    ]


def _join_proposals(
    state: _State,
    faces: npt.NDArray[np.intp],
    cluster_ids: list[str],
    centroids: Embedding,
    config: ClusteringConfig,
) -> list[tuple[float, str, str, int]]:
    """(-centroid cosine, figure id, cluster, face) for each pair passing both join tests."""
    if not faces.size:
        return []
    # (candidate, cluster) pairs past the centroid gate, tile by tile: memory stays at
    # a tile however many candidates and clusters there are
    hits = [
        (rows + r0, cols + c0, central[rows, cols])
        for r0, c0, central in _tiles(state.vectors[faces], centroids)
        for rows, cols in [np.nonzero(central >= config.join_similarity)]
    ]
    rows = np.concatenate([h[0] for h in hits])
    cols = np.concatenate([h[1] for h in hits])
    scores = np.concatenate([h[2] for h in hits])
    proposals: list[tuple[float, str, str, int]] = []
    if rows.size == 0:
        return proposals
    by_cluster = np.argsort(cols, kind="stable")
    col_values, starts = np.unique(cols[by_cluster], return_index=True)
    for col, chunk in zip(col_values, np.split(by_cluster, starts[1:]), strict=True):
        cluster_id = cluster_ids[int(col)]
        top_mean = _top_mean(
            state.vectors[faces[rows[chunk]]], state.vectors[state.members[cluster_id]], config
        )
        for face, score, robust in zip(
            faces[rows[chunk]].tolist(), scores[chunk].tolist(), top_mean.tolist(), strict=True
        ):
            if robust >= config.join_similarity:
                proposals.append((-score, state.faces[face].figure_id, cluster_id, face))
    return proposals


def _tiles(rows: Embedding, cols: Embedding) -> Iterator[tuple[int, int, Embedding]]:
    """rows @ cols.T tile by tile: (first row, first column, tile)."""
    for r0 in range(0, rows.shape[0], _TILE_ROWS):
        block = rows[r0 : r0 + _TILE_ROWS]
        for c0 in range(0, cols.shape[0], _TILE_COLS):
            yield r0, c0, block @ cols[c0 : c0 + _TILE_COLS].T


def _top_mean(
    faces: Embedding,
    members: Embedding,
    config: ClusteringConfig,
    apart: npt.NDArray[np.bool_] | None = None,
) -> Embedding:
    """Each face's mean cosine to its top_k most similar members.

    `apart` (faces x members) marks pairs that count as -inf (one file). In row chunks:
    a big cluster times many candidates would not fit at once.
    """
    k = min(config.top_k, members.shape[0])
    out = np.empty(faces.shape[0], dtype=np.float32)
    step = max(1, _TILE_ROWS * _TILE_COLS // max(1, members.shape[0]))
    for s in range(0, faces.shape[0], step):
        sims = faces[s : s + step] @ members.T
        if apart is not None:
            sims[apart[s : s + step]] = -np.inf
        out[s : s + step] = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:].mean(axis=1)
    return out


def _accept(state: _State, proposals: list[tuple[float, str, str, int]]) -> None:
    """Apply (-score, figure id, cluster, face) proposals, at most one face per file."""
    # best evidence first, so of two faces from one file the better one joins and the
    # other falls through to its next proposal
    proposals.sort()
    joined: dict[str, list[int]] = {}
    for _, _, cluster_id, face in proposals:
        file_id = state.faces[face].file_id
        if state.cluster_of[face] is not None or file_id in state.files[cluster_id]:
            continue
        state.cluster_of[face] = cluster_id
        state.files[cluster_id].add(file_id)
        joined.setdefault(cluster_id, []).append(face)
    for cluster_id, faces in joined.items():
        state.add(cluster_id, faces)


# rounds of the relaxed join: faces that join make their cluster's evidence stronger
_RELAXED_ROUNDS = 3
# nearest faces looked at for evidence against a face's best cluster
_FOREIGN_NEIGHBOURS = 32


def _join_standing_out(state: _State, candidates: list[int], config: ClusteringConfig) -> None:
    """Join faces whose best cluster clearly stands out, though below join_similarity.

    A fixed cosine serves a large library and a small album badly: among thousands of
    strangers some come close to any cluster, so the strict threshold must be high,
    while in a family album the same person's harder photos fall just below it with
    nobody else anywhere near. The evidence that decides is relative: the face's
    top-k similarity to its best cluster must beat, by `join_margin`, its centroid
    similarity to the next cluster and its similarity to the nearest faces that are
    clearly not that person (not members, and below the relaxed threshold to the
    cluster's mean: faces of the same person are no evidence against
    it). On lfw-dev (7171 faces) it kept BCubed precision at 0.99 and lifted recall;
    on celeb5 (118 in-the-wild photos of 5 people) recall went from 0.63 to 0.97.
    """
    low = config.relaxed_join_similarity
    if low is None:
        return
    _, files = np.unique([f.file_id for f in state.faces], return_inverse=True)
    # after the first round a face's test can change only through a cluster that grew
    grown: set[str] | None = None
    for _ in range(_RELAXED_ROUNDS):
        rest = state.unassigned(candidates)
        if not rest or not state.members:
            return
        cluster_ids = sorted(state.members)
        centroids = state.centroids(cluster_ids)
        everyone = _near_changed(
            state, np.asarray(rest), cluster_ids, centroids, grown, files, config
        )
        if not everyone.size:
            return
        label = np.full(len(state.faces), -1)
        for col, cid in enumerate(cluster_ids):
            label[state.members[cid]] = col
        best, first, second_cosine = _best_two(state.vectors, everyone, centroids)
        # only faces near some cluster can join
        near = first >= low
        near_faces, best = everyone[near], best[near]
        second = second_cosine[near].astype(np.float64)
        robust = np.empty(near_faces.size, dtype=np.float64)
        for col in np.unique(best).tolist():
            rows = np.flatnonzero(best == col)
            members = state.members[cluster_ids[col]]
            apart = files[near_faces[rows]][:, None] == files[members][None, :]
            robust[rows] = _top_mean(
                state.vectors[near_faces[rows]], state.vectors[members], config, apart
            )
        # the cheap tests first, then one scan over every face for all that pass them
        hopeful = np.flatnonzero(~(robust < low) & ~(robust - second < config.join_margin))
        standing = _clear_of_strangers(
            state,
            near_faces[hopeful],
            best[hopeful],
            robust[hopeful],
            label,
            files,
            centroids,
            low,
            config.join_margin,
        )
        proposals = [
            (-robust[row], state.faces[face].figure_id, cluster_ids[best[row]], face)
            for row, face in zip(
                hopeful[standing].tolist(), near_faces[hopeful[standing]].tolist(), strict=True
            )
        ]
        if not proposals:
            return
        sizes = {cid: len(members) for cid, members in state.members.items()}
        _accept(state, proposals)
        grown = {cid for cid, members in state.members.items() if len(members) != sizes[cid]}


def _near_changed(
    state: _State,
    faces: npt.NDArray[np.intp],
    cluster_ids: list[str],
    centroids: Embedding,
    grown: set[str] | None,
    files: npt.NDArray[np.intp],
    config: ClusteringConfig,
) -> npt.NDArray[np.intp]:
    """The faces worth a relaxed look: those near a cluster that changed since they were.

    In the first round (`grown` None) that is every new face, and each retried one that
    could join the cluster changed since the previous run that it is nearest to: its
    top-k cosine there reaches the relaxed threshold and beats, by the margin, its
    centroid cosine to every other changed cluster (the test it must pass against all
    clusters, cut to the changed ones). In later rounds, every face that could so join
    a cluster the round before let grow. A face looks for a place only among changed
    clusters, as in the strict join: its test against the others failed on the same
    evidence. Narrowing on the changed clusters first keeps the scan of every cluster
    to the few faces with a chance (100k faces + 1k: 11 of 16k near ones).
    """
    low = config.relaxed_join_similarity
    assert low is not None
    if grown is None:
        looked = state.retried[faces]
        changed = [col for col, cid in enumerate(cluster_ids) if state.is_fresh(cid)]
    else:
        looked = np.ones(faces.size, dtype=bool)
        changed = [col for col, cid in enumerate(cluster_ids) if cid in grown]
    if not looked.any():
        return faces
    some = faces[looked]
    near = np.zeros(some.size, dtype=bool)
    if changed:
        near = _may_stand_out(
            state, some, [cluster_ids[c] for c in changed], centroids[changed], files, config
        )
    return np.sort(np.concatenate([faces[~looked], some[near]]))


def _best_two(
    vectors: Embedding, faces: npt.NDArray[np.intp], centroids: Embedding
) -> tuple[npt.NDArray[np.intp], Embedding, Embedding]:
    """Each face's most similar centroid, that cosine, and the next one's (-1 if none)."""
    best = np.empty(faces.size, dtype=np.intp)
    first = np.empty(faces.size, dtype=np.float32)
    second = np.full(faces.size, -1.0, dtype=np.float32)
    # whole rows, in blocks whose similarities to every centroid stay near one tile: a
    # row's best two need every column
    step = min(_SCAN_ROWS, max(1, _TILE_ROWS * _TILE_COLS // max(1, centroids.shape[0])))
    for r0 in range(0, faces.size, step):
        block = vectors[faces[r0 : r0 + step]] @ centroids.T
        rows = np.arange(block.shape[0])
        top = np.argmax(block, axis=1)
        best[r0 : r0 + rows.size] = top
        first[r0 : r0 + rows.size] = block[rows, top]
        if block.shape[1] > 1:
            block[rows, top] = -np.inf
            second[r0 : r0 + rows.size] = block.max(axis=1)
    return best, first, second


def _may_stand_out(
    state: _State,
    faces: npt.NDArray[np.intp],
    cluster_ids: list[str],
    centroids: Embedding,
    files: npt.NDArray[np.intp],
    config: ClusteringConfig,
) -> npt.NDArray[np.bool_]:
    """Whether each face passes the relaxed test against these clusters alone."""
    low = config.relaxed_join_similarity
    assert low is not None
    best, first, second = _best_two(state.vectors, faces, centroids)
    hope = np.flatnonzero(first >= low)
    robust = np.full(faces.size, -np.inf)
    for col in np.unique(best[hope]).tolist():
        rows = hope[best[hope] == col]
        members = state.members[cluster_ids[col]]
        apart = files[faces[rows]][:, None] == files[members][None, :]
        robust[rows] = _top_mean(state.vectors[faces[rows]], state.vectors[members], config, apart)
    passed = np.zeros(faces.size, dtype=bool)
    passed[hope] = (robust[hope] >= low) & (robust[hope] - second[hope] >= config.join_margin)
    return passed


def _clear_of_strangers(
    state: _State,
    faces: npt.NDArray[np.intp],
    best: npt.NDArray[np.intp],
    robust: npt.NDArray[np.float64],
    label: npt.NDArray[np.intp],
    files: npt.NDArray[np.intp],
    centroids: Embedding,
    low: float,
    margin: float,
) -> npt.NDArray[np.bool_]:
    """Whether robust - (cosine of the nearest face clearly not in its best cluster) >= margin.

    The nearest such face is looked for among a face's _FOREIGN_NEIGHBOURS nearest faces
    (of other files); when all of those belong with the cluster, the farthest of them
    stands in. Only faces close enough to fail the test matter, so the scan over every
    face keeps just those (robust - cosine < margin), never a full row: when a face
    has _FOREIGN_NEIGHBOURS of them it fails whoever they are, else it fails when one
    of them is clearly someone else.
    """
    ok = np.ones(faces.size, dtype=bool)
    if not faces.size:
        return ok
    n = len(state.faces)
    per_file = np.bincount(files)
    # faces looked at: the nearest ones of other files (a row holds all n, minus its file)
    looked = np.minimum(min(_FOREIGN_NEIGHBOURS, n), n - per_file[files[faces]])
    close_rows: list[npt.NDArray[np.intp]] = [np.zeros(0, dtype=np.intp)]
    close_cols: list[npt.NDArray[np.intp]] = [np.zeros(0, dtype=np.intp)]
    count = np.zeros(faces.size, dtype=np.intp)
    # the test in float64 as the scalar code did it, on the float32 hits around it
    floor = (robust - margin).astype(np.float32) - np.float32(1e-6)
    vectors = state.vectors[faces]
    # column tiles outermost: a face that already has its count of close faces fails
    # whoever the rest are, and leaves the scan (most faces of a big cluster, early)
    open_rows = np.flatnonzero(looked > 0)
    for c0 in range(0, n, _TILE_COLS):
        columns = state.vectors[c0 : c0 + _TILE_COLS]
        for r0 in range(0, open_rows.size, _TILE_ROWS):
            which = open_rows[r0 : r0 + _TILE_ROWS]
            sims = vectors[which] @ columns.T
            r, c = np.nonzero(sims > floor[which, None])
            fails = robust[which[r]] - sims[r, c].astype(np.float64) < margin
            r, c = which[r[fails]], c[fails] + c0
            # faces of its own file (itself included) are not looked at
            other_file = files[faces[r]] != files[c]
            r, c = r[other_file], c[other_file]
            close_rows.append(r)
            close_cols.append(c)
            np.add.at(count, r, 1)
        open_rows = open_rows[count[open_rows] < looked[open_rows]]
        if not open_rows.size:
            break
    rows = np.concatenate(close_rows)
    cols = np.concatenate(close_cols)
    # as many close faces as are looked at: the stand-in (or a stranger) is close
    ok[(count >= looked) & (looked > 0)] = False
    few = ok[rows] & (count[rows] > 0)
    rows, cols = rows[few], cols[few]
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    cuts = np.flatnonzero(np.diff(rows)) + 1
    for i, close in zip(
        rows[np.concatenate(([0], cuts))].tolist() if rows.size else [],
        np.split(cols, cuts) if rows.size else [],
        strict=True,
    ):
        others = (label[close] != best[i]) & (state.vectors[close] @ centroids[best[i]] < low)
        if others.any():
            ok[i] = False
    # no face to look at: the original stand-in is a cosine of -1
    lonely = looked <= 0
    ok[lonely] = ~(robust[lonely] + 1.0 < margin)
    return ok


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
    _, files = np.unique([state.faces[i].file_id for i in candidates], return_inverse=True)
    created: list[str] = []
    for group in _sparse_average_linkage(vectors, files, config.seed_similarity):
        if len(group) < config.min_seed_images:
            continue
        faces = [candidates[int(local)] for local in group]
        if len({state.faces[i].file_id for i in faces}) < config.min_seed_images:
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
    if floor is None or len(rest) < config.min_seed_images or len(state.faces) > _APART_FACES:
        return []
    open_ = np.array(
        [
            now is None and face.seed_eligible and not face.pinned
            for face, now in zip(state.faces, state.cluster_of, strict=True)
        ],
        dtype=bool,
    )
    anchors = np.asarray(rest, dtype=np.intp)
    if state.fresh is not None:
        anchors = anchors[~state.retried[anchors]]
    _, files = np.unique([face.file_id for face in state.faces], return_inverse=True)
    test = ApartTest(floor, config.apart_seed_margin, config.min_seed_images)
    groups = groups_standing_apart(state.vectors, files, open_, anchors, test)
    return [_new_cluster(state, group.tolist(), new_cluster_id) for group in groups]


_SCAN_ROWS = 1024


def _linked_to_new(state: _State, candidates: list[int], threshold: float) -> list[int]:
    """The candidates linked to a face new in this run through pairs >= threshold.

    Average-linkage groups never span two components of that pair graph, so the
    components without a new face would link as the previous run linked them. Grown
    from the new faces outwards, one ring of neighbours per scan: the cost is the
    component's size times the candidates, not the candidates squared.
    """
    chosen = np.asarray(candidates, dtype=np.intp)
    vectors = state.vectors[chosen]
    inside = ~state.retried[chosen]
    ring = np.flatnonzero(inside)
    bound = None
    if vectors.shape[1] > 2 * _BOUND_DIMS and min(ring.size, chosen.size) >= _RING_BOUND_MIN:
        bound = _ProjectedBound(vectors)
    while ring.size:
        if bound is None:
            reached = np.zeros(chosen.size, dtype=bool)
            for _, c0, tile in _tiles(vectors[ring], vectors):
                reached[c0 + np.flatnonzero((tile >= threshold).any(axis=0))] = True
        else:
            reached = bound.reached(vectors, ring, threshold)
        ring = np.flatnonzero(reached & ~inside)
        inside |= reached
    return [int(i) for i in chosen[inside]]


# rings of new faces and candidates both at least this large scan in the projection:
# below it the basis (a 640x640 eigendecomposition, ~0.07 s) costs more than it saves
_RING_BOUND_MIN = 256


class _ProjectedBound:
    """An upper bound on unit vectors' cosines, at the cost of their top principal part.

    x.y = Px.Py + Rx.Ry <= Px.Py + |Rx| |Ry| for the projection P onto any orthonormal
    basis and R the rest; on the top principal directions |R| is small (fused vectors:
    0.5% of their variance is outside the top 128), so few pairs pass the bound without
    passing the threshold, and only those are computed in full.
    """

    def __init__(self, vectors: Embedding) -> None:
        # a few thousand rows estimate the directions well; the bound holds whatever they are
        sample = vectors[:: max(1, vectors.shape[0] // 4096)]
        self.coords = vectors @ _top_directions(sample)
        inside = np.einsum("ij,ij->i", self.coords, self.coords)
        self.rest = np.sqrt(np.maximum(1.0 - inside, 0.0) + _BOUND_SLACK).astype(np.float32)

    def reached(self, vectors: Embedding, ring: npt.NDArray[np.intp], threshold: float) -> _Flags:
        """Columns with a cosine >= threshold to a row of `ring`, exactly."""
        reached = np.zeros(vectors.shape[0], dtype=bool)
        for r0, c0, tile in _tiles(self.coords[ring], self.coords):
            rows = ring[r0 : r0 + tile.shape[0]]
            tile += self.rest[rows, None] * self.rest[None, c0 : c0 + tile.shape[1]]
            cols = c0 + np.flatnonzero((tile >= threshold - _BOUND_SLACK).any(axis=0))
            cols = cols[~reached[cols]]
            if cols.size:
                exact = vectors[rows] @ vectors[cols].T
                reached[cols[(exact >= threshold).any(axis=0)]] = True
        return reached


def _top_directions(rows: Embedding) -> Embedding:
    """The _BOUND_DIMS principal directions (uncentred) of these rows, one per column."""
    basis = np.linalg.eigh((rows.T @ rows).astype(np.float64))[1][:, ::-1][:, :_BOUND_DIMS]
    return np.ascontiguousarray(basis, dtype=np.float32)


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

# faces per row and per column of one tile of a similarity scan (16 MB of float32)
_TILE_ROWS = 1024
_TILE_COLS = 4096


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
    block = np.empty(_TILE_ROWS * _TILE_COLS, dtype=np.float32)
    hit = np.empty(_TILE_ROWS * _TILE_COLS, dtype=bool)
    for r0 in range(0, n, _TILE_ROWS):
        rows = vectors[r0 : r0 + _TILE_ROWS]
        for c0 in range(r0, n, _TILE_COLS):
            cols = vectors[c0 : c0 + _TILE_COLS]
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
_Flags = npt.NDArray[np.bool_]
# a group's neighbours: labels (sorted once clean), the summed cosines W over the face
# pairs known so far, how many pairs that is, which sums are upper bounds, dirty
_Row = tuple[_Ints, _Floats, _Floats | None, _Flags | None, bool]

# dimensions of the projection behind the cheap upper bound on a group pair's cosine
_BOUND_DIMS = 128
# slack on that bound for float32 rounding of the projected sums
_BOUND_SLACK = 1e-4
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
        if dims > _BOUND_DIMS and n >= _BOUND_MIN_FACES:
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
                    ) / pairs[loose] + _BOUND_SLACK
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


def membership_confidence(
    cosine: npt.NDArray[np.floating[Any]], config: ClusteringConfig
) -> npt.NDArray[np.float64]:
    """0..1 for cosines of faces to their cluster's normalised mean.

    A logistic centred on the lowest cosine a face can join at (the relaxed join's, else
    join_similarity), of width confidence_scale: it says how far inside its cluster a
    face sits. The production widths put 95% of the correct members of lfw-dev and
    celeb5 clusters above 0.95; it is not a probability of being right.
    """
    floor = config.relaxed_join_similarity
    floor = config.join_similarity if floor is None else floor
    margin = (np.asarray(cosine, dtype=np.float64) - floor) / config.confidence_scale
    # logistic written via tanh, which cannot overflow for any scale
    confidence: npt.NDArray[np.float64] = 0.5 * (1.0 + np.tanh(margin / 2.0))
    return confidence


def _reexamine(state: _State, config: ClusteringConfig, curated: frozenset[str]) -> dict[str, str]:
    """Merge clusters that the evidence now joins; gone id -> surviving id.

    Average linkage continued over whole clusters: two merge when the mean similarity
    of their faces, pair by pair, reaches merge_similarity (by default seed_similarity),
    as seeding would have put them together had their faces arrived in one run. That
    mean is the dot product of the clusters' mean vectors, so the scan is over clusters,
    not faces. Never merged: two clusters with faces of one file, two that both hold a
    user's work (faces placed by hand, or `curated`), two a user's move set apart. The
    survivor keeps its id: the one with a user's work, else the larger, else the smaller id.
    """
    ids = sorted(state.members)
    if len(ids) < 2:
        return {}
    threshold = config.seed_similarity
    if config.merge_similarity is not None:
        threshold = config.merge_similarity
    means = np.stack([state.vectors[state.members[c]].mean(axis=0) for c in ids])
    if state.fresh is not None:
        # pairs of clusters the previous run already weighed are weighed the same now:
        # only changed clusters and their neighbours (the reach of one merge) are looked at
        fresh = [col for col, cid in enumerate(ids) if cid in state.fresh]
        reach = np.zeros(len(ids), dtype=bool)
        reach[fresh] = True
        if fresh:
            for _, c0, tile in _tiles(means[fresh], means):
                reach[c0 + np.flatnonzero((tile >= threshold).any(axis=0))] = True
        ids = [cid for cid, near in zip(ids, reach.tolist(), strict=True) if near]
        means = means[reach]
        if len(ids) < 2:
            return {}
    sizes = np.array([len(state.members[c]) for c in ids], dtype=np.float32)
    has_pinned = {c: _holds_user_work(state, c, curated) for c in ids}
    merged: dict[str, str] = {}
    distinct = np.arange(len(ids))
    for component in _components(means, distinct, threshold):
        local = [ids[int(c)] for c in component]
        sims = means[component] @ means[component].T
        np.fill_diagonal(sims, -np.inf)
        for a, b in itertools.combinations(range(len(local)), 2):
            ca, cb = local[a], local[b]
            if (
                (has_pinned[ca] and has_pinned[cb])
                or frozenset((ca, cb)) in state.apart
                or not state.files[ca].isdisjoint(state.files[cb])
            ):
                sims[a, b] = sims[b, a] = -np.inf
        for group in _average_linkage(sims, threshold, sizes[component]):
            names = [local[g] for g in group]
            survivor = min(names, key=lambda c: (not has_pinned[c], -len(state.members[c]), c))
            for gone in names:
                if gone != survivor:
                    state.merge(survivor, gone)
                    merged[gone] = survivor
    return merged


def _absorb_joinable(
    state: _State, config: ClusteringConfig, curated: frozenset[str], merged: dict[str, str]
) -> None:
    """Merge a cluster into a larger one that each of its faces would join.

    `merged` (gone id -> surviving id, the re-examination's) gets these merges too.

    Seeding all at once can split a person whose photos vary: average linkage over a
    few hundred faces stops below the threshold where a growing cluster, fed run by
    run, would have taken each face in by the join test. Here the smaller cluster is
    judged face by face with that same test (centroid and top-k cosine to the larger
    one's faces at join_similarity), each face also standing out from every other
    cluster (`_each_would_join`): the evidence an incremental library would have had.
    On lfw-dev (fused) one run's pairwise recall went from 0.967 to 0.975 at precision
    0.994, which brings one run within 0.2 points of five increments. Only pairs with a
    changed cluster are looked at (the others were weighed on the same faces), and only
    where the two centroids are within join_similarity: every face of the smaller one
    passing puts its mean, and so its centroid, there too.
    """
    changed = set(state.members) if state.fresh is None else set(state.fresh)
    while changed:
        ids = sorted(state.members)
        looked = [col for col, cid in enumerate(ids) if cid in changed]
        if len(ids) < 2 or not looked:
            break
        centroids = state.centroids(ids)
        pairs: list[tuple[float, str, str]] = []
        for r0, c0, tile in _tiles(centroids[looked], centroids):
            for r, c in zip(*np.nonzero(tile >= config.join_similarity), strict=True):
                a, b = ids[looked[r0 + int(r)]], ids[c0 + int(c)]
                if a != b:
                    pairs.append((-float(tile[r, c]), min(a, b), max(a, b)))
        changed = set()
        column = {cid: col for col, cid in enumerate(ids)}
        for _, a, b in sorted(set(pairs)):
            if a not in state.members or b not in state.members or a in changed or b in changed:
                continue  # merged this round: weighed again on its new faces next round
            large, small = sorted((a, b), key=lambda c: (-len(state.members[c]), c))
            pair = (column[small], column[large])
            if not _each_would_join(state, small, large, centroids, pair, config, curated):
                continue
            survivor, gone = large, small
            if _holds_user_work(state, small, curated):
                survivor, gone = small, large
            state.merge(survivor, gone)
            _record_merge(merged, gone, survivor)
            changed.add(survivor)


def _merge_cohesive(
    state: _State, config: ClusteringConfig, curated: frozenset[str], merged: dict[str, str]
) -> None:
    """Merge two clusters as alike across as within that clearly match only each other.

    `merged` (gone id -> surviving id) gets these merges too.

    A person whose photos vary (age, light, glasses) can end in two clusters whose mean
    cosine across stays below any fixed threshold that keeps lookalikes apart: on
    lfw-dev (fused) 13 such splits and the closest pairs of different people both sit
    at 0.85-0.87. What tells them apart is each cluster's own spread: a split person's
    two parts are nearly as alike across as each is within, two people are not. So the
    test is the cohesion, the mean cosine across over the geometric mean of the two
    means within, at cohesion_similarity, with the mean across at least the relaxed
    join's cosine. Diffuse clusters score high on it (a seed of strangers among 100k
    faces is alike to its neighbours as to itself), so the pair must also beat every
    other pairing of either by runner_up_margin: in bench/cluster_scale.py's 100k
    library all 13 cohesion merges without it were wrong, each within 0.013 of a
    runner-up, while lfw-dev's splits stood 0.046 or more clear of theirs. The same
    pairs as the re-examination never merge. Only clusters that changed, and those
    within reach of one (whose best or next match it may have been), are weighed.
    """
    threshold = config.cohesion_similarity
    if threshold is None:
        return
    margin = config.runner_up_margin
    floor = config.relaxed_join_similarity
    floor = config.join_similarity if floor is None else floor
    changed = set(state.members) if state.fresh is None else set(state.fresh)
    while changed:
        ids = sorted(state.members)
        if len(ids) < 2:
            break
        centroids = state.centroids(ids)
        sizes = np.array([len(state.members[c]) for c in ids], dtype=np.float64)
        # |sum| / n: the square root of the faces' mean cosine, each with itself included
        spread = np.array([state.sum_norm(c) for c in ids]) / sizes
        within = (spread**2 * sizes - 1.0) / np.maximum(sizes - 1.0, 1.0)
        # across = centroid cosine * spread_a * spread_b; cohesion = across / sqrt(w_a w_b)
        scale = np.where((sizes > 1) & (within > 0.0), spread / np.sqrt(np.abs(within)), 0.0)
        weighed = [col for col, cid in enumerate(ids) if cid in changed]
        matches = _most_cohesive(centroids, scale, weighed, reach=threshold - margin)
        # a changed cluster may have been (or now be) a neighbour's best or next match
        reached = sorted(set(matches.reached) - set(weighed))
        matches.extend(_most_cohesive(centroids, scale, reached))
        partners = sorted(
            {b for a, b in matches.best_at.items() if matches.best[a] >= threshold}
            - set(matches.best_at)
        )
        matches.extend(_most_cohesive(centroids, scale, partners))
        pairs = []
        for a, b in matches.best_at.items():
            if a < b and matches.best_at.get(b) == a:
                # the lower of its two rows' values (float32 may differ in the last bit)
                value = min(matches.best[a], matches.best[b])
                runner_up = max(matches.second[a], matches.second[b])
                if value >= threshold and value - runner_up >= margin:
                    pairs.append((-value, a, b))
        changed = set()
        for _, a, b in sorted(pairs):
            ca, cb = ids[a], ids[b]
            across = float(centroids[a] @ centroids[b]) * spread[a] * spread[b]
            if across < floor or not _may_merge(state, ca, cb, curated):
                continue
            survivor, gone = sorted(
                (ca, cb),
                key=lambda c: (not _holds_user_work(state, c, curated), -len(state.members[c]), c),
            )
            state.merge(survivor, gone)
            _record_merge(merged, gone, survivor)
            changed.add(survivor)


@dataclass
class _Matches:
    """Per cluster column: its most cohesive other cluster, that cohesion, and the next."""

    best_at: dict[int, int] = field(default_factory=dict)
    best: dict[int, float] = field(default_factory=dict)
    second: dict[int, float] = field(default_factory=dict)
    # columns within `reach` of some row
    reached: list[int] = field(default_factory=list)

    def extend(self, other: _Matches) -> None:
        """Take another scan's rows in."""
        self.best_at.update(other.best_at)
        self.best.update(other.best)
        self.second.update(other.second)


def _most_cohesive(
    centroids: Embedding, scale: npt.NDArray[np.float64], rows: list[int], reach: float = np.inf
) -> _Matches:
    """Each given cluster's two most cohesive other clusters, tile by tile."""
    out = _Matches()
    if not rows:
        return out
    chosen = np.asarray(rows, dtype=np.intp)
    best = np.full(chosen.size, -np.inf)
    second = np.full(chosen.size, -np.inf)
    best_at = np.zeros(chosen.size, dtype=np.intp)
    weights = scale.astype(np.float32)
    reached: list[npt.NDArray[np.intp]] = []
    for r0, c0, tile in _tiles(centroids[chosen], centroids):
        block = chosen[r0 : r0 + tile.shape[0]]
        span = slice(r0, r0 + tile.shape[0])
        tile *= weights[block, None] * weights[None, c0 : c0 + tile.shape[1]]
        own = block - c0
        inside = np.flatnonzero((own >= 0) & (own < tile.shape[1]))
        tile[inside, own[inside]] = -np.inf
        if reach < np.inf:
            reached.append(c0 + np.flatnonzero((tile >= reach).any(axis=0)))
        # this tile's top two per row, merged with the tiles' before
        if tile.shape[1] > 1:
            two = np.argpartition(tile, tile.shape[1] - 2, axis=1)[:, -2:]
        else:
            two = np.zeros((tile.shape[0], 2), dtype=np.intp)
        values = np.take_along_axis(tile, two, axis=1).astype(np.float64)
        if tile.shape[1] == 1:
            values[:, 0] = -np.inf
        order = np.argsort(-values, axis=1)
        values = np.take_along_axis(values, order, axis=1)
        two = np.take_along_axis(two, order, axis=1)
        better = values[:, 0] > best[span]
        second[span] = np.where(
            better, np.maximum(best[span], values[:, 1]), np.maximum(second[span], values[:, 0])
        )
        best_at[span] = np.where(better, two[:, 0] + c0, best_at[span])
        best[span] = np.where(better, values[:, 0], best[span])
    out.best_at = dict(zip(rows, best_at.tolist(), strict=True))
    out.best = dict(zip(rows, best.tolist(), strict=True))
    out.second = dict(zip(rows, second.tolist(), strict=True))
    if reached:
        out.reached = np.unique(np.concatenate(reached)).tolist()
    return out


def _record_merge(merged: dict[str, str], gone: str, survivor: str) -> None:
    """Add gone -> survivor to a merge record, moving earlier merges into `gone` along."""
    for earlier, kept in merged.items():
        if kept == gone:
            merged[earlier] = survivor
    merged[gone] = survivor


def _holds_user_work(state: _State, cluster_id: str, curated: frozenset[str]) -> bool:
    """Whether a cluster is curated or holds a face placed by hand."""
    return cluster_id in curated or any(state.faces[i].pinned for i in state.members[cluster_id])


def _may_merge(state: _State, a: str, b: str, curated: frozenset[str]) -> bool:
    """Whether anything but the evidence keeps two clusters apart.

    Never merged automatically: two that both hold a user's work, two a user's move set
    apart, two with faces of one file.
    """
    return (
        not (_holds_user_work(state, a, curated) and _holds_user_work(state, b, curated))
        and frozenset((a, b)) not in state.apart
        and state.files[a].isdisjoint(state.files[b])
    )


def _each_would_join(
    state: _State,
    small: str,
    large: str,
    centroids: Embedding,
    pair: tuple[int, int],
    config: ClusteringConfig,
    curated: frozenset[str],
) -> bool:
    """Whether every face of `small` would join `large`, standing out from the others.

    `centroids`: every cluster's, `pair` the rows of these two, the others the rivals.

    The join test (centroid and top-k cosine at join_similarity), and the top-k cosine
    at least join_margin above the face's centroid cosine to every other cluster, as
    the relaxed join asks: among a million faces a cluster that chance put together
    from strangers can pass the join test alone against a lookalike's cluster (64
    such merges in bench/cluster_scale.py's 1M library), which the margin turns away.
    """
    if not _may_merge(state, small, large, curated):
        return False
    faces = state.vectors[state.members[small]]
    if not (faces @ state.centroid(large) >= config.join_similarity).all():
        return False
    robust = _top_mean(faces, state.vectors[state.members[large]], config)
    if not (robust >= config.join_similarity).all():
        return False
    nearest_rival = np.full(faces.shape[0], -np.inf, dtype=np.float32)
    for r0, c0, tile in _tiles(faces, centroids):
        for col in pair:
            if c0 <= col < c0 + tile.shape[1]:
                tile[:, col - c0] = -np.inf
        rows = slice(r0, r0 + tile.shape[0])
        nearest_rival[rows] = np.maximum(nearest_rival[rows], tile.max(axis=1))
    return bool((robust - nearest_rival >= config.join_margin).all())


def _assignments(state: _State, config: ClusteringConfig) -> list[Assignment]:
    """Final cluster and confidence of every non-pinned face the run may have moved.

    Members of a settled cluster keep their cluster and their confidence (the centroid
    did not move), and a face independent before and after stays as it was: leaving
    them out spares 100k tuples in a run that adds 1k faces.
    """
    confidence = np.zeros(len(state.faces), dtype=np.float64)
    # a face independent before and after is as it came too
    told = np.array(
        [
            face.cluster_id == UNAVAILABLE or (face.cluster_id == INDEPENDENT and now is not None)
            for face, now in zip(state.faces, state.cluster_of, strict=True)
        ],
        dtype=bool,
    )
    for cluster_id, members in state.members.items():
        if state.is_fresh(cluster_id):
            cosine = state.vectors[members] @ state.centroid(cluster_id)
            confidence[members] = membership_confidence(cosine, config)
            told[members] = True
    assignments = []
    for i in np.flatnonzero(told).tolist():
        face, now = state.faces[i], state.cluster_of[i]
        if not face.pinned:
            score = float(confidence[i]) if now else 0.0
            assignments.append(Assignment(face.figure_id, now or INDEPENDENT, score))
    return assignments
