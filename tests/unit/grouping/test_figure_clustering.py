"""Incremental figure clustering on synthetic identities with controlled noise."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from openimm.grouping import (
    INDEPENDENT,
    UNAVAILABLE,
    Assignment,
    ClusteringConfig,
    ClusteringOutcome,
    FaceToCluster,
    cluster_figures,
)

DIM = 128
CONFIG = ClusteringConfig()
# pairwise cosine of two faces of one identity is about 1 / (1 + NOISE^2) = 0.95
NOISE = 0.23

Vector = npt.NDArray[np.float32]


def _unit(vector: npt.NDArray[np.float64]) -> Vector:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class World:
    """Seeded source of identities and their face embeddings."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)

    def person(self) -> Vector:
        return _unit(self.rng.standard_normal(DIM))

    def lookalike(self, of: Vector, cosine: float) -> Vector:
        other = self.rng.standard_normal(DIM)
        other -= (other @ of) * of
        return _unit(cosine * of + np.sqrt(1.0 - cosine**2) * _unit(other))

    def shot(self, of: Vector, noise: float = NOISE) -> Vector:
        jitter = self.rng.standard_normal(DIM) / np.sqrt(DIM)
        return _unit(of + noise * jitter)


def face(
    figure_id: str,
    embedding: Vector,
    *,
    file_id: str | None = None,
    cluster_id: str = UNAVAILABLE,
    eligible: bool = True,
    pinned: bool = False,
) -> FaceToCluster:
    return FaceToCluster(
        figure_id=figure_id,
        file_id=file_id if file_id is not None else f"file-{figure_id}",
        embedding=embedding,
        cluster_id=cluster_id,
        seed_eligible=eligible,
        pinned=pinned,
    )


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"Cluster-{next(counter):04d}"


def run(
    faces: Sequence[FaceToCluster],
    new_id: Callable[[], str] | None = None,
    config: ClusteringConfig = CONFIG,
) -> ClusteringOutcome:
    return cluster_figures(faces, config, new_id or ids())


def by_figure(outcome: ClusteringOutcome) -> dict[str, Assignment]:
    return {a.figure_id: a for a in outcome.assignments}


def cluster_of(outcome: ClusteringOutcome) -> dict[str, str]:
    return {a.figure_id: a.cluster_id for a in outcome.assignments}


def apply(faces: Sequence[FaceToCluster], outcome: ClusteringOutcome) -> list[FaceToCluster]:
    """What the caller stores between runs."""
    placed = cluster_of(outcome)
    return [dataclasses.replace(f, cluster_id=placed.get(f.figure_id, f.cluster_id)) for f in faces]


def members(outcome: ClusteringOutcome, cluster_id: str) -> set[str]:
    return {a.figure_id for a in outcome.assignments if a.cluster_id == cluster_id}


def existing_cluster(
    world: World, person: Vector, cluster_id: str, count: int = 5, prefix: str = "old"
) -> list[FaceToCluster]:
    return [
        face(f"{prefix}-{cluster_id}-{n}", world.shot(person), cluster_id=cluster_id)
        for n in range(count)
    ]


# ---------------------------------------------------------------- seeding


def test_three_images_of_one_person_form_a_cluster() -> None:
    world = World()
    alice = world.person()
    faces = [face(f"a{n}", world.shot(alice)) for n in range(3)]

    outcome = run(faces)

    assert outcome.created == ["Cluster-0001"]
    assert cluster_of(outcome) == {"a0": "Cluster-0001", "a1": "Cluster-0001", "a2": "Cluster-0001"}


def test_two_images_stay_independent() -> None:
    world = World()
    alice = world.person()
    faces = [face(f"a{n}", world.shot(alice)) for n in range(2)]

    outcome = run(faces)

    assert outcome.created == []
    assert by_figure(outcome) == {
        "a0": Assignment("a0", INDEPENDENT, 0.0),
        "a1": Assignment("a1", INDEPENDENT, 0.0),
    }


