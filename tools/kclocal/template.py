"""template.yaml as the local stack needs it, derived the way AWS derives it, so local resources cannot drift:
SAM's own translator (samtranslator, which `sam deploy` runs) turns the template into CloudFormation, and the
intrinsic functions are resolved with the local stack's names. From that come each function's environment (Globals
merged by SAM's rules), timeout, memory, concurrency, retry and failure-destination settings and its execution
role's policies (policy templates and SAM's generated statements expanded); S3 notifications, schedules and HTTP
routes are read from the SAM events that produce them."""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kclocal.events import LOCAL_ACCOUNT, LOCAL_REGION, LOCAL_STACK

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
# Where each layer's code is on this machine: the shared package from its source folder; third-party packages come
# from the virtualenv the local stack runs in (the built layers are checked separately by `make build`).
LOCAL_LAYER_PATHS = {"ModelLayer": [ROOT / "layers" / "model"], "TrainLayer": []}
# The AWS managed policies SAM attaches, as AWS defines them (only what this project's roles get).
MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            }
        ]
    },
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:GetSamplingStatisticSummaries",
                ],
                "Resource": "*",
            }
        ]
    },
    "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole": {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                "Resource": "*",
            }
        ]
    },
}


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags (!Ref, !Sub, !GetAtt...) as {'Fn': value}."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    name = "Ref" if suffix == "Ref" else "Condition" if suffix == "Condition" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def read(path: Path = TEMPLATE) -> dict:
    return yaml.load(path.read_text(), Loader=_CfnLoader)


class _NoManagedPolicyNames:
    """samtranslator asks for AWS managed policy names only when a policy names one without its ARN; this
    template uses ARNs and policy templates, so nothing is looked up (and nothing leaves the machine)."""

    def load(self) -> dict:
        return {}


