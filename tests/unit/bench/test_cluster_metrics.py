"""Clustering metrics and baselines of bench/ on inputs whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bench_scripts import load_bench

metrics = load_bench("cluster_metrics")
baselines = load_bench("cluster_baselines")


def test_perfect_and_all_alone() -> None:
    truth = ["a", "a", "b", "b", "c"]
    q = metrics.quality(["x", "x", "y", "y", None], truth)
    assert q.pairwise == (1.0, 1.0, 1.0) and q.bcubed == (1.0, 1.0, 1.0)
    assert (q.clusters, q.singletons) == (2, 1)
    alone = metrics.quality([None] * 5, truth)
    assert alone.pairwise[:2] == (1.0, 0.0) and alone.bcubed[0] == 1.0
    assert alone.bcubed[1] == pytest.approx((0.5 * 4 + 1) / 5)


def test_a_wrong_merge_by_hand() -> None:
    # {a, a, b} together, b alone: 1 of 3 pairs right; a's recall 1, b's 1/2
    q = metrics.quality(["x", "x", "x", None], ["a", "a", "b", "b"])
    assert q.pairwise[0] == pytest.approx(1 / 3) and q.pairwise[1] == pytest.approx(1 / 2)
    assert q.bcubed[0] == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1) / 4)
    assert q.bcubed[1] == pytest.approx((1 + 1 + 1 / 2 + 1 / 2) / 4)


def _points() -> np.ndarray:
    # two tight groups of three on the unit circle, and one far point
    angles = [0.0, 0.05, 0.1, 1.5, 1.55, 1.6, 3.0]
    return np.array([[np.cos(a), np.sin(a)] for a in angles], dtype=np.float32)


def test_immich_needs_min_faces_to_found_a_person() -> None:
    labels = baselines.immich(_points(), max_distance=0.01, min_faces=3)
    assert labels[0] == labels[1] == labels[2] is not None
    assert labels[3] == labels[4] == labels[5] is not None and labels[3] != labels[0]
    assert labels[6] is None
    assert baselines.immich(_points()[:2], max_distance=0.01, min_faces=3) == [None, None]


def test_chinese_whispers_groups_the_connected_points() -> None:
    labels = baselines.chinese_whispers(_points(), max_distance=0.01)
    assert labels[0] == labels[1] == labels[2] != labels[3] == labels[4] == labels[5]
    assert labels[6] not in labels[:6]
