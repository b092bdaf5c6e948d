"""The operations: validated request -> service call -> IMM-shaped response.

This is the only place where contract models meet the services; the services know
nothing of pydantic, the models nothing of storage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from openimm.access.gate import PLATFORM, AccessGate, Caller
from openimm.access.signatures import HttpRequest
from openimm.api import requests as rq
from openimm.api import responses as rs
from openimm.api.accesses import accesses
from openimm.api.base import parse_time
from openimm.api.inline_analyses import INLINE_OPERATIONS, InlineAnalyses
from openimm.api.parse import parse_request
from openimm.domain.catalog import Catalog
from openimm.domain.cluster_edits import ClusterEdits
from openimm.domain.cluster_search import ImageFigureSearch
from openimm.domain.clusters import FigureClusters, public
from openimm.domain.entities import Task, TaskType
from openimm.domain.figures import FigureBook
from openimm.domain.image_faces import ImageFaces
from openimm.domain.left_out import left_out_reason
from openimm.domain.similar_clusters import SimilarImageClusters
from openimm.domain.tasks import TaskBook
from openimm.errors import (
    Forbidden,
    InvalidArgument,
    InvalidOperation,
    MissingParameter,
    ResourceNotFound,
)
from openimm.pipeline.stages import Pipeline
from openimm.ports import InvalidUri, Queue, parse_blob_uri

log = logging.getLogger(__name__)

Operation = Callable[[Any, str], BaseModel]


def _event_id() -> str:
    return f"{uuid.uuid4().hex[:3].upper()}-{uuid.uuid4().hex}"


class Application:
    """What a deployed OpenIMM does: IMM operations, stage messages, upload events."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        figures: FigureBook,
        tasks: TaskBook,
        clusters: FigureClusters,
        pipeline: Pipeline,
        queue: Queue,
        edits: ClusterEdits,
        search: ImageFigureSearch,
        similar: SimilarImageClusters,
        image_faces: ImageFaces,
        trigger: tuple[str | None, str | None] = (None, None),
        gate: AccessGate | None = None,
        work_bucket: str | None = None,
        max_deliveries: int = 5,
        inline: InlineAnalyses | None = None,
    ) -> None:
        self.catalog = catalog
        # a stage message failing on this delivery is given up on (see give_up)
        self.max_deliveries = max_deliveries
        self.figures = figures
        self.tasks = tasks
        self.clusters = clusters
        self.pipeline = pipeline
        self.edits = edits
        self.search = search
        self.similar = similar
        self.image_faces = image_faces
        self.inline = inline or InlineAnalyses()
        self.queue = queue
        self._trigger = trigger
        self.gate = gate
        self._work_bucket = work_bucket
        self._operations: dict[str, tuple[type[BaseModel], Operation]] = {
            "CreateProject": (rq.CreateProjectRequest, self.create_project),
            "CreateDataset": (rq.CreateDatasetRequest, self.create_dataset),
            "IndexFileMeta": (rq.IndexFileMetaRequest, self.index_file_meta),
            "BatchIndexFileMeta": (rq.BatchIndexFileMetaRequest, self.batch_index_file_meta),
            "DeleteFileMeta": (rq.DeleteFileMetaRequest, self.delete_file_meta),
            "GetFileMeta": (rq.GetFileMetaRequest, self.get_file_meta),
            "UpdateFileMeta": (rq.UpdateFileMetaRequest, self.update_file_meta),
            "CreateFigureClusteringTask": (
                rq.CreateFigureClusteringTaskRequest,
                self.create_figure_clustering_task,
            ),
            "GetFigureCluster": (rq.GetFigureClusterRequest, self.get_figure_cluster),
            "BatchGetFigureCluster": (
                rq.BatchGetFigureClusterRequest,
                self.batch_get_figure_cluster,
            ),
            "QueryFigureClusters": (rq.QueryFigureClustersRequest, self.query_figure_clusters),
            "UpdateFigureCluster": (rq.UpdateFigureClusterRequest, self.update_figure_cluster),
            "CreateFigureClustersMergingTask": (
                rq.CreateFigureClustersMergingTaskRequest,
                self.create_figure_clusters_merging_task,
            ),
            "SearchImageFigureCluster": (
                rq.SearchImageFigureClusterRequest,
                self.search_image_figure_cluster,
            ),
            "CreateSimilarImageClusteringTask": (
                rq.CreateSimilarImageClusteringTaskRequest,
                self.create_similar_image_clustering_task,
            ),
            "QuerySimilarImageClusters": (
                rq.QuerySimilarImageClustersRequest,
                self.query_similar_image_clusters,
            ),
            "CreateFacesSearchingTask": (
                rq.CreateFacesSearchingTaskRequest,
                self.create_faces_searching_task,
            ),
            "DetectImageFaces": (rq.DetectImageFacesRequest, self.detect_image_faces),
            "CompareImageFaces": (rq.CompareImageFacesRequest, self.compare_image_faces),
            "GetTask": (rq.GetTaskRequest, self.get_task),
            "ListTasks": (rq.ListTasksRequest, self.list_tasks),
            "SimpleQuery": (rq.SimpleQueryRequest, self.simple_query),
            "ListDatasets": (rq.ListDatasetsRequest, self.list_datasets),
        }

    @property
    def work_bucket(self) -> str | None:
        """OpenIMM's own bucket, which no request may name."""
        return self._work_bucket

    @property
    def operations(self) -> list[str]:
        return sorted(self._operations)

    # ------------------------------------------------------------ entry points

    def call(
        self,
        operation: str,
        body: dict[str, Any],
        request_id: str,
        http: HttpRequest | None = None,
    ) -> dict[str, Any]:
        """Run one operation for the sender of `http` (None: a trusted direct call)."""
        caller = self.gate.admit(http) if self.gate is not None else PLATFORM
        entry = self._operations.get(operation)
        if entry is None:
            raise InvalidOperation(f"The operation {operation!r} is not supported.")
        model, run = entry
        request = parse_request(model, body)
        if caller is not PLATFORM:
            self._authorise(caller, operation, request)
        if operation in INLINE_OPERATIONS:
            with self.inline.slot(operation):
                response = run(request, request_id)
        else:
            response = run(request, request_id)
        return response.model_dump(by_alias=True, exclude_none=True, mode="json")

    def _authorise(self, caller: Caller, operation: str, request: BaseModel) -> None:
        """Refuse a request naming the work bucket, or a project or bucket not granted."""
        touched = accesses(operation, request)
        for access in touched:
            if access.kind == "bucket" and access.name == self._work_bucket:
                raise Forbidden(
                    f"The bucket {access.name!r} is OpenIMM's own work bucket; "
                    "requests may not name it."
                )
        caller.check(touched)

    def run_stage(self, stage: str, body: dict[str, Any]) -> None:
        """Process one stage message (raising asks for redelivery)."""
        self.pipeline.run_stage(stage, body)

    def give_up(self, stage: str, body: dict[str, Any], reason: str) -> None:
        """A stage message went to the dead letters."""
        self.pipeline.give_up(stage, body, reason)

    def object_created(self, uri: str, *, size: int | None, etag: str | None) -> None:
        """An upload trigger: index the object into the bound dataset."""
        project, dataset = self._trigger
        if not project or not dataset:
            log.warning("upload of %s ignored: no trigger dataset configured", uri)
            return
        oss_uri = uri.replace("s3://", "oss://", 1) if uri.startswith("s3://") else uri
        row = self.catalog.index_file(project, dataset, {"URI": oss_uri})
        self.pipeline.file_indexed(project, dataset, row)

    # ------------------------------------------------------------ projects, datasets

    def create_project(self, r: rq.CreateProjectRequest, _: str) -> rs.CreateProjectResponse:
        attrs = {
            "Description": r.description,
            "ServiceRole": r.service_role,
            "TemplateId": r.template_id,
        }
        row = self.catalog.create_project(r.project_name, _present(attrs))
        return rs.CreateProjectResponse(project=rs.Project.model_validate(row))

    def create_dataset(self, r: rq.CreateDatasetRequest, _: str) -> rs.CreateDatasetResponse:
        attrs = {"Description": r.description, "TemplateId": r.template_id}
        row = self.catalog.create_dataset(r.project_name, r.dataset_name, _present(attrs))
        self.figures.start_index(r.project_name, r.dataset_name)
        return rs.CreateDatasetResponse(dataset=rs.Dataset.model_validate(row))

    def list_datasets(self, r: rq.ListDatasetsRequest, _: str) -> rs.ListDatasetsResponse:
        prefix = r.prefix or ""
        names = sorted(n for n in self.catalog.datasets(r.project_name) if n.startswith(prefix))
        page, next_token = _page(names, r)
        rows = [self.catalog.dataset(r.project_name, name) for name in page]
        return rs.ListDatasetsResponse(
            datasets=[rs.Dataset.model_validate(row) for row in rows], next_token=next_token
        )

    # ------------------------------------------------------------ files

    def index_file_meta(self, r: rq.IndexFileMetaRequest, _: str) -> rs.IndexFileMetaResponse:
        self._index(r.project_name, r.dataset_name, {"File": r.file})
        return rs.IndexFileMetaResponse(event_id=_event_id())

    def batch_index_file_meta(
        self, r: rq.BatchIndexFileMetaRequest, _: str
    ) -> rs.BatchIndexFileMetaResponse:
        files = {f"Files.{number}": given for number, given in enumerate(r.files, start=1)}
        self._index(r.project_name, r.dataset_name, files)
        return rs.BatchIndexFileMetaResponse(event_id=_event_id())

    def _index(self, project: str, dataset: str, files: dict[str, rq.InputFile]) -> None:
        """Index files keyed by their parameter (File, Files.2) in the reply's errors."""
        self.catalog.dataset(project, dataset)
        for parameter, given in files.items():
            _check_uri(given.uri, f"{parameter}.URI")
        # every file is checked before any row is written: a bad batch changes nothing
        for parameter, given in files.items():
            try:
                self.catalog.stat(given.uri, f"{parameter}.URI")
            except ResourceNotFound as exc:
                raise ResourceNotFound(f"{parameter}.URI: {exc.message}") from None
        for given in files.values():
            fields = given.model_dump(by_alias=True, exclude_none=True, exclude={"figures"})
            row = self.catalog.index_file(project, dataset, fields)
            self.pipeline.file_indexed(project, dataset, row)

    def delete_file_meta(self, r: rq.DeleteFileMetaRequest, _: str) -> rs.DeleteFileMetaResponse:
        row = self.catalog.remove_file(r.project_name, r.dataset_name, r.uri)
        clusters = self.figures.delete(r.project_name, r.dataset_name, row.get("_figures", []))
        self.clusters.recount(r.project_name, r.dataset_name, clusters)
        self.similar.file_removed(r.project_name, r.dataset_name, row)
        return rs.DeleteFileMetaResponse()

    def get_file_meta(self, r: rq.GetFileMetaRequest, _: str) -> rs.GetFileMetaResponse:
        row = self.catalog.file(r.project_name, r.dataset_name, r.uri)
        return rs.GetFileMetaResponse(files=[self._file(r.project_name, r.dataset_name, row)])

    def update_file_meta(self, r: rq.UpdateFileMetaRequest, _: str) -> rs.UpdateFileMetaResponse:
        project, dataset, given = r.project_name, r.dataset_name, r.file
        moves = _figure_moves(given.figures or [])
        fields = _present({"CustomId": given.custom_id, "CustomLabels": given.custom_labels})
        self.catalog.file(project, dataset, given.uri)
        if not moves:
            self.catalog.update_file(project, dataset, given.uri, fields)
            return rs.UpdateFileMetaResponse()
        # under the lease, so a clustering run cannot write its older view over the moves
        with self.pipeline.lease.held(project, dataset):
            self.edits.move_figures(project, dataset, given.uri, moves)
            self.catalog.update_file(project, dataset, given.uri, fields)
        return rs.UpdateFileMetaResponse()

    def _file(self, project: str, dataset: str, row: dict[str, Any]) -> rs.File:
        figures = self.figures.get_many(project, dataset, row.get("_figures", []))
        state = row.get("_state")
        return rs.File.model_validate(
            {
                **public(row),
                "Figures": [
                    {**public(f), "FigureClusterReason": left_out_reason(f)} for f in figures
                ],
                "ObjectStatus": {
                    "indexed": "pending",
                    "analysed": "succeeded",
                    "failed": "failed",
                }.get(str(state)),
                "Reason": row.get("_error"),
            }
        )

    # ------------------------------------------------------------ clustering

    def create_figure_clustering_task(
        self, r: rq.CreateFigureClusteringTaskRequest, request_id: str
    ) -> rs.CreateTaskResponse:
        return self._start_grouping(TaskType.FACE_CLUSTERING, r, request_id)

    def _start_grouping(
        self,
        task_type: str,
        r: rq.CreateFigureClusteringTaskRequest | rq.CreateSimilarImageClusteringTaskRequest,
        request_id: str,
    ) -> rs.CreateTaskResponse:
        task = self.pipeline.start_grouping(
            task_type,
            r.project_name,
            r.dataset_name,
            request_id=request_id,
            user_data=r.user_data,
            tags=dict(r.tags or {}),
            topic=_topic(r.notification),
        )
        return rs.CreateTaskResponse(task_id=task.task_id, event_id=_event_id())

    def create_figure_clusters_merging_task(
        self, r: rq.CreateFigureClustersMergingTaskRequest, request_id: str
    ) -> rs.CreateTaskResponse:
        if r.from_ is not None and r.froms is not None:
            raise InvalidArgument("The parameters From and Froms cannot both be set: use one.")
        if r.from_ is None and r.froms is None:
            raise MissingParameter("The parameter From or Froms is required.")
        sources = [r.from_] if r.from_ is not None else list(dict.fromkeys(r.froms or []))
        self.edits.check_merge(r.project_name, r.dataset_name, sources, r.to)
        topic = _topic(r.notification)
        task = self.pipeline.start_figure_clusters_merging(
            r.project_name,
            r.dataset_name,
            sources=sources,
            target=r.to,
            request_id=request_id,
            user_data=r.user_data,
            tags=dict(r.tags or {}),
            topic=topic,
        )
        return rs.CreateTaskResponse(task_id=task.task_id, event_id=_event_id())

    def update_figure_cluster(
        self, r: rq.UpdateFigureClusterRequest, _: str
    ) -> rs.UpdateFigureClusterResponse:
        given = r.figure_cluster
        fields = {
            "Name": given.name,
            "CustomId": given.custom_id,
            "CustomLabels": given.custom_labels,
        }
        self.edits.update_cluster(
            r.project_name,
            r.dataset_name,
            given.object_id,
            _present(fields),
            cover_figure=given.cover.figures[0].figure_id if given.cover else None,
            lock_version=given.meta_lock_version,
        )
        return rs.UpdateFigureClusterResponse()

    def search_image_figure_cluster(
        self, r: rq.SearchImageFigureClusterRequest, _: str
    ) -> rs.SearchImageFigureClusterResponse:
        self.catalog.dataset(r.project_name, r.dataset_name)
        self._check_source(r.source_uri, "SourceURI")
        found = self.search.search(r.project_name, r.dataset_name, r.source_uri)
        return rs.SearchImageFigureClusterResponse(
            clusters=[
                rs.ClusterOfFace(
                    cluster_id=match.cluster_id,
                    similarity=match.similarity,
                    boundary=rs.Boundary(
                        left=match.box.left,
                        top=match.box.top,
                        width=match.box.width,
                        height=match.box.height,
                    ),
                )
                for match in found
            ]
        )

    # ------------------------------------------------------------ faces of images

    def create_faces_searching_task(
        self, r: rq.CreateFacesSearchingTaskRequest, request_id: str
    ) -> rs.CreateTaskResponse:
        self.catalog.dataset(r.project_name, r.dataset_name)
        uris = [source.uri for source in r.sources]
        for number, uri in enumerate(uris, start=1):
            _check_uri(uri, f"Sources.{number}.URI")
        # a source that does not exist (or whose bucket does not) fails the request; one
        # that is no image or shows no face is reported in the task's result
        for number, uri in enumerate(uris, start=1):
            self.catalog.stat(uri, f"Sources.{number}.URI")
        notification = r.notification
        task = self.pipeline.start_faces_searching(
            r.project_name,
            r.dataset_name,
            sources=uris,
            max_result=r.max_result,
            request_id=request_id,
            user_data=r.user_data,
            topic=_topic(notification),
            extended_message_uri=notification.extended_message_uri if notification else None,
        )
        return rs.CreateTaskResponse(task_id=task.task_id, event_id=_event_id())

    def detect_image_faces(
        self, r: rq.DetectImageFacesRequest, _: str
    ) -> rs.DetectImageFacesResponse:
        self.catalog.project(r.project_name)
        self._check_source(r.source_uri, "SourceURI")
        faces = self.image_faces.detect(r.project_name, r.source_uri)
        return rs.DetectImageFacesResponse(faces=[rs.Face.model_validate(f) for f in faces])

    def compare_image_faces(
        self, r: rq.CompareImageFacesRequest, _: str
    ) -> rs.CompareImageFacesResponse:
        self.catalog.project(r.project_name)
        self._check_source(r.source.uri1, "Source.URI1")
        self._check_source(r.source.uri2, "Source.URI2")
        similarity = self.image_faces.compare(r.project_name, r.source.uri1, r.source.uri2)
        return rs.CompareImageFacesResponse(similarity=similarity)

    def _check_source(self, uri: str, parameter: str) -> None:
        """An image the request names exists: the errors name its parameter."""
        _check_uri(uri, parameter)
        self.catalog.stat(uri, parameter)

    def get_figure_cluster(
        self, r: rq.GetFigureClusterRequest, _: str
    ) -> rs.GetFigureClusterResponse:
        row = self.clusters.get(r.project_name, r.dataset_name, r.object_id)
        return rs.GetFigureClusterResponse(figure_cluster=rs.FigureCluster.model_validate(row))

    def batch_get_figure_cluster(
        self, r: rq.BatchGetFigureClusterRequest, _: str
    ) -> rs.BatchGetFigureClusterResponse:
        rows = self.clusters.get_many(r.project_name, r.dataset_name, list(r.object_ids))
        return rs.BatchGetFigureClusterResponse(
            figure_clusters=[rs.FigureCluster.model_validate(row) for row in rows]
        )

    def query_figure_clusters(
        self, r: rq.QueryFigureClustersRequest, _: str
    ) -> rs.QueryFigureClustersResponse:
        rows = self.clusters.all(r.project_name, r.dataset_name)
        rows = [row for row in rows if _cluster_matches(row, r)]
        sort_key = r.sort or "ObjectId"
        rows.sort(
            key=lambda row: (_sortable(row.get(sort_key)), row["ObjectId"]),
            reverse=r.order == "desc",
        )
        page, next_token = _page(rows, r)
        return rs.QueryFigureClustersResponse(
            figure_clusters=[rs.FigureCluster.model_validate(row) for row in page],
            next_token=next_token,
            total_count=len(rows) if r.with_total_count else None,
        )

    def simple_query(self, r: rq.SimpleQueryRequest, _: str) -> rs.SimpleQueryResponse:
        self.catalog.dataset(r.project_name, r.dataset_name)
        uris = self.figures.cluster_files(r.project_name, r.dataset_name, r.query.value)
        page, next_token = _page(uris, r)
        project, dataset = r.project_name, r.dataset_name
        rows = [self.catalog.file(project, dataset, uri) for uri in page]
        files = [self._file(project, dataset, row) for row in rows]
        return rs.SimpleQueryResponse(files=files, next_token=next_token)

    # ------------------------------------------------------------ similar-image clusters

    def create_similar_image_clustering_task(
        self, r: rq.CreateSimilarImageClusteringTaskRequest, request_id: str
    ) -> rs.CreateTaskResponse:
        return self._start_grouping(TaskType.SIMILAR_IMAGE_CLUSTERING, r, request_id)

    def query_similar_image_clusters(
        self, r: rq.QuerySimilarImageClustersRequest, _: str
    ) -> rs.QuerySimilarImageClustersResponse:
        rows = self.similar.all(r.project_name, r.dataset_name)
        rows = [row for row in rows if _labels_match(row, r.custom_labels)]
        rows.sort(
            key=lambda row: (_sortable(row.get(r.sort)), row["ObjectId"]),
            reverse=r.order == "desc",
        )
        page, next_token = _page(rows, r)
        return rs.QuerySimilarImageClustersResponse(
            similar_image_clusters=[rs.SimilarImageCluster.model_validate(row) for row in page],
            next_token=next_token,
        )

    # ------------------------------------------------------------ tasks

    def get_task(self, r: rq.GetTaskRequest, _: str) -> rs.GetTaskResponse:
        task = self.tasks.get(r.project_name, r.task_id)
        if task.task_type != r.task_type:
            raise ResourceNotFound(
                f"The task {r.task_id!r} of type {r.task_type!r} does not exist."
            )
        return rs.GetTaskResponse.model_validate(
            {**_task_info(task), **task.result, "ProjectName": task.project}
        )

    def list_tasks(self, r: rq.ListTasksRequest, _: str) -> rs.ListTasksResponse:
        self.catalog.project(r.project_name)
        tasks = [t for t in self.tasks.list(r.project_name) if _task_matches(t, r)]
        key: dict[str, Callable[[Task], Any]] = {
            "TaskId": lambda t: t.task_id,
            "StartTime": lambda t: t.start_time,
            "EndTime": lambda t: t.end_time or 0.0,
        }
        tasks.sort(key=key[r.sort], reverse=r.order == "desc")
        page, next_token = _page(tasks, r)
        return rs.ListTasksResponse(
            project_name=r.project_name,
            next_token=next_token,
            max_results=str(len(page)),
            tasks=[rs.TaskInfo.model_validate(_task_info(t)) for t in page],
        )


