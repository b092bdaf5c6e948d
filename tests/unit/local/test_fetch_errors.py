"""`openimm models fetch` and `samples fetch` that cannot write end with one line and exit 4."""

from __future__ import annotations

from pathlib import Path

import pytest

from openimm.local.cli import main
from openimm.local.exit_status import ExitStatus


@pytest.mark.parametrize(
    "command", [["models", "fetch", "--dest"], ["samples", "fetch"]], ids=["models", "samples"]
)
def test_fetching_into_an_unwritable_folder_exits_4_with_one_line(
    command: list[str], unwritable: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, str(unwritable)]) == ExitStatus.ENVIRONMENT

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not be fetched" in err and "Traceback" not in err