def parameter_values(raw: dict, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """The template's parameters as CloudFormation sees them: defaults, then overrides; lists split."""
    out: dict[str, Any] = {}
    for name, spec in raw.get("Parameters", {}).items():
        value = str((overrides or {}).get(name, spec.get("Default", "")))
        out[name] = value.split(",") if spec.get("Type") == "CommaDelimitedList" and value else value
        if spec.get("Type") == "CommaDelimitedList" and not value:
            out[name] = [""]
    return out


def language_extensions(doc: dict, parameters: dict[str, Any]) -> dict:
    """What the AWS::LanguageExtensions transform does before SAM's, as far as this template uses it: references to
    parameters become their values, and each Fn::If whose condition depends on parameters only is replaced by its
    branch (AWS::NoValue removes the property), so SAM sees literal Auth and CorsConfiguration. Applied to
    Resources; an Fn::If on resources stays for CloudFormation."""
    if "AWS::LanguageExtensions" not in (doc.get("Transform") or []):
        return doc
    values = {"AWS::Region": LOCAL_REGION, "AWS::AccountId": LOCAL_ACCOUNT, **parameters}
    resolver = Resolver(values, {}, doc.get("Conditions", {}))
    gone = object()

    def walk(v: Any) -> Any:
        if isinstance(v, list):
            return [x for x in map(walk, v) if x is not gone]
        if not isinstance(v, dict):
            return v
        if v == {"Ref": "AWS::NoValue"}:
            return gone
        if len(v) == 1 and v.get("Ref") in parameters:  # as cfn-lint models it (cfn-lint#3861)
            return parameters[v["Ref"]]
        if len(v) == 1 and "Fn::If" in v:
            cond, yes, no = v["Fn::If"]
            try:
                chosen = yes if resolver.condition(cond) else no
            except KeyError:  # depends on a resource: CloudFormation decides at deploy time
                return {"Fn::If": [cond, walk(yes), walk(no)]}
            return walk(chosen)
        return {k: r for k, r in ((k, walk(x)) for k, x in v.items()) if r is not gone}

    doc = {**doc, "Resources": walk(doc["Resources"])}
    doc["Transform"] = [t for t in doc["Transform"] if t != "AWS::LanguageExtensions"]
    return doc


@cache
def _translated(text: str, parameters_json: str = "{}") -> dict:
    import json

    from samtranslator.translator.transform import transform

    doc = yaml.load(text, Loader=_CfnLoader)
    doc = language_extensions(doc, parameter_values(doc, json.loads(parameters_json)))
    for res in doc["Resources"].values():  # code locations are S3 URIs once packaged; their value is irrelevant
        props = res.get("Properties", {})
        for k in ("CodeUri", "ContentUri"):
            if k in props:
                props[k] = "s3://local/code.zip"
    saved = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = LOCAL_REGION  # the translator needs a region for pseudo parameters
    try:
        return transform(doc, {}, _NoManagedPolicyNames())
    finally:
        if saved is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = saved


def translate(path: Path = TEMPLATE, parameters: dict[str, str] | None = None) -> dict:
    """The CloudFormation template SAM deploys with these parameter overrides (a fresh copy: callers may change
    it)."""
    import json

    return copy.deepcopy(_translated(path.read_text(), json.dumps(parameters or {}, sort_keys=True)))


class Resolver:
    """Resolves CloudFormation intrinsic functions against known values (parameters, pseudo parameters, the
    physical ids and attributes of resources)."""

    NO_VALUE = object()

    def __init__(self, values: dict[str, Any], attributes: dict[tuple[str, str], str], conditions: dict):
        self.values, self.attributes, self._conditions = values, attributes, conditions
        self._condition_cache: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._condition_cache:
            self._condition_cache[name] = bool(self(self._conditions[name]))
        return self._condition_cache[name]

    def __call__(self, v: Any) -> Any:
        if isinstance(v, list):
            return [x for x in (self(x) for x in v) if x is not Resolver.NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            ((k, arg),) = v.items()
            if k == "Ref":
                if arg == "AWS::NoValue":
                    return Resolver.NO_VALUE
                if arg not in self.values:
                    raise KeyError(f"no local value for Ref {arg}")
                return self.values[arg]
            if k == "Fn::GetAtt":
                res, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attributes[(res, attr)]
            if k == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))

                def sub(m: re.Match) -> str:
                    name = m[1]
                    if name.startswith("!"):
                        return "${" + name[1:] + "}"
                    if name in extra:
                        return str(extra[name])
                    if "." in name:
                        return str(self.attributes[tuple(name.split(".", 1))])
                    return str(self.values[name])

                return re.sub(r"\$\{([^}]+)\}", sub, text)
            if k == "Fn::Join":
                return str(arg[0]).join(str(x) for x in self(arg[1]))
            if k == "Fn::Select":
                return self(arg[1])[int(self(arg[0]))]
            if k == "Fn::Split":
                return str(self(arg[1])).split(arg[0])
            if k == "Fn::If":
                return self(arg[1] if self.condition(arg[0]) else arg[2])
            if k == "Fn::Equals":
                return self(arg[0]) == self(arg[1])
            if k == "Fn::Not":
                return not self(arg[0])
            if k == "Fn::And":
                return all(self(x) for x in arg)
            if k == "Fn::Or":
                return any(self(x) for x in arg)
            if k == "Condition":
                return self.condition(arg)
        return {k: r for k, r in ((k, self(x)) for k, x in v.items()) if r is not Resolver.NO_VALUE}


@dataclass
class Notification:
    function: str
    prefix: str
    suffix: str
    events: list[str]


@dataclass
class Function:
    name: str
    handler: str  # module.function, as Lambda's Handler setting
    code_dir: Path
    layers: list[str]  # logical ids of the SAM layers
    env: dict[str, str]
    timeout: float
    memory_mb: int
    reserved_concurrency: int | None
    role: str  # logical id of the execution role
    policies: list[dict]  # the role's policy documents, resolved (inline and managed)
    max_retries: int = 2  # asynchronous invocation: Lambda's default
    max_event_age: float = 6 * 3600
    on_failure: str | None = None  # ARN of the failure destination
    routes: list[tuple[str, str]] = field(default_factory=list)  # (METHOD, /path/{param})
    schedule: str | None = None
    physical: str = ""  # the function's name (FunctionName, or one made from the stack's name)
    log_group: str | None = None  # LoggingConfig.LogGroup
    snap_start: bool = False  # SnapStart on its published versions

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def layer_paths(self) -> list[Path]:
        return [p for layer in self.layers for p in LOCAL_LAYER_PATHS[layer]]


