"""What every benchmark section shares: figures with their baseline and target, statistics, paths.

A *figure* is one measured number next to a *baseline* measured in the same run on the same machine
(these machines are shared and noisy: only ratios measured side by side mean something), with a target
that is either on the ratio or on the value itself.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / ".bench"
PYTHON = sys.executable
REGION = "us-east-1"


# ---------------------------------------------------------------------------------------- figures
@dataclass(frozen=True)
class Target:
    """`on` the ratio (figure / baseline) or the value itself, compared with `op` to `limit`."""

    on: Literal["ratio", "value"]
    op: Literal["<=", "<", "==", ">="]
    limit: float

    def check(self, value: float | None, ratio: float | None) -> bool | None:
        subject = ratio if self.on == "ratio" else value
        if subject is None or math.isnan(subject):
            return False
        if self.op == "<=":
            return subject <= self.limit
        if self.op == "<":
            return subject < self.limit
        if self.op == ">=":
            return subject >= self.limit
        return subject == self.limit

    def describe(self, unit: str) -> str:
        if self.on == "ratio":
            return f"ratio {self.op} {_number(self.limit)}"
        return f"{self.op} {format_value(self.limit, unit)}"


@dataclass
class Figure:
    section: str
    name: str
    value: float | None
    unit: str  # "ms", "s", "bytes", "calls", "jobs", "files", "ratio"
    baseline: float | None = None
    baseline_label: str = ""
    target: Target | None = None
    spread: str = ""  # e.g. "IQR 241-262 ms, n=15"
    note: str = ""
    error: str = ""  # the measurement itself failed
    ratio: float | None = field(default=None)
    passed: bool | None = field(default=None)  # None: informational, no target

    def __post_init__(self) -> None:
        if self.value is not None and self.baseline:
            self.ratio = self.value / self.baseline
        if self.error:
            self.passed = False
        elif self.target is not None:
            self.passed = self.target.check(self.value, self.ratio)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["target"] = self.target.describe(self.unit) if self.target else None
        out["targetSpec"] = asdict(self.target) if self.target else None
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Figure:
        spec = data.get("targetSpec")
        return cls(
            section=data["section"],
            name=data["name"],
            value=data["value"],
            unit=data["unit"],
            baseline=data.get("baseline"),
            baseline_label=data.get("baseline_label", ""),
            target=Target(**spec) if spec else None,
            spread=data.get("spread", ""),
            note=data.get("note", ""),
            error=data.get("error", ""),
        )


@dataclass
class SectionResult:
    """A section's figures, the details behind them (JSON) and what it wants printed under the table."""

    section: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "seconds": round(self.seconds, 1),
            "figures": [f.to_json() for f in self.figures],
            "details": self.details,
            "text": self.text,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SectionResult:
        return cls(
            section=data["section"],
            figures=[Figure.from_json(f) for f in data.get("figures", [])],
            details=dict(data.get("details", {})),
            text=list(data.get("text", [])),
            seconds=float(data.get("seconds", 0.0)),
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Sample:
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    def quantile(self, q: float) -> float:
        """Linear interpolation between closest ranks (q in [0, 1])."""
        if not self.values:
            return math.nan
        ordered = sorted(self.values)
        position = q * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    def spread(self, unit: str) -> str:
        return (
            f"IQR {format_value(self.quantile(0.25), unit, bare=True)}-{format_value(self.quantile(0.75), unit)}"
            f" (min {format_value(min(self.values), unit, bare=True)}, max"
            f" {format_value(max(self.values), unit, bare=True)}), n={self.n}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "median": self.median,
            "p25": self.quantile(0.25),
            "p75": self.quantile(0.75),
            "min": min(self.values) if self.values else None,
            "max": max(self.values) if self.values else None,
            "values": list(self.values),
        }


def approved_package(bucket: str, group: str, content_types: Sequence[str] = ("text/csv",)) -> dict[str, Any]:
    """CreateModelPackage's arguments for an Approved version of `group` whose model lives in `bucket`."""
    return {
        "ModelPackageGroupName": group,
        "ModelApprovalStatus": "Approved",
        "InferenceSpecification": {
            "Containers": [
                {
                    "Image": f"123456789012.dkr.ecr.{REGION}.amazonaws.com/{group}:1",
                    "ModelDataUrl": f"s3://{bucket}/models/{group}/model.tar.gz",
                }
            ],
            "SupportedContentTypes": list(content_types),
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    }


def paired_ratio_interval(figures: Sequence[float], baselines: Sequence[float]) -> tuple[float, float, float]:
    """Median and IQR of the ratios of runs taken side by side (run i of the figure with run i of the
    baseline): a second view of the ratio that a slow spell of the machine affects less."""
    ratios = Sample(tuple(f / b for f, b in zip(figures, baselines, strict=False) if b))
    return ratios.median, ratios.quantile(0.25), ratios.quantile(0.75)


# ---------------------------------------------------------------------------------------- formatting
def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"


def format_value(value: float | None, unit: str, *, bare: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    suffix = "" if bare else f" {unit}"
    if unit == "ms":
        return f"{value:.0f}{suffix}"
    if unit == "s":
        return f"{value:.1f}{suffix}"
    if unit == "bytes":
        return f"{value / 1e6:.2f}{'' if bare else ' MB'}"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit in ("calls", "calls/file", "calls/event", "calls/job"):
        return f"{value:.2f}{suffix}" if value != int(value) else f"{int(value)}{suffix}"
    return f"{_number(value)}{suffix}"


def format_ratio(ratio: float | None) -> str:
    if ratio is None or math.isnan(ratio):
        return "-"
    return f"{ratio:.3f}x" if ratio < 0.1 else f"{ratio:.2f}x"


# ---------------------------------------------------------------------------------------- processes
def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The bench's own environment minus anything that could point boto3 at a real AWS account."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOTO_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if extra:
        env.update(extra)
    return env


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
