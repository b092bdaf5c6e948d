"""Request models of the IMM 2020-09-30 operations OpenIMM serves."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from openimm.api.base import (
    CUSTOM_ERROR,
    Count,
    Id,
    JsonDecoded,
    Name,
    OssUri,
    RequestModel,
    RequestTime,
    StringMap,
    Text,
    TopicName,
    UserData,
    parse_time,
)
from openimm.api.limits import DESCRIPTION_MAX_CHARS, MAX_BATCH, SOURCES_MAX_JSON_BYTES

__all__ = [
    "MNS",
    "BatchGetFigureClusterRequest",
    "BatchIndexFileMetaRequest",
    "CompareImageFacesRequest",
    "CompareSource",
    "CreateDatasetRequest",
    "CreateFacesSearchingTaskRequest",
    "CreateFigureClusteringTaskRequest",
    "CreateFigureClustersMergingTaskRequest",
    "CreateProjectRequest",
    "CreateSimilarImageClusteringTaskRequest",
    "DeleteFileMetaRequest",
    "DetectImageFacesRequest",
    "FigureClusterCover",
    "GetFigureClusterRequest",
    "GetFileMetaRequest",
    "GetTaskRequest",
    "IndexFileMetaRequest",
    "InputFigure",
    "InputFigureCluster",
    "InputFile",
    "ListDatasetsRequest",
    "ListTasksRequest",
    "Notification",
    "QueryFigureClustersRequest",
    "QuerySimilarImageClustersRequest",
    "RocketMQ",
    "SearchImageFigureClusterRequest",
    "SimpleQuery",
    "SimpleQueryRequest",
    "Source",
    "TimeRange",
    "UpdateFigureClusterRequest",
    "UpdateFileMetaRequest",
]

FigureClusterSort = Literal[
    "ImageCount",
    "VideoCount",
    "ProjectName",
    "DatasetName",
    "CreateTime",
    "UpdateTime",
    "Gender",
    "FaceCount",
    "Name",
]
SimilarImageClusterSort = Literal["CreateTime", "UpdateTime"]
TaskSort = Literal["TaskId", "StartTime", "EndTime"]
TaskStatusName = Literal["Running", "Succeeded", "Failed"]


def _lower(value: Any) -> Any:
    # SDK samples write the order both as `asc` and `ASC`.
    return value.lower() if isinstance(value, str) else value


Order = Annotated[Literal["asc", "desc"], BeforeValidator(_lower)]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX_CHARS)]


# ------------------------------------------------------------------ shared parts


class MNS(RequestModel):
    """Notify through an MNS (SMQ) topic."""

    topic_name: TopicName
    # Not in IMM: lets a self-hosted deployment name the topic's endpoint explicitly.
    endpoint: Text | None = None


class RocketMQ(RequestModel):
    """Notify through an ApsaraMQ for RocketMQ topic."""

    instance_id: Id
    topic_name: Id


class Notification(RequestModel):
    """Where the task's completion message goes."""

    mns: Annotated[MNS, JsonDecoded] | None = None
    rocket_mq: Annotated[RocketMQ, JsonDecoded] | None = None
    extended_message_uri: OssUri | None = None


class TimeRange(RequestModel):
    """A closed time interval; either end may be left open."""

    start: RequestTime | None = None
    end: RequestTime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start and self.end and parse_time(self.start) > parse_time(self.end):
            raise PydanticCustomError(CUSTOM_ERROR, "must have Start no later than End")
        return self


class _DatasetRequest(RequestModel):
    project_name: Name
    dataset_name: Name


class _TaskRequest(_DatasetRequest):
    user_data: UserData | None = None
    notification: Annotated[Notification, JsonDecoded] | None = None


# ------------------------------------------------------------------ projects and datasets


class CreateProjectRequest(RequestModel):
    """CreateProject."""

    project_name: Name
    description: Description | None = None
    service_role: Text | None = None
    template_id: Text | None = None


class CreateDatasetRequest(_DatasetRequest):
    """CreateDataset."""

    description: Description | None = None
    template_id: Text | None = None


# ------------------------------------------------------------------ file metadata


class InputFigure(RequestModel):
    """A figure the client already knows on a file it indexes."""

    figure_id: Id | None = None
    figure_cluster_id: Id | None = None
    figure_type: Text | None = None


