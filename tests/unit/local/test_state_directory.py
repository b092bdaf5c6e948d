"""A state directory that cannot be written stops `run`, `serve` and `search` with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from openimm.local.cli import main
from openimm.local.exit_status import ExitStatus


@pytest.mark.parametrize(
    "command",
    [["run", "{photos}"], ["serve", "--port", "0"], ["search", "{photo}"]],
    ids=["run", "serve", "search"],
)
def test_an_unwritable_state_directory_exits_4_with_one_line(
    command: list[str], unwritable: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"x")
    args = [a.format(photos=tmp_path, photo=photo) for a in command]

    code = main([*args, "--data", str(unwritable)])

    out, err = capsys.readouterr()
    assert code == ExitStatus.ENVIRONMENT
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(unwritable) in err and "cannot be written" in err


def test_a_file_as_state_directory_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.write_text("a file")

    assert main(["run", str(tmp_path), "--data", str(state)]) == ExitStatus.ENVIRONMENT
    assert "Traceback" not in capsys.readouterr().err


def test_verbose_shows_the_traceback(
    unwritable: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tmp_path), "--data", str(unwritable), "-v"]) == 4
    assert "Traceback" in capsys.readouterr().err
