"""Training on upload: what an uploaded training file means, the group's recipe, the job, the verdict.

Layout in the data bucket:

    training/<group>/<sub-path>/<file>            a training set (.csv, .jsonl, optionally .gz); its upload
                                                  starts one training job for that data version
    training/<group>/<sub-path>/validation.<ext>  optional validation set beside it (upload it first);
                                                  it never starts a job by itself
    config/<group>/training.json                  the group's recipe (optional; the stack's defaults otherwise)
    models/<group>/<job-name>/                    what the job writes (model.tar.gz) and its metrics.json
    jobs/training/<job-name>/{train,validation}.manifest   exactly the files the job reads
    rejected/training/<group>/<sub-path>/<file>.json       why a training set did not become a model

The recipe (`config/<group>/training.json`, every field optional):

    {"image": "...", "inferenceImage": "...", "entryPoint": "train.py", "instanceType": "ml.m5.xlarge",
     "instanceCount": 1, "volumeSizeGB": 30, "maxRuntimeSeconds": 3600, "hyperparameters": {"max_depth": "5"},
     "metricDefinitions": [{"Name": "validation:accuracy", "Regex": "accuracy=([0-9.]+)"}],
     "spot": true, "maxWaitSeconds": 7200,
     "autoApprove": [{"metric": "validation:accuracy", "min": 0.85}, {"metric": "validation:logloss", "max": 0.4}]}

`autoApprove` registers the version as Approved when every threshold passes on the job's final metrics
(and it then rolls out like any approval); otherwise, and by default, it waits as PendingManualApproval
with the reason in its approval description.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sagepilot.domain.layout import SAGEMAKER_NAME, InputFormat, Rejection, input_format_of
from sagepilot.domain.names import digest

TRAINING_PREFIX = "training/"
CONFIG_PREFIX = "config/"
MODELS_PREFIX = "models/"
REJECTED_TRAINING_PREFIX = "rejected/training/"
VALIDATION_STEM = "validation"
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
MAX_JOB_NAME = 63
_RETRY_ROOM = 3


class InvalidRecipe(ValueError):
    """The group's training recipe cannot be used as written."""


@dataclass(frozen=True)
class TrainingKey:
    key: str
    group: str
    relative_path: str
    input_format: InputFormat

    @property
    def folder(self) -> str:
        return self.key.rsplit("/", 1)[0] + "/"

    def validation_keys(self) -> tuple[str, ...]:
        """Where a validation set beside this file would be, in any supported format."""
        return tuple(f"{self.folder}{VALIDATION_STEM}{ext}" for ext in (".csv", ".csv.gz", ".jsonl", ".jsonl.gz"))

    @property
    def rejected_key(self) -> str:
        return f"{REJECTED_TRAINING_PREFIX}{self.group}/{self.relative_path}.json"


def is_validation_file(key: str) -> bool:
    name = key.rsplit("/", 1)[-1].lower()
    fmt = input_format_of(name)
    return fmt is not None and name[: -len(fmt.extension)] == VALIDATION_STEM


def parse_training_key(key: str) -> TrainingKey | Rejection | None:
    """`training/<group>/<sub-path>/<file>`; None for a validation file (it waits for its training file)."""
    if not key.startswith(TRAINING_PREFIX):
        return Rejection(
            "KEY_OUTSIDE_LAYOUT",
            f"The key {key!r} is not under {TRAINING_PREFIX!r}.",
            f"Upload training sets as {TRAINING_PREFIX}<model-package-group>/<sub-path>/<file>.",
        )
    parts = key[len(TRAINING_PREFIX) :].split("/")
    if len(parts) < 2 or not parts[0] or not parts[-1]:
        return Rejection(
            "KEY_OUTSIDE_LAYOUT",
            f"The key {key!r} does not name a model package group and a file.",
            f"Upload training sets as {TRAINING_PREFIX}<model-package-group>/<sub-path>/<file>.",
        )
    group = parts[0]
    if not SAGEMAKER_NAME.match(group):
        return Rejection(
            "INVALID_GROUP_NAME",
            f"{group!r} cannot be a SageMaker model package group name.",
            "Move the file under a folder named exactly like the model package group.",
        )
    fmt = input_format_of(parts[-1])
    if fmt is None:
        return Rejection(
            "UNSUPPORTED_FILE_TYPE",
            f"{parts[-1]!r} is not a supported training file (.csv, .jsonl, .csv.gz, .jsonl.gz).",
            "Convert the training set to CSV or JSON Lines and upload it again with the matching extension.",
        )
    if is_validation_file(key):
        return None
    return TrainingKey(key, group, "/".join(parts[1:]), fmt)


