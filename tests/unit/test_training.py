"""Training on upload, decided without AWS: keys, recipes, job requests, names, and the approval verdict."""

from __future__ import annotations

import json

import pytest

from sagepilot.domain import training as plan
from sagepilot.domain.layout import Rejection
from sagepilot.events import parse_object_created

from .conftest import read_event

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
DEFAULTS = plan.Recipe(
    image=IMAGE,
    inference_image=IMAGE,
    instance_type="ml.m5.xlarge",
    instance_count=1,
    volume_gb=30,
    max_runtime_seconds=3600,
    spot=False,
    max_wait_seconds=7200,
)


@pytest.mark.parametrize(
    ("key", "group", "relative", "content_type", "compression"),
    [
        ("training/churn/2026-11/train.csv", "churn", "2026-11/train.csv", "text/csv", "None"),
        ("training/churn/a/b/data.jsonl.gz", "churn", "a/b/data.jsonl.gz", "application/jsonlines", "Gzip"),
    ],
)
def test_training_keys(key, group, relative, content_type, compression):
    parsed = plan.parse_training_key(key)
    assert isinstance(parsed, plan.TrainingKey)
    assert (parsed.group, parsed.relative_path) == (group, relative)
    assert (parsed.input_format.content_type, parsed.input_format.compression) == (content_type, compression)
    assert parsed.rejected_key == f"rejected/training/{group}/{relative}.json"


@pytest.mark.parametrize("name", ["validation.csv", "validation.jsonl.gz", "VALIDATION.csv"])
def test_a_validation_file_never_starts_a_job(name):
    assert plan.parse_training_key(f"training/churn/2026-11/{name}") is None


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("training/train.csv", "KEY_OUTSIDE_LAYOUT"),
        ("training/churn/", "KEY_OUTSIDE_LAYOUT"),
        ("training/bad_group/x.csv", "INVALID_GROUP_NAME"),
        ("training/churn/x.parquet", "UNSUPPORTED_FILE_TYPE"),
        ("incoming/churn/x.csv", "KEY_OUTSIDE_LAYOUT"),
    ],
)
def test_bad_training_keys_say_why(key, code):
    parsed = plan.parse_training_key(key)
    assert isinstance(parsed, Rejection) and parsed.code == code


def test_validation_files_are_looked_for_beside_the_training_set():
    parsed = plan.parse_training_key("training/churn/2026-11/train.csv")
    assert isinstance(parsed, plan.TrainingKey)
    assert "training/churn/2026-11/validation.csv" in parsed.validation_keys()


def test_no_recipe_means_the_defaults():
    assert plan.parse_recipe(None, DEFAULTS) == DEFAULTS


def test_a_recipe_overrides_the_defaults():
    recipe = plan.parse_recipe(
        json.dumps(
            {
                "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn-train:3",
                "instanceType": "ml.c5.2xlarge",
                "hyperparameters": {"max_depth": 5, "eta": "0.2"},
                "spot": True,
                "maxRuntimeSeconds": 1800,
                "metricDefinitions": [{"Name": "validation:auc", "Regex": "auc=([0-9.]+)"}],
                "autoApprove": [{"metric": "validation:auc", "min": 0.8}],
            }
        ).encode(),
        DEFAULTS,
    )
    assert recipe.image.endswith("churn-train:3") and recipe.inference_image == recipe.image
    assert recipe.instance_type == "ml.c5.2xlarge" and recipe.spot and recipe.max_wait_seconds == 7200
    assert recipe.hyperparameters == {"max_depth": "5", "eta": "0.2"}
    assert recipe.auto_approve == (plan.Threshold("validation:auc", 0.8, None),)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"instanceType": "big"}', "instanceType"),
        (b'{"instanceCount": 0}', "instanceCount"),
        (b'{"spot": "yes"}', "spot"),
        (b'{"hyperparameter": {}}', "unknown field"),
        (b'{"autoApprove": [{"metric": "acc"}]}', "autoApprove"),
        (b'{"autoApprove": [{"metric": "acc", "min": "high"}]}', "numbers"),
        (b'{"metricDefinitions": [{"Name": "acc"}]}', "metricDefinitions"),
        (b'{"spot": true, "maxRuntimeSeconds": 7200, "maxWaitSeconds": 3600}', "maxWaitSeconds"),
    ],
)
def test_a_bad_recipe_says_what_is_wrong(doc, message):
    with pytest.raises(plan.InvalidRecipe, match=message):
        plan.parse_recipe(doc, DEFAULTS)


