"""`openimm --version` names the installed package's version."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from openimm.local.cli import main


def test_version_is_the_installed_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"openimm {version('openimm')}"
