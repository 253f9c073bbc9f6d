"""Deterministic SageMaker resource names: the same inputs always give the same name.

SageMaker has no client tokens for CreateTransformJob or CreateModel, so idempotency rests on names:
a retried or duplicated request asks for a name that already exists and is told so.
Names follow ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from enum import StrEnum

MAX_NAME_LENGTH = 63
RETRY_SUFFIX = re.compile(r"^(?P<base>.+-[0-9a-f]{16})-r(?P<attempt>[1-9])$")
# Room kept at the end of a job name for "-r<attempt>".
_RETRY_ROOM = 3
_DIGEST_LENGTH = 16
MAX_PREFIX_LENGTH = 20


def digest(parts: Iterable[str], length: int = _DIGEST_LENGTH) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode())
        hasher.update(b"\x00")
    return hasher.hexdigest()[:length]


def _join(prefix: str, middle: str, tail: str, limit: int) -> str:
    room = limit - len(prefix) - len(tail) - 2
    middle = middle[:room].rstrip("-")
    return f"{prefix}-{middle}-{tail}" if middle else f"{prefix}-{tail}"


def transform_job_name(prefix: str, group: str, identity: Iterable[str]) -> str:
    """`<prefix>-<group>-<digest of what the job is>`, leaving room for a retry suffix."""
    return _join(prefix, group, digest(identity), MAX_NAME_LENGTH - _RETRY_ROOM)


def model_name(prefix: str, group: str, version: int, package_arn: str) -> str:
    """One SageMaker Model per model package version."""
    return _join(prefix, group, f"v{version}-{digest([package_arn], 8)}", MAX_NAME_LENGTH)


def attempt_name(base: str, attempt: int) -> str:
    if not 0 <= attempt <= 9:
        raise ValueError(f"attempt must be 0..9, got {attempt}")
    return base if attempt == 0 else f"{base}-r{attempt}"


def split_attempt(name: str) -> tuple[str, int]:
    """`<base>-r2` -> (`<base>`, 2); a name without a retry suffix is attempt 0.

    Unambiguous because every base name ends in a hexadecimal digest, never in `-r<digit>`.
    """
    match = RETRY_SUFFIX.match(name)
    if match:
        return match.group("base"), int(match.group("attempt"))
    return name, 0


# Real-time endpoints ---------------------------------------------------------------------------------
def variant_name(version: int) -> str:
    """A package version's production variant: `v<version>`, unique within an endpoint."""
    return f"v{version}"


def endpoint_name(prefix: str, group: str) -> str:
    """The default endpoint of a model package group: `<prefix>-<group>` (truncated with a digest if long)."""
    name = f"{prefix}-{group}"
    if len(name) <= MAX_NAME_LENGTH:
        return name
    return _join(prefix, group, digest([group], 8), MAX_NAME_LENGTH)


def endpoint_model_name(endpoint: str, version: int, package_arn: str) -> str:
    """The Model behind one variant of one endpoint (distinct from batch models, so cleaning up an
    endpoint never deletes a model a transform job uses)."""
    tail = f"v{version}-{digest([endpoint, package_arn], 8)}"
    return f"{endpoint[: MAX_NAME_LENGTH - len(tail) - 1].rstrip('-')}-{tail}"


def endpoint_config_name(endpoint: str, variants: Iterable[str]) -> str:
    """An endpoint config is never changed, only replaced: its name is a digest of what it holds."""
    tail = f"c{digest([endpoint, *variants], 12)}"
    return f"{endpoint[: MAX_NAME_LENGTH - len(tail) - 1].rstrip('-')}-{tail}"


class AlarmKind(StrEnum):
    """The kinds of alarm a live variant has, the last part of each alarm's name (`domain.health` says what
    each means)."""

    ERRORS = "5xx"
    LATENCY = "latency"
    LOW_TRAFFIC = "low-traffic"


def alarm_name(endpoint: str, variant: str, kind: str) -> str:
    """`<endpoint>-<variant>-<kind>`: starts with the stack's prefix, as the alarm rule's filter wants."""
    return f"{endpoint}-{variant}-{kind}"


def rollout_alarm_names(endpoint: str, variant: str) -> tuple[str, str]:
    """The alarms that gate a canary (and open incidents on a live variant): 5xx and latency."""
    return alarm_name(endpoint, variant, AlarmKind.ERRORS.value), alarm_name(endpoint, variant, AlarmKind.LATENCY.value)


def variant_alarm_names(endpoint: str, variant: str) -> tuple[str, ...]:
    """Every alarm of a live variant, one per kind."""
    return tuple(alarm_name(endpoint, variant, kind.value) for kind in AlarmKind)


# Application Auto Scaling ----------------------------------------------------------------------------
def scalable_target_id(endpoint: str, variant: str) -> str:
    """A variant's scalable target (ResourceId), as Application Auto Scaling names SageMaker variants."""
    return f"endpoint/{endpoint}/variant/{variant}"


def scaling_policy_name(endpoint: str, variant: str) -> str:
    """The variant's target-tracking policy on invocations per instance."""
    return f"{endpoint}-{variant}-invocations"
