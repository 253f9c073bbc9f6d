"""The canary gate's report (domain.canary_report) and the sandbox's percentile-rank statistic it relies on."""

from __future__ import annotations

import json

import pytest

from sagepilot.domain.canary_gate import GateSettings, StepEvidence, VariantCounts, assess
from sagepilot.domain.canary_report import appended, entry, html_page, rollout_id, rollout_key, table
from sagepilot_sandbox.sagemaker.metrics import percentile_rank


def look(at: float, cand_errors: int, decision: str = "") -> dict[str, object]:
    evidence = StepEvidence(
        VariantCounts(9_000, 90, 450, 9_000), VariantCounts(1_000, cand_errors, 50, 1_000), at - 60, at
    )
    return entry(at, 0, 10, assess(evidence, GateSettings(), (10, 50, 100)), decision, stable=1, candidate=2)


def test_looks_are_appended_once_and_kept_as_json() -> None:
    report = appended(None, "sp-churn", rollout_id(2, 1000.4), look(1060, 10))
    report = appended(report, "sp-churn", "v2-1000", look(1060, 10))  # the same look again (a retried trigger)
    report = appended(report, "sp-churn", "v2-1000", look(1120, 60, "rolling back: canary analysis ..."))
    assert report["rollout"] == "v2-1000" and [e["at"] for e in report["entries"]] == [1060, 1120]
    assert rollout_key("sp-churn", "v2-1000") == "rollouts/sp-churn/v2-1000/report.json"
    assert json.loads(json.dumps(report, allow_nan=False)) == report  # no inf/nan: the bounds are finite or null


def test_the_table_shows_each_decision_with_both_variants_figures() -> None:
    report = appended(None, "sp-churn", "v2-1000", look(1060, 10))
    report = appended(report, "sp-churn", "v2-1000", look(1120, 60, "rolling back: canary analysis ..."))
    lines = table(report)
    assert lines[0] == "sp-churn rollout v2-1000: 2 looks"
    errors = next(line for line in lines if " errors " in line)
    assert "90/9000" in errors and "60/1000" in errors and errors.endswith("WORSE")
    assert lines[-1].strip() == "-> rolling back: canary analysis ..."


def test_the_page_is_self_contained_with_a_chart_and_the_decisions_marked() -> None:
    report = appended(None, "sp-churn", "v2-1000", look(1060, 10))
    report = appended(report, "sp-churn", "v2-1000", look(1120, 60, "rolling back <now>"))
    page = html_page(report)
    assert page.count("<polyline") == 5  # share; stable and candidate error rates; both latency shares
    assert "stroke-dasharray" in page and "rolling back &lt;now&gt;" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_percentile_rank_as_cloudwatch_defines_it() -> None:
    values = [100.0, 200.0, 300.0, 400.0]
    assert percentile_rank(values, "PR(:200)") == 50.0  # at or under 200
    assert percentile_rank(values, "PR(100:300)") == 50.0  # over 100, at most 300
    assert percentile_rank(values, "PR(250:)") == 50.0
    assert percentile_rank([], "PR(:1)") is None
    with pytest.raises(ValueError, match="percentile-rank"):
        percentile_rank(values, "p99")
