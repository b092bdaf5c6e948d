"""Nothing lost, nothing doubled, nothing stuck: kills, redelivery, a full disk, bad bodies.

    python bench/reliability.py                    # 24 photos, >= 20 kills, every section
    python bench/reliability.py --json             # one JSON object, for scripts
    python bench/reliability.py --files 6 --kills 5 --sections delivery,kills

Loopback only, bounded in counts and time. Sections (each prints as it goes):

- delivery: an in-process OpenIMM (`bootstrap.build`, real models, SQLite) runs one round
  (BatchIndexFileMeta, a figure and a similar-image clustering task, then a faces search)
  with its queue drained by hand: first every message once in order (the reference),
  then, on a second dataset, every message delivered twice and in shuffled order.
- kills: `openimm serve` runs the same rounds while the bench SIGKILLs its `work` child,
  sometimes an `http` child and sometimes the whole serve (started again on the same
  state), at random moments, noting the stage in flight (queue.db, read-only). Rounds
  repeat on fresh datasets until --kills kills landed.
- disk: the state directory on a small tmpfs filled with ballast; a task must end with a
  Code, the log stay bounded; the ballast removed, the time until a new task succeeds
  on the same serve.
- fuzz: bench/fuzz.py's malformed bodies (a bounded sample per operation); 0 5xx.

Every round is compared with the reference: faces per file (lost/doubled), figure and
similar-image cluster membership, each task's status and the search task's result, and
one notification per task. Exit 1 when an invariant fails.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from openimm.local.samples import fetch_sample_photos, sample_dir

PROJECT, BUCKET = "bench", "photos"
STAGES = ("detect", "embed", "cluster", "search")
# a local worker gives a message up on its 4th delivery (local/workers.py max_attempts):
# a message that killed its worker 3 times is a poison message by design, so the bench
# never kills a worker whose message is on its 3rd delivery
MAX_ATTEMPTS = 3
SEARCH_SOURCES = ("obama_partial_face.jpg", "biden.jpg")
TERMINAL = ("Succeeded", "Failed")
# the FigureClusterId of a face not grouped yet, and of one grouped alone
UNAVAILABLE, INDEPENDENT = "figure-cluster-id-unavailable", "figure-cluster-id-independent"
TASK_KINDS = {
    "figures": ("CreateFigureClusteringTask", "FaceClustering"),
    "similar": ("CreateSimilarImageClusteringTask", "SimilarImageClustering"),
    "search": ("CreateFacesSearchingTask", "FacesSearching"),
}

Call = Callable[[str, dict[str, Any]], dict[str, Any]]


# ---------------------------------------------------------------- rows and output


@dataclass
class Row:
    """One line of the summary: a section, what was measured, the figure, and whether it
    is an invariant that held (None: a figure, not an invariant)."""

    section: str
    what: str
    value: str
    ok: bool | None = None


def say(text: str) -> None:
    """Progress, on stderr so that --json's stdout stays one object."""
    print(text, file=sys.stderr, flush=True)


def table(rows: list[Row]) -> str:
    """The plain-text summary."""
    width = max(len(f"{r.section}: {r.what}") for r in rows)
    lines = []
    for row in rows:
        mark = "" if row.ok is None else ("  ok" if row.ok else "  FAILED")
        lines.append(f"{row.section}: {row.what}".ljust(width + 2) + row.value + mark)
    return "\n".join(lines)


# ---------------------------------------------------------------- the input


