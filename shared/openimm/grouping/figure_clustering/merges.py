"""Re-examination: clusters that the run's evidence now says are one person merge.

Average linkage continued over whole clusters at merge_similarity (`_reexamine`); a
cluster each of whose faces would join a larger one goes into it (`_absorb_joinable`);
two clusters about as alike across as within merge (`_merge_cohesive`). A merge never
takes away the id of a cluster holding a user's work, never joins clusters a user's
move set apart, and never puts two faces of one image together.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from openimm.grouping.figure_clustering.config import ClusteringConfig, Embedding
from openimm.grouping.figure_clustering.joins import _top_mean
from openimm.grouping.figure_clustering.linkage import _average_linkage, _components
from openimm.grouping.figure_clustering.run_state import _State
from openimm.grouping.figure_clustering.scans import _tiles


def _reexamine(state: _State, config: ClusteringConfig, curated: frozenset[str]) -> dict[str, str]:
    """Merge clusters that the evidence now joins; gone id -> surviving id.

    Average linkage continued over whole clusters: two merge when the mean similarity
    of their faces, pair by pair, reaches merge_similarity (by default seed_similarity),
    as seeding would have put them together had their faces arrived in one run. That
    mean is the dot product of the clusters' mean vectors, so the scan is over clusters,
    not faces. Never merged: two clusters with faces of one file, two that both hold a
    user's work (faces placed by hand, or `curated`), two a user's move set apart. The
    survivor keeps its id: the one with a user's work, else the larger, else the smaller id.
    """
    ids = sorted(state.members)
    if len(ids) < 2:
        return {}
    threshold = config.seed_similarity
    if config.merge_similarity is not None:
        threshold = config.merge_similarity
    # from the sums behind the centroids: mostly computed already, not gathered again
    means = np.stack([state.mean(c) for c in ids])
    if state.fresh is not None:
        # pairs of clusters the previous run already weighed are weighed the same now:
        # only changed clusters and their neighbours (the reach of one merge) are looked at
        fresh = [col for col, cid in enumerate(ids) if cid in state.fresh]
        reach = np.zeros(len(ids), dtype=bool)
        reach[fresh] = True
        if fresh:
            for _, c0, tile in _tiles(means[fresh], means):
                reach[c0 + np.flatnonzero((tile >= threshold).any(axis=0))] = True
        ids = [cid for cid, near in zip(ids, reach.tolist(), strict=True) if near]
        means = means[reach]
        if len(ids) < 2:
            return {}
    sizes = np.array([len(state.members[c]) for c in ids], dtype=np.float32)
    has_pinned = {c: _holds_user_work(state, c, curated) for c in ids}
    merged: dict[str, str] = {}
    distinct = np.arange(len(ids))
    for component in _components(means, distinct, threshold):
        local = [ids[int(c)] for c in component]
        sims = means[component] @ means[component].T
        np.fill_diagonal(sims, -np.inf)
        for a, b in itertools.combinations(range(len(local)), 2):
            ca, cb = local[a], local[b]
            if (
                (has_pinned[ca] and has_pinned[cb])
                or frozenset((ca, cb)) in state.apart
                or not state.files[ca].isdisjoint(state.files[cb])
            ):
                sims[a, b] = sims[b, a] = -np.inf
        for group in _average_linkage(sims, threshold, sizes[component]):
            names = [local[g] for g in group]
            survivor = min(names, key=lambda c: (not has_pinned[c], -len(state.members[c]), c))
            for gone in names:
                if gone != survivor:
                    state.merge(survivor, gone)
                    merged[gone] = survivor
    return merged


def _absorb_joinable(
    state: _State, config: ClusteringConfig, curated: frozenset[str], merged: dict[str, str]
) -> None:
    """Merge a cluster into a larger one that each of its faces would join.

    `merged` (gone id -> surviving id, the re-examination's) gets these merges too.

    Seeding all at once can split a person whose photos vary: average linkage over a
    few hundred faces stops below the threshold where a growing cluster, fed run by
    run, would have taken each face in by the join test. Here the smaller cluster is
    judged face by face with that same test (centroid and top-k cosine to the larger
    one's faces at join_similarity), each face also standing out from every other
    cluster (`_each_would_join`): the evidence an incremental library would have had.
    On lfw-dev (fused) one run's pairwise recall went from 0.967 to 0.975 at precision
    0.994, which brings one run within 0.2 points of five increments. Only pairs with a
    changed cluster are looked at (the others were weighed on the same faces), and only
    where the two centroids are within join_similarity: every face of the smaller one
    passing puts its mean, and so its centroid, there too.
    """
    changed = set(state.members) if state.fresh is None else set(state.fresh)
    while changed:
        ids = sorted(state.members)
        looked = [col for col, cid in enumerate(ids) if cid in changed]
        if len(ids) < 2 or not looked:
            break
        centroids = state.centroids(ids)
        pairs: list[tuple[float, str, str]] = []
        for r0, c0, tile in _tiles(centroids[looked], centroids):
            for r, c in zip(*np.nonzero(tile >= config.join_similarity), strict=True):
                a, b = ids[looked[r0 + int(r)]], ids[c0 + int(c)]
                if a != b:
                    pairs.append((-float(tile[r, c]), min(a, b), max(a, b)))
        changed = set()
        column = {cid: col for col, cid in enumerate(ids)}
        for _, a, b in sorted(set(pairs)):
            if a not in state.members or b not in state.members or a in changed or b in changed:
                continue  # merged this round: weighed again on its new faces next round
            large, small = sorted((a, b), key=lambda c: (-len(state.members[c]), c))
            pair = (column[small], column[large])
            if not _each_would_join(state, small, large, centroids, pair, config, curated):
                continue
            survivor, gone = large, small
            if _holds_user_work(state, small, curated):
                survivor, gone = small, large
            state.merge(survivor, gone)
            _record_merge(merged, gone, survivor)
            changed.add(survivor)


def _merge_cohesive(
    state: _State, config: ClusteringConfig, curated: frozenset[str], merged: dict[str, str]
) -> None:
    """Merge two clusters as alike across as within that clearly match only each other.

    `merged` (gone id -> surviving id) gets these merges too.

    A person whose photos vary (age, light, glasses) can end in two clusters whose mean
    cosine across stays below any fixed threshold that keeps lookalikes apart: on
    lfw-dev (fused) 13 such splits and the closest pairs of different people both sit
    at 0.85-0.87. What tells them apart is each cluster's own spread: a split person's
    two parts are nearly as alike across as each is within, two people are not. So the
    test is the cohesion, the mean cosine across over the geometric mean of the two
    means within, at cohesion_similarity, with the mean across at least the relaxed
    join's cosine. Diffuse clusters score high on it (a seed of strangers among 100k
    faces is alike to its neighbours as to itself), so the pair must also beat every
    other pairing of either by runner_up_margin: in bench/cluster_scale.py's 100k
    library all 13 cohesion merges without it were wrong, each within 0.013 of a
    runner-up, while lfw-dev's splits stood 0.046 or more clear of theirs. The same
    pairs as the re-examination never merge. Only clusters that changed, and those
    within reach of one (whose best or next match it may have been), are weighed.
    """
    threshold = config.cohesion_similarity
    if threshold is None:
        return
    margin = config.runner_up_margin
    floor = config.relaxed_join_similarity
    floor = config.join_similarity if floor is None else floor
    changed = set(state.members) if state.fresh is None else set(state.fresh)
    while changed:
        ids = sorted(state.members)
        if len(ids) < 2:
            break
        centroids = state.centroids(ids)
        sizes = np.array([len(state.members[c]) for c in ids], dtype=np.float64)
        # |sum| / n: the square root of the faces' mean cosine, each with itself included
        spread = np.array([state.sum_norm(c) for c in ids]) / sizes
        within = (spread**2 * sizes - 1.0) / np.maximum(sizes - 1.0, 1.0)
        # across = centroid cosine * spread_a * spread_b; cohesion = across / sqrt(w_a w_b)
        scale = np.where((sizes > 1) & (within > 0.0), spread / np.sqrt(np.abs(within)), 0.0)
        weighed = [col for col, cid in enumerate(ids) if cid in changed]
        matches = _most_cohesive(centroids, scale, weighed, reach=threshold - margin)
        # a changed cluster may have been (or now be) a neighbour's best or next match
        reached = sorted(set(matches.reached) - set(weighed))
        matches.extend(_most_cohesive(centroids, scale, reached))
        partners = sorted(
            {b for a, b in matches.best_at.items() if matches.best[a] >= threshold}
            - set(matches.best_at)
        )
        matches.extend(_most_cohesive(centroids, scale, partners))
        pairs = []
        for a, b in matches.best_at.items():
            if a < b and matches.best_at.get(b) == a:
                # the lower of its two rows' values (float32 may differ in the last bit)
                value = min(matches.best[a], matches.best[b])
                runner_up = max(matches.second[a], matches.second[b])
                if value >= threshold and value - runner_up >= margin:
                    pairs.append((-value, a, b))
        changed = set()
        for _, a, b in sorted(pairs):
            ca, cb = ids[a], ids[b]
            across = float(centroids[a] @ centroids[b]) * spread[a] * spread[b]
            if across < floor or not _may_merge(state, ca, cb, curated):
                continue
            survivor, gone = sorted(
                (ca, cb),
                key=lambda c: (not _holds_user_work(state, c, curated), -len(state.members[c]), c),
            )
            state.merge(survivor, gone)
            _record_merge(merged, gone, survivor)
            changed.add(survivor)


@dataclass
class _Matches:
    """Per cluster column: its most cohesive other cluster, that cohesion, and the next."""

    best_at: dict[int, int] = field(default_factory=dict)
    best: dict[int, float] = field(default_factory=dict)
    second: dict[int, float] = field(default_factory=dict)
    # columns within `reach` of some row
    reached: list[int] = field(default_factory=list)

    def extend(self, other: _Matches) -> None:
        """Take another scan's rows in."""
        self.best_at.update(other.best_at)
        self.best.update(other.best)
        self.second.update(other.second)


def _most_cohesive(
    centroids: Embedding, scale: npt.NDArray[np.float64], rows: list[int], reach: float = np.inf
) -> _Matches:
    """Each given cluster's two most cohesive other clusters, tile by tile."""
    out = _Matches()
    if not rows:
        return out
    chosen = np.asarray(rows, dtype=np.intp)
    best = np.full(chosen.size, -np.inf)
    second = np.full(chosen.size, -np.inf)
    best_at = np.zeros(chosen.size, dtype=np.intp)
    weights = scale.astype(np.float32)
    reached: list[npt.NDArray[np.intp]] = []
    for r0, c0, tile in _tiles(centroids[chosen], centroids):
        block = chosen[r0 : r0 + tile.shape[0]]
        span = slice(r0, r0 + tile.shape[0])
        tile *= weights[block, None] * weights[None, c0 : c0 + tile.shape[1]]
        own = block - c0
        inside = np.flatnonzero((own >= 0) & (own < tile.shape[1]))
        tile[inside, own[inside]] = -np.inf
        if reach < np.inf:
            reached.append(c0 + np.flatnonzero((tile >= reach).any(axis=0)))
        # this tile's top two per row, merged with the tiles' before
        if tile.shape[1] > 1:
            two = np.argpartition(tile, tile.shape[1] - 2, axis=1)[:, -2:]
        else:
            two = np.zeros((tile.shape[0], 2), dtype=np.intp)
        values = np.take_along_axis(tile, two, axis=1).astype(np.float64)
        if tile.shape[1] == 1:
            values[:, 0] = -np.inf
        order = np.argsort(-values, axis=1)
        values = np.take_along_axis(values, order, axis=1)
        two = np.take_along_axis(two, order, axis=1)
        better = values[:, 0] > best[span]
        second[span] = np.where(
            better, np.maximum(best[span], values[:, 1]), np.maximum(second[span], values[:, 0])
        )
        best_at[span] = np.where(better, two[:, 0] + c0, best_at[span])
        best[span] = np.where(better, values[:, 0], best[span])
    out.best_at = dict(zip(rows, best_at.tolist(), strict=True))
    out.best = dict(zip(rows, best.tolist(), strict=True))
    out.second = dict(zip(rows, second.tolist(), strict=True))
    if reached:
        out.reached = np.unique(np.concatenate(reached)).tolist()
    return out


def _record_merge(merged: dict[str, str], gone: str, survivor: str) -> None:
    """Add gone -> survivor to a merge record, moving earlier merges into `gone` along."""
    for earlier, kept in merged.items():
        if kept == gone:
            merged[earlier] = survivor
    merged[gone] = survivor


def _holds_user_work(state: _State, cluster_id: str, curated: frozenset[str]) -> bool:
    """Whether a cluster is curated or holds a face placed by hand."""
    return cluster_id in curated or bool(state.pinned[state.members[cluster_id]].any())


def _may_merge(state: _State, a: str, b: str, curated: frozenset[str]) -> bool:
    """Whether anything but the evidence keeps two clusters apart.

    Never merged automatically: two that both hold a user's work, two a user's move set
    apart, two with faces of one file.
    """
    return (
        not (_holds_user_work(state, a, curated) and _holds_user_work(state, b, curated))
        and frozenset((a, b)) not in state.apart
        and state.files[a].isdisjoint(state.files[b])
    )


def _each_would_join(
    state: _State,
    small: str,
    large: str,
    centroids: Embedding,
    pair: tuple[int, int],
    config: ClusteringConfig,
    curated: frozenset[str],
) -> bool:
    """Whether every face of `small` would join `large`, standing out from the others.

    `centroids`: every cluster's, `pair` the rows of these two, the others the rivals.

    The join test (centroid and top-k cosine at join_similarity), and the top-k cosine
    at least join_margin above the face's centroid cosine to every other cluster, as
    the relaxed join asks: among a million faces a cluster that chance put together
    from strangers can pass the join test alone against a lookalike's cluster (64
    such merges in bench/cluster_scale.py's 1M library), which the margin turns away.
    """
    if not _may_merge(state, small, large, curated):
        return False
    faces = state.vectors[state.members[small]]
    if not (faces @ state.centroid(large) >= config.join_similarity).all():
        return False
    robust = _top_mean(faces, state.vectors[state.members[large]], config)
    if not (robust >= config.join_similarity).all():
        return False
    nearest_rival = np.full(faces.shape[0], -np.inf, dtype=np.float32)
    for r0, c0, tile in _tiles(faces, centroids):
        for col in pair:
            if c0 <= col < c0 + tile.shape[1]:
                tile[:, col - c0] = -np.inf
        rows = slice(r0, r0 + tile.shape[0])
        nearest_rival[rows] = np.maximum(nearest_rival[rows], tile.max(axis=1))
    return bool((robust - nearest_rival >= config.join_margin).all())
