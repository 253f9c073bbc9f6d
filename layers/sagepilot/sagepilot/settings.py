"""Validated settings, read once per process from the environment the template sets.

A missing or malformed value stops the function at start-up with a ConfigurationError that names the
variable: no placeholder defaults for what an installation must decide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sagepilot.domain.images import REPOSITORY_PATTERN
from sagepilot.domain.instance_types import INSTANCE_TYPE_PATTERN, instance_type_allowed
from sagepilot.domain.names import MAX_PREFIX_LENGTH
from sagepilot.errors import ConfigurationError

if TYPE_CHECKING:
    # Each function's rules are imported by its own loader (below), so that a function's cold start loads
    # nothing of the others': the rollout's init never loads the transform plan or the training recipe, the
    # batch functions' never the rollout's decisions (tests/unit/test_wiring.py holds this).
    from sagepilot.domain.deployment import Deployment
    from sagepilot.domain.hold import HoldSettings
    from sagepilot.domain.rollout import Strategy
    from sagepilot.domain.training import Recipe, TrainingCeilings
    from sagepilot.domain.transform_plan import TransformSettings

# Lowercase (SageMaker ARNs are) and no hyphen: "<prefix>-" of one stack is then never the start of another
# stack's names (template.yaml's NamePrefix says the same).
_PREFIX = re.compile(r"^[a-z0-9]+$")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")


@dataclass(frozen=True)
class Settings:
    data_bucket: str
    state_table: str
    notification_topic_arn: str
    sagemaker_role_arn: str
    transform: TransformSettings
    fallback_instance_type: str | None
    max_job_retries: int
    claim_timeout_seconds: int
    intake_max_receive_count: int
    # ImageRepositoriesAllowed: where the inference image of a model a transform job runs may come from.
    image_repositories: tuple[str, ...]
    max_concurrent_jobs_per_group: int = 0  # 0: no limit
    # The start-up hold (domain/hold.py): HOLD_SECONDS 0 or unset, no hold.
    hold: HoldSettings = field(default_factory=lambda: _no_hold())
    # The intake's only: its queue of dropped files (a held job's release waits while it holds any), and the queue
    # where it sends itself the delayed release of a group's held job.
    intake_queue_url: str = ""
    hold_release_queue_url: str = ""


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is required and is not set")
    return value


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    raw = _required(env, name)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low} and {high}, got {value}")
    return value


def function_timeout_seconds(env: Mapping[str, str]) -> int:
    """FUNCTION_TIMEOUT_SECONDS: the function's `Timeout` in the template (Lambda does not tell a function its
    timeout before an invocation), which the AWS clients' timeouts and retries fit in (adapters.clients)."""
    return _int(env, "FUNCTION_TIMEOUT_SECONDS", 1, 900)


def _instance_type(name: str, value: str) -> str:
    if not _INSTANCE_TYPE.match(value):
        raise ConfigurationError(f"{name} must be a SageMaker instance type like ml.m5.xlarge, got {value!r}")
    return value


def _no_hold() -> HoldSettings:
    from sagepilot.domain.hold import HoldSettings

    return HoldSettings(hold_seconds=0, quiet_seconds=0)


def _hold(env: Mapping[str, str]) -> HoldSettings:
    """HOLD_SECONDS (0 or unset: no hold) and, with a hold, HOLD_QUIET_SECONDS (required then)."""
    from sagepilot.domain.hold import HoldSettings

    if not env.get("HOLD_SECONDS", "").strip():
        return _no_hold()
    hold = _int(env, "HOLD_SECONDS", 0, 3_600)
    if not hold:
        return _no_hold()
    # A release is a delayed SQS message (at most 900 s later): the quiet time fits in one.
    return HoldSettings(hold_seconds=hold, quiet_seconds=_int(env, "HOLD_QUIET_SECONDS", 1, 900))


