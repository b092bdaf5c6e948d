"""Face search: latency, recall and memory of the nearest-neighbour paths; identification.

    python bench/search.py                                  # 10k and 100k faces
    python bench/search.py --sizes 10000,100000,1000000     # adds 1M (builds take minutes)
    python bench/search.py --sizes 0 --faces LFW_DEV        # only rank-1 / rank-5 on lfw-dev
    python bench/search.py --sizes 0 --faces LFW_DEV --calibrate

Scale. Synthetic 640-D faces clustered like the fused embedder's (bench/cluster_scale.py's
synthetic_library); queries are --queries faces of the same people held out of the
library. One table row per path and size: build seconds, the index's memory (MB), p50 and
p99 latency of one query asking the top 100 (warm: after warm-up queries, one query at
a time as a search task issues them) and recall@10 against the exact float32 top 10.
Paths:

- `numpy f32`: the exact scan over a float32 matrix (the reference);
- `FaceIndex exact`: production's exact scan over float32 rows;
- `FaceIndex graph`: production's ANN path, usearch HNSW (float16, M 32, efConstruction
  128, efSearch 5 x the candidates) over the rows projected onto their --graph-dim (256)
  leading directions, proposing 2 x k candidates that float16 rows re-score;
- `FaceIndex graph, loaded`: the same index saved to a blob and loaded, in a fresh
  process, as a cold instance loads it (domain/index_snapshots.py); its build column is
  the read and load seconds, and the line after it gives the blob's size and that
  process's peak RSS;
- `faiss HNSW32`: faiss-cpu's IndexHNSWFlat (float32, M 32, efConstruction 80,
  efSearch 200), the other candidate; it cannot delete, so an index that forgets faces
  would need tombstones and rebuilds.

Paths above --exact-max faces skip the exact scans' latency rows (too slow to matter),
but the recall reference is always computed.

Identification (--faces LFW_DEV, a folder with LABELS.csv): each image's largest face
embedded by the production fused embedder, or the one --embedder names (cached with
bench/verification.py's cache);
gallery = the first image of every identity with >= 2 images, probes = the others.
Rank-1 / rank-5: the share of probes whose identity is the first / among the first five
gallery results. A probe without a detected face counts as a miss.

--calibrate fits Similarity = 1 / (1 + exp(-(a * cosine + b))) to every genuine pair and
a fixed-seed sample of impostor pairs of lfw-dev, the two classes weighted equally (so
0.5 is where a pair is as likely to be one person as two), and prints a and b per
embedder: the constants pinned in grouping/face_similarity.py.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from cluster_scale import synthetic_library

from openimm.adapters.local.folder_blobs import FolderBlobStore
from openimm.grouping.face_index import FaceIndex, GraphSettings

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]
TOP = 100


def exact_top(library: Floats, queries: Floats, k: int) -> Ints:
    """The exact float32 top k per query (the recall reference), in row blocks."""
    best = np.zeros((len(queries), 0), dtype=np.int64)
    best_scores = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(library), 100_000):
        scores = queries @ library[start : start + 100_000].T
        rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        best_scores = np.concatenate([best_scores, scores], axis=1)
        best = np.concatenate([best, rows], axis=1)
        keep = np.argsort(-best_scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
        best = np.take_along_axis(best, keep, axis=1)
    return best


def recall_at(found: list[list[int]], truth: Ints, k: int) -> float:
    hits = sum(len(set(row[:k]) & set(truth[i, :k].tolist())) for i, row in enumerate(found))
    return hits / (k * len(found))


def latencies(search: Callable[[Floats], list[int]], queries: Floats) -> tuple[float, float]:
    for query in queries[:5]:
        search(query[None, :])
    times = []
    for query in queries:
        start = time.perf_counter()
        search(query[None, :])
        times.append(time.perf_counter() - start)
    p50, p99 = np.percentile(np.asarray(times) * 1000.0, [50, 99])
    return float(p50), float(p99)


def row(
    path: str, n: int, build: float, mb: float, lat: tuple[float, float] | None, rec: float
) -> None:
    p50 = f"{lat[0]:8.2f}" if lat else "       -"
    p99 = f"{lat[1]:8.2f}" if lat else "       -"
    print(
        f"| {path:16} | {n:>9,} | {build:8.1f} | {mb:8.0f} | {p50} | {p99} | {rec:9.4f} |",
        flush=True,
    )


def bench_size(
    n: int, queries_count: int, paths: set[str], exact_max: int, seed: int, graph_dim: int
) -> None:
    library = synthetic_library(n + queries_count, 640, seed=seed)
    held = np.random.default_rng(seed).choice(n + queries_count, queries_count, replace=False)
    mask = np.ones(n + queries_count, dtype=bool)
    mask[held] = False
    queries = np.ascontiguousarray(library.vectors[held])
    base = np.ascontiguousarray(library.vectors[mask])
    del library
    truth = exact_top(base, queries, 10)
    keys = [str(i) for i in range(n)]

    if "numpy" in paths:
        recall = recall_at(
            [exact_top(base, q[None, :], 10)[0].tolist() for q in queries[:20]], truth[:20], 10
        )
        lat = (
            latencies(lambda q: exact_top(base, q, TOP)[0].tolist(), queries)
            if n <= exact_max
            else None
        )
        row("numpy f32", n, 0.0, base.nbytes / 1e6, lat, recall)

    if "exact" in paths:
        start = time.perf_counter()
        index = FaceIndex(640, exact_limit=n + 1)
        index.put(keys, base)
        build = time.perf_counter() - start
        found = [[int(x.key) for x in r] for r in index.search(queries[:50], 10)]
        lat = (
            latencies(lambda q: [int(x.key) for x in index.search(q, TOP)[0]], queries)
            if n <= exact_max
            else None
        )
        row("FaceIndex exact", n, build, n * 640 * 4 / 1e6, lat, recall_at(found, truth[:50], 10))
        del index

    if "graph" in paths:
        start = time.perf_counter()
        index = FaceIndex(640, exact_limit=0, graph=GraphSettings(graph_dim=graph_dim))
        index.put(keys, base)
        build = time.perf_counter() - start
        graph = index._graph
        graph_mb = getattr(getattr(graph, "_index", None), "memory_usage", 0) / 1e6

        def graph_row(name: str, index: FaceIndex, seconds: float) -> None:
            found = [[int(x.key) for x in index.search(q[None, :], TOP)[0]] for q in queries]
            lat = latencies(lambda q: [int(x.key) for x in index.search(q, TOP)[0]], queries)
            mb = n * 640 * 2 / 1e6 + graph_mb
            row(name, n, seconds, mb, lat, recall_at(found, truth, 10))

        graph_row("FaceIndex graph", index, build)
        # what a cold instance does instead of building: read the saved index, load it, in
        # a process of its own so that its memory is the cold instance's
        with tempfile.TemporaryDirectory() as tmp:
            FolderBlobStore(Path(tmp)).write("oss://work/index.idx", index.snapshot())
            del index, graph
            np.savez(Path(tmp) / "queries.npz", queries=queries, truth=truth, graph_mb=graph_mb)
            subprocess.run([sys.executable, __file__, "--cold", tmp], check=True)

    if "faiss" in paths:
        import faiss

        start = time.perf_counter()
        flat = faiss.IndexHNSWFlat(640, 32, faiss.METRIC_INNER_PRODUCT)
        flat.hnsw.efConstruction = 80
        flat.add(base)
        build = time.perf_counter() - start
        flat.hnsw.efSearch = 200

        def faiss_search(q: Floats) -> list[int]:
            return flat.search(q, TOP)[1][0].tolist()  # type: ignore[no-any-return]

        found = [faiss_search(q[None, :]) for q in queries]
        lat = latencies(faiss_search, queries)
        mb = (base.nbytes + n * 32 * 2 * 4) / 1e6  # vectors + level-0 links (M x 2 ints)
        row("faiss HNSW32", n, build, mb, lat, recall_at(found, truth, 10))
        del flat


def cold_row(folder: Path) -> None:
    """The `FaceIndex graph, loaded` row: a fresh process reads the saved index and searches."""
    saved = np.load(folder / "queries.npz")
    queries, truth = saved["queries"], saved["truth"]
    blobs = FolderBlobStore(folder)
    start = time.perf_counter()
    index = FaceIndex.restore(blobs.read("oss://work/index.idx"))
    load = time.perf_counter() - start
    n = len(index)
    found = [[int(x.key) for x in index.search(q[None, :], TOP)[0]] for q in queries]
    lat = latencies(lambda q: [int(x.key) for x in index.search(q, TOP)[0]], queries)
    mb = n * 640 * 2 / 1e6 + float(saved["graph_mb"])
    row("FaceIndex graph, loaded", n, load, mb, lat, recall_at(found, truth, 10))
    size = (folder / "work" / "index.idx").stat().st_size / 1e6
    print(f"  (saved index {size:.0f} MB; the loading process's peak RSS {own_peak_mb():.0f} MB)")


def own_peak_mb() -> float:
    """This process's peak RSS: getrusage's would count the parent's from before the exec."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def lfw_embeddings(
    folder: Path, cache: Path, embedder: str = "fused"
) -> tuple[Floats, npt.NDArray[np.bool_], list[str]]:
    from verification import embed_set, read_labels

    images = read_labels(folder)
    found = embed_set(folder, images, [embedder], cache)[embedder]
    return found.vectors.astype(np.float32), found.found, [im.identity for im in images]


