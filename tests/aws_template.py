"""template.yml's own storage resources, created on the session's moto server.

`deploy()` reads the table, buckets, queues (with their redrive policies) and topic from
template.yml as CloudFormation would, creates them on moto under a fresh stack name, and
answers their names, ARNs and queue URLs, and the environment each function gets (the
template's variables, resolved, plus what Lambda and boto3 add), and which queue or bucket
triggers which function with what batch size. The functions themselves are not created:
moto cannot run them here, so tests call their handlers as those triggers would.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aws_sandbox import REGION, SANDBOX

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yml"
ACCOUNT = "123456789012"  # moto's default account
PARTITION = "aws"

# ---------------------------------------------------------------- reading the template


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, !GetAtt...) in their long form."""


def _long_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        # !GetAtt Resource.Attribute is the short spelling of [Resource, Attribute]
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _long_form)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as CloudFormation reads it, short tags spelled out."""
    # a SafeLoader: the tags become plain dicts, nothing is constructed
    loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_TemplateLoader)
    assert isinstance(loaded, dict)
    return loaded


# ---------------------------------------------------------------- resolving intrinsics


class Unresolved(LookupError):
    """A reference to a resource not created yet (or never: a function, the API)."""


@dataclass
class Resolver:
    """Ref, Fn::GetAtt and Fn::Sub over parameters, pseudo parameters and created resources."""

    stack: str
    parameters: dict[str, str]
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)

    def pseudo(self) -> dict[str, str]:
        return {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": self.stack,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
        }

    def ref(self, name: str) -> str:
        for source in (self.pseudo(), self.parameters, self.refs):
            if name in source:
                return source[name]
        raise Unresolved(name)

    def get_att(self, resource: str, attribute: str) -> str:
        try:
            return self.attributes[(resource, attribute)]
        except KeyError:
            raise Unresolved(f"{resource}.{attribute}") from None

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic function replaced by its value."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return self.ref(value["Ref"])
        if set(value) == {"Fn::GetAtt"}:
            resource, attribute = value["Fn::GetAtt"]
            return self.get_att(resource, attribute)
        if set(value) == {"Fn::Sub"}:
            return self._sub(value["Fn::Sub"])
        return {key: self.resolve(item) for key, item in value.items()}

    def _sub(self, spec: str | list[Any]) -> str:
        text, names = (spec, {}) if isinstance(spec, str) else (spec[0], spec[1])
        local = {name: str(self.resolve(item)) for name, item in names.items()}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return local[name]
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return self.get_att(resource, attribute)
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", one, text)


# ---------------------------------------------------------------- creating the resources


@dataclass(frozen=True)
class QueueTrigger:
    """An SQS event source of a function, as Lambda's event source mapping would poll it."""

    function: str
    queue: str  # logical id
    url: str
    arn: str
    batch_size: int
    visibility_timeout: int
    report_item_failures: bool


@dataclass
class Deployment:
    """The resources of one stack on moto and what its functions are told."""

    stack: str
    template: dict[str, Any]
    resolver: Resolver
    # logical id -> physical name (table, bucket, queue, topic names)
    names: dict[str, str]
    # logical id -> ARN
    arns: dict[str, str]
    # logical id -> queue URL
    queue_urls: dict[str, str]
    # the AccessKeys parameter, parsed: a key for signing requests in tests
    access_keys: dict[str, Any]

    def queue_triggers(self) -> list[QueueTrigger]:
        """Every SQS event of every function, with the template's batch size."""
        triggers = []
        for function, events in self._events("SQS"):
            for event in events:
                queue = event["Queue"]["Fn::GetAtt"][0]
                properties = self.template["Resources"][queue]["Properties"]
                triggers.append(
                    QueueTrigger(
                        function=function,
                        queue=queue,
                        url=self.queue_urls[queue],
                        arn=self.arns[queue],
                        batch_size=int(event.get("BatchSize", 10)),
                        visibility_timeout=int(properties.get("VisibilityTimeout", 30)),
                        report_item_failures="ReportBatchItemFailures"
                        in event.get("FunctionResponseTypes", []),
                    )
                )
        return triggers

    def upload_triggers(self) -> dict[str, str]:
        """Bucket name -> the function its S3 ObjectCreated notifications invoke."""
        return {
            self.names[event["Bucket"]["Ref"]]: function
            for function, events in self._events("S3")
            for event in events
            if any(kind.startswith("s3:ObjectCreated:") for kind in _listed(event["Events"]))
        }

    def _events(self, kind: str) -> list[tuple[str, list[dict[str, Any]]]]:
        found = []
        for name, spec in self.template["Resources"].items():
            if spec["Type"] != "AWS::Serverless::Function":
                continue
            events = spec["Properties"].get("Events", {}).values()
            found.append((name, [e["Properties"] for e in events if e["Type"] == kind]))
        return found

    def function_env(self, function: str) -> dict[str, str]:
        """The environment `function` runs with: the template's variables (Globals, then its
        own), what Lambda sets, and boto3's settings pointing at the moto server."""
        resources = self.template["Resources"]
        if resources.get(function, {}).get("Type") != "AWS::Serverless::Function":
            raise KeyError(f"{function} is not a function of template.yml")
        variables: dict[str, Any] = {}
        globals_ = self.template.get("Globals", {}).get("Function", {})
        for source in (globals_, resources[function]["Properties"]):
            variables.update(source.get("Environment", {}).get("Variables", {}))
        env = {name: str(self.resolver.resolve(value)) for name, value in variables.items()}
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": f"{self.stack}-{function}",
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_ENDPOINT_URL": SANDBOX.endpoint(),
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
            }
        )
        return env


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def signing_keys() -> dict[str, Any]:
    """An access keys document (README "Access keys") with one key granted everything."""
    return {
        "AccessKeys": [
            {
                "AccessKeyId": "openimm-test",
                "AccessKeySecret": secrets.token_hex(16),
                "Projects": {"*": "write"},
                "Buckets": {"*": "write"},
            }
        ]
    }