def load_settings(env: Mapping[str, str]) -> Settings:
    """Settings of the batch functions (the intake and the completion)."""
    from sagepilot.domain.transform_plan import MAX_PAYLOAD_LIMIT_MB, TransformSettings

    prefix = _prefix(env)
    max_payload = _int(env, "MAX_PAYLOAD_MB", 1, MAX_PAYLOAD_LIMIT_MB)
    concurrency = _int(env, "MAX_CONCURRENT_TRANSFORMS", 1, MAX_PAYLOAD_LIMIT_MB)
    if max_payload * concurrency > MAX_PAYLOAD_LIMIT_MB:
        raise ConfigurationError(
            f"MAX_CONCURRENT_TRANSFORMS x MAX_PAYLOAD_MB must be at most {MAX_PAYLOAD_LIMIT_MB} "
            f"(SageMaker's rule), got {concurrency} x {max_payload}"
        )
    fallback = env.get("FALLBACK_INSTANCE_TYPE", "").strip()
    settings = Settings(
        data_bucket=_required(env, "DATA_BUCKET"),
        state_table=_required(env, "STATE_TABLE"),
        notification_topic_arn=_required(env, "NOTIFICATION_TOPIC_ARN"),
        sagemaker_role_arn=_required(env, "SAGEMAKER_ROLE_ARN"),
        transform=TransformSettings(
            name_prefix=prefix,
            instance_type=_instance_type("TRANSFORM_INSTANCE_TYPE", _required(env, "TRANSFORM_INSTANCE_TYPE")),
            max_instance_count=_int(env, "MAX_INSTANCE_COUNT", 1, 100),
            target_mb_per_instance=_int(env, "TARGET_MB_PER_INSTANCE", 1, 1_000_000),
            max_payload_mb=max_payload,
            max_concurrent_transforms=concurrency,
            max_files_per_job=_int(env, "MAX_FILES_PER_JOB", 1, 100_000),
        ),
        fallback_instance_type=_instance_type("FALLBACK_INSTANCE_TYPE", fallback) if fallback else None,
        max_job_retries=_int(env, "MAX_JOB_RETRIES", 0, 9),
        claim_timeout_seconds=_int(env, "CLAIM_TIMEOUT_SECONDS", 1, 86_400),
        intake_max_receive_count=_int(env, "INTAKE_MAX_RECEIVE_COUNT", 1, 1000),
        image_repositories=image_repositories_allowed(env),
        # Optional: 0 (or unset) means no limit per group.
        max_concurrent_jobs_per_group=(
            _int(env, "MAX_CONCURRENT_JOBS_PER_GROUP", 0, 10_000) if env.get("MAX_CONCURRENT_JOBS_PER_GROUP") else 0
        ),
        hold=_hold(env),
        intake_queue_url=env.get("INTAKE_QUEUE_URL", "").strip(),
        hold_release_queue_url=env.get("HOLD_RELEASE_QUEUE_URL", "").strip(),
    )
    # Transform instance types are the operator's own settings; they must respect the operator's ceiling too.
    allowed = instance_types_allowed(env, "TRANSFORM_INSTANCE_TYPES_ALLOWED")
    for name, value in (
        ("TRANSFORM_INSTANCE_TYPE", settings.transform.instance_type),
        ("FALLBACK_INSTANCE_TYPE", settings.fallback_instance_type),
    ):
        if value:
            check_instance_type_allowed(name, value, allowed, "TRANSFORM_INSTANCE_TYPES_ALLOWED")
    return settings


@dataclass(frozen=True)
class RolloutSettings:
    name_prefix: str
    state_table: str
    notification_topic_arn: str
    sagemaker_role_arn: str
    defaults: Deployment
    lease_seconds: int
    stable_check_seconds: int
    # ImageRepositoriesAllowed: where the inference image of a version deployed to an endpoint may come from.
    image_repositories: tuple[str, ...]
    report_bucket: str = ""  # where the canary gate's reports go (rollouts/...); empty: not kept
    # DeployableGroupPrefix: the groups this stack deploys (its approval rule's filter); empty: every group.
    deployable_group_prefix: str = ""


