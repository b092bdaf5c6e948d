"""s.yaml as Serverless Devs resolves it, for the tests that check it and the FC-shaped
end-to-end test that runs its functions.

The `s` CLI needs the network, so the file is resolved here the way Serverless Devs does
for what s.yaml uses: `${vars.*}` (a whole value may be a mapping), `${env('NAME')}` and
`${env('NAME', 'default')}` from a sample environment, `${config('AccountID')}`, and a
resource's `extend` template merged under its props (props win).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
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
_EXPR = re.compile(r"\$\{([^{}]+)\}")
_ENV = re.compile(r"""env\(\s*['"]([A-Za-z0-9_]+)['"]\s*(?:,\s*['"]([^'"]*)['"]\s*)?\)""")


def deployed_functions(env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The props of every fc3 resource of s.yaml, by resource name."""
    document = yaml.safe_load((ROOT / "s.yaml").read_text(encoding="utf-8"))
    resolved = resolve(document, SAMPLE_ENV if env is None else env)
    assert {r["component"] for r in resolved.values()} == {"fc3"}
    return {name: r["props"] for name, r in resolved.items()}


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


def mns_triggers(props: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The function's MNS queue triggers by queue name."""
    found = {}
    for trigger in props.get("triggers", []):
        config = trigger["triggerConfig"]
        if trigger["triggerType"] == "eventbridge":
            assert config["eventSourceConfig"]["eventSourceType"] == "MNS"
            queue = config["eventSourceConfig"]["eventSourceParameters"]["sourceMNSParameters"]
            found[queue["QueueName"]] = config
    return found