def test_job_names_are_one_per_data_version_and_leave_room_for_retries():
    a = plan.training_job_name("sagepilot", "churn", "training/churn/a.csv", "v1")
    assert a == plan.training_job_name("sagepilot", "churn", "training/churn/a.csv", "v1")
    assert a != plan.training_job_name("sagepilot", "churn", "training/churn/a.csv", "v2")
    long = plan.training_job_name("sagepilot", "g" * 63, "training/x.csv", None)
    assert len(long) <= 60 and long.startswith("sagepilot-g")


def test_the_job_request_reads_exactly_the_files_and_writes_under_models():
    key = plan.parse_training_key("training/churn/2026-11/train.csv.gz")
    assert isinstance(key, plan.TrainingKey)
    spot = plan.parse_recipe(b'{"spot": true, "hyperparameters": {"a": "1"}, "entryPoint": "train.py"}', DEFAULTS)
    request = plan.training_job_request(
        name="sagepilot-churn-0123456789abcdef",
        recipe=spot,
        role_arn="arn:aws:iam::1:role/r",
        bucket="b",
        training=key,
        train_manifest_key="jobs/training/j/train.manifest",
        validation_manifest_key="jobs/training/j/validation.manifest",
        version_id="v9",
        prefix="sagepilot",
    )
    train, validation = request["InputDataConfig"]
    assert train["DataSource"]["S3DataSource"] == {
        "S3DataType": "ManifestFile",
        "S3Uri": "s3://b/jobs/training/j/train.manifest",
        "S3DataDistributionType": "FullyReplicated",
    }
    assert (train["ContentType"], train["CompressionType"]) == ("text/csv", "Gzip")
    assert validation["ChannelName"] == "validation"
    assert request["OutputDataConfig"]["S3OutputPath"] == "s3://b/models/churn/"
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"]["MaxWaitTimeInSeconds"] >= request["StoppingCondition"]["MaxRuntimeInSeconds"]
    assert request["CheckpointConfig"]["S3Uri"].startswith("s3://b/checkpoints/churn/")
    assert request["HyperParameters"] == {"a": "1", "sagemaker_program": "train.py"}
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["sagepilot:training-data-version"] == "v9"


def test_the_manifest_names_exact_keys():
    assert plan.manifest("b", ("training/churn/a.csv",)) == [{"prefix": "s3://b/"}, "training/churn/a.csv"]


def test_without_thresholds_a_person_approves():
    status, why = plan.approval(DEFAULTS, {"validation:auc": 0.9})
    assert status == "PendingManualApproval" and "validation:auc = 0.9" in why


def test_thresholds_that_all_pass_approve_automatically():
    recipe = plan.parse_recipe(
        b'{"autoApprove": [{"metric": "validation:auc", "min": 0.8}, {"metric": "validation:logloss", "max": 0.5}]}',
        DEFAULTS,
    )
    status, why = plan.approval(recipe, {"validation:auc": 0.91, "validation:logloss": 0.3})
    assert status == "Approved" and "validation:auc >= 0.8" in why


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        ({"validation:auc": 0.7, "validation:logloss": 0.3}, "below 0.8"),
        ({"validation:auc": 0.9, "validation:logloss": 0.7}, "above 0.5"),
        ({"validation:logloss": 0.3}, "was not reported"),
    ],
)
def test_a_failed_threshold_leaves_it_pending_with_the_reason(metrics, reason):
    recipe = plan.parse_recipe(
        b'{"autoApprove": [{"metric": "validation:auc", "min": 0.8}, {"metric": "validation:logloss", "max": 0.5}]}',
        DEFAULTS,
    )
    status, why = plan.approval(recipe, metrics)
    assert status == "PendingManualApproval" and reason in why