@dataclass(frozen=True)
class Threshold:
    metric: str
    min: float | None = None
    max: float | None = None

    def check(self, metrics: Mapping[str, float]) -> str | None:
        """None if it passes; otherwise why not."""
        if self.metric not in metrics:
            return f"{self.metric} was not reported by the job"
        value = metrics[self.metric]
        if self.min is not None and value < self.min:
            return f"{self.metric} = {value:g} is below {self.min:g}"
        if self.max is not None and value > self.max:
            return f"{self.metric} = {value:g} is above {self.max:g}"
        return None

    def describe(self) -> str:
        bounds = [
            f">= {self.min:g}" if self.min is not None else "",
            f"<= {self.max:g}" if self.max is not None else "",
        ]
        return f"{self.metric} {' and '.join(b for b in bounds if b)}"


@dataclass(frozen=True)
class Recipe:
    image: str
    inference_image: str
    instance_type: str
    instance_count: int
    volume_gb: int
    max_runtime_seconds: int
    spot: bool
    max_wait_seconds: int
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    metric_definitions: tuple[Mapping[str, str], ...] = ()
    entry_point: str = ""
    auto_approve: tuple[Threshold, ...] = ()


def _number(doc: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRecipe(f"{name} must be a whole number between {low} and {high}, got {value!r}")
    return value


def parse_recipe(raw: bytes | None, defaults: Recipe) -> Recipe:
    """The group's recipe: `defaults` with what `config/<group>/training.json` says; InvalidRecipe if bad."""
    if raw is None:
        return defaults
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InvalidRecipe(f"the recipe is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidRecipe("the recipe must be a JSON object")
    known = {
        "image",
        "inferenceImage",
        "entryPoint",
        "instanceType",
        "instanceCount",
        "volumeSizeGB",
        "maxRuntimeSeconds",
        "hyperparameters",
        "metricDefinitions",
        "spot",
        "maxWaitSeconds",
        "autoApprove",
    }
    unknown = sorted(set(doc) - known)
    if unknown:
        raise InvalidRecipe(f"unknown field(s) {unknown}; known: {sorted(known)}")
    for name in ("image", "inferenceImage", "entryPoint"):
        if name in doc and (not isinstance(doc[name], str) or not doc[name]):
            raise InvalidRecipe(f"{name} must be a non-empty string")
    instance_type = doc.get("instanceType", defaults.instance_type)
    if not isinstance(instance_type, str) or not _INSTANCE_TYPE.match(instance_type):
        raise InvalidRecipe(f"instanceType must be a SageMaker instance type like ml.m5.xlarge, got {instance_type!r}")
    hyper = doc.get("hyperparameters", {})
    if not isinstance(hyper, dict) or not all(isinstance(k, str) for k in hyper):
        raise InvalidRecipe("hyperparameters must be an object of names to values")
    definitions = doc.get("metricDefinitions", [])
    if not isinstance(definitions, list) or not all(
        isinstance(d, dict) and isinstance(d.get("Name"), str) and isinstance(d.get("Regex"), str) for d in definitions
    ):
        raise InvalidRecipe('metricDefinitions must be a list of {"Name": ..., "Regex": ...}')
    spot = doc.get("spot", defaults.spot)
    if not isinstance(spot, bool):
        raise InvalidRecipe(f"spot must be true or false, got {spot!r}")
    thresholds = []
    for item in doc.get("autoApprove", []) if isinstance(doc.get("autoApprove", []), list) else [None]:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), str) or not ({"min", "max"} & set(item)):
            raise InvalidRecipe('autoApprove must be a list of {"metric": ..., "min": ...} and/or "max"')
        bounds = {k: item[k] for k in ("min", "max") if k in item}
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bounds.values()):
            raise InvalidRecipe(f"autoApprove bounds of {item['metric']} must be numbers")
        thresholds.append(Threshold(item["metric"], bounds.get("min"), bounds.get("max")))
    max_runtime = _number(doc, "maxRuntimeSeconds", defaults.max_runtime_seconds, 60, 28 * 86_400)
    image = str(doc.get("image", defaults.image))
    inference_image = str(doc.get("inferenceImage", image if "image" in doc else defaults.inference_image))
    recipe = replace(
        defaults,
        image=image,
        inference_image=inference_image,
        instance_type=instance_type,
        instance_count=_number(doc, "instanceCount", defaults.instance_count, 1, 100),
        volume_gb=_number(doc, "volumeSizeGB", defaults.volume_gb, 1, 16_384),
        max_runtime_seconds=max_runtime,
        spot=spot,
        max_wait_seconds=_number(doc, "maxWaitSeconds", max(defaults.max_wait_seconds, max_runtime), 60, 28 * 86_400),
        hyperparameters={str(k): str(v) for k, v in hyper.items()},
        metric_definitions=tuple({"Name": d["Name"], "Regex": d["Regex"]} for d in definitions),
        entry_point=doc.get("entryPoint", defaults.entry_point),
        auto_approve=tuple(thresholds),
    )
    if recipe.spot and recipe.max_wait_seconds < recipe.max_runtime_seconds:
        raise InvalidRecipe("maxWaitSeconds must be at least maxRuntimeSeconds for spot training")
    return recipe