class InputFile(RequestModel):
    """A file to index, with the user's own fields."""

    uri: OssUri
    custom_id: Text | None = None
    custom_labels: StringMap | None = None
    media_type: Text | None = None
    content_type: Text | None = None
    file_hash: Text | None = None
    title: Text | None = None
    figures: Annotated[list[InputFigure], JsonDecoded] | None = None


class IndexFileMetaRequest(_DatasetRequest):
    """IndexFileMeta."""

    file: Annotated[InputFile, JsonDecoded]
    user_data: UserData | None = None
    notification: Annotated[Notification, JsonDecoded] | None = None


class BatchIndexFileMetaRequest(_DatasetRequest):
    """BatchIndexFileMeta."""

    files: Annotated[list[InputFile], JsonDecoded, Field(min_length=1, max_length=MAX_BATCH)]
    user_data: UserData | None = None
    notification: Annotated[Notification, JsonDecoded] | None = None


class DeleteFileMetaRequest(_DatasetRequest):
    """DeleteFileMeta."""

    uri: OssUri


class GetFileMetaRequest(_DatasetRequest):
    """GetFileMeta."""

    uri: OssUri


class UpdateFileMetaRequest(_DatasetRequest):
    """UpdateFileMeta: CustomId, CustomLabels and the clusters of Figures change."""

    file: Annotated[InputFile, JsonDecoded]


# ------------------------------------------------------------------ tasks that group or search


class CreateFigureClusteringTaskRequest(_TaskRequest):
    """CreateFigureClusteringTask."""

    tags: StringMap | None = None


class CreateFigureClustersMergingTaskRequest(_TaskRequest):
    """CreateFigureClustersMergingTask: the faces of From (or of every Froms) go to To.

    That exactly one of From and Froms is set is checked by the operation: its error
    names both parameters, which a field check here could not.
    """

    from_: Id | None = None
    froms: Annotated[list[Id], JsonDecoded, Field(min_length=1, max_length=MAX_BATCH)] | None = None
    to: Id
    tags: StringMap | None = None


class CreateSimilarImageClusteringTaskRequest(_TaskRequest):
    """CreateSimilarImageClusteringTask."""

    tags: StringMap | None = None


class Source(RequestModel):
    """A query image of CreateFacesSearchingTask."""

    uri: OssUri


FACES_SEARCHING_DEFAULT = 5


class CreateFacesSearchingTaskRequest(_TaskRequest):
    """CreateFacesSearchingTask (IMM takes no Tags here)."""

    # IMM marks Sources optional, but a search without a query image has nothing to do.
    sources: Annotated[list[Source], JsonDecoded, Field(min_length=1, max_length=MAX_BATCH)]
    max_result: Annotated[Count, Field(ge=0, le=100)] = FACES_SEARCHING_DEFAULT

    @field_validator("max_result")
    @classmethod
    def _default_when_zero(cls, value: int) -> int:
        # 0 means "not set", as with IMM's other count parameters.
        return value or FACES_SEARCHING_DEFAULT

    @field_validator("sources")
    @classmethod
    def _fit_one_message(cls, value: list[Source]) -> list[Source]:
        # the task's URIs travel in one queue message, JSON-escaped as the queue sends them
        if len(json.dumps([source.uri for source in value])) > SOURCES_MAX_JSON_BYTES:
            raise PydanticCustomError(
                CUSTOM_ERROR,
                f"must have URIs of at most {SOURCES_MAX_JSON_BYTES} bytes together "
                "(as JSON text with non-ASCII characters escaped)",
            )
        return value


# ------------------------------------------------------------------ figure clusters


class GetFigureClusterRequest(_DatasetRequest):
    """GetFigureCluster."""

    object_id: Id


class BatchGetFigureClusterRequest(_DatasetRequest):
    """BatchGetFigureCluster."""

    object_ids: Annotated[list[Id], JsonDecoded, Field(min_length=1, max_length=MAX_BATCH)]


class CoverFigure(RequestModel):
    """The face chosen as a cluster's cover."""

    figure_id: Id


class FigureClusterCover(RequestModel):
    """A cluster's cover as UpdateFigureCluster takes it: the first figure is the cover face."""

    figures: Annotated[list[CoverFigure], JsonDecoded, Field(min_length=1)]


