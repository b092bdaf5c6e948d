"""The people gallery on a big library: page load time and thumbnail throughput.

    python bench/gallery.py                          # 5,000 people, 100,000 faces
    python bench/gallery.py --people 500 --faces 10000 --state STATE_DIR  # smaller, kept

The library is synthetic and made directly in SQLite through the domain's own writers
(Catalog.index_file, FigureBook.replace_file_figures, Catalog.save_file, then
FigureClusters.refresh for the people's counts and covers): running the pipeline on
100,000 faces would take hours on two cores. Every file is a hard link to one of the
real sample photos, with 4 face boxes around its face, so thumbnails crop real pixels.
People's sizes follow a power law (the largest has hundreds of faces, most have 3-20).

Against a real `openimm serve` on that state (its own process, 2 HTTP processes),
it prints, as the median of --repeat runs:

- page: GET / and its script and style sheet, then the first page of people
  (QueryFigureClusters by FaceCount, 40 a page, with TotalCount), as the page asks;
- page + covers: the same with the 40 cover crops in view, cold (made) and warm (cached);
- next page: the second page of people through NextToken;
- person: GetFigureCluster and the first 30 files of the largest person (SimpleQuery);
- thumbnails/s: distinct face crops fetched by 8 clients at once, cold and warm, and
  revalidations (If-None-Match, 304) per second.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from openimm.domain.figures import encode_vector

# `openimm serve` in its own process, as the end-to-end tests start it
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serve_process import ServeProcess

PROJECT, DATASET, BUCKET = "bench", "library", "photos"
FACES_PER_FILE = 4
PAGE = 40
# the URIs of the library's files, in order, beside its state
MANIFEST = "bench-files.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--thumbnails", type=int, default=400, help="distinct crops fetched")
    parser.add_argument("--state", type=Path, help="keep the library here (made if missing)")
    args = parser.parse_args()
    state = args.state or Path(tempfile.mkdtemp(prefix="gallery-bench-"))
    if not (state / "table.db").exists():
        started = time.perf_counter()
        _make_library(state, args.people, args.faces)
        print(f"library made in {time.perf_counter() - started:.0f} s: {state}")
    # cold means made now: the crops a kept state cached on an earlier run go first
    shutil.rmtree(state / "thumbnails", ignore_errors=True)
    server = ServeProcess(state, ["--processes", "2"], log=subprocess.DEVNULL)
    try:
        args.state_dir = state
        _measure(server.url, args)
    finally:
        server.stop()
        if args.state is None:
            shutil.rmtree(state, ignore_errors=True)
    return 0


# ------------------------------------------------------------------ the library


def _make_library(state: Path, people: int, faces: int) -> None:
    import random

    from openimm.bootstrap import Settings, build
    from openimm.local.samples import fetch_sample_photos

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "openimm"
    samples = fetch_sample_photos(cache / "sample-photos")
    folder = state / "buckets" / BUCKET
    (folder / "samples").mkdir(parents=True)
    for photo in samples.iterdir():
        os.link(photo, folder / "samples" / photo.name)
    app = build(Settings(data_dir=state))
    app.call("CreateProject", {"ProjectName": PROJECT}, "bench")
    app.call("CreateDataset", {"ProjectName": PROJECT, "DatasetName": DATASET}, "bench")
    sources = _one_face_photos(app, sorted(p.name for p in samples.iterdir()))
    rng = random.Random(7)
    owners = [
        person
        for person, size in enumerate(_power_law_sizes(people, faces, rng))
        for _ in range(size)
    ]
    rng.shuffle(owners)
    uris = []
    for number in range((faces + FACES_PER_FILE - 1) // FACES_PER_FILE):
        name, box = sources[number % len(sources)]
        key = f"{number // 1000:03d}/{number:06d}{Path(name).suffix}"
        (folder / key).parent.mkdir(exist_ok=True)
        os.link(samples / name, folder / key)
        uri = f"oss://{BUCKET}/{key}"
        uris.append(uri)
        row = app.catalog.index_file(PROJECT, DATASET, {"URI": uri})
        on_file = owners[number * FACES_PER_FILE : (number + 1) * FACES_PER_FILE]
        figures = [
            _figure(uri, row["ObjectId"], f"{number:06d}-{n}", person, box, n, rng)
            for n, person in enumerate(on_file)
        ]
        app.figures.replace_file_figures(PROJECT, DATASET, [], figures)
        fresh = app.catalog.find_file(PROJECT, DATASET, uri)
        assert fresh is not None
        fresh.update(
            {
                "_figures": [f["FigureId"] for f in figures],
                "FigureCount": len(figures),
                "_state": "analysed",
            }
        )
        app.catalog.save_file(PROJECT, DATASET, fresh)
    app.clusters.refresh(PROJECT, DATASET)
    (state / MANIFEST).write_text(json.dumps(uris))


def _one_face_photos(app: Any, names: list[str]) -> list[tuple[str, dict[str, int]]]:
    """The sample photos showing one face, with its box (DetectImageFaces, real models)."""
    found = []
    for name in names:
        body = {"ProjectName": PROJECT, "SourceURI": f"oss://{BUCKET}/samples/{name}"}
        try:
            faces = app.call("DetectImageFaces", body, "bench")["Faces"]
        except Exception:
            continue  # not an image the detector reads
        if len(faces) == 1:
            found.append((name, faces[0]["Boundary"]))
    assert found, "no sample photo with one face"
    return found


def _power_law_sizes(people: int, faces: int, rng: Any) -> list[int]:
    weights = [1 / (rank + 20) ** 1.1 for rank in range(people)]
    scale = (faces - 3 * people) / sum(weights)
    sizes = [3 + int(w * scale) for w in weights]
    for _ in range(faces - sum(sizes)):
        sizes[rng.randrange(people)] += 1
    return sizes


def _figure(
    uri: str, file_id: str, figure_id: str, person: int, box: dict[str, int], n: int, rng: Any
) -> dict[str, Any]:
    # four boxes around the one real face, a few pixels apart: four distinct crops
    shift = 3 * n
    return {
        "FigureId": figure_id,
        "FigureClusterId": f"Cluster-bench-{person:05d}",
        "FigureClusterConfidence": 0.9,
        "FigureType": "face",
        "Boundary": {**box, "Left": box["Left"] + shift, "Top": box["Top"] + shift},
        "FaceQuality": round(rng.uniform(0.3, 1.0), 3),
        "Age": rng.randint(18, 70),
        "Gender": rng.choice(("male", "female")),
        "GenderConfidence": 0.9,
        "_uri": uri,
        "_file": file_id,
        "_media": "image",
        "_pinned": False,
        # a stored face carries its embedding (the default embedder's 640 floats): reads
        # of figure rows cost what they cost in a real library
        "_model": "bench",
        "_embedding": encode_vector(np.asarray([rng.gauss(0, 1) for _ in range(640)], "f4")),
    }


# ------------------------------------------------------------------ measuring


def _post(base: str, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}/{operation}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        return dict(json.load(reply))


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, reply.read(), reply.headers.get("ETag", "")
    except urllib.error.HTTPError as exc:
        return exc.code, b"", exc.headers.get("ETag", "")


def _thumb(base: str, uri: str, figure: str | None, size: int = 160) -> str:
    query = {"ProjectName": PROJECT, "DatasetName": DATASET, "URI": uri, "Size": str(size)}
    if figure:
        query["FigureId"] = figure
    return f"{base}/thumbnails?{urllib.parse.urlencode(query)}"


def _first_page(base: str, token: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ProjectName": PROJECT,
        "DatasetName": DATASET,
        "Sort": "FaceCount",
        "Order": "desc",
        "MaxResults": PAGE,
        "WithTotalCount": True,
    }
    if token:
        body["NextToken"] = token
    return _post(base, "QueryFigureClusters", body)


def _cover_urls(base: str, page: dict[str, Any]) -> list[str]:
    urls = []
    for cluster in page["FigureClusters"]:
        cover = cluster["Cover"]
        figure = next(
            (f for f in cover["Figures"] if f.get("FigureClusterId") == cluster["ObjectId"]),
            cover["Figures"][0],
        )
        urls.append(_thumb(base, cover["URI"], figure["FigureId"]))
    return urls


def _parallel(urls: list[str], clients: int = 8, **headers: str) -> float:
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for status, _, _ in pool.map(lambda u: _get(u, headers), urls):
            assert status in (200, 304), status
    return time.perf_counter() - started


def _median_ms(run: Any, repeat: int) -> str:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return f"{statistics.median(times) * 1000:7.0f} ms"


def _measure(base: str, args: argparse.Namespace) -> None:
    def page() -> dict[str, Any]:
        for path in ("/", "/gallery/gallery.js", "/gallery/gallery.css"):
            assert _get(base + path)[0] == 200
        return _first_page(base)

    first = page()
    largest_faces = first["FigureClusters"][0]["FaceCount"]
    print(f"library: {first['TotalCount']} people (the largest {largest_faces} faces); ", end="")
    print(f"{args.faces} faces")
    print(f"page (HTML, JS, CSS, first 40 people):  {_median_ms(page, args.repeat)}")
    covers = _cover_urls(base, first)
    started = time.perf_counter()
    page()
    _parallel(covers)
    print(
        f"page + 40 cover crops, cold:            {(time.perf_counter() - started) * 1000:7.0f} ms"
    )
    print(
        "page + 40 cover crops, warm:            "
        + _median_ms(lambda: (page(), _parallel(covers)), args.repeat)
    )
    print(
        "next page (NextToken):                  "
        + _median_ms(lambda: _first_page(base, first["NextToken"]), args.repeat)
    )
    largest = first["FigureClusters"][0]["ObjectId"]

    def person() -> None:
        where = {"ProjectName": PROJECT, "DatasetName": DATASET}
        _post(base, "GetFigureCluster", {**where, "ObjectId": largest})
        query = {"Field": "Figures.FigureClusterId", "Operation": "eq", "Value": largest}
        _post(base, "SimpleQuery", {**where, "Query": query, "MaxResults": 30})

    print(f"person (largest, first 30 files):       {_median_ms(person, args.repeat)}")
    # distinct crops of the last files (the covers above came mostly from elsewhere)
    files = json.loads((args.state_dir / MANIFEST).read_text())[::-1]
    urls = [
        _thumb(base, uri, f"{Path(uri).stem}-{k}") for uri in files for k in range(FACES_PER_FILE)
    ][: args.thumbnails]
    cold = _parallel(urls)
    warm = _parallel(urls)
    etags = [_get(u)[2] for u in urls[:100]]
    revalidate = _parallel_304(urls[:100], etags)
    print(
        f"thumbnails/s, 8 clients: cold {len(urls) / cold:6.0f}, warm {len(urls) / warm:6.0f}, "
        f"304 {100 / revalidate:6.0f}"
    )


def _parallel_304(urls: list[str], etags: list[str]) -> float:
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda p: _get(p[0], {"If-None-Match": p[1]})[0], zip(urls, etags, strict=True)
            )
        )
    assert set(codes) == {304}, set(codes)
    return time.perf_counter() - started


if __name__ == "__main__":
    raise SystemExit(main())