def _prefix(env: Mapping[str, str]) -> str:
    prefix = _required(env, "NAME_PREFIX")
    if len(prefix) > MAX_PREFIX_LENGTH or not _PREFIX.match(prefix):
        raise ConfigurationError(
            f"NAME_PREFIX must be 1-{MAX_PREFIX_LENGTH} lowercase letters or digits, no hyphen (so that no "
            f"other stack's prefix can start with '{prefix}-'), got {prefix!r}"
        )
    return prefix


def _optional_instance_type(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return _instance_type(name, value) if value else None


def _canary_analysis(env: Mapping[str, str]) -> bool:
    """CANARY_ANALYSIS (the stack's `CanaryAnalysis`, `sequential` by default): `sequential` judges every ab
    (and shadow) step of the groups without a sagepilot:analysis tag with the statistical gate; `off` leaves
    them to the alarms and the bake (alarm-only). Required: a stack that says neither is misconfigured."""
    raw = _required(env, "CANARY_ANALYSIS").strip().lower()
    if raw not in ("sequential", "off"):
        raise ConfigurationError(f"CANARY_ANALYSIS must be sequential or off, got {raw!r}")
    return raw == "sequential"


def load_rollout_settings(env: Mapping[str, str]) -> RolloutSettings:
    """Settings of the rollout function: the stack-wide deployment defaults each group may override."""
    from sagepilot.domain.deployment import InvalidGroupSettings, check_ceilings, parse_steps
    from sagepilot.domain.rollout import Strategy

    strategy_raw = _required(env, "DEPLOY_STRATEGY")
    try:
        strategy = Strategy(strategy_raw)
    except ValueError:
        choices = ", ".join(s.value for s in Strategy)
        raise ConfigurationError(f"DEPLOY_STRATEGY must be one of {choices}, got {strategy_raw!r}") from None
    try:
        steps = parse_steps(_required(env, "CANARY_STEPS"), "CANARY_STEPS")
    except InvalidGroupSettings as exc:
        raise ConfigurationError(str(exc)) from None
    low, high = _int(env, "AUTOSCALING_MIN", 1, 1000), _int(env, "AUTOSCALING_MAX", 1, 1000)
    if low > high:
        raise ConfigurationError(f"AUTOSCALING_MIN ({low}) must not be above AUTOSCALING_MAX ({high})")
    settings = _rollout_settings(env, strategy, steps, low, high)
    try:  # the stack's own defaults must respect its own ceilings
        check_ceilings(settings.defaults)
    except InvalidGroupSettings as exc:
        raise ConfigurationError(f"the stack's endpoint defaults are outside its own limits: {exc}") from None
    return settings


def _rollout_settings(
    env: Mapping[str, str], strategy: Strategy, steps: tuple[int, ...], low: int, high: int
) -> RolloutSettings:
    from sagepilot.domain.canary_gate import GateSettings
    from sagepilot.domain.deployment import AlarmThresholds, Autoscaling, Deployment
    from sagepilot.domain.rollout import RolloutPolicy

    return RolloutSettings(
        name_prefix=_prefix(env),
        state_table=_required(env, "STATE_TABLE"),
        notification_topic_arn=_required(env, "NOTIFICATION_TOPIC_ARN"),
        sagemaker_role_arn=_required(env, "SAGEMAKER_ROLE_ARN"),
        defaults=Deployment(
            enabled=True,
            endpoint="",
            rollout=RolloutPolicy(
                strategy,
                steps,
                _int(env, "BAKE_SECONDS", 0, 86_400),
                min_invocations=_int(env, "MIN_INVOCATIONS", 0, 1_000_000_000),
                max_bake_seconds=_int(env, "MAX_BAKE_SECONDS", 0, 86_400),
                gate=GateSettings(enabled=_canary_analysis(env)),
            ),
            instance_type=_instance_type("ENDPOINT_INSTANCE_TYPE", _required(env, "ENDPOINT_INSTANCE_TYPE")),
            instance_count=_int(env, "ENDPOINT_INSTANCE_COUNT", 1, 1000),
            autoscaling=Autoscaling(
                min_capacity=low,
                max_capacity=high,
                target_invocations=float(_int(env, "AUTOSCALING_TARGET", 1, 1_000_000)),
                scale_in_cooldown=_int(env, "SCALE_IN_COOLDOWN", 0, 86_400),
                scale_out_cooldown=_int(env, "SCALE_OUT_COOLDOWN", 0, 86_400),
            ),
            alarms=AlarmThresholds(
                errors_5xx_per_minute=_int(env, "ALARM_5XX_THRESHOLD", 1, 1_000_000),
                latency_p99_ms=_int(env, "ALARM_LATENCY_MS", 1, 3_600_000),
                idle_minutes=_int(env, "IDLE_MINUTES", 5, 1440),
                low_traffic_invocations=_int(env, "LOW_TRAFFIC_INVOCATIONS", 1, 1_000_000_000),
            ),
            fallback_instance_type=_optional_instance_type(env, "ENDPOINT_FALLBACK_INSTANCE_TYPE"),
            allowed_instance_types=instance_types_allowed(env, "ENDPOINT_INSTANCE_TYPES_ALLOWED"),
            instance_count_ceiling=_int(env, "ENDPOINT_INSTANCE_COUNT_CEILING", 1, 1000),
        ),
        lease_seconds=_int(env, "LEASE_SECONDS", 30, 3600),
        report_bucket=env.get("REPORT_BUCKET", "").strip(),
        stable_check_seconds=_int(env, "STABLE_CHECK_SECONDS", 60, 86_400),
        image_repositories=image_repositories_allowed(env),
        deployable_group_prefix=_deployable_group_prefix(env),
    )


def _deployable_group_prefix(env: Mapping[str, str]) -> str:
    """DEPLOYABLE_GROUP_PREFIX (the stack's DeployableGroupPrefix): required to be set, empty meaning every group."""
    if "DEPLOYABLE_GROUP_PREFIX" not in env:
        raise ConfigurationError("DEPLOYABLE_GROUP_PREFIX must be set (empty: every model package group deploys)")
    return env["DEPLOYABLE_GROUP_PREFIX"].strip()


@dataclass(frozen=True)
class TrainingSettings:
    name_prefix: str
    data_bucket: str
    state_table: str
    notification_topic_arn: str
    sagemaker_role_arn: str
    defaults: Recipe
    max_retries: int
    ceilings: TrainingCeilings
    # A training file with an ordinary name waits this long (a delayed message on this queue) before it is
    # trained on alone, so that a set uploaded file by file is seen whole (TrainingSettleSeconds, 0-900).
    settle_seconds: int
    settle_queue_url: str


_IMAGE = re.compile(
    r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$"
)


def _image(env: Mapping[str, str], name: str) -> str:
    value = _required(env, name)
    if not _IMAGE.match(value):
        raise ConfigurationError(
            f"{name} must be an ECR image URI like 123456789012.dkr.ecr.<region>.amazonaws.com/repo:tag"
        )
    return value


def instance_types_allowed(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of instance types or families (`ml.m5.*,ml.c5.xlarge`)."""
    entries = tuple(e.strip() for e in _required(env, name).split(",") if e.strip())
    bad = [e for e in entries if not INSTANCE_TYPE_PATTERN.match(e)]
    if not entries or bad:
        raise ConfigurationError(
            f"{name} must be a comma-separated list of instance types or families like ml.m5.*,ml.c5.xlarge, "
            f"got {bad or env.get(name)!r}"
        )
    return entries


def check_instance_type_allowed(name: str, value: str, allowed: tuple[str, ...], ceiling: str) -> None:
    """The stack's own default must respect its own ceiling."""
    if not instance_type_allowed(value, allowed):
        raise ConfigurationError(f"{name} {value} is not allowed by {ceiling} ({','.join(allowed)})")


def _bool(env: Mapping[str, str], name: str) -> bool:
    value = _required(env, name).lower()
    if value not in ("true", "false"):
        raise ConfigurationError(f"{name} must be true or false, got {value!r}")
    return value == "true"


def image_repositories_allowed(env: Mapping[str, str]) -> tuple[str, ...]:
    """IMAGE_REPOSITORIES_ALLOWED (the stack's ImageRepositoriesAllowed): the ECR repositories images may come
    from, for training and inference alike; required (no image runs from anywhere by default)."""
    repositories = tuple(e.strip() for e in _required(env, "IMAGE_REPOSITORIES_ALLOWED").split(",") if e.strip())
    bad = [e for e in repositories if not REPOSITORY_PATTERN.match(e)]
    if not repositories or bad:
        raise ConfigurationError(
            "IMAGE_REPOSITORIES_ALLOWED must be a comma-separated list of ECR repositories like "
            f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/team-a-* (a trailing * is a prefix), got {bad!r}"
        )
    return repositories


def _training_ceilings(env: Mapping[str, str]) -> TrainingCeilings:
    from sagepilot.domain.training import TrainingCeilings

    repositories = image_repositories_allowed(env)
    return TrainingCeilings(
        instance_types=instance_types_allowed(env, "TRAINING_INSTANCE_TYPES_ALLOWED"),
        max_instance_count=_int(env, "TRAINING_INSTANCE_COUNT_CEILING", 1, 100),
        max_runtime_seconds=_int(env, "TRAINING_RUNTIME_CEILING_SECONDS", 60, 28 * 86_400),
        max_volume_gb=_int(env, "TRAINING_VOLUME_CEILING_GB", 1, 16_384),
        image_repositories=repositories,
        network_access_allowed=_bool(env, "TRAINING_NETWORK_ACCESS_ALLOWED"),
    )


def load_training_settings(env: Mapping[str, str]) -> TrainingSettings:
    """Settings of the training function: the stack-wide recipe each group may override, within the
    operator's ceilings (which the stack's own defaults must respect too)."""
    from sagepilot.domain.training import InvalidRecipe, check_sagemaker_limits
    from sagepilot.domain.training import check_ceilings as check_training_ceilings

    settings = _load_training_settings(env)
    try:
        check_sagemaker_limits(settings.defaults)
        check_training_ceilings(settings.defaults, settings.ceilings)
    except InvalidRecipe as exc:
        raise ConfigurationError(f"the stack's default training recipe is outside its own limits: {exc}") from None
    return settings


def _load_training_settings(env: Mapping[str, str]) -> TrainingSettings:
    from sagepilot.domain.training import Recipe

    spot = _required(env, "TRAINING_SPOT").lower()
    if spot not in ("true", "false"):
        raise ConfigurationError(f"TRAINING_SPOT must be true or false, got {spot!r}")
    max_runtime = _int(env, "TRAINING_MAX_RUNTIME_SECONDS", 60, 28 * 86_400)
    return TrainingSettings(
        name_prefix=_prefix(env),
        data_bucket=_required(env, "DATA_BUCKET"),
        state_table=_required(env, "STATE_TABLE"),
        notification_topic_arn=_required(env, "NOTIFICATION_TOPIC_ARN"),
        sagemaker_role_arn=_required(env, "SAGEMAKER_ROLE_ARN"),
        defaults=Recipe(
            image=_image(env, "TRAINING_IMAGE"),
            inference_image=_image(env, "TRAINING_INFERENCE_IMAGE"),
            instance_type=_instance_type("TRAINING_INSTANCE_TYPE", _required(env, "TRAINING_INSTANCE_TYPE")),
            instance_count=_int(env, "TRAINING_INSTANCE_COUNT", 1, 100),
            volume_gb=_int(env, "TRAINING_VOLUME_GB", 1, 16_384),
            max_runtime_seconds=max_runtime,
            spot=spot == "true",
            max_wait_seconds=max(max_runtime, _int(env, "TRAINING_MAX_WAIT_SECONDS", 60, 28 * 86_400)),
        ),
        max_retries=_int(env, "TRAINING_MAX_RETRIES", 0, 9),
        ceilings=_training_ceilings(env),
        settle_seconds=_int(env, "TRAINING_SETTLE_SECONDS", 0, 900),  # SQS DelaySeconds' range
        settle_queue_url=_required(env, "TRAINING_SETTLE_QUEUE_URL"),
    )