def test_failures_say_what_to_do():
    assert plan.training_failure("j", "Stopped", "", 1).code == "TRAINING_STOPPED"
    failed = plan.training_failure("j", "Failed", "AlgorithmError: bad label", 3)
    assert (
        failed.code == "TRAINING_FAILED" and "after 3 attempts" in failed.reason and "AlgorithmError" in failed.reason
    )


def test_the_validation_channel_has_its_own_format():
    key = plan.parse_training_key("training/churn/train.csv")
    assert isinstance(key, plan.TrainingKey)
    jsonl = plan.input_format_of("validation.jsonl")
    request = plan.training_job_request(
        name="n",
        recipe=DEFAULTS,
        role_arn="r",
        bucket="b",
        training=key,
        train_manifest_key="t",
        validation_manifest_key="v",
        version_id=None,
        prefix="sagepilot",
        validation_format=jsonl,
    )
    train, validation = request["InputDataConfig"]
    assert train["ContentType"] == "text/csv" and validation["ContentType"] == "application/jsonlines"


# ---------------------------------------------------------------------------------------- limits and sets
def test_a_recipe_survives_being_frozen_and_read_back():
    doc = {
        "hyperparameters": {"max_depth": 5, "verbose": True},
        "metricDefinitions": [{"Name": "validation:auc", "Regex": "auc=([0-9.]+)"}],
        "autoApprove": [{"metric": "validation:auc", "min": 0.8}],
        "networkIsolation": True,
    }
    recipe = plan.parse_recipe(json.dumps(doc).encode(), DEFAULTS)
    assert recipe.hyperparameters == {"max_depth": "5", "verbose": "true"}
    again = plan.recipe_from_document(json.loads(json.dumps(plan.recipe_document(recipe))))
    assert again == recipe and plan.recipe_digest(again) == plan.recipe_digest(recipe)
    assert plan.recipe_digest(plan.parse_recipe(b"{}", DEFAULTS)) != plan.recipe_digest(recipe)


@pytest.mark.parametrize("value", [None, [1, 2], {"a": 1}])
def test_a_hyperparameter_must_be_a_scalar(value):
    with pytest.raises(plan.InvalidRecipe, match="string, number or boolean"):
        plan.parse_recipe(json.dumps({"hyperparameters": {"x": value}}).encode(), DEFAULTS)


@pytest.mark.parametrize(
    ("image", "allowed", "ok"),
    [
        (IMAGE, ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost",), True),
        (IMAGE, ("683313688378.dkr.ecr.us-east-1.amazonaws.com/*",), True),
        (IMAGE, ("683313688378.dkr.ecr.us-west-2.amazonaws.com/*",), False),
        (IMAGE, ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker",), False),  # not a prefix without *
        (
            "111111111111.dkr.ecr.us-east-1.amazonaws.com/team-a/x@sha256:" + "a" * 64,
            ("111111111111.dkr.ecr.us-east-1.amazonaws.com/team-a/*",),
            True,
        ),
        (
            "111111111111.dkr.ecr.us-east-1.amazonaws.com.evil.io/x:1",
            ("111111111111.dkr.ecr.us-east-1.amazonaws.com/*",),
            False,
        ),
        ("docker.io/library/python:3", ("*",), False),  # not ECR at all
    ],
)
def test_images_come_only_from_allowed_repositories(image, allowed, ok):
    assert plan.image_allowed(image, allowed) is ok


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("part-00000.csv", True),
        ("part-00003-3f2a1c-c000.csv.gz", True),
        ("PART_1.jsonl", True),
        ("train-00001-of-00005.csv", True),
        ("train.csv", False),
        ("partners.csv", False),
        ("2026-11.csv", False),
    ],
)
def test_part_names(name, part):
    assert plan.is_part_name(f"training/churn/x/{name}") is part


def test_a_file_waits_when_its_folder_is_a_set():
    folder = "training/churn/x/"
    assert plan.waiting_for_marker(folder + "a.csv", [folder + "a.csv", folder + "validation.csv"]) is None
    # Beside other files and no marker: not a silent wait at upload; it settles first (after_settling).
    assert plan.waiting_for_marker(folder + "a.csv", [folder + "a.csv", folder + "b.csv"]) is None
    assert "marker" in str(plan.waiting_for_marker(folder + "a.csv", [folder + "a.csv", folder + "_SUCCESS"]))
    assert plan.waiting_for_marker(folder + "a.csv", [folder + "a.csv", folder + "sub/b.csv"]) is None


