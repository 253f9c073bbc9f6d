"""`make bench` / `python -m bench`: every figure beside a baseline measured in the same run.

Sections (in this order, so that the timing-sensitive one runs on a quiet machine):
  size      artifact size of the SAM build (runs `make build` when a source is newer than the build)
  cold      cold start per function against the boto3 floor, interleaved runs, medians
  calls     AWS calls per event, by operation, per scenario (embedded AWS in a child process)
  drop      a burst of files into the running sandbox (10,000; 1,000 with --quick), in a child process; then
            the same drop without the start-up hold (HoldSeconds=0, the design before it): the tail with the
            hold beside the tail without it, unchanged or better (issue 19)
  groups    the same burst across 100 model groups, then a trickle (200 files over 30 s): jobs per group
            (issue 19: at most 2), none lost or doubled, in a child process
  canary    thousands of seeded `ab` rollouts in pure code: alarms, fixed-horizon, peeked and the sequential gate

Prints a table (figure, baseline, ratio, target, pass/fail) and the details behind it, writes
.bench/results.json, and exits 1 when a target is missed (0 with --no-fail).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import artifacts, canary, coldstart
from bench.common import (
    OUT_DIR,
    PYTHON,
    ROOT,
    Figure,
    SectionResult,
    Target,
    clean_environment,
    format_ratio,
    format_value,
)
from bench.stackroot import project_root

SECTIONS = ("size", "cold", "calls", "drop", "groups", "canary")
# How long a drop may run from its first upload: a time to wait for the outcome, not a target (the targets are
# ratios to the upload time). The upload alone took 72 s on one quiet 2-core machine and 142 s on another.
DROP_BUDGET = 360.0
GROUPS_DROP_GROUPS, GROUPS_TRICKLE, GROUPS_TRICKLE_SECONDS = 100, 200, 30.0
# The groups drop waits longer than the plain drop: with the start-up hold, a busy group's files start once the
# intake has read the whole backlog (10,000 events across 100 groups) and the group has been quiet (the
# sandbox's HoldQuietSeconds, 2 s) after the trickle. A time to wait for the outcome (jobs per group, lost,
# doubled), not a target.
GROUPS_EXTRA_SECONDS = 240.0
# Issue 19 asks that the existing drop's tail stay "unchanged or better" with the start-up hold: its baseline is the
# same drop measured in this run with the hold off (HoldSeconds=0: every batch starts its own jobs, as before it).
UNHELD_OVERRIDE = "HoldSeconds=0"
# Two single drops one after the other differ by the machine's run-to-run noise (the drop's tail ratio over three
# runs on a quiet machine: 0.40, 0.42, 0.44, a spread of 10%): "unchanged" allows that much.
UNCHANGED_WITHIN = 1.10


def tail_beside(
    result: SectionResult, baseline: SectionResult, *, name: str, label: str, target: Target | None
) -> Figure:
    """`result`'s tail ratio beside `baseline`'s, both measured in this run (`label` names the baseline)."""
    section = result.figures[0].section if result.figures else result.section
    mine, theirs = result.details.get("tailRatio"), baseline.details.get("tailRatio")
    missing = "" if mine is not None and theirs is not None else "a tail ratio is missing (a drop did not finish)"
    return Figure(
        section,
        name,
        mine,
        "ratio",
        baseline=theirs,
        baseline_label=f"{label}: the {baseline.details.get('files', 0):,}-file drop's tail ratio "
        f"({len(baseline.details.get('groups', []))} groups)",
        target=target,
        error=missing if target is not None else "",
        note="" if missing == "" or target is not None else missing,
    )


def drop_beside_unheld(held: SectionResult, unheld: SectionResult) -> Figure:
    """The drop's tail with the start-up hold beside the same drop's without it: unchanged or better (issue 19)."""
    return tail_beside(
        held,
        unheld,
        name="tail ratio with the start-up hold beside without it (same run)",
        label=f"without the hold ({UNHELD_OVERRIDE})",
        target=Target("ratio", "<=", UNCHANGED_WITHIN),
    )


def groups_beside_drop(groups: SectionResult, drop: SectionResult) -> Figure:
    """The groups drop's tail beside the plain drop's: informational. Its burst's last files share a held job with
    the trickle that follows (at most 2 jobs per group), so they start after the trickle and the quiet after it."""
    return tail_beside(
        groups, drop, name="tail ratio beside the plain drop's (same run)", label="the plain drop", target=None
    )


def _child_section(name: str, module: str, args: list[str], timeout: float) -> SectionResult:
    """Run a section in a process of its own (the embedded AWS is process-wide state)."""
    out = OUT_DIR / f"{name}.json"
    log = OUT_DIR / f"{name}.log"
    out.unlink(missing_ok=True)
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as sink:
        try:
            done = subprocess.run(
                [PYTHON, "-m", module, *args, "--out", str(out)],
                cwd=ROOT,
                env=clean_environment(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
            problem = "" if done.returncode == 0 and out.exists() else f"exited {done.returncode}"
        except subprocess.TimeoutExpired:
            problem = f"did not finish within {timeout:.0f} s"
    if problem:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-8:]
        result = SectionResult(name, text=[f"{name}: {problem}; log {log.relative_to(ROOT)}:", *tail])
        result.figures.append(Figure(name, f"{name} section", None, "", error=f"{problem} (see {log.name})"))
        result.seconds = time.monotonic() - started
        return result
    result = SectionResult.from_json(json.loads(out.read_text(encoding="utf-8")))
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("  "):  # the child's progress lines
            print(line, flush=True)
    return result


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def render(results: list[SectionResult]) -> str:
    header = ["section", "figure", "value", "baseline", "ratio", "target", "result"]
    rows: list[list[str]] = []
    for result in results:
        for f in result.figures:
            verdict = "ERROR" if f.error else {True: "pass", False: "FAIL", None: "-"}[f.passed]
            rows.append(
                [
                    f.section,
                    f.name,
                    format_value(f.value, f.unit),
                    format_value(f.baseline, f.unit) if f.baseline is not None else "-",
                    format_ratio(f.ratio),
                    f.target.describe(f.unit) if f.target else "-",
                    verdict,
                ]
            )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [_row(header, widths), "  ".join("-" * w for w in widths)]
    lines += [_row(r, widths) for r in rows]
    lines.append("")
    lines.append("Baselines, spreads and notes:")
    for result in results:
        for f in result.figures:
            bits = [b for b in (f.baseline_label and f"baseline: {f.baseline_label}", f.spread, f.note, f.error) if b]
            if bits:
                lines.append(f"  [{f.section}] {f.name}: " + "; ".join(bits))
    for result in results:
        if result.text:
            lines.append("")
            lines += result.text
    return "\n".join(lines)


def _host() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "loadAverage": os.getloadavg(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def drop_run_args(root: Path, files: int, groups: int, threads: int, budget: float, overrides: list[str]) -> list[str]:
    """`python -m bench.drop run ...`'s arguments: a drop of `files` across `groups` groups."""
    return [
        "run",
        "--root",
        str(root),
        "--files",
        str(files),
        "--groups",
        str(groups),
        "--threads",
        str(threads),
        "--budget",
        str(budget),
        *overrides,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and a 1,000-file drop")
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even when a target is missed")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    parser.add_argument("--reps", type=int, help="cold start runs per arm (default 15, --quick 7)")
    parser.add_argument("--files", type=int, help="files in the drop (default 10,000, --quick 1,000)")
    parser.add_argument("--groups", type=int, default=2, help="model package groups the drop spreads over")
    parser.add_argument("--threads", type=int, default=32, help="upload threads of the drop's client")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="stack parameter for the calls and drop sections (sandbox defaults otherwise)",
    )
    parser.add_argument(
        "--drop-budget",
        type=float,
        default=DROP_BUDGET,
        help=f"seconds the drop may run from its first upload (default {DROP_BUDGET:.0f}); what is not done by "
        "then is reported as not done",
    )
    parser.add_argument(
        "--cold-dev-venv",
        action="store_true",
        help="also time each init and floor on this venv's Python with the source layer (informational)",
    )
    parser.add_argument("--no-build", action="store_true", help="measure .aws-sam/build even if it is stale")
    parser.add_argument("--template", type=Path, help="provision another template (beside this checkout's code)")
    parser.add_argument("--json", type=Path, default=OUT_DIR / "results.json", help="where to write the results")
    args = parser.parse_args(argv)

    sections = args.only or list(SECTIONS)
    reps = args.reps or (7 if args.quick else 15)
    files = args.files or (1_000 if args.quick else 10_000)
    root = project_root(args.template)
    overrides = [a for o in args.override for a in ("--override", o)]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    host = _host()
    print(f"bench: {', '.join(sections)} on {host['cpus']} CPUs, load {host['loadAverage'][0]:.2f}", flush=True)

    results: list[SectionResult] = []
    if "size" in sections:
        print("== artifact size", flush=True)
        results.append(artifacts.run(OUT_DIR, allow_build=not args.no_build))
    if "cold" in sections:
        print("== cold start", flush=True)
        results.append(coldstart.run(reps=reps, dev_venv=args.cold_dev_venv))
    if "calls" in sections:
        print("== AWS calls per event", flush=True)
        results.append(_child_section("calls", "bench.calls", ["--root", str(root), *overrides], timeout=300))
    if "drop" in sections:
        print(f"== {files:,}-file drop into the sandbox", flush=True)
        drop_args = drop_run_args(root, files, args.groups, args.threads, args.drop_budget, overrides)
        drop_result = _child_section("drop", "bench.drop", drop_args, timeout=args.drop_budget + 180)
        results.append(drop_result)
        print(f"== the same drop without the start-up hold ({UNHELD_OVERRIDE}), its baseline", flush=True)
        unheld_args = [*drop_args, "--override", UNHELD_OVERRIDE]
        unheld = _child_section("drop-unheld", "bench.drop", unheld_args, timeout=args.drop_budget + 180)
        unheld.section = "drop-unheld"
        for figure in unheld.figures:
            figure.section = f"{figure.section} without the hold"
        results.append(unheld)
        if drop_result.figures and not drop_result.figures[0].error:
            drop_result.figures.append(drop_beside_unheld(drop_result, unheld))
    if "groups" in sections:
        print(f"== {files:,}-file drop across {GROUPS_DROP_GROUPS} groups, then a trickle", flush=True)
        budget = args.drop_budget + GROUPS_TRICKLE_SECONDS + GROUPS_EXTRA_SECONDS
        trickle = ["--trickle", str(GROUPS_TRICKLE), "--trickle-seconds", str(GROUPS_TRICKLE_SECONDS)]
        groups_args = [*drop_run_args(root, files, GROUPS_DROP_GROUPS, args.threads, budget, overrides), *trickle]
        timeout = budget + 600  # reading every job
        groups_result = _child_section("groups", "bench.drop", groups_args, timeout=timeout)
        plain = next((r for r in results if r.section == "drop"), None)
        if plain is not None and groups_result.figures and not groups_result.figures[0].error:
            groups_result.figures.append(groups_beside_drop(groups_result, plain))
        results.append(groups_result)
    if "canary" in sections:
        print("== canary analysis: simulated rollouts", flush=True)
        results.append(canary.run(runs=500 if args.quick else 2_000))

    if root != ROOT:
        shutil.rmtree(root, ignore_errors=True)  # the temporary root of --template
    print()
    print(render(results))
    figures = [f for r in results for f in r.figures]
    missed = [f for f in figures if f.passed is False]
    missed_names = [f"{f.section}: {f.name}" for f in missed]
    document = {
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "startedAt": started_at,
        "host": host,
        "passed": not missed,
        "missed": missed_names,
        "sections": [r.to_json() for r in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    print()
    print(f"results: {args.json}")
    if missed:
        print(f"{len(missed)} target(s) missed: " + "; ".join(missed_names))
    return 0 if args.no_fail or not missed else 1
