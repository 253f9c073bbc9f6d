"""The EMF lines carry exactly the dimensions the template's alarms and dashboard read, in the environment the
template gives the functions (CloudWatch matches a metric only when its dimension set is exactly the one asked for)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sagepilot.metrics import EmfRecorder


def dimension_sets(out: str) -> list[set[str]]:
    lines = [json.loads(line) for line in out.strip().splitlines()]
    directives = [directive for line in lines for directive in line["_aws"]["CloudWatchMetrics"]]
    return [set(d) for directive in directives for d in directive["Dimensions"]]


def test_the_functions_environment_adds_no_dimension(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)  # would add a `service` dimension to each metric
    functions = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    for function in [template["Globals"]["Function"], *functions]:  # every function's environment, shared and own
        for name, value in function.get("Environment", {}).get("Variables", {}).items():
            if isinstance(value, str):
                monkeypatch.setenv(name, value)

    EmfRecorder("sagepilot").emit("ReconcileRuns")
    EmfRecorder("sagepilot").emit("FilesRejected", 2, Reason="EMPTY_FILE")
    EmfRecorder("sagepilot").emit("VariantWeight", 0.1, "None", Endpoint="sagepilot-churn", Variant="v2")

    assert dimension_sets(capsys.readouterr().out) == [
        {"Stack"},  # the reconcile-not-running alarm: Dimensions [{Name: Stack}]
        {"Stack", "Reason"},  # the dashboard: SEARCH('{Sagepilot,Stack,Reason} ...')
        {"Stack", "Endpoint", "Variant"},  # the dashboard: SEARCH('{Sagepilot,Stack,Endpoint,Variant} ...')
    ]
