"""Where things live in the data bucket, and what a dropped key means.

incoming/<model-package-group>/<any sub-path>/<file>        what users drop
predictions/<group>/<sub-path>/<file>.out                   SageMaker's predictions for the key's newest version
predictions/<group>/<sub-path>/<file>.report.json           one small report per input
rejected/<group>/<sub-path>/<file>.json                     why an input was not processed
jobs/<group>/<job-name>/{plan,manifest,report}.json         the control plane's own records
jobs/<group>/<job-name>/output/<sub-path>/<file>.out        what the job wrote (copied to predictions/)

The training side owns `rejected/training/` and `jobs/training/` (domain/training.py): a group named
`training` would write its batch rejections and jobs there, so that name is reserved for batch
(RESERVED_GROUP_NAME), and its files' reports go to `rejected/_reserved/` (no group can be named so).
Every key a dropped file leads to (its reports, its job's output and input copy, its state-table items)
is checked against its real limit here, when the file arrives, not when the write fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INCOMING_PREFIX = "incoming/"
PREDICTIONS_PREFIX = "predictions/"
REJECTED_PREFIX = "rejected/"
JOBS_PREFIX = "jobs/"

MAX_S3_KEY_LENGTH = 1024
# DynamoDB: a partition key is at most 2,048 bytes, a sort key 1,024; the state table's `pk` is also the range
# key of its ByKind index, so every item's `pk` must fit 1,024 bytes (DynamoDB refuses the write otherwise,
# with a ValidationException, and a transaction holding it fails whole).
MAX_TABLE_KEY_BYTES = 1024
# The longest name a batch job (or a retry's base, or a split's child) can have: see domain/names.py.
MAX_JOB_NAME_LENGTH = 60
# Group names whose batch layout would fall into another use's: `rejected/training/`, `jobs/training/`.
RESERVED_GROUP_NAMES = frozenset({"training"})
RESERVED_REJECTED_PREFIX = f"{REJECTED_PREFIX}_reserved/"
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

    def derived_keys(self) -> dict[str, str]:
        """Every S3 key this file leads to, at its longest (a job name of the longest length)."""
        folder = job_folder(self.group, "j" * MAX_JOB_NAME_LENGTH)
        return {
            "predictions report": self.report_key,
            "predictions": self.prediction_key,
            "rejection report": rejected_report_key(self.key),
            "transform job's output": f"{folder}output/{self.relative_path}.out",
            "transform job's input copy": f"{folder}input/{self.relative_path}",
        }


def is_folder_marker(key: str) -> bool:
    """The console's "Create folder" writes an empty object whose key ends in '/': not an input."""
    return key.endswith("/")


def rejected_report_key(key: str) -> str:
    """`incoming/a/b.csv` -> `rejected/a/b.csv.json`; a key outside incoming/ keeps its whole path, and one
    under a reserved group name goes under `rejected/_reserved/` (never over another use's reports)."""
    if not key.startswith(INCOMING_PREFIX):
        return f"{REJECTED_PREFIX}_outside/{key}.json"
    relative = key[len(INCOMING_PREFIX) :]
    if relative.split("/", 1)[0] in RESERVED_GROUP_NAMES:
        return f"{RESERVED_REJECTED_PREFIX}{relative}.json"
    return f"{REJECTED_PREFIX}{relative}.json"


def job_folder(group: str, job_name: str) -> str:
    return f"{JOBS_PREFIX}{group}/{job_name}/"


def held_part_key(group: str, held_job: str, part: str) -> str:
    """Where a held job keeps the plan of one batch it holds (domain/hold.py): in its own folder."""
    return f"{job_folder(group, held_job)}held/{part}.json"


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
    if group in RESERVED_GROUP_NAMES:
        return Rejection(
            "RESERVED_GROUP_NAME",
            f"{group!r} is reserved: the training side keeps its reports and jobs under rejected/{group}/ and "
            f"jobs/{group}/, where a batch group of that name would write too.",
            "Use a model package group with another name for batch transform, and upload the file under its folder.",
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
    too_long = [(name, k) for name, k in dropped.derived_keys().items() if len(k.encode()) > MAX_S3_KEY_LENGTH]
    if too_long:
        name, derived = max(too_long, key=lambda item: len(item[1].encode()))
        return Rejection(
            "KEY_TOO_LONG",
            f"The key is too long: its {name} ({len(derived.encode())} bytes) would exceed S3's "
            f"{MAX_S3_KEY_LENGTH}-byte limit.",
            f"Upload the file under a path at least {len(derived.encode()) - MAX_S3_KEY_LENGTH} bytes shorter.",
        )
    return dropped


def table_key_problem(dropped: DroppedKey, bucket: str, version_id: str | None) -> Rejection | None:
    """The state table's items for this version (its claim `input#<bucket>/<key>#<version>`, its key's newest
    version `latest#<bucket>/<key>`) must fit DynamoDB's key limit; None when they do."""
    claim = f"input#{bucket}/{dropped.key}#{version_id or 'null'}"
    size = len(claim.encode())
    if size <= MAX_TABLE_KEY_BYTES:
        return None
    return Rejection(
        "KEY_TOO_LONG",
        f"The key is too long: the control plane's record of this file version ({size} bytes, the key with the "
        f"bucket and version id) would exceed DynamoDB's {MAX_TABLE_KEY_BYTES}-byte key limit.",
        f"Upload the file under a path at least {size - MAX_TABLE_KEY_BYTES} bytes shorter.",
    )
