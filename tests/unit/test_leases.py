"""The dataset lease: taken at once from a holder that is provably gone, kept by renewal,
and a holder that lost it stops before writing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from openimm.adapters.local import SqliteTableStore
from openimm.pipeline.holders import this_process
from openimm.pipeline.leases import LEASES, DatasetBusy, DatasetLease, LeaseLost

KEY_ROW = ("p1/d1", "cluster")


def _lease(tmp_path: Path, seconds: float = 180) -> DatasetLease:
    return DatasetLease(SqliteTableStore(tmp_path / "table.db"), seconds)


def test_a_killed_holders_lease_is_taken_at_once(tmp_path: Path) -> None:
    # another process takes the lease and is killed while holding it (a crashed run)
    script = textwrap.dedent(
        f"""
        import sys, time
        from openimm.adapters.local import SqliteTableStore
        from openimm.pipeline.leases import DatasetLease
        lease = DatasetLease(SqliteTableStore({str(tmp_path / "table.db")!r}), 180)
        with lease.held("p1", "d1", "task-1"):
            print("held", flush=True)
            time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    lease = _lease(tmp_path)
    with pytest.raises(DatasetBusy), lease.held("p1", "d1"):  # alive: busy
        pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    started = time.monotonic()
    with lease.held("p1", "d1", "task-2"):
        record = SqliteTableStore(tmp_path / "table.db").get(LEASES, *KEY_ROW)
        assert record is not None and record.data["task_id"] == "task-2"
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "process",
    [
        {**this_process(), "space": "another-machine/pid:[1]"},
        {**this_process(), "pid": "not a pid"},
        None,
        "garbage",
    ],
)
def test_a_holder_not_provably_gone_keeps_its_lease(tmp_path: Path, process: object) -> None:
    table = SqliteTableStore(tmp_path / "table.db")
    table.put(LEASES, *KEY_ROW, {"holder": "h", "process": process}, ttl_seconds=180)
    with pytest.raises(DatasetBusy), _lease(tmp_path).held("p1", "d1"):
        pass


def test_a_stalled_holder_finds_its_lease_lost_before_writing(tmp_path: Path) -> None:
    lease = _lease(tmp_path, seconds=0.3)
    with lease.held("p1", "d1") as mine:
        mine.keep()  # renewed in time
        time.sleep(0.5)  # stalled past the expiry: another holder takes the dataset
        with lease.held("p1", "d1"), pytest.raises(LeaseLost):
            mine.keep()
    # the successor gave it back, and the stalled holder deleted nothing of another's
    with lease.held("p1", "d1"):
        pass
