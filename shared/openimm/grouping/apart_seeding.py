"""Seeding by a relative test: a few faces that are each other's nearest, far from the rest.

A fixed seed cosine is tuned for a library where a face meets thousands of strangers
and a few of them come close: there, 3 photos of one person at a mean cosine of 0.8
are no evidence, since strangers reach that too. In a small album nobody else is near,
and the same 3 photos are each other's nearest faces by a wide gap. So a group seeds
here when, for each member, the other members are exactly its nearest faces (of other
images, among every face of the dataset, clustered or not), their mean cosine reaches
an absolute floor, and the next nearest face is at least a margin below the farthest
of them.

The test only gets harder as faces arrive (a new face can only come nearer than the
old next-nearest), so a group of faces an earlier run left alone can pass only with a
new face in it: a run told what is settled looks from the new faces alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Embedding = npt.NDArray[np.float32]
_Ints = npt.NDArray[np.intp]
_Flags = npt.NDArray[np.bool_]

# the largest group the test looks at: a person with more photos than this left alone
# is no small-album case (the strict seed's average linkage has evidence enough there)
LARGEST_GROUP = 12
# faces per row and per column of one similarity tile (16 MB of float32)
_TILE_ROWS = 1024
_TILE_COLS = 4096


@dataclass(frozen=True)
class ApartTest:
    """The thresholds of the relative seed test."""

    # mean cosine each member needs to the other members
    floor: float
    # the member's cosine to its farthest fellow member minus that to its nearest face
    # outside the group
    margin: float
    # faces a group needs, each of another image (IMM: 3)
    min_images: int


def groups_standing_apart(
    vectors: Embedding, files: _Ints, open_: _Flags, anchors: _Ints, test: ApartTest
) -> list[_Ints]:
    """Disjoint groups of `open_` faces passing the test, each holding one of `anchors`.

    `vectors` are every face of the dataset (unit rows), `files` their image, `open_`
    the faces that may seed (in no cluster, seed-eligible: a blurred or tiny face is
    near many people, and in a group of 5 on lfw-dev it let 2 strangers in). Groups
    come sorted by their first member, members ascending.
    """
    anchors = anchors[open_[anchors]]
    # A group that passes among all faces passes among the open ones alone (its members
    # are open, and fewer faces only leave the next nearest farther), and contains the
    # group each of its members passes with there: so the open faces, far fewer in a
    # large library, narrow the anchors first, and only those found in a group there
    # are looked at among all faces.
    among_open = _Neighbours(vectors, files, np.flatnonzero(open_))
    found = _smallest_groups(anchors, among_open, files, open_, test)
    if not found:
        return []
    members = np.unique(np.concatenate([np.asarray(g, dtype=np.intp) for g in found]))
    everyone = _Neighbours(vectors, files, np.arange(vectors.shape[0]))
    found = _smallest_groups(members, everyone, files, open_, test)
    # a group found from a member that is no anchor must hold one: older faces alone
    # were weighed by an earlier run (and a library clustered otherwise, by identity
    # alone, leaves no person of 3 such faces among them: only strangers)
    looked = set(anchors.tolist())
    found = {group for group in found if not looked.isdisjoint(group)}
    # the passing groups holding a face are nested (each is a prefix of its nearest
    # faces): the smallest ones are disjoint, and a larger one found from a member it
    # does not share with a smaller one goes. The smallest, because a passing group can
    # hold two people each standing apart from the rest (two tight triples at 0.73).
    taken: set[int] = set()
    groups = []
    for group in sorted(found, key=lambda g: (len(g), g)):
        if taken.isdisjoint(group):
            taken.update(group)
            groups.append(group)
    return [np.asarray(g, dtype=np.intp) for g in sorted(groups)]


def _smallest_groups(
    anchors: _Ints,
    lists: _Neighbours,
    files: _Ints,
    open_: _Flags,
    test: ApartTest,
) -> set[tuple[int, ...]]:
    """Each anchor's smallest passing group, among the faces `lists` looks at."""
    lists.find(anchors)
    found: set[tuple[int, ...]] = set()
    for anchor in anchors.tolist():
        group = _smallest_passing(anchor, lists, files, open_, test)
        if group is not None:
            found.add(group)
    return found


