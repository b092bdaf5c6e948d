"""The figures' index by cluster on every table store: written with the figures, or not at all."""

from __future__ import annotations

import pytest

from openimm.domain.entities import dataset_key
from openimm.domain.figure_members import MemberIndex
from openimm.domain.figures import FigureBook
from openimm.ports import ConditionFailed, TableStore


def _row(figure_id: str, cluster: str) -> dict[str, object]:
    return {"FigureId": figure_id, "FigureClusterId": cluster, "_uri": f"oss://b/{figure_id}"}


def _members(table: TableStore, cluster: str) -> list[str]:
    return [fid for fid, _ in MemberIndex(table).members(dataset_key("p", "d"), cluster)]


def test_saves_moves_and_deletes_carry_the_index(table_store: TableStore) -> None:
    book = FigureBook(table_store)
    book.start_index("p", "d")
    names = [f"f{i:02d}" for i in range(12)]  # more than one transaction's worth of writes
    book.save("p", "d", [_row(n, "A") for n in names])
    assert _members(table_store, "A") == names
    read = list(book.all("p", "d"))
    book.save("p", "d", [{**r, "FigureClusterId": "B"} for r in read[:5]])
    assert _members(table_store, "A") == names[5:] and _members(table_store, "B") == names[:5]
    book.delete("p", "d", [names[0], names[7]])
    assert _members(table_store, "B") == names[1:5]
    assert book.cluster_files("p", "d", "A") == [f"oss://b/{n}" for n in names[5:] if n != "f07"]


def test_a_figure_written_meanwhile_keeps_its_index_row(table_store: TableStore) -> None:
    book = FigureBook(table_store)
    book.start_index("p", "d")
    book.save("p", "d", [_row("f1", "A")])
    (stale,) = book.all("p", "d")
    book.save("p", "d", [_row("f1", "B")])
    assert book.save("p", "d", [{**stale, "FigureClusterId": "C"}]) == ["f1"]
    with pytest.raises(ConditionFailed):
        book.replace_file_figures("p", "d", [], [{**stale, "FigureClusterId": "C"}])
    assert (_members(table_store, "A"), _members(table_store, "B")) == ([], ["f1"])
    assert _members(table_store, "C") == []
