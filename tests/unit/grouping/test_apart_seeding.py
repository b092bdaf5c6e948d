"""Seeding by the relative test: few people's few photos cluster, a crowd's lookalikes do not."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from openimm.grouping import (
    INDEPENDENT,
    UNAVAILABLE,
    ClusteringConfig,
    ClusteringOutcome,
    FaceToCluster,
)
from openimm.grouping import cluster_figures as cluster
from openimm.grouping.apart_seeding import ApartTest, groups_standing_apart
from openimm.grouping.figure_clustering import seeding

Vectors = npt.NDArray[np.float32]
DIM = 128
# the production shape for fused vectors: strict seed and join at 0.88, relaxed join
STRICT = ClusteringConfig(
    join_similarity=0.88,
    seed_similarity=0.88,
    relaxed_join_similarity=0.82,
    join_margin=0.05,
    runner_up_margin=0.03,
)
APART = dataclasses.replace(STRICT, apart_seed_similarity=0.75, apart_seed_margin=0.06)


def _photos(rng: np.random.Generator, person: Vectors, count: int, cosine: float) -> Vectors:
    """Photos of one person whose pairwise cosines are about `cosine`."""
    jitter = rng.standard_normal((count, DIM)) / np.sqrt(DIM)
    shots = np.sqrt(cosine) * person + np.sqrt(1.0 - cosine) * jitter
    return (shots / np.linalg.norm(shots, axis=1, keepdims=True)).astype(np.float32)


def _people(rng: np.random.Generator, count: int) -> Vectors:
    people = rng.standard_normal((count, DIM))
    return (people / np.linalg.norm(people, axis=1, keepdims=True)).astype(np.float32)


def _faces(vectors: Vectors, prefix: str = "f") -> list[FaceToCluster]:
    return [
        FaceToCluster(f"{prefix}{i:04d}", f"{prefix}-file{i}", v, UNAVAILABLE, True)
        for i, v in enumerate(vectors)
    ]


def _ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"Cluster-{next(counter):04d}"


def _groups(placed: dict[str, str]) -> set[frozenset[str]]:
    members: dict[str, set[str]] = {}
    for figure_id, cluster_id in placed.items():
        if cluster_id != INDEPENDENT:
            members.setdefault(cluster_id, set()).add(figure_id)
    return {frozenset(m) for m in members.values()}


def _album(seed: int = 3) -> tuple[Vectors, list[int]]:
    """3 people with 4 photos each at a pairwise cosine near 0.8, and 6 strangers."""
    rng = np.random.default_rng(seed)
    people = _people(rng, 9)
    vectors = np.concatenate(
        [_photos(rng, people[p], 4, 0.8) for p in range(3)] + [people[3:]], axis=0
    )
    return vectors, [p for p in range(3) for _ in range(4)] + list(range(3, 9))


def test_a_small_albums_people_get_a_cluster_each_by_standing_apart() -> None:
    vectors, person = _album()
    faces = _faces(vectors)
    # the strict seed alone: no cluster, the photos are below its 0.88
    strict = cluster(faces, STRICT, _ids())
    assert {a.cluster_id for a in strict.assignments} == {INDEPENDENT}

    outcome = cluster(faces, APART, _ids())
    placed = {a.figure_id: a.cluster_id for a in outcome.assignments}
    expected = {
        frozenset(f.figure_id for f, p in zip(faces, person, strict=True) if p == who)
        for who in range(3)
    }
    assert _groups(placed) == expected


def test_lookalike_strangers_among_many_at_the_same_cosine_seed_nothing() -> None:
    # 400 strangers all about 0.8 alike (one crowd of lookalikes): a fixed cosine of
    # 0.75 would link them all, yet no few of them stand apart from the rest
    rng = np.random.default_rng(5)
    centre = _people(rng, 1)[0]
    crowd = _photos(rng, centre, 400, 0.8)
    faces = _faces(crowd)
    outcome = cluster(faces, APART, _ids())
    assert {a.cluster_id for a in outcome.assignments} == {INDEPENDENT}


def test_the_same_photos_seed_alone_but_not_in_a_crowd_of_lookalikes() -> None:
    rng = np.random.default_rng(8)
    person = _people(rng, 1)[0]
    mine = _photos(rng, person, 4, 0.8)
    alone = cluster(_faces(mine), APART, _ids())
    assert len(alone.created) == 1
    assert {a.cluster_id for a in alone.assignments} == set(alone.created)
    # strangers each about as near to the person as the photos are to each other
    crowd = _photos(rng, person, 300, 0.72)
    outcome = cluster(_faces(np.concatenate([mine, crowd])), APART, _ids())
    assert {a.cluster_id for a in outcome.assignments} == {INDEPENDENT}


def test_two_tight_triples_near_each_other_stand_apart_as_two_groups() -> None:
    # each triple at 0.9 within, the triples at 0.73 across, a far face at 0.6: the six
    # stand apart from the far face too, but as two people, not one
    rng = np.random.default_rng(11)
    base = _people(rng, 1)[0]
    a, b = _photos(rng, base, 2, 0.73)
    vectors = np.concatenate([_photos(rng, a, 3, 0.9), _photos(rng, b, 3, 0.9)], axis=0)
    files = np.arange(6)
    everyone = np.ones(6, dtype=bool)
    groups = groups_standing_apart(vectors, files, everyone, np.arange(6), ApartTest(0.7, 0.1, 3))
    assert [g.tolist() for g in groups] == [[0, 1, 2], [3, 4, 5]]


def test_a_group_needs_three_images_of_eligible_faces() -> None:
    vectors, _ = _album()
    faces = _faces(vectors)
    # one of each person's four photos eligible only: no group can seed
    faces = [dataclasses.replace(f, seed_eligible=i % 4 == 0) for i, f in enumerate(faces)]
    outcome = cluster(faces, APART, _ids())
    assert {a.cluster_id for a in outcome.assignments} == {INDEPENDENT}


def test_two_faces_of_one_image_never_seed_together() -> None:
    rng = np.random.default_rng(4)
    mine = _photos(rng, _people(rng, 1)[0], 3, 0.8)
    faces = _faces(mine)
    faces[1] = dataclasses.replace(faces[1], file_id=faces[0].file_id)
    outcome = cluster(faces, APART, _ids())
    assert {a.cluster_id for a in outcome.assignments} == {INDEPENDENT}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_albums_growing_run_by_run_end_as_one_run_over_everything(seed: int) -> None:
    # 30 people of 2 to 6 photos at 0.7-0.85 within, some people near another, 60
    # strangers; the photos arrive in two runs, the second told what is settled
    rng = np.random.default_rng(seed)
    people = _people(rng, 30)
    people[1::3] = _photos(rng, people[0], 10, 0.6)[: people[1::3].shape[0]]
    parts = [
        _photos(rng, people[p], int(rng.integers(2, 7)), float(rng.uniform(0.7, 0.85)))
        for p in range(30)
    ]
    vectors = np.concatenate([*parts, _people(rng, 60)], axis=0)
    order = rng.permutation(len(vectors))
    faces = _faces(vectors[order])
    first = [f for i, f in enumerate(faces) if i % 3]
    new_id = _ids()
    prior = cluster(first, APART, new_id)
    placed = {a.figure_id: a.cluster_id for a in prior.assignments}
    settled = set(placed.values()) - {INDEPENDENT}
    again = [dataclasses.replace(f, cluster_id=placed.get(f.figure_id, UNAVAILABLE)) for f in faces]

    everything = cluster(again, APART, new_id)
    told = cluster(again, APART, new_id, settled=settled)

    def stored(outcome: ClusteringOutcome) -> dict[str, str]:
        return {**placed, **{a.figure_id: a.cluster_id for a in outcome.assignments}}

    assert _groups(stored(told)) == _groups(stored(everything))
    # not trivial: both runs seed by standing apart, the second from faces retried too
    assert prior.created and told.created
    assert {a.cluster_id for a in told.assignments if a.figure_id in placed} - {INDEPENDENT}
    assert not cluster(first, STRICT, _ids()).created


def _dense_smallest_groups(
    vectors: Vectors, files: npt.NDArray[np.intp], free: npt.NDArray[np.bool_], test: ApartTest
) -> set[tuple[int, ...]]:
    """The test's definition on the full similarity matrix, face by face."""
    sims = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    sims[files[:, None] == files[None, :]] = -np.inf
    order = [
        sorted(range(len(vectors)), key=lambda j, i=i: (-sims[i, j], j)) for i in range(len(sims))
    ]

    def passes(group: list[int]) -> bool:
        size = len(group)
        for m in group:
            near = order[m][: size - 1]
            inside = float(np.mean([sims[m, j] for j in near]))
            if set(near) != set(group) - {m} or not inside >= test.floor:
                return False
            if not sims[m, near[-1]] - sims[m, order[m][size - 1]] >= test.margin:
                return False
        return len({int(files[m]) for m in group}) == size and bool(free[group].all())

    found = set()
    for a in np.flatnonzero(free).tolist():
        for size in range(test.min_images, 13):
            group = [a, *order[a][: size - 1]]
            if passes(group):
                found.add(tuple(sorted(group)))
                break
    return found


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_groups_standing_apart_are_the_definitions_on_the_full_matrix(seed: int) -> None:
    # narrowed among the free faces first, then among all: the same groups as the test
    # on the full matrix, with clustered faces, shared images and tight pairs around
    rng = np.random.default_rng(seed)
    people = _people(rng, 25)
    people[1::4] = _photos(rng, people[0], 7, 0.5)[: people[1::4].shape[0]]
    vectors = np.concatenate(
        [_photos(rng, people[p], int(rng.integers(1, 7)), 0.8) for p in range(25)], axis=0
    )
    n = len(vectors)
    files = rng.integers(0, int(n * 0.9), n)
    free = rng.random(n) < 0.85
    test = ApartTest(0.72, 0.08, 3)
    groups = groups_standing_apart(vectors, files, free, np.arange(n), test)

    expected = _dense_smallest_groups(vectors, files, free, test)
    smallest: list[tuple[int, ...]] = []
    for group in sorted(expected, key=lambda g: (len(g), g)):
        if all(set(group).isdisjoint(s) for s in smallest):
            smallest.append(group)
    assert [tuple(g.tolist()) for g in groups] == sorted(smallest)
    assert len(groups) >= 2