class _Neighbours:
    """Each face's LARGEST_GROUP nearest faces of other images in `pool`, when first asked."""

    def __init__(self, vectors: Embedding, files: _Ints, pool: _Ints) -> None:
        self.vectors = vectors
        self.files = files
        self.pool = pool
        self.faces: dict[int, _Ints] = {}
        self.cosines: dict[int, npt.NDArray[np.float64]] = {}

    def find(self, faces: _Ints) -> None:
        """Compute the lists of these faces (those not known yet), tile by tile."""
        todo = np.asarray([f for f in faces.tolist() if f not in self.faces], dtype=np.intp)
        pool, k = self.pool, LARGEST_GROUP
        for r0 in range(0, todo.size, _TILE_ROWS):
            rows = todo[r0 : r0 + _TILE_ROWS]
            # -1 / -inf: no face (a dataset with fewer faces than a list holds)
            best = np.full((rows.size, k), -np.inf, dtype=np.float32)
            at = np.full((rows.size, k), -1, dtype=np.intp)
            for c0 in range(0, pool.size, _TILE_COLS):
                cols = pool[c0 : c0 + _TILE_COLS]
                tile = self.vectors[rows] @ self.vectors[cols].T
                tile[self.files[rows, None] == self.files[None, cols]] = -np.inf
                # only rows this tile improves: after the first tiles, few of them
                up = np.flatnonzero(tile.max(axis=1) > best.min(axis=1))
                if not up.size:
                    continue
                sub = tile[up]
                if sub.shape[1] > k:
                    top = np.argpartition(-sub, k - 1, axis=1)[:, :k]
                else:
                    top = np.broadcast_to(np.arange(sub.shape[1]), sub.shape)
                sims = np.concatenate([best[up], np.take_along_axis(sub, top, axis=1)], axis=1)
                faces = np.concatenate([at[up], cols[top]], axis=1)
                keep = np.argpartition(-sims, k - 1, axis=1)[:, :k]
                best[up] = np.take_along_axis(sims, keep, axis=1)
                at[up] = np.take_along_axis(faces, keep, axis=1)
            # nearest first; ties by face index, so that the order is the same in any run
            order = np.lexsort((at, -best), axis=1)
            best = np.take_along_axis(best, order, axis=1)
            at = np.take_along_axis(at, order, axis=1)
            for face, cosines, near in zip(rows.tolist(), best, at, strict=True):
                self.faces[face] = near
                self.cosines[face] = np.where(np.isfinite(cosines), cosines, -1.0).astype(
                    np.float64
                )


def _smallest_passing(
    anchor: int,
    lists: _Neighbours,
    files: _Ints,
    open_: _Flags,
    test: ApartTest,
) -> tuple[int, ...] | None:
    """The smallest group holding `anchor` that passes the test, members ascending."""
    near, cosines = lists.faces[anchor], lists.cosines[anchor]
    for size in range(test.min_images, LARGEST_GROUP + 1):
        members = near[: size - 1]
        group = np.append(members, anchor)
        if not _stands_apart(cosines, size, test) or not _may_seed(group, files, open_):
            continue
        lists.find(members)
        if all(_is_group_of(int(m), group, size, lists, test) for m in members.tolist()):
            return tuple(sorted(group.tolist()))
    return None


def _stands_apart(cosines: npt.NDArray[np.float64], size: int, test: ApartTest) -> bool:
    """Whether a face's size-1 nearest reach the floor on average, the next a margin below."""
    # below the farthest of them, not their mean: two lookalikes at 0.8 beside three
    # photos of one person at 0.9 stood apart as five on lfw-dev by their mean
    inside = float(cosines[: size - 1].mean())
    gap = float(cosines[size - 2] - cosines[size - 1])
    return inside >= test.floor and gap >= test.margin


def _may_seed(group: _Ints, files: _Ints, open_: _Flags) -> bool:
    """Whether these faces may form a new cluster: all open, one per image."""
    if (group < 0).any() or not open_[group].all():
        return False
    return bool(np.unique(files[group]).size == group.size)


def _is_group_of(member: int, group: _Ints, size: int, lists: _Neighbours, test: ApartTest) -> bool:
    """Whether a member's size-1 nearest faces are the rest of the group, standing apart."""
    near = lists.faces[member][: size - 1]
    rest = set(group.tolist()) - {member}
    return set(near.tolist()) == rest and _stands_apart(lists.cosines[member], size, test)
