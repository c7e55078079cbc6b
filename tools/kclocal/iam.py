"""IAM policy evaluation for the local stack: the subset of AWS's rules that this project's policies use.

The local AWS endpoint (kclocal.awsd) asks this module whether a caller may make a call, and the tests check every
call a function made against its template policy with it. It follows AWS's evaluation logic for identity-based
policies: an explicit Deny wins, otherwise some Allow must match, otherwise the call is implicitly denied.
Statement elements: Effect, Action / NotAction (case-insensitive, * and ? wildcards), Resource / NotResource (ARNs
matched field by field, wildcards never crossing a ':'), Condition (the operators below, ForAnyValue / ForAllValues
and ...IfExists). An operator it does not know raises instead of being ignored: a condition silently treated as true
would let through what AWS refuses.

https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

Context = Mapping[str, str | list[str]]


class UnsupportedPolicyError(ValueError):
    """A policy uses an element or condition operator this evaluator does not implement."""


@cache
def _pattern(pattern: str, ignore_case: bool) -> re.Pattern:
    # IAM wildcards: * any run of characters, ? one character; everything else literal.
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return _pattern(pattern, ignore_case).match(value) is not None


def _arn_like(pattern: str, arn: str) -> bool:
    """ARN matching: the six colon-separated fields are compared one by one, so a wildcard in the service or
    region field cannot swallow the rest of the ARN; the last field (the resource) may itself contain ':'."""
    if pattern == "*":
        return True
    p, a = pattern.split(":", 5), arn.split(":", 5)
    if len(p) != 6 or len(a) != 6:
        return _like(pattern, arn)
    return all(_like(x, y) for x, y in zip(p, a, strict=True))


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


def _bool(v: str) -> str:
    return str(v).lower()


# operator -> (test(policy value, request value), negated?)
_OPERATORS: dict[str, tuple[Any, bool]] = {
    "StringEquals": (lambda p, r: p == r, False),
    "StringNotEquals": (lambda p, r: p == r, True),
    "StringEqualsIgnoreCase": (lambda p, r: p.lower() == r.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda p, r: p.lower() == r.lower(), True),
    "StringLike": (lambda p, r: _like(p, r), False),
    "StringNotLike": (lambda p, r: _like(p, r), True),
    "ArnEquals": (lambda p, r: p == r, False),
    "ArnNotEquals": (lambda p, r: p == r, True),
    "ArnLike": (_arn_like, False),
    "ArnNotLike": (_arn_like, True),
    "Bool": (lambda p, r: _bool(p) == _bool(r), False),
    "NumericEquals": (lambda p, r: float(p) == float(r), False),
    "NumericNotEquals": (lambda p, r: float(p) == float(r), True),
    "NumericLessThan": (lambda p, r: float(r) < float(p), False),
    "NumericLessThanEquals": (lambda p, r: float(r) <= float(p), False),
    "NumericGreaterThan": (lambda p, r: float(r) > float(p), False),
    "NumericGreaterThanEquals": (lambda p, r: float(r) >= float(p), False),
}


def _condition(operator: str, key: str, wanted: Any, context: Context) -> bool:
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    op = op.removesuffix("IfExists")
    if op == "Null":  # true: the key must be absent; false: it must be present
        return (key not in context) == (_bool(_as_list(wanted)[0]) == "true")
    if op not in _OPERATORS or qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise UnsupportedPolicyError(f"condition operator {operator!r} is not implemented by the local IAM")
    test, negated = _OPERATORS[op]
    if key not in context:
        # AWS: a missing key makes a condition false, except for negated operators and ...IfExists.
        return if_exists or negated or qualifier == "ForAllValues"
    values = [str(v) for v in _as_list(context[key])]
    wanted = [str(w) for w in _as_list(wanted)]

    def matches(value: str) -> bool:
        hit = any(test(w, value) for w in wanted)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(matches(v) for v in values)
    return any(matches(v) for v in values)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "allowed by ...", "explicitly denied by ...", "no statement allows it"


def _statement_applies(st: dict, action: str, resource: str, context: Context) -> bool:
    unknown = set(st) - {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
    if unknown:
        raise UnsupportedPolicyError(f"statement elements {sorted(unknown)} are not implemented by the local IAM")
    if "Action" in st:
        if not any(_like(a, action, ignore_case=True) for a in _as_list(st["Action"])):
            return False
    elif any(_like(a, action, ignore_case=True) for a in _as_list(st.get("NotAction", []))):
        return False
    if "Resource" in st:
        if not any(_arn_like(r, resource) for r in _as_list(st["Resource"])):
            return False
    elif "NotResource" in st and any(_arn_like(r, resource) for r in _as_list(st["NotResource"])):
        return False
    for operator, keys in (st.get("Condition") or {}).items():
        for key, wanted in keys.items():
            if not _condition(operator, key, wanted, context):
                return False
    return True


def statements(policies: Iterable[dict | str]) -> list[dict]:
    out = []
    for policy in policies:
        doc = json.loads(policy) if isinstance(policy, str) else policy
        out += _as_list(doc.get("Statement", []))
    return out


def decide(policies: Iterable[dict | str], action: str, resource: str, context: Context | None = None) -> Decision:
    """May a principal holding these identity policies call `action` on `resource`, in this request context?"""
    context = context or {}
    allowed_by = None
    for i, st in enumerate(statements(policies)):
        if not _statement_applies(st, action, resource, context):
            continue
        if st["Effect"] == "Deny":
            return Decision(False, f"explicitly denied by statement {st.get('Sid', i)}")
        allowed_by = allowed_by or f"allowed by statement {st.get('Sid', i)}"
    return Decision(True, allowed_by) if allowed_by else Decision(False, "no statement allows it")


def allowed(policies: Iterable[dict | str], action: str, resources: Iterable[str], context: Context | None = None):
    """Every resource of a call must be allowed (e.g. BatchWriteItem across tables)."""
    policies = list(policies)
    return all(decide(policies, action, r, context).allowed for r in resources)
