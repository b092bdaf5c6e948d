"""s.yaml as Serverless Devs resolves it: every fc3 resource against the component's props
schema, and what the schema cannot say (handlers, triggers, queues, settings).

The `s` CLI needs the network, so the file is resolved here the way Serverless Devs does
for what s.yaml uses: `${vars.*}` (a whole value may be a mapping), `${env('NAME')}` and
`${env('NAME', 'default')}` from a sample environment, `${config('AccountID')}`, and a
resource's `extend` template merged under its props (props win).

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

from openimm.adapters.aliyun import AliyunSettings

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(
    os.environ.get("OPENIMM_FC3_SCHEMA", ROOT.parent / "shared/reference/fc3/schema.json")
)
ACCOUNT = "1234567890123456"
# what a deployer exports before `s deploy` (README, "Deploy to Function Compute")
LAYERS = f"acs:fc:cn-hangzhou:{ACCOUNT}:layers"
SAMPLE_ENV = {
    "OPENIMM_FC_DEPS_LAYER_ARN": f"{LAYERS}/openimm-deps-py310/versions/1",
    "OPENIMM_FC_MODELS_LAYER_ARN": f"{LAYERS}/openimm-models/versions/1",
    "OPENIMM_FC_API_ROLE_ARN": f"acs:ram::{ACCOUNT}:role/openimm-api",
    "OPENIMM_FC_STAGE_ROLE_ARN": f"acs:ram::{ACCOUNT}:role/openimm-stage",
    "OPENIMM_FC_OBJECT_ROLE_ARN": f"acs:ram::{ACCOUNT}:role/openimm-object",
    "OPENIMM_SLS_PROJECT": "openimm-logs",
    "OPENIMM_TABLESTORE_INSTANCE": "openimm-prod",
    "OPENIMM_PHOTO_BUCKET": "openimm-photos",
    "OPENIMM_WORK_BUCKET": "openimm-work",
}
STAGES = ("detect", "embed", "cluster", "search")
_EXPR = re.compile(r"\$\{([^{}]+)\}")
_ENV = re.compile(r"""env\(\s*['"]([A-Za-z0-9_]+)['"]\s*(?:,\s*['"]([^'"]*)['"]\s*)?\)""")


# ---------------------------------------------------------------- resolution


def resolve(document: dict[str, Any], env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The props of each resource, resolved: {resource name: {"component", "props"}}."""
    variables = _substitute(document.get("vars", {}), {}, env)
    templates = _substitute(document.get("template", {}), variables, env)
    resolved = {}
    for name, resource in document["resources"].items():
        props = _substitute(resource.get("props", {}), variables, env)
        extend = resource.get("extend")
        if extend:
            props = _merge(templates[extend["name"]], props)
        resolved[name] = {"component": resource["component"], "props": props}
    return resolved


def _substitute(value: Any, variables: dict[str, Any], env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, variables, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, env) for v in value]
    if not isinstance(value, str):
        return value
    whole = _EXPR.fullmatch(value)
    if whole:  # `${vars.env}` may stand for a mapping
        return _substitute(_expression(whole.group(1), variables, env), variables, env)
    return _EXPR.sub(lambda m: str(_expression(m.group(1), variables, env)), value)


def _expression(text: str, variables: dict[str, Any], env: dict[str, str]) -> Any:
    text = text.strip()
    if text.startswith("vars."):
        value: Any = variables
        for part in text.split(".")[1:]:
            value = value[part]
        return copy.deepcopy(value)
    match = _ENV.fullmatch(text)
    if match:
        name, default = match.groups()
        if name in env:
            return env[name]
        if default is None:
            raise KeyError(f"s.yaml needs the environment variable {name}")
        return default
    if text == "config('AccountID')":
        return ACCOUNT
    raise ValueError(f"unknown expression ${{{text}}} in s.yaml")


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return override


@pytest.fixture(scope="module")
def functions() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((ROOT / "s.yaml").read_text(encoding="utf-8"))
    resolved = resolve(document, SAMPLE_ENV)
    assert {r["component"] for r in resolved.values()} == {"fc3"}
    return {name: r["props"] for name, r in resolved.items()}


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


def _mns_triggers(props: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The function's MNS queue triggers by queue name."""
    found = {}
    for trigger in props.get("triggers", []):
        config = trigger["triggerConfig"]
        if trigger["triggerType"] == "eventbridge":
            assert config["eventSourceConfig"]["eventSourceType"] == "MNS"
            queue = config["eventSourceConfig"]["eventSourceParameters"]["sourceMNSParameters"]
            found[queue["QueueName"]] = config
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_reads_its_queue_and_gives_up_to_its_dead_letters(
    functions: dict[str, dict[str, Any]], stage: str
) -> None:
    props = functions[f"stage-{stage}"]
    assert props["handler"] == f"functions/stage_{stage}/index.handler"
    [(queue, config)] = _mns_triggers(props).items()
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
    triggers = _mns_triggers(props)
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
