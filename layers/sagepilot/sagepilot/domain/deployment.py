"""How a model package group is deployed: stack-wide defaults, overridden per group by its tags.

The Model Registry is the user's whole interface, so per-group settings live on the model package
group as tags (`aws sagemaker add-tags --resource-arn <group arn> --tags Key=sagepilot:bake-seconds,Value=300`):

    sagepilot:deploy                 "false" keeps the group out of real-time deployment
    sagepilot:endpoint-name          endpoint to deploy to (must start with the stack's name prefix; an
                                     endpoint belongs to one group: see domain.ownership)
    sagepilot:strategy               ab (default) | shadow | canary | linear | all-at-once
    sagepilot:shadow-percent         shadow: the share of live requests copied to the candidate (1-100, 100)
    sagepilot:shadow-then            shadow: canary (default) | promote, once the shadow test is passed
    sagepilot:canary-steps           candidate's share per step, e.g. "10,50,100"
    sagepilot:bake-seconds           time at each step before the next
    sagepilot:min-invocations        invocations the candidate must serve in a canary step before it moves on
    sagepilot:max-bake-seconds       a step still short of them this long is held (NO TRAFFIC)
    sagepilot:analysis               sequential (default) | off: the `ab` canary's statistical gate
    sagepilot:confidence             the gate's confidence, e.g. 0.95 (its false-rollback bound is 1 - this)
    sagepilot:error-margin           4xx+5xx rate (fraction) a candidate may exceed stable by and be "not worse"
                                     (with analysis off, by which a baked step's error rates are compared)
    sagepilot:latency-objective-ms   model latency objective; 0: the latency alarm's threshold
    sagepilot:latency-margin         share of requests over the objective (fraction), likewise
    sagepilot:on-inconclusive        hold (default) | rollback | promote: a step undecided at its longest bake
    sagepilot:metrics                per-variant 0/1 metrics the gate also judges, e.g.
                                     "Shop/Conversion:higher:0.01 Shop/WrongAnswer:lower:0.005"
    sagepilot:instance-type          e.g. ml.m5.large
    sagepilot:instance-count         initial instances per variant
    sagepilot:autoscaling-min / -max / -target    target tracking on invocations per instance per minute
    sagepilot:scale-in-cooldown / scale-out-cooldown   seconds
    sagepilot:alarm-5xx-threshold    server errors per minute that fail a canary
    sagepilot:alarm-latency-ms       p99 model latency (ms) that fails a canary
    sagepilot:idle-minutes           low traffic this long scales a live variant in to its minimum
    sagepilot:low-traffic-invocations   fewer invocations than this per 5 minutes is low traffic
    sagepilot:fallback-instance-type tried when SageMaker answers ResourceLimitExceeded

A bad value is an error that names the tag and what it should be; the group is not deployed until it
is fixed (nothing is guessed, nothing moved into range, no empty step skipped). So is a `sagepilot:` tag that
is none of these (`group_tags.GROUP_TAG_KEYS`, the one list of them): a typo such as `sagepilot:bake-secs` would
otherwise leave the default in force without a word. Tags of other prefixes are not read.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from sagepilot.domain.canary_gate import CustomMetric, GateSettings, Inconclusive
from sagepilot.domain.group_tags import GROUP_TAG_KEYS as GROUP_TAG_KEYS
from sagepilot.domain.group_tags import TAG_PREFIX as TAG_PREFIX
from sagepilot.domain.group_tags import unknown_tags_problem
from sagepilot.domain.names import MAX_NAME_LENGTH, endpoint_name
from sagepilot.domain.rollout import AfterShadow, RolloutPolicy, Strategy

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")


class InvalidGroupSettings(ValueError):
    """A group's tags (or the stack's defaults) ask for something that cannot be deployed."""


@dataclass(frozen=True)
class Autoscaling:
    min_capacity: int
    max_capacity: int
    target_invocations: float  # per instance per minute
    scale_in_cooldown: int
    scale_out_cooldown: int


@dataclass(frozen=True)
class AlarmThresholds:
    errors_5xx_per_minute: int
    latency_p99_ms: int
    idle_minutes: int  # low traffic for this long scales a variant in
    low_traffic_invocations: int  # fewer invocations than this per 5 minutes is "low"


@dataclass(frozen=True)
class Deployment:
    """Everything needed to deploy one group; `Deployment.defaults` comes from the stack's settings."""

    enabled: bool
    endpoint: str
    rollout: RolloutPolicy
    instance_type: str
    instance_count: int
    autoscaling: Autoscaling
    alarms: AlarmThresholds
    fallback_instance_type: str | None = None  # tried when SageMaker answers ResourceLimitExceeded
    # The operator's ceilings (stack parameters), which no tag can exceed: instance types or families
    # (`ml.m5.*`; empty: any) and most instances of a variant (initial count and autoscaling maximum).
    allowed_instance_types: tuple[str, ...] = ()
    instance_count_ceiling: int = 1000


