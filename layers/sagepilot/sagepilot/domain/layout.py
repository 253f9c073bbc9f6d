"""Where things live in the data bucket, and what a dropped key means.

incoming/<model-package-group>/<any sub-path>/<file>        what users drop
predictions/<group>/<sub-path>/<file>.out                   SageMaker's predictions for the key's newest version
predictions/<group>/<sub-path>/<file>.report.json           one small report per input
rejected/<group>/<sub-path>/<file>.json                     why an input was not processed
jobs/<group>/<job-name>/{plan,manifest,report}.json         the control plane's own records
jobs/<group>/<job-name>/output/<sub-path>/<file>.out        what the job wrote (copied to predictions/)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INCOMING_PREFIX = "incoming/"
PREDICTIONS_PREFIX = "predictions/"
REJECTED_PREFIX = "rejected/"
JOBS_PREFIX = "jobs/"

MAX_S3_KEY_LENGTH = 1024
# SageMaker's rule for model package group (and job, model) names.
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


@dataclass(frozen=True)
class InputFormat:
    """How SageMaker must read a file: its content type and compression."""

    extension: str
    content_type: str
    compression: str  # "None" or "Gzip", as CreateTransformJob spells them


# Longest extensions first so that ".csv.gz" wins over ".gz".
SUPPORTED_FORMATS: tuple[InputFormat, ...] = (
    InputFormat(".jsonl.gz", "application/jsonlines", "Gzip"),
    InputFormat(".csv.gz", "text/csv", "Gzip"),
    InputFormat(".jsonl", "application/jsonlines", "None"),
    InputFormat(".csv", "text/csv", "None"),
)


@dataclass(frozen=True)
class Rejection:
    """Why an input is not processed, and what the user can do about it."""

    code: str
    reason: str
    action: str


@dataclass(frozen=True)
class DroppedKey:
    """A key that follows the incoming/ layout."""

    key: str
    group: str
    relative_path: str  # the part after incoming/<group>/, e.g. "2026-11/customers.csv"
    input_format: InputFormat

    @property
    def prediction_key(self) -> str:
        return f"{PREDICTIONS_PREFIX}{self.group}/{self.relative_path}.out"

    @property
    def report_key(self) -> str:
        return f"{PREDICTIONS_PREFIX}{self.group}/{self.relative_path}.report.json"


def is_folder_marker(key: str) -> bool:
    """The console's "Create folder" writes an empty object whose key ends in '/': not an input."""
    return key.endswith("/")


def rejected_report_key(key: str) -> str:
    """`incoming/a/b.csv` -> `rejected/a/b.csv.json`; a key outside incoming/ keeps its whole path."""
    relative = key[len(INCOMING_PREFIX) :] if key.startswith(INCOMING_PREFIX) else f"_outside/{key}"
    return f"{REJECTED_PREFIX}{relative}.json"


def job_folder(group: str, job_name: str) -> str:
    return f"{JOBS_PREFIX}{group}/{job_name}/"


def input_format_of(filename: str) -> InputFormat | None:
    lowered = filename.lower()
    for fmt in SUPPORTED_FORMATS:
        if lowered.endswith(fmt.extension) and len(lowered) > len(fmt.extension):
            return fmt
    return None


def parse_dropped_key(key: str) -> DroppedKey | Rejection:
    """Read `incoming/<group>/<sub-path>/<file>`; say precisely what is wrong otherwise."""
    supported = ", ".join(fmt.extension for fmt in reversed(SUPPORTED_FORMATS))
    if not key.startswith(INCOMING_PREFIX):
        return Rejection(
            "KEY_OUTSIDE_LAYOUT",
            f"The key {key!r} is not under {INCOMING_PREFIX!r}.",
            f"Upload files as {INCOMING_PREFIX}<model-package-group>/<sub-path>/<file>.",
        )
    parts = key[len(INCOMING_PREFIX) :].split("/")
    if len(parts) < 2 or not parts[0] or not parts[-1]:
        return Rejection(
            "KEY_OUTSIDE_LAYOUT",
            f"The key {key!r} does not name a model package group and a file.",
            f"Upload files as {INCOMING_PREFIX}<model-package-group>/<sub-path>/<file>; the first "
            "folder under incoming/ is the model package group whose approved model is used.",
        )
    group, relative_path = parts[0], "/".join(parts[1:])
    if not SAGEMAKER_NAME.match(group):
        return Rejection(
            "INVALID_GROUP_NAME",
            f"{group!r} cannot be a SageMaker model package group name (letters, digits and "
            "hyphens, 1 to 63 characters, starting with a letter or digit).",
            "Move the file under a folder named exactly like the model package group.",
        )
    input_format = input_format_of(parts[-1])
    if input_format is None:
        return Rejection(
            "UNSUPPORTED_FILE_TYPE",
            f"{parts[-1]!r} is not a supported file type (supported: {supported}).",
            "Convert the file to CSV or JSON Lines (optionally gzip-compressed) and upload it again "
            "with the matching extension.",
        )
    dropped = DroppedKey(key, group, relative_path, input_format)
    if len(dropped.report_key.encode()) > MAX_S3_KEY_LENGTH:
        return Rejection(
            "KEY_TOO_LONG",
            "The key is too long for its prediction and report keys to fit S3's 1024-byte limit.",
            "Upload the file under a shorter path.",
        )
    return dropped
