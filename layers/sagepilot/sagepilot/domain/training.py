"""Training on upload: what an uploaded training file means, the group's recipe, the job, the verdict.

Layout in the data bucket:

    training/<group>/<sub-path>/<file>            a training set (.csv, .jsonl, optionally .gz); its upload
                                                  starts one training job for that data version
    training/<group>/<sub-path>/validation.<ext>  optional validation set beside it (upload it first);
                                                  it never starts a job by itself
    training/<group>/<folder>/part-*.csv ... + _SUCCESS   a training set of several files: the parts wait, and
                                                  the marker (`_SUCCESS` or `_COMPLETE`, uploaded last) starts
                                                  one job on every data file directly in the folder
    A file with an ordinary name first settles (the stack's TrainingSettleSeconds): still alone in its folder
    then, it is trained on; beside other training files and no marker, no job trains on it alone and the
    user is told to upload the marker (DATASET_NEEDS_MARKER).
    config/<group>/training.json                  the group's recipe (optional; the stack's defaults otherwise)
    models/<group>/<job-name>/                    what the job writes (model.tar.gz) and its metrics.json
    jobs/training/<job-name>/{train,validation}.manifest   exactly the files the job reads
    jobs/training/<job-name>/recipe-<digest>.json          the recipe the job was started with (frozen)
    rejected/training/<group>/<sub-path>/<file>.json       why a training set did not become a model

The recipe (`config/<group>/training.json`, every field optional):

    {"image": "...", "inferenceImage": "...", "entryPoint": "train.py", "instanceType": "ml.m5.xlarge",
     "instanceCount": 1, "volumeSizeGB": 30, "maxRuntimeSeconds": 3600, "hyperparameters": {"max_depth": "5"},
     "metricDefinitions": [{"Name": "validation:accuracy", "Regex": "accuracy=([0-9.]+)"}],
     "spot": true, "maxWaitSeconds": 7200, "networkIsolation": true,
     "autoApprove": [{"metric": "validation:accuracy", "min": 0.85}, {"metric": "validation:logloss", "max": 0.4}]}

`autoApprove` registers the version as Approved when every threshold passes on the job's final metrics
(and it then rolls out like any approval); otherwise, and by default, it waits as PendingManualApproval
with the reason in its approval description.

What a recipe may ask for is bounded twice: by what SageMaker's CreateTrainingJob accepts (checked here,
so that a refusal becomes a report, not an error) and by the operator's ceilings (`TrainingCeilings`, from
the stack's parameters: allowed instance types, most instances, runtime, volume, image repositories and
whether a group may turn network isolation off).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sagepilot.domain.group_tags import unknown_tags_problem

# Re-exported (imported from here before): the image checks live in domain/images.py, inference uses them too.
from sagepilot.domain.images import IMAGE_URI as IMAGE_URI
from sagepilot.domain.images import REPOSITORY_PATTERN as REPOSITORY_PATTERN
from sagepilot.domain.images import image_allowed as image_allowed
from sagepilot.domain.instance_types import INSTANCE_TYPE_PATTERN as INSTANCE_TYPE_PATTERN
from sagepilot.domain.instance_types import instance_type_allowed as instance_type_allowed
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
# Objects that close a multi-file training set (Spark/Hadoop write _SUCCESS; _COMPLETE for everything else).
DATASET_MARKERS = ("_SUCCESS", "_COMPLETE")
MAX_DATASET_FILES = 10_000
# A file named like one part of a larger set: Spark/Hadoop `part-00000...`, `part_1`, `train-00001-of-00005`.
_PART_NAME = re.compile(r"^(part[-_.]?[0-9]+|.*[-_.][0-9]+-of-[0-9]+)", re.IGNORECASE)
# CreateTrainingJob's own limits (API reference): what SageMaker would refuse with a ValidationException.
MAX_HYPERPARAMETERS = 100
MAX_HYPERPARAMETER_KEY = 256
MAX_HYPERPARAMETER_VALUE = 2500
MAX_METRIC_DEFINITIONS = 40
MAX_METRIC_NAME = 255
MAX_METRIC_REGEX = 500
MAX_IMAGE_URI = 255
MAX_RUNTIME_LIMIT = 28 * 86_400
MAX_VOLUME_LIMIT = 16_384
MAX_INSTANCE_COUNT_LIMIT = 100


class InvalidRecipe(ValueError):
    """The group's training recipe cannot be used as written."""


