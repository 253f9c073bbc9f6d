"""Settings come from the environment the template sets; anything missing or wrong stops the function."""

from __future__ import annotations

import pytest

from sagepilot.errors import ConfigurationError
from sagepilot.settings import load_settings

VALID = {
    "DATA_BUCKET": "sagepilot-sandbox-databucket",
    "STATE_TABLE": "sagepilot-StateTable-1ABC",
    "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:sagepilot-NotificationTopic-1ABC",
    "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/sagepilot-SageMakerExecutionRole-1ABC",
    "NAME_PREFIX": "sagepilot",
    "TRANSFORM_INSTANCE_TYPE": "ml.m5.xlarge",
    "FALLBACK_INSTANCE_TYPE": "ml.c5.xlarge",
    "MAX_INSTANCE_COUNT": "4",
    "TARGET_MB_PER_INSTANCE": "1024",
    "MAX_PAYLOAD_MB": "6",
    "MAX_CONCURRENT_TRANSFORMS": "1",
    "MAX_FILES_PER_JOB": "1000",
    "MAX_JOB_RETRIES": "2",
    "CLAIM_TIMEOUT_SECONDS": "180",
    "INTAKE_MAX_RECEIVE_COUNT": "5",
    "TRANSFORM_INSTANCE_TYPES_ALLOWED": "ml.m5.*,ml.c5.*",
    "IMAGE_REPOSITORIES_ALLOWED": "123456789012.dkr.ecr.us-east-1.amazonaws.com/*",
}
REQUIRED = sorted(set(VALID) - {"FALLBACK_INSTANCE_TYPE"})


def env(**changes: str | None) -> dict[str, str]:
    values = {**VALID, **changes}
    return {k: v for k, v in values.items() if v is not None}


def test_valid_settings_are_read_and_typed():
    settings = load_settings(env())
    assert settings.data_bucket == "sagepilot-sandbox-databucket"
    assert settings.state_table == "sagepilot-StateTable-1ABC"
    assert settings.notification_topic_arn == VALID["NOTIFICATION_TOPIC_ARN"]
    assert settings.sagemaker_role_arn == VALID["SAGEMAKER_ROLE_ARN"]
    assert settings.fallback_instance_type == "ml.c5.xlarge"
    assert settings.max_job_retries == 2
    assert settings.claim_timeout_seconds == 180
    assert settings.intake_max_receive_count == 5
    t = settings.transform
    assert (t.name_prefix, t.instance_type) == ("sagepilot", "ml.m5.xlarge")
    assert (t.max_instance_count, t.target_mb_per_instance, t.max_files_per_job) == (4, 1024, 1000)
    assert (t.max_payload_mb, t.max_concurrent_transforms) == (6, 1)
    assert settings.image_repositories == ("123456789012.dkr.ecr.us-east-1.amazonaws.com/*",)


@pytest.mark.parametrize("value", ["docker.io/library/*", "*", "123456789012.dkr.ecr.us-east-1.amazonaws.com"])
def test_an_image_allow_list_that_is_not_ecr_repositories_is_refused(value):
    with pytest.raises(ConfigurationError, match="IMAGE_REPOSITORIES_ALLOWED"):
        load_settings(env(IMAGE_REPOSITORIES_ALLOWED=value))


def _function_environment(template, function):
    """The variables a function gets: the template's Globals, then its own Environment."""
    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    own = template["Resources"][function]["Properties"].get("Environment", {})
    return {**variables, **own.get("Variables", {})}


@pytest.mark.parametrize("function", ["BatchIntakeFunction", "BatchCompletionFunction"])
def test_the_template_environment_is_complete(template, function):
    """Every variable the batch settings read is set for each function that loads them (from the Globals or its
    own environment, as IMAGE_REPOSITORIES_ALLOWED is)."""
    assert set(VALID) <= set(_function_environment(template, function))


@pytest.mark.parametrize("function", ["RolloutFunction", "TrainingFunction"])
def test_only_the_batch_functions_get_the_batch_settings(template, function):
    """The batch-only variables are the two batch functions' own, not Globals that every function gets."""
    stack_wide = {"DATA_BUCKET", "STATE_TABLE", "NOTIFICATION_TOPIC_ARN", "SAGEMAKER_ROLE_ARN", "NAME_PREFIX"}
    stack_wide |= {"IMAGE_REPOSITORIES_ALLOWED"}  # every function that runs an image checks it
    assert not (set(VALID) - stack_wide) & set(_function_environment(template, function))


@pytest.mark.parametrize("name", REQUIRED)
def test_every_required_variable_missing_is_named(name):
    with pytest.raises(ConfigurationError, match=name):
        load_settings(env(**{name: None}))


