"""Every AWS call a function made in a sandbox is allowed by that function's IAM policy in template.yaml.

Each e2e module ends with a test calling `assert_calls_allowed` on its sandbox (the fixture records the
calls made inside each function's process, and the calls Lambda makes with the function's role: see
sagepilot_sandbox.lambda_runtime.runtime and iam_check). The scenarios before it are what exercises the functions'
paths; `expected` names the (function, service.operation) pairs the module must have seen, so the check
cannot pass vacuously when a scenario stops reaching a path.
"""

from __future__ import annotations

from collections.abc import Iterable

from sagepilot_sandbox.server import Sandbox
from sagepilot_sandbox.stack import iam_check


def recorded_pairs(sandbox: Sandbox) -> set[tuple[str, str]]:
    assert sandbox.lambdas is not None
    return {
        (function_id, f"{call['service']}.{call['operation']}")
        for function_id, function in sandbox.lambdas.functions.items()
        for call in function.recorded_calls()
    }


def assert_calls_allowed(sandbox: Sandbox, *, min_pairs: int, expected: Iterable[tuple[str, str]] = ()) -> None:
    assert sandbox.lambdas is not None and sandbox.stack is not None
    assert all(f.record_calls for f in sandbox.lambdas.functions.values()), "the sandbox must record calls"
    calls = {fid: function.recorded_calls() for fid, function in sandbox.lambdas.functions.items()}
    policies, env = iam_check.stack_policies(sandbox.stack)
    findings = iam_check.check_calls(calls, policies, env)
    pairs = recorded_pairs(sandbox)
    summary = "\n".join(f"  {fid}: {op}" for fid, op in sorted(pairs))
    assert not findings, (
        f"{len(findings)} AWS call(s) of the functions are not allowed by their IAM policy in template.yaml:\n"
        + "\n".join(finding.describe() for finding in findings)
    )
    missing = sorted(set(expected) - pairs)
    assert not missing, f"the scenarios did not reach {missing}; recorded:\n{summary}"
    assert len(pairs) >= min_pairs, f"only {len(pairs)} distinct (function, operation) pairs recorded:\n{summary}"
    print(f"IAM check: {sum(len(c) for c in calls.values())} distinct calls, {len(pairs)} pairs allowed:\n{summary}")