@dataclass(frozen=True)
class TrainingCeilings:
    """What the operator lets recipes ask for (stack parameters; each error names its parameter)."""

    instance_types: tuple[str, ...]  # TrainingInstanceTypesAllowed
    max_instance_count: int  # TrainingInstanceCountCeiling
    max_runtime_seconds: int  # TrainingRuntimeCeilingSeconds (spot's maxWaitSeconds too)
    max_volume_gb: int  # TrainingVolumeCeilingGB
    image_repositories: tuple[str, ...]  # ImageRepositoriesAllowed
    network_access_allowed: bool = False  # TrainingNetworkAccessAllowed: may a recipe turn isolation off?


NO_CEILINGS = TrainingCeilings(
    ("ml.*",), MAX_INSTANCE_COUNT_LIMIT, MAX_RUNTIME_LIMIT, MAX_VOLUME_LIMIT, ("*",), network_access_allowed=True
)


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


@dataclass(frozen=True)
class DatasetMarker:
    """`training/<group>/<folder>/_SUCCESS`: the folder's data files are one training set, complete."""

    key: str
    group: str
    relative_path: str

    @property
    def folder(self) -> str:
        return self.key.rsplit("/", 1)[0] + "/"

    @property
    def rejected_key(self) -> str:
        return f"{REJECTED_TRAINING_PREFIX}{self.group}/{self.relative_path}.json"

    def validation_keys(self) -> tuple[str, ...]:
        return tuple(f"{self.folder}{VALIDATION_STEM}{ext}" for ext in (".csv", ".csv.gz", ".jsonl", ".jsonl.gz"))

    def training_key(self, input_format: InputFormat) -> TrainingKey:
        """The marker as the job's training key (its lineage and report), read in the files' format."""
        return TrainingKey(self.key, self.group, self.relative_path, input_format)


def is_dataset_marker(key: str) -> bool:
    return key.rsplit("/", 1)[-1].upper() in DATASET_MARKERS


def is_part_name(key: str) -> bool:
    """Named like one part of a larger training set (`part-00000.csv`, `train-00001-of-00005.csv`)."""
    return _PART_NAME.match(key.rsplit("/", 1)[-1]) is not None


def dataset_files(folder: str, keys: Iterable[str]) -> tuple[str, ...]:
    """The training files of a folder's listing: its direct children of a supported format, not validation sets."""
    return tuple(
        sorted(
            k
            for k in keys
            if k.startswith(folder)
            and "/" not in k[len(folder) :]
            and input_format_of(k.rsplit("/", 1)[-1]) is not None
            and not is_validation_file(k)
        )
    )


def dataset_format(marker: DatasetMarker, files: tuple[str, ...]) -> InputFormat | Rejection:
    """The one format every file of the set shares (a channel has one content type and compression)."""
    if not files:
        return Rejection(
            "EMPTY_DATASET",
            f"The folder {marker.folder} has no training files (.csv, .jsonl, .csv.gz, .jsonl.gz) beside "
            f"{marker.key.rsplit('/', 1)[-1]}.",
            "Upload the training files into that folder first, then upload the marker again.",
        )
    if len(files) > MAX_DATASET_FILES:
        return Rejection(
            "TOO_MANY_FILES",
            f"The folder {marker.folder} has {len(files)} training files; one job reads at most {MAX_DATASET_FILES}.",
            "Merge files (fewer, larger parts), then upload the marker again.",
        )
    formats = {f: input_format_of(f.rsplit("/", 1)[-1]) for f in files}
    kinds = sorted({fmt.extension for fmt in formats.values() if fmt is not None})
    if len(kinds) > 1:
        return Rejection(
            "MIXED_DATASET_FORMATS",
            f"The folder {marker.folder} mixes training files of formats {', '.join(kinds)}; a job reads one.",
            "Keep one format (all .csv, or all .jsonl, compressed or not) in the folder, then upload the marker again.",
        )
    fmt = formats[files[0]]
    assert fmt is not None
    return fmt


