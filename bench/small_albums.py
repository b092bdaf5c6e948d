"""Small albums: a few people's few clear photos, each album clustered alone in a fresh dataset.

An album is `people` persons with `photos` seed-eligible images each (drawn with a fixed
seed among the persons with that many), alone or with as many strangers (single images
of other persons, any quality), as a family album has. IMM's rule asks that a person
with 3 such photos can have a cluster; a run over thousands of competing identities
(lfw-dev in one dataset) does not say whether one does when few people compete.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# (people, photos each): from one person to many, with 3 to 6 photos each
SHAPES = tuple((people, photos) for people in (1, 3, 10, 50) for photos in (3, 4, 5, 6))
# persons drawn per shape, over as many albums as that takes
PERSONS_PER_SHAPE = 60

# a run over an album's faces, one image each: (vectors, seed-eligible) -> cluster or None
Run = Callable[[npt.NDArray[np.float32], npt.NDArray[np.bool_]], list[str | None]]


@dataclass
class Tally:
    """Counts over the albums of one shape."""

    persons: int = 0
    # persons holding the majority of some cluster
    clustered: int = 0
    # clusters holding faces of more than one identity
    wrong: int = 0
    # faces in a cluster, and those of them with the cluster's main identity
    placed: int = 0
    placed_right: int = 0
    # same-identity pairs in a cluster, pairs in a cluster
    pairs_right: int = 0
    pairs: int = 0
    # strangers' faces put in a cluster
    strangers_in: int = 0


def album(
    rng: np.random.Generator,
    by_person: dict[str, list[int]],
    eligible: npt.NDArray[np.bool_],
    people: int,
    photos: int,
    strangers: bool,
) -> list[int] | None:
    """Face indices of one album (persons first), or None if the set has too few persons."""
    able = sorted(p for p, faces in by_person.items() if eligible[faces].sum() >= photos)
    if len(able) < people:
        return None
    chosen = [able[i] for i in rng.choice(len(able), people, replace=False)]
    faces: list[int] = []
    for person in chosen:
        clear = [f for f in by_person[person] if eligible[f]]
        faces.extend(int(f) for f in rng.choice(clear, photos, replace=False))
    if strangers:
        others = sorted(set(by_person) - set(chosen))
        count = min(len(others), people * photos)
        for i in rng.choice(len(others), count, replace=False):
            faces.append(int(rng.choice(by_person[others[i]])))
    return faces


def tally(labels: Sequence[str | None], truth: Sequence[str], people: int, into: Tally) -> None:
    """Add one album's outcome; the first `people` identities in order are its persons."""
    persons = list(dict.fromkeys(truth))[:people]
    members: dict[str, list[str]] = {}
    for label, who in zip(labels, truth, strict=True):
        if label is not None:
            members.setdefault(label, []).append(who)
    main = set()
    for who in members.values():
        counts = Counter(who)
        top, n = counts.most_common(1)[0]
        main.add(top)
        into.wrong += len(counts) > 1
        into.placed += len(who)
        into.placed_right += n
        into.pairs += len(who) * (len(who) - 1) // 2
        into.pairs_right += sum(k * (k - 1) // 2 for k in counts.values())
        into.strangers_in += sum(k for p, k in counts.items() if p not in persons)
    into.persons += people
    into.clustered += sum(1 for p in persons if p in main)


def small_album_table(
    run: Run,
    vectors: npt.NDArray[np.float32],
    eligible: npt.NDArray[np.bool_],
    truth: Sequence[str],
    seed: int = 0,
) -> list[str]:
    """The table's lines: per shape, alone and with strangers."""
    by_person: dict[str, list[int]] = {}
    for i, who in enumerate(truth):
        by_person.setdefault(who, []).append(i)
    columns = f"{'clustered':>15} {'pair P':>6} {'place P':>7} {'wrong':>5}"
    lines = [
        f"{'':<15} | {'alone':<37} | with as many strangers",
        f"{'people x photos':<15} | {columns} | {columns} {'str in':>6}",
    ]
    for people, photos in SHAPES:
        cells = []
        for strangers in (False, True):
            rng = np.random.default_rng([seed, people, photos, int(strangers)])
            t = Tally()
            for _ in range(max(1, -(-PERSONS_PER_SHAPE // people))):
                faces = album(rng, by_person, eligible, people, photos, strangers)
                if faces is None:
                    break
                labels = run(vectors[faces], eligible[faces])
                tally(labels, [truth[f] for f in faces], people, t)
            cells.append(_cell(t, strangers))
        lines.append((f"{people:>6} x {photos:<6}" + "".join(cells)).rstrip())
    return lines


def _cell(t: Tally, strangers: bool) -> str:
    if not t.persons:
        return f" | {'too few persons':>15}" + " " * (22 + 7 * strangers)
    pair_p = t.pairs_right / t.pairs if t.pairs else 1.0
    place_p = t.placed_right / t.placed if t.placed else 1.0
    share = f"{t.clustered:>3}/{t.persons:<3} {t.clustered / t.persons:5.2f}"
    out = f" | {share:>15} {pair_p:6.3f} {place_p:7.3f} {t.wrong:5d}"
    return out + (f" {t.strangers_in:6d}" if strangers else "")
