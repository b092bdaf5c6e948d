"""Face verification metrics over distances of genuine (same person) and impostor pairs.

A pair is accepted as "same person" when its distance is at or below the threshold; a
pair whose face was not found has distance +inf, so it is never accepted (a miss for a
genuine pair, a correct rejection for an impostor pair). Only numpy: the tests import
this module by path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Indices = npt.NDArray[np.int64]


def genuine_pairs(labels: list[str]) -> tuple[Indices, Indices]:
    """Every pair (i < j) of items with the same label."""
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    left: list[int] = []
    right: list[int] = []
    for members in by_label.values():
        for a, i in enumerate(members):
            left.extend([i] * (len(members) - a - 1))
            right.extend(members[a + 1 :])
    return np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)


def impostor_pairs(labels: list[str], count: int, seed: int) -> tuple[Indices, Indices]:
    """`count` distinct pairs (i < j) with different labels, drawn with a fixed seed.

    Fewer when there are fewer such pairs; then all of them, in a fixed order.
    """
    codes = np.unique(np.asarray(labels), return_inverse=True)[1].astype(np.int64)
    n = len(labels)
    sizes = np.bincount(codes)
    total = (n * (n - 1) - int((sizes * (sizes - 1)).sum())) // 2
    if total <= count:
        i, j = np.triu_indices(n, k=1)
        keep = codes[i] != codes[j]
        return i[keep].astype(np.int64), j[keep].astype(np.int64)
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    while len(chosen) < count:
        a = rng.integers(0, n, size=2 * (count - len(chosen)))
        b = rng.integers(0, n, size=a.size)
        i, j = np.minimum(a, b), np.maximum(a, b)
        for key in (i * n + j)[codes[i] != codes[j]]:
            chosen.add(int(key))
            if len(chosen) == count:
                break
    keys = np.fromiter(sorted(chosen), dtype=np.int64)
    return keys // n, keys % n


def _rates(genuine: Floats, impostor: Floats, thresholds: Floats) -> tuple[Floats, Floats]:
    """(true accept rate, false accept rate) at each threshold."""
    tar = np.searchsorted(np.sort(genuine), thresholds, side="right") / max(genuine.size, 1)
    far = np.searchsorted(np.sort(impostor), thresholds, side="right") / max(impostor.size, 1)
    return tar.astype(np.float64), far.astype(np.float64)


def balanced_accuracy(genuine: Floats, impostor: Floats, threshold: float) -> float:
    """Mean of the genuine and impostor accuracy: both classes weigh half, as LFW's pairs do."""
    tar, far = _rates(genuine, impostor, np.asarray([threshold], dtype=np.float64))
    return float((tar[0] + 1.0 - far[0]) / 2)


def best_threshold(genuine: Floats, impostor: Floats) -> float:
    """The threshold with the highest balanced accuracy (midway between observed distances)."""
    values = np.unique(np.concatenate([genuine, impostor]))
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0
    candidates = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2, [values[-1]]])
    tar, far = _rates(genuine, impostor, candidates)
    return float(candidates[int(np.argmax(tar - far))])


def cv_accuracy(
    genuine: Floats, impostor: Floats, folds: int = 10, seed: int = 0
) -> tuple[float, float, float]:
    """Balanced accuracy, k-fold: threshold fit on k-1 folds, scored on the held-out one.

    Returns (mean, standard deviation over folds, mean threshold).
    """
    rng = np.random.default_rng(seed)
    genuine_fold = rng.permutation(genuine.size) % folds
    impostor_fold = rng.permutation(impostor.size) % folds
    scores: list[float] = []
    thresholds: list[float] = []
    for fold in range(folds):
        threshold = best_threshold(genuine[genuine_fold != fold], impostor[impostor_fold != fold])
        thresholds.append(threshold)
        scores.append(
            balanced_accuracy(
                genuine[genuine_fold == fold], impostor[impostor_fold == fold], threshold
            )
        )
    return float(np.mean(scores)), float(np.std(scores)), float(np.mean(thresholds))


def tar_at_far(genuine: Floats, impostor: Floats, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the largest threshold whose false accept rate is at most `far`.

    Pairs strictly below the threshold are accepted, so ties with an impostor never add
    false accepts; with n impostors, at most floor(far * n) of them are accepted.
    """
    ordered = np.sort(impostor)
    if ordered.size == 0:
        return 1.0, float("inf")
    allowed = int(np.floor(far * ordered.size))
    threshold = float(ordered[allowed]) if allowed < ordered.size else float("inf")
    return float(np.mean(genuine < threshold)), threshold


def equal_error_rate(genuine: Floats, impostor: Floats) -> tuple[float, float]:
    """(EER, threshold): where false accept and false reject rates meet (their mean there)."""
    values = np.unique(np.concatenate([genuine, impostor]))
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.5, 0.0
    candidates = np.concatenate([[values[0] - 1.0], values])
    tar, far = _rates(genuine, impostor, candidates)
    frr = 1.0 - tar
    best = int(np.argmin(np.abs(far - frr)))
    return float((far[best] + frr[best]) / 2), float(candidates[best])


def cosine_distances(vectors: Any, left: Indices, right: Indices, found: Any) -> Floats:
    """1 - cosine similarity of unit vectors per pair; +inf where either face was not found."""
    vectors = np.asarray(vectors, dtype=np.float64)
    found = np.asarray(found, dtype=bool)
    distances = 1.0 - np.einsum("ij,ij->i", vectors[left], vectors[right])
    distances[~(found[left] & found[right])] = np.inf
    return np.asarray(distances, dtype=np.float64)


def z_normalise(distances: Floats, mean: float, std: float) -> Floats:
    """(d - mean) / std with fixed constants; +inf stays +inf."""
    return (distances - mean) / std


def impostor_norm(impostor: Floats) -> tuple[float, float]:
    """Mean and standard deviation of the finite impostor distances (z-norm constants)."""
    finite = impostor[np.isfinite(impostor)]
    return float(finite.mean()), float(finite.std())