def test_a_later_third_image_seeds_the_cluster_with_the_retried_ones() -> None:
    world = World()
    alice = world.person()
    first = [face(f"a{n}", world.shot(alice)) for n in range(2)]
    new_id = ids()
    after_first = apply(first, run(first, new_id))
    assert {f.cluster_id for f in after_first} == {INDEPENDENT}

    second = run([*after_first, face("a2", world.shot(alice))], new_id)

    assert second.created == ["Cluster-0001"]
    assert members(second, "Cluster-0001") == {"a0", "a1", "a2"}


def test_separate_people_form_separate_clusters() -> None:
    world = World()
    people = [world.person() for _ in range(4)]
    faces = [
        face(f"p{p}-{n}", world.shot(person)) for p, person in enumerate(people) for n in range(4)
    ]

    outcome = run(faces)

    assert len(outcome.created) == 4
    for p in range(4):
        assert len({cluster_of(outcome)[f"p{p}-{n}"] for n in range(4)}) == 1
    assert len(set(cluster_of(outcome).values())) == 4


def test_min_seed_images_is_configurable() -> None:
    world = World()
    alice = world.person()
    faces = [face(f"a{n}", world.shot(alice)) for n in range(2)]

    outcome = run(faces, config=ClusteringConfig(min_seed_images=2))

    assert outcome.created == ["Cluster-0001"]


# ---------------------------------------------------------------- joining and stable ids


def test_new_face_of_a_known_person_joins_the_existing_cluster() -> None:
    world = World()
    alice = world.person()
    new_id = ids()
    first = [face(f"a{n}", world.shot(alice)) for n in range(3)]
    stored = apply(first, run(first, new_id))

    second = run([*stored, face("a3", world.shot(alice))], new_id)

    assert second.created == []
    assert cluster_of(second) == {f"a{n}": "Cluster-0001" for n in range(4)}


def test_cluster_ids_stay_stable_across_runs() -> None:
    world = World()
    alice, bob = world.person(), world.person()
    new_id = ids()
    stored = apply(
        first := [face(f"a{n}", world.shot(alice)) for n in range(3)], run(first, new_id)
    )

    later = [*stored, *(face(f"b{n}", world.shot(bob)) for n in range(3))]
    later.append(face("a9", world.shot(alice)))
    outcome = run(later, new_id)

    assert outcome.created == ["Cluster-0002"]
    assert members(outcome, "Cluster-0001") == {"a0", "a1", "a2", "a9"}
    assert members(outcome, "Cluster-0002") == {"b0", "b1", "b2"}


def test_existing_members_are_reported_and_never_moved() -> None:
    world = World()
    alice, bob = world.person(), world.person()
    # a stray member that looks like bob stays where an earlier run put it
    faces = [
        *existing_cluster(world, alice, "Cluster-A"),
        face("stray", world.shot(bob), cluster_id="Cluster-A"),
    ]
    faces += [face(f"b{n}", world.shot(bob)) for n in range(3)]

    outcome = run(faces)

    assert cluster_of(outcome)["stray"] == "Cluster-A"
    assert members(outcome, "Cluster-0001") == {"b0", "b1", "b2"}
    assert len(outcome.assignments) == len(faces)


def test_a_face_as_near_a_second_cluster_joins_neither_when_a_runner_up_margin_is_set() -> None:
    world = World(51)
    alice = world.person()
    twin = world.lookalike(alice, 0.94)
    faces = [
        *existing_cluster(world, alice, "Cluster-A", count=8),
        *existing_cluster(world, twin, "Cluster-T", count=8),
        face("between", _unit(alice.astype(np.float64) + twin)),
        face("clearly", world.shot(alice, noise=0.05)),
    ]
    margin = dataclasses.replace(CONFIG, runner_up_margin=0.03)
    # a fixed cosine alone takes the face in: it passes for both clusters
    assert cluster_of(run(faces))["between"] in {"Cluster-A", "Cluster-T"}
    outcome = run(faces, config=margin)
    placed = cluster_of(outcome)
    assert placed["between"] == INDEPENDENT and outcome.merged == {}
    # a face clearly nearer one of them still joins it
    assert placed["clearly"] == "Cluster-A"


