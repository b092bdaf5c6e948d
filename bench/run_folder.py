"""The main job's figures: `openimm run` on a folder, timed, with cluster purity.

    python bench/run_folder.py [DIR] [--labels parent]

Without DIR it uses the sample photos. With `--labels parent` each photo's person is
the name of its folder (the layout of most labelled face sets), and the run prints
BCubed precision/recall/F of the clusters (each image by its largest face; unclustered
faces count as singletons).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from openimm.local.cli import IMAGE_SUFFIXES
from openimm.local.cli import main as openimm_main


def bcubed(items: list[tuple[str, str]]) -> tuple[float, float, float]:
    """BCubed precision, recall and F of (cluster, label) pairs."""
    by_cluster = Counter(c for c, _ in items)
    by_label = Counter(label for _, label in items)
    both = Counter(items)
    precision = sum(both[(c, lab)] / by_cluster[c] for c, lab in items) / len(items)
    recall = sum(both[(c, lab)] / by_label[lab] for c, lab in items) / len(items)
    return precision, recall, 2 * precision * recall / (precision + recall)


def _keep_largest(largest: dict[str, tuple[int, str]], fig: dict[str, Any], cluster: str) -> None:
    area = fig["Boundary"]["Width"] * fig["Boundary"]["Height"]
    if area > largest.get(fig["URI"], (-1, ""))[0]:
        largest[fig["URI"]] = (area, cluster)


def run(folder: Path, state: Path) -> tuple[dict[str, Any], float]:
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        openimm_main(["run", str(folder), "--data", str(state), "--json"])
    return json.loads(out.getvalue()), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dir", type=Path, nargs="?")
    parser.add_argument("--labels", choices=["parent"], default=None)
    args = parser.parse_args()
    folder = args.dir
    if folder is None:
        from openimm.local.samples import fetch_sample_photos

        folder = fetch_sample_photos(Path(tempfile.gettempdir()) / "openimm-bench-photos")
    images = sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    with tempfile.TemporaryDirectory() as state:
        report, seconds = run(folder, Path(state))
    faces = [f for c in report["clusters"] for f in c["Figures"]] + report["unclustered"]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"folder            {folder}")
    print(f"images            {images}  ({len(report['failed_files'])} not analysed)")
    print(f"faces             {len(faces)}")
    print(f"wall time         {seconds:.1f} s  (cold: includes model load)")
    print(f"images/s          {images / seconds:.2f}")
    print(f"faces/s           {len(faces) / seconds:.2f}")
    print(f"peak RSS          {rss_mb:.0f} MB")
    print(f"clusters          {len(report['clusters'])}")
    print(f"unclustered faces {len(report['unclustered'])}")
    if args.labels == "parent":
        # the label names the image's main person: score each image by its largest face,
        # and leave out unlabelled folders (`_multi_face`)
        largest: dict[str, tuple[int, str]] = {}
        for c in report["clusters"]:
            for fig in c["Figures"]:
                _keep_largest(largest, fig, c["ObjectId"])
        for fig in report["unclustered"]:
            _keep_largest(largest, fig, fig["FigureId"])
        items = [
            (cluster, uri.split("/")[-2])
            for uri, (_, cluster) in largest.items()
            if not uri.split("/")[-2].startswith("_")
        ]
        p, r, f = bcubed(items)
        print(f"BCubed P/R/F      {p:.3f} / {r:.3f} / {f:.3f}  (largest face of each image)")
        print(f"identities        {len({lab for _, lab in items})}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