def waiting_for_marker(key: str, folder_keys: Iterable[str]) -> str | None:
    """Why a training file waits for its folder's marker without a word (it is plainly part of a set), or None.

    `folder_keys`: what is directly in its folder now (a listing, which may already hold the file itself).
    A file with an ordinary name in a folder without a marker does not wait here: it settles first (see
    `after_settling`), so that a set uploaded without its marker is said, not trained on in fragments."""
    name = key.rsplit("/", 1)[-1]
    if is_part_name(key):
        return f"{name} is named like one part of a larger training set"
    folder = key.rsplit("/", 1)[0] + "/"
    if any(is_dataset_marker(k) for k in folder_keys if k.startswith(folder) and "/" not in k[len(folder) :]):
        return f"its folder {folder} holds a dataset marker: the folder is one training set"
    return None


@dataclass(frozen=True)
class NeedsMarker:
    """A file that settled in a folder of several training files and no marker: no job trains on it alone."""

    folder: str
    files: tuple[str, ...]  # the folder's training files when it settled (at most `listing_limit` of them)
    more: bool = False  # the listing was cut: there are more

    def rejection(self) -> Rejection:
        names = ", ".join(f.rsplit("/", 1)[-1] for f in self.files[:5]) + (", ..." if len(self.files) > 5 else "")
        count = f"{'at least ' if self.more else ''}{len(self.files)}"
        return Rejection(
            "DATASET_NEEDS_MARKER",
            f"{count} training files in {self.folder} ({names}): no job trains on one of them alone, "
            "and the folder has no marker saying the set is complete.",
            f"Upload {self.folder}{DATASET_MARKERS[0]} (an empty object) to train one job on all of them; or "
            "move each training set into a folder of its own and upload it again. Nothing was deleted.",
        )

    def notice(self) -> str:
        count = f"{'at least ' if self.more else ''}{len(self.files)}"
        return f"{count} files in {self.folder}: upload {self.folder}{DATASET_MARKERS[0]} to train on all of them"


def after_settling(key: str, folder_keys: Iterable[str], listing_limit: int) -> str | NeedsMarker | None:
    """What a training file with an ordinary name does once its settle delay has passed, from what is directly
    in its folder then: None = it is alone, train on it; a reason = it waits for the folder's marker (which
    trains it with the rest); NeedsMarker = other training files arrived and there is no marker."""
    listed = list(folder_keys)
    waiting = waiting_for_marker(key, listed)
    if waiting is not None:
        return waiting
    folder = key.rsplit("/", 1)[0] + "/"
    files = dataset_files(folder, listed)
    if any(k != key for k in files):
        return NeedsMarker(folder, files[:listing_limit], more=len(listed) > listing_limit)
    return None


def marker_notice_name(prefix: str, group: str, folder: str) -> str:
    """The state record that a folder's `N files ...: upload the marker` notice went out (once per folder)."""
    return f"{prefix}-set-{digest(['training-set', group, folder])}"


def group_tags_rejection(group: str, tags: Mapping[str, str]) -> Rejection | None:
    """A training set for a group with a `sagepilot:` tag that is no setting (a typo, or a training setting
    written as a tag: training is set in the recipe): refused with the reason an approval of the version it
    would register gets (INVALID SETTINGS), said before the training rather than after it. None when the
    group's tags have no such key."""
    problem = unknown_tags_problem(tags)
    if problem is None:
        return None
    return Rejection(
        "INVALID_GROUP_SETTINGS",
        f"Model package group {group!r} has an invalid tag: {problem}.",
        "Fix the group's sagepilot: tags (aws sagemaker add-tags / delete-tags on the group), then upload the "
        "training set again (or copy it onto itself).",
    )


