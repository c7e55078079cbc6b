"""Every AWS call a function made, checked against that function's policy as SAM expands it from template.yaml.

The local AWS endpoint journals each call made by a function's role (kclocal.awsd); this re-evaluates them against
the template itself, independently of what the endpoint decided, so a call outside a function's policy (say, a new
S3 prefix without its permission) fails the test that made it."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from kclocal import iam, template


@dataclass(frozen=True)
class Call:
    function: str
    action: str
    resource: str
    context: tuple[tuple[str, str], ...]
    allowed_by_endpoint: bool

    def __str__(self) -> str:
        ctx = f" {dict(self.context)}" if self.context else ""
        return f"{self.function}: {self.action} on {self.resource}{ctx}"


class CallJournal:
    def __init__(self, path: Path, spec: template.Stack):
        self.path, self.spec = Path(path), spec

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def calls(self, since: int = 0) -> list[Call]:
        if not self.path.exists():
            return []
        with open(self.path) as f:
            f.seek(since)
            lines = f.read().splitlines()
        out = []
        for line in lines:
            entry = json.loads(line)
            if ":assumed-role/" not in entry["principal"]:
                continue
            function = entry["principal"].rsplit("/", 1)[-1]  # the role session is named after the function
            context = tuple(sorted((k, str(v)) for k, v in entry["context"].items()))
            out += [Call(function, entry["action"], r, context, entry["allowed"]) for r in entry["resources"]]
        return out

    def violations(self, calls: list[Call], policies: dict[str, list[dict]] | None = None) -> list[Call]:
        """Calls the function's template policy does not allow (policies: a replacement, for mutation tests)."""
        policies = policies or {name: fn.policies for name, fn in self.spec.functions.items()}
        return [c for c in calls if not iam.decide(policies[c.function], c.action, c.resource, dict(c.context)).allowed]

    def assert_allowed(self, since: int = 0) -> None:
        bad = self.violations(self.calls(since))
        assert not bad, "calls outside the template policy:\n  " + "\n  ".join(sorted({str(c) for c in bad}))


def summary(calls: list[Call]) -> dict[str, list[str]]:
    """function -> sorted distinct 'action resource-prefix' lines (object keys cut to their first folder)."""
    out: dict[str, set[str]] = defaultdict(set)
    for c in calls:
        resource = c.resource
        if c.action.startswith("s3:") and "/" in resource:
            bucket, _, key = resource.partition("/")
            resource = f"{bucket}/{key.split('/', 1)[0]}/..." if "/" in key else resource
        out[c.function].add(f"{c.action} {resource}")
    return {k: sorted(v) for k, v in sorted(out.items())}