@dataclass
class Table:
    logical: str
    name: str
    properties: dict


@dataclass
class Stack:
    name: str
    account: str
    region: str
    parameters: dict[str, str]
    bucket: str
    tables: dict[str, Table]
    queues: dict[str, str]  # logical id -> queue name
    functions: dict[str, Function]
    notifications: list[Notification]
    raw: dict  # the SAM template
    aliases: set[str]  # the AutoPublishAlias names (locally each runs the function's current code)
    cfn: dict  # the CloudFormation template SAM produces from it
    resolve: Resolver

    @property
    def table(self) -> str:
        return self.tables["PredictionsTable"].name

    def routes(self) -> list[tuple[str, str, str]]:
        return [(m, p, f.name) for f in self.functions.values() for m, p in f.routes]

    def http_api(self) -> tuple[dict, dict[str, str]]:
        """(CORS configuration, route key -> the authorizer it requires) of the HTTP API, as SAM generated it."""
        body = self.cfn["Resources"]["HttpApi"]["Properties"]["Body"]
        security = {}
        for path, ops in body.get("paths", {}).items():
            for method, op in ops.items():
                names = [name for s in op.get("security") or [] for name in s if name != "NONE"]
                if names:
                    security[f"{method.upper()} {path}"] = names[0]
        return body.get("x-amazon-apigateway-cors", {}), security

    def queue_url(self, logical: str, endpoint: str) -> str:
        return f"{endpoint.rstrip('/')}/{self.account}/{self.queues[logical]}"

    def queue_arn(self, logical: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account}:{self.queues[logical]}"


def _physical(stack_name: str, logical: str) -> str:
    return f"{stack_name}-{logical}"  # CloudFormation adds a random suffix; locally the name is deterministic


