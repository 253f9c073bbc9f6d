"""The keys a model package group's tags may set (`sagepilot:<key>`): the one list of them, and the refusal of a
`sagepilot:` key that is none of them. Its own module, with nothing else, so that every function may check a group's
tags without loading the rollout's domain (tests/unit/test_wiring.py)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

TAG_PREFIX = "sagepilot:"
# Every key the product reads from a model package group's tags (each after TAG_PREFIX): `deployment.resolve` reads
# these and no other (tests/unit/test_group_settings.py holds it to that), and any other `sagepilot:` key is refused.
GROUP_TAG_KEYS = (
    "deploy",
    "endpoint-name",
    "strategy",
    "shadow-percent",
    "shadow-then",
    "canary-steps",
    "bake-seconds",
    "min-invocations",
    "max-bake-seconds",
    "analysis",
    "confidence",
    "error-margin",
    "latency-objective-ms",
    "latency-margin",
    "on-inconclusive",
    "metrics",
    "instance-type",
    "instance-count",
    "autoscaling-min",
    "autoscaling-max",
    "autoscaling-target",
    "scale-in-cooldown",
    "scale-out-cooldown",
    "alarm-5xx-threshold",
    "alarm-latency-ms",
    "idle-minutes",
    "low-traffic-invocations",
    "fallback-instance-type",
)


def unknown_tags_problem(tags: Mapping[str, str]) -> str | None:
    """What is wrong with the group's `sagepilot:` tags that are no setting (each named, with the closest setting
    when one is close), or None when there are none. Tags of other prefixes are not looked at."""
    unknown = sorted(k for k in tags if k.startswith(TAG_PREFIX) and k[len(TAG_PREFIX) :] not in GROUP_TAG_KEYS)
    if not unknown:
        return None
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key[len(TAG_PREFIX) :].lower(), GROUP_TAG_KEYS, n=1, cutoff=0.6)
        named.append(f"{key} (did you mean {TAG_PREFIX}{close[0]}?)" if close else key)
    which = f"tag {named[0]} is" if len(named) == 1 else f"tags {', '.join(named)} are"
    known = ", ".join(TAG_PREFIX + k for k in sorted(GROUP_TAG_KEYS))
    return (
        f"{which} not a sagepilot setting: rename or remove it (the settings are {known}; training is set in "
        f"config/<group>/training.json, not by tags)"
    )
