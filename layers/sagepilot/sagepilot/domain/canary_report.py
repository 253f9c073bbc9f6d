"""The canary gate's report of one rollout (pure): the looks and decisions, a table and a self-contained HTML page.

Kept in S3 at `rollouts/<endpoint>/<rollout>/report.json` (`rollout_key`), one entry per look of the gate
(every reconcile of a judged step): when, the step and the candidate's share, per metric both variants'
counts and rates, the difference's confidence sequence, the statistic and its boundary, the verdict, and
what the rollout did (`decision`: empty while it keeps collecting). `sagepilot report ENDPOINT` prints the
decisions as a table and writes the page: an inline SVG of the candidate's share over time and each
variant's error rate and share of requests over the latency objective, the decisions marked.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sagepilot.domain.canary_gate import Assessment

REPORT_PREFIX = "rollouts"
MAX_ENTRIES = 2_000  # a day of one-minute looks is 1,440


def rollout_id(candidate_version: int, started_at: float) -> str:
    """The rollout's name in the report's key: the candidate and when its canary began (deterministic)."""
    return f"v{candidate_version}-{int(started_at)}"


def rollout_key(endpoint: str, rollout: str) -> str:
    return f"{REPORT_PREFIX}/{endpoint}/{rollout}/report.json"


def entry(
    at: float,
    step: int,
    share: int,
    assessment: Assessment,
    decision: str,
    *,
    stable: int,
    candidate: int,
    shadow: bool = False,
) -> dict[str, Any]:
    """One look of the gate; `shadow`: at the shadow test (the candidate answered copies of requests, share 0)."""
    return {
        **({"shadow": True} if shadow else {}),
        "at": at,
        "step": step,
        "share": share,
        "stable": stable,
        "candidate": candidate,
        "verdict": str(assessment.verdict),
        "alpha": assessment.alpha,
        "window": [assessment.evidence.start, assessment.evidence.end],
        "metrics": [j.as_dict() for j in assessment.judgements],
        "decision": decision,
    }


def appended(report: Mapping[str, Any] | None, endpoint: str, rollout: str, new: Mapping[str, Any]) -> dict[str, Any]:
    """The report with `new` added (a repeat of the same look, at the same time, is not added twice)."""
    entries = list((report or {}).get("entries", []))
    if not any(
        e.get("at") == new["at"] and e.get("step") == new["step"] and e.get("shadow") == new.get("shadow")
        for e in entries
    ):
        entries.append(dict(new))
    return {"endpoint": endpoint, "rollout": rollout, "entries": entries[-MAX_ENTRIES:]}


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):+.2%}"


def table(report: Mapping[str, Any]) -> list[str]:
    """The decisions (and the last look) as text: per metric both variants' figures and the verdict."""
    entries = list(report.get("entries", []))
    shown = [e for e in entries if e.get("decision")]
    if entries and entries[-1] not in shown:
        shown.append(entries[-1])
    lines = [
        f"{report.get('endpoint', '')} rollout {report.get('rollout', '')}: {len(entries)} looks",
        f"{'when':<20} {'share':>5} {'metric':<8} {'stable':>16} {'candidate':>16} {'diff':>8} "
        f"{'sequence':>18} {'margin':>7} {'stat/bound':>12} verdict",
    ]
    for e in shown:
        for m in e.get("metrics", []):
            b, c = m["baseline"], m["candidate"]
            lines.append(
                f"{_when(e['at']):<20} {e['share']:>4}% {m['metric']:<8} "
                f"{str(b['events']) + '/' + str(b['trials']):>16} {str(c['events']) + '/' + str(c['trials']):>16} "
                f"{_pct(m['difference']):>8} {'[' + _pct(m['lower']) + ', ' + _pct(m['upper']) + ']':>18} "
                f"{m['margin']:>7.2%} {m['statistic']:>5.1f}/{m['boundary']:<5.1f}  {m['verdict']}"
            )
        lines.append(f"{'':<20} -> {e.get('decision') or 'collecting'}")
    return lines


def _series(entries: Sequence[Mapping[str, Any]], metric: str, side: str) -> list[tuple[float, float]]:
    points = []
    for e in entries:
        for m in e.get("metrics", []):
            if m["metric"] == metric and m[side]["trials"]:
                points.append((float(e["at"]), float(m[side]["rate"])))
    return points


def html_page(report: Mapping[str, Any]) -> str:
    """A self-contained page (no script, no external resource): the chart and the table."""
    entries = list(report.get("entries", []))
    width, height, pad = 900, 420, 50
    times = [float(e["at"]) for e in entries] or [0.0, 1.0]
    t0, t1 = min(times), max(max(times), min(times) + 1)

    def both(metric: str) -> list[list[tuple[float, float]]]:
        return [_series(entries, metric, "baseline"), _series(entries, metric, "candidate")]

    panels = (
        ("candidate share (%)", [[(float(e["at"]), float(e["share"])) for e in entries]], 100.0),
        ("5xx rate", both("errors"), 0.0),
        ("share over latency objective", both("latency"), 0.0),
    )
    colours = ("#1f77b4", "#d62728")
    panel_h = (height - pad) / len(panels)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">']

    def x(t: float) -> float:
        return pad + (t - t0) / (t1 - t0) * (width - 2 * pad)

    for index, (title, lines, fixed_top) in enumerate(panels):
        top = 10 + index * panel_h
        inner = panel_h - 30
        peak = fixed_top or max([v for line in lines for _, v in line] + [1e-9]) * 1.1
        svg.append(f'<text x="{pad}" y="{top + 10:.0f}">{html.escape(title)} (max {peak:.3g})</text>')
        svg.append(
            f'<rect x="{pad}" y="{top + 15:.0f}" width="{width - 2 * pad}" height="{inner:.0f}" '
            'fill="none" stroke="#999"/>'
        )
        for number, line in enumerate(lines):
            if not line:
                continue
            path = " ".join(f"{x(t):.1f},{top + 15 + inner - v / peak * inner:.1f}" for t, v in line)
            colour = colours[number % 2] if len(lines) > 1 else "#2ca02c"
            svg.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
    for e in entries:
        if e.get("decision"):
            at = x(float(e["at"]))
            bottom = height - pad
            svg.append(
                f'<line x1="{at:.1f}" y1="10" x2="{at:.1f}" y2="{bottom + 10}" stroke="#555" stroke-dasharray="4 3"/>'
            )
            label = html.escape(str(e["decision"])[:40])
            svg.append(f'<text x="{at + 3:.1f}" y="{bottom + 25}">{label}</text>')
    svg.append(
        f'<text x="{pad}" y="{height - 5}">blue: stable, red: candidate; {_when(t0)} to {_when(t1)} UTC</text></svg>'
    )
    rows = "\n".join(html.escape(line) for line in table(report))
    title = html.escape(f"{report.get('endpoint', '')} rollout {report.get('rollout', '')}")
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body style='font-family:sans-serif'><h1>{title}</h1>\n{''.join(svg)}\n<pre>{rows}</pre></body></html>\n"
    )
