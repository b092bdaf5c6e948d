"""template.yml: cfn-lint clean, every handler real, every queue drained, least privilege."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aws_template import Resolver, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = {
    name: spec["Properties"]
    for name, spec in RESOURCES.items()
    if spec["Type"] == "AWS::Serverless::Function"
}
GLOBAL_ENV: dict[str, Any] = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
# the HTTP API's integration limit (seconds)
HTTP_API_LIMIT = 30


def _resolver() -> Resolver:
    defaults = {
        name: str(spec.get("Default", f"<{name}>")) for name, spec in TEMPLATE["Parameters"].items()
    }
    resolver = Resolver("stack", defaults)
    for logical in RESOURCES:
        resolver.refs[logical] = f"<{logical}>"
        resolver.attributes[(logical, "Arn")] = f"<{logical}.Arn>"
    return resolver


def _sqs_events(function: dict[str, Any]) -> list[dict[str, Any]]:
    events = function.get("Events", {}).values()
    return [event["Properties"] for event in events if event["Type"] == "SQS"]


def test_cfn_lint_reports_nothing() -> None:
    # cfn-lint's command line (it has no __main__): exit status 0 is no error, warning or
    # informational finding, with the SAM transform applied
    command = "import sys; from cfnlint.runner import main; sys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", command, str(ROOT / "template.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_every_function_runs_a_handler_that_exists() -> None:
    for name, function in FUNCTIONS.items():
        if function.get("PackageType") == "Image":
            # the image holds the repository's functions/ at its working directory
            spec = function["ImageConfig"]["Command"][0]
            assert RESOURCES[name]["Metadata"]["Dockerfile"] == "layers/Dockerfile", name
            root = ROOT
        else:
            spec = function["Handler"]
            root = ROOT / function["CodeUri"]
            assert function["Runtime"].startswith("python3"), name
        module, _, attribute = spec.rpartition(".")
        path = root / f"{module}.py"
        assert path.is_file(), f"{name}: {path} is missing"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assigned = {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert attribute in assigned, f"{name}: {path} defines no {attribute}"


def test_zip_functions_find_openimm_in_their_layer() -> None:
    layer = RESOURCES["OpenimmLayer"]
    assert (ROOT / layer["Properties"]["ContentUri"] / "openimm" / "__init__.py").is_file()
    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    for name, function in FUNCTIONS.items():
        if function.get("PackageType") != "Image":
            assert function["Layers"] == [{"Ref": "OpenimmLayer"}], name
            assert function["Runtime"] == "python3.12", name


def test_the_layer_pins_what_the_image_pins() -> None:
    def pins(path: Path) -> dict[str, str]:
        found = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                name, version = line.split("==")
                found[re.sub(r"[-_.]+", "-", name).lower()] = version
        return found

    layer = pins(ROOT / "shared" / "requirements.txt")
    image = pins(ROOT / "layers" / "constraints.txt")
    assert layer, "shared/requirements.txt pins nothing"
    assert {name: image.get(name) for name in layer} == layer


def test_every_stage_queue_has_a_dead_letter_queue_after_max_deliveries() -> None:
    resolver = _resolver()
    max_deliveries = resolver.resolve(GLOBAL_ENV["OPENIMM_MAX_DELIVERIES"])
    queues = {n for n, spec in RESOURCES.items() if spec["Type"] == "AWS::SQS::Queue"}
    dead = set()
    for name in sorted(queues):
        redrive = RESOURCES[name]["Properties"].get("RedrivePolicy")
        if redrive is None:
            continue
        target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert target in queues, name
        assert resolver.resolve(redrive["maxReceiveCount"]) == max_deliveries, name
        assert resolver.resolve(RESOURCES[target]["Properties"]["QueueName"]) == (
            resolver.resolve(RESOURCES[name]["Properties"]["QueueName"]) + "-dlq"
        )
        dead.add(target)
    assert len(dead) == 4
    # every queue with no dead-letter queue of its own is one, and the dead-letter
    # function drains them all
    assert queues - dead == {n for n in queues if "RedrivePolicy" in RESOURCES[n]["Properties"]}
    drainer = _sqs_events(FUNCTIONS["StageDeadLetter"])
    drained = {event["Queue"]["Fn::GetAtt"][0] for event in drainer}
    assert drained == dead


def test_queues_outlast_their_consumers_six_times() -> None:
    consumed = set()
    for name, function in FUNCTIONS.items():
        timeout = function.get("Timeout", TEMPLATE["Globals"]["Function"].get("Timeout", 3))
        for event in _sqs_events(function):
            queue = event["Queue"]["Fn::GetAtt"][0]
            assert RESOURCES[queue]["Properties"]["VisibilityTimeout"] >= 6 * timeout, queue
            assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"], name
            assert 1 <= event["BatchSize"] <= 10, name
            consumed.add(queue)
    queues = {n for n, spec in RESOURCES.items() if spec["Type"] == "AWS::SQS::Queue"}
    assert consumed == queues


def test_http_functions_end_within_the_http_api_limit() -> None:
    for name, function in FUNCTIONS.items():
        events = [e for e in function.get("Events", {}).values() if e["Type"] == "HttpApi"]
        if not events:
            continue
        assert function["Timeout"] < HTTP_API_LIMIT, name
        for event in events:
            assert event["Properties"]["TimeoutInMillis"] <= HTTP_API_LIMIT * 1000
            # OpenIMM checks the IMM SDK's own signature: no AWS authoriser in between
            assert "Auth" not in event["Properties"], name
    routes = {
        (e["Properties"]["Method"], e["Properties"]["Path"])
        for e in FUNCTIONS["Api"]["Events"].values()
    }
    assert routes == {("POST", "/"), ("POST", "/{operation}"), ("GET", "/openapi.json")}


def test_functions_are_told_every_resource() -> None:
    resolver = _resolver()
    env = {name: resolver.resolve(value) for name, value in GLOBAL_ENV.items()}
    assert env["OPENIMM_BACKEND"] == "aws"
    assert env["OPENIMM_DYNAMODB_TABLE"] == "<Table>"
    assert env["OPENIMM_WORK_BUCKET"] == "<WorkBucket>"
    assert env["OPENIMM_ACCESS_KEYS"] == "<AccessKeys>"
    assert (env["OPENIMM_TRIGGER_PROJECT"], env["OPENIMM_TRIGGER_DATASET"]) == ("", "")
    prefix = env["OPENIMM_SQS_PREFIX"]
    for stage in ("detect", "embed", "cluster", "search"):
        queue = RESOURCES[f"{stage.capitalize()}Queue"]["Properties"]["QueueName"]
        assert resolver.resolve(queue) == prefix + stage
    topic = resolver.resolve(RESOURCES["TaskTopic"]["Properties"]["TopicName"])
    arn = f"arn:aws:sns:us-east-1:123456789012:{topic}"
    assert arn == env["OPENIMM_SNS_ARN_PREFIX"] + env["OPENIMM_DEFAULT_TOPIC"]
    assert TEMPLATE["Parameters"]["AccessKeys"]["NoEcho"] is True


def _policy_resources(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _names_in(resource: Any) -> set[str]:
    # the template's names an ARN is built from: Refs, GetAtts and ${...} of a Sub
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return {resource["Fn::GetAtt"][0]}
    if isinstance(resource, dict) and "Ref" in resource:
        return {resource["Ref"]}
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        names = re.findall(r"\$\{([^}]+)\}", resource["Fn::Sub"])
        return {name.split(".")[0] for name in names if not name.startswith("AWS::")}
    raise AssertionError(f"a literal resource: {resource!r}")


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_has_a_role_naming_only_the_stacks_resources(name: str) -> None:
    function = FUNCTIONS[name]
    # SAM's own role would add AWSLambdaSQSQueueExecutionRole (every queue of the account)
    assert "Policies" not in function, name
    assert function["Role"] == {"Fn::GetAtt": [f"{name}Role", "Arn"]}
    assert function["LoggingConfig"] == {"LogGroup": {"Ref": f"{name}Logs"}}
    role = RESOURCES[f"{name}Role"]["Properties"]
    assert "ManagedPolicyArns" not in role
    statements = [
        statement
        for policy in role["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    own = set(RESOURCES) | {"PhotoBucketName"}
    received: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert "*" not in action, (name, action)
        for resource in _policy_resources(statement["Resource"]):
            assert resource != "*", name
            assert _names_in(resource) <= own, (name, resource)
            if isinstance(resource, dict) and "Fn::Sub" in resource:
                # wildcards: the objects of a named bucket, or the topics under the
                # stack's prefix (a request's Notification names its topic)
                text = resource["Fn::Sub"]
                if "*" in text:
                    assert text.count("*") == 1, text
                    assert text.endswith(("}/*", ":${AWS::StackName}-*")), text
            if "sqs:ReceiveMessage" in statement["Action"]:
                received |= _names_in(resource)
    logs = {"Fn::GetAtt": [f"{name}Logs", "Arn"]}
    assert any(statement["Resource"] == logs for statement in statements), name
    # it receives from exactly the queues that trigger it
    assert received == {event["Queue"]["Fn::GetAtt"][0] for event in _sqs_events(function)}


def test_image_functions_take_nothing_a_zip_function_has() -> None:
    # E3685: Handler, Runtime and Layers reach image functions through Globals too
    assert not {"Runtime", "Handler", "Layers"} & set(TEMPLATE["Globals"]["Function"])
    for name, function in FUNCTIONS.items():
        if function.get("PackageType") == "Image":
            assert not {"Runtime", "Handler", "Layers", "CodeUri"} & set(function), name


ZIP_FUNCTIONS = sorted(n for n, f in FUNCTIONS.items() if f.get("PackageType") != "Image")
# what the ML image has and OpenimmLayer has not; and what the layer's libraries import
# only if it is there (botocore: certifi, else its own CA bundle; urllib3: backports.zstd)
NOT_IN_THE_LAYER = ("cv2", "onnxruntime", "dlib", "onnx", "usearch", "h5py", "certifi", "backports")
_IMPORTS = """
import importlib, importlib.metadata, json, sys
for name in {blocked!r}:
    sys.modules[name] = None  # importing it raises ImportError, as it would in the layer
