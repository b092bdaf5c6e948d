"""`openimm serve` and access keys: who may bind where, and secrets kept out of the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from alibabacloud_imm20200930 import models as imm
from alibabacloud_imm20200930.client import Client
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_openapi.exceptions import ClientException

from serve_process import ServeProcess

SECRET = "serve-access-secret"
KEYS = json.dumps(
    {
        "AccessKeys": [
            {"AccessKeyId": "LTAI-a", "AccessKeySecret": SECRET, "Projects": {"*": "write"}}
        ]
    }
)


def _serve(data: Path, host: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "openimm.local.cli", "serve", "--host", host]
    command += ["--port", "0", "--data", str(data)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.org"])
def test_serve_refuses_a_reachable_host_without_keys(tmp_path: Path, host: str) -> None:
    done = _serve(tmp_path, host, {"OPENIMM_ACCESS_KEYS": "", "OPENIMM_ACCESS_KEYS_FILE": ""})
    assert done.returncode == 2
    assert f"refusing to serve on {host}" in done.stderr
    assert "OPENIMM_ACCESS_KEYS_FILE" in done.stderr and "Traceback" not in done.stderr


def test_a_broken_keys_file_is_a_usage_error(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('{"AccessKeys": [{"AccessKeyId": "LTAI-a"}]}')
    done = _serve(tmp_path, "127.0.0.1", {"OPENIMM_ACCESS_KEYS_FILE": str(keys)})
    assert done.returncode == 2
    assert "AccessKeySecret" in done.stderr and "Traceback" not in done.stderr


def test_with_keys_serve_checks_them_serves_its_contract_never_a_secret(tmp_path: Path) -> None:
    process = ServeProcess(tmp_path, env={"OPENIMM_ACCESS_KEYS": KEYS})
    try:
        # the contract is public: no signature needed to read it
        with urllib.request.urlopen(f"{process.url}/openapi.json", timeout=30) as reply:
            assert reply.status == 200
            assert "/CreateFigureClusteringTask" in json.loads(reply.read())["paths"]
        for secret in (SECRET, "a-wrong-secret"):
            config = openapi.Config(
                access_key_id="LTAI-a",
                access_key_secret=secret,
                endpoint=f"127.0.0.1:{process.port}",
                protocol="http",
            )
            try:
                Client(config).create_project(imm.CreateProjectRequest(project_name="p1"))
            except ClientException as refused:
                assert refused.code == "SignatureDoesNotMatch"
    finally:
        process.stop()
    assert process.proc.stdout is not None
    output = process.banner + process.proc.stdout.read()
    assert "; 1 access key;" in process.banner
    assert SECRET not in output
