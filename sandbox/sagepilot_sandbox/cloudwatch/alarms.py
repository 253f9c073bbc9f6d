"""CloudWatch alarms as CloudWatch runs them: their state-change events, their initial state, updates.

- Every change of an alarm's state value (SetAlarmState, `evaluate_alarm`, any other path that goes
  through moto's `Alarm.update_state`) emits `CloudWatch Alarm State Change` (source aws.cloudwatch,
  resources [alarm ARN]; detail as CloudWatch's documented sample: alarmName, state and
  previousState {value, reason, reasonData when set, timestamp like `2019-10-01T13:56:40.987+0000`},
  configuration {description when set, metrics [{id, metricStat {metric {namespace, name,
  dimensions {name: value}}, period, stat}, returnData}]}). No event when the value stays the same
  (CloudWatch sends events when an alarm *changes* state; SetAlarmState to the state it is in only
  updates the reason). Delivered at once through `bus.deliver_event`.
- A new alarm starts in INSUFFICIENT_DATA ("Unchecked: Initial alarm creation"), as PutMetricAlarm's
  documentation says (moto starts it in OK). PutMetricAlarm on an existing alarm leaves its state as
  it was and replaces its configuration (moto resets the state).
- moto never evaluates alarms. `evaluate_alarm` does, once, what CloudWatch does every period for a
  single-metric alarm: the last EvaluationPeriods periods of the metric's datapoints (put with
  PutMetricData, e.g. the endpoint metrics of `metrics`) aggregated with the alarm's statistic (Sum,
  Average, Minimum, Maximum, SampleCount, pNN), DatapointsToAlarm of them breaching the threshold means
  ALARM, and TreatMissingData (missing, notBreaching, breaching, ignore) decides for periods without
  data. The transition's StateReasonData is CloudWatch's JSON (queryDate, startDate of the evaluated
  range, statistic, period, recentDatapoints, threshold).
- The compressed clock: `time_scale` real seconds stand for one second of the alarm's Period (1.0:
  real time). With `time_scale=0.05`, the stack's alarms judge real traffic within seconds: the
  `-5xx` alarm (Sum of Invocation5XXErrors per 60 s >= threshold) sums the errors of the last 3 s;
  the `-latency` alarm (p99 ModelLatency over 2 x 60 s) looks at two 3-s windows; the `-low-traffic`
  alarm (Sum of Invocations per 300 s < threshold for IdleMinutes / 5 periods, missing data breaching)
  fires after 15 s without traffic with `sagepilot:idle-minutes` 5 (one period), 3 minutes with the
  default 60. Datapoints keep their real timestamps; only the windows shrink.
- SetAlarmState holds for one period (on the same clock) before evaluation may change the state again,
  as CloudWatch keeps a state set by hand until its next evaluation.
- The simulator evaluates every alarm every `alarm_evaluation_seconds` when that is set, on the clock
  of its `alarm_time_scale`; otherwise alarms change only when told to.
- DescribeAlarmHistory answers (moto: HTTP 500) with the alarms' history as CloudWatch keeps it, for the
  account and region, and kept after an alarm is deleted: a `StateUpdate` item for every change of state
  value (HistorySummary "Alarm updated from OK to ALARM"; HistoryData CloudWatch's JSON
  {"version": "1.0", "oldState": {stateValue, stateReason, stateReasonData when set}, "newState": ...},
  stateReasonData as a JSON object), and a `ConfigurationUpdate` item when PutMetricAlarm creates or
  updates an alarm and when DeleteAlarms deletes one (HistorySummary `Alarm "<name>" created` / `updated`
  / `deleted`; their HistoryData, {"version", "type": Create / Update / Delete, and the alarm's
  configuration}, is the sandbox's summary, not CloudWatch's full document). Items carry AlarmName,
  AlarmType (MetricAlarm, or CompositeAlarm for an alarm with a rule), Timestamp, HistoryItemType,
  HistorySummary and HistoryData. Filters as the API's: AlarmName, AlarmTypes (only metric alarms when
  not given), HistoryItemType, StartDate and EndDate (inclusive); ScanBy TimestampDescending (the
  default, newest first) or TimestampAscending; MaxRecords 1 to 100 (100 when not given, ValidationError
  above), NextToken continuing after the last item returned even as new items arrive (InvalidNextToken for
  a token it did not give). `Action` items never appear: the sandbox runs no alarm actions. History is
  not expired (CloudWatch keeps it for a limited time).
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.cloudwatch import models as cw_models
from moto.cloudwatch.exceptions import CloudWatchException, ValidationError
from moto.cloudwatch.models import cloudwatch_backends

from sagepilot_sandbox import bus

INITIAL_REASON = "Unchecked: Initial alarm creation"
_COMPARE: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}


def _account(alarm: Any) -> str:
    return str(alarm.alarm_arn.split(":")[4])


def _state(value: str, reason: str, reason_data: str | None, timestamp: datetime) -> dict[str, Any]:
    state: dict[str, Any] = {"value": value, "reason": reason}
    if reason_data not in (None, ""):
        state["reasonData"] = reason_data
    state["timestamp"] = bus.iso_millis(_aware(timestamp))
    return state


_aware = bus.utc


def _metric(namespace: str, name: str, dimensions: list[Any]) -> dict[str, Any]:
    return {"dimensions": {d.name: d.value for d in dimensions}, "name": name, "namespace": namespace}


def _configuration(alarm: Any) -> dict[str, Any]:
    configuration: dict[str, Any] = {}
    if alarm.description:
        configuration["description"] = alarm.description
    if getattr(alarm, "rule", None):
        configuration["alarmRule"] = alarm.rule
        return configuration
    metrics: list[dict[str, Any]] = []
    if alarm.metric_data_queries:
        for query in alarm.metric_data_queries:
            entry: dict[str, Any] = {"id": query.id}
            if query.expression:
                entry["expression"] = query.expression
            if query.label:
                entry["label"] = query.label
            if query.metric_stat is not None:
                stat = query.metric_stat
                entry["metricStat"] = {
                    "metric": _metric(stat.metric.namespace, stat.metric.metric_name, stat.metric.dimensions),
                    "period": int(stat.period),
                    "stat": stat.stat,
                }
            entry["returnData"] = str(query.return_data).lower() != "false"
            metrics.append(entry)
    else:
        metric_stat: dict[str, Any] = {
            "metric": _metric(alarm.namespace, alarm.metric_name, alarm.dimensions),
            "period": int(alarm.period),
            "stat": alarm.statistic or alarm.extended_statistic,
        }
        if alarm.unit:
            metric_stat["unit"] = alarm.unit
        metrics.append({"id": _metric_id(alarm), "metricStat": metric_stat, "returnData": True})
    configuration["metrics"] = metrics
    return configuration


def _metric_id(alarm: Any) -> str:
    if not getattr(alarm, "sp_metric_id", None):
        alarm.sp_metric_id = str(uuid.uuid4())
    return str(alarm.sp_metric_id)


def alarm_event(
    alarm: Any, previous: tuple[str, str, str | None, datetime], *, account: str, region: str
) -> dict[str, Any]:
    """`CloudWatch Alarm State Change` for the alarm's current state after `previous`."""
    detail = {
        "alarmName": alarm.name,
        "state": _state(alarm.state_value, alarm.state_reason, alarm.state_reason_data, alarm.state_updated_timestamp),
        "previousState": _state(*previous),
        "configuration": _configuration(alarm),
    }
    return bus.make_event("CloudWatch Alarm State Change", "aws.cloudwatch", account, region, [alarm.alarm_arn], detail)


