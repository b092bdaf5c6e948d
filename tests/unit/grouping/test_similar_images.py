"""Similar-image grouping on synthetic features: the pair rule, linkage and increments."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from openimm.grouping.similar_images import (
    GroupingConfig,
    GroupingOutcome,
    ImageToGroup,
    Verify,
    group_similar_images,
)

DIM = 64
CONFIG = GroupingConfig()
# well inside sure_distance, and between sure_distance and verify_distance
COPY = 0.005
BORDERLINE = 0.10

Vector = npt.NDArray[np.float32]


def _unit(vector: npt.NDArray[np.float64]) -> Vector:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class World:
    """Seeded scenes, copies at chosen distances, and pHashes far from each other."""

    def __init__(self, seed: int = 3) -> None:
        self.rng = np.random.default_rng(seed)
        self.hashes: list[int] = []

    def scene(self) -> Vector:
        return _unit(self.rng.standard_normal(DIM))

    def at(self, of: Vector, distance: float) -> Vector:
        """A unit vector at exactly this cosine distance from `of`."""
        other = self.rng.standard_normal(DIM)
        other -= (other @ of) * of
        cosine = 1.0 - distance
        return _unit(cosine * of + np.sqrt(1.0 - cosine**2) * _unit(other))

    def phash(self) -> int:
        """A hash more than 20 bits from every hash handed out before."""
        while True:
            value = int(self.rng.integers(0, 2**63)) * 2 + int(self.rng.integers(0, 2))
            if all((value ^ h).bit_count() > 20 for h in self.hashes):
                self.hashes.append(value)
                return value


def image(
    file_id: str,
    embedding: Vector,
    phash: int,
    *,
    cluster_id: str | None = None,
    examined: bool = False,
    captured_at: float | None = None,
    score: float = 0.5,
) -> ImageToGroup:
    return ImageToGroup(
        file_id=file_id,
        embedding=embedding,
        phash=phash,
        captured_at=captured_at,
        score=score,
        cluster_id=cluster_id,
        examined=examined,
    )


def ids(prefix: str = "cluster") -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"


def run(
    images: list[ImageToGroup],
    verify: Verify | None = None,
    config: GroupingConfig = CONFIG,
    new_id: Callable[[], str] | None = None,
) -> GroupingOutcome:
    return group_similar_images(images, config, new_id or ids(), verify)


def groups(outcome: GroupingOutcome) -> list[set[str]]:
    return sorted((set(m) for m in outcome.clusters.values()), key=sorted)


def rerun_input(images: list[ImageToGroup], outcome: GroupingOutcome) -> list[ImageToGroup]:
    """The images as the caller stores them after a run: clusters set, all examined."""
    return [
        dataclasses.replace(i, cluster_id=outcome.assignments[i.file_id], examined=True)
        for i in images
    ]


def test_copies_form_a_cluster_and_a_lone_photo_stays_out() -> None:
    world = World()
    scene, other = world.scene(), world.scene()
    images = [
        image("a", scene, world.phash()),
        image("b", world.at(scene, COPY), world.phash()),
        image("c", other, world.phash()),
    ]
    outcome = run(images)
    assert outcome.created == ["cluster-1"]
    assert outcome.assignments == {"a": "cluster-1", "b": "cluster-1", "c": None}
    assert groups(outcome) == [{"a", "b"}]
    assert outcome.dissolved == [] and outcome.verifications == 0


def test_nothing_to_group() -> None:
    assert run([]).clusters == {}
    world = World()
    alone = run([image("a", world.scene(), world.phash())])
    assert alone.assignments == {"a": None} and alone.created == []


def test_borderline_pairs_are_decided_by_the_verifier() -> None:
    world = World()
    scene = world.scene()
    images = [
        image("a", scene, world.phash()),
        image("b", world.at(scene, BORDERLINE), world.phash()),
    ]
    asked: list[tuple[str, str]] = []

    def verify(answer: bool | None) -> Verify:
        def check(a: str, b: str) -> bool | None:
            asked.append((a, b))
            return answer

        return check

    assert groups(run(images, verify(True))) == [{"a", "b"}]
    assert asked == [("a", "b")]
    assert groups(run(images, verify(False))) == []
    # cannot tell (no keypoints stored), or no verifier at all: precision first
    assert groups(run(images, verify(None))) == []
    assert groups(run(images)) == []
    assert run(images, verify(True)).verifications == 1


def test_the_verifier_is_not_asked_about_sure_or_distant_pairs() -> None:
    world = World()
    scene = world.scene()
    images = [
        image("copy-a", scene, world.phash()),
        image("copy-b", world.at(scene, COPY), world.phash()),
        image("far", world.at(scene, CONFIG.verify_distance + 0.05), world.phash()),
    ]

    def refuse(a: str, b: str) -> bool | None:
        raise AssertionError(f"asked about {a}, {b}")

    # the far photo is 0.25 from the copies: never compared
    assert groups(run(images, refuse)) == [{"copy-a", "copy-b"}]


def test_close_phash_confirms_a_borderline_pair_without_the_verifier() -> None:
    world = World()
    scene = world.scene()
    phash = world.phash()
    images = [
        image("a", scene, phash),
        image("b", world.at(scene, BORDERLINE), phash ^ 0b1011),
    ]
    assert groups(run(images)) == [{"a", "b"}]
    far_hash = [images[0], dataclasses.replace(images[1], phash=phash ^ (2**20 - 1))]
    assert groups(run(far_hash)) == []


def test_capture_times_far_apart_keep_borderline_pairs_apart() -> None:
    world = World()
    scene = world.scene()
    phash = world.phash()
    a = image("a", scene, phash, captured_at=1000.0)
    near = image("b", world.at(scene, BORDERLINE), phash, captured_at=1002.0)
    later = dataclasses.replace(near, captured_at=1000.0 + CONFIG.burst_seconds + 1)
    assert groups(run([a, near])) == [{"a", "b"}]
    assert groups(run([a, later], lambda x, y: True)) == []
    # an unknown time is no evidence against; a copy is a copy whenever it was taken
    assert groups(run([a, dataclasses.replace(later, captured_at=None)])) == [{"a", "b"}]
    copy = image("c", world.at(scene, COPY), world.phash(), captured_at=99_999.0)
    assert groups(run([a, copy])) == [{"a", "c"}]


def test_every_two_photos_of_a_cluster_are_linked() -> None:
    world = World()
    scene = world.scene()
    middle = world.at(scene, 0.02)
    # a-m and m-b are copies, a-b is borderline and the verifier says different
    b = world.at(middle, 0.02)
    images = [
        image("a", scene, world.phash()),
        image("m", middle, world.phash()),
        image("b", b, world.phash()),
    ]
    distance_ab = 1.0 - float(scene @ b)
    assert CONFIG.sure_distance < distance_ab <= CONFIG.verify_distance
    found = groups(run(images, lambda x, y: False))
    assert len(found) == 1 and len(found[0]) == 2 and "m" in found[0]
    assert groups(run(images, lambda x, y: True)) == [{"a", "m", "b"}]


def test_no_chaining_along_a_long_drifting_sequence() -> None:
    world = World()
    start, direction = world.scene(), world.scene()
    direction = _unit(direction - (direction @ start) * start)
    # consecutive frames 0.02 apart (copies), the ends far beyond verify_distance
    step = float(np.arccos(1.0 - 0.02))
    frames = [
        image(
            f"f{k:02d}",
            _unit(np.cos(k * step) * start + np.sin(k * step) * direction),
            world.phash(),
            captured_at=float(k),
        )
        for k in range(30)
    ]
    vectors = {f.file_id: f.embedding for f in frames}
    outcome = run(frames, lambda a, b: True)
    assert len(outcome.clusters) > 1
    for members in outcome.clusters.values():
        for a, b in itertools.combinations(members, 2):
            # every pair is itself near enough to be linked: no cluster spans the drift
            assert 1.0 - float(vectors[a] @ vectors[b]) <= CONFIG.verify_distance + 1e-6
    # without a verifier only copies link, so each cluster spans at most 0.03
    strict = run(frames)
    for members in strict.clusters.values():
        for a, b in itertools.combinations(members, 2):
            assert 1.0 - float(vectors[a] @ vectors[b]) <= CONFIG.sure_distance + 1e-6
    assert sum(len(m) for m in strict.clusters.values()) >= 20


def test_new_photos_join_existing_clusters_whose_ids_stay() -> None:
    world = World()
    scene, other = world.scene(), world.scene()
    first = [
        image("a", scene, world.phash()),
        image("b", world.at(scene, COPY), world.phash()),
        image("x", other, world.phash()),
    ]
    before = run(first, new_id=ids("old"))
    assert before.assignments["a"] == "old-1"
    later = [
        *rerun_input(first, before),
        image("c", world.at(scene, COPY), world.phash()),
        image("y", world.at(other, COPY), world.phash()),
    ]
    after = run(later, new_id=ids("new"))
    assert after.assignments == {
        "a": "old-1",
        "b": "old-1",
        "c": "old-1",
        "x": "new-1",
        "y": "new-1",
    }
    assert after.created == ["new-1"]
    assert set(after.clusters) == {"old-1", "new-1"}


def test_a_new_photo_joins_only_when_linked_to_every_member() -> None:
    world = World()
    scene = world.scene()
    middle = world.at(scene, 0.02)
    b = world.at(middle, 0.02)
    existing = [
        image("a", scene, world.phash(), cluster_id="kept", examined=True),
        image("m", middle, world.phash(), cluster_id="kept", examined=True),
    ]
    fresh = [image("b", b, world.phash()), image("b2", world.at(b, 0.002), world.phash())]
    outcome = run([*existing, *fresh], lambda x, y: False)
    assert outcome.clusters["kept"] == ["a", "m"]
    assert groups(outcome) == [{"a", "m"}, {"b", "b2"}]
    assert outcome.created == ["cluster-1"]


def test_existing_clusters_never_merge() -> None:
    world = World()
    scene = world.scene()
    images = [
        image("a1", scene, world.phash(), cluster_id="A", examined=True),
        image("a2", world.at(scene, 0.004), world.phash(), cluster_id="A", examined=True),
        image("b1", world.at(scene, 0.004), world.phash(), cluster_id="B", examined=True),
        image("b2", world.at(scene, 0.004), world.phash(), cluster_id="B", examined=True),
        image("new", world.at(scene, 0.004), world.phash()),
    ]
    outcome = run(images)
    assert set(outcome.clusters) == {"A", "B"}
    assert outcome.assignments["new"] in {"A", "B"}
    assert outcome.created == []


def test_a_deletion_that_leaves_one_photo_dissolves_the_cluster() -> None:
    world = World()
    scene = world.scene()
    survivor = image("a", scene, world.phash(), cluster_id="gone", examined=True)
    outcome = run([survivor, image("z", world.scene(), world.phash(), examined=True)])
    assert outcome.dissolved == ["gone"]
    assert outcome.assignments == {"a": None, "z": None}
    assert outcome.clusters == {}
    # the survivor is compared afresh: with a new copy it forms a new cluster
    again = run([survivor, image("c", world.at(scene, COPY), world.phash())], new_id=ids("new"))
    assert again.dissolved == ["gone"]
    assert again.clusters == {"new-1": ["a", "c"]}


def test_examined_photos_are_not_compared_again() -> None:
    world = World()
    scene = world.scene()
    pair = [
        image("a", scene, world.phash(), examined=True),
        image("b", world.at(scene, COPY), world.phash(), examined=True),
    ]
    assert run(pair).clusters == {}
    assert groups(run([pair[0], dataclasses.replace(pair[1], examined=False)])) == [{"a", "b"}]


def test_members_are_listed_best_shot_first() -> None:
    world = World()
    scene = world.scene()
    images = [
        image("a", scene, world.phash(), score=0.4),
        image("b", world.at(scene, COPY), world.phash(), score=0.9),
        image("c", world.at(scene, COPY), world.phash(), score=0.4),
    ]
    assert run(images).clusters == {"cluster-1": ["b", "a", "c"]}


def test_the_outcome_does_not_depend_on_input_order() -> None:
    world = World()
    images = []
    for s in range(6):
        scene = world.scene()
        images += [
            image(f"s{s}-{k}", world.at(scene, d), world.phash())
            for k, d in enumerate([0.0, 0.01, 0.06, 0.12, 0.3])
        ]

    def verify(a: str, b: str) -> bool:
        return a.split("-")[0] == b.split("-")[0]

    reference = run(images, verify)
    shuffled = images[:]
    random.Random(5).shuffle(shuffled)
    assert run(shuffled, verify) == reference
    assert len(reference.clusters) == 6


def test_the_verification_budget_is_respected() -> None:
    world = World()
    images = []
    for s in range(5):
        scene = world.scene()
        images += [image(f"s{s}-a", scene, world.phash())]
        images += [image(f"s{s}-b", world.at(scene, BORDERLINE), world.phash())]
    outcome = run(images, lambda a, b: True, GroupingConfig(max_verifications=2))
    assert outcome.verifications == 2
    assert len(outcome.clusters) == 2


def test_bad_input_is_refused() -> None:
    world = World()
    scene = world.scene()
    with pytest.raises(ValueError, match="duplicate"):
        run([image("a", scene, 1), image("a", scene, 2)])
    with pytest.raises(ValueError, match="non-zero"):
        run([image("a", np.zeros(DIM, np.float32), 1)])
    with pytest.raises(ValueError, match="one dimension"):
        run([image("a", scene, 1), image("b", scene[:8], 2)])
    with pytest.raises(ValueError, match="finite"):
        run([image("a", np.full(DIM, np.nan, np.float32), 1)])
    taken = [
        image("c", world.scene(), 3 << 20, cluster_id="taken", examined=True),
        image("d", world.scene(), 4 << 40, cluster_id="taken", examined=True),
    ]
    pair = [image("a", scene, 1), image("b", world.at(scene, COPY), 2 << 30)]
    with pytest.raises(ValueError, match="used or invalid"):
        run([*pair, *taken], new_id=lambda: "taken")
    for bad in (
        {"sure_distance": 0.3},
        {"hash_bits": 65},
        {"burst_seconds": 0.0},
        {"max_verifications": -1},
    ):
        with pytest.raises(ValueError):
            GroupingConfig(**bad)