def identification(folder: Path, cache: Path, embedder: str = "fused") -> None:
    vectors, found, identity = lfw_embeddings(folder, cache, embedder)
    by_identity: dict[str, list[int]] = {}
    for i, name in enumerate(identity):
        by_identity.setdefault(name, []).append(i)
    gallery, probes = [], []
    for members in by_identity.values():
        if len(members) < 2:
            continue
        with_face = [i for i in members if found[i]]
        if not with_face:
            continue
        gallery.append(with_face[0])
        probes.extend(i for i in members if i != with_face[0])
    index = FaceIndex(vectors.shape[1])
    index.put([str(i) for i in gallery], vectors[gallery])
    rank1 = rank5 = 0
    for probe in probes:
        if not found[probe]:
            continue
        hits = [identity[int(n.key)] for n in index.search(vectors[probe][None, :], 5)[0]]
        rank1 += hits[:1] == [identity[probe]]
        rank5 += identity[probe] in hits
    print(
        f"\nlfw-dev identification ({embedder}): gallery {len(gallery)} identities, "
        f"{len(probes)} probes ({int((~found[probes]).sum())} without a face)"
    )
    print(f"rank-1 {rank1 / len(probes):.4f}   rank-5 {rank5 / len(probes):.4f}")


def calibrate(folder: Path, cache: Path) -> None:
    from verification import embed_set, read_labels
    from verification_metrics import genuine_pairs, impostor_pairs

    images = read_labels(folder)
    labels = [im.identity for im in images]
    sets = embed_set(folder, images, ["fused", "onnx-dlib", "facenet"], cache)
    left, right = genuine_pairs(labels)
    i_left, i_right = impostor_pairs(labels, 200_000, seed=0)
    print("\nlogistic calibration of cosine (classes weighted equally)")
    for name, emb in sets.items():
        vectors = emb.vectors / np.maximum(
            np.linalg.norm(emb.vectors, axis=1, keepdims=True), 1e-12
        )
        ok_g = emb.found[left] & emb.found[right]
        ok_i = emb.found[i_left] & emb.found[i_right]
        genuine = np.einsum("ij,ij->i", vectors[left[ok_g]], vectors[right[ok_g]])
        impostor = np.einsum("ij,ij->i", vectors[i_left[ok_i]], vectors[i_right[ok_i]])
        a, b = fit_logistic(genuine, impostor)
        centre = -b / a
        g_med = 1 / (1 + np.exp(-(a * np.median(genuine) + b)))
        i_q = 1 / (1 + np.exp(-(a * np.quantile(impostor, 0.999) + b)))
        print(
            f"{name:8} a {a:8.3f}  b {b:8.3f}  (0.5 at cosine {centre:.4f}; "
            f"genuine median -> {g_med:.3f}, impostor q999 -> {i_q:.3f}; "
            f"{len(genuine)} genuine, {len(impostor)} impostor pairs)"
        )


