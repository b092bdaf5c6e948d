"""Joining: an unclustered face goes into an existing cluster when the evidence says so.

The strict join (`_join`) asks a face's cosine to a cluster's mean and its mean cosine
to the cluster's top_k nearest members both to reach join_similarity, optionally
standing out from the runner-up cluster by runner_up_margin; at most one face per
image joins a cluster. The relaxed join (`_join_standing_out`) takes faces just below
that when their best cluster stands out, by join_margin, from the next cluster and
from nearby faces that are clearly someone else: a fixed cosine alone serves a small
album and a large library badly.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from openimm.grouping.figure_clustering import scans
from openimm.grouping.figure_clustering.config import ClusteringConfig, Embedding
from openimm.grouping.figure_clustering.run_state import _State
from openimm.grouping.figure_clustering.scans import _tiles


def _join(
    state: _State, candidates: list[int], config: ClusteringConfig, since: int | None = None
) -> None:
    """Put each candidate into its best passing cluster, at most one face per file.

    `since`: the candidates were weighed against every cluster at that step; only the
    clusters changed after it are looked at.
    """
    if not candidates or not state.members:
        return
    # statistics frozen for the whole pass: the result does not depend on visiting order
    cluster_ids = sorted(state.members)
    if since is not None:
        cluster_ids = [cid for cid in cluster_ids if state.changed_at.get(cid, 0) > since]
        if not cluster_ids:
            return
    centroids = state.centroids(cluster_ids)
    chosen = np.asarray(candidates)
    retried = state.retried[chosen] & (since is None)
    proposals = _join_proposals(state, chosen[~retried], cluster_ids, centroids, config)
    fresh = [col for col, cid in enumerate(cluster_ids) if state.is_fresh(cid)]
    if retried.any() and fresh:
        proposals += _join_proposals(
            state, chosen[retried], [cluster_ids[c] for c in fresh], centroids[fresh], config
        )
    if config.runner_up_margin > 0.0 and proposals:
        proposals = _clear_of_runners_up(state, proposals, config.runner_up_margin)
    _accept(state, proposals)


def _clear_of_runners_up(
    state: _State, proposals: list[tuple[float, str, str, int]], margin: float
) -> list[tuple[float, str, str, int]]:
    """The proposals whose centroid cosine beats the face's next cluster's by `margin`.

    Each proposal's runner-up is the face's most similar other cluster, all of them
    looked at, whichever were proposed: a face that passes for two clusters stands out
    for neither.
    """
    every = sorted(state.members)
    column = {cid: col for col, cid in enumerate(every)}
    faces = np.array([p[3] for p in proposals], dtype=np.intp)
    proposed = np.array([column[p[2]] for p in proposals], dtype=np.intp)
    runner_up = np.full(faces.size, -np.inf, dtype=np.float32)
    for r0, c0, tile in _tiles(state.vectors[faces], state.centroids(every)):
        rows = slice(r0, r0 + tile.shape[0])
        own = proposed[rows] - c0
        inside = np.flatnonzero((own >= 0) & (own < tile.shape[1]))
        tile[inside, own[inside]] = -np.inf
        runner_up[rows] = np.maximum(runner_up[rows], tile.max(axis=1))
    return [
        p
        for p, second in zip(proposals, runner_up.tolist(), strict=True)
        if not -p[0] - second < margin
    ]


def _join_proposals(
    state: _State,
    faces: npt.NDArray[np.intp],
    cluster_ids: list[str],
    centroids: Embedding,
    config: ClusteringConfig,
) -> list[tuple[float, str, str, int]]:
    """(-centroid cosine, figure id, cluster, face) for each pair passing both join tests."""
    if not faces.size:
        return []
    # (candidate, cluster) pairs past the centroid gate, tile by tile: memory stays at
    # a tile however many candidates and clusters there are
    hits = [
        (rows + r0, cols + c0, central[rows, cols])
        for r0, c0, central in _tiles(state.vectors, centroids, faces)
        for rows, cols in [np.nonzero(central >= config.join_similarity)]
    ]
    rows = np.concatenate([h[0] for h in hits])
    cols = np.concatenate([h[1] for h in hits])
    scores = np.concatenate([h[2] for h in hits])
    proposals: list[tuple[float, str, str, int]] = []
    if rows.size == 0:
        return proposals
    by_cluster = np.argsort(cols, kind="stable")
    col_values, starts = np.unique(cols[by_cluster], return_index=True)
    for col, chunk in zip(col_values, np.split(by_cluster, starts[1:]), strict=True):
        cluster_id = cluster_ids[int(col)]
        top_mean = _top_mean(
            state.vectors[faces[rows[chunk]]], state.vectors[state.members[cluster_id]], config
        )
        for face, score, robust in zip(
            faces[rows[chunk]].tolist(), scores[chunk].tolist(), top_mean.tolist(), strict=True
        ):
            if robust >= config.join_similarity:
                proposals.append((-score, state.figure_ids[face], cluster_id, face))
    return proposals


def _top_mean(
    faces: Embedding,
    members: Embedding,
    config: ClusteringConfig,
    apart: npt.NDArray[np.bool_] | None = None,
) -> Embedding:
    """Each face's mean cosine to its top_k most similar members.

    `apart` (faces x members) marks pairs that count as -inf (one file). In row chunks:
    a big cluster times many candidates would not fit at once.
    """
    k = min(config.top_k, members.shape[0])
    out = np.empty(faces.shape[0], dtype=np.float32)
    step = max(1, scans.TILE_ROWS * scans.TILE_COLS // max(1, members.shape[0]))
    for s in range(0, faces.shape[0], step):
        sims = faces[s : s + step] @ members.T
        if apart is not None:
            sims[apart[s : s + step]] = -np.inf
        out[s : s + step] = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:].mean(axis=1)
    return out


def _accept(state: _State, proposals: list[tuple[float, str, str, int]]) -> None:
    """Apply (-score, figure id, cluster, face) proposals, at most one face per file."""
    # best evidence first, so of two faces from one file the better one joins and the
    # other falls through to its next proposal
    proposals.sort()
    joined: dict[str, list[int]] = {}
    for _, _, cluster_id, face in proposals:
        file_id = state.file_ids[face]
        if state.cluster_of[face] is not None or file_id in state.files[cluster_id]:
            continue
        state.cluster_of[face] = cluster_id
        state.files[cluster_id].add(file_id)
        joined.setdefault(cluster_id, []).append(face)
    for cluster_id, faces in joined.items():
        state.add(cluster_id, faces)


# rounds of the relaxed join: faces that join make their cluster's evidence stronger
_RELAXED_ROUNDS = 3


# nearest faces looked at for evidence against a face's best cluster
_FOREIGN_NEIGHBOURS = 32


def _join_standing_out(state: _State, candidates: list[int], config: ClusteringConfig) -> None:
    """Join faces whose best cluster clearly stands out, though below join_similarity.

    A fixed cosine serves a large library and a small album badly: among thousands of
    strangers some come close to any cluster, so the strict threshold must be high,
    while in a family album the same person's harder photos fall just below it with
    nobody else anywhere near. The evidence that decides is relative: the face's
    top-k similarity to its best cluster must beat, by `join_margin`, its centroid
    similarity to the next cluster and its similarity to the nearest faces that are
    clearly not that person (not members, and below the relaxed threshold to the
    cluster's mean: faces of the same person are no evidence against
    it). On lfw-dev (7171 faces) it kept BCubed precision at 0.99 and lifted recall;
    on celeb5 (118 in-the-wild photos of 5 people) recall went from 0.63 to 0.97.
    """
    low = config.relaxed_join_similarity
    if low is None:
        return
    files = state.file_codes()
    # after the first round a face's test can change only through a cluster that grew
    grown: set[str] | None = None
    for _ in range(_RELAXED_ROUNDS):
        rest = state.unassigned(candidates)
        if not rest or not state.members:
            return
        cluster_ids = sorted(state.members)
        centroids = state.centroids(cluster_ids)
        everyone = _near_changed(
            state, np.asarray(rest), cluster_ids, centroids, grown, files, config
        )
        if not everyone.size:
            return
        label = np.full(state.size, -1)
        for col, cid in enumerate(cluster_ids):
            label[state.members[cid]] = col
        best, first, second_cosine = _best_two(state.vectors, everyone, centroids)
        # only faces near some cluster can join
        near = first >= low
        near_faces, best = everyone[near], best[near]
        second = second_cosine[near].astype(np.float64)
        robust = np.empty(near_faces.size, dtype=np.float64)
        for col in np.unique(best).tolist():
            rows = np.flatnonzero(best == col)
            members = state.members[cluster_ids[col]]
            apart = files[near_faces[rows]][:, None] == files[members][None, :]
            robust[rows] = _top_mean(
                state.vectors[near_faces[rows]], state.vectors[members], config, apart
            )
        # the cheap tests first, then one scan over every face for all that pass them
        hopeful = np.flatnonzero(~(robust < low) & ~(robust - second < config.join_margin))
        standing = _clear_of_strangers(
            state,
            near_faces[hopeful],
            best[hopeful],
            robust[hopeful],
            label,
            files,
            centroids,
            low,
            config.join_margin,
        )
        proposals = [
            (-robust[row], state.figure_ids[face], cluster_ids[best[row]], face)
            for row, face in zip(
                hopeful[standing].tolist(), near_faces[hopeful[standing]].tolist(), strict=True
            )
        ]
        if not proposals:
            return
        sizes = {cid: len(members) for cid, members in state.members.items()}
        _accept(state, proposals)
        grown = {cid for cid, members in state.members.items() if len(members) != sizes[cid]}


def _near_changed(
    state: _State,
    faces: npt.NDArray[np.intp],
    cluster_ids: list[str],
    centroids: Embedding,
    grown: set[str] | None,
    files: npt.NDArray[np.intp],
    config: ClusteringConfig,
) -> npt.NDArray[np.intp]:
    """The faces worth a relaxed look: those near a cluster that changed since they were.

    In the first round (`grown` None) that is every new face, and each retried one that
    could join the cluster changed since the previous run that it is nearest to: its
    top-k cosine there reaches the relaxed threshold and beats, by the margin, its
    centroid cosine to every other changed cluster (the test it must pass against all
    clusters, cut to the changed ones). In later rounds, every face that could so join
    a cluster the round before let grow. A face looks for a place only among changed
    clusters, as in the strict join: its test against the others failed on the same
    evidence. Narrowing on the changed clusters first keeps the scan of every cluster
    to the few faces with a chance (100k faces + 1k: 11 of 16k near ones).
    """
    low = config.relaxed_join_similarity
    assert low is not None
    if grown is None:
        looked = state.retried[faces]
        changed = [col for col, cid in enumerate(cluster_ids) if state.is_fresh(cid)]
    else:
        looked = np.ones(faces.size, dtype=bool)
        changed = [col for col, cid in enumerate(cluster_ids) if cid in grown]
    if not looked.any():
        return faces
    some = faces[looked]
    near = np.zeros(some.size, dtype=bool)
    if changed:
        near = _may_stand_out(
            state, some, [cluster_ids[c] for c in changed], centroids[changed], files, config
        )
    return np.sort(np.concatenate([faces[~looked], some[near]]))


def _best_two(
    vectors: Embedding, faces: npt.NDArray[np.intp], centroids: Embedding
) -> tuple[npt.NDArray[np.intp], Embedding, Embedding]:
    """Each face's most similar centroid, that cosine, and the next one's (-1 if none)."""
    best = np.empty(faces.size, dtype=np.intp)
    first = np.empty(faces.size, dtype=np.float32)
    second = np.full(faces.size, -1.0, dtype=np.float32)
    # whole rows, in blocks whose similarities to every centroid stay near one tile: a
    # row's best two need every column
    step = min(_SCAN_ROWS, max(1, scans.TILE_ROWS * scans.TILE_COLS // max(1, centroids.shape[0])))
    for r0 in range(0, faces.size, step):
        block = vectors[faces[r0 : r0 + step]] @ centroids.T
        rows = np.arange(block.shape[0])
        top = np.argmax(block, axis=1)
        best[r0 : r0 + rows.size] = top
        first[r0 : r0 + rows.size] = block[rows, top]
        if block.shape[1] > 1:
            block[rows, top] = -np.inf
            second[r0 : r0 + rows.size] = block.max(axis=1)
    return best, first, second


def _may_stand_out(
    state: _State,
    faces: npt.NDArray[np.intp],
    cluster_ids: list[str],
    centroids: Embedding,
    files: npt.NDArray[np.intp],
    config: ClusteringConfig,
) -> npt.NDArray[np.bool_]:
    """Whether each face passes the relaxed test against these clusters alone."""
    low = config.relaxed_join_similarity
    assert low is not None
    best, first, second = _best_two(state.vectors, faces, centroids)
    hope = np.flatnonzero(first >= low)
    robust = np.full(faces.size, -np.inf)
    for col in np.unique(best[hope]).tolist():
        rows = hope[best[hope] == col]
        members = state.members[cluster_ids[col]]
        apart = files[faces[rows]][:, None] == files[members][None, :]
        robust[rows] = _top_mean(state.vectors[faces[rows]], state.vectors[members], config, apart)
    passed = np.zeros(faces.size, dtype=bool)
    passed[hope] = (robust[hope] >= low) & (robust[hope] - second[hope] >= config.join_margin)
    return passed


def _clear_of_strangers(
    state: _State,
    faces: npt.NDArray[np.intp],
    best: npt.NDArray[np.intp],
    robust: npt.NDArray[np.float64],
    label: npt.NDArray[np.intp],
    files: npt.NDArray[np.intp],
    centroids: Embedding,
    low: float,
    margin: float,
) -> npt.NDArray[np.bool_]:
    """Whether robust - (cosine of the nearest face clearly not in its best cluster) >= margin.

    The nearest such face is looked for among a face's _FOREIGN_NEIGHBOURS nearest faces
    (of other files); when all of those belong with the cluster, the farthest of them
    stands in. Only faces close enough to fail the test matter, so the scan over every
    face keeps just those (robust - cosine < margin), never a full row: when a face
    has _FOREIGN_NEIGHBOURS of them it fails whoever they are, else it fails when one
    of them is clearly someone else.
    """
    ok = np.ones(faces.size, dtype=bool)
    if not faces.size:
        return ok
    n = state.size
    per_file = np.bincount(files)
    # faces looked at: the nearest ones of other files (a row holds all n, minus its file)
    looked = np.minimum(min(_FOREIGN_NEIGHBOURS, n), n - per_file[files[faces]])
    close_rows: list[npt.NDArray[np.intp]] = [np.zeros(0, dtype=np.intp)]
    close_cols: list[npt.NDArray[np.intp]] = [np.zeros(0, dtype=np.intp)]
    count = np.zeros(faces.size, dtype=np.intp)
    # the test in float64 as the scalar code did it, on the float32 hits around it
    floor = (robust - margin).astype(np.float32) - np.float32(1e-6)
    vectors = state.vectors[faces]
    # column tiles outermost: a face that already has its count of close faces fails
    # whoever the rest are, and leaves the scan (most faces of a big cluster, early)
    open_rows = np.flatnonzero(looked > 0)
    for c0 in range(0, n, scans.TILE_COLS):
        columns = state.vectors[c0 : c0 + scans.TILE_COLS]
        for r0 in range(0, open_rows.size, scans.TILE_ROWS):
            which = open_rows[r0 : r0 + scans.TILE_ROWS]
            sims = vectors[which] @ columns.T
            r, c = np.nonzero(sims > floor[which, None])
            fails = robust[which[r]] - sims[r, c].astype(np.float64) < margin
            r, c = which[r[fails]], c[fails] + c0
            # faces of its own file (itself included) are not looked at
            other_file = files[faces[r]] != files[c]
            r, c = r[other_file], c[other_file]
            close_rows.append(r)
            close_cols.append(c)
            np.add.at(count, r, 1)
        open_rows = open_rows[count[open_rows] < looked[open_rows]]
        if not open_rows.size:
            break
    rows = np.concatenate(close_rows)
    cols = np.concatenate(close_cols)
    # as many close faces as are looked at: the stand-in (or a stranger) is close
    ok[(count >= looked) & (looked > 0)] = False
    few = ok[rows] & (count[rows] > 0)
    rows, cols = rows[few], cols[few]
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    cuts = np.flatnonzero(np.diff(rows)) + 1
    for i, close in zip(
        rows[np.concatenate(([0], cuts))].tolist() if rows.size else [],
        np.split(cols, cuts) if rows.size else [],
        strict=True,
    ):
        others = (label[close] != best[i]) & (state.vectors[close] @ centroids[best[i]] < low)
        if others.any():
            ok[i] = False
    # no face to look at: the original stand-in is a cosine of -1
    lonely = looked <= 0
    ok[lonely] = ~(robust[lonely] + 1.0 < margin)
    return ok


_SCAN_ROWS = 1024
