"""Check the quickstart's --json report on the sample photos: one cluster of the one person.

Usage: python3 .ci/check_quickstart.py REPORT.json EXIT_STATUS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# the sample photos of the one person who appears more than twice (local/samples.py)
OBAMA = {
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
    "32bit.png",
}


def problems(report: dict[str, Any], status: int) -> list[str]:
    """What is wrong with the report, in words; empty when the newcomer's run worked."""
    found = []
    if status != 0:
        found.append(f"the quickstart exited with status {status}, not 0")
    task = report.get("task", {})
    if task.get("Status") != "Succeeded":
        found.append(f"the task is {task.get('Status')} {task.get('Code')}: {task.get('Message')}")
    if report.get("failed_files"):
        found.append(f"files not analysed: {report['failed_files']}")
    holding = [files for files in _photos_by_cluster(report) if files & OBAMA]
    if len(holding) != 1:
        found.append(f"the repeated person is in {len(holding)} clusters, not one: {holding}")
    elif not holding[0] <= OBAMA or len(holding[0]) < 3:
        found.append(f"the repeated person's cluster is wrong: {sorted(holding[0])}")
    return found


def _photos_by_cluster(report: dict[str, Any]) -> list[set[str]]:
    return [
        {figure["URI"].rsplit("/", 1)[-1] for figure in cluster["Figures"]}
        for cluster in report.get("clusters", [])
    ]


def main() -> int:
    """Exit 1 and say why when the report is not what a newcomer should see."""
    path, status = Path(sys.argv[1]), int(sys.argv[2])
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"newcomer: no JSON report from the quickstart ({exc})", file=sys.stderr)
        return 1
    found = problems(report, status)
    for problem in found:
        print(f"newcomer: {problem}", file=sys.stderr)
    if found:
        return 1
    photos = next(files for files in _photos_by_cluster(report) if files & OBAMA)
    print(f"newcomer: ok, the repeated person is one cluster of {len(photos)} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
