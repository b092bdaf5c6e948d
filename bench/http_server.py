"""`openimm serve` under load: many keep-alive clients reading while the workers are busy.

    python bench/http_server.py                         # 50 clients, 30 s, 200 images
    python bench/http_server.py --clients 20 --seconds 60
    python bench/http_server.py --json                  # one JSON object, for scripts

Starts `openimm serve` (this checkout's, with this Python) as its own process on
127.0.0.1 with a fresh temporary state directory, indexes --images generated photos
(the sample photos, each copy mirrored, scaled and cropped so none repeats) and creates a
face clustering task over them, so the stage workers take the CPU for the whole window.
Then --clients connections, each a loop of keep-alive requests without pause, cycle
through four reads (GetTask, ListTasks, QueryFigureClusters, GetFileMeta) for --seconds.
The clients are one asyncio loop in this process, so they cost the server little CPU.

One table: requests per second, latency p50/p95/p99/max (ms) of the answered requests,
the count of 5xx answers, of other non-200 answers, and of connection failures (a reset,
a refused or dropped connection, or a reply cut short; the client then reconnects).
Under it: whether the clustering task was still running at the end (when it was not,
part of the window had idle workers: give more --images), and the load average.
It ends by itself: the window is bounded, every setup call has a timeout, and the server
is stopped (then killed) at the end. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from openimm.local.samples import fetch_sample_photos, sample_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serve_process import ServeProcess

PROJECT, DATASET, BUCKET = "bench", "photos", "photos"
BATCH = 100
TIMEOUT = 10.0  # seconds one reply may take before it counts as a connection failure


# ---------------------------------------------------------------- the server


class Server(ServeProcess):
    """`openimm serve` (tests/serve_process.py) with a JSON caller."""

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{operation}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            result: dict[str, Any] = json.loads(reply.read())
            return result


def make_photos(bucket: Path, count: int) -> list[str]:
    """`count` distinct photos in `bucket`, made from the sample photos."""
    sources = sorted(p for p in fetch_sample_photos(sample_dir()).iterdir() if p.suffix == ".jpg")
    rng = random.Random(13)
    bucket.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        with Image.open(sources[i % len(sources)]) as img:
            photo = img.convert("RGB")
        if rng.random() < 0.5:
            photo = ImageOps.mirror(photo)
        scale = rng.uniform(0.7, 1.0)
        photo = photo.resize((int(photo.width * scale), int(photo.height * scale)))
        dx, dy = rng.randrange(1, 20), rng.randrange(1, 20)
        photo = photo.crop((dx, dy, photo.width - dx, photo.height - dy))
        name = f"p{i:05d}.jpg"
        photo.save(bucket / name, quality=90)
        names.append(name)
    return names


def analysed(server: Server, uris: list[str]) -> int:
    """How many of the files the workers have analysed so far."""
    dataset = {"ProjectName": PROJECT, "DatasetName": DATASET}
    statuses = (
        server.call("GetFileMeta", {**dataset, "URI": uri})["Files"][0].get("ObjectStatus")
        for uri in uris
    )
    return sum(status in ("succeeded", "failed") for status in statuses)


def busy_server(
    data: Path, images: int, threads: int
) -> tuple[Server, dict[str, str], list[str]]:
    """A server whose workers are indexing and clustering; the ids the reads ask for, and
    the photos' URIs."""
    names = make_photos(data / "buckets" / BUCKET, images)
    server = Server(data, ["--threads", str(threads)], log=subprocess.DEVNULL)
    dataset = {"ProjectName": PROJECT, "DatasetName": DATASET}
    try:
        server.call("CreateProject", {"ProjectName": PROJECT})
        server.call("CreateDataset", dataset)
        for start in range(0, len(names), BATCH):
            files = [{"URI": f"oss://{BUCKET}/{n}"} for n in names[start : start + BATCH]]
            server.call("BatchIndexFileMeta", {**dataset, "Files": files})
        task = server.call("CreateFigureClusteringTask", dataset)
    except BaseException:
        server.stop()  # a server left running would skew every later run
        raise
    uris = [f"oss://{BUCKET}/{n}" for n in names]
    return server, {"TaskId": task["TaskId"], "URI": uris[0]}, uris


