"""s.yaml as Serverless Devs resolves it: every fc3 resource against the component's props
schema, and what the schema cannot say (handlers, triggers, queues, settings).

The file is resolved as Serverless Devs does (tests/fc_deployment.py).

The schema is the fc3 component's (MIT), kept outside the repository: OPENIMM_FC3_SCHEMA,
by default ../shared/reference/fc3/schema.json beside the checkout. Where it is missing the
schema test says so and skips; the structural tests run everywhere.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from fc_deployment import ACCOUNT, SAMPLE_ENV, deployed_functions, mns_triggers, resolve
from openimm.adapters.aliyun import AliyunSettings

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(
    os.environ.get("OPENIMM_FC3_SCHEMA", ROOT.parent / "shared/reference/fc3/schema.json")
)
STAGES = ("detect", "embed", "cluster", "search")


@pytest.fixture(scope="module")
def functions() -> dict[str, dict[str, Any]]:
    return deployed_functions()


# ---------------------------------------------------------------- the schema


def test_every_resource_matches_the_fc3_props_schema(functions: dict[str, dict[str, Any]]) -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"no fc3 props schema at {SCHEMA} (set OPENIMM_FC3_SCHEMA to check it)")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        f"{name}: {'/'.join(map(str, error.absolute_path))}: {error.message}"
        for name, props in functions.items()
        for error in validator.iter_errors(props)
    ]
    assert problems == []
    # and the check is live: a wrong trigger type is refused
    broken = copy.deepcopy(functions["stage-detect"])
    broken["triggers"][0]["triggerType"] = "mns_queue"
    assert not validator.is_valid(broken)


# ---------------------------------------------------------------- structure, everywhere


def test_every_handler_exists_and_imports(functions: dict[str, dict[str, Any]]) -> None:
    for name, props in functions.items():
        module_path, _, attribute = props["handler"].rpartition(".")
        source = ROOT / f"{module_path}.py"
        assert source.is_file(), f"{name}: no {source.relative_to(ROOT)}"
        spec = importlib.util.spec_from_file_location(f"fc_handler_{name}", source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert callable(getattr(module, attribute)), f"{name}: {props['handler']} is not callable"


def test_every_function_has_a_role_logs_and_layer_arns(
    functions: dict[str, dict[str, Any]],
) -> None:
    layer = re.compile(r"^acs:fc:[a-z0-9-]+:\d+:layers/[A-Za-z0-9_-]+/versions/\d+$")
    for name, props in functions.items():
        assert props["role"].startswith(f"acs:ram::{ACCOUNT}:role/"), name
        assert props["logConfig"]["project"] and props["logConfig"]["logstore"], name
        assert props["layers"] and all(layer.match(arn) for arn in props["layers"]), name
        assert props["runtime"] in ("python3.10", "python3.12"), name
        # FC takes instanceConcurrency for custom runtimes only; the state is not on NAS
        assert "instanceConcurrency" not in props, name
        assert "nasConfig" not in props and "OPENIMM_DATA" not in props["environmentVariables"]


def test_the_environment_is_what_the_aliyun_stores_read(
    functions: dict[str, dict[str, Any]],
) -> None:
    for name, props in functions.items():
        env = props["environmentVariables"]
        assert env["OPENIMM_BACKEND"] == "aliyun", name
        settings = AliyunSettings.from_env(env)
        assert (settings.tablestore_instance, settings.mns_account_id) == ("openimm-prod", ACCOUNT)
        assert settings.queue_prefix == "openimm-"
        assert "/code/shared" in env["PYTHONPATH"].split(":"), name


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_reads_its_queue_and_gives_up_to_its_dead_letters(
    functions: dict[str, dict[str, Any]], stage: str
) -> None:
    props = functions[f"stage-{stage}"]
    assert props["handler"] == f"functions/stage_{stage}/index.handler"
    [(queue, config)] = mns_triggers(props).items()
    assert queue == f"openimm-{stage}"
    run = config["runOptions"]
    assert run["mode"] == "event-streaming" and config["asyncInvocationType"] is False
    # one message an invocation; a poison message goes on, to the dead letters
    assert run["batchWindow"]["CountBasedWindow"] == 1
    assert run["errorsTolerance"] == "ALL"
    assert run["deadLetterQueue"]["Arn"] == (
        f"acs:mns:cn-hangzhou:{ACCOUNT}:/queues/openimm-{stage}-dlq"
    )
    assert config["eventSourceConfig"]["eventSourceParameters"]["sourceMNSParameters"][
        "IsBase64Decode"
    ]


def test_the_dead_letter_function_reads_every_dead_letter_queue(
    functions: dict[str, dict[str, Any]],
) -> None:
    props = functions["stage-dead-letter"]
    assert props["handler"] == "functions/stage_dead_letter/index.handler"
    triggers = mns_triggers(props)
    assert sorted(triggers) == sorted(f"openimm-{stage}-dlq" for stage in STAGES)
    for config in triggers.values():
        assert config["runOptions"]["retryStrategy"]["PushRetryStrategy"] == (
            "EXPONENTIAL_DECAY_RETRY"
        )
        assert config["runOptions"]["deadLetterQueue"]["Arn"].endswith(":/queues/openimm-parked")


def test_uploads_reach_the_object_function(functions: dict[str, dict[str, Any]]) -> None:
    props = functions["on-object-created"]
    [trigger] = props["triggers"]
    assert trigger["triggerType"] == "oss"
    assert trigger["sourceArn"] == f"acs:oss:cn-hangzhou:{ACCOUNT}:openimm-photos"
    config = trigger["triggerConfig"]
    assert all(event.startswith("oss:ObjectCreated:") for event in config["events"])
    assert set(config["filter"]["key"]) == {"prefix", "suffix"}


def test_http_functions_are_anonymous_and_checked_by_openimm(
    functions: dict[str, dict[str, Any]],
) -> None:
    http = {
        name: trigger
        for name, props in functions.items()
        for trigger in props.get("triggers", [])
        if trigger["triggerType"] == "http"
    }
    assert "api" in http
    for name, trigger in http.items():
        # the IMM SDKs sign with IMM's scheme, which FC's own auth would refuse
        assert trigger["triggerConfig"]["authType"] == "anonymous", name
        assert "OPENIMM_ACCESS_KEYS" in functions[name]["environmentVariables"]


def test_the_code_package_leaves_out_what_functions_do_not_run() -> None:
    ignored = (ROOT / ".fcignore").read_text(encoding="utf-8").split()
    for path in (".venv/", "bench/", "tests/", ".git/", "layers/", "**/__pycache__/"):
        assert path in ignored, path


def test_a_missing_environment_variable_is_named() -> None:
    document = yaml.safe_load((ROOT / "s.yaml").read_text(encoding="utf-8"))
    env = {k: v for k, v in SAMPLE_ENV.items() if k != "OPENIMM_TABLESTORE_INSTANCE"}
    with pytest.raises(KeyError, match="OPENIMM_TABLESTORE_INSTANCE"):
        resolve(document, env)