def bucket_files(photos: Path, bucket: Path, count: int) -> list[str]:
    """`count` files in the bucket folder, the sample photos again under new names; URIs."""
    # the photos of one person first, and each photo at least twice: a few files then
    # still make a figure cluster and similar-image groups
    people = sorted((not p.name.startswith("obama"), p.name) for p in photos.iterdir())
    sources = [photos / name for _, name in people][: max(1, count // 2)]
    bucket.mkdir(parents=True, exist_ok=True)
    uris = []
    for i in range(count):
        source = sources[i % len(sources)]
        name = f"p{i:02d}-{source.name}"
        shutil.copy(source, bucket / name)
        uris.append(f"oss://{BUCKET}/{name}")
    for name in SEARCH_SOURCES:  # read by the search task, never indexed
        shutil.copy(photos / name, bucket / f"query-{name}")
    return uris


def search_sources() -> list[dict[str, str]]:
    return [{"URI": f"oss://{BUCKET}/query-{name}"} for name in SEARCH_SOURCES]


# ---------------------------------------------------------------- one round of requests


@dataclass
class Round:
    """The requests of one dataset: index, two clustering tasks, then a search."""

    dataset: str
    uris: list[str]
    tasks: dict[str, str] = field(default_factory=dict)  # kind -> TaskId

    def body(self, **more: Any) -> dict[str, Any]:
        return {"ProjectName": PROJECT, "DatasetName": self.dataset, **more}

    def start(self, call: Call) -> None:
        """Create the dataset, index the files and start both clustering tasks at once, so
        that indexing's analysis and the tasks' race on the same files."""
        call("CreateDataset", self.body())
        call("BatchIndexFileMeta", self.body(Files=[{"URI": u} for u in self.uris]))
        for kind in ("figures", "similar"):
            self._create(call, kind, {})

    def start_search(self, call: Call) -> None:
        """Search once the clustering tasks ended: every face is then searchable."""
        self._create(call, "search", {"Sources": search_sources(), "MaxResult": 10})

    def _create(self, call: Call, kind: str, more: dict[str, Any]) -> None:
        operation, _ = TASK_KINDS[kind]
        topic = {"Notification": {"MNS": {"TopicName": f"{self.dataset}-{kind}"}}}
        self.tasks[kind] = call(operation, self.body(**more, **topic))["TaskId"]

    def status(self, call: Call, kind: str) -> dict[str, Any]:
        return call(
            "GetTask",
            {"ProjectName": PROJECT, "TaskType": TASK_KINDS[kind][1], "TaskId": self.tasks[kind]},
        )

    def ended(self, call: Call, kinds: tuple[str, ...]) -> bool:
        return all(self.status(call, kind)["Status"] in TERMINAL for kind in kinds)


@dataclass
class Outcome:
    """What a round left: comparable between runs (ids differ, memberships must not)."""

    faces: dict[str, int]  # URI -> faces stored (-1: the file failed)
    figure_groups: list[list[str]]  # each figure cluster's files, one entry per face
    similar_groups: list[list[str]]
    statuses: dict[str, str]  # task kind -> Status/Code
    search: list[list[tuple[str, float]]]  # per source: (URI, similarity) found
    unclustered: list[str]  # files with a face in no cluster (not grouped, or alone)


def outcome(call: Call, rnd: Round) -> Outcome:
    """Read a finished round back through the API."""
    faces: dict[str, int] = {}
    groups: dict[str, list[str]] = {}
    for uri in rnd.uris:
        meta = call("GetFileMeta", rnd.body(URI=uri))["Files"][0]
        figures = meta.get("Figures") or []
        faces[uri] = -1 if meta.get("ObjectStatus") == "failed" else len(figures)
        for figure in figures:
            groups.setdefault(figure.get("FigureClusterId") or "none", []).append(uri)
    statuses = {}
    search: list[list[tuple[str, float]]] = []
    for kind in TASK_KINDS:
        task = rnd.status(call, kind)
        statuses[kind] = f"{task['Status']}/{task.get('Code') or '-'}"
        if kind == "search" and task["Status"] == "Succeeded":
            search = [
                [(f["URI"], round(f["Similarity"], 3)) for f in source.get("Figures", [])]
                for source in task["Result"]["Sources"]
            ]
    return Outcome(
        faces=faces,
        figure_groups=_partition(groups),
        similar_groups=_partition(_similar_groups(call, rnd)),
        statuses=statuses,
        search=search,
        unclustered=sorted(set(groups.get(UNAVAILABLE, []) + groups.get(INDEPENDENT, []))),
    )


def _similar_groups(call: Call, rnd: Round) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    token = None
    while True:
        page = call("QuerySimilarImageClusters", rnd.body(MaxResults=100, NextToken=token or ""))
        for cluster in page["SimilarImageClusters"]:
            groups[cluster["ObjectId"]] = [f["URI"] for f in cluster["Files"]]
        token = page.get("NextToken")
        if not token:
            return groups


def _partition(groups: dict[str, list[str]]) -> list[list[str]]:
    # cluster ids differ from run to run: compare the memberships alone
    return sorted(sorted(members) for members in groups.values())


@dataclass
class Difference:
    """A round against the reference."""

    faces_lost: int = 0
    faces_doubled: int = 0
    figure_partition_same: bool = True
    similar_partition_same: bool = True
    statuses_same: bool = True
    search_same: bool = True
    unclustered: list[str] = field(default_factory=list)  # beyond the reference's

    @property
    def ok(self) -> bool:
        return (
            self.faces_lost == 0
            and self.faces_doubled == 0
            and self.figure_partition_same
            and self.similar_partition_same
            and self.statuses_same
            and self.search_same
        )


def compare(reference: Outcome, got: Outcome) -> Difference:
    """Faces lost/doubled per file (a failed file loses all of its faces), and whether the
    memberships, statuses and search results are those of the reference."""
    diff = Difference()
    for uri, want in reference.faces.items():
        have = max(0, got.faces.get(uri, -1))
        diff.faces_lost += max(0, want - have)
        diff.faces_doubled += max(0, have - want)
    diff.figure_partition_same = got.figure_groups == reference.figure_groups
    diff.similar_partition_same = got.similar_groups == reference.similar_groups
    diff.statuses_same = got.statuses == reference.statuses
    diff.search_same = got.search == reference.search
    diff.unclustered = sorted(set(got.unclustered) - set(reference.unclustered))
    return diff


def notifications(path: Path, task_ids: list[str]) -> tuple[int, int]:
    """(lost, doubled) notifications of these tasks in a notifications.jsonl."""
    counts: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                counts[json.loads(json.loads(line)["message"]["content"])["TaskId"]] += 1
    lost = sum(1 for t in task_ids if counts[t] == 0)
    doubled = sum(counts[t] - 1 for t in task_ids if counts[t] > 1)
    return lost, doubled


# ---------------------------------------------------------------- in-process delivery


class Delivery:
    """An in-process OpenIMM whose queue the bench drains by hand."""

    def __init__(self, data: Path) -> None:
        from openimm.bootstrap import Settings, build, configured_parts

        settings = Settings(data_dir=data)
        self.data = data
        self.parts = configured_parts(settings)
        self.app = build(settings, self.parts)
        self.retries = 0  # deliveries that raised and were delivered again

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = self.app.call(operation, body, "bench")
        return reply

    def drain(self, rng: random.Random | None, timeout: float = 600) -> None:
        """Run queued messages until none is left (delayed ones included): in order and
        once without `rng`; with it, each message twice, the batch shuffled."""
        queue = self.parts.queue
        deadline = time.monotonic() + timeout
        while any(queue.pending(stage) for stage in STAGES):  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                raise TimeoutError("the queue did not drain")
            batch = [
                message
                for stage in STAGES
                for message in queue.receive(stage, max_messages=10, visibility_timeout=600)
            ]
            if not batch:
                time.sleep(0.1)  # a delayed message (a conflict re-sent, a busy dataset)
                continue
            deliveries = batch if rng is None else batch * 2
            if rng is not None:
                rng.shuffle(deliveries)
            failed = {m.message_id for m in deliveries if not self._deliver(m)}
            for message in batch:
                self._settle(message, failed=message.message_id in failed)

    def _deliver(self, message: Any) -> bool:
        try:
            self.app.run_stage(message.queue, message.body)
        except Exception as exc:  # as a worker would: delivered again later
            say(f"  {message.queue} delivery raised {type(exc).__name__}: {exc}")
            return False
        return True

    def _settle(self, message: Any, *, failed: bool) -> None:
        queue = self.parts.queue
        if not failed:
            queue.ack(message)
        elif message.attempts < MAX_ATTEMPTS:
            self.retries += 1
            queue.retry(message, delay_seconds=0.1)
        else:
            queue.dead_letter(message, "bench: failed every delivery")
            self.app.give_up(message.queue, message.body, "failed every delivery")


def delivery_section(
    photos: Path, work: Path, files: int, seed: int, *, shuffled: bool = True
) -> tuple[Outcome, list[Row]]:
    """The reference (in order, once) and, if asked, the shuffled double delivery."""
    say("delivery: in-process, real models")
    data = work / "delivery"
    uris = bucket_files(photos, data / "buckets" / BUCKET, files)
    bench = Delivery(data)
    bench.call("CreateProject", {"ProjectName": PROJECT})
    rows = []
    reference_round = Round("in-order", uris)
    started = time.monotonic()
    reference_round.start(bench.call)
    bench.drain(None)
    reference_round.start_search(bench.call)
    bench.drain(None)
    reference = outcome(bench.call, reference_round)
    say(f"  in order, once: {time.monotonic() - started:.0f} s, {_describe(reference)}")
    rows.append(Row("delivery", "reference (in order, once)", _describe(reference)))
    if not shuffled:
        return reference, rows

    shuffled_round = Round("shuffled", uris)
    started = time.monotonic()
    rng = random.Random(seed)
    shuffled_round.start(bench.call)
    bench.drain(rng)
    shuffled_round.start_search(bench.call)
    bench.drain(rng)
    got = outcome(bench.call, shuffled_round)
    diff = compare(reference, got)
    say(f"  shuffled, twice: {time.monotonic() - started:.0f} s, {_describe(got)}")
    rows.append(Row("delivery", "twice, shuffled: results as reference", _verdict(diff), diff.ok))
    lost, doubled = notifications(data / "notifications.jsonl", list(shuffled_round.tasks.values()))
    rows.append(
        Row("delivery", "notifications lost/doubled", f"{lost}/{doubled}", lost + doubled == 0)
    )
    rows.append(Row("delivery", "deliveries that raised (retried)", str(bench.retries)))
    return reference, rows


def _describe(result: Outcome) -> str:
    faces = sum(max(0, n) for n in result.faces.values())
    clustered = [g for g in result.figure_groups if len(g) > 1]
    return (
        f"{faces} faces in {len(result.faces)} files, {len(clustered)} figure groups, "
        f"{len(result.similar_groups)} similar groups, "
        f"{sum(len(s) for s in result.search)} search hits"
    )


def _verdict(diff: Difference) -> str:
    parts = [f"faces lost/doubled {diff.faces_lost}/{diff.faces_doubled}"]
    for name, same in (
        ("figure clusters", diff.figure_partition_same),
        ("similar clusters", diff.similar_partition_same),
        ("task statuses", diff.statuses_same),
        ("search result", diff.search_same),
    ):
        parts.append(f"{name} {'same' if same else 'DIFFER'}")
    if diff.unclustered:
        parts.append(f"in no cluster unlike the reference: {', '.join(diff.unclustered)}")
    return ", ".join(parts)


# ---------------------------------------------------------------- serve over HTTP


class ApiError(Exception):
    """A non-200 reply."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('Code')}: {body.get('Message')}")
        self.status = status
        self.body = body


class Serve:
    """`openimm serve` as its own process group (so that all of it can die at once), its
    output in a log file."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data = data
        self.log = log
        self._log_file = log.open("ab")
        start = log.stat().st_size
        command = [sys.executable, "-m", "openimm.local.cli", "serve", "--port", "0"]
        self.proc = subprocess.Popen(
            [*command, "--data", str(data), "--processes", "2"],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.url = self._banner(start)

    def _banner(self, start: int, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log.open("rb") as handle:
                handle.seek(start)
                match = re.search(rb"serving on (http://[\d.]+:\d+)", handle.read())
            if match:
                return match.group(1).decode()
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"openimm serve did not start; see {self.log}")

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request; connection failures (a killed HTTP process) are tried again."""
        status, reply = self.send(operation, body)
        if status != 200:
            raise ApiError(status, reply)
        return reply

    def send(
        self, operation: str, body: dict[str, Any], tries: int = 20
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{self.url}/{operation}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        for attempt in range(tries):
            try:
                with urllib.request.urlopen(request, timeout=60) as reply:
                    answer: dict[str, Any] = json.loads(reply.read())
                    return reply.status, answer
            except urllib.error.HTTPError as err:
                error: dict[str, Any] = json.loads(err.read() or b"{}")
                return err.code, error
            except OSError:
                if attempt == tries - 1:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def children(self) -> dict[int, str]:
        """The live children's pids and their command (`http` or `work`)."""
        found = {}
        for path in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for pid in path.read_text().split():
                    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    if len(args) > 3:
                        found[int(pid)] = args[3].decode()
        return found

    def kill_all(self) -> None:
        """SIGKILL serve and its children together, as a crash of the machine would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill_all()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # a child left behind
        self._log_file.close()


@dataclass(frozen=True)
class InFlight:
    """A stage message a worker holds (received, not finished)."""

    message_id: str
    stage: str
    attempts: int
    receipt: str


def in_flight(queue_db: Path) -> list[InFlight]:
    """The messages workers hold now, read without writing (mode=ro)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{queue_db}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT id, queue, attempts, receipt FROM messages"
                " WHERE receipt IS NOT NULL AND visible_at > ?",
                (time.time(),),
            ).fetchall()
    except sqlite3.Error:
        return []  # not created yet, or busy for a moment
    return [InFlight(*row) for row in rows]


# ---------------------------------------------------------------- kills


@dataclass
class Kill:
    kind: str  # work | http | serve
    stage: str  # the stage in flight, "-" when none (an http kill)
    round: str
    at: float


@dataclass
class Killer:
    """Picks kill moments: a stage in flight whose message is not on its last delivery,
    the stages killed least first, detect/embed after a random wait (so that the kills
    land at random points of a message), cluster/search at once (they are short)."""

    serve: Serve
    rng: random.Random
    target: int
    kills: list[Kill] = field(default_factory=list)
    stale: set[str] = field(default_factory=set)  # receipts of killed holders
    work_kills_this_serve: int = 0
    mean_wait_s: float = 1.5

    @property
    def done(self) -> bool:
        """The target reached, every stage hit."""
        hit = {k.stage for k in self.kills}
        return len(self.kills) >= self.target and hit >= set(STAGES)

    def tick(self, round_name: str, dt: float) -> None:
        if self.done:
            return
        held = [m for m in in_flight(self.serve.data / "queue.db") if m.receipt not in self.stale]
        if not held or any(m.attempts >= MAX_ATTEMPTS for m in held):
            return
        by_stage = Counter(k.stage for k in self.kills)
        stage = min((m.stage for m in held), key=lambda s: by_stage[s])
        if stage in ("detect", "embed"):
            if not self._early_allowed(stage, by_stage):
                return
            if self.rng.random() > dt / self.mean_wait_s:
                return
        self._kill(stage, held, round_name)

    def _early_allowed(self, stage: str, by_stage: Counter[str]) -> bool:
        # detect and embed take most of a round: leave kills for cluster and search,
        # which run only at its end (and past the target, only for a stage not hit yet)
        if len(self.kills) >= self.target:
            return by_stage[stage] == 0
        reserve = max(2, self.target * 3 // 10)
        return by_stage["detect"] + by_stage["embed"] < self.target - reserve

    def _kill(self, stage: str, held: list[InFlight], round_name: str) -> None:
        children = self.serve.children()
        workers = [pid for pid, cmd in children.items() if cmd == "work"]
        https = [pid for pid, cmd in children.items() if cmd == "http"]
        if not workers:
            return
        kind = "work"
        if self.work_kills_this_serve >= 3:
            kind = "serve"  # the supervisor's restart delay grows with each death: start anew
        elif https and stage in ("detect", "embed") and self.rng.random() < 0.2:
            kind = "http"
        self.stale |= {m.receipt for m in held}
        if kind == "serve":
            self.serve.kill_all()
            self.serve = Serve(self.serve.data, self.serve.log)
            self.work_kills_this_serve = 0
        elif kind == "http":
            os.kill(self.rng.choice(https), signal.SIGKILL)
            stage = "-"  # the workers did not notice
            self.stale -= {m.receipt for m in held}
        else:
            os.kill(workers[0], signal.SIGKILL)
            self.work_kills_this_serve += 1
        self.kills.append(Kill(kind, stage, round_name, time.time()))
        say(f"  kill {len(self.kills)}: {kind} ({stage} in flight)")


def drive(killer: Killer, rnd: Round, timeout: float) -> bool:
    """Run one round on the serve while the killer strikes; False when it did not end."""
    rnd.start(killer.serve.call)
    deadline = time.monotonic() + timeout
    phase: tuple[str, ...] = ("figures", "similar")
    next_poll = 0.0
    tick = 0.02  # a cluster message may take well under a second
    while time.monotonic() < deadline:
        killer.tick(rnd.dataset, tick)
        now = time.monotonic()
        if now >= next_poll:
            next_poll = now + 0.5
            if rnd.ended(killer.serve.call, phase):
                if phase == ("search",):
                    return True
                rnd.start_search(killer.serve.call)
                phase = ("search",)
        time.sleep(tick)
    return False


def kills_section(
    photos: Path, work: Path, files: int, target: int, seed: int, reference: Outcome
) -> list[Row]:
    """Rounds on a serve under kills until `target` kills landed (at most 8 rounds)."""
    say(f"kills: openimm serve, {files} files a round, {target} kills")
    data = work / "kills"
    uris = bucket_files(photos, data / "buckets" / BUCKET, files)
    log = work / "kills.log"
    killer = Killer(Serve(data, log), random.Random(seed), target)
    rounds: list[Round] = []
    stuck: list[str] = []
    diffs: list[Difference] = []
    started = time.monotonic()
    try:
        killer.serve.call("CreateProject", {"ProjectName": PROJECT})
        while not killer.done and len(rounds) < 8:
            rnd = Round(f"round{len(rounds) + 1}", uris)
            rounds.append(rnd)
            if not drive(killer, rnd, timeout=900):
                stuck.append(rnd.dataset)
                say(f"  {rnd.dataset}: did not end in 900 s")
                continue
            diff = compare(reference, outcome(killer.serve.call, rnd))
            diffs.append(diff)
            say(f"  {rnd.dataset} ended: {_verdict(diff)}; {len(killer.kills)} kills so far")
        _await_notifications(data, [t for r in rounds for t in r.tasks.values()])
    finally:
        killer.serve.stop()
    return _kill_rows(killer.kills, rounds, stuck, diffs, data, time.monotonic() - started)


def _await_notifications(data: Path, task_ids: list[str], timeout: float = 90) -> None:
    """Give notifications still pending time to go out before the serve stops.

    A task whose worker was killed between its end and its notification is notified by
    the message that comes back, after the task already reads as ended: at once when the
    killed process is provably gone, else once its claim is NOTIFY_GRACE_S (30 s) old.
    """
    started = time.monotonic()
    lost, _ = notifications(data / "notifications.jsonl", task_ids)
    while lost and time.monotonic() - started < timeout:
        time.sleep(0.5)
        lost, _ = notifications(data / "notifications.jsonl", task_ids)
    waited = time.monotonic() - started
    if waited > 0.5:
        say(f"  waited {waited:.1f} s for pending notifications; {lost} still missing")


def _kill_rows(
    kills: list[Kill],
    rounds: list[Round],
    stuck: list[str],
    diffs: list[Difference],
    data: Path,
    seconds: float,
) -> list[Row]:
    by_stage = Counter(k.stage for k in kills if k.kind != "http")
    kinds = Counter(k.kind for k in kills)
    stages = ", ".join(f"{s} {by_stage[s]}" for s in STAGES)
    task_ids = [t for r in rounds for t in r.tasks.values()]
    lost, doubled = notifications(data / "notifications.jsonl", task_ids)
    faces_lost = sum(d.faces_lost for d in diffs)
    faces_doubled = sum(d.faces_doubled for d in diffs)
    return [
        Row(
            "kills",
            "kills survived (work/http/serve)",
            f"{len(kills)} ({kinds['work']}/{kinds['http']}/{kinds['serve']}) "
            f"in {len(rounds)} rounds, {seconds:.0f} s",
        ),
        Row("kills", "kills by stage in flight", stages, all(by_stage[s] for s in STAGES)),
        Row(
            "kills",
            "faces lost/doubled",
            f"{faces_lost}/{faces_doubled}",
            faces_lost + faces_doubled == 0,
        ),
        Row(
            "kills",
            "figure/similar partitions as reference",
            f"{sum(d.figure_partition_same for d in diffs)}/"
            f"{sum(d.similar_partition_same for d in diffs)} of {len(diffs)} rounds",
            all(d.figure_partition_same and d.similar_partition_same for d in diffs),
        ),
        Row(
            "kills",
            "tasks ended as reference (search results too)",
            f"{sum(d.statuses_same and d.search_same for d in diffs)} of {len(rounds)} rounds"
            + (f"; not ended: {', '.join(stuck)}" if stuck else ""),
            not stuck and all(d.statuses_same and d.search_same for d in diffs),
        ),
        Row("kills", "notifications lost/doubled", f"{lost}/{doubled}", lost + doubled == 0),
    ]


# ---------------------------------------------------------------- full disk


def disk_section(photos: Path, work: Path, size_mb: int, wait_s: float) -> list[Row]:
    """A full state directory: the task ends with a Code, the log stays bounded, and a new
    task succeeds on the same serve once space is back."""
    say(f"disk: state on a {size_mb} MB tmpfs")
    mount = work / "tmpfs"
    mount.mkdir()
    refused = _mount_tmpfs(mount, size_mb)
    if refused:
        return [Row("disk", "full-disk recovery", f"not measured: {refused}", None)]
    try:
        return _full_disk(photos, mount, work / "disk.log", wait_s)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _mount_tmpfs(mount: Path, size_mb: int) -> str | None:
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else (done.stderr.strip() or "mount failed")


def _full_disk(photos: Path, data: Path, log: Path, wait_s: float) -> list[Row]:
    uris = bucket_files(photos, data / "buckets" / BUCKET, 6)
    server = Serve(data, log)
    rows: list[Row] = []
    try:
        server.call("CreateProject", {"ProjectName": PROJECT})
        rnd = Round("full", uris)
        rnd.start(server.call)
        # fill once the workers run the task: a worker started on a full disk cannot
        # start at all (its lock file), which is the recovery row's concern
        _wait_in_flight(data / "queue.db", timeout=120)
        lines_before = _lines(log)
        ballast = data / "ballast"
        _fill(ballast)
        say(f"  filled: {shutil.disk_usage(data).free} bytes free")
        started = time.monotonic()
        status = _wait_task(server, rnd, "figures", timeout=wait_s)
        waited = time.monotonic() - started
        code = f"{status.get('Status')}/{status.get('Code') or '-'}"
        say(f"  task while full: {code} after {waited:.1f} s")
        rows.append(
            Row(
                "disk",
                "task while full ends with a Code",
                f"{code} in {waited:.1f} s",
                status.get("Code") == "StorageUnavailable",
            )
        )
        time.sleep(5)  # the workers keep meeting the full disk: the log must not race
        logged = _lines(log) - lines_before
        per_s = logged / (time.monotonic() - started)
        rows.append(Row("disk", "log lines while full", f"{logged} ({per_s:.1f}/s)", per_s < 20))
        ballast.unlink()
        rows.append(_recovery(server, uris))
        # the task begun while full: it must end too, now that space is back
        later = _wait_task(server, rnd, "figures", timeout=120)
        rows.append(
            Row(
                "disk",
                "task begun while full, once space is back",
                f"{later.get('Status')}/{later.get('Code') or '-'}",
                later.get("Status") in TERMINAL,
            )
        )
    finally:
        server.stop()
    return rows


def _recovery(server: Serve, uris: list[str]) -> Row:
    """Seconds from freeing space until a new task on the same serve succeeds."""
    freed = time.monotonic()
    deadline = freed + 300
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        rnd = Round(f"after{tries}", uris)
        try:
            rnd.start(server.call)
        except ApiError as exc:
            say(f"  after freeing: {exc}")
            time.sleep(1)
            continue
        status = _wait_task(server, rnd, "figures", timeout=deadline - time.monotonic())
        if status.get("Status") == "Succeeded":
            took = time.monotonic() - freed
            say(f"  recovered: a new task succeeded {took:.1f} s after freeing space")
            return Row("disk", "recovery without restart", f"{took:.1f} s ({tries} tasks)", True)
    return Row("disk", "recovery without restart", "no task succeeded in 300 s", False)


def _wait_task(server: Serve, rnd: Round, kind: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    task: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            task = rnd.status(server.call, kind)
        except ApiError as exc:  # said, not hidden: a read refused on a full disk
            task = {"Status": f"GetTask {exc.status} {exc.body.get('Code')}"}
        if task["Status"] in TERMINAL:
            return task
        time.sleep(0.5)
    return task


def _wait_in_flight(queue_db: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not in_flight(queue_db) and time.monotonic() < deadline:
        time.sleep(0.05)


def _fill(path: Path) -> None:
    """Write until the file system is full (a megabyte, then a kilobyte at a time)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 10):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


# ---------------------------------------------------------------- fuzz


def fuzz_section(work: Path, per_operation: int, seed: int) -> list[Row]:
    """bench/fuzz.py's malformed bodies, `per_operation` drawn per operation."""
    say(f"fuzz: {per_operation} malformed bodies per operation, in-process")
    fuzz = _load_fuzz()
    from openimm.platform.entry import OPERATIONS, http_router_handler

    _, app, fixtures = fuzz.stand_in_service(work / "fuzz")
    handler = http_router_handler(app=lambda: app)
    rng = random.Random(seed)
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    valid = fuzz.valid_bodies(fixtures)
    for operation in OPERATIONS:
        cases = fuzz.cases(operation, valid[operation], rng)
        for case in rng.sample(cases, min(per_operation, len(cases))):
            reply = handler(case.event, None)
            statuses[reply["statusCode"]] += 1
            _, problem = fuzz.reply_problem(reply["statusCode"], reply["body"])
            if problem:
                problems.append(f"{operation} [{case.label}]: {problem}")
    for problem in problems[:20]:
        say(f"  {problem}")
    server_errors = sum(n for s, n in statuses.items() if s >= 500)
    by_status = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
    return [
        Row("fuzz", f"responses by status ({sum(statuses.values())} bodies)", by_status),
        Row(
            "fuzz",
            "5xx / malformed error bodies",
            f"{server_errors}/{len(problems)}",
            server_errors == 0 and not problems,
        ),
    ]


def _load_fuzz() -> ModuleType:
    """bench/fuzz.py by its path: bench/ is a folder of scripts, not a package."""
    spec = importlib.util.spec_from_file_location("bench_fuzz", Path(__file__).with_name("fuzz.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- main


SECTIONS = ("delivery", "kills", "disk", "fuzz")


def run(args: argparse.Namespace, work: Path) -> list[Row]:
    """The chosen sections in order; the kills need the delivery's reference."""
    photos = fetch_sample_photos(sample_dir())
    sections = set(args.sections.split(","))
    rows: list[Row] = []
    reference = None
    if sections & {"delivery", "kills"}:
        reference, delivery_rows = delivery_section(
            photos, work, args.files, args.seed, shuffled="delivery" in sections
        )
        rows += delivery_rows
    if "kills" in sections and reference is not None:
        rows += kills_section(photos, work, args.files, args.kills, args.seed, reference)
    if "disk" in sections:
        rows += disk_section(photos, work, args.disk_mb, args.disk_wait)
    if "fuzz" in sections:
        rows += fuzz_section(work, args.fuzz_bodies, args.seed)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=24, help="photos indexed per round")
    parser.add_argument("--kills", type=int, default=20, help="kills to land, at least")
    parser.add_argument("--fuzz-bodies", type=int, default=40, help="per operation")
    parser.add_argument("--disk-mb", type=int, default=48, help="size of the tmpfs")
    parser.add_argument(
        "--disk-wait", type=float, default=60, help="seconds a task may take on a full disk"
    )
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--require-disk", action="store_true", help="fail when the disk row is not measured"
    )
    parser.add_argument("--keep", type=Path, help="keep the state here instead of a temp dir")
    args = parser.parse_args(argv)
    # stopped by SIGTERM, the bench still runs its `finally`s: no serve is left behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    with _workdir(args.keep) as work:
        rows = run(args, work)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        print(table(rows))
    return 0 if passed(rows, require_disk=args.require_disk) else 1


def passed(rows: list[Row], *, require_disk: bool) -> bool:
    """No invariant failed (and, when asked, the full disk was measured)."""
    if any(r.ok is False for r in rows):
        return False
    unmeasured = any(r.section == "disk" and r.value.startswith("not measured") for r in rows)
    return not (require_disk and unmeasured)


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="openimm-reliability-") as folder:
        yield Path(folder)


if __name__ == "__main__":
    sys.exit(main())