def test_the_runner_up_margin_is_a_cosine_difference() -> None:
    with pytest.raises(ValueError, match="runner_up_margin"):
        ClusteringConfig(runner_up_margin=-0.01)


def test_join_needs_robust_evidence_not_one_nearest_neighbour() -> None:
    world = World()
    alice, bob = world.person(), world.person()
    # one stray bob face in alice's cluster must not pull other bob faces in
    stray = world.shot(bob)
    faces = [
        *existing_cluster(world, alice, "Cluster-A"),
        face("stray", stray, cluster_id="Cluster-A"),
    ]
    faces.append(face("bob", world.shot(bob, noise=0.05)))

    outcome = run(faces)

    assert cluster_of(outcome)["bob"] == INDEPENDENT


def test_lookalike_below_threshold_stays_out() -> None:
    world = World()
    alice = world.person()
    twin = world.lookalike(alice, cosine=0.9)
    faces = [*existing_cluster(world, alice, "Cluster-A", count=8), face("twin", world.shot(twin))]

    outcome = run(faces)

    assert cluster_of(outcome)["twin"] == INDEPENDENT
    assert outcome.created == []


def test_three_lookalike_faces_seed_their_own_cluster() -> None:
    world = World()
    alice = world.person()
    twin = world.lookalike(alice, cosine=0.9)
    faces = existing_cluster(world, alice, "Cluster-A", count=8)
    faces += [face(f"twin{n}", world.shot(twin)) for n in range(3)]

    outcome = run(faces)

    assert outcome.created == ["Cluster-0001"]
    assert members(outcome, "Cluster-0001") == {"twin0", "twin1", "twin2"}
    assert len(members(outcome, "Cluster-A")) == 8


# ---------------------------------------------------------------- one face per file


def test_faces_of_one_file_never_seed_together_even_when_identical() -> None:
    world = World()
    same = world.shot(world.person())
    faces = [face(f"x{n}", same, file_id="group-photo") for n in range(5)]

    outcome = run(faces)

    assert outcome.created == []
    assert set(cluster_of(outcome).values()) == {INDEPENDENT}


def test_duplicate_face_of_a_seeding_file_is_left_out() -> None:
    world = World()
    alice = world.person()
    shot = world.shot(alice)
    faces = [
        face("a0", shot, file_id="f0"),
        face("a0-dup", shot, file_id="f0"),
        face("a1", world.shot(alice), file_id="f1"),
        face("a2", world.shot(alice), file_id="f2"),
    ]

    outcome = run(faces)

    cluster = members(outcome, "Cluster-0001")
    assert len(cluster) == 3
    assert {"a1", "a2"} <= cluster
    assert len(cluster & {"a0", "a0-dup"}) == 1
    assert cluster_of(outcome)[({"a0", "a0-dup"} - cluster).pop()] == INDEPENDENT


def test_face_cannot_join_a_cluster_that_already_holds_its_file() -> None:
    world = World()
    alice = world.person()
    faces = existing_cluster(world, alice, "Cluster-A")
    taken = faces[0].file_id
    faces.append(face("again", faces[0].embedding, file_id=taken))

    outcome = run(faces)

    assert cluster_of(outcome)["again"] == INDEPENDENT


def test_of_two_faces_of_one_file_only_the_better_one_joins() -> None:
    world = World()
    alice = world.person()
    faces = existing_cluster(world, alice, "Cluster-A")
    faces.append(face("close", world.shot(alice, noise=0.05), file_id="shared"))
    faces.append(face("farther", world.shot(alice, noise=0.2), file_id="shared"))

    outcome = run(faces)

    assert cluster_of(outcome)["close"] == "Cluster-A"
    assert cluster_of(outcome)["farther"] == INDEPENDENT


def test_the_other_face_of_a_file_tries_its_next_best_cluster() -> None:
    world = World()
    alice = world.person()
    # alice split in two clusters (merging them is not this function's job)
    faces = existing_cluster(world, alice, "Cluster-A") + existing_cluster(
        world, alice, "Cluster-B"
    )
    faces.append(face("one", world.shot(alice, noise=0.05), file_id="shared"))
    faces.append(face("two", world.shot(alice, noise=0.05), file_id="shared"))

    outcome = run(faces)

    assert {cluster_of(outcome)["one"], cluster_of(outcome)["two"]} == {"Cluster-A", "Cluster-B"}


