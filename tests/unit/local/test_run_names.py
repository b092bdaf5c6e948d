"""`openimm run` names its bucket and dataset after the folder, validly for any folder name."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter

from openimm.api.base import Name
from openimm.local.cli import bucket_name_for, dataset_name_for


@pytest.mark.parametrize("folder", ["2024", "250px", "Holiday Photos", "a", "--", "_x", "Été"])
def test_every_folder_gives_a_dataset_name_imm_accepts(folder: str) -> None:
    dataset = dataset_name_for(bucket_name_for(Path(folder)))
    TypeAdapter(Name).validate_python(dataset)


def test_a_name_that_starts_with_a_letter_is_kept() -> None:
    assert dataset_name_for("holiday-photos") == "holiday_photos"
    assert dataset_name_for("2024") == "_2024"