class InputFigureCluster(RequestModel):
    """IMM's FigureClusterForReq: which cluster, its lock version and the user's fields."""

    object_id: Id
    # the version read by Get/Query; the update happens only if it is still current
    meta_lock_version: Annotated[int, Field(ge=0)] | None = None
    name: Text | None = None
    custom_id: Text | None = None
    custom_labels: StringMap | None = None
    cover: Annotated[FigureClusterCover, JsonDecoded] | None = None


class UpdateFigureClusterRequest(_DatasetRequest):
    """UpdateFigureCluster."""

    figure_cluster: Annotated[InputFigureCluster, JsonDecoded]


class SearchImageFigureClusterRequest(_DatasetRequest):
    """SearchImageFigureCluster (CredentialConfig, for other accounts' buckets, is ignored)."""

    source_uri: OssUri


# ------------------------------------------------------------------ faces of one image


class DetectImageFacesRequest(RequestModel):
    """DetectImageFaces (CredentialConfig, for other accounts' buckets, is ignored)."""

    project_name: Name
    source_uri: OssUri


class CompareSource(RequestModel):
    """The two images of CompareImageFaces."""

    uri1: Annotated[OssUri, Field(alias="URI1")]
    uri2: Annotated[OssUri, Field(alias="URI2")]


class CompareImageFacesRequest(RequestModel):
    """CompareImageFaces: the similarity of the largest faces of two images."""

    project_name: Name
    source: Annotated[CompareSource, JsonDecoded]


class _Paging(RequestModel):
    """A listing, a page at a time."""

    max_results: Annotated[Count, Field(ge=0, le=100)] = 100
    next_token: Text | None = None

    @field_validator("max_results")
    @classmethod
    def _default_when_zero(cls, value: int) -> int:
        # IMM documents 0 (like leaving it out) as "the default, 100".
        return value or 100


class _PagedRequest(_DatasetRequest, _Paging):
    """A listing of a dataset, a page at a time."""


class ListDatasetsRequest(_Paging):
    """ListDatasets: a project's datasets in name order, those starting with Prefix."""

    project_name: Name
    prefix: Text | None = None
    max_results: Annotated[Count, Field(ge=0, le=200)] = 100


class _ClusterQuery(_PagedRequest):
    """What the Query*Clusters operations share: a label filter and paging."""

    # IMM's filter expression (`key=value`), not a map.
    custom_labels: Text | None = None


class QueryFigureClustersRequest(_ClusterQuery):
    """QueryFigureClusters; without Sort, clusters come in ObjectId order."""

    create_time_range: Annotated[TimeRange, JsonDecoded] | None = None
    update_time_range: Annotated[TimeRange, JsonDecoded] | None = None
    sort: FigureClusterSort | None = None
    order: Order = "asc"
    with_total_count: bool = False


class SimpleQuery(RequestModel):
    """SimpleQuery's Query: OpenIMM answers one field, the faces' cluster, compared equal
    (the question a person's page asks: which files show this person)."""

    field: Literal["Figures.FigureClusterId"]
    operation: Literal["eq"]
    value: Annotated[str, Field(min_length=1, max_length=128)]


class SimpleQueryRequest(_PagedRequest):
    """SimpleQuery: the files whose faces are in one figure cluster, in URI order."""

    query: Annotated[SimpleQuery, JsonDecoded]


# ------------------------------------------------------------------ similar-image clusters


class QuerySimilarImageClustersRequest(_ClusterQuery):
    """QuerySimilarImageClusters; newest first unless asked otherwise."""

    sort: SimilarImageClusterSort = "CreateTime"
    order: Order = "desc"


# ------------------------------------------------------------------ tasks


class GetTaskRequest(RequestModel):
    """GetTask."""

    project_name: Name
    task_type: Id
    task_id: Id
    request_definition: bool = False


class ListTasksRequest(RequestModel):
    """ListTasks."""

    project_name: Name
    task_types: Annotated[list[Id], JsonDecoded, Field(max_length=MAX_BATCH)] | None = None
    status: TaskStatusName | None = None
    start_time_range: Annotated[TimeRange, JsonDecoded] | None = None
    end_time_range: Annotated[TimeRange, JsonDecoded] | None = None
    max_results: Annotated[Count, Field(ge=1, le=100)] = 100
    next_token: Text | None = None
    sort: TaskSort = "TaskId"
    order: Order = "asc"
    # IMM's tag filter expression (`key=value`).
    tag_selector: Text | None = None
    request_definition: bool = False
