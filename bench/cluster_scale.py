"""Figure clustering at 100k-1M faces: time, memory and quality on synthetic embeddings.

    python bench/cluster_scale.py                 # the default cases (about 10 minutes)
    python bench/cluster_scale.py --cases full:100000:640,incremental:100000+1000:128
    python bench/cluster_scale.py --domain 100000  # FigureClusters.run on SQLite, shard or rows
    python bench/cluster_scale.py --chain 1000000:128  # 1M indexed first, then chained runs
    python bench/cluster_scale.py --chain 30000:640:10000  # the same, 10k new faces a run
    python bench/cluster_scale.py --domain 100000 --cores=2  # as the FC cluster stage's 2 vCPUs

Each case runs in a fresh process pinned to one core (or N: --cores=N), with the BLAS
and OpenMP thread counts set to match before numpy loads, and prints one table row:
seconds of the cluster_figures call (the median of 3 when under 30 s), the peak RSS
during it (and the RSS before it: the caller's faces), clusters, faces the run retried
(unclustered on entry), BCubed precision / recall against the synthetic identities,
and the faces the run placed in a cluster with the share of them that are of that
cluster's main person (`placed P`: a run's own precision, which BCubed over a library
100 or 1000 times larger than what the run added cannot show).
A case is `kind:faces:dims[:prior]`:

- `full:N:D` clusters N faces that are all new (above 100k, production's run goes in
  parts of 100k: `figure_clustering.runs._in_parts`);
- `incremental:N+M:D` clusters N faces, untimed and in a process of its own (as the
  earlier task ran in production), then times the run that adds M new ones; with
  `:truth` the N faces arrive already clustered by identity (every identity
  with 3+ seed-eligible images is a cluster, the rest independent), for sizes whose
  full run would take hours.

Thresholds are the production ones of the embedder with that many dimensions
(bootstrap.CLUSTERING_BY_EMBEDDER: fused for 640, dlib for 128); --join and --seed
override both strict thresholds.

The synthetic library. Identities are points mean + offset: one mean direction shared
by all faces (real face embeddings are far from centred) and an offset drawn in a
128-dimensional subspace with an exponentially decaying spectrum, scaled per identity
(some people look like many). A face is its identity plus noise in the same subspace,
scaled per face (image quality), plus a little isotropic noise, normalised. Identity
sizes follow a power law (P(size >= k) = k^-1.3, the largest 4% of the library): about
16% of faces are the only face of their person, a few people have thousands. 70% of
faces are seed-eligible, the less noisy ones more often. Files hold 1 to 4 faces of
different people. The constants were fitted so that, on lfw-dev embeddings (the
quantiles below, measured there), the synthetic same-person and different-person cosine
quantiles and the variance share of the top principal directions match:

    fused (640)  same q01/q05/q50/q99 .825 .858 .907 .957  strangers q50/q99/q999 .683 .802 .836
                 variance in the top 1/32/64/128 directions .687 .897 .965 .995
    dlib (128)   same .913 .930 .955 .980                   strangers .841 .910 .928
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# one core, one BLAS thread, set before numpy loads, here and in every child; or N of
# each with --cores N (the cluster stage has 2 vCPUs on FC, more on Lambda at 8 GB)
CORES = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--cores=")), 1)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(CORES)

# before numpy, as the product's entry points do: the numpy settings openimm makes
import openimm  # noqa: E402,F401

# isort: split
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]

DEFAULT_CASES = (
    "full:100000:640",
    "full:100000:128",
    "incremental:100000+1000:640",
    "incremental:100000+1000:128",
    "incremental:1000000+1000:128:truth",
    "incremental:1000000+1000:640:truth",
)


@dataclass(frozen=True)
class Profile:
    """Synthetic embedding geometry fitted to one embedder's lfw-dev cosines."""

    embedder: str
    mean_share: float  # squared norm of the shared mean direction
    between: float  # variance of identity offsets
    between_decay: float  # e-folding of their spectrum, in dimensions
    within: float  # variance of a face's noise around its identity
    within_decay: float
    quality_spread: float  # log-sd of the per-face noise scale
    lookalike_spread: float  # log-sd of the per-identity offset scale