def load(
    path: Path = TEMPLATE,
    stack_name: str = LOCAL_STACK,
    parameters: dict[str, str] | None = None,
    endpoint: str = "http://127.0.0.1:4566",
) -> Stack:
    """parameters: overrides of the template's Parameters, as `sam deploy --parameter-overrides` gives them."""
    raw = read(path)
    cfn = translate(path, parameters)
    resources = cfn["Resources"]
    params = {k: str(v.get("Default", "")) for k, v in raw.get("Parameters", {}).items()}
    params.update(parameters or {})
    values: dict[str, Any] = {
        "AWS::StackName": stack_name,
        "AWS::AccountId": LOCAL_ACCOUNT,
        "AWS::Region": LOCAL_REGION,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackId": f"arn:aws:cloudformation:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stack/{stack_name}/local",
        **parameter_values(raw, parameters),
    }
    attributes: dict[tuple[str, str], str] = {}
    resolve = Resolver(values, attributes, cfn.get("Conditions", {}))
    tables, queues = {}, {}
    bucket = ""
    arn = f"{LOCAL_REGION}:{LOCAL_ACCOUNT}"
    for logical, res in resources.items():
        kind, props = res["Type"], res.get("Properties", {})
        if kind == "AWS::S3::Bucket":
            bucket = resolve(props.get("BucketName", {"Ref": "AWS::NoValue"}))
            values[logical] = bucket
            attributes[(logical, "Arn")] = f"arn:aws:s3:::{bucket}"
        elif kind == "AWS::DynamoDB::Table":
            name = props.get("TableName") or _physical(stack_name, logical)
            tables[logical] = Table(logical, name, props)
            values[logical] = name
            attributes[(logical, "Arn")] = f"arn:aws:dynamodb:{arn}:table/{name}"
        elif kind == "AWS::SQS::Queue":
            name = props.get("QueueName") or _physical(stack_name, logical)
            queues[logical] = name
            values[logical] = f"{endpoint}/{LOCAL_ACCOUNT}/{name}"  # Ref of a queue is its URL
            attributes[(logical, "Arn")] = f"arn:aws:sqs:{arn}:{name}"
            attributes[(logical, "QueueName")] = name
        elif kind == "AWS::IAM::Role":
            values[logical] = logical
            attributes[(logical, "Arn")] = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{logical}"
        elif kind == "AWS::Lambda::Function":
            name = resolve(props["FunctionName"]) if "FunctionName" in props else _physical(stack_name, logical)
            values[logical] = name
            attributes[(logical, "Arn")] = f"arn:aws:lambda:{arn}:function:{name}"
        else:
            values.setdefault(logical, logical)

    for logical, res in resources.items():  # after the functions: they name them
        # Locally a function has one version, its current code: $LATEST stands for every published version.
        if res["Type"] == "AWS::Lambda::Version":
            values[logical] = f"{attributes[(res['Properties']['FunctionName']['Ref'], 'Arn')]}:$LATEST"
        elif res["Type"] == "AWS::Lambda::Alias":
            fn = res["Properties"]["FunctionName"]["Ref"]
            values[logical] = f"{attributes[(fn, 'Arn')]}:{res['Properties']['Name']}"

    sam = raw["Resources"]
    global_layers = raw.get("Globals", {}).get("Function", {}).get("Layers", [])
    invoke_configs = {
        r["Properties"]["FunctionName"]["Ref"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
    }
    functions: dict[str, Function] = {}
    notifications: list[Notification] = []
    for name, res in resources.items():
        if res["Type"] != "AWS::Lambda::Function":
            continue
        props = resolve(res["Properties"])
        role = res["Properties"]["Role"]["Fn::GetAtt"][0]
        role_props = resolve(resources[role]["Properties"])
        policies = [p["PolicyDocument"] for p in role_props.get("Policies", [])]
        for managed in role_props.get("ManagedPolicyArns", []):
            if managed not in MANAGED_POLICIES:
                raise KeyError(f"{name}: managed policy {managed} is not described in kclocal.template")
            policies.append(MANAGED_POLICIES[managed])
        sam_props = sam[name]["Properties"]
        layers = [layer["Ref"] for layer in global_layers + sam_props.get("Layers", [])]
        invoke = resolve(invoke_configs.get(name, {}))
        fn = Function(
            name=name,
            handler=props["Handler"],
            code_dir=ROOT / sam_props["CodeUri"],
            layers=layers,
            env={k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()},
            timeout=float(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            reserved_concurrency=None if (rc := props.get("ReservedConcurrentExecutions")) is None else int(rc),
            role=role,
            policies=policies,
            max_retries=int(invoke.get("MaximumRetryAttempts", 2)),
            max_event_age=float(invoke.get("MaximumEventAgeInSeconds", 6 * 3600)),
            on_failure=invoke.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"),
            physical=values[name],
            log_group=props.get("LoggingConfig", {}).get("LogGroup"),
            snap_start=props.get("SnapStart", {}).get("ApplyOn") == "PublishedVersions",
        )
        for event in sam_props.get("Events", {}).values():
            p = event.get("Properties", {})
            if event["Type"] == "HttpApi":
                fn.routes.append((p["Method"].upper(), p["Path"]))
            elif event["Type"] == "S3":
                rules = {r["Name"]: r["Value"] for r in p.get("Filter", {}).get("S3Key", {}).get("Rules", [])}
                events = p["Events"] if isinstance(p["Events"], list) else [p["Events"]]
                notifications.append(Notification(name, rules.get("prefix", ""), rules.get("suffix", ""), events))
            elif event["Type"] == "Schedule":
                fn.schedule = str(resolve(p["Schedule"]))
        functions[name] = fn
    return Stack(
        stack_name,
        LOCAL_ACCOUNT,
        LOCAL_REGION,
        params,
        bucket,
        tables,
        queues,
        functions,
        notifications,
        raw,
        {
            str(r["Properties"]["AutoPublishAlias"])
            for r in sam.values()
            if "AutoPublishAlias" in r.get("Properties", {})
        },
        cfn,
        resolve,
    )