def deploy(parameters: Mapping[str, str] | None = None, template: Path = TEMPLATE) -> Deployment:
    """Create the template's table, buckets, queues and topics on moto under a new stack.

    `parameters` override the template's defaults; PhotoBucketName defaults to
    `<stack>-photos` and AccessKeys to `signing_keys()`.
    """
    document = load_template(template)
    stack = f"openimm-{uuid.uuid4().hex[:10]}"
    keys = signing_keys()
    given = dict(parameters or {})
    values = {
        name: str(spec["Default"])
        for name, spec in document.get("Parameters", {}).items()
        if "Default" in spec
    }
    values.update({"PhotoBucketName": f"{stack}-photos", "AccessKeys": json.dumps(keys)})
    values.update(given)
    if "AccessKeys" in given:
        keys = json.loads(given["AccessKeys"]) if given["AccessKeys"] else {}
    resolver = Resolver(stack, values)
    deployment = Deployment(stack, document, resolver, {}, {}, {}, keys)
    pending = {
        logical: spec
        for logical, spec in document["Resources"].items()
        if spec["Type"] in _CREATORS
    }
    # CloudFormation's order: a resource once every reference it makes can be resolved
    while pending:
        created = []
        for logical, spec in pending.items():
            try:
                properties = resolver.resolve(spec.get("Properties", {}))
            except Unresolved:
                continue
            _CREATORS[spec["Type"]](deployment, logical, properties)
            created.append(logical)
        if not created:
            raise Unresolved(f"cannot order {sorted(pending)}: a reference never resolves")
        for logical in created:
            del pending[logical]
    return deployment


def _generated_name(stack: str, logical: str) -> str:
    # CloudFormation's own names: stack, logical id and a random suffix
    return f"{stack}-{logical}-{uuid.uuid4().hex[:8]}"


def _table(deployment: Deployment, logical: str, properties: dict[str, Any]) -> None:
    name = properties.get("TableName") or _generated_name(deployment.stack, logical)
    client = SANDBOX.client("dynamodb")
    arguments = {
        key: properties[key]
        for key in ("KeySchema", "AttributeDefinitions", "BillingMode")
        if key in properties
    }
    arn = client.create_table(TableName=name, **arguments)["TableDescription"]["TableArn"]
    ttl = properties.get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    _record(deployment, logical, name=name, ref=name, arn=arn)


def _bucket(deployment: Deployment, logical: str, properties: dict[str, Any]) -> None:
    # generated bucket names are lower case, as CloudFormation makes them
    name = properties.get("BucketName") or _generated_name(deployment.stack, logical).lower()
    client = SANDBOX.client("s3")
    client.create_bucket(Bucket=name)
    block = properties.get("PublicAccessBlockConfiguration")
    if block:
        client.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
    _record(deployment, logical, name=name, ref=name, arn=f"arn:{PARTITION}:s3:::{name}")


def _queue(deployment: Deployment, logical: str, properties: dict[str, Any]) -> None:
    name = properties.get("QueueName") or _generated_name(deployment.stack, logical)
    attributes = {}
    for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds"):
        if key in properties:
            attributes[key] = str(properties[key])
    redrive = properties.get("RedrivePolicy")
    if redrive:
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": redrive["deadLetterTargetArn"],
                # a Number parameter arrives as text; SQS's policy holds a number
                "maxReceiveCount": int(redrive["maxReceiveCount"]),
            }
        )
    client = SANDBOX.client("sqs")
    url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{name}"
    _record(deployment, logical, name=name, ref=url, arn=arn)
    deployment.queue_urls[logical] = url
    deployment.resolver.attributes[(logical, "QueueName")] = name
    deployment.resolver.attributes[(logical, "QueueUrl")] = url


def _topic(deployment: Deployment, logical: str, properties: dict[str, Any]) -> None:
    name = properties.get("TopicName") or _generated_name(deployment.stack, logical)
    arn = SANDBOX.client("sns").create_topic(Name=name)["TopicArn"]
    _record(deployment, logical, name=name, ref=arn, arn=arn)
    deployment.resolver.attributes[(logical, "TopicName")] = name


def _record(deployment: Deployment, logical: str, *, name: str, ref: str, arn: str) -> None:
    deployment.names[logical] = name
    deployment.arns[logical] = arn
    deployment.resolver.refs[logical] = ref
    deployment.resolver.attributes[(logical, "Arn")] = arn


_CREATORS: dict[str, Callable[[Deployment, str, dict[str, Any]], None]] = {
    "AWS::DynamoDB::Table": _table,
    "AWS::S3::Bucket": _bucket,
    "AWS::SQS::Queue": _queue,
    "AWS::SNS::Topic": _topic,
}
