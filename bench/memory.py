"""Peak memory of OpenIMM on hostile and ordinary inputs, each case in a fresh process.

    python bench/memory.py                      # every case
    python bench/memory.py --cases detect,video
    python bench/memory.py --json               # one JSON object, for scripts

Cases (peak RSS of the measured process, read from the kernel with wait4):
  detect    one DetectImageFaces of a 10000x9999 one-colour PNG (about 100 MP, 300 KB)
  detect4   four DetectImageFaces of it at once (four threads, as four HTTP clients)
  video     `openimm run` on a folder holding one 1 GiB corrupt "video" (an MP4 header
            followed by random bytes)
  photos    `openimm run` on the sample photos

The hostile files are generated in a temporary folder (the PNG row by row, so the bench
itself never holds the image) and deleted afterwards. Each row also says what the
calls answered: faces found, or the error codes (an InvalidFile, a Throttling refusal).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

PNG_SIZE = (10_000, 9_999)
VIDEO_BYTES = 1024**3
CASES = ("detect", "detect4", "video", "photos")
PROJECT = "bench"
BUCKET = "hostile"


# ---------------------------------------------------------------- hostile files


def write_one_colour_png(
    path: Path, size: tuple[int, int], colour: bytes = b"\x80\x90\xa0"
) -> None:
    """An RGB PNG of one colour, compressed row by row (a few hundred KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    width, height = size
    row = b"\x00" + colour * width
    packer = zlib.compressobj(9)
    with path.open("wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        for _ in range(height):
            packed = packer.compress(row)
            if packed:
                out.write(chunk(b"IDAT", packed))
        out.write(chunk(b"IDAT", packer.flush()))
        out.write(chunk(b"IEND", b""))


def write_corrupt_video(path: Path, size: int) -> None:
    """An MP4 `ftyp` box, then random bytes up to `size`: what a damaged upload looks like."""
    head = struct.pack(">I", 24) + b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2"
    block = 16 * 1024 * 1024
    with path.open("wb") as out:
        out.write(head)
        left = size - len(head)
        while left > 0:
            out.write(os.urandom(min(block, left)))
            left -= block


# ---------------------------------------------------------------- measured processes


def measured(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run `command`; its peak RSS (MB), wall time (s) and stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return usage.ru_maxrss / 1024, time.perf_counter() - started, text


def detect_child(folder: Path, state: Path, name: str, count: int) -> None:
    """In a fresh process: `count` DetectImageFaces of one file at once; print the outcomes."""
    from openimm.bootstrap import Settings
    from openimm.errors import ImmError
    from openimm.local.runtime import LocalRuntime

    settings = Settings.from_env()
    settings = Settings(
        **{**settings.__dict__, "data_dir": state, "mounts": {BUCKET: folder.resolve()}}
    )
    outcomes: list[str] = []
    with LocalRuntime(settings) as runtime:
        app = runtime.app
        app.call("CreateProject", {"ProjectName": PROJECT}, "bench")
        gate = threading.Barrier(count)

        def detect() -> None:
            gate.wait()
            try:
                found = app.call(
                    "DetectImageFaces",
                    {"ProjectName": PROJECT, "SourceURI": f"oss://{BUCKET}/{name}"},
                    "bench",
                )
                outcomes.append(f"{len(found.get('Faces', []))} faces")
            except ImmError as exc:
                outcomes.append(exc.code)

        threads = [threading.Thread(target=detect) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print(json.dumps(sorted(outcomes)))


def _run_outcome(text: str) -> str:
    try:
        report: dict[str, Any] = json.loads(text)
    except ValueError:
        return "no report"
    failed = report.get("failed_files", [])
    faces = sum(len(c["Figures"]) for c in report.get("clusters", []))
    faces += len(report.get("unclustered", []))
    parts = [f"{faces} faces in {len(report.get('clusters', []))} clusters"]
    if failed:
        reasons = sorted({str(f.get("Reason", ""))[:90] for f in failed})
        parts.append(f"{len(failed)} failed: {'; '.join(reasons)}")
    return ", ".join(parts)


def run_case(case: str, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """Build the case's input, run it in a fresh process, and return its row."""
    me = [sys.executable, str(Path(__file__).resolve())]
    state = work / f"state-{case}"
    if case in ("detect", "detect4"):
        folder = work / "png"
        folder.mkdir(exist_ok=True)
        name = "one-colour.png"
        if not (folder / name).exists():
            write_one_colour_png(folder / name, PNG_SIZE)
        count = 4 if case == "detect4" else 1
        command = [*me, "--child-detect", str(folder), str(state), name, str(count)]
        peak, seconds, text = measured(command, env)
        outcome = ", ".join(json.loads(text or "[]")) or "no answer"
    else:
        if case == "video":
            folder = work / "video"
            folder.mkdir(exist_ok=True)
            write_corrupt_video(folder / "corrupt.mp4", VIDEO_BYTES)
        else:
            from openimm.local.samples import fetch_sample_photos, sample_dir

            folder = fetch_sample_photos(sample_dir())
        openimm = [sys.executable, "-m", "openimm.local.cli"]
        command = [*openimm, "run", str(folder), "--data", str(state), "--json", "-q"]
        peak, seconds, text = measured(command, env)
        outcome = _run_outcome(text)
        if case == "video":
            (folder / "corrupt.mp4").unlink()
    return {
        "case": case,
        "peak_rss_mb": round(peak),
        "seconds": round(seconds, 1),
        "outcome": outcome,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child-detect", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_detect:
        folder, state, name, count = args.child_detect
        detect_child(Path(folder), Path(state), name, int(count))
        return
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    env = {**os.environ, "OPENIMM_LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryDirectory(prefix="openimm-memory-") as tmp:
        rows = [run_case(case, Path(tmp), env) for case in cases]
    if args.json:
        print(json.dumps({"rows": rows, "load": os.getloadavg()[0]}))
        return
    print(f"{'case':<8} {'peak RSS MB':>11} {'seconds':>8}  outcome")
    for row in rows:
        print(f"{row['case']:<8} {row['peak_rss_mb']:>11} {row['seconds']:>8}  {row['outcome']}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
