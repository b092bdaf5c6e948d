"""The composition root: builds every part from configuration (the environment).

Nothing else creates adapters or models; functions call `application()` once per
warm instance, the local command line calls `build()` with its own settings.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from openimm.access.gate import AccessGate
from openimm.access.keyring import Keyring, keyring_from_env
from openimm.access.nonces import TableNonces
from openimm.adapters.local import FolderBlobStore, JsonlTopic, SqliteQueue, SqliteTableStore
from openimm.api.inline_analyses import DEFAULT_MAX_INLINE_ANALYSES, InlineAnalyses
from openimm.api.operations import Application
from openimm.domain.analysis import AnalysisLimits, FaceAnalysis
from openimm.domain.catalog import Catalog
from openimm.domain.cluster_edits import ClusterEdits
from openimm.domain.cluster_search import ImageFigureSearch
from openimm.domain.clusters import FigureClusters
from openimm.domain.face_search import DatasetFaces, FacesSearch
from openimm.domain.face_shard import FaceShards
from openimm.domain.figures import FigureBook
from openimm.domain.image_faces import FaceReader, ImageFaces
from openimm.domain.index_snapshots import IndexSnapshots
from openimm.domain.shots import ShotIndex
from openimm.domain.similar_clusters import SimilarImageClusters
from openimm.domain.tasks import TaskBook
from openimm.grouping.face_index import EXACT_LIMIT, FaceIndex
from openimm.grouping.face_similarity import SIMILARITY_BY_EMBEDDER, SimilarityScale
from openimm.grouping.figure_clustering import ClusteringConfig
from openimm.grouping.similar_images import GroupingConfig
from openimm.pipeline.outages import Outage
from openimm.pipeline.stages import Pipeline, PipelineSettings
from openimm.pipeline.task_results import MESSAGE_LIMIT, TaskResults
from openimm.ports import BlobStore, Queue, TableStore, Topic
from openimm.vision import FaceAnalyser
from openimm.vision.shot_analysis import ShotAnalyser
from openimm.vision.types import FaceAttributeEstimator, FaceDetector, FaceEmbedder
from openimm.vision.video import VideoInfo
from openimm.vision.video_faces import VideoFigure, analyse_video

BACKENDS = ("local", "aliyun", "aws")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, read from OPENIMM_* environment variables."""

    # where the tables, objects, queues and topics live: local | aliyun | aws
    backend: str = "local"
    data_dir: Path = Path("openimm-data")
    owner_id: str = "local"
    region: str = "local"
    work_bucket: str = "openimm-work"
    default_topic: str | None = "openimm-tasks"
    webhook_url: str | None = None
    trigger_project: str | None = None
    trigger_dataset: str | None = None
    detector: str = "retinaface"
    embedder: str = "fused"
    small_faces: str = "1"
    # cosine thresholds of clustering; None: the embedder's own (clustering_config)
    join_similarity: float | None = None
    seed_similarity: float | None = None
    attributes: tuple[str, ...] = ("age-gender", "emotion")
    video_every_seconds: float = 1.0
    video_max_frames: int = 300
    # measure photos for similar-image clusters while analysing them
    similar_images: bool = True
    mounts: dict[str, Path] = field(default_factory=dict)
    # JSON bytes of a task result above which it goes to an object (ExtendedMessageURI)
    message_limit: int = MESSAGE_LIMIT
    # faces of a dataset up to which a search scans them all (grouping/face_index.py)
    face_exact_limit: int = EXACT_LIMIT
    # None: no access keys; HTTP callers are then trusted only if `trust_unsigned_http`
    keyring: Keyring | None = None
    # on one machine `serve` binds loopback without keys; a cloud HTTP trigger is public
    trust_unsigned_http: bool = True
    # deliveries of a failing stage message before it is given up on (file failed, task
    # ended); a deployment's queues dead-letter after the same count
    max_deliveries: int = 5
    # DetectImageFaces, CompareImageFaces, SearchImageFigureCluster at once per process
    max_inline_analyses: int = DEFAULT_MAX_INLINE_ANALYSES
    # the gallery's face crops and thumbnails kept on disk; the least recently used go
    thumbnail_cache_mb: int = 512

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Settings from the environment (defaults suit one machine)."""
        env = dict(os.environ if env is None else env)
        backend = env.get("OPENIMM_BACKEND", "local").strip().lower() or "local"
        if backend not in BACKENDS:
            raise ValueError(
                f"OPENIMM_BACKEND must be one of {', '.join(BACKENDS)}, not {backend!r}"
            )
        return cls(
            backend=backend,
            data_dir=Path(env.get("OPENIMM_DATA", "openimm-data")),
            owner_id=env.get("OPENIMM_OWNER_ID", "local"),
            region=env.get("OPENIMM_REGION", "local"),
            work_bucket=env.get("OPENIMM_WORK_BUCKET", "openimm-work"),
            default_topic=env.get("OPENIMM_DEFAULT_TOPIC", "openimm-tasks") or None,
            webhook_url=env.get("OPENIMM_WEBHOOK_URL") or None,
            trigger_project=env.get("OPENIMM_TRIGGER_PROJECT") or None,
            trigger_dataset=env.get("OPENIMM_TRIGGER_DATASET") or None,
            detector=env.get("OPENIMM_DETECTOR", "retinaface"),
            embedder=env.get("OPENIMM_EMBEDDER", "fused"),
            join_similarity=_optional_float(env.get("OPENIMM_JOIN_SIMILARITY")),
            seed_similarity=_optional_float(env.get("OPENIMM_SEED_SIMILARITY")),
            small_faces=env.get("OPENIMM_SMALL_FACES", "1"),
            attributes=tuple(
                name.strip()
                for name in env.get("OPENIMM_ATTRIBUTES", "age-gender,emotion").split(",")
                if name.strip()
            ),
            video_every_seconds=float(env.get("OPENIMM_VIDEO_EVERY_SECONDS", "1.0")),
            video_max_frames=int(env.get("OPENIMM_VIDEO_MAX_FRAMES", "300")),
            similar_images=_flag(env.get("OPENIMM_SIMILAR_IMAGES", "1")),
            keyring=keyring_from_env(env),
            trust_unsigned_http=_flag(
                env.get("OPENIMM_TRUST_UNSIGNED_HTTP", "0" if _on_a_cloud(env) else "1")
            ),
            max_deliveries=_positive_int(
                "OPENIMM_MAX_DELIVERIES", env.get("OPENIMM_MAX_DELIVERIES", "5")
            ),
            max_inline_analyses=_positive_int(
                "OPENIMM_MAX_INLINE_ANALYSES",
                env.get("OPENIMM_MAX_INLINE_ANALYSES", str(DEFAULT_MAX_INLINE_ANALYSES)),
            ),
            thumbnail_cache_mb=_positive_int(
                "OPENIMM_THUMBNAIL_CACHE_MB", env.get("OPENIMM_THUMBNAIL_CACHE_MB", "512")
            ),
        )


@dataclass
class Parts:
    """The adapters an application runs on (tests inject their own)."""

    table: TableStore
    blobs: BlobStore
    queue: Queue
    topic: Topic
    detector: FaceDetector
    embedder: FaceEmbedder
    attributes: FaceAttributeEstimator | None = None
    # None: photos are not measured for similar-image clusters
    shots: ShotAnalyser | None = None
    # called when storage fails (full, read-only), before the failure is recorded
    on_storage_outage: Callable[[], object] | None = None


# Clustering thresholds of the built-in embedders (bench/cluster_quality.py). The strict
# join and seed thresholds are the ones with the best BCubed F at BCubed precision >= 0.99
# on lfw-dev (7171 faces, 2954 people; --sweep); they sit near 1e-5 false accepts per
# pair, since a face meets thousands of strangers in a large library. The relaxed join
# (figure_clustering.joins._join_standing_out) then recovers the same person's harder photos
# where nobody else is near, as in a family album. BCubed P / R / F of one run, lfw-dev
# and celeb5 (118 in-the-wild photos of 5 people):
#   fused   0.994 / 0.877 / 0.932   1.000 / 0.968 / 0.984   (strict only: celeb5 R 0.632)
#           (lfw-dev in 5 runs: 0.991 / 0.880 / 0.932; FaceNet is no longer flip-averaged,
#           vision/fused_embedder.py: with it, join 0.88 gave 0.995 / 0.874 / 0.931)
#   dlib    0.994 / 0.786 / 0.878   1.000 / 0.910 / 0.953   (lfw-dev in 5 runs: R 0.856)
#   FaceNet 0.990 / 0.831 / 0.903   strict only: its relaxed join fell below P 0.99
#           (FaceNet measured before the runner-up margin and the re-examination's merges)
# confidence_scale: a third of the way from the lowest joining cosine to the 5% quantile
# of correct members' cosines to their cluster's mean (FigureClusterConfidence 0.95 there)
# The seed that stands apart (fused only; figure_clustering.seeding._seed_apart) is for small
# albums, where 3-5 photos of a person often miss 0.88: on cluster_quality's albums from
# lfw-dev, persons with 3 seed-eligible photos that got a cluster went, alone / among
# 3 / 10 / 50 persons, from 46/60, 44/60, 43/60, 76/100 to 59, 57, 53, 79, with no
# group of two people among the 107 it seeded there; at margin 0.04 two of 145 were,
# and lfw-dev in 5 runs seeded one at 0.02. On lfw-dev and the synthetic 100k library
# it seeds nothing, so their figures stay as they were (floor 0.72 did as 0.75); nor in
# the 1M one, where it is not tried (above 100k faces: figure_clustering.seeding._APART_FACES).
CLUSTERING_BY_EMBEDDER = {
    "dlib": ClusteringConfig(
        join_similarity=0.95,
        seed_similarity=0.95,
        relaxed_join_similarity=0.92,
        join_margin=0.03,
        runner_up_margin=0.01,
        confidence_scale=0.013,
    ),
    "fused": ClusteringConfig(
        join_similarity=0.875,
        seed_similarity=0.88,
        relaxed_join_similarity=0.82,
        join_margin=0.05,
        runner_up_margin=0.03,
        confidence_scale=0.03,
        merge_similarity=0.875,
        cohesion_similarity=0.94,
        apart_seed_similarity=0.75,
        apart_seed_margin=0.06,
    ),
    "facenet": ClusteringConfig(join_similarity=0.63, seed_similarity=0.63, confidence_scale=0.045),
}


def clustering_config(settings: Settings) -> ClusteringConfig:
    """The clustering thresholds for the configured embedder, with the settings' overrides.

    A bring-your-own embedder (arcface:PATH, sface:PATH) has no calibrated thresholds
    here: set OPENIMM_JOIN_SIMILARITY and OPENIMM_SEED_SIMILARITY for it.
    """
    kind = settings.embedder.partition(":")[0].strip().lower()
    base = CLUSTERING_BY_EMBEDDER.get(kind, ClusteringConfig())
    join = settings.join_similarity or base.join_similarity
    relaxed = base.relaxed_join_similarity
    return replace(
        base,
        join_similarity=join,
        seed_similarity=settings.seed_similarity or base.seed_similarity,
        # the relaxed join is measured for the built-in threshold; never above a lower one
        relaxed_join_similarity=None if relaxed is None else min(relaxed, join),
        # measured against the built-in seed threshold: a chosen one is followed instead
        merge_similarity=None if settings.seed_similarity else base.merge_similarity,
    )


def similarity_scale(settings: Settings, config: ClusteringConfig) -> SimilarityScale:
    """Cosine -> Similarity of the configured embedder (grouping/face_similarity.py).

    A bring-your-own embedder has no fitted scale: 0.5 at its join threshold, as
    FigureClusterConfidence is, with the clustering's confidence width.
    """
    kind = settings.embedder.partition(":")[0].strip().lower()
    fitted = SIMILARITY_BY_EMBEDDER.get(kind)
    if fitted is not None and settings.join_similarity is None:
        return fitted
    return SimilarityScale.centred(config.join_similarity, config.confidence_scale)


def _optional_float(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def _positive_int(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {text!r}")
    return value


def _on_a_cloud(env: dict[str, str]) -> bool:
    # set by the runtimes themselves: FC 3.0 and Lambda
    return bool(env.get("FC_FUNCTION_NAME") or env.get("AWS_LAMBDA_FUNCTION_NAME"))


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a yes/no setting: {text!r}")


@dataclass(frozen=True)
class Stores:
    """Where the state lives: items, objects, stage messages and notifications."""

    table: TableStore
    blobs: BlobStore
    queue: Queue
    topic: Topic


def stores(settings: Settings) -> Stores:
    """The stores of the configured backend; the cloud SDKs are imported only for theirs."""
    if settings.backend == "aws":
        from openimm.adapters.aws.stores import AwsSettings, aws_stores

        aws = aws_stores(AwsSettings.from_env())
        return Stores(aws.table, aws.blobs, aws.queue, aws.topic)
    if settings.backend == "aliyun":
        from openimm.adapters.aliyun.stores import AliyunSettings, aliyun_stores

        aliyun = aliyun_stores(AliyunSettings.from_env())
        return Stores(aliyun.table, aliyun.blobs, aliyun.queue, aliyun.topic)
    from openimm.local.mount_book import remembered_mounts

    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    # the folders earlier runs read in place, so that serve shows their photos too
    mounts = {**remembered_mounts(data), **settings.mounts}
    return Stores(
        table=SqliteTableStore(data / "table.db"),
        blobs=FolderBlobStore(data / "buckets", mounts=mounts),
        queue=SqliteQueue(data / "queue.db"),
        topic=JsonlTopic(data / "notifications.jsonl", webhook_url=settings.webhook_url),
    )


def configured_parts(settings: Settings) -> Parts:
    """The configured backend's stores (SQLite, folders and a JSONL topic by default) and
    the real models."""
    from openimm.vision.attributes import attribute_estimator
    from openimm.vision.byo_models import (
        detector_from_config,
        embedder_from_config,
        small_faces_from_config,
    )

    state = stores(settings)
    return Parts(
        table=state.table,
        blobs=state.blobs,
        queue=state.queue,
        topic=state.topic,
        detector=detector_from_config(
            settings.detector, small_faces=small_faces_from_config(settings.small_faces)
        ),
        embedder=embedder_from_config(settings.embedder),
        attributes=attribute_estimator(settings.attributes) if settings.attributes else None,
        shots=ShotAnalyser() if settings.similar_images else None,
    )


def build(settings: Settings, parts: Parts | None = None) -> Application:
    """Wire services onto adapters."""
    parts = parts or configured_parts(settings)
    catalog = Catalog(parts.table, parts.blobs, settings.owner_id)
    figures = FigureBook(parts.table)
    tasks = TaskBook(parts.table)
    limits = AnalysisLimits()
    work_prefix = f"oss://{settings.work_bucket}"
    shots = ShotIndex(parts.blobs, parts.shots, work_prefix) if parts.shots else None

    def video(path: Path) -> tuple[VideoInfo, list[VideoFigure]]:
        return analyse_video(
            path,
            parts.detector,
            parts.embedder,
            every_seconds=settings.video_every_seconds,
            max_frames=settings.video_max_frames,
            max_pixels=limits.max_pixels,
            attributes=parts.attributes,
        )

    analysis = FaceAnalysis(
        catalog,
        figures,
        parts.blobs,
        parts.detector,
        parts.embedder,
        work_prefix=work_prefix,
        limits=limits,
        attributes=parts.attributes,
        video=video,
        shots=shots,
    )
    shards = FaceShards(parts.table, parts.blobs, figures, work_prefix, parts.embedder.name)
    clusters = FigureClusters(
        parts.table,
        catalog,
        figures,
        clustering_config(settings),
        model=parts.embedder.name,
        shards=shards,
    )
    edits = ClusterEdits(parts.table, catalog, figures, clusters)
    similar = SimilarImageClusters(
        parts.table,
        catalog,
        shots,
        GroupingConfig(),
        model=parts.shots.model if parts.shots else None,
    )
    reader = FaceReader(
        catalog,
        FaceAnalyser(parts.detector, parts.embedder, limits.max_pixels),
        max_bytes=limits.max_file_bytes,
    )
    scale = similarity_scale(settings, clusters.config)
    faces_search = FacesSearch(
        reader,
        figures,
        DatasetFaces(
            figures,
            parts.embedder.name,
            functools.partial(FaceIndex, exact_limit=settings.face_exact_limit),
            shards=shards,
            snapshots=IndexSnapshots(parts.blobs, work_prefix, parts.embedder.name),
        ),
        scale,
    )
    pipeline = Pipeline(
        parts.table,
        parts.queue,
        parts.topic,
        catalog,
        tasks,
        analysis,
        clusters,
        PipelineSettings(region=settings.region, default_topic=settings.default_topic),
        edits=edits,
        similar=similar if shots is not None else None,
        faces=faces_search,
        results=TaskResults(
            parts.blobs, f"oss://{settings.work_bucket}", limit=settings.message_limit
        ),
        on_outage=_storage_hook(parts),
    )
    return Application(
        catalog=catalog,
        figures=figures,
        tasks=tasks,
        clusters=clusters,
        pipeline=pipeline,
        queue=parts.queue,
        edits=edits,
        similar=similar,
        search=ImageFigureSearch(catalog, figures, reader, clusters.config),
        image_faces=ImageFaces(catalog, reader, scale, parts.attributes),
        trigger=(settings.trigger_project, settings.trigger_dataset),
        gate=AccessGate(
            settings.keyring,
            TableNonces(parts.table),
            trust_unsigned=settings.trust_unsigned_http,
        ),
        work_bucket=settings.work_bucket,
        max_deliveries=settings.max_deliveries,
        inline=InlineAnalyses(settings.max_inline_analyses),
    )


def _storage_hook(parts: Parts) -> Callable[[Outage], object] | None:
    hook = parts.on_storage_outage
    if hook is None:
        return None

    def on_outage(outage: Outage) -> object:
        return hook() if outage.code == "StorageUnavailable" else None

    return on_outage


_lock = threading.Lock()
_instance: Application | None = None


def application() -> Application:
    """The warm instance's application, built on first use."""
    global _instance
    with _lock:
        if _instance is None:
            _instance = build(Settings.from_env())
        return _instance