# ---------------------------------------------------------------- mapping


def _present(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if v is not None}


def _topic(notification: rq.Notification | None) -> str | None:
    """The MNS topic a task's notification goes to, if the request named one."""
    return notification.mns.topic_name if notification and notification.mns else None


def _check_uri(uri: str, parameter: str) -> None:
    try:
        parse_blob_uri(uri)
    except InvalidUri as exc:
        raise InvalidArgument(f"The parameter {parameter} is invalid: {exc}") from None


def _figure_moves(figures: list[rq.InputFigure]) -> dict[str, str]:
    """FigureId -> FigureClusterId of UpdateFileMeta's Figures; each entry needs both."""
    moves: dict[str, str] = {}
    for number, figure in enumerate(figures, start=1):
        figure_id, cluster_id = figure.figure_id, figure.figure_cluster_id
        if not figure_id:
            raise MissingParameter(f"The parameter File.Figures.{number}.FigureId is required.")
        if not cluster_id:
            raise MissingParameter(
                f"The parameter File.Figures.{number}.FigureClusterId is required."
            )
        if figure_id in moves:
            raise InvalidArgument(
                f"The parameter File.Figures.{number}.FigureId repeats {figure_id!r}."
            )
        moves[figure_id] = cluster_id
    return moves


def _task_info(task: Task) -> dict[str, Any]:
    return {
        "TaskId": task.task_id,
        "TaskType": task.task_type,
        "Status": task.status,
        "Code": task.code,
        "Message": task.message,
        "StartTime": task.start_time,
        "EndTime": task.end_time,
        "Progress": task.progress,
        "UserData": task.user_data,
        "Tags": task.tags or None,
    }


