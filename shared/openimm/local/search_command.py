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
from pathlib import Path
from typing import Any

from openimm.api.wire import error_body, new_request_id
from openimm.bootstrap import Settings
from openimm.errors import ImmError, InvalidArgument
from openimm.local.cli import wait_for_task
from openimm.local.runtime import LocalRuntime
from openimm.ports import BlobStore


def search_images(settings: Settings, args: argparse.Namespace) -> int:
    """Run the search and print, per image, the faces found; the exit status."""
    images: list[Path] = args.images
    missing = [str(path) for path in images if not path.is_file()]
    if missing:
        print(f"openimm: not a file: {', '.join(missing)}", file=sys.stderr)
        return 2
    with LocalRuntime(settings, threads=1) as runtime:
        # False: `openimm serve` on this directory runs the stage, which is as good
        runtime.start_workers()
        app = runtime.app
        blobs = runtime.parts.blobs
        try:
            dataset = args.dataset or _only_dataset(app.catalog.datasets(args.project))
            uris = [_upload(blobs, settings.work_bucket, path) for path in images]
            created = app.call(
                "CreateFacesSearchingTask",
                {
                    "ProjectName": args.project,
                    "DatasetName": dataset,
                    "Sources": [{"URI": uri} for uri in uris],
                    "MaxResult": args.max_result,
                },
                new_request_id(),
            )
            task = wait_for_task(
                app.call, args.project, created["TaskId"], args.timeout, True, "FacesSearching"
            )
        except ImmError as exc:
            print(json.dumps(error_body(exc, "local")), file=sys.stderr)
            return 1
        result = task.get("Result")
        if result is None and task.get("ExtendedMessageURI"):
            result = json.loads(blobs.read(task["ExtendedMessageURI"]))["Result"]
    local = dict(zip(uris, images, strict=True))
    sources = [
        {"Image": str(local.get(s["URI"], s["URI"])), **s}
        for s in (result or {}).get("Sources", [])
    ]
    report = {"task": {k: v for k, v in task.items() if k != "Result"}, "sources": sources}
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_human(report)
    return 0 if task["Status"] == "Succeeded" else 1


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
    task = report["task"]
    print(f"task {task['TaskId']}: {task['Status']} {task.get('Code', '')}".rstrip())
    for source in report["sources"]:
        print(source["Image"])
        if "Code" in source:
            print(f"  {source['Code']}: {source['Message']}")
            continue
        for figure in source["Figures"]:
            box = figure["Boundary"]
            print(
                f"  {figure['Similarity']:.4f}  {figure['URI']}  "
                f"{box['Width']}x{box['Height']}+{box['Left']}+{box['Top']}  {figure['FigureId']}"
            )