# ---------------------------------------------------------------- pinned and eligibility


def test_pinned_faces_are_never_moved_nor_reported() -> None:
    world = World()
    alice, bob = world.person(), world.person()
    faces = existing_cluster(world, alice, "Cluster-A")
    faces.append(face("pinned-bob", world.shot(bob), cluster_id="Cluster-A", pinned=True))
    faces.append(face("pinned-alone", world.shot(alice), cluster_id=INDEPENDENT, pinned=True))
    faces += [face(f"b{n}", world.shot(bob)) for n in range(3)]

    outcome = run(faces)

    assert "pinned-bob" not in cluster_of(outcome)
    assert "pinned-alone" not in cluster_of(outcome)
    assert members(outcome, "Cluster-0001") == {"b0", "b1", "b2"}


def test_a_pinned_face_is_evidence_for_its_cluster() -> None:
    world = World()
    alice = world.person()
    faces = [
        face("manual", world.shot(alice), cluster_id="Cluster-M", pinned=True),
        face("new", world.shot(alice)),
    ]

    outcome = run(faces)

    assert cluster_of(outcome) == {"new": "Cluster-M"}


def test_a_pinned_face_holds_its_file_in_its_cluster() -> None:
    world = World()
    alice = world.person()
    shot = world.shot(alice)
    faces = [
        face("manual", shot, file_id="f", cluster_id="Cluster-M", pinned=True),
        face("new", shot, file_id="f"),
    ]

    assert cluster_of(run(faces)) == {"new": INDEPENDENT}


def test_pinned_unclustered_faces_do_not_seed() -> None:
    world = World()
    alice = world.person()
    faces = [face(f"a{n}", world.shot(alice)) for n in range(2)]
    faces.append(face("pinned", world.shot(alice), cluster_id=INDEPENDENT, pinned=True))

    outcome = run(faces)

    assert outcome.created == []


def test_non_eligible_faces_cannot_seed() -> None:
    world = World()
    alice = world.person()
    weak = [face(f"w{n}", world.shot(alice), eligible=False) for n in range(5)]
    mixed = [face(f"a{n}", world.shot(alice)) for n in range(2)]
    mixed.append(face("w", world.shot(alice), eligible=False))

    assert run(weak).created == []
    assert run(mixed).created == []


def test_non_eligible_faces_join_a_cluster_seeded_in_the_same_run() -> None:
    world = World()
    alice = world.person()
    faces = [face(f"a{n}", world.shot(alice)) for n in range(3)]
    faces += [face(f"w{n}", world.shot(alice), eligible=False) for n in range(2)]

    outcome = run(faces)

    assert outcome.created == ["Cluster-0001"]
    assert members(outcome, "Cluster-0001") == {"a0", "a1", "a2", "w0", "w1"}


def test_non_eligible_face_joins_an_existing_cluster() -> None:
    world = World()
    alice = world.person()
    faces = [
        *existing_cluster(world, alice, "Cluster-A"),
        face("weak", world.shot(alice), eligible=False),
    ]

    assert cluster_of(run(faces))["weak"] == "Cluster-A"


# ---------------------------------------------------------------- confidence and determinism


def test_confidence_is_in_unit_range_and_higher_for_closer_faces() -> None:
    world = World()
    alice = world.person()
    faces = existing_cluster(world, alice, "Cluster-A", count=6)
    faces.append(face("near", world.shot(alice, noise=0.05)))
    faces.append(face("far", world.shot(alice, noise=0.3)))

    placed = by_figure(run(faces))

    assert placed["near"].cluster_id == placed["far"].cluster_id == "Cluster-A"
    assert all(0.0 <= a.confidence <= 1.0 for a in placed.values())
    assert placed["near"].confidence > placed["far"].confidence > 0.0