def _task_matches(task: Task, r: rq.ListTasksRequest) -> bool:
    if r.task_types and task.task_type not in r.task_types:
        return False
    if r.status and task.status != r.status:
        return False
    if r.tag_selector:
        wanted = dict(p.split("=", 1) for p in r.tag_selector.split(",") if "=" in p)
        if any(task.tags.get(k) != v for k, v in wanted.items()):
            return False
    return _in_range(task.start_time, r.start_time_range) and (
        r.end_time_range is None
        or (task.end_time is not None and _in_range(task.end_time, r.end_time_range))
    )


def _labels_match(row: dict[str, Any], expression: str | None) -> bool:
    """IMM's CustomLabels filter: `key=value` pairs joined by commas, all must hold."""
    if not expression:
        return True
    labels = row.get("CustomLabels") or {}
    wanted = dict(p.split("=", 1) for p in expression.split(",") if "=" in p)
    return all(labels.get(k.strip()) == v.strip() for k, v in wanted.items())


def _cluster_matches(row: dict[str, Any], r: rq.QueryFigureClustersRequest) -> bool:
    if not _labels_match(row, r.custom_labels):
        return False
    return _in_range(row.get("CreateTime"), r.create_time_range) and _in_range(
        row.get("UpdateTime"), r.update_time_range
    )


