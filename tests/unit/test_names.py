"""Deterministic SageMaker names: valid for SageMaker, stable, distinct, and retry suffixes that round trip."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagepilot.domain.health import AlarmRef, parse_alarm_name
from sagepilot.domain.names import (
    MAX_NAME_LENGTH,
    MAX_PREFIX_LENGTH,
    AlarmKind,
    attempt_name,
    digest,
    endpoint_name,
    model_name,
    rollout_alarm_names,
    scalable_target_id,
    scaling_policy_name,
    split_attempt,
    transform_job_name,
    variant_alarm_names,
    variant_name,
)

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"

# What SageMaker accepts as a model package group name, and what settings accept as a prefix. Hyphens are
# weighted up so that runs of them (and cuts right after them) are common.
_name_chars = st.sampled_from([*string.ascii_letters, *string.digits, *"-" * 12])
group_names = st.text(_name_chars, min_size=1, max_size=63).filter(lambda s: SAGEMAKER_NAME.match(s) is not None)
prefixes = st.text(_name_chars, min_size=1, max_size=MAX_PREFIX_LENGTH).filter(
    lambda s: SAGEMAKER_NAME.match(s) is not None
)
identities = st.lists(st.text(max_size=40), max_size=5)


def assert_valid(name: str) -> None:
    assert len(name) <= MAX_NAME_LENGTH, (len(name), name)
    assert SAGEMAKER_NAME.match(name), name


@given(prefixes, group_names, identities)
def test_job_names_are_valid_sagemaker_names_even_with_every_retry_suffix(prefix, group, identity):
    name = transform_job_name(prefix, group, identity)
    assert_valid(name)
    assert name.startswith(f"{prefix}-")
    for attempt in range(10):
        assert_valid(attempt_name(name, attempt))


@given(prefixes, group_names, st.integers(min_value=1, max_value=10**9), st.text(min_size=1, max_size=80))
def test_model_names_are_valid_sagemaker_names(prefix, group, version, arn):
    name = model_name(prefix, group, version, arn)
    assert_valid(name)
    assert name.startswith(f"{prefix}-")


@given(prefixes, group_names, identities)
def test_job_names_are_deterministic_and_round_trip_as_attempt_zero(prefix, group, identity):
    name = transform_job_name(prefix, group, identity)
    assert transform_job_name(prefix, group, list(identity)) == name
    assert split_attempt(name) == (name, 0)


def test_short_names_keep_group_readable():
    assert transform_job_name("sagepilot", "churn", ["a"]) == f"sagepilot-churn-{digest(['a'])}"
    assert model_name("sagepilot", "churn", 3, ARN) == f"sagepilot-churn-v3-{digest([ARN], 8)}"


def test_a_long_group_is_truncated_not_the_digest():
    group = "g" * 63
    name = transform_job_name("p" * MAX_PREFIX_LENGTH, group, ["x"])
    assert name.endswith(f"-{digest(['x'])}")
    assert len(name) == MAX_NAME_LENGTH - 3  # room kept for "-r<n>"


def test_truncation_never_leaves_a_trailing_hyphen_before_the_digest():
    # The cut falls just after a run of hyphens in the group name.
    prefix = "p" * MAX_PREFIX_LENGTH
    for cut in range(1, 40):
        group = "a" * cut + "---" + "b" * 60
        name = transform_job_name(prefix, group[:63], ["x"])
        assert_valid(name)
        assert "---" + digest(["x"]) not in name


def test_different_inputs_give_different_names():
    base = transform_job_name("sagepilot", "churn", ["a", "b"])
    assert transform_job_name("sagepilot", "churn", ["a", "c"]) != base
    assert transform_job_name("sagepilot", "churn", ["b", "a"]) != base  # order is part of the identity
    assert transform_job_name("sagepilot", "churn2", ["a", "b"]) != base
    assert transform_job_name("other", "churn", ["a", "b"]) != base
    # The separator keeps part boundaries: ("ab",) is not ("a", "b").
    assert transform_job_name("sagepilot", "churn", ["ab"]) != base
    assert model_name("sagepilot", "churn", 3, ARN) != model_name("sagepilot", "churn", 4, ARN)
    assert model_name("sagepilot", "churn", 3, ARN) != model_name("sagepilot", "churn", 3, ARN + "x")


@given(
    prefixes,
    group_names,
    st.lists(st.text(max_size=10), min_size=1, max_size=3),
    st.lists(st.text(max_size=10), min_size=1, max_size=3),
)
def test_distinct_identities_give_distinct_job_names(prefix, group, one, other):
    if one != other:
        assert transform_job_name(prefix, group, one) != transform_job_name(prefix, group, other)


@pytest.mark.parametrize("attempt", range(10))
def test_attempt_name_and_split_attempt_round_trip(attempt):
    base = transform_job_name("sagepilot", "churn", ["a"])
    name = attempt_name(base, attempt)
    assert split_attempt(name) == (base, attempt)
    assert name == (base if attempt == 0 else f"{base}-r{attempt}")


@pytest.mark.parametrize("attempt", [-1, 10, 100])
def test_attempt_name_refuses_attempts_outside_0_to_9(attempt):
    with pytest.raises(ValueError, match="attempt"):
        attempt_name("sagepilot-churn-0123456789abcdef", attempt)


@pytest.mark.parametrize(
    "group",
    ["r1", "churn-r1", "churn-r9", "x-r2"],  # groups that themselves end like a retry suffix
)
def test_split_attempt_never_mistakes_a_base_name_for_a_retry(group):
    base = transform_job_name("sagepilot", group, ["a"])
    assert split_attempt(base) == (base, 0)
    assert split_attempt(attempt_name(base, 3)) == (base, 3)


@given(prefixes, group_names, identities)
def test_split_attempt_of_any_base_name_is_attempt_zero(prefix, group, identity):
    base = transform_job_name(prefix, group, identity)
    assert split_attempt(base) == (base, 0)
    assert split_attempt(f"{base}-r7") == (base, 7)


@pytest.mark.parametrize("name", ["nightly-scoring-r2", "sagepilot-churn-r1", "job-r0"])
def test_names_without_a_digest_are_attempt_zero(name):
    assert split_attempt(name) == (name, 0)


# Alarms and scalable targets: the names CloudWatch and Application Auto Scaling know a variant by.
def test_a_variants_alarms_are_named_endpoint_variant_kind():
    assert rollout_alarm_names("sagepilot-churn", "v2") == ("sagepilot-churn-v2-5xx", "sagepilot-churn-v2-latency")
    assert variant_alarm_names("sagepilot-churn", "v2") == (
        "sagepilot-churn-v2-5xx",
        "sagepilot-churn-v2-latency",
        "sagepilot-churn-v2-low-traffic",
    )


@given(prefixes, group_names, st.integers(min_value=1, max_value=10**6))
def test_every_alarm_name_parses_back_to_its_variant_and_kind(prefix, group, version):
    endpoint, variant = endpoint_name(prefix, group), variant_name(version)
    names = variant_alarm_names(endpoint, variant)
    assert [parse_alarm_name(endpoint, name) for name in names] == [
        AlarmRef(name, variant, kind) for name, kind in zip(names, AlarmKind, strict=True)
    ]
    assert set(rollout_alarm_names(endpoint, variant)) < set(names)


def test_scalable_target_and_policy_names():
    assert scalable_target_id("sagepilot-churn", "v3") == "endpoint/sagepilot-churn/variant/v3"
    assert scaling_policy_name("sagepilot-churn", "v3") == "sagepilot-churn-v3-invocations"
