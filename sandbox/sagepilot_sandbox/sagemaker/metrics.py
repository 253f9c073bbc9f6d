"""SageMaker's endpoint invocation metrics, published into CloudWatch (moto's backend) as SageMaker does.

Every invocation that reached a variant (see `invocations`) is recorded under namespace `AWS/SageMaker`
with dimensions `EndpointName` and `VariantName`:

| metric | unit | value per invocation |
|---|---|---|
| `Invocations` | None | 1 |
| `Invocation4XXErrors`, `Invocation5XXErrors` | None | 1 when the model answered 4xx / 5xx, else 0 |
| `ModelLatency` | Microseconds | the model container's round trip |
| `OverheadLatency` | Microseconds | the rest of the request's time in SageMaker |
| `InvocationsPerInstance` | None | 1 / the variant's current instance count |

SageMaker publishes them once a minute. The sandbox publishes what it recorded every `flush_seconds`
(0.25 s by default; or at once with `flush_seconds=0`), so that alarms evaluated on a compressed clock
(`alarms.evaluate_alarm(..., time_scale=...)`) see traffic within seconds: counts as one statistic set
(Sum, SampleCount, Minimum, Maximum) per flush, latencies as their raw values so that percentiles (the
stack's p99 `ModelLatency` alarm) can be computed. Requests SageMaker's front end refuses before a
variant is chosen (no such endpoint, a payload over 6 MB) have no variant, and no metrics, as in AWS.

GetMetricData and GetMetricStatistics answer CloudWatch's percentile-rank statistic `PR(n:m)` (the
percentage of a period's values greater than n and at most m; either end may be left out: `PR(:m)`),
which moto lacks (it answers nothing for it), over the raw values published (`install`).
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, SupportsFloat

from moto.cloudwatch.models import Statistics, cloudwatch_backends

NAMESPACE = "AWS/SageMaker"
COUNT_METRICS = ("Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "InvocationsPerInstance")


@dataclass
class _Window:
    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    per_instance: list[float] = field(default_factory=list)
    model_latency: list[float] = field(default_factory=list)
    overhead_latency: list[float] = field(default_factory=list)


Key = tuple[str, str, str, str]  # account, region, endpoint, variant


class InvocationMetrics:
    """Records invocations and publishes them into CloudWatch (see the module docstring)."""

    def __init__(self, flush_seconds: float = 0.25) -> None:
        self.flush_seconds = flush_seconds
        self._windows: dict[Key, _Window] = defaultdict(_Window)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0  # invocations written to CloudWatch so far

    def record(
        self,
        endpoint: str,
        variant: str,
        *,
        status: int,
        model_seconds: float | None,
        overhead_seconds: float,
        instances: int = 1,
        account: str,
        region: str,
    ) -> None:
        """One invocation that reached `variant`; `status` is what the model answered."""
        with self._lock:
            window = self._windows[(account, region, endpoint, variant)]
            window.invocations += 1
            window.errors_4xx += int(400 <= status < 500)
            window.errors_5xx += int(status >= 500)
            window.per_instance.append(1.0 / max(1, instances))
            if model_seconds is not None:
                window.model_latency.append(round(model_seconds * 1e6, 1))
            window.overhead_latency.append(round(max(0.0, overhead_seconds) * 1e6, 1))
        if self.flush_seconds <= 0:
            self.flush()

    def flush(self) -> None:
        """Write what was recorded since the last flush."""
        with self._lock:
            windows, self._windows = self._windows, defaultdict(_Window)
        for (account, region, endpoint, variant), window in windows.items():
            dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
            data: list[dict[str, Any]] = [
                _stat("Invocations", [1.0] * window.invocations, dimensions),
                _stat("Invocation4XXErrors", _flags(window.errors_4xx, window.invocations), dimensions),
                _stat("Invocation5XXErrors", _flags(window.errors_5xx, window.invocations), dimensions),
                _stat("InvocationsPerInstance", window.per_instance, dimensions),
            ]
            if window.model_latency:
                data.append(
                    {
                        "MetricName": "ModelLatency",
                        "Dimensions": dimensions,
                        "Values": window.model_latency,
                        "Unit": "Microseconds",
                    }
                )
            data.append(_stat("OverheadLatency", window.overhead_latency, dimensions, unit="Microseconds"))
            cloudwatch_backends[account][region].put_metric_data(NAMESPACE, data)
            with self._lock:
                self.published += window.invocations

    def start(self) -> None:
        if self.flush_seconds <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="invocation-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self._windows.clear()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # noqa: BLE001, S112 - a reset account mid-flush: the next flush starts afresh
                continue


_PERCENTILE_RANK = re.compile(r"^PR\((?P<low>[0-9.eE+-]*):(?P<high>[0-9.eE+-]*)\)$")
_installed = False


def percentile_rank(values: list[float], statistic: str) -> float | None:
    """CloudWatch's `PR(n:m)` over `values`: the percentage greater than n and at most m (None: no values)."""
    found = _PERCENTILE_RANK.match(statistic)
    if found is None:
        raise ValueError(f"not a percentile-rank statistic: {statistic!r}")
    if not values:
        return None
    low = float(found["low"]) if found["low"] else float("-inf")
    high = float(found["high"]) if found["high"] else float("inf")
    return 100.0 * sum(1 for v in values if low < v <= high) / len(values)


def install() -> None:
    """Teach moto's statistics the percentile rank (idempotent)."""
    global _installed
    if _installed:
        return
    original = Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Statistics, stat: str) -> SupportsFloat | None:
        if _PERCENTILE_RANK.match(stat):
            return percentile_rank(self.metric_single_values_list, stat)
        return original(self, stat)

    statistics: Any = Statistics
    statistics.get_statistics_for_type = get_statistics_for_type
    _installed = True


def _flags(count: int, total: int) -> list[float]:
    return [1.0] * count + [0.0] * (total - count)


def _stat(name: str, values: list[float], dimensions: list[dict[str, str]], unit: str = "None") -> dict[str, Any]:
    return {
        "MetricName": name,
        "Dimensions": dimensions,
        "StatisticValues": {
            "SampleCount": float(len(values)),
            "Sum": float(sum(values)),
            "Minimum": float(min(values)) if values else 0.0,
            "Maximum": float(max(values)) if values else 0.0,
        },
        "Unit": unit,
    }
