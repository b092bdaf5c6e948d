"""bench/reliability.py's sections at a small size: nothing lost, doubled or stuck.

Real models, real SQLite, real `openimm serve` processes killed with SIGKILL; the bench's
full size (24 photos, 20 kills) is run by hand (bench/README.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench_scripts import load_bench

pytestmark = pytest.mark.models

FILES = 4
KILLS = 5
SEED = 17

reliability = load_bench("reliability")


def _failed(rows: list[Any]) -> list[Any]:
    return [row for row in rows if row.ok is False]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="module")
def delivered(work: Path, sample_photos: Path, model_dir: Path) -> tuple[Any, list[Any]]:
    """The in-order reference and the shuffled double delivery's rows."""
    return reliability.delivery_section(sample_photos, work, FILES, SEED)  # type: ignore[no-any-return]


def test_each_message_twice_and_out_of_order_gives_the_same_results(
    delivered: tuple[Any, list[Any]],
) -> None:
    reference, rows = delivered
    assert sum(reference.faces.values()) >= FILES - 1
    assert [row.what for row in rows if row.ok is not None] == [
        "twice, shuffled: results as reference",
        "notifications lost/doubled",
    ]
    assert _failed(rows) == []


def test_killed_workers_and_servers_lose_and_double_nothing(
    work: Path, sample_photos: Path, delivered: tuple[Any, list[Any]]
) -> None:
    reference, _ = delivered
    rows = reliability.kills_section(sample_photos, work, FILES, KILLS, SEED, reference)
    print("\n" + reliability.table(rows))
    survived = next(row for row in rows if row.what.startswith("kills survived"))
    assert int(survived.value.split()[0]) >= KILLS
    # a small run may miss a short stage: the full size is where every stage is hit
    assert _failed([row for row in rows if row.what != "kills by stage in flight"]) == []


def test_a_full_disk_keeps_the_log_bounded_and_is_recovered_from_without_restart(
    work: Path, sample_photos: Path, model_dir: Path
) -> None:
    rows = reliability.disk_section(sample_photos, work, size_mb=32, wait_s=10)
    print("\n" + reliability.table(rows))
    if rows[0].value.startswith("not measured"):
        pytest.skip(rows[0].value)
    by_what = {row.what: row for row in rows}
    assert by_what["log lines while full"].ok
    assert by_what["recovery without restart"].ok
    assert by_what["task begun while full, once space is back"].ok
    assert by_what["task while full ends with a Code"].ok


def test_fuzzed_bodies_get_no_5xx(work: Path) -> None:
    rows = reliability.fuzz_section(work, per_operation=5, seed=SEED)
    assert _failed(rows) == []