def _mixed_scene(seed: int) -> list[FaceToCluster]:
    world = World(seed)
    faces: list[FaceToCluster] = []
    for p in range(30):
        person = world.person()
        if p % 3 == 0:
            faces += existing_cluster(world, person, f"Cluster-old-{p}", count=3)
        faces += [
            face(
                f"p{p}-{n}",
                world.shot(person),
                file_id=f"img-{(p * 7 + n) % 40}",
                eligible=n % 4 != 3,
            )
            for n in range(p % 6)
        ]
    return faces


def test_same_input_in_any_order_gives_the_same_outcome() -> None:
    faces = _mixed_scene(11)
    shuffled = list(faces)
    np.random.default_rng(3).shuffle(shuffled)

    first = run(faces)

    assert first.created
    assert run(faces) == first
    assert run(shuffled) == first
    assert run(list(reversed(faces))) == first


def test_faces_of_one_file_never_share_a_cluster_in_a_busy_scene() -> None:
    faces = _mixed_scene(12)
    outcome = run(faces)
    files = {f.figure_id: f.file_id for f in faces}

    seen: set[tuple[str, str]] = set()
    for a in outcome.assignments:
        if a.cluster_id != INDEPENDENT and not a.figure_id.startswith("old"):
            key = (a.cluster_id, files[a.figure_id])
            assert key not in seen
            seen.add(key)


# ---------------------------------------------------------------- inputs


def test_empty_input_gives_an_empty_outcome() -> None:
    assert run([]) == ClusteringOutcome(assignments=[], created=[])


def test_rejects_duplicate_figure_ids_and_mixed_dimensions() -> None:
    world = World()
    alice = world.person()
    with pytest.raises(ValueError, match="duplicate"):
        run([face("a", world.shot(alice)), face("a", world.shot(alice))])
    with pytest.raises(ValueError, match="dimension"):
        run([face("a", world.shot(alice)), face("b", np.ones(64, dtype=np.float32))])
    with pytest.raises(ValueError, match="non-zero"):
        run([face("a", np.zeros(DIM, dtype=np.float32))])


def test_rejects_an_id_factory_that_repeats() -> None:
    world = World()
    alice, bob = world.person(), world.person()
    faces = [face(f"a{n}", world.shot(alice)) for n in range(3)]
    faces += [face(f"b{n}", world.shot(bob)) for n in range(3)]

    with pytest.raises(ValueError, match="used id"):
        run(faces, lambda: "Cluster-same")


@pytest.mark.parametrize(
    "bad",
    [
        {"join_similarity": 1.5},
        {"seed_similarity": -2.0},
        {"min_seed_images": 0},
        {"top_k": 0},
        {"confidence_scale": 0.0},
        {"merge_similarity": 1.01},
        {"cohesion_similarity": 0.0},
        {"apart_seed_similarity": 1.2},
        {"apart_seed_margin": 0.0},
    ],
)
def test_config_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ClusteringConfig(**bad)  # type: ignore[arg-type]


def test_embeddings_need_not_be_exactly_unit_length() -> None:
    world = World()
    alice = world.person()
    faces = [face(f"a{n}", 3.0 * world.shot(alice)) for n in range(3)]

    assert run(faces).created == ["Cluster-0001"]


# ---------------------------------------------------------------- scale


def test_five_thousand_faces_of_500_people_cluster_correctly() -> None:
    # how fast is bench/cluster_scale.py's to say: a timed assertion here flaked under load
    world = World(5)
    people = [world.person() for _ in range(500)]
    faces = [
        face(f"{(p * 7919 + n * 104729) % 1_000_003:07d}-{p}-{n}", world.shot(person))
        for p, person in enumerate(people)
        for n in range(10)
    ]

    outcome = run(faces)

    assert len(outcome.created) == 500
    for p in range(500):
        ids_of_person = {
            a.cluster_id for a in outcome.assignments if a.figure_id.split("-")[1] == str(p)
        }
        assert len(ids_of_person) == 1


# ------------------------------------------------------------ relaxed join

RELAXED = dataclasses.replace(CONFIG, relaxed_join_similarity=0.85, join_margin=0.05)


