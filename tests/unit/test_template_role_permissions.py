"""What every role of the stack may do, compared with a snapshot: restructuring the template's IAM (shared
managed policies, statements split or merged, Sids renamed) must not widen any role.

Each role of template.yaml rendered to CloudFormation (scripts/render_template.py, as CloudFormation deploys it)
is reduced to its effective grants: every (effect, action, resource, condition) of its inline policies and of the
managed policies attached to it (this stack's own AWS::IAM::ManagedPolicy resources read from the template, AWS
managed policies by name). Statement boundaries and Sids do not matter; any grant, managed policy or role that is
not in tests/unit/snapshots/role_permissions.json fails the test, and so does one that went missing (regenerate
the snapshot knowingly: `python tests/unit/test_template_role_permissions.py --write`, and review its diff).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "role_permissions.json"

Template = dict[str, Any]
Grant = tuple[str, str, str, str]  # effect, action, resource (JSON), condition (JSON)


def _load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_template", ROOT / "scripts" / "render_template.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


renderer = _load_renderer()


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _grants(document: dict[str, Any]) -> set[Grant]:
    """A policy document as the set of its single grants (a statement is the product of its actions and
    resources under its condition). Fn::If around a statement or a resource list stays one opaque value."""
    grants: set[Grant] = set()
    for statement in _listed(document.get("Statement", [])):
        if set(statement) == {"Fn::If"}:  # a conditional statement: kept whole
            grants.add(("Conditional", _canonical(statement), "", ""))
            continue
        if "NotAction" in statement or "NotResource" in statement:
            grants.add(("Unsupported", _canonical(statement), "", ""))
            continue
        condition = _canonical(statement.get("Condition", {}))
        for action in _listed(statement["Action"]):
            for resource in _listed(statement["Resource"]):
                grants.add((statement["Effect"], str(action), _canonical(resource), condition))
    return grants


def role_permissions(rendered: Template) -> dict[str, dict[str, Any]]:
    """Role logical id -> its effective grants (sorted) and the AWS managed policies it carries."""
    resources = rendered["Resources"]
    own = {
        logical_id: resource["Properties"]["PolicyDocument"]
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::IAM::ManagedPolicy"
    }
    attached_by_roles: dict[str, list[str]] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::IAM::ManagedPolicy":
            for role in resource["Properties"].get("Roles", []):
                attached_by_roles.setdefault(_canonical(role), []).append(logical_id)
    permissions = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        properties = resource["Properties"]
        assert "PermissionsBoundary" not in properties, f"{logical_id}: a boundary this test does not model"
        grants: set[Grant] = set()
        for policy in properties.get("Policies", []):
            grants |= _grants(policy["PolicyDocument"])
        aws_managed = []
        attached = [{"Ref": p} for p in attached_by_roles.get(_canonical({"Ref": logical_id}), [])]
        for arn in properties.get("ManagedPolicyArns", []) + attached:
            if isinstance(arn, dict) and set(arn) == {"Ref"} and arn["Ref"] in own:
                grants |= _grants(own[arn["Ref"]])
            elif isinstance(arn, str) and ":iam::aws:policy/" in arn:
                aws_managed.append(arn.split(":policy/", 1)[1])
            else:
                raise AssertionError(f"{logical_id}: managed policy {arn!r} is neither this stack's nor AWS's")
        permissions[logical_id] = {
            "aws_managed_policies": sorted(aws_managed),
            "grants": [list(grant) for grant in sorted(grants)],
        }
    return permissions


def current() -> dict[str, dict[str, Any]]:
    return role_permissions(renderer.render(renderer.load_sam_template(ROOT / "template.yaml")))


@pytest.fixture(scope="module")
def sam_template() -> Template:
    return renderer.load_sam_template(ROOT / "template.yaml")


def _difference(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    problems = []
    for role in sorted(set(expected) | set(actual)):
        if role not in actual or role not in expected:
            problems.append(f"{role}: {'missing' if role not in actual else 'new role'}")
            continue
        for key in ("aws_managed_policies", "grants"):
            was = {_canonical(item) for item in expected[role][key]}
            now = {_canonical(item) for item in actual[role][key]}
            problems += [f"{role}: {key} WIDENED by {item}" for item in sorted(now - was)]
            problems += [f"{role}: {key} lost {item}" for item in sorted(was - now)]
    return problems


def test_every_role_may_do_exactly_what_the_snapshot_says(sam_template: Template) -> None:
    actual = role_permissions(renderer.render(sam_template))
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert actual, "no role rendered"
    problems = _difference(expected, actual)
    assert not problems, "\n".join(problems)


def _statement_lists(template: Template, kind: str) -> list[list[Any]]:
    """The statement lists of the SAM template's shared managed policies, or of its functions' inline policies."""
    found = []
    for resource in template["Resources"].values():
        properties = resource.get("Properties") or {}
        if kind == "shared" and resource["Type"] == "AWS::IAM::ManagedPolicy":
            found.append(properties["PolicyDocument"]["Statement"])
        if kind == "inline" and resource["Type"] == "AWS::Serverless::Function":
            found += [
                p["Statement"] for p in properties.get("Policies") or [] if isinstance(p, dict) and "Statement" in p
            ]
    return found


WIDENINGS = {
    "another resource": lambda st: {**st, "Resource": [*_listed(st["Resource"]), "arn:aws:s3:::elsewhere/*"]},
    "another action": lambda st: {**st, "Action": [*_listed(st["Action"]), "sqs:DeleteQueue"]},
    "a condition dropped": lambda st: {k: v for k, v in st.items() if k != "Condition"},
}


@pytest.mark.parametrize("kind", ["shared", "inline"])
@pytest.mark.parametrize("widening", sorted(WIDENINGS))
def test_a_widened_statement_fails_the_comparison(sam_template: Template, kind: str, widening: str) -> None:
    broken = copy.deepcopy(sam_template)
    # The first statement with a condition (so that dropping it widens too), in a shared policy or inline.
    statements, index = next(
        (statements, i)
        for statements in _statement_lists(broken, kind)
        for i, statement in enumerate(statements)
        if "Condition" in statement and "Action" in statement
    )
    statements[index] = WIDENINGS[widening](statements[index])
    problems = _difference(current(), role_permissions(renderer.render(broken)))
    assert any("WIDENED" in problem for problem in problems), problems


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    SNAPSHOT.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
