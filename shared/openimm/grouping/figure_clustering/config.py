"""What a clustering run is given and what it returns: faces, thresholds, outcome.

The reserved cluster ids (UNAVAILABLE: never processed; INDEPENDENT: examined, fits
nowhere yet, retried next run), the face as the run sees it, the thresholds with their
measured reasons, and the per-face result. Every phase reads these; none changes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

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
class FaceColumns:
    """Faces as columns, entry i one face (FaceToCluster's fields): what a caller holding
    arrays passes instead of objects, 100k of which took a third of a second to build.
    """

    figure_ids: Sequence[str]
    file_ids: Sequence[str]
    cluster_ids: Sequence[str]
    seed_eligible: npt.NDArray[np.bool_]
    pinned: npt.NDArray[np.bool_]
    moved_from: Sequence[str | None]
    # row i is face i's embedding
    vectors: Embedding

    def __len__(self) -> int:
        return len(self.figure_ids)

    @staticmethod
    def of(faces: Sequence[FaceToCluster], vectors: Embedding) -> FaceColumns:
        """These faces as columns, with their embeddings already stacked in `vectors`."""
        return FaceColumns(
            figure_ids=[face.figure_id for face in faces],
            file_ids=[face.file_id for face in faces],
            cluster_ids=[face.cluster_id for face in faces],
            seed_eligible=np.array([face.seed_eligible for face in faces], dtype=bool),
            pinned=np.array([face.pinned for face in faces], dtype=bool),
            moved_from=[face.moved_from for face in faces],
            vectors=vectors,
        )

    def take(self, order: Sequence[int]) -> FaceColumns:
        """These entries, in this order."""
        return FaceColumns(
            figure_ids=[self.figure_ids[i] for i in order],
            file_ids=[self.file_ids[i] for i in order],
            cluster_ids=[self.cluster_ids[i] for i in order],
            seed_eligible=self.seed_eligible[list(order)],
            pinned=self.pinned[list(order)],
            moved_from=[self.moved_from[i] for i in order],
            vectors=self.vectors[list(order)],
        )

    def faces(self) -> list[FaceToCluster]:
        """The entries as FaceToCluster objects."""
        return [
            FaceToCluster(
                figure_id=figure_id,
                file_id=file_id,
                embedding=vector,
                cluster_id=cluster_id,
                seed_eligible=seed,
                pinned=pinned,
                moved_from=moved_from,
            )
            for figure_id, file_id, vector, cluster_id, seed, pinned, moved_from in zip(
                self.figure_ids,
                self.file_ids,
                self.vectors,
                self.cluster_ids,
                self.seed_eligible.tolist(),
                self.pinned.tolist(),
                self.moved_from,
                strict=True,
            )
        ]


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
