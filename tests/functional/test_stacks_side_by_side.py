"""Two stacks in one account, as samconfig.toml ships them: neither reaches the other's resources.

Provisioned side by side in one sandbox from template.yaml with samconfig.toml's own NamePrefix values,
each stack's functions' IAM (as SAM renders it) and EventBridge rules (as EventBridge matches them) are
tried on the other stack's names. With overlapping prefixes (`sagepilot` and `sagepilot-dev`, as before)
the default stack's `sagepilot-*` scopes and `sagepilot-` rule patterns covered the dev stack's
endpoints, jobs and alarms, and its group `dev-churn` named the dev stack's endpoint for `churn`.
"""

from __future__ import annotations

import shlex
import tomllib
from collections.abc import Callable
from typing import Any

import pytest

from sagepilot.domain.names import endpoint_name
from sagepilot_sandbox.stack import iam_check
from sagepilot_sandbox.stack.provision import Stack, provision
from sagepilot_sandbox.stack.template import TemplateError, load_template, parameter_values

from .conftest import ACCOUNT, REGION, ROOT, FakeClock
from .test_rollout import ROLLOUT, make_rollout
from .test_rollout_ownership import Groups


def shipped_prefixes() -> dict[str, str]:
    """samconfig.toml's environments -> (stack name, NamePrefix)."""
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    found = {}
    for env, sections in config.items():
        if not isinstance(sections, dict) or "deploy" not in sections:
            continue
        overrides = dict(p.split("=", 1) for p in shlex.split(sections["deploy"]["parameters"]["parameter_overrides"]))
        found[env] = overrides["NamePrefix"]
    return found


def test_the_template_refuses_a_prefix_another_prefix_could_start_with() -> None:
    template = load_template(ROOT / "template.yaml")
    for bad in ("sagepilot-dev", "Sagepilot", "sage_pilot"):
        with pytest.raises(TemplateError, match="NamePrefix"):
            parameter_values(template, {"NamePrefix": bad})
    with pytest.raises(TemplateError, match="DeployableGroupPrefix"):
        parameter_values(template, {"DeployableGroupPrefix": "Churn"})


def test_no_shipped_prefix_starts_another_ones_names() -> None:
    prefixes = shipped_prefixes()
    assert set(prefixes) == {"default", "dev", "prod"}
    template = load_template(ROOT / "template.yaml")
    for prefix in prefixes.values():
        parameter_values(template, {"NamePrefix": prefix})  # each one is accepted by the template
    for a in prefixes.values():
        for b in prefixes.values():
            assert a == b or not f"{b}-".startswith(f"{a}-"), (a, b)


@pytest.fixture
def two(clients: Callable[[str], Any]) -> tuple[Stack, Stack]:
    prefixes = shipped_prefixes()
    default = provision(ROOT, clients, stack_name="sagepilot", overrides={"NamePrefix": prefixes["default"]})
    dev = provision(ROOT, clients, stack_name="sagepilot-dev", overrides={"NamePrefix": prefixes["dev"]})
    return default, dev


def _names(prefix: str) -> list[tuple[str, str]]:
    """(IAM action, resource ARN) on names a stack with `prefix` creates."""
    sm = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    return [
        ("sagemaker:UpdateEndpoint", f"{sm}:endpoint/{prefix}-churn"),
        ("sagemaker:DeleteEndpoint", f"{sm}:endpoint/{prefix}-churn"),
        ("sagemaker:CreateEndpointConfig", f"{sm}:endpoint-config/{prefix}-churn-c0123456789ab"),
        ("sagemaker:DeleteModel", f"{sm}:model/{prefix}-churn-v1-01234567"),
        ("sagemaker:CreateTransformJob", f"{sm}:transform-job/{prefix}-churn-0123456789abcdef"),
        ("sagemaker:CreateTrainingJob", f"{sm}:training-job/{prefix}-churn-0123456789abcdef"),
        ("cloudwatch:DeleteAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{prefix}-churn-v1-5xx"),
        ("cloudwatch:PutMetricAlarm", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{prefix}-churn-v1-5xx"),
    ]


def _allowed(policies: dict[str, list[iam_check.Statement]], action: str, resource: str) -> list[str]:
    """The functions whose role allows `action` on `resource`."""
    request = iam_check.Request(action, resource, {"sagemaker:ModelApprovalStatus": None})
    return [f for f, statements in policies.items() if iam_check.evaluate(request, statements).allowed]


def test_neither_stacks_iam_reaches_the_other_stacks_names(two: tuple[Stack, Stack]) -> None:
    default, dev = two
    for stack, other in ((default, dev), (dev, default)):
        policies, _ = iam_check.stack_policies(stack)
        for action, resource in _names(stack.parameters["NamePrefix"]):
            assert _allowed(policies, action, resource), f"{stack.name} cannot {action} its own {resource}"
        for action, resource in _names(other.parameters["NamePrefix"]):
            reaching = _allowed(policies, action, resource)
            assert reaching == [], f"{stack.name}'s {reaching} may {action} {resource} of {other.name}"


def test_each_stacks_rules_deliver_only_its_own_endpoints_events(
    two: tuple[Stack, Stack], clients: Callable[[str], Any], clock: FakeClock
) -> None:
    default, dev = two
    stacks = {s.name: Groups(make_rollout(s, clients, clock).service, s, clients, clock) for s in two}
    stacks["sagepilot"].approve("churn")  # both stacks deploy group churn, each to its own endpoint
    for _ in range(5):
        for driver in stacks.values():
            driver.pump()
    endpoints = {e["EndpointName"] for e in clients("sagemaker").list_endpoints()["Endpoints"]}
    assert endpoints == {endpoint_name(s.parameters["NamePrefix"], "churn") for s in two}
    for name, driver in stacks.items():
        prefix = driver.stack.parameters["NamePrefix"]
        about = {
            e["detail"].get("EndpointName") or e["detail"].get("alarmName")
            for e in driver.delivered
            if e["detail-type"] != "SageMaker Model Package State Change"
        }
        assert about, f"{name}'s rollout function got no endpoint event at all"
        assert all(str(n).startswith(f"{prefix}-churn") for n in about), (name, about)
    # A group of the default stack named like the dev prefix gets a name of the default stack's own.
    assert endpoint_name(default.parameters["NamePrefix"], f"{dev.parameters['NamePrefix']}-churn") not in endpoints
    assert len({d.stack.functions[ROLLOUT].name for d in stacks.values()}) == 2
