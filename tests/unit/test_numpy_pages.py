"""Importing openimm turns numpy's huge-page requests off, unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys

SHOW = "import openimm, os; print(os.environ['NUMPY_MADVISE_HUGEPAGE'])"


def _imported_with(value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if value is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = value
    done = subprocess.run(
        [sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_off_by_default_and_a_user_s_choice_kept() -> None:
    assert _imported_with(None) == "0"
    assert _imported_with("1") == "1"
