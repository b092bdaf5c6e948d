"""The verification metrics of bench/ on tiny inputs whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bench_scripts import load_bench

m = load_bench("verification_metrics")


def test_genuine_pairs_are_every_same_label_pair_once() -> None:
    left, right = m.genuine_pairs(["a", "b", "a", "a", "b", "c"])
    assert sorted(zip(left.tolist(), right.tolist(), strict=True)) == [
        (0, 2), (0, 3), (1, 4), (2, 3),
    ]  # fmt: skip


def test_impostor_pairs_all_when_few() -> None:
    left, right = m.impostor_pairs(["a", "a", "b"], count=10, seed=0)
    assert sorted(zip(left.tolist(), right.tolist(), strict=True)) == [(0, 2), (1, 2)]


def test_impostor_pairs_sampled_distinct_different_and_reproducible() -> None:
    labels = [str(i // 3) for i in range(60)]
    left, right = m.impostor_pairs(labels, count=500, seed=7)
    pairs = set(zip(left.tolist(), right.tolist(), strict=True))
    assert len(pairs) == 500
    assert all(i < j and labels[i] != labels[j] for i, j in pairs)
    again = m.impostor_pairs(labels, count=500, seed=7)
    assert np.array_equal(again[0], left) and np.array_equal(again[1], right)


def test_balanced_accuracy_weighs_both_classes_half() -> None:
    genuine = np.full(10, 0.1)
    impostor = np.concatenate([np.full(100, 0.2), np.full(900, 0.9)])
    assert m.balanced_accuracy(genuine, impostor, 0.5) == pytest.approx((1.0 + 0.9) / 2)


def test_separable_scores_give_perfect_accuracy_and_zero_eer() -> None:
    rng = np.random.default_rng(0)
    genuine = rng.uniform(0.0, 0.4, 200)
    impostor = rng.uniform(0.6, 1.0, 2000)
    threshold = m.best_threshold(genuine, impostor)
    assert 0.4 <= threshold <= 0.6
    accuracy, spread, _ = m.cv_accuracy(genuine, impostor, folds=10, seed=0)
    assert accuracy == 1.0 and spread == 0.0
    assert m.equal_error_rate(genuine, impostor)[0] == 0.0
    assert m.tar_at_far(genuine, impostor, 1e-3)[0] == 1.0


def test_tar_at_far_accepts_at_most_far_of_the_impostors() -> None:
    impostor = np.arange(1000, dtype=np.float64) / 1000  # 0.000 .. 0.999
    genuine = np.array([0.0015, 0.0095, 0.0105, 0.5])
    tar, threshold = m.tar_at_far(genuine, impostor, 1e-2)
    assert threshold == pytest.approx(0.010)
    assert np.sum(impostor < threshold) == 10
    assert tar == pytest.approx(2 / 4)
    assert m.tar_at_far(genuine, impostor, 1e-4)[0] == 0.0  # no impostor may pass


def test_equal_error_rate_of_overlapping_uniform_scores() -> None:
    # genuine uniform on [0, 1), impostor on [0.5, 1.5): the rates meet at 0.75, both 1/4
    genuine = np.linspace(0.0, 1.0, 4000, endpoint=False)
    impostor = genuine + 0.5
    eer, threshold = m.equal_error_rate(genuine, impostor)
    assert eer == pytest.approx(0.25, abs=1e-3)
    assert threshold == pytest.approx(0.75, abs=1e-3)


def test_a_pair_without_a_face_is_never_accepted() -> None:
    vectors = np.eye(3)
    found = np.array([True, True, False])
    distances = m.cosine_distances(vectors, np.array([0, 0]), np.array([0, 2]), found)
    assert distances[0] == pytest.approx(0.0)
    assert distances[1] == np.inf
    genuine = np.array([0.1, np.inf])
    impostor = np.array([0.9, 0.8, np.inf])
    assert m.tar_at_far(genuine, impostor, 0.5)[0] == 0.5
    assert m.balanced_accuracy(genuine, impostor, 1e9) == pytest.approx((0.5 + 1 / 3) / 2)


def test_z_normalisation_uses_the_fixed_constants() -> None:
    impostor = np.array([0.2, 0.4, np.inf])
    mean, std = m.impostor_norm(impostor)
    assert (mean, std) == pytest.approx((0.3, 0.1))
    assert m.z_normalise(np.array([0.5, np.inf]), mean, std).tolist() == pytest.approx(
        [2.0, np.inf]
    )