def is_validation_file(key: str) -> bool:
    name = key.rsplit("/", 1)[-1].lower()
    fmt = input_format_of(name)
    return fmt is not None and name[: -len(fmt.extension)] == VALIDATION_STEM


def parse_training_key(key: str) -> TrainingKey | DatasetMarker | Rejection | None:
    """`training/<group>/<sub-path>/<file>`; None for a validation file (it waits for its training file);
    a DatasetMarker for `<folder>/_SUCCESS` or `<folder>/_COMPLETE`."""
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
    if is_dataset_marker(key):
        return DatasetMarker(key, group, "/".join(parts[1:]))
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
    network_isolation: bool = True


def recipe_document(recipe: Recipe) -> dict[str, Any]:
    """The recipe as JSON, to be frozen beside its job (`recipe_from_document` reads it back)."""
    return dataclasses.asdict(recipe)


def recipe_from_document(doc: Mapping[str, Any]) -> Recipe:
    values = dict(doc)
    values["hyperparameters"] = dict(values.get("hyperparameters") or {})
    values["metric_definitions"] = tuple(dict(d) for d in values.get("metric_definitions") or ())
    values["auto_approve"] = tuple(Threshold(**t) for t in values.get("auto_approve") or ())
    return Recipe(**values)


def recipe_digest(recipe: Recipe) -> str:
    return digest([json.dumps(recipe_document(recipe), sort_keys=True)])


def _hyperparameter_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise InvalidRecipe(f"hyperparameters.{name} must be a string, number or boolean, got {value!r}")


def check_sagemaker_limits(recipe: Recipe) -> None:
    """What CreateTrainingJob would refuse (ValidationException), said before it is called."""
    hyper = dict(recipe.hyperparameters)
    if recipe.entry_point:
        hyper["sagemaker_program"] = recipe.entry_point
    if len(hyper) > MAX_HYPERPARAMETERS:
        raise InvalidRecipe(
            f"SageMaker accepts at most {MAX_HYPERPARAMETERS} hyperparameters, the recipe has {len(hyper)}"
            + (" (entryPoint counts as one: sagemaker_program)" if recipe.entry_point else "")
        )
    for name, value in hyper.items():
        if not name or len(name) > MAX_HYPERPARAMETER_KEY:
            raise InvalidRecipe(
                f"hyperparameter names must be 1-{MAX_HYPERPARAMETER_KEY} characters, got one of {len(name)}"
            )
        if len(value) > MAX_HYPERPARAMETER_VALUE:
            raise InvalidRecipe(
                f"hyperparameters.{name[:40]} is {len(value)} characters long; SageMaker accepts at most "
                f"{MAX_HYPERPARAMETER_VALUE}"
            )
    if len(recipe.metric_definitions) > MAX_METRIC_DEFINITIONS:
        raise InvalidRecipe(f"SageMaker accepts at most {MAX_METRIC_DEFINITIONS} metricDefinitions")
    for definition in recipe.metric_definitions:
        if not 1 <= len(definition["Name"]) <= MAX_METRIC_NAME or not 1 <= len(definition["Regex"]) <= MAX_METRIC_REGEX:
            raise InvalidRecipe(
                f"a metricDefinitions entry needs a Name of 1-{MAX_METRIC_NAME} and a Regex of 1-{MAX_METRIC_REGEX} "
                f"characters, got {definition['Name'][:40]!r}"
            )
    for field_name, image in (("image", recipe.image), ("inferenceImage", recipe.inference_image)):
        if len(image) > MAX_IMAGE_URI or not IMAGE_URI.match(image):
            raise InvalidRecipe(
                f"{field_name} must be an ECR image URI like "
                f"<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> (at most {MAX_IMAGE_URI} characters), "
                f"got {image[:80]!r}"
            )


