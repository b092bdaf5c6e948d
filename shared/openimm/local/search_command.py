"""`openimm search IMAGE...`: CreateFacesSearchingTask over an indexed dataset, from local files.

The images are copied into the work bucket of the state directory (content-addressed),
so that whichever process runs the stage workers of that directory can read them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from openimm.api.limits import MAX_BATCH
from openimm.api.wire import error_body, new_request_id
from openimm.bootstrap import Settings
from openimm.errors import ImmError, InvalidArgument
from openimm.local.exit_status import ExitStatus, exit_status_of
from openimm.local.run_progress import follow_task
from openimm.local.run_summary import count_of, task_outcome
from openimm.local.runtime import LocalRuntime
from openimm.ports import BlobStore

# CreateFacesSearchingTask's limit on Sources
MAX_SOURCES = MAX_BATCH


def search_images(settings: Settings, args: argparse.Namespace) -> int:
    """Run the search and print, per image, the faces found; the exit status."""
    images: list[Path] = args.images
    missing = [str(path) for path in images if not path.is_file()]
    if missing:
        print(f"openimm: not a file: {', '.join(missing)}", file=sys.stderr)
        return ExitStatus.USAGE
    with LocalRuntime(settings, threads=1) as runtime:
        # False: `openimm serve` on this directory runs the stage, which is as good
        runtime.start_workers()
        app = runtime.app
        blobs = runtime.parts.blobs
        try:
            dataset = args.dataset or _only_dataset(app.catalog.datasets(args.project))
            uris = [_upload(blobs, settings.work_bucket, path) for path in images]
            # IMM takes at most MAX_SOURCES per task: create them all, then wait for each
            task_ids = [
                app.call(
                    "CreateFacesSearchingTask",
                    {
                        "ProjectName": args.project,
                        "DatasetName": dataset,
                        "Sources": [{"URI": uri} for uri in uris[start : start + MAX_SOURCES]],
                        "MaxResult": args.max_result,
                    },
                    new_request_id(),
                )["TaskId"]
                for start in range(0, len(uris), MAX_SOURCES)
            ]
            # --timeout bounds the whole search, however many tasks it takes
            deadline = time.monotonic() + args.timeout
            tasks = [
                _finished(app, args.project, dataset, task_id, deadline) for task_id in task_ids
            ]
        except ImmError as exc:
            print(json.dumps(error_body(exc, "local")), file=sys.stderr)
            return ExitStatus.TASK_FAILED
        results = [_result(blobs, task) for task in tasks]
    local = dict(zip(uris, images, strict=True))
    sources = [
        {"Image": str(local.get(s["URI"], s["URI"])), **s}
        for result in results
        for s in result.get("Sources", [])
    ]
    report: dict[str, Any] = {"task": _merged(tasks), "sources": sources}
    if len(tasks) > 1:
        report["tasks"] = [_without_result(task) for task in tasks]
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_human(report)
    # an image with no face or that cannot be read counts as a failed file, as in `run`
    unanswered = sum("Code" in source for source in sources)
    return exit_status_of(report["task"], failed_files=unanswered)


def _finished(
    app: Any, project: str, dataset: str, task_id: str, deadline: float
) -> dict[str, Any]:
    timeout = max(0.0, deadline - time.monotonic())
    follow_task(app, project, dataset, task_id, timeout=timeout, show=False)
    task: dict[str, Any] = app.call(
        "GetTask",
        {"ProjectName": project, "TaskType": "FacesSearching", "TaskId": task_id},
        new_request_id(),
    )
    return task


def _result(blobs: BlobStore, task: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] | None = task.get("Result")
    if result is None and task.get("ExtendedMessageURI"):
        result = json.loads(blobs.read(task["ExtendedMessageURI"]))["Result"]
    return result or {}


def _without_result(task: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in task.items() if k != "Result"}


def _merged(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """One task's fields, or for several the first failed (else the last) one's."""
    failed = [task for task in tasks if task.get("Status") != "Succeeded"]
    return _without_result(failed[0] if failed else tasks[-1])


def _only_dataset(names: list[str]) -> str:
    if len(names) != 1:
        raise InvalidArgument(
            f"The project has {len(names)} datasets ({', '.join(names) or 'none'}): "
            "name one with --dataset."
        )
    return names[0]


def _upload(blobs: BlobStore, bucket: str, path: Path) -> str:
    data = path.read_bytes()
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.name).strip("-.") or "image"
    uri = f"oss://{bucket}/queries/{hashlib.sha256(data).hexdigest()[:16]}/{name}"
    blobs.write(uri, data)
    return uri


def _print_human(report: dict[str, Any]) -> None:
    tasks = report.get("tasks") or [report["task"]]
    for task in tasks:
        print(task_outcome(task, "search"))
    for source in report["sources"]:
        if "Code" in source:
            print(f"{source['Image']}: not searched ({source['Code']}: {source['Message']})")
            continue
        figures = source["Figures"]
        print(f"{source['Image']}: {count_of(len(figures), 'face')} found, nearest first")
        for figure in figures:
            box = figure["Boundary"]
            print(
                f"  {figure['Similarity']:.4f}  {figure['URI']}  "
                f"{box['Width']}x{box['Height']}+{box['Left']}+{box['Top']}  {figure['FigureId']}"
            )
