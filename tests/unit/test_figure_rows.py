"""Figure rows: a save after a long read writes only the rows nobody changed meanwhile."""

from __future__ import annotations

from pathlib import Path

from openimm.adapters.local import SqliteTableStore
from openimm.domain.entities import dataset_key
from openimm.domain.figure_writes import MEMBERSHIP
from openimm.domain.figures import FIGURES, VERSION, FigureBook


def _row(figure_id: str, cluster: str = "figure-cluster-id-unavailable") -> dict[str, object]:
    return {"FigureId": figure_id, "FigureClusterId": cluster, "_file": f"file-{figure_id}"}


def test_a_save_leaves_rows_changed_or_deleted_since_they_were_read(tmp_path: Path) -> None:
    table = SqliteTableStore(tmp_path / "t.db")
    book = FigureBook(table)
    names = [f"f{i:03d}" for i in range(30)]  # more than one transaction's worth
    book.save("p", "d", [_row(n) for n in names])
    read = {r["FigureId"]: r for r in book.all("p", "d")}
    assert all(VERSION in r for r in read.values())
    # meanwhile: one file is deleted, another re-analysed
    book.delete("p", "d", ["f003"])
    book.save("p", "d", [_row("f017", "figure-cluster-id-independent")])
    changed = [{**r, "FigureClusterId": "Cluster-1"} for r in read.values()]
    assert sorted(book.save("p", "d", changed)) == ["f003", "f017"]
    stored = {r["FigureId"]: r for r in book.all("p", "d")}
    assert "f003" not in stored
    assert stored["f017"]["FigureClusterId"] == "figure-cluster-id-independent"
    assert sum(r["FigureClusterId"] == "Cluster-1" for r in stored.values()) == 28
    # the version and the membership read are bookkeeping, never stored
    raw = list(table.scan_partition(FIGURES, dataset_key("p", "d")))
    assert len(raw) == 29 and all(not {VERSION, MEMBERSHIP} & set(r.data) for r in raw)
