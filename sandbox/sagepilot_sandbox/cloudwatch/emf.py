"""CloudWatch's side of the embedded metric format (EMF): a function's EMF log lines become metrics.

In AWS, whatever a Lambda function prints goes to CloudWatch Logs, and CloudWatch Logs extracts a metric
from every log event that is an EMF document; the function makes no API call for it (that is why the
product's `EmfRecorder` prints instead of calling PutMetricData). moto has neither side, so without this
module the sandbox's `Sagepilot` metrics, and every alarm and operator figure built on them, would be empty.

The function's process (`lambda_worker`) hands back the lines of one invocation's output that look like
EMF documents; `extract` turns each into metric data as CloudWatch's specification says, and `publish`
puts them into the embedded CloudWatch (moto's backend, as `metrics.InvocationMetrics` does for SageMaker's
metrics, so the function's own AWS calls are not inflated):

- the document is one JSON object with `_aws` = {`Timestamp`: epoch milliseconds, `CloudWatchMetrics`:
  [directive]}; a directive is {`Namespace`, `Dimensions`: [[key, ...] (at most 30)], `Metrics`:
  [{`Name`, `Unit`?, `StorageResolution`?}] (at most 100)};
- every dimension key and metric name refers to a member of the root: a dimension's value is a string,
  a metric's value a number or an array of at most 100 numbers;
- each dimension set of a directive gives one metric per metric definition (an empty set: no dimensions;
  no set at all: one metric without dimensions);
- a document that breaks a rule yields no metric (CloudWatch keeps the log line and drops the metric):
  `extract` says why in its `problems`, `publish` counts them.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import cloudwatch_backends

MAX_DIMENSIONS = 30
MAX_METRICS = 100
MAX_VALUES = 100
_SIZES = ("Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes")
_BITS = ("Bits", "Kilobits", "Megabits", "Gigabits", "Terabits")
UNITS = frozenset(  # the units CloudWatch accepts
    {"Seconds", "Microseconds", "Milliseconds", "Percent", "Count", "Count/Second", "None", *_SIZES, *_BITS}
    | {f"{unit}/Second" for unit in (*_SIZES, *_BITS)}
)


@dataclass(frozen=True)
class MetricPoint:
    """One metric datum to put: what PutMetricData takes for it (`as_put`)."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    values: tuple[float, ...]
    unit: str
    timestamp: datetime
    storage_resolution: int = 60

    def as_put(self) -> dict[str, Any]:
        return {
            "MetricName": self.name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions],
            "Values": list(self.values),
            "Unit": self.unit,
            "Timestamp": self.timestamp.astimezone(UTC).replace(tzinfo=None),  # moto keeps naive UTC
            "StorageResolution": self.storage_resolution,
        }


@dataclass
class Extracted:
    points: list[MetricPoint] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class _Invalid(ValueError):
    pass


def candidate_lines(text: str) -> list[str]:
    """The lines of a function's output that may be EMF documents (cheap filter; `extract` decides)."""
    return [line.strip() for line in text.splitlines() if line.lstrip().startswith("{") and '"_aws"' in line]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _values(root: dict[str, Any], name: str) -> tuple[float, ...]:
    if name not in root:
        raise _Invalid(f"metric {name!r} has no member in the document")
    value = root[name]
    if _number(value):
        return (float(value),)
    if isinstance(value, list) and 0 < len(value) <= MAX_VALUES and all(_number(v) for v in value):
        return tuple(float(v) for v in value)
    raise _Invalid(f"metric {name!r} is not a number or an array of 1-{MAX_VALUES} numbers: {value!r}")


def _dimension_sets(root: dict[str, Any], directive: dict[str, Any]) -> list[tuple[tuple[str, str], ...]]:
    sets = directive.get("Dimensions", [[]])
    if not isinstance(sets, list):
        raise _Invalid("Dimensions is not an array of dimension sets")
    out: list[tuple[tuple[str, str], ...]] = []
    for keys in sets or [[]]:
        if not isinstance(keys, list) or len(keys) > MAX_DIMENSIONS:
            raise _Invalid(f"a dimension set is not an array of at most {MAX_DIMENSIONS} keys: {keys!r}")
        pairs: list[tuple[str, str]] = []
        for key in keys:
            if not isinstance(key, str) or not isinstance(root.get(key), str) or not root[key]:
                raise _Invalid(f"dimension {key!r} has no string member in the document")
            pairs.append((key, root[key]))
        out.append(tuple(pairs))
    return out


def _from_document(document: Any) -> list[MetricPoint]:
    if not isinstance(document, dict) or not isinstance(document.get("_aws"), dict):
        raise _Invalid("not an object with an `_aws` metadata object")
    meta = document["_aws"]
    stamp, directives = meta.get("Timestamp"), meta.get("CloudWatchMetrics")
    if not _number(stamp):
        raise _Invalid("_aws.Timestamp is not a number of epoch milliseconds")
    if not isinstance(directives, list):
        raise _Invalid("_aws.CloudWatchMetrics is not an array")
    when = datetime.fromtimestamp(float(stamp) / 1000.0, UTC)
    points: list[MetricPoint] = []
    for directive in directives:
        if not isinstance(directive, dict) or not isinstance(directive.get("Namespace"), str):
            raise _Invalid("a metric directive has no Namespace")
        namespace = directive["Namespace"]
        if not 1 <= len(namespace) <= 255 or namespace.startswith("AWS/"):
            raise _Invalid(f"namespace {namespace!r} is not one a function may publish to")
        definitions = directive.get("Metrics")
        if not isinstance(definitions, list) or len(definitions) > MAX_METRICS:
            raise _Invalid(f"Metrics is not an array of at most {MAX_METRICS} metric definitions")
        dimension_sets = _dimension_sets(document, directive)
        for definition in definitions:
            if not isinstance(definition, dict) or not isinstance(definition.get("Name"), str):
                raise _Invalid(f"a metric definition has no Name: {definition!r}")
            unit = definition.get("Unit", "None")
            if unit not in UNITS:
                raise _Invalid(f"metric {definition['Name']!r} has an unknown unit {unit!r}")
            resolution = definition.get("StorageResolution", 60)
            if resolution not in (1, 60):
                raise _Invalid(f"metric {definition['Name']!r}: StorageResolution is 1 or 60, not {resolution!r}")
            values = _values(document, definition["Name"])
            points += [
                MetricPoint(namespace, definition["Name"], dims, values, unit, when, int(resolution))
                for dims in dimension_sets
            ]
    return points


def extract(lines: Iterable[str]) -> Extracted:
    """The metrics CloudWatch would extract from these log lines (see the module docstring)."""
    found = Extracted()
    for line in lines:
        try:
            found.points += _from_document(json.loads(line))
        except (json.JSONDecodeError, _Invalid) as exc:
            found.problems.append(f"{exc}: {line[:200]}")
    return found


class EmfPublisher:
    """Puts extracted metrics into the embedded CloudWatch of one account and region."""

    def __init__(self, account: str, region: str) -> None:
        self.account, self.region = account, region
        self.published = 0  # metric data put so far
        self.rejected: list[str] = []  # why documents were dropped (CloudWatch drops them silently)
        self._lock = threading.Lock()

    def publish(self, lines: Iterable[str]) -> Extracted:
        found = extract(lines)
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for point in found.points:
            by_namespace.setdefault(point.namespace, []).append(point.as_put())
        backend = cloudwatch_backends[self.account][self.region]
        for namespace, data in by_namespace.items():
            backend.put_metric_data(namespace, data)
        with self._lock:
            self.published += len(found.points)
            self.rejected += found.problems
        return found