def check_ceilings(deployment: Deployment) -> None:
    """InvalidGroupSettings naming the stack parameter a resolved deployment exceeds."""
    allowed = deployment.allowed_instance_types
    for what, value in (
        ("instance-type", deployment.instance_type),
        ("fallback-instance-type", deployment.fallback_instance_type),
    ):
        if value and allowed and not any(fnmatchcase(value, pattern) for pattern in allowed):
            raise InvalidGroupSettings(
                f"{TAG_PREFIX}{what} {value} is not allowed by the stack's EndpointInstanceTypesAllowed "
                f"({','.join(allowed)})"
            )
    for what, count in (
        ("instance-count", deployment.instance_count),
        ("autoscaling-max", deployment.autoscaling.max_capacity),
    ):
        if count > deployment.instance_count_ceiling:
            raise InvalidGroupSettings(
                f"{TAG_PREFIX}{what} {count} is above the stack's EndpointInstanceCountCeiling "
                f"({deployment.instance_count_ceiling})"
            )


def _int(tags: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = tags.get(TAG_PREFIX + key)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidGroupSettings(f"tag {TAG_PREFIX}{key} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidGroupSettings(f"tag {TAG_PREFIX}{key} must be between {low} and {high}, got {value}")
    return value


def _fraction(tags: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    raw = tags.get(TAG_PREFIX + key)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise InvalidGroupSettings(f"tag {TAG_PREFIX}{key} must be a number like {default}, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidGroupSettings(f"tag {TAG_PREFIX}{key} must be between {low} and {high}, got {value}")
    return value


_CUSTOM = re.compile(
    r"^(?P<namespace>[^/:\s]+(?:/[^/:\s]+)*)/(?P<name>[^/:\s]+):(?P<way>lower|higher):(?P<margin>[0-9.]+)$"
)


def _custom_metrics(raw: str) -> tuple[CustomMetric, ...]:
    """`Namespace/Name:lower|higher:margin`, several separated by spaces; each a proportion published per
    variant (see domain.canary_gate)."""
    found = []
    for part in raw.split():
        match = _CUSTOM.match(part)
        margin = float(match["margin"]) if match and match["margin"].count(".") <= 1 else -1.0
        if match is None or not 0 < margin < 1:
            raise InvalidGroupSettings(
                f"tag {TAG_PREFIX}metrics: each metric is Namespace/Name:lower|higher:margin (a fraction between 0 "
                f"and 1; lower or higher: which direction is good), like Shop/Conversion:higher:0.01, got {part!r}"
            )
        found.append(CustomMetric(match["namespace"], match["name"], match["way"] == "higher", margin))
    if len(found) > 10:
        raise InvalidGroupSettings(f"tag {TAG_PREFIX}metrics: at most 10 metrics, got {len(found)}")
    return tuple(found)


def _gate(tags: Mapping[str, str], defaults: GateSettings) -> GateSettings:
    """The canary gate's settings (see domain.canary_gate) from the group's tags."""
    analysis = tags.get(TAG_PREFIX + "analysis", "sequential" if defaults.enabled else "off").strip().lower()
    if analysis not in ("sequential", "off"):
        raise InvalidGroupSettings(f"tag {TAG_PREFIX}analysis must be sequential or off, got {analysis!r}")
    policy_raw = tags.get(TAG_PREFIX + "on-inconclusive", defaults.on_inconclusive.value).strip().lower()
    try:
        policy = Inconclusive(policy_raw)
    except ValueError:
        choices = ", ".join(p.value for p in Inconclusive)
        raise InvalidGroupSettings(
            f"tag {TAG_PREFIX}on-inconclusive must be one of {choices}, got {policy_raw!r}"
        ) from None
    return GateSettings(
        custom=_custom_metrics(tags.get(TAG_PREFIX + "metrics", "")) or defaults.custom,
        enabled=analysis == "sequential",
        confidence=_fraction(tags, "confidence", defaults.confidence, 0.5, 0.999),
        error_margin=_fraction(tags, "error-margin", defaults.error_margin, 0.0001, 0.5),
        latency_margin=_fraction(tags, "latency-margin", defaults.latency_margin, 0.0001, 0.5),
        latency_objective_ms=_int(tags, "latency-objective-ms", defaults.latency_objective_ms, 0, 3_600_000),
        on_inconclusive=policy,
    )


def _after_shadow(tags: Mapping[str, str], default: AfterShadow) -> AfterShadow:
    raw = tags.get(TAG_PREFIX + "shadow-then", default.value).strip().lower()
    try:
        return AfterShadow(raw)
    except ValueError:
        choices = " or ".join(a.value for a in AfterShadow)
        raise InvalidGroupSettings(f"tag {TAG_PREFIX}shadow-then must be {choices}, got {raw!r}") from None


def parse_steps(raw: str, where: str) -> tuple[int, ...]:
    try:
        parts = raw.replace(" ", "").split(",")
        if "" in parts:
            # An empty step ("10,,100", a trailing comma) is a typo, not a step to skip: refused, not guessed.
            raise ValueError("a step is empty")
        steps = tuple(int(part) for part in parts)
        return RolloutPolicy(Strategy.AB, steps, 0).steps
    except ValueError as exc:
        raise InvalidGroupSettings(
            f"{where} must be increasing percentages ending at 100, like '10,50,100', got {raw!r} ({exc})"
        ) from None


def resolve(defaults: Deployment, prefix: str, group: str, tags: Mapping[str, str]) -> Deployment:
    """The group's deployment: `defaults` with the group's `sagepilot:*` tags applied and checked."""
    unknown = unknown_tags_problem(tags)
    if unknown is not None:
        raise InvalidGroupSettings(unknown)
    enabled_raw = tags.get(TAG_PREFIX + "deploy", "true").strip().lower()
    if enabled_raw not in ("true", "false"):
        raise InvalidGroupSettings(f"tag {TAG_PREFIX}deploy must be true or false, got {enabled_raw!r}")
    named = tags.get(TAG_PREFIX + "endpoint-name", "").strip()
    endpoint = named or endpoint_name(prefix, group)
    if not _NAME.match(endpoint) or len(endpoint) > MAX_NAME_LENGTH:
        raise InvalidGroupSettings(
            f"tag {TAG_PREFIX}endpoint-name must be 1-63 letters, digits or hyphens, got {endpoint!r}"
        )
    if named and named != named.lower():
        # SageMaker endpoint names are case-insensitive (one endpoint for "x-Churn" and "x-churn") and their
        # ARNs lowercase: a name in another case would be the same endpoint under another owner record.
        raise InvalidGroupSettings(f"tag {TAG_PREFIX}endpoint-name must be lowercase, got {named!r}")
    if not named and endpoint != endpoint.lower():
        # The same for the default name of a group with capitals ("FF" and a group tagging "<prefix>-ff").
        raise InvalidGroupSettings(
            f"the group's name has capitals, so its default endpoint {endpoint!r} could be another group's "
            f"endpoint in another case (SageMaker endpoint names are case-insensitive): set the tag "
            f"{TAG_PREFIX}endpoint-name to a lowercase name, e.g. {endpoint.lower()!r}"
        )
    if not endpoint.startswith(prefix + "-"):
        raise InvalidGroupSettings(
            f"tag {TAG_PREFIX}endpoint-name must start with the stack's name prefix {prefix + '-'!r} (the "
            f"control plane is only allowed to manage such endpoints), got {endpoint!r}"
        )
    strategy_raw = tags.get(TAG_PREFIX + "strategy", defaults.rollout.strategy.value).strip().lower()
    try:
        strategy = Strategy(strategy_raw)
    except ValueError:
        choices = ", ".join(s.value for s in Strategy)
        raise InvalidGroupSettings(f"tag {TAG_PREFIX}strategy must be one of {choices}, got {strategy_raw!r}") from None
    steps_raw = tags.get(TAG_PREFIX + "canary-steps")
    steps = parse_steps(steps_raw, f"tag {TAG_PREFIX}canary-steps") if steps_raw else defaults.rollout.steps
    instance_type = tags.get(TAG_PREFIX + "instance-type", defaults.instance_type).strip()
    if not _INSTANCE_TYPE.match(instance_type):
        raise InvalidGroupSettings(
            f"tag {TAG_PREFIX}instance-type must be a SageMaker instance type like ml.m5.large, got {instance_type!r}"
        )
    scaling = defaults.autoscaling
    autoscaling = Autoscaling(
        min_capacity=_int(tags, "autoscaling-min", scaling.min_capacity, 1, 1000),
        max_capacity=_int(tags, "autoscaling-max", scaling.max_capacity, 1, 1000),
        target_invocations=float(_int(tags, "autoscaling-target", int(scaling.target_invocations), 1, 1_000_000)),
        scale_in_cooldown=_int(tags, "scale-in-cooldown", scaling.scale_in_cooldown, 0, 86_400),
        scale_out_cooldown=_int(tags, "scale-out-cooldown", scaling.scale_out_cooldown, 0, 86_400),
    )
    if autoscaling.min_capacity > autoscaling.max_capacity:
        raise InvalidGroupSettings(
            f"autoscaling minimum {autoscaling.min_capacity} is above the maximum {autoscaling.max_capacity}"
        )
    count = _int(tags, "instance-count", defaults.instance_count, 1, 1000)
    if TAG_PREFIX + "instance-count" in tags and not autoscaling.min_capacity <= count <= autoscaling.max_capacity:
        # Taken as written or refused: a count outside the autoscaling range is not moved into it.
        raise InvalidGroupSettings(
            f"tag {TAG_PREFIX}instance-count must be between {autoscaling.min_capacity} and "
            f"{autoscaling.max_capacity} (the autoscaling minimum and maximum: tags {TAG_PREFIX}autoscaling-min/-max "
            f"or the stack's parameters), got {count}"
        )
    fallback = tags.get(TAG_PREFIX + "fallback-instance-type", defaults.fallback_instance_type or "").strip()
    if fallback and not _INSTANCE_TYPE.match(fallback):
        raise InvalidGroupSettings(
            f"tag {TAG_PREFIX}fallback-instance-type must be a SageMaker instance type like ml.c5.large, "
            f"got {fallback!r}"
        )
    resolved = dataclasses.replace(
        defaults,
        enabled=enabled_raw == "true",
        endpoint=endpoint,
        rollout=RolloutPolicy(
            strategy,
            steps,
            _int(tags, "bake-seconds", defaults.rollout.bake_seconds, 0, 86_400),
            min_invocations=_int(tags, "min-invocations", defaults.rollout.min_invocations, 0, 1_000_000_000),
            max_bake_seconds=_int(tags, "max-bake-seconds", defaults.rollout.max_bake_seconds, 0, 86_400),
            gate=_gate(tags, defaults.rollout.gate),
            shadow_percent=_int(tags, "shadow-percent", defaults.rollout.shadow_percent, 1, 100),
            after_shadow=_after_shadow(tags, defaults.rollout.after_shadow),
        ),
        instance_type=instance_type,
        instance_count=min(max(count, autoscaling.min_capacity), autoscaling.max_capacity),
        autoscaling=autoscaling,
        alarms=AlarmThresholds(
            errors_5xx_per_minute=_int(
                tags, "alarm-5xx-threshold", defaults.alarms.errors_5xx_per_minute, 1, 1_000_000
            ),
            latency_p99_ms=_int(tags, "alarm-latency-ms", defaults.alarms.latency_p99_ms, 1, 3_600_000),
            idle_minutes=_int(tags, "idle-minutes", defaults.alarms.idle_minutes, 5, 1440),
            low_traffic_invocations=_int(
                tags, "low-traffic-invocations", defaults.alarms.low_traffic_invocations, 1, 1_000_000_000
            ),
        ),
        fallback_instance_type=fallback or None,
    )
    check_ceilings(resolved)
    return resolved


def resolve_under_way(
    defaults: Deployment, prefix: str, group: str, tags: Mapping[str, str], endpoint: str
) -> tuple[Deployment, tuple[str, ...]]:
    """For a rollout already under way on `endpoint` when the group's tags became invalid: its settings with each
    `sagepilot:*` tag that cannot be applied left at the stack's default (tags taken in name order, each kept if the
    settings stay valid with it), and the tags left out. A rollout under way must still move, and above all roll
    back (its alarms, an operator's command), whatever a person wrote in the tags since; nothing new is deployed
    on settings that cannot be read (that is `resolve`'s refusal, unchanged). InvalidGroupSettings if even the
    defaults do not resolve (a group whose own name is invalid)."""
    kept = {k: v for k, v in tags.items() if not k.startswith(TAG_PREFIX)}
    left_out: list[str] = []
    for key in sorted(k for k in tags if k.startswith(TAG_PREFIX)):
        try:
            resolve(defaults, prefix, group, {**kept, key: tags[key]})
        except InvalidGroupSettings:
            left_out.append(key)
            continue
        kept[key] = tags[key]
    return dataclasses.replace(resolve(defaults, prefix, group, kept), endpoint=endpoint), tuple(left_out)