PROFILES = {
    640: Profile("fused", 0.715, 0.235, 30.0, 0.095, 40.0, 0.2, 0.15),
    128: Profile("dlib", 0.88, 0.125, 20.0, 0.048, 30.0, 0.2, 0.15),
}
SUBSPACE = 128
ISOTROPIC = 0.03  # share of the noise spread over every dimension
SIZE_EXPONENT = 1.3
ELIGIBLE = 0.7
FACES_PER_FILE = ((1, 0.55), (2, 0.25), (3, 0.12), (4, 0.08))


@dataclass
class Library:
    """Synthetic faces: unit vectors and what is true about them."""

    vectors: Floats
    identity: Ints
    file: Ints
    eligible: npt.NDArray[np.bool_]


def synthetic_library(n: int, dims: int, seed: int = 0) -> Library:
    """n faces of a power-law set of people in `dims` dimensions, reproducible by seed."""
    profile = PROFILES[dims]
    rng = np.random.default_rng(seed)
    largest = max(50, n // 25)
    sizes: list[int] = []
    total = 0
    while total < n:
        size = min(largest, int(rng.uniform(1e-12, 1.0) ** (-1.0 / SIZE_EXPONENT)), n - total)
        sizes.append(size)
        total += size
    identity = np.repeat(np.arange(len(sizes)), sizes)
    k = min(SUBSPACE, dims - 1)
    basis = np.linalg.qr(rng.standard_normal((dims, k + 1)))[0]
    mean, sub = basis[:, 0], basis[:, 1:]
    between = np.exp(-np.arange(k) / profile.between_decay)
    between *= profile.between / between.sum()
    within = np.exp(-np.arange(k) / profile.within_decay)
    within *= profile.within * (1 - ISOTROPIC) / within.sum()
    lookalike = np.exp(rng.normal(0.0, profile.lookalike_spread, len(sizes)))
    lookalike /= np.sqrt(np.mean(lookalike**2))
    offsets = rng.standard_normal((len(sizes), k)) * np.sqrt(between) * lookalike[:, None]
    centres = (np.sqrt(profile.mean_share) * mean + offsets @ sub.T).astype(np.float32)
    quality = np.exp(rng.normal(0.0, profile.quality_spread, n)).astype(np.float32)
    vectors = np.empty((n, dims), dtype=np.float32)
    sub32 = sub.T.astype(np.float32)
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        noise = (rng.standard_normal((stop - start, k)) * np.sqrt(within)).astype(np.float32)
        noise = noise @ sub32
        iso = np.float32(np.sqrt(profile.within * ISOTROPIC / dims))
        noise += rng.standard_normal((stop - start, dims), dtype=np.float32) * iso
        vectors[start:stop] = centres[identity[start:stop]] + quality[start:stop, None] * noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # the seed gate passes sharper faces more often
    gate = quality * np.exp(rng.normal(0.0, 0.15, n))
    eligible = gate < np.quantile(gate, ELIGIBLE)
    return Library(vectors, identity, _files(identity, rng), eligible)


def _files(identity: Ints, rng: np.random.Generator) -> Ints:
    """1 to 4 faces per file, never two of one person (a repeat gets a file of its own)."""
    n = identity.size
    sizes, weights = zip(*FACES_PER_FILE, strict=True)
    counts = rng.choice(sizes, size=n, p=weights).tolist()
    order = rng.permutation(n).tolist()
    file = np.empty(n, dtype=np.int64)
    next_file, start = 0, 0
    for count in counts:
        if start >= n:
            break
        shared = next_file
        next_file += 1
        people: set[int] = set()
        for face in order[start : start + count]:
            person = int(identity[face])
            if person in people:
                file[face] = next_file
                next_file += 1
            else:
                file[face] = shared
                people.add(person)
        start += count
    return file


def cosine_quantiles(library: Library, sample: int = 4000) -> dict[str, list[float]]:
    """The same-person and stranger cosine quantiles of a sample (the header's figures)."""
    rng = np.random.default_rng(1)
    pick = rng.choice(library.identity.size, min(sample, library.identity.size), replace=False)
    sims = library.vectors[pick] @ library.vectors[pick].T
    same = library.identity[pick][:, None] == library.identity[pick][None, :]
    upper = np.triu_indices(pick.size, 1)
    sims, same = sims[upper], same[upper]
    return {
        "same": np.round(np.quantile(sims[same], [0.01, 0.05, 0.5, 0.99]), 3).tolist(),
        "strangers": np.round(np.quantile(sims[~same], [0.5, 0.99, 0.999]), 3).tolist(),
    }


# ---------------------------------------------------------------- one case, one process


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    # Linux: writing 5 resets the peak RSS (VmHWM) to the current RSS
    Path("/proc/self/clear_refs").write_text("5")


def _faces(library: Library, count: int, state: Callable[[int], str] | None = None) -> list[Any]:
    """The caller's view of the first `count` faces; `state` gives each one's cluster id."""
    from openimm.grouping import UNAVAILABLE, FaceToCluster

    # figure ids in no particular order, as hashes are
    rng = np.random.default_rng(7)
    tags = rng.integers(0, 2**63, size=count)
    return [
        FaceToCluster(
            figure_id=f"{tags[i]:016x}-{i}",
            file_id=f"file-{library.file[i]}",
            embedding=library.vectors[i],
            cluster_id=state(i) if state is not None else UNAVAILABLE,
            seed_eligible=bool(library.eligible[i]),
        )
        for i in range(count)
    ]


def _truth_prior(library: Library, old: int) -> Callable[[int], str]:
    """Clusters as a perfect earlier run over the first `old` faces would leave them.

    Every person with 3+ seed-eligible images there is a cluster of all their faces;
    everyone else is independent; the faces after `old` are new.
    """
    from openimm.grouping import INDEPENDENT, UNAVAILABLE

    identity = library.identity
    seen = np.bincount(identity[:old][library.eligible[:old]], minlength=identity.max() + 1)

    def state(i: int) -> str:
        if i >= old:
            return UNAVAILABLE
        return f"Cluster-{identity[i]}" if seen[identity[i]] >= 3 else INDEPENDENT

    return state


def _config(dims: int, join: float | None, seed: float | None) -> Any:
    from openimm.bootstrap import CLUSTERING_BY_EMBEDDER

    config = CLUSTERING_BY_EMBEDDER[PROFILES[dims].embedder]
    if join is not None:
        config = replace(config, join_similarity=join, relaxed_join_similarity=None)
    if seed is not None:
        config = replace(config, seed_similarity=seed)
    return config


def run_case(spec: str, join: float | None, seed: float | None) -> dict[str, Any]:
    """Run one case in this process; the measured row."""
    from cluster_metrics import quality

    from openimm.grouping import INDEPENDENT, UNAVAILABLE, cluster_figures

    kind, size, dims_text, *rest = spec.split(":")
    dims = int(dims_text)
    base, _, added = size.partition("+")
    old, new = int(base), int(added or 0)
    count = old + new
    library = synthetic_library(count, dims)
    config = _config(dims, join, seed)
    counter = iter(range(1, 1 << 62))

    def new_id() -> str:
        return f"Cluster-new-{next(counter)}"

    if kind == "full":
        faces = _faces(library, count, None)
    elif rest == ["truth"]:
        faces = _faces(library, count, _truth_prior(library, old))
    else:
        with tempfile.TemporaryDirectory() as scratch:
            saved = Path(scratch) / "earlier.json"
            done = _child([f"--child=earlier={spec}={saved}", *_overrides(join, seed)])
            if "error" in done:
                raise RuntimeError(f"the earlier run failed: {done['error']}")
            placed = json.loads(saved.read_text())
        faces = [replace(f, cluster_id=placed[f.figure_id]) for f in _faces(library, old, None)]
        faces += _faces(library, count, None)[old:]
    retried = sum(1 for f in faces if f.cluster_id in (INDEPENDENT, UNAVAILABLE))
    # as FigureClusters.run passes it: every earlier cluster is as that run left it
    settled = None if kind == "full" else {f.cluster_id for f in faces} - {INDEPENDENT, UNAVAILABLE}
    before = _rss_mb("VmRSS")
    _reset_peak()
    # a run of seconds is timed three times, the median kept: this shared machine's
    # speed drifts by a third between minutes
    timings: list[float] = []
    while len(timings) < 3 and (len(timings) == 0 or timings[0] < 30.0):
        started = time.perf_counter()
        outcome = cluster_figures(faces, config, new_id, settled=settled)
        timings.append(time.perf_counter() - started)
    seconds = sorted(timings)[len(timings) // 2]
    peak = _rss_mb("VmHWM")
    index = {f.figure_id: i for i, f in enumerate(faces)}
    # faces of settled clusters are left out of the outcome: they stay as they came
    predicted: list[str | None] = [
        None if f.cluster_id in (INDEPENDENT, UNAVAILABLE) else f.cluster_id for f in faces
    ]
    for a in outcome.assignments:
        predicted[index[a.figure_id]] = None if a.cluster_id == INDEPENDENT else a.cluster_id
    scores = quality(predicted, [str(i) for i in library.identity[:count].tolist()])
    placed, right = _placed(faces, predicted, library.identity[:count])
    return {
        "case": spec,
        "faces": count,
        "dims": dims,
        "seconds": round(seconds, 2),
        "peak_mb": round(peak),
        "input_mb": round(before),
        "clusters": len({p for p in predicted if p is not None}),
        "retried": retried,
        "bcubed_p": round(scores.bcubed[0], 4),
        "bcubed_r": round(scores.bcubed[1], 4),
        "placed": placed,
        "placed_p": round(right / placed, 4) if placed else 1.0,
    }


def _placed(faces: list[Any], predicted: list[str | None], identity: Ints) -> tuple[int, int]:
    """Faces the run put into a cluster, and of those the ones of its main person.

    BCubed over the whole library hides a run's own mistakes when it adds little to
    much (1k wrong joins among 1M faces move it by a thousandth): this is their share.
    """
    from openimm.grouping import INDEPENDENT, UNAVAILABLE

    people: dict[str, Counter[int]] = {}
    for cluster_id, person in zip(predicted, identity.tolist(), strict=True):
        if cluster_id is not None:
            people.setdefault(cluster_id, Counter())[person] += 1
    main = {cid: counts.most_common(1)[0][0] for cid, counts in people.items()}
    placed = [
        (cluster_id, person)
        for face, cluster_id, person in zip(faces, predicted, identity.tolist(), strict=True)
        if cluster_id is not None and face.cluster_id in (INDEPENDENT, UNAVAILABLE)
    ]
    return len(placed), sum(1 for cid, person in placed if main[cid] == person)


def run_earlier(spec: str, out: Path, join: float | None, seed: float | None) -> dict[str, Any]:
    """The untimed first run of an incremental case; its cluster ids go to `out`."""
    from openimm.grouping import cluster_figures

    _, size, dims_text, *_ = spec.split(":")
    base, _, added = size.partition("+")
    old, count = int(base), int(base) + int(added or 0)
    library = synthetic_library(count, int(dims_text))
    counter = iter(range(1, 1 << 62))
    outcome = cluster_figures(
        _faces(library, old, None),
        _config(int(dims_text), join, seed),
        lambda: f"Cluster-earlier-{next(counter)}",
    )
    out.write_text(json.dumps({a.figure_id: a.cluster_id for a in outcome.assignments}))
    return {"faces": old}


def _overrides(join: float | None, seed: float | None) -> list[str]:
    return [f"--{k}={v}" for k, v in (("join", join), ("seed", seed)) if v]


# ---------------------------------------------------------------- the domain layer


def _figure_row(library: Library, i: int, rng: np.random.Generator) -> dict[str, Any]:
    """Face i of the library as the embed stage stores its figure row (unclustered)."""
    from openimm.domain.figures import encode_vector

    return {
        "FigureId": f"{rng.integers(0, 2**63):016x}-{i}",
        "FigureType": "face",
        "FigureConfidence": 0.99,
        "Boundary": {"Left": 10, "Top": 20, "Width": 120, "Height": 150},
        "HeadPose": {"Pitch": 1.5, "Roll": -2.0, "Yaw": 10.25},
        "FaceQuality": 0.8,
        "Sharpness": 0.7,
        "Age": 30,
        "Gender": "female",
        "GenderConfidence": 0.9,
        "_landmarks": [[40.5, 60.5], [80.5, 60.5], [60.5, 80.5], [45.5, 100.5], [75.5, 100.5]],
        "_seed": bool(library.eligible[i]),
        "FigureClusterId": "figure-cluster-id-unavailable",
        "_pinned": False,
        "_uri": f"oss://bucket/photos/{library.file[i]}.jpg",
        "_file": f"file-{library.file[i]}",
        "_media": "image",
        "_model": "bench",
        "_embedding": encode_vector(library.vectors[i]),
    }


def run_chain(
    size: int, dims: int, part: int | None, join: float | None, seed: float | None
) -> dict[str, Any]:
    """A library of `size` faces indexed before any task, clustered by chained runs.

    What the cluster stage does for such a task: FigureClusters.run on SQLite with the
    face shard, again while faces wait (domain/clusters.py RUN_NEW_FACES a run, or
    `part`). Per run: seconds, peak RSS and RSS before it, faces still waiting; then BCubed
    of the end state.
    """
    from cluster_metrics import quality

    import openimm.domain.clusters as clusters_module

    if part is not None:
        clusters_module.RUN_NEW_FACES = part

    from openimm.adapters.local.folder_blobs import FolderBlobStore
    from openimm.adapters.local.sqlite_table import SqliteTableStore
    from openimm.domain.catalog import Catalog
    from openimm.domain.clusters import FACES_WAITING, RESERVED, FigureClusters
    from openimm.domain.face_shard import FaceShards
    from openimm.domain.figures import FigureBook

    library = synthetic_library(size, dims)
    rng = np.random.default_rng(3)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        table = SqliteTableStore(Path(tmp) / "table.db")
        blobs = FolderBlobStore(Path(tmp) / "buckets")
        figures = FigureBook(table)
        started = time.perf_counter()
        for first in range(0, size, 10_000):
            batch = range(first, min(size, first + 10_000))
            figures.save("p", "d", [_figure_row(library, i, rng) for i in batch])
        runs.append({"run": "index rows", "seconds": round(time.perf_counter() - started, 1)})
        shards = FaceShards(table, blobs, figures, "oss://work", "bench")
        catalog = Catalog(table, blobs, "bench")
        clusters = FigureClusters(
            table, catalog, figures, _config(dims, join, seed), model="bench", shards=shards
        )
        waiting = size
        while waiting:
            before = _rss_mb("VmRSS")
            _reset_peak()
            started = time.perf_counter()
            summary = clusters.run("p", "d")
            waiting = summary[FACES_WAITING]
            runs.append(
                {
                    "run": f"run {len(runs)}",
                    "seconds": round(time.perf_counter() - started, 1),
                    "peak_mb": round(_rss_mb("VmHWM")),
                    # the bench's own library and the run's imports
                    "before_mb": round(before),
                    "clustered": summary["FacesClustered"],
                    "waiting": waiting,
                }
            )
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
        by_index = {
            int(r["FigureId"].rsplit("-", 1)[1]): r["FigureClusterId"]
            for r in figures.all("p", "d")
        }
        predicted = [None if by_index[i] in RESERVED else by_index[i] for i in range(size)]
        scores = quality(predicted, [str(i) for i in library.identity[:size].tolist()])
    return {
        "chain": size,
        "dims": dims,
        "runs": runs,
        "bcubed_p": round(scores.bcubed[0], 4),
        "bcubed_r": round(scores.bcubed[1], 4),
    }


def run_domain(size: int, dims: int, join: float | None, seed: float | None) -> dict[str, Any]:
    """FigureClusters.run on SQLite over `size` figure rows, then twice with 1000 new ones.

    The first run clusters every row from nothing with the face shard on (it builds the
    shard from the rows); the second adds 1000 faces and takes the first run's own row
    writes into the shard (a one-off after a large run). The third adds 1000 more, the
    steady state, once on the shard (a cold instance: new objects, blobs read from the
    folder) and once on a copy of the same store reading every figure row, as before the
    shard. Time per part of each run, the cold read of every face both ways, and a user's
    merge of two clusters.
    """
    import sqlite3

    import openimm.domain.clusters as clusters_module
    import openimm.domain.face_shard as shard_module
    from openimm.adapters.local.folder_blobs import FolderBlobStore
    from openimm.adapters.local.sqlite_table import SqliteTableStore
    from openimm.domain.catalog import Catalog
    from openimm.domain.cluster_edits import ClusterEdits
    from openimm.domain.clusters import CLUSTERS, FigureClusters
    from openimm.domain.entities import dataset_key
    from openimm.domain.face_shard import FaceShards
    from openimm.domain.figures import FigureBook, decode_vector

    added = 1000
    library = synthetic_library(size + 2 * added, dims)
    spent: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    def timed_iter(name: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            items = fn(*args, **kwargs)
            while True:
                started = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
                    return
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
                yield item

        return wrapper

    rng = np.random.default_rng(3)

    def row(i: int) -> dict[str, Any]:
        return _figure_row(library, i, rng)

    config = _config(dims, join, seed)
    # timed wherever they are called from
    clusters_module.cluster_figures = timed("cluster_figures", clusters_module.cluster_figures)
    # the shard's run hands the algorithm columns: the same column, for comparison
    clusters_module.cluster_face_columns = timed(
        "cluster_figures", clusters_module.cluster_face_columns
    )
    clusters_module.decode_vector = timed("decode_vector", clusters_module.decode_vector)
    shard_module.decode_vector = timed("decode_vector", shard_module.decode_vector)

    def instance(root: Path, sharded: bool) -> tuple[FigureBook, FigureClusters, FaceShards]:
        """What a cold instance builds: a store, its figure book, clusters and shards."""
        table = SqliteTableStore(root / "table.db")
        blobs = FolderBlobStore(root / "buckets")
        figures = FigureBook(table)
        shards = FaceShards(table, blobs, figures, "oss://work", "bench")
        shards.read = timed("read faces (shard)", shards.read)  # type: ignore[method-assign]
        shards.fold = timed("fold shard", shards.fold)  # type: ignore[method-assign]
        clusters = FigureClusters(
            table,
            Catalog(table, blobs, "bench"),
            figures,
            config,
            model="bench",
            shards=shards if sharded else None,
        )
        figures.save = timed("save figure rows", figures.save)  # type: ignore[method-assign]
        figures.all = timed_iter("read figure rows", figures.all)  # type: ignore[method-assign]
        clusters.refresh = timed("refresh cluster rows", clusters.refresh)  # type: ignore[method-assign]
        clusters._recount = timed("recount clusters", clusters._recount)  # type: ignore[method-assign]
        return figures, clusters, shards

    def measured(label: str, clusters: FigureClusters) -> dict[str, Any]:
        spent.clear()
        _reset_peak()
        started = time.perf_counter()
        result = clusters.run("p", "d")
        total = time.perf_counter() - started
        parts = {k: round(v, 2) for k, v in spent.items()}
        return {
            "run": label,
            "seconds": round(total, 2),
            "peak_mb": round(_rss_mb("VmHWM")),
            "changed": result["FacesChanged"],
            **parts,
        }

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        main, copy = Path(tmp) / "main", Path(tmp) / "rows"
        main.mkdir()
        copy.mkdir()
        figures, clusters, _ = instance(main, sharded=True)
        figures.save("p", "d", [row(i) for i in range(size)])
        runs.append(measured("first run (builds the shard)", clusters))
        figures.save("p", "d", [row(i) for i in range(size, size + added)])
        runs.append(measured(f"+{added} (takes in the first run's writes)", clusters))
        figures.save("p", "d", [row(i) for i in range(size + added, size + 2 * added)])
        # the same store for the rows-only run: the shard's pointer and journal are
        # left unused there
        with (
            sqlite3.connect(main / "table.db") as source,
            sqlite3.connect(copy / "table.db") as target,
        ):
            source.backup(target)
        _, by_rows, _ = instance(copy, sharded=False)
        runs.append(measured(f"+{added} at {size + added}, every row read", by_rows))
        figures, by_shard, shards = instance(main, sharded=True)
        runs.append(measured(f"+{added} at {size + added}, shard (cold instance)", by_shard))

        # reading every face, nothing else: rows and decode, or the shard and its journal
        figures, _, shards = instance(main, sharded=True)
        spent.clear()
        started = time.perf_counter()
        vectors = [decode_vector(r["_embedding"]) for r in figures.all("p", "d")]
        runs.append(
            {
                "run": "cold read, every figure row",
                "seconds": round(time.perf_counter() - started, 2),
                "faces": len(vectors),
            }
        )
        started = time.perf_counter()
        faces = shards.read("p", "d").faces
        runs.append(
            {
                "run": "cold read, face shard",
                "seconds": round(time.perf_counter() - started, 2),
                "faces": len(faces),
            }
        )
        # a user's merge of two mid-size clusters (MergeFigureClusters' task), cold instance
        table = SqliteTableStore(main / "table.db")
        figures = FigureBook(table)
        catalog = Catalog(table, FolderBlobStore(main / "buckets"), "bench")
        edits = ClusterEdits(
            table, catalog, figures, FigureClusters(table, catalog, figures, config, model="bench")
        )
        by_size = sorted(
            table.scan_partition(CLUSTERS, dataset_key("p", "d")),
            key=lambda r: (-int(r.data.get("FaceCount", 0)), r.sk),
        )
        target, source = by_size[len(by_size) // 100], by_size[len(by_size) // 100 + 1]
        started = time.perf_counter()
        merged = edits.merge("p", "d", [source.sk], target.sk)
        runs.append(
            {
                "run": f"merge {source.data['FaceCount']} faces into {target.data['FaceCount']}",
                "seconds": round(time.perf_counter() - started, 2),
                "moved": merged["FacesMoved"],
            }
        )
    return {"domain": size, "dims": dims, "runs": runs}


# ---------------------------------------------------------------- driver


def _child(args: list[str], *, live: bool = False) -> dict[str, Any]:
    """Run a case in a fresh process; `live`: its progress lines reach stderr as they come."""
    command = [sys.executable, __file__, *args]
    done = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=None if live else subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _pin_cores() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[-CORES:]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES))
    parser.add_argument("--domain", default=None, help="FACES[:DIMS] figure rows on SQLite")
    parser.add_argument(
        "--chain", default=None, help="FACES[:DIMS[:PART]] indexed first, then chained runs"
    )
    parser.add_argument("--join", type=float, default=None)
    parser.add_argument("--seed", type=float, default=None)
    parser.add_argument("--quantiles", action="store_true", help="print the synthetic cosines")
    parser.add_argument(
        "--cores", type=int, default=1, help="cores and BLAS threads (as --cores=N)"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cores != CORES:
        parser.error("give the cores as --cores=N: they are set before numpy loads")
    overrides = [*_overrides(args.join, args.seed), f"--cores={CORES}"]

    if args.child is not None:
        _pin_cores()
        kind, _, spec = args.child.partition("=")
        if kind == "domain":
            size, _, dims = spec.partition(":")
            out = run_domain(int(size), int(dims or 640), args.join, args.seed)
        elif kind == "chain":
            size, dims, part, *_ = [*spec.split(":"), "", ""]
            share = int(part) if part else None
            out = run_chain(int(size), int(dims or 640), share, args.join, args.seed)
        elif kind == "earlier":
            case, _, path = spec.partition("=")
            out = run_earlier(case, Path(path), args.join, args.seed)
        else:
            out = run_case(spec, args.join, args.seed)
        print(json.dumps(out))
        return

    if args.quantiles:
        for dims in PROFILES:
            print(dims, cosine_quantiles(synthetic_library(20_000, dims)))
    if args.chain is not None:
        out = _child([f"--child=chain={args.chain}", *overrides], live=True)
        print(f"chained runs, {out.get('chain')} faces from nothing, {out.get('dims')} dims:")
        for run in out.get("runs", [out]):
            print("  " + "  ".join(f"{k} {v}" for k, v in run.items()))
        print(f"  end state: BCubed P {out.get('bcubed_p')} R {out.get('bcubed_r')}")
        return
    if args.domain is not None:
        out = _child([f"--child=domain={args.domain}", *overrides])
        print(f"domain layer, {out.get('domain')} figure rows, {out.get('dims')} dims:")
        for run in out.get("runs", [out]):
            print("  " + "  ".join(f"{k} {v}" for k, v in run.items()))
        return
    header = (
        f"{'case':38} {'faces':>8} {'dims':>4} {'seconds':>8} {'peak MB':>8} "
        f"{'input MB':>8} {'clusters':>8} {'retried':>8} {'BCubed P':>8} {'BCubed R':>8} "
        f"{'placed':>8} {'placed P':>8}"
    )
    print(header)
    for spec in args.cases.split(","):
        row = _child([f"--child=case={spec}", *overrides])
        if "error" in row:
            print(f"{spec:38} failed: {row['error']}")
            continue
        print(
            f"{row['case']:38} {row['faces']:>8} {row['dims']:>4} {row['seconds']:>8} "
            f"{row['peak_mb']:>8} {row['input_mb']:>8} {row['clusters']:>8} "
            f"{row['retried']:>8} {row['bcubed_p']:>8} {row['bcubed_r']:>8} "
            f"{row['placed']:>8} {row['placed_p']:>8}",
            flush=True,
        )


if __name__ == "__main__":
    main()
