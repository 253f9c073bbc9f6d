"""The checkov checks `make security` skips (.checkov.yaml) stay one explained list, no broader than reviewed.

A skip-check applies to the whole template, so each skipped check is pinned here to the resources it was
reviewed for: every resource of the types it concerns. A resource of such a type added (or removed) fails this
test until .checkov.yaml's entry says why the skip holds for it too (or the resource is fixed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from sagepilot_sandbox.stack.template import load_template

ROOT = Path(__file__).resolve().parents[2]

FUNCTIONS = {"BatchIntakeFunction", "BatchCompletionFunction", "RolloutFunction", "TrainingFunction"}
QUEUES = {
    "IntakeQueue",
    "HoldReleaseQueue",
    "IntakeDeadLetterQueue",
    "EventsDeadLetterQueue",
    "CompletionFailureQueue",
    "RolloutFailureQueue",
    "TrainingSettleQueue",
    "TrainingFailureQueue",
}
LOG_GROUPS = {"BatchIntakeLogGroup", "BatchCompletionLogGroup", "RolloutLogGroup", "TrainingLogGroup"}

# check -> (the resource types it concerns, in template.yaml and rendered; the resources its reason covers)
REVIEWED: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "CKV_AWS_18": (("AWS::S3::Bucket",), {"DataBucket"}),
    "CKV_AWS_119": (("AWS::DynamoDB::Table",), {"StateTable"}),
    "CKV_AWS_27": (("AWS::SQS::Queue",), QUEUES),
    "CKV_AWS_116": (("AWS::Serverless::Function", "AWS::Lambda::Function"), FUNCTIONS),
    "CKV_AWS_115": (("AWS::Serverless::Function", "AWS::Lambda::Function"), FUNCTIONS),
    "CKV_AWS_117": (("AWS::Serverless::Function", "AWS::Lambda::Function"), FUNCTIONS),
    "CKV_AWS_173": (("AWS::Serverless::Function", "AWS::Lambda::Function"), FUNCTIONS),
    "CKV_AWS_158": (("AWS::Logs::LogGroup",), LOG_GROUPS),
}


def _rendered() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("render_template", ROOT / "scripts" / "render_template.py")
    assert spec is not None and spec.loader is not None
    renderer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(renderer)
    rendered: dict[str, Any] = renderer.render(renderer.load_sam_template(ROOT / "template.yaml"))
    return rendered


@pytest.fixture(scope="module")
def templates() -> list[dict[str, Any]]:
    return [load_template(ROOT / "template.yaml"), _rendered()]


def skipped() -> list[str]:
    config = yaml.safe_load((ROOT / ".checkov.yaml").read_text(encoding="utf-8"))
    return [str(check) for check in config["skip-check"]]


def test_the_skip_list_is_exactly_the_reviewed_checks_each_with_its_reason() -> None:
    checks = skipped()
    assert sorted(checks) == sorted(REVIEWED), "a skip added or removed: review it here and in .checkov.yaml"
    text = (ROOT / ".checkov.yaml").read_text(encoding="utf-8")
    for check in checks:
        assert f"# {check} (" in text, f"{check}: no explained entry in .checkov.yaml"
        for resource in REVIEWED[check][1]:
            assert resource in text, f"{check}: .checkov.yaml's entry does not name {resource}"


@pytest.mark.parametrize("check", sorted(REVIEWED))
def test_each_skip_covers_only_the_resources_it_was_reviewed_for(templates: list[dict[str, Any]], check: str) -> None:
    types, reviewed = REVIEWED[check]
    for template in templates:
        concerned = {
            logical_id for logical_id, resource in template["Resources"].items() if resource.get("Type") in types
        }
        assert concerned == reviewed, f"{check} is skipped for {sorted(concerned - reviewed)} too: review it"


def test_no_resource_carries_a_checkov_skip_of_its_own(templates: list[dict[str, Any]]) -> None:
    """The one list is the only one (a skip in a resource's Metadata would escape this review)."""
    carrying = [
        logical_id
        for template in templates
        for logical_id, resource in template["Resources"].items()
        if "checkov" in (resource.get("Metadata") or {})
    ]
    assert not carrying