def reads(ids: dict[str, str]) -> list[bytes]:
    """The read requests the clients cycle through, as raw HTTP/1.1 bytes."""
    dataset = {"ProjectName": PROJECT, "DatasetName": DATASET}
    task = {"ProjectName": PROJECT, "TaskType": "FaceClustering"}
    bodies = [
        ("GetTask", {**task, "TaskId": ids["TaskId"]}),
        ("ListTasks", task),
        ("QueryFigureClusters", dataset),
        ("GetFileMeta", {**dataset, "URI": ids["URI"]}),
    ]
    requests = []
    for operation, body in bodies:
        data = json.dumps(body).encode()
        head = (
            f"POST /{operation} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        requests.append(head.encode() + data)
    return requests


# ---------------------------------------------------------------- the clients


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    server_errors: int = 0
    other_status: int = 0
    failures: int = 0
    closed_by_server: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one reply; its status, and whether the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split()[:2]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    await reader.readexactly(int(headers.get("content-length", "0")))
    keep = headers.get("connection") != "close" and (
        version == "HTTP/1.1" or headers.get("connection") == "keep-alive"
    )
    return int(status), keep


async def _client(
    port: int, requests: list[bytes], until: float, tally: Tally, i: int, interval: float
) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    n = i
    # with an interval, requests are due on a schedule and each latency counts from when
    # it was due: a slow reply delays the next ones, and that wait is counted too
    due = time.perf_counter() + interval * random.random()
    while time.monotonic() < until:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            if interval:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                start, due = due, due + interval
            else:
                start = time.perf_counter()
            writer.write(requests[n % len(requests)])
            status, keep = await asyncio.wait_for(_answer(reader), TIMEOUT)
            tally.latencies.append(time.perf_counter() - start)
            if not keep:
                tally.closed_by_server += 1
                writer.close()
                writer = reader = None
            if status >= 500:
                tally.server_errors += 1
            elif status != 200:
                tally.other_status += 1
            n += 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError, TimeoutError) as exc:
            tally.failures += 1
            kind = type(exc).__name__
            tally.failure_kinds[kind] = tally.failure_kinds.get(kind, 0) + 1
            if writer is not None:
                writer.close()
            writer = reader = None
    if writer is not None:
        writer.close()


async def hammer(
    port: int, requests: list[bytes], clients: int, seconds: float, rate: float = 0
) -> Tally:
    """`clients` connections sending for `seconds`: without pause, or `rate` requests/s in all."""
    tally = Tally()
    until = time.monotonic() + seconds
    interval = clients / rate if rate else 0.0
    await asyncio.gather(
        *(_client(port, requests, until, tally, i, interval) for i in range(clients))
    )
    return tally


# ---------------------------------------------------------------- report


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


def summary(tally: Tally, seconds: float) -> dict[str, Any]:
    lat = sorted(x * 1000 for x in tally.latencies)
    return {
        "requests": len(lat),
        "req_per_s": round(len(lat) / seconds, 1),
        "p50_ms": round(percentile(lat, 0.50), 1),
        "p95_ms": round(percentile(lat, 0.95), 1),
        "p99_ms": round(percentile(lat, 0.99), 1),
        "max_ms": round(lat[-1], 1) if lat else None,
        "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
        "5xx": tally.server_errors,
        "other_non_200": tally.other_status,
        "connection_failures": tally.failures,
        "closed_by_server": tally.closed_by_server,
        "failure_kinds": tally.failure_kinds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--rate", type=float, default=0, help="requests per second in all (0: without pause)"
    )
    parser.add_argument("--images", type=int, default=200, help="photos indexed and clustered")
    parser.add_argument("--threads", type=int, default=2, help="the server's stage workers")
    parser.add_argument("--label", default="openimm serve", help="the table row's name")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="openimm-bench-http-") as tmp:
        server, ids, uris = busy_server(Path(tmp) / "state", args.images, args.threads)
        try:
            print(f"clients start ({args.clients} for {args.seconds:g} s)", file=sys.stderr)
            requests = reads(ids)
            get_task = {"ProjectName": PROJECT, "TaskType": "FaceClustering", **ids}
            before = analysed(server, uris)
            load = hammer(server.port, requests, args.clients, args.seconds, args.rate)
            tally = asyncio.run(load)
            after = analysed(server, uris)
            task = server.call("GetTask", get_task)
        finally:
            server.stop()
    result = {
        "server": args.label,
        "clients": args.clients,
        "seconds": args.seconds,
        "rate": args.rate or None,
        **summary(tally, args.seconds),
        "task_status_at_end": task.get("Status"),
        # what the workers still did while the clients ran
        "photos_analysed_in_window": after - before,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    columns = ["req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "5xx", "non-200", "conn fail"]
    keys = ["req_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "5xx", "other_non_200"]
    keys.append("connection_failures")
    width = max(len(args.label), 6)
    print(f"{'server':<{width}}  " + "  ".join(f"{c:>9}" for c in columns))
    print(f"{args.label:<{width}}  " + "  ".join(f"{result[k]!s:>9}" for k in keys))
    print(
        f"\n{args.clients} keep-alive clients for {args.seconds:g} s"
        f"{f' at {args.rate:g} requests/s' if args.rate else ', without pause'}; "
        f"{result['requests']} requests answered"
    )
    if tally.closed_by_server:
        print(
            f"connections the server closed after a reply (no keep-alive): {tally.closed_by_server}"
        )
    if tally.failure_kinds:
        print("connection failures by kind: " + json.dumps(tally.failure_kinds))
    idle = "" if task.get("Status") == "Running" else " (the workers idled for part of the window)"
    print(
        f"clustering task at the end: {result['task_status_at_end']}{idle}; "
        f"the workers analysed {after - before} photos in the window"
    )
    print(f"load average (1 min) {result['loadavg_1m']} on {result['cpus']} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
