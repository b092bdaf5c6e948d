"""Incremental grouping of near-duplicate and burst photos (IMM similar-image clusters).

Precision first: a cluster is a set of photos of which every two are near-duplicates
(complete linkage over the pair rule below), so no chain of small steps can carry a
cluster from one scene to another, however long a drifting sequence is. The price is
recall on long pans: frames more than a couple of seconds apart end up in separate
clusters of mutually similar frames. A cluster has at least two photos.

The pair rule, for two photos at embedding cosine distance d (1 - cosine of the unit
vectors of vision/image_embedding.py), cheapest evidence first:

1. d > verify_distance: different.
2. d <= sure_distance: near-duplicates.
3. both capture times known and more than burst_seconds apart: different (a copy keeps
   its EXIF DateTimeOriginal; a similar photo taken minutes later is another shot).
4. pHash Hamming distance <= hash_bits: near-duplicates (the same frame re-encoded,
   resized, re-exposed or blurred).
5. otherwise the caller's `verify(file_a, file_b)` decides (geometric verification,
   vision/geometric_match.py); None from it, or no callback, means different.

Thresholds, measured by bench/similar_quality.py (Open-NSFW embeddings, 64-bit pHash,
ORB + RANSAC needing 25 inliers) on the labelled sets (UKBench copies, resolution variants
of one portrait, a 16 s handheld sequence, the 24 Kodak photos as different photos of
often similar scenes), on synthetic bursts of the Kodak photos (5% crop, exposure x0.7
and x1.3, JPEG quality 50, a 3%/2% shift, a 3 degree rotation, a Gaussian blur of 2 px)
and on hard negatives (the left and right 45% of each Kodak photo: two views of one
place that share no pixel):
- sure_distance 0.03: the two halves of one photo come as close as 0.065 and different
  photos 0.165, so nothing different was ever within 0.03; 38% of burst pairs are.
- verify_distance 0.22: burst pairs reach 0.167 (blurred against rotated), copies in the
  labelled sets 0.205 (a grey copy against a rotated one). Different photos within it
  are common (from 0.165 on the Kodak set): the verifier turns them down.
- hash_bits 10: re-encoded, re-exposed and blurred frames are within 8 bits, while no
  different pair came closer than 16 (crops and shifts move the hash up to 16 bits, so
  those go to the verifier). dHash was measured too and separated no pair pHash did not.
- burst_seconds 60: not measured (no evaluation set has photos minutes apart): a guard
  that spares verifying look-alike photos taken at different moments.

Pairwise precision / recall there: synthetic bursts 1.000 / 1.000 (imagededup's pHash at
10 bits: 1.000 / 0.772), also when grouped in two incremental runs; hard negatives: no
pair grouped; the handheld sequence 1.000 / 0.125, as designed: only frames about a
second apart stay mutually near-duplicate. Without a verifier, bursts 1.000 / 0.658.

Cost, for n photos of which m are fresh: one pass of m x n dot products in row blocks,
keeping pairs within verify_distance; then a merge per kept pair, each checking the
cross pairs of two groups (memoised), and one `verify` call per borderline pair that a
merge needs (bounded by max_verifications). The benchmark's runs grouped 628 photos with
333 calls, in about 2 ms per photo, verification included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from openimm.grouping.unit_rows import unit_rows

Embedding = npt.NDArray[np.float32]
# file id, file id -> same shot (True), different (False) or cannot tell (None)
Verify = Callable[[str, str], bool | None]

_SCAN_ROWS = 1024
_HASH_BITS = 64


@dataclass(frozen=True, eq=False)
class ImageToGroup:
    """One photo as grouping sees it: identity, features and current state."""

    file_id: str
    # unit vector; any dimension as long as every photo of a run has the same one
    embedding: Embedding
    # 64-bit pHash (vision/perceptual_hash.py)
    phash: int
    # POSIX seconds (vision/capture_time.py), None when unknown
    captured_at: float | None
    # ImageScore.overall (vision/image_score.py): picks the best shot of a cluster
    score: float
    # the similar-image cluster it is in, None when in none
    cluster_id: str | None = None
    # True once a run has compared it with every photo present then: pairs of two
    # examined photos are not looked for again (an earlier run has judged them)
    examined: bool = False


@dataclass(frozen=True)
class GroupingConfig:
    """Thresholds of the pair rule; see the module docstring for how they were chosen."""

    sure_distance: float = 0.03
    verify_distance: float = 0.22
    hash_bits: int = 10
    burst_seconds: float = 60.0
    # verify calls allowed in one run; beyond it borderline pairs count as different
    max_verifications: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.sure_distance <= self.verify_distance <= 2.0:
            raise ValueError("need 0 <= sure_distance <= verify_distance <= 2")
        if not 0 <= self.hash_bits <= _HASH_BITS:
            raise ValueError(f"hash_bits must be within 0..{_HASH_BITS}")
        if not self.burst_seconds > 0.0:
            raise ValueError("burst_seconds must be positive")
        if self.max_verifications is not None and self.max_verifications < 0:
            raise ValueError("max_verifications must not be negative")


@dataclass(frozen=True)
class GroupingOutcome:
    """Result of a run: where every photo is, and the clusters that exist afterwards."""

    # every photo given: its cluster id, or None
    assignments: dict[str, str | None]
    # every cluster after the run, members best shot first (score, then file id)
    clusters: dict[str, list[str]]
    # in creation order
    created: list[str]
    # clusters that had fewer than two photos left: to delete
    dissolved: list[str]
    # verify calls made
    verifications: int = 0


def group_similar_images(
    images: Sequence[ImageToGroup],
    config: GroupingConfig,
    new_cluster_id: Callable[[], str],
    verify: Verify | None = None,
) -> GroupingOutcome:
    """Run one incremental grouping pass over all photos of a dataset.

    Clusters keep their ids and members; fresh photos (not examined, or left alone by a
    dissolved cluster) join an existing cluster when they are near-duplicates of all its
    photos, or form new clusters with other photos. Existing clusters never merge. A
    stored cluster that none of `images` belongs to is not in the outcome: delete it.
    """
    ordered = sorted(images, key=lambda image: image.file_id)
    state = _State(ordered, config, verify)
    dissolved = state.dissolve_small()
    for _, i, j in _candidate_pairs(state):
        state.try_merge(i, j)
    created = state.name_new_groups(new_cluster_id)
    return GroupingOutcome(
        assignments={image.file_id: state.cluster_id(i) for i, image in enumerate(ordered)},
        clusters=state.clusters(),
        created=created,
        dissolved=dissolved,
        verifications=state.verifications,
    )


class _State:
    """Mutable bookkeeping of one run: groups, their members and the pair verdicts."""

    def __init__(
        self, images: list[ImageToGroup], config: GroupingConfig, verify: Verify | None
    ) -> None:
        self.images = images
        self.config = config
        self.verify = verify
        self.vectors = unit_rows([f.embedding for f in images])
        self.verifications = 0
        self.links: dict[tuple[int, int], bool] = {}
        # group key per photo: a cluster id, or a provisional key of a new group
        self.group_of: list[str] = []
        self.members: dict[str, list[int]] = {}
        self.existing: set[str] = set()
        self.fresh = np.zeros(len(images), dtype=bool)
        seen: set[str] = set()
        for i, image in enumerate(images):
            if image.file_id in seen:
                raise ValueError(f"duplicate file_id {image.file_id!r}")
            seen.add(image.file_id)
            if image.cluster_id is None:
                self._alone(i)
                self.fresh[i] = not image.examined
            else:
                self.group_of.append(image.cluster_id)
                self.members.setdefault(image.cluster_id, []).append(i)
                self.existing.add(image.cluster_id)

    def _alone(self, i: int) -> None:
        # new_cluster_id may not return ids starting with "\0", so keys never collide
        key = f"\0{i}"
        if i < len(self.group_of):
            self.group_of[i] = key
        else:
            self.group_of.append(key)
        self.members[key] = [i]

    def dissolve_small(self) -> list[str]:
        """Clusters with fewer than two photos are gone; their photo is fresh again."""
        gone = sorted(c for c in self.existing if len(self.members[c]) < 2)
        for cluster_id in gone:
            for i in self.members.pop(cluster_id):
                self._alone(i)
                self.fresh[i] = True
            self.existing.discard(cluster_id)
        return gone

    def try_merge(self, i: int, j: int) -> None:
        """Merge the groups of i and j when every photo of one is linked to all of the other."""
        a, b = self.group_of[i], self.group_of[j]
        if a == b or (a in self.existing and b in self.existing):
            return
        left, right = self.members[a], self.members[b]
        cosine = self.vectors[left] @ self.vectors[right].T
        if float(cosine.min()) < 1.0 - self.config.verify_distance:
            return
        # the least similar pairs first: they are the likeliest to fail
        order = np.argsort(cosine, axis=None, kind="stable")
        rows, cols = np.unravel_index(order, cosine.shape)
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            if not self.linked(left[row], right[col], 1.0 - float(cosine[row, col])):
                return
        keep, gone = (b, a) if b in self.existing or (a not in self.existing and b < a) else (a, b)
        for k in self.members[gone]:
            self.group_of[k] = keep
        self.members[keep].extend(self.members.pop(gone))

    def linked(self, i: int, j: int, distance: float) -> bool:
        """The pair rule of the module docstring, memoised."""
        key = (i, j) if i < j else (j, i)
        verdict = self.links.get(key)
        if verdict is None:
            verdict = self._judge(i, j, distance)
            self.links[key] = verdict
        return verdict

    def _judge(self, i: int, j: int, distance: float) -> bool:
        config = self.config
        if distance > config.verify_distance:
            return False
        if distance <= config.sure_distance:
            return True
        a, b = self.images[i], self.images[j]
        if (
            a.captured_at is not None
            and b.captured_at is not None
            and abs(a.captured_at - b.captured_at) > config.burst_seconds
        ):
            return False
        if (a.phash ^ b.phash).bit_count() <= config.hash_bits:
            return True
        budget = config.max_verifications
        if self.verify is None or (budget is not None and self.verifications >= budget):
            return False
        self.verifications += 1
        return self.verify(a.file_id, b.file_id) is True

    def name_new_groups(self, new_cluster_id: Callable[[], str]) -> list[str]:
        """Give every new group of two or more photos a cluster id; in file id order."""
        created: list[str] = []
        provisional = [key for key in self.members if key not in self.existing]
        groups = sorted(
            (sorted(self.members[key]), key) for key in provisional if len(self.members[key]) > 1
        )
        for group, key in groups:
            cluster_id = new_cluster_id()
            if cluster_id in self.members or cluster_id in created or cluster_id.startswith("\0"):
                raise ValueError(f"new_cluster_id returned a used or invalid id {cluster_id!r}")
            for k in group:
                self.group_of[k] = cluster_id
            self.members[cluster_id] = self.members.pop(key)
            self.existing.add(cluster_id)
            created.append(cluster_id)
        return created

    def cluster_id(self, i: int) -> str | None:
        """The photo's cluster after the run, None when alone."""
        key = self.group_of[i]
        return key if key in self.existing else None

    def clusters(self) -> dict[str, list[str]]:
        """Every cluster's file ids, the best shot first."""
        return {
            cluster_id: [
                self.images[k].file_id
                for k in sorted(
                    self.members[cluster_id],
                    key=lambda k: (-self.images[k].score, self.images[k].file_id),
                )
            ]
            for cluster_id in sorted(self.existing)
        }


def _candidate_pairs(state: _State) -> list[tuple[float, int, int]]:
    """(distance, i, j) of pairs within verify_distance that involve a fresh photo.

    Sorted by distance, then by index (file id order), so a run does not depend on the
    order the photos were given in.
    """
    fresh = np.flatnonzero(state.fresh)
    vectors = state.vectors
    floor = 1.0 - state.config.verify_distance
    found: list[tuple[float, int, int]] = []
    for start in range(0, fresh.size, _SCAN_ROWS):
        rows = fresh[start : start + _SCAN_ROWS]
        cosine = vectors[rows] @ vectors.T
        hit_rows, cols = np.nonzero(cosine >= floor)
        heads = rows[hit_rows]
        # each pair once: a fresh-fresh pair from its smaller index, and never a photo
        # with itself
        keep = (heads != cols) & ~(state.fresh[cols] & (cols < heads))
        for head, col, value in zip(
            heads[keep].tolist(),
            cols[keep].tolist(),
            cosine[hit_rows[keep], cols[keep]].tolist(),
            strict=True,
        ):
            i, j = (head, col) if head < col else (col, head)
            found.append((1.0 - value, i, j))
    found.sort()
    return found