def _album(world: World) -> tuple[Vector, list[FaceToCluster]]:
    person = world.person()
    members = [face(f"a{i}", world.shot(person, 0.02), cluster_id="Cluster-A") for i in range(3)]
    return person, members


def test_a_face_below_the_join_threshold_joins_when_its_cluster_stands_out() -> None:
    world = World(11)
    person, members = _album(world)
    hard = face("hard", world.lookalike(person, 0.89))
    # an unclustered photo of the same person is no evidence against the cluster
    same = face("same", world.lookalike(person, 0.90))
    assert cluster_of(run([*members, hard, same]))["hard"] == INDEPENDENT
    placed = cluster_of(run([*members, hard, same], config=RELAXED))
    assert placed["hard"] == placed["same"] == "Cluster-A"


def test_a_close_second_cluster_keeps_the_face_out() -> None:
    world = World(12)
    person, members = _album(world)
    hard_vector = world.lookalike(person, 0.89)
    rival = world.lookalike(hard_vector, 0.86)
    others = [face(f"b{i}", world.shot(rival, 0.02), cluster_id="Cluster-B") for i in range(3)]
    placed = cluster_of(run([*members, *others, face("hard", hard_vector)], config=RELAXED))
    assert placed["hard"] == INDEPENDENT


def test_a_close_stranger_keeps_the_face_out() -> None:
    world = World(13)
    person, members = _album(world)
    hard_vector = world.lookalike(person, 0.89)
    stranger = face("stranger", world.lookalike(hard_vector, 0.87), eligible=False)
    placed = cluster_of(run([*members, face("hard", hard_vector), stranger], config=RELAXED))
    assert placed["hard"] == placed["stranger"] == INDEPENDENT


def test_relaxed_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="relaxed"):
        ClusteringConfig(join_similarity=0.9, relaxed_join_similarity=0.95)
    with pytest.raises(ValueError, match="margin"):
        ClusteringConfig(relaxed_join_similarity=0.8, join_margin=0.0)


def test_confidence_is_one_half_at_the_lowest_joining_cosine() -> None:
    from openimm.grouping import membership_confidence

    cosines = np.array([0.85, 0.92, 0.95])
    strict = membership_confidence(cosines, CONFIG)
    assert strict[1] == pytest.approx(0.5) and strict[0] < 0.01 and strict[2] > 0.95
    relaxed = membership_confidence(cosines, RELAXED)
    assert relaxed[0] == pytest.approx(0.5) and relaxed[1] > 0.99


# ------------------------------------------------------------ re-examination


def _split(world: World) -> list[FaceToCluster]:
    """One person whose photos ended in two clusters (say, runs a year apart)."""
    person = world.person()
    return [
        *(face(f"a{i}", world.shot(person), cluster_id="Cluster-A") for i in range(4)),
        *(face(f"b{i}", world.shot(person), cluster_id="Cluster-B") for i in range(2)),
    ]


def test_clusters_the_evidence_now_joins_merge_into_the_larger() -> None:
    outcome = run(_split(World(21)))
    assert outcome.merged == {"Cluster-B": "Cluster-A"}
    assert set(cluster_of(outcome).values()) == {"Cluster-A"}
    # strangers' clusters stay
    world = World(22)
    others = [face(f"c{i}", world.shot(world.person()), cluster_id="Cluster-C") for i in range(3)]
    outcome = run([*_split(World(21)), *others])
    assert outcome.merged == {"Cluster-B": "Cluster-A"}
    assert {cluster_of(outcome)[f"c{i}"] for i in range(3)} == {"Cluster-C"}


def test_the_merge_threshold_is_its_own() -> None:
    faces = _split(World(21))
    a = np.mean([f.embedding for f in faces if f.cluster_id == "Cluster-A"], axis=0)
    b = np.mean([f.embedding for f in faces if f.cluster_id == "Cluster-B"], axis=0)
    mean_cosine = float(a @ b)
    # the join test would take no face of B into A either: only the mean cosine decides
    strict = dataclasses.replace(CONFIG, join_similarity=0.999)
    above = dataclasses.replace(strict, merge_similarity=mean_cosine + 0.01)
    below = dataclasses.replace(strict, seed_similarity=0.999, merge_similarity=mean_cosine - 0.01)
    assert cluster_figures(faces, above, ids()).merged == {}
    assert cluster_figures(faces, below, ids()).merged == {"Cluster-B": "Cluster-A"}