def fit_logistic(genuine: Floats, impostor: Floats) -> tuple[float, float]:
    """Weighted logistic regression of same-person on cosine, by Newton's method."""
    x = np.concatenate([genuine, impostor]).astype(np.float64)
    y = np.concatenate([np.ones(len(genuine)), np.zeros(len(impostor))])
    w = np.concatenate(
        [np.full(len(genuine), 0.5 / len(genuine)), np.full(len(impostor), 0.5 / len(impostor))]
    )
    design = np.stack([x, np.ones_like(x)], axis=1)
    theta = np.zeros(2)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(design @ theta)))
        gradient = design.T @ (w * (p - y))
        hessian = (design * (w * p * (1 - p))[:, None]).T @ design
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--paths", default="numpy,exact,graph,faiss")
    parser.add_argument("--exact-max", type=int, default=200_000)
    parser.add_argument(
        "--graph-dim", type=int, default=GraphSettings().graph_dim, help="640: unprojected"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cold", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--faces", type=Path, help="lfw-dev folder for rank-1 / rank-5")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--embedder", default="fused", help="for rank-1 / rank-5")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "openimm-bench-cache"
    )
    args = parser.parse_args()
    if args.cold:
        cold_row(args.cold)
        return
    sizes = [int(s) for s in args.sizes.split(",") if int(s) > 0]
    if sizes:
        print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs; top-{TOP} per query")
        print(
            "| path             |     faces |  build s |       MB |  p50 ms |  p99 ms | recall@10 |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for n in sizes:
            bench_size(
                n,
                args.queries,
                set(args.paths.split(",")),
                args.exact_max,
                args.seed,
                args.graph_dim,
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS {peak:.0f} MB")
    if args.faces:
        identification(args.faces, args.cache, args.embedder)
        if args.calibrate:
            calibrate(args.faces, args.cache)


if __name__ == "__main__":
    sys.exit(main())
