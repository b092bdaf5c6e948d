"""Clustering quality against labels: pairwise and BCubed precision/recall/F.

A clustering is one label per item; an item left out of every cluster (independent)
gets a label of its own, so it is a singleton for both measures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Quality:
    """How well predicted groups match the true identities."""

    pairwise: tuple[float, float, float]
    bcubed: tuple[float, float, float]
    clusters: int  # predicted groups of 2+
    singletons: int  # items alone


def _f(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _pairs(counts: Counter[object]) -> int:
    return sum(n * (n - 1) // 2 for n in counts.values())


def quality(predicted: Sequence[str | None], truth: Sequence[str]) -> Quality:
    """Scores of `predicted` (None: in no cluster) against `truth`, item by item."""
    if len(predicted) != len(truth):
        raise ValueError("one prediction per item")
    labels = [p if p is not None else f"\0alone{i}" for i, p in enumerate(predicted)]
    by_cluster = Counter(labels)
    by_truth = Counter(truth)
    both = Counter(zip(labels, truth, strict=True))
    same_both, same_cluster, same_truth = _pairs(both), _pairs(by_cluster), _pairs(by_truth)
    pair_p = same_both / same_cluster if same_cluster else 1.0
    pair_r = same_both / same_truth if same_truth else 1.0
    n = len(labels)
    b_p = sum(both[(c, t)] / by_cluster[c] for c, t in zip(labels, truth, strict=True)) / n
    b_r = sum(both[(c, t)] / by_truth[t] for c, t in zip(labels, truth, strict=True)) / n
    return Quality(
        pairwise=(pair_p, pair_r, _f(pair_p, pair_r)),
        bcubed=(b_p, b_r, _f(b_p, b_r)),
        clusters=sum(1 for size in by_cluster.values() if size > 1),
        singletons=sum(1 for size in by_cluster.values() if size == 1),
    )