def _split_wide(world: World) -> tuple[list[FaceToCluster], Vector]:
    """A person seeding left in a large and a small cluster whose mean cosine is low."""
    person = world.person()
    faces = [
        *(face(f"a{i}", world.shot(person), cluster_id="Cluster-A") for i in range(8)),
        *(face(f"b{i}", world.shot(person), cluster_id="Cluster-B") for i in range(3)),
    ]
    return faces, person


# the mean cosine of two clusters no longer merges anything: only the faces' join test
FACE_BY_FACE = dataclasses.replace(CONFIG, merge_similarity=0.999)


def test_a_cluster_each_of_whose_faces_would_join_a_larger_one_goes_into_it() -> None:
    faces, _ = _split_wide(World(31))
    outcome = run(faces, config=FACE_BY_FACE)
    assert outcome.merged == {"Cluster-B": "Cluster-A"}
    assert set(cluster_of(outcome).values()) == {"Cluster-A"}


def test_one_face_that_would_not_join_keeps_the_smaller_cluster_apart() -> None:
    world = World(31)
    faces, person = _split_wide(world)
    # a third member of B that is far from A (a lookalike's face, say)
    stranger = world.lookalike(person, 0.80)
    faces = [
        face("b2", stranger, cluster_id="Cluster-B") if f.figure_id == "b2" else f for f in faces
    ]
    assert run(faces, config=FACE_BY_FACE).merged == {}


def test_a_cluster_as_near_a_third_one_is_not_absorbed() -> None:
    world = World(31)
    faces, person = _split_wide(world)
    # a lookalike's cluster: B's faces would join A, but C is about as near
    twin = world.lookalike(person, 0.97)
    faces += [face(f"c{i}", world.shot(twin), cluster_id="Cluster-C") for i in range(8)]
    outcome = run(faces, config=FACE_BY_FACE)
    assert outcome.merged == {}


def test_absorbing_keeps_a_users_work_and_is_not_weighed_again_when_settled() -> None:
    faces, _ = _split_wide(World(31))
    # the smaller cluster carries a name: its id survives
    assert cluster_figures(faces, FACE_BY_FACE, ids(), curated=["Cluster-B"]).merged == {
        "Cluster-A": "Cluster-B"
    }
    both = cluster_figures(faces, FACE_BY_FACE, ids(), curated=["Cluster-A", "Cluster-B"])
    assert both.merged == {}
    # both clusters as the previous run left them: that run already weighed the pair
    settled = cluster_figures(faces, FACE_BY_FACE, ids(), settled=["Cluster-A", "Cluster-B"])
    assert settled.merged == {}
    changed = cluster_figures(faces, FACE_BY_FACE, ids(), settled=["Cluster-A"])
    assert changed.merged == {"Cluster-B": "Cluster-A"}


def test_a_users_work_keeps_its_id_and_two_of_them_never_merge() -> None:
    faces = _split(World(21))
    outcome = cluster_figures(faces, CONFIG, ids(), curated=["Cluster-B"])
    assert outcome.merged == {"Cluster-A": "Cluster-B"}
    assert cluster_figures(faces, CONFIG, ids(), curated=["Cluster-A", "Cluster-B"]).merged == {}
    pinned = [dataclasses.replace(f, pinned=f.figure_id in ("a0", "b0")) for f in faces]
    assert run(pinned).merged == {}


def test_a_users_move_and_a_shared_photo_keep_clusters_apart() -> None:
    faces = _split(World(21))
    moved = [
        dataclasses.replace(f, pinned=True, moved_from="Cluster-A") if f.figure_id == "b0" else f
        for f in faces
    ]
    assert run(moved).merged == {}
    shared = [
        dataclasses.replace(f, file_id="group") if f.figure_id in ("a0", "b0") else f for f in faces
    ]
    assert run(shared).merged == {}