def _update_state(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_state(self: Any, reason: str, reason_data: str, state_value: str) -> None:
        previous = (self.state_value, self.state_reason, self.state_reason_data, self.state_updated_timestamp)
        original(self, reason, reason_data, state_value)
        if previous[0] != state_value:
            account, region = _account(self), self.region_name
            _record_state_update(cloudwatch_backends[account][region], self, previous)
            event = alarm_event(self, previous, account=account, region=region)
            bus.deliver_event(event, account=account, region=region)

    return update_state


def _alarm_init(original: Callable[..., Any]) -> Callable[..., Any]:
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.state_value = "INSUFFICIENT_DATA"
        self.state_reason = INITIAL_REASON
        self.state_reason_data = None

    return init


def _put_metric_alarm(original: Callable[..., Any]) -> Callable[..., Any]:
    def put_metric_alarm(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        existing = self.alarms.get(name)
        alarm = original(self, name, *args, **kwargs)
        if existing is not None:
            for attribute in ("state_value", "state_reason", "state_reason_data", "state_updated_timestamp", "history"):
                setattr(alarm, attribute, getattr(existing, attribute))
            alarm.sp_metric_id = getattr(existing, "sp_metric_id", None)
        _record_configuration_update(self, alarm, "Update" if existing is not None else "Create")
        return alarm

    return put_metric_alarm


def _delete_alarms(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete_alarms(self: Any, alarm_names: list[str], *args: Any, **kwargs: Any) -> Any:
        deleted = [self.alarms[name] for name in alarm_names if name in self.alarms]
        result = original(self, alarm_names, *args, **kwargs)
        for alarm in deleted:
            _record_configuration_update(self, alarm, "Delete")
        return result

    return delete_alarms


# History ------------------------------------------------------------------------------------------------
MAX_HISTORY_RECORDS = 100  # DescribeAlarmHistory's MaxRecords: 1 to 100
_history_lock = threading.Lock()
_history_sequence = itertools.count(1)
_VERBS = {"Create": "created", "Update": "updated", "Delete": "deleted"}


class InvalidNextToken(CloudWatchException):
    code = "InvalidNextToken"


def _history(backend: Any) -> list[dict[str, Any]]:
    """The backend's (account and region's) alarm history, oldest first; kept after an alarm is deleted."""
    history: list[dict[str, Any]] | None = getattr(backend, "_sandbox_alarm_history", None)
    if history is None:
        history = []
        backend._sandbox_alarm_history = history
    return history


def _record(backend: Any, alarm: Any, item_type: str, summary: str, data: dict[str, Any], when: datetime) -> None:
    with _history_lock:
        _history(backend).append(
            {
                "sequence": next(_history_sequence),
                "AlarmName": alarm.name,
                "AlarmType": "CompositeAlarm" if getattr(alarm, "rule", None) else "MetricAlarm",
                "Timestamp": _aware(when),
                "HistoryItemType": item_type,
                "HistorySummary": summary,
                "HistoryData": json.dumps(data, separators=(",", ":")),
            }
        )


def _history_state(value: str, reason: str, reason_data: str | None) -> dict[str, Any]:
    state: dict[str, Any] = {"stateValue": value, "stateReason": reason}
    try:
        parsed = json.loads(reason_data) if reason_data else None
    except ValueError:
        parsed = None  # not JSON: CloudWatch's StateReasonData is always JSON, so there is nothing to show
    if parsed:
        state["stateReasonData"] = parsed
    return state


def _record_state_update(backend: Any, alarm: Any, previous: tuple[str, str, str | None, datetime]) -> None:
    data = {
        "version": "1.0",
        "oldState": _history_state(previous[0], previous[1], previous[2]),
        "newState": _history_state(alarm.state_value, alarm.state_reason, alarm.state_reason_data),
    }
    summary = f"Alarm updated from {previous[0]} to {alarm.state_value}"
    _record(backend, alarm, "StateUpdate", summary, data, alarm.state_updated_timestamp)


def _alarm_configuration(alarm: Any) -> dict[str, Any]:
    configuration: dict[str, Any] = {
        "alarmName": alarm.name,
        "alarmArn": alarm.alarm_arn,
        "alarmDescription": alarm.description,
        "actionsEnabled": bool(alarm.actions_enabled),
        "alarmActions": list(alarm.alarm_actions or []),
        "okActions": list(alarm.ok_actions or []),
        "insufficientDataActions": list(alarm.insufficient_data_actions or []),
    }
    if getattr(alarm, "rule", None):
        configuration["alarmRule"] = alarm.rule
    else:
        configuration.update(
            {
                "namespace": alarm.namespace,
                "metricName": alarm.metric_name,
                "dimensions": [{"name": d.name, "value": d.value} for d in alarm.dimensions],
                "statistic": alarm.statistic,
                "extendedStatistic": alarm.extended_statistic,
                "period": alarm.period,
                "evaluationPeriods": alarm.evaluation_periods,
                "datapointsToAlarm": alarm.datapoints_to_alarm,
                "threshold": alarm.threshold,
                "comparisonOperator": alarm.comparison_operator,
                "treatMissingData": alarm.treat_missing_data,
            }
        )
    return {k: v for k, v in configuration.items() if v is not None}


def _record_configuration_update(backend: Any, alarm: Any, kind: str) -> None:
    key = {"Create": "createdAlarm", "Update": "updatedAlarm", "Delete": "deletedAlarm"}[kind]
    data = {"version": "1.0", "type": kind, key: _alarm_configuration(alarm)}
    _record(backend, alarm, "ConfigurationUpdate", f'Alarm "{alarm.name}" {_VERBS[kind]}', data, datetime.now(UTC))


def describe_alarm_history(
    backend: Any,
    *,
    alarm_name: str | None = None,
    alarm_types: list[str] | None = None,
    history_item_type: str | None = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    max_records: int | None = None,
    next_token: str | None = None,
    scan_by: str | None = None,
) -> dict[str, Any]:
    """DescribeAlarmHistory's answer: {"AlarmHistoryItems": [...], "NextToken": when there are more}."""
    if max_records is not None and not 1 <= max_records <= MAX_HISTORY_RECORDS:
        raise ValidationError(
            f"1 validation error detected: Value '{max_records}' at 'maxRecords' failed to satisfy constraint: "
            f"Member must have value {'less' if max_records > 1 else 'greater'} than or equal to "
            f"{MAX_HISTORY_RECORDS if max_records > 1 else 1}"
        )
    types = set(alarm_types or ["MetricAlarm"])
    start = _aware(start_date) if start_date is not None else None
    end = _aware(end_date) if end_date is not None else None
    with _history_lock:
        items = [
            item
            for item in _history(backend)
            if (alarm_name is None or item["AlarmName"] == alarm_name)
            and item["AlarmType"] in types
            and (history_item_type is None or item["HistoryItemType"] == history_item_type)
            and (start is None or item["Timestamp"] >= start)
            and (end is None or item["Timestamp"] <= end)
        ]
    descending = (scan_by or "TimestampDescending") == "TimestampDescending"
    if descending:
        items.reverse()
    if next_token:
        try:
            after = int(next_token)
        except ValueError:
            raise InvalidNextToken("The service returned an invalid NextToken.") from None
        items = [i for i in items if (i["sequence"] < after if descending else i["sequence"] > after)]
    page = items[: max_records or MAX_HISTORY_RECORDS]
    answer: dict[str, Any] = {"AlarmHistoryItems": [{k: v for k, v in i.items() if k != "sequence"} for i in page]}
    if len(items) > len(page):
        answer["NextToken"] = str(page[-1]["sequence"])
    return answer


def _describe_alarm_history_action(self: Any) -> Any:
    from moto.core.responses import ActionResult

    return ActionResult(
        describe_alarm_history(
            self.cloudwatch_backend,
            alarm_name=self._get_param("AlarmName"),
            alarm_types=self._get_param("AlarmTypes"),
            history_item_type=self._get_param("HistoryItemType"),
            start_date=self._get_param("StartDate"),
            end_date=self._get_param("EndDate"),
            max_records=self._get_param("MaxRecords"),
            next_token=self._get_param("NextToken"),
            scan_by=self._get_param("ScanBy"),
        )
    )


# Evaluation --------------------------------------------------------------------------------------------
def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _aggregate(data: list[Any], statistic: str) -> float | None:
    values: list[float] = []
    sums = counts = 0.0
    minimum, maximum = math.inf, -math.inf
    for datum in data:
        if hasattr(datum, "value"):
            values.append(float(datum.value))
            sums += float(datum.value)
            counts += 1
            minimum, maximum = min(minimum, float(datum.value)), max(maximum, float(datum.value))
        else:
            sums += float(datum.sum)
            counts += float(datum.sample_count)
            minimum, maximum = min(minimum, float(datum.min)), max(maximum, float(datum.max))
    if counts == 0:
        return None
    if statistic == "Sum":
        return sums
    if statistic == "Average":
        return sums / counts
    if statistic == "Minimum":
        return minimum
    if statistic == "Maximum":
        return maximum
    if statistic == "SampleCount":
        return counts
    if statistic.startswith("p") and values:
        return _percentile(values, float(statistic[1:]))
    return None


def _period(alarm: Any, time_scale: float) -> timedelta:
    return timedelta(seconds=int(alarm.period) * time_scale)


def _datapoints(
    backend: Any, alarm: Any, now: datetime, time_scale: float = 1.0
) -> list[tuple[datetime, float | None]]:
    """One value (or None: no data) per period, oldest first, for the last EvaluationPeriods periods."""
    period = _period(alarm, time_scale)
    wanted = {(d.name, d.value) for d in alarm.dimensions}
    matching = [
        d
        for d in backend.metric_data
        if d.namespace == alarm.namespace
        and d.name == alarm.metric_name
        and {(x.name, x.value) for x in d.dimensions} == wanted
    ]
    points: list[tuple[datetime, float | None]] = []
    for i in range(int(alarm.evaluation_periods), 0, -1):
        start, end = now - i * period, now - (i - 1) * period
        in_period = [d for d in matching if start <= _aware(d.timestamp) < end]
        points.append((start, _aggregate(in_period, alarm.statistic or alarm.extended_statistic or "Average")))
    return points


def evaluate_alarm(
    name: str,
    *,
    account: str = bus.DEFAULT_ACCOUNT,
    region: str = bus.DEFAULT_REGION,
    now: datetime | None = None,
    time_scale: float = 1.0,
) -> str:
    """Evaluate a single-metric alarm once, as CloudWatch does each period; returns its state after.
    `time_scale`: real seconds per second of the alarm's Period (see the module docstring)."""
    backend = cloudwatch_backends[account][region]
    alarm = backend.alarms[name]
    if alarm.metric_data_queries or getattr(alarm, "rule", None) or not alarm.metric_name:
        return str(alarm.state_value)
    now = now or datetime.now(UTC)
    set_at = getattr(alarm, "sp_set_by_hand_at", None)
    if set_at is not None and now - set_at < _period(alarm, time_scale):
        return str(alarm.state_value)
    compare, words = _COMPARE.get(alarm.comparison_operator, _COMPARE["GreaterThanOrEqualToThreshold"])
    threshold = float(alarm.threshold)
    points = _datapoints(backend, alarm, now, time_scale)
    needed = int(alarm.datapoints_to_alarm or alarm.evaluation_periods)
    treat = alarm.treat_missing_data or "missing"
    present = [(t, v) for t, v in points if v is not None]
    breaching = [(t, v) for t, v in present if compare(v, threshold)]
    missing = len(points) - len(present)
    bad = len(breaching) + missing if treat == "breaching" else len(breaching)
    if bad >= needed:
        value = "ALARM"
    elif not present and treat in ("missing", "ignore"):
        value = alarm.state_value if treat == "ignore" else "INSUFFICIENT_DATA"
    else:
        value = "OK"
    if value == alarm.state_value:
        return value
    shown = ", ".join(f"{v} ({t.strftime('%d/%m/%y %H:%M:%S')})" for t, v in present[-needed:])
    if present:
        verb = "was" if len(present) == 1 else "were"
        negation = "" if value == "ALARM" else "not "
        reason = (
            f"Threshold Crossed: {len(breaching)} out of the last {len(points)} datapoints [{shown}] {verb} "
            f"{negation}{words} the threshold ({threshold}) (minimum {needed} datapoint"
            f"{'s' if needed > 1 else ''} for {alarm.state_value} -> {value} transition)."
        )
    else:
        treated = "Breaching" if treat == "breaching" else "NonBreaching"
        reason = (
            f"Threshold Crossed: no datapoints were received for {len(points)} periods and {len(points)} "
            f"missing datapoints were treated as [{treated}]."
        )
        if value == "INSUFFICIENT_DATA":
            reason = f"Insufficient Data: {len(points)} datapoints were unknown."
    alarm.update_state(reason, _reason_data(alarm, points, now, threshold), value)
    return value


def _reason_data(alarm: Any, points: list[tuple[datetime, float | None]], now: datetime, threshold: float) -> str:
    """StateReasonData as CloudWatch writes it for a threshold alarm's evaluation: when it was queried, where
    the evaluated range starts (on the compressed clock, where the range is shorter), the statistic, period,
    the recent datapoints and the threshold."""
    data: dict[str, Any] = {
        "version": "1.0",
        "queryDate": bus.iso_millis(now),
        "startDate": bus.iso_millis(points[0][0]) if points else bus.iso_millis(now),
        "period": int(alarm.period),
        "recentDatapoints": [v for _, v in points if v is not None],
        "threshold": threshold,
    }
    if alarm.statistic:
        data["statistic"] = alarm.statistic
    else:
        data["extendedStatistic"] = alarm.extended_statistic
    return json.dumps(data)


def evaluate_alarms(
    *, account: str = bus.DEFAULT_ACCOUNT, region: str = bus.DEFAULT_REGION, time_scale: float = 1.0
) -> None:
    now = datetime.now(UTC)
    for name in list(cloudwatch_backends[account][region].alarms):
        try:
            evaluate_alarm(name, account=account, region=region, now=now, time_scale=time_scale)
        except KeyError:
            continue  # deleted while the others were evaluated


def _set_alarm_state(original: Callable[..., Any]) -> Callable[..., Any]:
    def set_alarm_state(self: Any, alarm_name: str, *args: Any, **kwargs: Any) -> Any:
        result = original(self, alarm_name, *args, **kwargs)
        alarm = self.alarms.get(alarm_name)
        if alarm is not None:
            alarm.sp_set_by_hand_at = datetime.now(UTC)
        return result

    return set_alarm_state


def install() -> None:
    alarm_cls: Any = cw_models.Alarm
    alarm_cls.__init__ = _alarm_init(alarm_cls.__init__)
    alarm_cls.update_state = _update_state(alarm_cls.update_state)
    backend_cls: Any = cw_models.CloudWatchBackend
    backend_cls.put_metric_alarm = _put_metric_alarm(backend_cls.put_metric_alarm)
    backend_cls.delete_alarms = _delete_alarms(backend_cls.delete_alarms)
    from moto.cloudwatch import responses as cw_responses

    response_cls: Any = cw_responses.CloudWatchResponse
    response_cls.describe_alarm_history = _describe_alarm_history_action
    backend_cls.set_alarm_state = _set_alarm_state(backend_cls.set_alarm_state)