@pytest.mark.parametrize("name", REQUIRED)
def test_a_blank_required_variable_counts_as_missing(name):
    with pytest.raises(ConfigurationError, match=name):
        load_settings(env(**{name: "   "}))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_INSTANCE_COUNT", "four"),
        ("MAX_INSTANCE_COUNT", "0"),
        ("MAX_INSTANCE_COUNT", "101"),
        ("MAX_INSTANCE_COUNT", "2.5"),
        ("TARGET_MB_PER_INSTANCE", "0"),
        ("MAX_PAYLOAD_MB", "0"),
        ("MAX_PAYLOAD_MB", "101"),
        ("MAX_CONCURRENT_TRANSFORMS", "0"),
        ("MAX_FILES_PER_JOB", "-1"),
        ("MAX_JOB_RETRIES", "10"),
        ("CLAIM_TIMEOUT_SECONDS", "0"),
        ("INTAKE_MAX_RECEIVE_COUNT", "x"),
    ],
)
def test_bad_numbers_are_refused_with_the_variable_name(name, value):
    with pytest.raises(ConfigurationError, match=name):
        load_settings(env(**{name: value}))


@pytest.mark.parametrize(("payload", "concurrency"), [("6", "17"), ("100", "2"), ("11", "10"), ("51", "2")])
def test_payload_times_concurrency_above_100_is_refused(payload, concurrency):
    with pytest.raises(ConfigurationError, match=r"MAX_CONCURRENT_TRANSFORMS x MAX_PAYLOAD_MB"):
        load_settings(env(MAX_PAYLOAD_MB=payload, MAX_CONCURRENT_TRANSFORMS=concurrency))


@pytest.mark.parametrize(("payload", "concurrency"), [("6", "16"), ("100", "1"), ("10", "10"), ("1", "100")])
def test_payload_times_concurrency_up_to_100_is_accepted(payload, concurrency):
    settings = load_settings(env(MAX_PAYLOAD_MB=payload, MAX_CONCURRENT_TRANSFORMS=concurrency))
    assert settings.transform.max_payload_mb * settings.transform.max_concurrent_transforms <= 100


@pytest.mark.parametrize(
    "prefix",
    ["sage_pilot", "sage.pilot", "-sagepilot", "sagepilot-", "sage pilot", "p" * 21, "ü", "sagepilot-dev", "SP1"],
)
def test_bad_name_prefixes_are_refused(prefix):
    with pytest.raises(ConfigurationError, match="NAME_PREFIX"):
        load_settings(env(NAME_PREFIX=prefix))


@pytest.mark.parametrize("prefix", ["a", "sagepilotdev", "p" * 20, "sp1"])
def test_good_name_prefixes_are_accepted(prefix):
    assert load_settings(env(NAME_PREFIX=prefix)).transform.name_prefix == prefix


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_fallback_instance_type_means_none(value):
    assert load_settings(env(FALLBACK_INSTANCE_TYPE=value)).fallback_instance_type is None


def test_an_absent_fallback_instance_type_means_none():
    assert load_settings(env(FALLBACK_INSTANCE_TYPE=None)).fallback_instance_type is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRANSFORM_INSTANCE_TYPE", "m5.xlarge"),
        ("TRANSFORM_INSTANCE_TYPE", "ml.m5"),
        ("FALLBACK_INSTANCE_TYPE", "ml.M5.xlarge"),
        ("FALLBACK_INSTANCE_TYPE", "c5.xlarge"),
    ],
)
def test_bad_instance_types_are_refused(name, value):
    with pytest.raises(ConfigurationError, match=name):
        load_settings(env(**{name: value}))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"TRANSFORM_INSTANCE_TYPE": "ml.p4d.24xlarge"}, "TRANSFORM_INSTANCE_TYPE ml.p4d.24xlarge is not allowed"),
        ({"FALLBACK_INSTANCE_TYPE": "ml.g5.xlarge"}, "FALLBACK_INSTANCE_TYPE ml.g5.xlarge is not allowed"),
        ({"TRANSFORM_INSTANCE_TYPES_ALLOWED": "m5.*"}, "TRANSFORM_INSTANCE_TYPES_ALLOWED"),
        ({"TRANSFORM_INSTANCE_TYPES_ALLOWED": "ml.*.*"}, "TRANSFORM_INSTANCE_TYPES_ALLOWED"),
    ],
)
def test_the_stacks_transform_types_must_be_within_its_own_ceiling(changes, named):
    with pytest.raises(ConfigurationError, match=named):
        load_settings(env(**changes))


def test_exact_types_and_families_may_be_allowed():
    settings = load_settings(env(TRANSFORM_INSTANCE_TYPES_ALLOWED="ml.m5.xlarge, ml.c5.*"))
    assert settings.transform.instance_type == "ml.m5.xlarge"
