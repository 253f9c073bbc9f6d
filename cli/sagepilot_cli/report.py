"""`report`: the canary analysis of an endpoint's newest judged rollout, read from the data bucket where the
rollout function keeps it: its table, and a self-contained HTML page with its chart."""

from __future__ import annotations

from sagepilot.adapters.rollout_reports import RolloutReports
from sagepilot.domain import canary_report
from sagepilot_cli.errors import CommandRefused


def show_report(reports: RolloutReports, endpoint: str, html_path: str | None) -> list[str]:
    """The table of the endpoint's newest judged rollout; its page written to `html_path`."""
    found = reports.newest(endpoint)
    if found is None:
        raise CommandRefused(f"no canary analysis report for {endpoint} (its canaries ran without the gate?)")
    path = html_path or f"{endpoint}-report.html"
    with open(path, "w", encoding="utf-8") as page:
        page.write(canary_report.html_page(found))
    return [*canary_report.table(found), f"page written to {path}"]
