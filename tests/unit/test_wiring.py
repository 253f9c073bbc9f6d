"""Each builder of `sagepilot.wiring` builds its function's service, and loads only that function's code.

Every Lambda function imports `sagepilot.wiring` at its cold start, so a service imported there at module
level is loaded (and compiled, without bytecode) by every function. Each builder runs in a fresh
interpreter here, so that what it imported is all that `sys.modules` holds of the package.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from sagepilot_sandbox.stack.template import Resolver, TemplateError, load_template, parameter_values

from .conftest import ROOT

SERVICES = {"batch_intake", "batch_completion", "jobs", "holding", "rollout", "training"}

# function folder -> (builder, settings loader, the service's class, the services its code may load)
CASES = {
    "batch_intake": ("batch_intake", "load_settings", "BatchIntake", {"batch_intake", "jobs", "holding"}),
    # The completion service reuses the launcher of jobs (not the intake: the clock is sagepilot.clock), and the
    # hold's release (its periodic sweep releases held jobs that are due).
    "batch_completion": (
        "batch_completion",
        "load_settings",
        "BatchCompletion",
        {"batch_completion", "jobs", "holding"},
    ),
    "rollout": ("rollouts", "load_rollout_settings", "Rollouts", {"rollout", "canary_analysis", "endpoint_health"}),
    "training": ("training", "load_training_settings", "Training", {"training"}),
}

CHILD = """
import json, sys
from unittest import mock
from sagepilot import settings, wiring

builder, loader, env = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
requested = []

def client(service):
    requested.append(service)
    return mock.MagicMock(name=service)

built = getattr(wiring, builder)(getattr(settings, loader)(env), client)
loaded = sorted(m for m in sys.modules if m.startswith("sagepilot."))
print(json.dumps({"type": type(built).__name__, "clients": sorted(set(requested)), "modules": loaded}))
"""


def function_environment(template: dict[str, Any], folder: str) -> dict[str, str]:
    """Parameters' defaults, and intrinsic functions of them (`!If`, `!Sub`, `!FindInMap`) evaluated as
    CloudFormation would (the sandbox's evaluator); a resource's id is a placeholder."""
    sandbox_template = load_template(ROOT / "template.yaml")
    resolver = Resolver(sandbox_template, "sagepilot", parameter_values(sandbox_template, {}))
    variables = dict(sandbox_template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in sandbox_template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and properties.get("CodeUri") == f"functions/{folder}/":
            variables.update(properties.get("Environment", {}).get("Variables", {}))
    environment = {}
    for name, value in variables.items():
        try:
            environment[name] = str(resolver.resolve(value))
        except TemplateError:  # refers to a resource: the placeholder below
            environment[name] = "arn:aws:iam::123456789012:role/placeholder"
    return environment


def build_in_a_fresh_interpreter(folder: str, template: dict[str, Any]) -> dict[str, Any]:
    builder, loader, _, _ = CASES[folder]
    env = json.dumps(function_environment(template, folder))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, builder, loader, env],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("folder", sorted(CASES))
def test_each_builder_builds_its_service_and_loads_no_other_functions_code(folder, template):
    _, _, service_class, own = CASES[folder]
    built = build_in_a_fresh_interpreter(folder, template)
    assert built["type"] == service_class
    loaded_services = {m.split(".")[2] for m in built["modules"] if m.startswith("sagepilot.services.")}
    assert loaded_services == own, f"{folder} loads the services {sorted(loaded_services - own)} of other functions"


def test_the_rollout_builder_asks_only_for_the_clients_the_rollout_uses(template):
    built = build_in_a_fresh_interpreter("rollout", template)
    assert built["clients"] == ["application-autoscaling", "cloudwatch", "dynamodb", "s3", "sagemaker", "sns"]
    assert not {"sagepilot.adapters.s3", "sagepilot.adapters.state"} & set(built["modules"])


# The domain rules each function's cold start must not load: the other functions' (settings.py imports each
# function's rules in its loader; the registry adapter, shared, reads versions as domain.model_versions types).
BATCH_ONLY = {"sagepilot.domain.transform_plan", "sagepilot.domain.coalescing", "sagepilot.domain.scheduler"}
ROLLOUT_ONLY = {"sagepilot.domain.rollout", "sagepilot.domain.deployment", "sagepilot.domain.canary_gate"}
NOT_LOADED = {
    "rollout": BATCH_ONLY | {"sagepilot.domain.training"},
    "batch_intake": ROLLOUT_ONLY | {"sagepilot.domain.training"},
    "batch_completion": ROLLOUT_ONLY | {"sagepilot.domain.training"},
    "training": ROLLOUT_ONLY | {"sagepilot.domain.coalescing", "sagepilot.domain.scheduler"},
}


@pytest.mark.parametrize("folder", sorted(NOT_LOADED))
def test_a_functions_init_loads_no_domain_rules_of_the_other_functions(folder, template):
    built = build_in_a_fresh_interpreter(folder, template)
    loaded = sorted(NOT_LOADED[folder] & set(built["modules"]))
    assert not loaded, f"{folder}'s init loads {loaded}"