def training_job_name(prefix: str, group: str, key: str, version_id: str | None) -> str:
    """One job per data version: `<prefix>-<group>-<digest>` (room left for a retry suffix `-rN`)."""
    tail = digest(["training", group, key, version_id or ""])
    room = MAX_JOB_NAME - _RETRY_ROOM - len(prefix) - len(tail) - 2
    middle = group[:room].rstrip("-")
    return f"{prefix}-{middle}-{tail}" if middle else f"{prefix}-{tail}"


def manifest(bucket: str, keys: tuple[str, ...]) -> list[Any]:
    """A ManifestFile naming exactly these keys (S3Prefix would also read `a.csv.bak` for `a.csv`)."""
    return [{"prefix": f"s3://{bucket}/"}, *keys]


def training_job_request(
    *,
    name: str,
    recipe: Recipe,
    role_arn: str,
    bucket: str,
    training: TrainingKey,
    train_manifest_key: str,
    validation_manifest_key: str | None,
    version_id: str | None,
    prefix: str,
    validation_format: InputFormat | None = None,
) -> dict[str, Any]:
    def channel(channel_name: str, manifest_key: str, fmt: InputFormat) -> dict[str, Any]:
        return {
            "ChannelName": channel_name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "ManifestFile",
                    "S3Uri": f"s3://{bucket}/{manifest_key}",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "ContentType": fmt.content_type,
            "CompressionType": fmt.compression,
        }

    channels = [channel("train", train_manifest_key, training.input_format)]
    if validation_manifest_key:
        # The validation set's own format: a validation.jsonl beside a train.csv is JSON Lines.
        channels.append(channel("validation", validation_manifest_key, validation_format or training.input_format))
    algorithm: dict[str, Any] = {"TrainingImage": recipe.image, "TrainingInputMode": "File"}
    if recipe.metric_definitions:
        algorithm["MetricDefinitions"] = [dict(d) for d in recipe.metric_definitions]
    hyperparameters = dict(recipe.hyperparameters)
    if recipe.entry_point:
        hyperparameters["sagemaker_program"] = recipe.entry_point
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": recipe.max_runtime_seconds}
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": algorithm,
        "RoleArn": role_arn,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/{MODELS_PREFIX}{training.group}/"},
        "ResourceConfig": {
            "InstanceType": recipe.instance_type,
            "InstanceCount": recipe.instance_count,
            "VolumeSizeInGB": recipe.volume_gb,
        },
        "StoppingCondition": stopping,
        "Tags": [
            {"Key": "sagepilot:managed-by", "Value": prefix},
            {"Key": "sagepilot:group", "Value": training.group},
            {"Key": "sagepilot:training-data", "Value": f"s3://{bucket}/{training.key}"[-256:]},
            {"Key": "sagepilot:training-data-version", "Value": version_id or "null"},
        ],
    }
    if hyperparameters:
        request["HyperParameters"] = hyperparameters
    if recipe.spot:
        request["EnableManagedSpotTraining"] = True
        stopping["MaxWaitTimeInSeconds"] = recipe.max_wait_seconds
        request["CheckpointConfig"] = {"S3Uri": f"s3://{bucket}/checkpoints/{training.group}/{name}/"}
    return request


def approval(recipe: Recipe, metrics: Mapping[str, float]) -> tuple[str, str]:
    """(ModelApprovalStatus, ApprovalDescription) for a finished job's final metrics."""
    shown = ", ".join(f"{k} = {v:g}" for k, v in sorted(metrics.items())) or "no metrics reported"
    if not recipe.auto_approve:
        return "PendingManualApproval", f"Trained by sagepilot ({shown}); waiting for a person to approve it."
    failures = [reason for t in recipe.auto_approve if (reason := t.check(metrics)) is not None]
    if failures:
        return "PendingManualApproval", f"Not approved automatically: {'; '.join(failures)} ({shown})."
    passed = "; ".join(t.describe() for t in recipe.auto_approve)
    return "Approved", f"Approved automatically by sagepilot: {passed} ({shown})."


def training_failure(job_name: str, status: str, reason: str, attempts: int) -> Rejection:
    if status == "Stopped":
        return Rejection(
            "TRAINING_STOPPED",
            f"Training job {job_name} was stopped before it finished.",
            "Upload the training set again (or copy it onto itself) to train again.",
        )
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    return Rejection(
        "TRAINING_FAILED",
        f"Training job {job_name} failed{tried}: {reason or 'no reason given'}",
        "Read the job's CloudWatch logs (/aws/sagemaker/TrainingJobs), fix the data or the recipe "
        "(config/<group>/training.json), then upload the training set again.",
    )