# only cohesion merges: no mean cosine merges, no face joins a cluster by the join test
COHESIVE = dataclasses.replace(
    CONFIG,
    merge_similarity=0.999,
    relaxed_join_similarity=0.8,
    cohesion_similarity=0.94,
    runner_up_margin=0.03,
)
# two photos of one person at about cosine 1 / (1 + 0.45^2) = 0.83: a person whose
# photos vary (age, light), below every join and merge threshold above
VARIED = 0.45


def _parts(
    world: World, person: Vector, sizes: dict[str, int], noise: float = VARIED
) -> list[FaceToCluster]:
    return [
        face(f"{cid}-{i}", world.shot(person, noise), cluster_id=cid)
        for cid, size in sizes.items()
        for i in range(size)
    ]


def test_two_clusters_as_alike_across_as_within_merge() -> None:
    world = World(51)
    faces = _parts(world, world.person(), {"Cluster-A": 6, "Cluster-B": 4})
    faces += _parts(world, world.person(), {"Cluster-C": 5})
    assert run(faces, config=dataclasses.replace(COHESIVE, cohesion_similarity=None)).merged == {}
    outcome = run(faces, config=COHESIVE)
    assert outcome.merged == {"Cluster-B": "Cluster-A"}
    assert {cluster_of(outcome)[f"Cluster-C-{i}"] for i in range(5)} == {"Cluster-C"}


def test_of_three_equally_cohesive_clusters_none_merges_on_cohesion() -> None:
    # which two belong together is not clear: a third as cohesive as the pair says "lookalike"
    world = World(52)
    faces = _parts(world, world.person(), {"Cluster-A": 6, "Cluster-B": 4, "Cluster-C": 5})
    assert run(faces, config=COHESIVE).merged == {}


def test_diffuse_clusters_do_not_merge_below_the_relaxed_cosine() -> None:
    # as alike across as within, but at cosine 0.67: that is no one's evidence
    world = World(53)
    faces = _parts(world, world.person(), {"Cluster-A": 6, "Cluster-B": 4}, noise=0.7)
    assert run(faces, config=COHESIVE).merged == {}


def test_cohesion_merges_keep_users_work_and_shared_photos_apart_and_skip_settled_pairs() -> None:
    world = World(51)
    faces = _parts(world, world.person(), {"Cluster-A": 6, "Cluster-B": 4})
    assert cluster_figures(faces, COHESIVE, ids(), curated=["Cluster-B"]).merged == {
        "Cluster-A": "Cluster-B"
    }
    assert cluster_figures(faces, COHESIVE, ids(), curated=["Cluster-A", "Cluster-B"]).merged == {}
    shared = [
        dataclasses.replace(f, file_id="group")
        if f.figure_id in ("Cluster-A-0", "Cluster-B-0")
        else f
        for f in faces
    ]
    assert run(shared, config=COHESIVE).merged == {}
    # as the previous run left both, it weighed the pair already
    assert cluster_figures(faces, COHESIVE, ids(), settled=["Cluster-A", "Cluster-B"]).merged == {}
    assert cluster_figures(faces, COHESIVE, ids(), settled=["Cluster-A"]).merged == {
        "Cluster-B": "Cluster-A"
    }


def test_a_run_told_what_is_settled_reports_only_the_faces_it_may_have_moved() -> None:
    world = World(41)
    alice, bob = world.person(), world.person()
    faces = [
        *existing_cluster(world, alice, "Cluster-A"),
        *existing_cluster(world, bob, "Cluster-B"),
        face("new-alice", world.shot(alice)),
    ]
    outcome = cluster_figures(faces, CONFIG, ids(), settled=["Cluster-A", "Cluster-B"])
    reported = cluster_of(outcome)
    # Alice's cluster grew: its members' confidences moved with its mean
    assert reported["new-alice"] == "Cluster-A"
    assert {f.figure_id for f in faces if f.cluster_id == "Cluster-A"} <= set(reported)
    # Bob's is as the previous run left it
    assert not {f.figure_id for f in faces if f.cluster_id == "Cluster-B"} & set(reported)
    # not told: every face
    assert len(run(faces).assignments) == len(faces)