def test_after_settling_a_file_trains_alone_waits_for_the_marker_or_needs_one():
    folder = "training/churn/x/"
    a = folder + "a.csv"
    assert (
        plan.after_settling(a, [a, folder + "validation.csv", folder + "sub/b.csv", folder + "notes.txt"], 10) is None
    )
    assert "marker" in str(plan.after_settling(a, [a, folder + "b.csv", folder + "_SUCCESS"], 10))
    assert "part" in str(plan.after_settling(folder + "part-0.csv", [folder + "part-0.csv"], 10))
    needs = plan.after_settling(a, [a, folder + "c.csv", folder + "b.csv"], 10)
    assert needs == plan.NeedsMarker(folder, (a, folder + "b.csv", folder + "c.csv"))
    assert needs.notice() == f"3 files in {folder}: upload {folder}_SUCCESS to train on all of them"
    rejection = needs.rejection()
    assert rejection.code == "DATASET_NEEDS_MARKER" and "a.csv, b.csv, c.csv" in rejection.reason
    assert f"Upload {folder}_SUCCESS" in rejection.action
    many = [folder + f"f{i:02}.csv" for i in range(12)]
    cut = plan.after_settling(many[0], many, 10)  # a listing cut at 10 (+1 to tell there are more)
    assert isinstance(cut, plan.NeedsMarker) and cut.more and len(cut.files) == 10
    assert cut.notice().startswith("at least 10 files")
    assert "(f00.csv, f01.csv, f02.csv, f03.csv, f04.csv, ...)" in cut.rejection().reason


def test_a_folders_notice_record_is_one_per_folder():
    one = plan.marker_notice_name("sagepilot", "churn", "training/churn/x/")
    assert one == plan.marker_notice_name("sagepilot", "churn", "training/churn/x/")
    assert one != plan.marker_notice_name("sagepilot", "churn", "training/churn/y/")
    assert one != plan.training_job_name("sagepilot", "churn", "training/churn/x/", None)


def test_a_marker_names_the_set():
    parsed = plan.parse_training_key("training/churn/2026-12/_SUCCESS")
    assert isinstance(parsed, plan.DatasetMarker)
    assert parsed.folder == "training/churn/2026-12/"
    assert parsed.rejected_key == "rejected/training/churn/2026-12/_SUCCESS.json"
    keys = ["training/churn/2026-12/" + n for n in ("_SUCCESS", "b.csv", "a.csv", "validation.csv", "notes.txt")]
    assert plan.dataset_files(parsed.folder, keys) == ("training/churn/2026-12/a.csv", "training/churn/2026-12/b.csv")


@pytest.mark.parametrize(
    ("sample", "kind"),
    [
        ("s3-object-created-training-marker.json", plan.DatasetMarker),
        ("s3-object-created-training-part.json", plan.TrainingKey),
    ],
)
def test_the_sample_uploads_parse_as_a_marker_and_a_part(sample, kind):
    event = parse_object_created(read_event(sample))
    parsed = plan.parse_training_key(event.key)
    assert isinstance(parsed, kind)
    assert plan.is_part_name(event.key) is (kind is plan.TrainingKey)


def test_a_group_tag_that_is_no_setting_rejects_the_training_set_and_other_tags_do_not() -> None:
    from sagepilot.domain.training import group_tags_rejection

    assert group_tags_rejection("churn", {"sagepilot:bake-seconds": "60", "team": "ml"}) is None
    rejection = group_tags_rejection("churn", {"sagepilot:hyperparameters": "x"})
    assert rejection is not None and rejection.code == "INVALID_GROUP_SETTINGS"
    assert rejection.reason.startswith("Model package group 'churn' has an invalid tag: tag sagepilot:hyperparameters")
    assert "config/<group>/training.json" in rejection.reason and "upload the training set again" in rejection.action