def _in_range(value: Any, time_range: rq.TimeRange | None) -> bool:
    if time_range is None:
        return True
    if not isinstance(value, (int, float)):
        return False
    if time_range.start and value < parse_time(time_range.start):
        return False
    return not (time_range.end and value > parse_time(time_range.end))


def _sortable(value: Any) -> tuple[int, Any]:
    # None sorts first; numbers and strings never compare with each other
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value))


T = TypeVar("T")


class _Paged(Protocol):
    next_token: str | None
    max_results: int

    def model_dump_json(self, *, exclude: set[str]) -> str: ...


def _page(items: list[T], request: _Paged) -> tuple[list[T], str | None]:
    """One page of a sorted list and the NextToken of the rest (None on the last page).

    A token holds its offset and a digest of the request it continues, so that one
    taken from another listing (another dataset, filter or order) is refused instead
    of paging through something else.
    """
    scope = hashlib.sha256(
        request.model_dump_json(exclude={"next_token", "max_results"}).encode()
    ).hexdigest()[:16]
    start = _decode_token(request.next_token, scope)
    size = request.max_results
    more = start + size < len(items)
    return items[start : start + size], _encode_token(start + size, scope) if more else None


def _encode_token(offset: int, scope: str) -> str:
    text = json.dumps({"o": offset, "s": scope}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode()


def _decode_token(token: str | None, scope: str) -> int:
    if not token:
        return 0
    try:
        fields = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        fields = None
    if not isinstance(fields, dict) or set(fields) != {"o", "s"}:
        raise InvalidArgument("The parameter NextToken is invalid.")
    offset = fields["o"]
    # bool is an int to Python, and no offset
    if type(offset) is not int or offset < 0:
        raise InvalidArgument("The parameter NextToken is invalid.")
    if fields["s"] != scope:
        raise InvalidArgument(
            "The parameter NextToken belongs to another listing: pass the same "
            "parameters as the request that returned it."
        )
    return offset
