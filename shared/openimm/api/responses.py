"""Objects and response bodies, as IMM spells them (the wire layer adds RequestId)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from openimm.api.base import ImmModel, Time

__all__ = [
    "BatchGetFigureClusterResponse",
    "BatchIndexFileMetaResponse",
    "Boundary",
    "ClusterOfFace",
    "CompareImageFacesResponse",
    "CreateDatasetResponse",
    "CreateProjectResponse",
    "CreateTaskResponse",
    "Dataset",
    "DeleteFileMetaResponse",
    "DetectImageFacesResponse",
    "Face",
    "Figure",
    "FigureCluster",
    "File",
    "GetFigureClusterResponse",
    "GetFileMetaResponse",
    "GetTaskResponse",
    "HeadPose",
    "ImageScore",
    "IndexFileMetaResponse",
    "ListDatasetsResponse",
    "ListTasksResponse",
    "Project",
    "QueryFigureClustersResponse",
    "QuerySimilarImageClustersResponse",
    "SearchImageFigureClusterResponse",
    "SimilarImage",
    "SimilarImageCluster",
    "SimpleQueryResponse",
    "TaskInfo",
    "UpdateFigureClusterResponse",
    "UpdateFileMetaResponse",
]


# ------------------------------------------------------------------ objects


class Project(ImmModel):
    """A project."""

    project_name: str
    description: str | None = None
    service_role: str | None = None
    template_id: str | None = None
    create_time: Time | None = None
    update_time: Time | None = None
    dataset_count: int | None = None
    file_count: int | None = None
    total_file_size: int | None = None


class Dataset(ImmModel):
    """A dataset inside a project."""

    project_name: str
    dataset_name: str
    description: str | None = None
    template_id: str | None = None
    create_time: Time | None = None
    update_time: Time | None = None
    file_count: int | None = None
    total_file_size: int | None = None
    bind_count: int | None = None


class Boundary(ImmModel):
    """A face box in pixels of the upright image."""

    left: int | None = None
    top: int | None = None
    width: int | None = None
    height: int | None = None


class HeadPose(ImmModel):
    """Head orientation in degrees."""

    pitch: float | None = None
    roll: float | None = None
    yaw: float | None = None


class Face(ImmModel):
    """A face as detected and measured; attributes no model measured stay absent."""

    figure_type: str = "face"
    figure_confidence: float | None = None
    boundary: Boundary | None = None
    age: int | None = None
    age_sd: float | None = None
    gender: str | None = None
    gender_confidence: float | None = None
    emotion: str | None = None
    emotion_confidence: float | None = None
    face_quality: float | None = None
    sharpness: float | None = None
    attractive: float | None = None
    head_pose: HeadPose | None = None
    mouth: str | None = None
    mouth_confidence: float | None = None
    beard: str | None = None
    beard_confidence: float | None = None
    hat: str | None = None
    hat_confidence: float | None = None
    mask: str | None = None
    mask_confidence: float | None = None
    glasses: str | None = None
    glasses_confidence: float | None = None


class ImageScore(ImmModel):
    """How good a photo is as a shot, 0..1 (vision/image_score.py)."""

    overall_quality_score: float | None = None


class Figure(Face):
    """One face on an indexed file, and its cluster."""

    figure_id: str
    figure_cluster_id: str | None = None
    figure_cluster_confidence: float | None = None
    # OpenIMM's, not IMM's: why a face in no cluster is left out, in words
    figure_cluster_reason: str | None = None


class File(ImmModel):
    """A file's metadata as indexed in a dataset."""

    owner_id: str | None = None
    project_name: str | None = None
    dataset_name: str | None = None
    object_type: str = "file"
    object_id: str | None = None
    create_time: Time | None = None
    update_time: Time | None = None
    uri: str
    oss_uri: str | None = None
    filename: str | None = None
    media_type: str | None = None
    content_type: str | None = None
    size: int | None = None
    file_hash: str | None = None
    etag: str | None = None
    file_modified_time: Time | None = None
    produce_time: str | None = None
    title: str | None = None
    image_width: int | None = None
    image_height: int | None = None
    orientation: int | None = None
    exif: str | None = None
    figures: list[Figure] | None = None
    figure_count: int | None = None
    image_score: ImageScore | None = None
    custom_id: str | None = None
    custom_labels: dict[str, str] | None = None
    object_status: str | None = None
    reason: str | None = None


class FigureCluster(ImmModel):
    """A group of faces of one person."""

    owner_id: str | None = None
    project_name: str | None = None
    dataset_name: str | None = None
    object_type: str = "figure-cluster"
    object_id: str
    create_time: Time | None = None
    update_time: Time | None = None
    name: str | None = None
    custom_id: str | None = None
    custom_labels: dict[str, str] | None = None
    gender: str | None = None
    face_count: int | None = None
    image_count: int | None = None
    video_count: int | None = None
    average_age: float | None = None
    min_age: float | None = None
    max_age: float | None = None
    cover: File | None = None
    base_images: list[File] | None = None
    meta_lock_version: int | None = None


