"""The plain-English account `openimm run` prints at the end (not with --json)."""

from __future__ import annotations

import json
import shlex
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openimm.domain.left_out import LEFT_OUT_BECAUSE

# a summary for people: longer lists end with "and N more" (--json has them all)
LIST_LIMIT = 10


@dataclass(frozen=True)
class RunContext:
    """What the run was asked to do, for the summary."""

    folder: Path
    bucket: str
    project: str
    dataset: str
    state: Path
    files: int  # media files indexed


def count_of(number: int, singular: str, plural: str | None = None) -> str:
    """`1 face`, `2 faces`, `2 people`."""
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def figure_summary(report: dict[str, Any], run: RunContext) -> list[str]:
    """The lines that tell what a face-clustering run found and what to do next."""
    lines = _opening(report, run)
    clusters = report["clusters"]
    lines.append(f"Found {count_of(len(clusters), 'person', 'people')}" + ":" * bool(clusters))
    for number, cluster in enumerate(clusters, 1):
        name = cluster.get("Name")
        title = f"Person {number}" + (f" ({name})" if name else "")
        lines.append(f"  {title}: {_faces_in(cluster)}  [{cluster['ObjectId']}]")
        lines += _listed([f"      {f['URI']}" for f in cluster["Figures"]], "      ")
    left_out = report["unclustered"]
    if left_out:
        lines.append(f"{count_of(len(left_out), 'face')} left out:")
        lines += _left_out(left_out)
    lines += _file_problems(report)
    lines += _state_and_next(report, run)
    state = shlex.quote(str(run.state))
    lines.append(f"  find someone in another photo: openimm search PHOTO --data {state}")
    if clusters:
        body = {
            "ProjectName": run.project,
            "DatasetName": run.dataset,
            "FigureCluster": {"ObjectId": clusters[0]["ObjectId"], "Name": "Ann"},
        }
        request = shlex.quote(json.dumps(body, separators=(",", ":")))
        lines.append(
            "  name a person (with openimm serve running): curl -s "
            f"localhost:8080/UpdateFigureCluster -d {request}"
        )
    lines.append(
        f"  see, name and correct the people in a browser: openimm serve --data {state}, "
        f"then open {gallery_url(run.project, run.dataset)}"
    )
    return lines


def gallery_url(project: str, dataset: str, base: str = "http://127.0.0.1:8080") -> str:
    """The address of the people page of one dataset on a default `openimm serve`."""
    return f"{base}/?{urllib.parse.urlencode({'project': project, 'dataset': dataset})}"


def similar_summary(report: dict[str, Any], run: RunContext) -> list[str]:
    """The lines that tell which photos a similar-images run grouped and what to do next."""
    lines = _opening(report, run)
    clusters = report["clusters"]
    lines.append(
        f"Found {count_of(len(clusters), 'group')} of similar photos"
        + " (best shot first):" * bool(clusters)
    )
    for cluster in clusters:
        lines.append(f"  {count_of(len(cluster['Files']), 'photo')}  [{cluster['ObjectId']}]")
        lines += _listed(
            [f"      {f.get('ImageScore', 0):.3f}  {f['URI']}" for f in cluster["Files"]], "      "
        )
    lines += _file_problems(report)
    lines += _state_and_next(report, run)
    return lines


def _opening(report: dict[str, Any], run: RunContext) -> list[str]:
    return [
        f"Looked at {count_of(run.files, 'file')} in {run.folder} "
        f"(read in place as oss://{run.bucket}/).",
        task_outcome(report["task"]),
    ]


def task_outcome(task: dict[str, Any], noun: str = "task") -> str:
    """`The task T succeeded.`, or failed (with its Code and Message), or had not ended."""
    name = f"The {noun} {task['TaskId']}"
    if task.get("Status") == "Succeeded":
        return f"{name} succeeded."
    if task.get("Status") == "Failed":
        cause = ": ".join(str(task[k]) for k in ("Code", "Message") if task.get(k))
        return f"{name} failed" + (f" ({cause})." if cause else ".")
    return f"{name} had not ended when the wait (--timeout) ran out."


def _left_out(figures: list[dict[str, Any]]) -> list[str]:
    """Per reason in words, the files of the faces left out for it (faces counted)."""
    by_reason: dict[str, dict[str, int]] = {}
    for figure in figures:
        files = by_reason.setdefault(figure["FigureClusterId"], {})
        files[figure["URI"]] = files.get(figure["URI"], 0) + 1
    lines: list[str] = []
    for reason, files in by_reason.items():
        words = LEFT_OUT_BECAUSE.get(reason, reason)
        lines.append(f"  {count_of(sum(files.values()), 'face')}: {words}")
        lines += _listed(
            [
                f"      {uri}" + (f" ({count_of(faces, 'face')})" if faces > 1 else "")
                for uri, faces in files.items()
            ],
            "      ",
        )
    return lines


def _faces_in(cluster: dict[str, Any]) -> str:
    places = [count_of(cluster.get("ImageCount", 0), "photo")]
    if cluster.get("VideoCount"):
        places.append(count_of(cluster["VideoCount"], "video"))
    return f"{count_of(cluster.get('FaceCount', 0), 'face')} in {' and '.join(places)}"


def _file_problems(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    failed = report.get("failed_files", [])
    if failed:
        lines.append(f"{count_of(len(failed), 'file')} could not be analysed:")
        lines += _listed([f"  {f['URI']}: {f['Reason']}" for f in failed])
    skipped = report.get("skipped_files", [])
    if skipped:
        lines.append(f"{count_of(len(skipped), 'file')} skipped:")
        lines += _listed([f"  {f['Path']}: {f['Reason']}" for f in skipped])
    waiting = report.get("unanalysed_files", [])
    if waiting:
        lines.append(
            f"{count_of(len(waiting), 'file')} not analysed yet (the task ended before them; "
            "the next run analyses them):"
        )
        lines += _listed([f"  {f['URI']}" for f in waiting])
    return lines


def _state_and_next(report: dict[str, Any], run: RunContext) -> list[str]:
    state = shlex.quote(str(run.state))
    lines = [
        f"The state is in {run.state} (table.db, queue.db, notifications.jsonl).",
        "Next:",
    ]
    folder = shlex.quote(str(run.folder))
    if report["task"].get("Status") != "Succeeded":
        # the task's Message says what to fix; the same state carries on from there
        lines.append(f"  once that is fixed, run again: openimm run {folder} --data {state}")
    if report.get("failed_files"):
        lines.append(
            f"  try the failed files again: openimm run {folder} --retry-failed --data {state}"
        )
    lines.append(f"  use IMM's API over HTTP: openimm serve --data {state}")
    return lines


def _listed(lines: list[str], indent: str = "  ") -> list[str]:
    if len(lines) <= LIST_LIMIT:
        return lines
    rest = len(lines) - LIST_LIMIT
    return [*lines[:LIST_LIMIT], f"{indent}... and {rest} more (--json lists them all)"]
