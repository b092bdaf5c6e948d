"""The stage chain: detect -> embed per file, fan-in, cluster per task, notify; search.

Messages are small JSON bodies on the queue named after the stage. Delivery is at
least once, so every step is keyed (figure ids, per-file task markers, a terminal
task status written once) and may run again without changing the outcome.

A clustering task over more new faces than one run places (domain/clusters.py
RUN_NEW_FACES) is a chain of cluster messages, one run each, its counts carried along.

The cluster stage also runs merges (CreateFigureClustersMergingTask): both change
memberships under the dataset lease, so a merge waits for a running clustering, is
retried like it, and its task stays Running until the merge has really happened.

The search stage runs a FacesSearching task whole (its sources are read, not indexed);
its result goes inline or, when large, to an object (pipeline/task_results.py). After
each face clustering task it also gets the dataset's name alone ({"index": ...}), to
build and save the dataset's search index ahead of the next search (domain/face_search.py).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from openimm.domain.analysis import DETECTED, FaceAnalysis
from openimm.domain.catalog import Catalog
from openimm.domain.cluster_edits import ClusterEdits
from openimm.domain.clusters import FACES_WAITING, FigureClusters
from openimm.domain.entities import FileState, Task, TaskStatus, TaskType
from openimm.domain.face_search import FacesSearch
from openimm.domain.similar_clusters import SimilarImageClusters
from openimm.domain.tasks import TaskBook, new_task_id
from openimm.errors import InvalidArgument, InvalidOperation, ResourceNotFound
from openimm.pipeline.file_turns import FileTurns
from openimm.pipeline.holders import is_gone, this_process
from openimm.pipeline.leases import DatasetBusy, DatasetLease
from openimm.pipeline.notification import task_envelope
from openimm.pipeline.outages import Outage, outage_of
from openimm.pipeline.task_results import TaskResults
from openimm.ports import ConditionFailed, ForeignObject, InvalidUri, Queue, TableStore, Topic

log = logging.getLogger(__name__)

STAGES = ("detect", "embed", "cluster", "search")
OUTAGE_LOG_INTERVAL_S = 60.0
# GetTask/ListTasks TaskType of CreateFigureClustersMergingTask
MERGING_TASK_TYPE = "FigureClustersMerging"
# TaskIds start with these (the similar-image one as IMM's own examples spell it)
_TASK_ID_PREFIX = {
    TaskType.FACE_CLUSTERING: "CreateFigureClusteringTask",
    TaskType.SIMILAR_IMAGE_CLUSTERING: "SimilarImageClustering",
}


@dataclass(frozen=True)
class _Origin:
    """Who asked for a task and where its notification goes."""

    request_id: str
    user_data: str | None
    tags: dict[str, str]
    topic: str | None


# on a cluster message: what the task's earlier clustering runs did (one run places at
# most RUN_NEW_FACES new faces; the rest wait for the next)
_PARTS = "parts"
# counts of one run that a task's runs add up to; the others describe the dataset after
_ADDED_UP = ("FacesChanged", "ClustersCreated", "ClustersMerged")
# conflicts one message may meet before a conflict counts as its failure
MAX_CONFLICTS = 10
# seconds a process that ended a task has to send its notification before another takes
# over (publishing takes milliseconds; a process killed in between takes forever)
NOTIFY_GRACE_S = 30.0
# seconds a file's message waits for another message of the same file in this process
# (a photo's analysis takes well under one; a long video's, minutes: then it comes back)
FILE_TURN_WAIT_S = 20.0


def _names_a_file(body: dict[str, Any]) -> bool:
    return all(isinstance(body.get(name), str) for name in _GIVE_UP_FIELDS["detect"])


def _subject(body: dict[str, Any]) -> str:
    return str(body.get("uri") or body.get("task_id") or "?")


@dataclass(frozen=True)
class PipelineSettings:
    region: str = "local"
    default_topic: str | None = None
    lease_seconds: float = 180.0
    busy_retry_seconds: float = 2.0


class Pipeline:
    """Starts tasks and runs the stage messages that carry them."""

    def __init__(
        self,
        table: TableStore,
        queue: Queue,
        topic: Topic,
        catalog: Catalog,
        tasks: TaskBook,
        analysis: FaceAnalysis,
        clusters: FigureClusters,
        settings: PipelineSettings | None = None,
        *,
        edits: ClusterEdits,
        similar: SimilarImageClusters | None = None,
        faces: FacesSearch | None = None,
        results: TaskResults | None = None,
        on_outage: Callable[[Outage], object] | None = None,
    ) -> None:
        self._table = table
        self._queue = queue
        self._topic = topic
        self._catalog = catalog
        self._tasks = tasks
        self._analysis = analysis
        self._clusters = clusters
        self._edits = edits
        self._similar = similar
        self._faces = faces
        self._results = results
        # told first when storage fails, e.g. to free the space kept back for recording it
        self._on_outage = on_outage
        self.settings = settings or PipelineSettings()
        self.lease = DatasetLease(table, self.settings.lease_seconds)
        self._outages_logged: dict[str, float] = {}
        self._file_turns = FileTurns()
        self._stages: dict[str, Callable[[dict[str, Any]], None]] = {
            "detect": partial(self._in_file_turn, "detect", self._detect),
            "embed": partial(self._in_file_turn, "embed", self._embed),
            "cluster": self._cluster,
            "search": self._search,
        }

    # ------------------------------------------------------------ entry points

    def file_indexed(self, project: str, dataset: str, row: dict[str, Any]) -> None:
        """Queue analysis of a newly indexed (or changed) file."""
        if row.get("_state") == FileState.INDEXED:
            self._send_file("detect", project, dataset, row, None)

    def retry_failed_files(self, project: str, dataset: str) -> int:
        """Files that failed analysis are analysed again by the next task; how many."""
        self._catalog.dataset(project, dataset)
        return self._analysis.retry_failed(project, dataset)

    def start_grouping(
        self,
        task_type: str,
        project: str,
        dataset: str,
        *,
        request_id: str,
        user_data: str | None,
        tags: dict[str, str],
        topic: str | None,
    ) -> Task:
        """Create a FaceClustering or SimilarImageClustering task and set it going.

        Files not analysed yet go through detect and embed first; the last of them (or,
        with none pending, the task itself) queues the cluster stage, which runs the task.
        """
        self._catalog.dataset(project, dataset)
        if task_type == TaskType.SIMILAR_IMAGE_CLUSTERING and self._similar is None:
            raise InvalidOperation(
                "Similar-image clustering is off in this deployment (OPENIMM_SIMILAR_IMAGES)."
            )
        rows = list(self._catalog.files(project, dataset))
        pending = [row for row in rows if row.get("_state") == FileState.INDEXED]
        # photos are measured for similar-image grouping only when a task of that kind
        # needs them: analysed ones that were not go through the detect stage for it
        shots = task_type == TaskType.SIMILAR_IMAGE_CLUSTERING
        if shots and self._similar is not None:
            pending += self._similar.unmeasured(rows)
        task = self._new_task(
            _TASK_ID_PREFIX[task_type],
            task_type,
            project,
            dataset,
            _Origin(request_id, user_data, tags, topic),
            total=len(pending),
        )
        for row in pending:
            self._send_file("detect", project, dataset, row, task.task_id, shots=shots)
        if not pending:
            self._queue.send("cluster", {"task_id": task.task_id})
        return task

    def start_figure_clusters_merging(
        self,
        project: str,
        dataset: str,
        *,
        sources: list[str],
        target: str,
        request_id: str,
        user_data: str | None,
        tags: dict[str, str],
        topic: str | None,
    ) -> Task:
        """Create the merge task and queue it on the cluster stage (checked by the caller)."""
        task = self._new_task(
            "CreateFigureClustersMergingTask",
            MERGING_TASK_TYPE,
            project,
            dataset,
            _Origin(request_id, user_data, tags, topic),
        )
        self._queue.send(
            "cluster", {"task_id": task.task_id, "merge": {"from": sources, "to": target}}
        )
        return task

    def start_faces_searching(
        self,
        project: str,
        dataset: str,
        *,
        sources: list[str],
        max_result: int,
        request_id: str,
        user_data: str | None,
        topic: str | None,
        extended_message_uri: str | None,
    ) -> Task:
        """Create the search task and queue it whole on the search stage."""
        if extended_message_uri and self._results is not None:
            _check_output(self._results, extended_message_uri)
        task = self._new_task(
            "CreateFacesSearchingTask",
            TaskType.FACES_SEARCHING,
            project,
            dataset,
            _Origin(request_id, user_data, {}, topic),
        )
        body: dict[str, Any] = {
            "task_id": task.task_id,
            "sources": sources,
            "max_result": max_result,
        }
        if extended_message_uri:
            body["extended_message_uri"] = extended_message_uri
        self._queue.send("search", body)
        return task

    def _new_task(
        self,
        operation: str,
        task_type: str,
        project: str,
        dataset: str,
        origin: _Origin,
        total: int = 0,
    ) -> Task:
        """A Running task, stored."""
        task = Task(
            task_id=new_task_id(operation),
            task_type=task_type,
            project=project,
            dataset=dataset,
            status=TaskStatus.RUNNING,
            start_time=time.time(),
            request_id=origin.request_id,
            user_data=origin.user_data,
            tags=origin.tags,
            topic=origin.topic or self.settings.default_topic,
            total=total,
        )
        self._tasks.create(task)
        return task

    def run_stage(self, stage: str, body: dict[str, Any]) -> None:
        """Run one stage message; raising means "deliver again later"."""
        handler = self._stages.get(stage)
        if handler is None:
            raise InvalidArgument(f"unknown stage {stage!r}")
        try:
            handler(body)
        except ConditionFailed:
            # Another delivery for the same file or task wrote first (at-least-once
            # delivery, two messages for one file): not a fault of this message, so it
            # comes back as a new one, spending none of its deliveries, and then finds
            # that work done. A conflict that keeps coming back is a fault after all.
            conflicts = int(body.get("conflicts", 0)) + 1
            if conflicts > MAX_CONFLICTS:
                raise
            log.info("%s message for %s met a newer row; again", stage, _subject(body))
            delay = random.uniform(0.5, 1.5) * min(conflicts, 8)
            self._queue.send(stage, {**body, "conflicts": conflicts}, delay_seconds=delay)
        except Exception as exc:
            outage = outage_of(exc)
            if outage is None:
                self._note_error(stage, body, exc)
                raise
            self._stop_for_outage(stage, body, outage)

    def _note_error(self, stage: str, body: dict[str, Any], exc: Exception) -> None:
        # MNS's triggers give up without saying why: the file keeps the error for then
        if stage not in ("detect", "embed") or not _names_a_file(body):
            return
        try:
            error = f"{type(exc).__name__}: {exc}"
            self._analysis.note_error(
                body["project"], body["dataset"], body["uri"], body.get("etag"), error
            )
        except Exception:
            log.debug("could not keep the error of %s", body["uri"], exc_info=True)

    def stop_for_outage(self, stage: str, body: dict[str, Any], outage: Outage) -> None:
        """Record the outage on the message's task instead of running the stage."""
        self._stop_for_outage(stage, body, outage)

    def _stop_for_outage(self, stage: str, body: dict[str, Any], outage: Outage) -> None:
        # Retrying each file would fail the same way and end marking it failed; the task
        # ends instead and its files stay indexed. Ending it may fail too (a full disk):
        # then this raises and the message is delivered again later.
        if self._on_outage is not None:
            self._on_outage(outage)
        if "task_id" in body:
            self._end(body["task_id"], TaskStatus.FAILED, code=outage.code, message=outage.message)
        # every file of every task meets the same outage: one line a minute says it
        now = time.monotonic()
        level = logging.DEBUG
        if now - self._outages_logged.get(outage.code, -math.inf) >= OUTAGE_LOG_INTERVAL_S:
            self._outages_logged[outage.code] = now
            level = logging.ERROR
        log.log(level, "%s stage stopped, %s: %s", stage, outage.code, outage.message)

    def give_up(self, stage: str, body: dict[str, Any], reason: str) -> None:
        """A message exhausted its retries: record the failure so its task still ends."""
        if stage == "search" and "index" in body:
            # no task waits on an index built ahead: the next search builds it instead
            log.error("stage search gave up preparing %s: %s", body["index"], reason)
            return
        needs = _GIVE_UP_FIELDS.get(stage)
        if needs is None:
            raise InvalidArgument(f"unknown stage {stage!r}")
        missing = [name for name in needs if not isinstance(body.get(name), str)]
        if missing:
            # nothing names what to fail: a body no stage could ever have run
            raise InvalidArgument(f"a {stage} message needs {', '.join(missing)}")
        if stage in ("detect", "embed"):
            project, dataset, uri = body["project"], body["dataset"], body["uri"]
            finished = self._analysis.outcome(project, dataset, uri, body.get("etag"))
            if finished is not None:
                # done by another delivery (e.g. before a crash took down its batch-mate):
                # the result stands, and only the task's count may still need it
                self._file_finished(body, ok=finished)
                return
            reason = self._analysis.last_error(project, dataset, uri) or reason
            log.error("stage %s gave up on %s: %s", stage, body, reason)
            self._analysis.fail(project, dataset, uri, f"analysis failed: {reason}")
            self._file_finished(body, ok=False)
        else:
            log.error("stage %s gave up on %s: %s", stage, body, reason)
            work = "searching" if stage == "search" else "clustering"
            work = "merging" if "merge" in body else work
            self._end(
                body["task_id"],
                TaskStatus.FAILED,
                code="InternalError",
                message=f"{work} failed: {reason}",
            )

    # ------------------------------------------------------------ stages

    def _in_file_turn(
        self, stage: str, handler: Callable[[dict[str, Any]], None], body: dict[str, Any]
    ) -> None:
        """`handler(body)` once no other message of the file runs in this process."""
        file = (body.get("project"), body.get("dataset"), body.get("uri"))
        with self._file_turns.turn(file, FILE_TURN_WAIT_S) as ours:
            if ours:
                handler(body)
            else:
                self._queue.send(stage, body, delay_seconds=self.settings.busy_retry_seconds)

    def _detect(self, body: dict[str, Any]) -> None:
        if self._task_ended(body):
            return  # e.g. stopped by an outage: the file stays indexed for the next task
        project, dataset, uri = body["project"], body["dataset"], body["uri"]
        shots = bool(body.get("shots"))
        state = self._analysis.progress(project, dataset, uri, body.get("etag"))
        if shots and state in (FileState.ANALYSED, DETECTED):
            self._analysis.measure_shot(project, dataset, uri, body.get("etag"))
        if state in (FileState.ANALYSED, FileState.FAILED):  # e.g. right after indexing
            self._file_finished(body, ok=state == FileState.ANALYSED)
            return
        if state == DETECTED:
            # another message for the same bytes (indexing's, a task's) detected them:
            # one analysis per file version, and the embed stage finishes it once
            self._queue.send("embed", body)
        elif self._analysis.detect(project, dataset, uri, body.get("etag"), shots=shots):
            self._queue.send("embed", body)
        else:
            self._file_finished(body, ok=False)

    def _embed(self, body: dict[str, Any]) -> None:
        ok = self._analysis.embed(body["project"], body["dataset"], body["uri"], body.get("etag"))
        if ok is None:
            self._queue.send("detect", body)
        else:
            self._file_finished(body, ok=ok)

    def _task_ended(self, body: dict[str, Any]) -> bool:
        if "task_id" not in body:
            return False
        task = self._tasks.find(body["task_id"])
        return task is None or self._ended(task, "detect", body)

    def _ended(self, task: Task, stage: str, body: dict[str, Any]) -> bool:
        """Whether the task ended; a notification it left pending is seen to."""
        if task.status not in TaskStatus.TERMINAL:
            return False
        if task.notify_pending:
            self._notify_pending(task.task_id, stage, body)
        return True

    def _notify_pending(self, task_id: str, stage: str, body: dict[str, Any]) -> None:
        # whoever ended the task may be sending it right now (a task often has a second
        # message: a redelivery, a re-sent cluster message): it is theirs until their
        # claim is NOTIFY_GRACE_S old or their process provably gone (a killed worker on
        # this machine), then this message's; until then, look again later
        claimed = self._tasks.claim_notification(
            task_id, NOTIFY_GRACE_S, claimer=this_process(), gone=is_gone
        )
        if claimed is not None:
            self._notify(claimed)
            return
        task = self._tasks.find(task_id)
        if task is not None and task.notify_pending:
            wait = (task.notify_claimed or 0.0) + NOTIFY_GRACE_S - time.time()
            self._queue.send(stage, body, delay_seconds=max(0.0, wait) + random.uniform(0.5, 1.5))

    def _file_finished(self, body: dict[str, Any], *, ok: bool) -> None:
        task_id = body.get("task_id")
        if not task_id:
            return
        task = self._tasks.count_file(task_id, body["uri"], ok=ok)
        if task.done + task.failed >= task.total and task.status == TaskStatus.RUNNING:
            self._queue.send("cluster", {"task_id": task_id})

    def _cluster(self, body: dict[str, Any]) -> None:
        task = self._tasks.find(body["task_id"])
        if task is None or self._ended(task, "cluster", body):
            return
        try:
            with self.lease.held(task.project, task.dataset, task.task_id) as lease:
                if "merge" in body:
                    self._merge(task, body["merge"])
                    return
                summary = self._group(task, lease.keep)
        except DatasetBusy:
            # one membership change per dataset at a time (a crashed holder's lease expires,
            # or is taken at once when its process is provably gone)
            self._queue.send("cluster", body, delay_seconds=self.settings.busy_retry_seconds)
            return
        waiting = summary.pop(FACES_WAITING, 0)
        summary = _with_earlier_parts(body.get(_PARTS), summary)
        if waiting:
            # faces beyond one run's share: the next run in a message of its own, once
            # the lease is given back, so that each invocation stays within its timeout
            log.info("task %s: %d faces wait for the next clustering run", task.task_id, waiting)
            self._queue.send("cluster", {**body, _PARTS: summary})
            return
        summary["FilesFailed"] = task.failed
        summary["FilesAnalysed"] = task.done
        self._end(task.task_id, TaskStatus.SUCCEEDED, result={"Result": summary})
        self._prepare_search(task)

    def _group(self, task: Task, before_writing: Callable[[], None]) -> dict[str, int]:
        if task.task_type == TaskType.SIMILAR_IMAGE_CLUSTERING and self._similar is not None:
            return self._similar.run(task.project, task.dataset, before_writing)
        return self._clusters.run(task.project, task.dataset, before_writing)

    def _merge(self, task: Task, merge: dict[str, Any]) -> None:
        try:
            summary = self._edits.merge(task.project, task.dataset, merge["from"], merge["to"])
        except ResourceNotFound as exc:
            # the target went away after the request was accepted: nothing to merge into
            self._end(task.task_id, TaskStatus.FAILED, code=exc.code, message=exc.message)
            return
        self._end(task.task_id, TaskStatus.SUCCEEDED, result={"Result": summary})

    def _prepare_search(self, task: Task) -> None:
        # The search stage holds the index: it builds the graph (minutes above 100k faces)
        # and saves it now, under its own timeout, rather than in the next search.
        if self._faces is not None and task.task_type == TaskType.FACE_CLUSTERING:
            dataset = {"project": task.project, "dataset": task.dataset}
            self._queue.send("search", {"index": dataset})

    def _search(self, body: dict[str, Any]) -> None:
        if "index" in body:
            if self._faces is not None:
                self._faces.prepare(body["index"]["project"], body["index"]["dataset"])
            return
        task = self._tasks.find(body["task_id"])
        if task is None or self._ended(task, "search", body):
            return
        if self._faces is None or self._results is None:
            raise InvalidArgument("this deployment has no face search")
        outcomes = self._faces.search(
            task.project, task.dataset, body["sources"], int(body["max_result"])
        )
        result = {"Result": {"Sources": [outcome.fields() for outcome in outcomes]}}
        placed = self._results.place(task.task_id, result, body.get("extended_message_uri"))
        self._end(task.task_id, TaskStatus.SUCCEEDED, result=placed)

    # ------------------------------------------------------------ helpers

    def _end(
        self,
        task_id: str,
        status: str,
        *,
        code: str | None = None,
        message: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        task = self._tasks.finish(
            task_id, status, code=code, message=message, result=result, claimer=this_process()
        )
        if task is not None and task.notify_pending:
            self._notify(task)

    def _notify(self, task: Task) -> None:
        # published, then noted as published: a process that dies in between leaves it
        # pending, and the message that ended the task, delivered again, publishes it
        # (a notification may come twice then; before, the task ended and none came)
        assert task.topic is not None
        envelope = task_envelope(task, region=self.settings.region, owner_id=self._catalog.owner_id)
        self._topic.publish(task.topic, envelope)
        self._tasks.notified(task.task_id)

    def _send_file(
        self,
        stage: str,
        project: str,
        dataset: str,
        row: dict[str, Any],
        task_id: str | None,
        *,
        shots: bool = False,
    ) -> None:
        body: dict[str, Any] = {
            "project": project,
            "dataset": dataset,
            "uri": row["URI"],
            "etag": row.get("ETag"),
        }
        if task_id:
            body["task_id"] = task_id
        if shots:
            body["shots"] = True
        self._queue.send(stage, body)


# what give_up must find in a message to fail its file or end its task
_GIVE_UP_FIELDS = {
    "detect": ("project", "dataset", "uri"),
    "embed": ("project", "dataset", "uri"),
    "cluster": ("task_id",),
    "search": ("task_id",),
}


def _with_earlier_parts(earlier: dict[str, int] | None, summary: dict[str, int]) -> dict[str, int]:
    """A run's summary with the counts of the task's earlier runs (parts) added in."""
    earlier = earlier or {}
    added = {k: summary[k] + int(earlier.get(k, 0)) for k in _ADDED_UP if k in summary}
    return {**summary, **added}


def _check_output(results: TaskResults, uri: str) -> None:
    """Refuse, as the request's error, an ExtendedMessageURI naming another's object."""
    try:
        results.check(uri)
    except ForeignObject:
        raise InvalidArgument(
            f"Notification.ExtendedMessageURI {uri} names an object OpenIMM did not write, "
            "and OpenIMM never replaces one: name a new object, or a folder (ending in /)."
        ) from None
    except InvalidUri as exc:
        raise InvalidArgument(f"Notification.ExtendedMessageURI: {exc}") from None