class SimilarImage(ImmModel):
    """A photo of a similar-image cluster and its ImageScore (OverallQualityScore)."""

    uri: str
    image_score: float | None = None


class SimilarImageCluster(ImmModel):
    """Near-duplicate or burst photos; Files are best shot first."""

    object_id: str
    create_time: Time | None = None
    update_time: Time | None = None
    custom_labels: dict[str, str] | None = None
    files: list[SimilarImage] = Field(default_factory=list)


class ClusterOfFace(ImmModel):
    """A face of a searched image and the figure cluster it belongs to."""

    cluster_id: str
    # 0..1; see domain/cluster_search.py for how it follows from the cosine
    similarity: float
    boundary: Boundary


class TaskInfo(ImmModel):
    """An asynchronous task as GetTask and ListTasks show it."""

    task_id: str
    task_type: str
    status: str
    code: str | None = None
    message: str | None = None
    start_time: Time | None = None
    end_time: Time | None = None
    progress: int | None = None
    user_data: str | None = None
    tags: dict[str, str] | None = None
    # The creating request as JSON text, only when RequestDefinition was asked for.
    task_request_definition: str | None = None


# ------------------------------------------------------------------ response bodies


def _as_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class CreateProjectResponse(ImmModel):
    """CreateProject."""

    project: Project


class ListDatasetsResponse(ImmModel):
    """ListDatasets."""

    datasets: list[Dataset] = Field(default_factory=list)
    next_token: str | None = None


class CreateDatasetResponse(ImmModel):
    """CreateDataset."""

    dataset: Dataset


class IndexFileMetaResponse(ImmModel):
    """IndexFileMeta."""

    event_id: str | None = None


class BatchIndexFileMetaResponse(ImmModel):
    """BatchIndexFileMeta."""

    event_id: str | None = None


class DeleteFileMetaResponse(ImmModel):
    """DeleteFileMeta: nothing but the RequestId."""


class UpdateFileMetaResponse(ImmModel):
    """UpdateFileMeta: nothing but the RequestId."""


class GetFileMetaResponse(ImmModel):
    """GetFileMeta."""

    files: list[File] = Field(default_factory=list)


class CreateTaskResponse(ImmModel):
    """Every Create*Task operation."""

    task_id: str
    event_id: str | None = None


class GetFigureClusterResponse(ImmModel):
    """GetFigureCluster."""

    figure_cluster: FigureCluster


class BatchGetFigureClusterResponse(ImmModel):
    """BatchGetFigureCluster."""

    figure_clusters: list[FigureCluster] = Field(default_factory=list)


class UpdateFigureClusterResponse(ImmModel):
    """UpdateFigureCluster: nothing but the RequestId."""


class SearchImageFigureClusterResponse(ImmModel):
    """SearchImageFigureCluster; a face with no matching cluster is left out."""

    clusters: list[ClusterOfFace] = Field(default_factory=list)


class QueryFigureClustersResponse(ImmModel):
    """QueryFigureClusters; TotalCount only when WithTotalCount was asked for."""

    figure_clusters: list[FigureCluster] = Field(default_factory=list)
    next_token: str | None = None
    total_count: int | None = None


class QuerySimilarImageClustersResponse(ImmModel):
    """QuerySimilarImageClusters."""

    similar_image_clusters: list[SimilarImageCluster] = Field(default_factory=list)
    next_token: str | None = None


class GetTaskResponse(TaskInfo):
    """GetTask; Result and ExtendedMessageURI (not in IMM) carry what the task found."""

    project_name: str | None = None
    event_id: str | None = None
    result: dict[str, Any] | None = None
    extended_message_uri: str | None = None


class DetectImageFacesResponse(ImmModel):
    """DetectImageFaces: the faces of the image, largest first."""

    faces: list[Face] = Field(default_factory=list)


class CompareImageFacesResponse(ImmModel):
    """CompareImageFaces; see grouping/face_similarity.py for what Similarity means."""

    similarity: float


class SimpleQueryResponse(ImmModel):
    """SimpleQuery: one page of files, each with all its faces."""

    files: list[File] = Field(default_factory=list)
    next_token: str | None = None


class ListTasksResponse(ImmModel):
    """ListTasks; IMM sends MaxResults back as text (the number of tasks returned)."""

    project_name: str | None = None
    next_token: str | None = None
    max_results: Annotated[str, BeforeValidator(_as_text)] | None = None
    tasks: list[TaskInfo] = Field(default_factory=list)
