"""Read template.yaml into what the local stack needs, so local resources cannot drift from the deployed ones:
the bucket name, the table's keys and TTL, each function's environment, S3 notifications, schedule and routes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kclocal.events import LOCAL_ACCOUNT, LOCAL_REGION, LOCAL_STACK

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags (!Ref, !Sub, !GetAtt...) as {'Fn': value}."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
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


@dataclass
class Notification:
    function: str
    prefix: str
    suffix: str
    events: list[str]


@dataclass
class Function:
    name: str
    module: str  # importable handler module, e.g. functions.predict.app
    handler: str
    env: dict[str, str]
    routes: list[tuple[str, str]] = field(default_factory=list)  # (METHOD, /path/{param})
    schedule: str | None = None


@dataclass
class Stack:
    bucket: str
    table: str
    table_properties: dict
    functions: dict[str, Function]
    notifications: list[Notification]
    raw: dict

    def routes(self) -> list[tuple[str, str, str]]:
        return [(m, p, f.name) for f in self.functions.values() for m, p in f.routes]


def load(path: Path = TEMPLATE, stack_name: str = LOCAL_STACK, parameters: dict[str, str] | None = None) -> Stack:
    """parameters: overrides of the template's Parameters, as `sam deploy --parameter-overrides` gives them."""
    doc = yaml.load(path.read_text(), Loader=_CfnLoader)
    resources = doc["Resources"]
    table_name = f"{stack_name}-PredictionsTable"
    values = {
        "AWS::StackName": stack_name,
        "AWS::AccountId": LOCAL_ACCOUNT,
        "AWS::Region": LOCAL_REGION,
        "AWS::URLSuffix": "amazonaws.com",
        "PredictionsTable": table_name,
        **{k: str(v.get("Default", "")) for k, v in doc.get("Parameters", {}).items()},
        **(parameters or {}),
    }

    def resolve(v: Any) -> Any:
        if isinstance(v, dict) and "Ref" in v:
            return values.get(v["Ref"], v["Ref"])
        if isinstance(v, dict) and "Fn::Sub" in v:
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(values.get(m[1], m[0])), v["Fn::Sub"])
        return v

    bucket = resolve(resources["DataBucket"]["Properties"]["BucketName"])
    globals_fn = doc.get("Globals", {}).get("Function", {})
    global_env = globals_fn.get("Environment", {}).get("Variables", {})
    functions, notifications = {}, []
    for name, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        props = res["Properties"]
        env = {
            k: str(resolve(v)) for k, v in {**global_env, **props.get("Environment", {}).get("Variables", {})}.items()
        }
        handler = props.get("Handler", globals_fn.get("Handler"))
        code = props["CodeUri"].strip("/").replace("/", ".")
        fn = Function(name, f"{code}.{handler.rsplit('.', 1)[0]}", handler.rsplit(".", 1)[1], env)
        for event in props.get("Events", {}).values():
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
    table_props = {k: v for k, v in resources["PredictionsTable"]["Properties"].items()}
    return Stack(bucket, table_name, table_props, functions, notifications, doc)
