"""What users get elsewhere, on the same vectors: Immich's rule and dlib's Chinese Whispers.

Both take L2-normalised vectors and work on the graph of pairs closer than a cosine
distance, built in row blocks so 100k faces fit in memory.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.intp]
BLOCK = 2048


def neighbours(vectors: Floats, max_distance: float) -> list[Ints]:
    """For each row, the other rows within `max_distance` (1 - cosine), nearest first."""
    out: list[Ints] = []
    for start in range(0, len(vectors), BLOCK):
        sims = vectors[start : start + BLOCK] @ vectors.T
        for offset, row in enumerate(sims):
            i = start + offset
            near = np.flatnonzero(row >= 1.0 - max_distance)
            near = near[near != i]
            out.append(near[np.argsort(-row[near], kind="stable")])
    return out


def immich(vectors: Floats, max_distance: float = 0.5, min_faces: int = 3) -> list[int | None]:
    """Immich's face clustering (its facial-recognition job), label per face or None.

    A face with at least `min_faces` faces within `max_distance` (itself counted, as
    Immich's search includes it) is a core face. Faces are visited in order; a core
    face joins the person of its nearest neighbour that has one, or founds a new person;
    a non-core face joins its nearest neighbour's person if any, else stays alone (Immich
    retries it in a later run, when more faces may have been added).
    """
    near = neighbours(vectors, max_distance)
    person: list[int | None] = [None] * len(vectors)
    people = 0
    for deferred in (False, True):
        for i, others in enumerate(near):
            if person[i] is not None:
                continue
            core = len(others) + 1 >= min_faces
            if not core and not deferred:
                continue
            owner = next((person[j] for j in others if person[j] is not None), None)
            if owner is not None:
                person[i] = owner
            elif core:
                person[i] = people
                people += 1
    return person


def chinese_whispers(
    vectors: Floats, max_distance: float, iterations: int = 100, seed: int = 0
) -> list[int]:
    """dlib's chinese_whispers over the graph of pairs within `max_distance`, unit weights."""
    near = neighbours(vectors, max_distance)
    labels = np.arange(len(vectors))
    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        changed = False
        for i in rng.permutation(len(vectors)):
            others = near[i]
            if not len(others):
                continue
            values, counts = np.unique(labels[others], return_counts=True)
            best = int(values[np.argmax(counts)])
            if best != labels[i]:
                labels[i] = best
                changed = True
        if not changed:
            break
    return [int(x) for x in labels]