def check_ceilings(recipe: Recipe, ceilings: TrainingCeilings) -> None:
    """The operator's ceilings; each error names the stack parameter that sets it."""
    if not instance_type_allowed(recipe.instance_type, ceilings.instance_types):
        raise InvalidRecipe(
            f"instanceType {recipe.instance_type} is not allowed by the stack's TrainingInstanceTypesAllowed "
            f"({','.join(ceilings.instance_types)})"
        )
    if recipe.instance_count > ceilings.max_instance_count:
        raise InvalidRecipe(
            f"instanceCount {recipe.instance_count} is above the stack's TrainingInstanceCountCeiling "
            f"({ceilings.max_instance_count})"
        )
    if recipe.volume_gb > ceilings.max_volume_gb:
        raise InvalidRecipe(
            f"volumeSizeGB {recipe.volume_gb} is above the stack's TrainingVolumeCeilingGB ({ceilings.max_volume_gb})"
        )
    if recipe.max_runtime_seconds > ceilings.max_runtime_seconds:
        raise InvalidRecipe(
            f"maxRuntimeSeconds {recipe.max_runtime_seconds} is above the stack's TrainingRuntimeCeilingSeconds "
            f"({ceilings.max_runtime_seconds})"
        )
    if recipe.spot and recipe.max_wait_seconds > ceilings.max_runtime_seconds:
        raise InvalidRecipe(
            f"maxWaitSeconds {recipe.max_wait_seconds} is above the stack's TrainingRuntimeCeilingSeconds "
            f"({ceilings.max_runtime_seconds})"
        )
    for field_name, image in (("image", recipe.image), ("inferenceImage", recipe.inference_image)):
        if not image_allowed(image, ceilings.image_repositories):
            raise InvalidRecipe(
                f"{field_name} {image} is not in a repository the stack's ImageRepositoriesAllowed allows "
                f"({','.join(ceilings.image_repositories)})"
            )
    if not recipe.network_isolation and not ceilings.network_access_allowed:
        raise InvalidRecipe("networkIsolation false is not allowed: the stack's TrainingNetworkAccessAllowed is false")


def _number(doc: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRecipe(f"{name} must be a whole number between {low} and {high}, got {value!r}")
    return value


def parse_recipe(raw: bytes | None, defaults: Recipe, ceilings: TrainingCeilings = NO_CEILINGS) -> Recipe:
    """The group's recipe: `defaults` with what `config/<group>/training.json` says, within SageMaker's limits
    and the operator's `ceilings`; InvalidRecipe (saying what and which limit) if not."""
    recipe = _parse_recipe(raw, defaults)
    check_sagemaker_limits(recipe)
    check_ceilings(recipe, ceilings)
    return recipe


def _parse_recipe(raw: bytes | None, defaults: Recipe) -> Recipe:
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
        "networkIsolation",
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
    isolation = doc.get("networkIsolation", defaults.network_isolation)
    if not isinstance(isolation, bool):
        raise InvalidRecipe(f"networkIsolation must be true or false, got {isolation!r}")
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
        instance_count=_number(doc, "instanceCount", defaults.instance_count, 1, MAX_INSTANCE_COUNT_LIMIT),
        volume_gb=_number(doc, "volumeSizeGB", defaults.volume_gb, 1, MAX_VOLUME_LIMIT),
        max_runtime_seconds=max_runtime,
        spot=spot,
        max_wait_seconds=_number(doc, "maxWaitSeconds", max(defaults.max_wait_seconds, max_runtime), 60, 28 * 86_400),
        hyperparameters={str(k): _hyperparameter_value(str(k), v) for k, v in hyper.items()},
        metric_definitions=tuple({"Name": d["Name"], "Regex": d["Regex"]} for d in definitions),
        entry_point=doc.get("entryPoint", defaults.entry_point),
        auto_approve=tuple(thresholds),
        network_isolation=isolation,
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
    if recipe.network_isolation:
        # The container gets no network: it reads its channels and writes its model through SageMaker only.
        request["EnableNetworkIsolation"] = True
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
