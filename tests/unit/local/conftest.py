"""Fixtures of the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def unwritable(tmp_path: Path) -> Path:
    """A folder that cannot be created: its parent is a file (root ignores permissions)."""
    parent = tmp_path / "a-file"
    parent.write_text("not a folder")
    return parent / "folder"