def test_a_settled_run_seeds_apart_only_with_a_new_face_in_the_group() -> None:
    # three photos an earlier run left independent (told settled: it weighed them) and
    # a new stranger: nothing new stands apart; the person's new photo seeds with them
    rng = np.random.default_rng(6)
    person, stranger = _people(rng, 2)
    photos = _photos(rng, person, 4, 0.8)
    older = [
        dataclasses.replace(f, cluster_id=INDEPENDENT) for f in _faces(photos[:3], prefix="old")
    ]
    passing = _faces(stranger[None, :], prefix="new")
    assert not cluster(older + passing, APART, _ids(), settled=set()).created
    assert cluster(older + passing, APART, _ids()).created

    arriving = _faces(photos[3:], prefix="new")
    outcome = cluster(older + arriving, APART, _ids(), settled=set())
    placed = {a.figure_id: a.cluster_id for a in outcome.assignments}
    assert len(outcome.created) == 1
    assert {placed[f.figure_id] for f in older + arriving} == set(outcome.created)


def test_a_dataset_above_the_apart_bound_seeds_only_by_the_strict_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vectors, _ = _album()
    faces = _faces(vectors)
    assert cluster(faces, APART, _ids()).created
    monkeypatch.setattr(seeding, "_APART_FACES", len(faces) - 1)
    assert not cluster(faces, APART, _ids()).created