module = importlib.import_module({module!r})
assert callable(getattr(module, {attribute!r}))
from openimm.bootstrap import application
application()
owners = importlib.metadata.packages_distributions()
# loaded for real (not blocked), and not the venv's own start-up hooks (_distutils_hack)
top = {{n.partition(".")[0] for n, m in sys.modules.items() if m and not n.startswith("_")}}
print(json.dumps(sorted({{dist for name in top for dist in owners.get(name, [])}})))
"""


def _layer_requirements() -> set[str]:
    text = (ROOT / "shared" / "requirements.txt").read_text(encoding="utf-8")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() for line in lines if line}


@pytest.mark.parametrize("name", ZIP_FUNCTIONS)
def test_zip_functions_need_nothing_beyond_their_layer(name: str, tmp_path: Path) -> None:
    # The function's handler module and the application it builds, in a process where the
    # packages the layer leaves out cannot be imported; every distribution it loaded is
    # in the layer.
    from aws_template import deploy

    function = FUNCTIONS[name]
    module, _, attribute = function["Handler"].rpartition(".")
    env = {**deploy().function_env(name), "OPENIMM_DATA": str(tmp_path)}
    script = _IMPORTS.format(
        blocked=NOT_IN_THE_LAYER, module=module.replace("/", "."), attribute=attribute
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT / function["CodeUri"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = {re.sub(r"[-_.]+", "-", dist).lower() for dist in json.loads(done.stdout)}
    assert loaded - {"openimm"} <= _layer_requirements()
