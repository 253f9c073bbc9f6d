"""Turn a batch of accepted inputs into transform jobs: which files go together, and how each job runs.

Files of one model package group dropped close together share one job through a manifest (exact-file
input: an S3Prefix would also pick up `a.csv.bak` next to `a.csv`). A job holds files of a single
content type and compression, at most `max_files_per_job` of them. The job's name is a digest of what
it is, so a retried batch asks SageMaker for the same job again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import groupby
from typing import Any

from sagepilot.domain.layout import INCOMING_PREFIX, DroppedKey, job_folder
from sagepilot.domain.model_versions import ModelVersion as ModelVersion
from sagepilot.domain.names import model_name, transform_job_name

MAX_PAYLOAD_LIMIT_MB = 100  # SageMaker: MaxPayloadInMB <= 100 and MaxConcurrentTransforms x it <= 100


def file_id_of(bucket: str, key: str, version_id: str | None) -> str:
    """`bucket/key#versionId`: the identity an input version is claimed under."""
    return f"{bucket}/{key}#{version_id or 'null'}"


@dataclass(frozen=True)
class Newer:
    """The newer version of a key that another job holds, making this version superseded."""

    version_id: str | None
    job: str

    def describe(self) -> dict[str, Any]:
        return {"versionId": self.version_id, "transformJobName": self.job}


@dataclass(frozen=True)
class InputFile:
    """One version of one dropped object, as confirmed by HeadObject."""

    bucket: str
    dropped: DroppedKey
    version_id: str | None
    size: int
    etag: str
    sequencer: str = ""
    # Set on a superseded version whose newer version is in another job (None: the newer one is in this job).
    superseded_by: Newer | None = None

    @property
    def key(self) -> str:
        return self.dropped.key

    @property
    def group(self) -> str:
        return self.dropped.group

    @property
    def file_id(self) -> str:
        """Identity of this object version: what "exactly one job per file version" counts."""
        return file_id_of(self.bucket, self.key, self.version_id)

    @property
    def object_id(self) -> str:
        """Identity of the key, whatever its version: what "the newest version of a key" is about."""
        return f"{self.bucket}/{self.key}"

    @property
    def recency(self) -> str:
        """This version's place among the versions of its key, as a string that sorts like the versions."""
        return recency(self)

    @property
    def ordered(self) -> bool:
        """Whether S3's sequencer places this version among the others of its key. Without one, the order
        among versions is arbitrary: good enough to pick one of a batch, never to skip a version that
        another batch may have to read."""
        return sequencer_order(self.sequencer) >= 0

    def describe(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "versionId": self.version_id,
            "size": self.size,
            "etag": self.etag,
        }


@dataclass(frozen=True)
class TransformSettings:
    name_prefix: str
    instance_type: str
    max_instance_count: int
    target_mb_per_instance: int
    max_payload_mb: int
    max_concurrent_transforms: int
    max_files_per_job: int


@dataclass(frozen=True)
class JobPlan:
    """One transform job: its inputs, its model and how it runs."""

    job_name: str
    bucket: str
    group: str
    model: ModelVersion
    model_name: str
    content_type: str
    compression: str
    instance_type: str
    instance_count: int
    inputs: tuple[InputFile, ...]
    # Older versions of a key whose newer version is in this same job: the job reads the key once.
    superseded: tuple[InputFile, ...] = field(default=())
    # Where the job reads its inputs. A job the intake plans reads the dropped keys themselves
    # (`incoming/<group>/`, no copy on the intake's path): its completion checks that each claimed version was
    # still its key's current version, and re-runs those that were not from copies (`exact_plan`). A job
    # reading copies (empty: `<folder>input/<sub-path>/<file>`, its own copy of each claimed version, made with
    # CopyObject and the VersionId when it is planned) scores exactly the versions claimed whatever happens to
    # the keys. A piece of a split job, or a job planned again on another model, reads where its parent read.
    input_prefix: str = ""
    # Claimed versions that no longer existed when the job was planned (deleted for good since their event):
    # nothing to read, recorded in the job's report.
    deleted: tuple[InputFile, ...] = field(default=())
    # A merged job (domain/coalescing.py): the waiting jobs whose inputs it took over (empty: not a merge).
    merged_from: tuple[str, ...] = field(default=())

    @property
    def folder(self) -> str:
        return job_folder(self.group, self.job_name)

    @property
    def manifest_key(self) -> str:
        return f"{self.folder}manifest.json"

    @property
    def plan_key(self) -> str:
        return f"{self.folder}plan.json"

    @property
    def report_key(self) -> str:
        return f"{self.folder}report.json"

    @property
    def input_folder(self) -> str:
        return self.input_prefix or f"{self.folder}input/"

    @property
    def reads_dropped_keys(self) -> bool:
        """Whether SageMaker reads the dropped keys (whatever version they hold then), not copies."""
        return self.input_folder == f"{INCOMING_PREFIX}{self.group}/"

    @property
    def copies_inputs(self) -> bool:
        """Whether this job makes its own copies of its inputs (False: it reads another job's)."""
        return self.input_folder == f"{self.folder}input/"

    def input_copy_key(self, f: InputFile) -> str:
        return f"{self.input_folder}{f.dropped.relative_path}"

    def in_dropped_terms(self, text: str) -> str:
        """SageMaker's messages name the job's private copies of its inputs: say the keys that were dropped
        instead (longest first, so that `a.csv` never rewrites part of `a.csv.gz`)."""
        for f in sorted(self.inputs, key=lambda f: len(self.input_copy_key(f)), reverse=True):
            text = text.replace(self.input_copy_key(f), f.key)
        return text

    @property
    def output_prefix(self) -> str:
        """Where SageMaker writes the job's `<relative path>.out`. The completion copies each one to
        predictions/ only if its version is still the newest of its key, so a job that holds an older
        version and finishes last never overwrites the newer version's predictions."""
        return f"{self.folder}output/"

    def output_key(self, f: InputFile) -> str:
        return f"{self.output_prefix}{f.dropped.relative_path}.out"

    @property
    def all_files(self) -> tuple[InputFile, ...]:
        return self.inputs + self.superseded + self.deleted

    def manifest(self) -> list[Any]:
        """SageMaker's ManifestFile: the inputs' copies' common prefix, then each one relative to it (the path
        under incoming/<group>/, so `<S3OutputPath>/<path>.out` maps back to the dropped key)."""
        return [{"prefix": f"s3://{self.bucket}/{self.input_folder}"}] + [f.dropped.relative_path for f in self.inputs]

    def to_record(self) -> dict[str, Any]:
        """The plan as stored in S3, enough to finish the job if its first handler died."""
        return {
            "jobName": self.job_name,
            "bucket": self.bucket,
            "group": self.group,
            "modelPackageArn": self.model.package_arn,
            "modelPackageVersion": self.model.version,
            "supportedContentTypes": list(self.model.supported_content_types),
            "modelName": self.model_name,
            "contentType": self.content_type,
            "compression": self.compression,
            "instanceType": self.instance_type,
            "instanceCount": self.instance_count,
            "inputs": [_file_record(f) for f in self.inputs],
            "superseded": [_file_record(f) for f in self.superseded],
            "deleted": [_file_record(f) for f in self.deleted],
            "inputPrefix": self.input_folder,
            **({"mergedFrom": list(self.merged_from)} if self.merged_from else {}),
        }


def _file_record(f: InputFile) -> dict[str, Any]:
    record = {**f.describe(), "sequencer": f.sequencer}
    if f.superseded_by is not None:
        record["supersededBy"] = f.superseded_by.describe()
    return record


def plan_from_record(record: dict[str, Any]) -> JobPlan:
    """Inverse of JobPlan.to_record."""
    from sagepilot.domain.layout import parse_dropped_key

    def load(item: dict[str, Any]) -> InputFile:
        dropped = parse_dropped_key(item["key"])
        if not isinstance(dropped, DroppedKey):
            raise ValueError(f"stored plan holds a key outside the layout: {item['key']!r}")
        newer = item.get("supersededBy")
        return InputFile(
            bucket=item["bucket"],
            dropped=dropped,
            version_id=item.get("versionId"),
            size=int(item["size"]),
            etag=item["etag"],
            sequencer=item.get("sequencer", ""),
            superseded_by=Newer(newer.get("versionId"), str(newer["transformJobName"])) if newer else None,
        )

    model = ModelVersion(
        group=record["group"],
        package_arn=record["modelPackageArn"],
        version=int(record["modelPackageVersion"]),
        supported_content_types=tuple(record.get("supportedContentTypes", ())),
    )
    return JobPlan(
        job_name=record["jobName"],
        bucket=record["bucket"],
        group=record["group"],
        model=model,
        model_name=record["modelName"],
        content_type=record["contentType"],
        compression=record["compression"],
        instance_type=record["instanceType"],
        instance_count=int(record["instanceCount"]),
        inputs=tuple(load(i) for i in record["inputs"]),
        superseded=tuple(load(i) for i in record.get("superseded", [])),
        deleted=tuple(load(i) for i in record.get("deleted", [])),
        input_prefix=_input_prefix(record),
        merged_from=tuple(str(name) for name in record.get("mergedFrom", ())),
    )


def _input_prefix(record: dict[str, Any]) -> str:
    """Empty for a job reading its own copies (the default); a plan stored before jobs read copies read the
    dropped keys themselves."""
    stored = str(record.get("inputPrefix") or f"{INCOMING_PREFIX}{record['group']}/")
    return "" if stored == f"{job_folder(record['group'], record['jobName'])}input/" else stored


def sequencer_order(sequencer: str) -> int:
    """S3 sequencers are hexadecimal strings of varying length; compare them as numbers."""
    try:
        return int(sequencer, 16)
    except ValueError:
        return -1


_SEQUENCER_DIGITS = 64  # S3's sequencers are about 18 hexadecimal digits


def recency(f: InputFile) -> str:
    """Sequencer first; equal or missing sequencers fall back to an arbitrary but fixed order, so that
    the choice never depends on the order the events arrived in.

    A string (the sequencer as a fixed-width number, then the version id and the ETag), so that the state
    table can compare two versions of a key in a condition expression exactly as this module does."""
    order = sequencer_order(f.sequencer)
    number = f"1{order:0{_SEQUENCER_DIGITS}X}" if 0 <= order < 16**_SEQUENCER_DIGITS else "0"
    return f"{number} {f.version_id or ''} {f.etag}"


def newest_per_key(files: list[InputFile]) -> tuple[list[InputFile], list[InputFile]]:
    """Split files into the newest version of each key and the versions it supersedes."""
    newest: dict[str, InputFile] = {}
    for f in files:
        current = newest.get(f.key)
        if current is None or recency(f) > recency(current):
            newest[f.key] = f
    kept = [newest[k] for k in sorted(newest)]
    superseded = sorted((f for f in files if newest[f.key] is not f), key=lambda f: (f.key, f.version_id or ""))
    return kept, superseded


def settle(plan: JobPlan, owners: dict[str, str], newer: dict[str, Newer]) -> JobPlan:
    """The plan restricted to what its job won: the inputs it claimed that no newer version of their key
    holds (`newer`: the inputs a newer version already holds, and where), and the superseded versions it
    claimed. Every version it claimed stays in it, read or superseded, so that each version ends in exactly
    one job's record; a superseded one says which version superseded it when that one is in another job."""
    mine = plan.job_name
    kept = {f.key: f for f in plan.inputs}
    inputs = tuple(f for f in plan.inputs if owners.get(f.file_id) == mine and f.file_id not in newer)
    read = {f.file_id for f in inputs}

    def superseding(f: InputFile) -> Newer | None:
        """Who supersedes f, a version this job claimed but does not read (None: a version it reads)."""
        if f.file_id in newer:
            return newer[f.file_id]
        newest = kept.get(f.key)
        if newest is None:  # none of its key's versions is among the inputs (a merged job took it as it was)
            return f.superseded_by
        if newest.file_id in read:
            return None
        if newest.file_id in newer:
            return newer[newest.file_id]
        return Newer(newest.version_id, owners.get(newest.file_id, ""))

    stale = [replace(f, superseded_by=newer[f.file_id]) for f in plan.inputs if f.file_id in newer]
    older = [replace(f, superseded_by=superseding(f)) for f in plan.superseded if owners.get(f.file_id) == mine]
    superseded = sorted(
        (f for f in stale + older if owners.get(f.file_id) == mine), key=lambda f: (f.key, f.version_id or "")
    )
    return replace(plan, inputs=inputs, superseded=tuple(superseded))


def instance_count(total_bytes: int, file_count: int, settings: TransformSettings) -> int:
    """Enough instances for the data, never more than files: SageMaker spreads whole objects."""
    wanted = math.ceil(total_bytes / (settings.target_mb_per_instance * 1024 * 1024))
    return max(1, min(wanted, settings.max_instance_count, file_count))


def plan_jobs(files: list[InputFile], model: ModelVersion, settings: TransformSettings) -> list[JobPlan]:
    """Plan the jobs for one group's accepted files. Deterministic: same files, same plans."""
    unique = {f.file_id: f for f in files}
    ordered = sorted(unique.values(), key=lambda f: (f.dropped.input_format.extension, f.key))
    plans: list[JobPlan] = []
    for fmt, same_format in groupby(ordered, key=lambda f: f.dropped.input_format):
        kept, superseded = newest_per_key(list(same_format))
        for start in range(0, len(kept), settings.max_files_per_job):
            chunk = kept[start : start + settings.max_files_per_job]
            chunk_keys = {f.key for f in chunk}
            chunk_superseded = tuple(f for f in superseded if f.key in chunk_keys)
            identity = [model.group, model.package_arn, fmt.content_type, fmt.compression]
            identity += sorted(f.file_id for f in chunk + list(chunk_superseded))
            plans.append(
                JobPlan(
                    job_name=transform_job_name(settings.name_prefix, model.group, identity),
                    bucket=chunk[0].bucket,
                    group=model.group,
                    model=model,
                    model_name=model_name(settings.name_prefix, model.group, model.version, model.package_arn),
                    content_type=fmt.content_type,
                    compression=fmt.compression,
                    instance_type=settings.instance_type,
                    instance_count=instance_count(sum(f.size for f in chunk), len(chunk), settings),
                    inputs=tuple(chunk),
                    superseded=chunk_superseded,
                    input_prefix=f"{INCOMING_PREFIX}{model.group}/",  # the dropped keys: nothing copied now
                )
            )
    return plans


def split_plan(plan: JobPlan, settings: TransformSettings) -> list[JobPlan]:
    """A failed job's inputs in two halves, each a job of its own (so that the bad inputs end alone and the
    good ones are scored), named from the parent and the half: the same failure always splits the same way.
    The versions the parent superseded stay its own (recorded in its report)."""
    half = (len(plan.inputs) + 1) // 2
    parts = [plan.inputs[:half], plan.inputs[half:]]
    return [
        replace(
            plan,
            job_name=transform_job_name(settings.name_prefix, plan.group, [plan.job_name, "split", str(i)]),
            instance_count=instance_count(sum(f.size for f in part), len(part), settings),
            inputs=part,
            superseded=(),
            deleted=(),
            merged_from=(),
            input_prefix=plan.input_folder,  # the parent's copies: the versions it claimed
        )
        for i, part in enumerate(parts)
        if part
    ]


def replan(plan: JobPlan, model: ModelVersion, settings: TransformSettings) -> JobPlan:
    """The same job on another model package version (its own was rejected before the job started): named
    from the job and the version, reading the same copies of the same versions."""
    return replace(
        plan,
        job_name=transform_job_name(settings.name_prefix, plan.group, [plan.job_name, "model", model.package_arn]),
        model=model,
        model_name=model_name(settings.name_prefix, plan.group, model.version, model.package_arn),
        superseded=(),
        deleted=(),
        merged_from=(),
        input_prefix=plan.input_folder,
    )


def exact_plan(plan: JobPlan, inputs: tuple[InputFile, ...], settings: TransformSettings) -> JobPlan:
    """A job that read the dropped keys, some of which changed before it finished (a newer version, a delete
    marker, the version deleted): those inputs again, in a job of their own that reads its own copies of the
    claimed versions (named from the job: the same change always gives the same job)."""
    return replace(
        plan,
        job_name=transform_job_name(settings.name_prefix, plan.group, [plan.job_name, "exact"]),
        instance_count=instance_count(sum(f.size for f in inputs), len(inputs), settings),
        inputs=inputs,
        superseded=(),
        deleted=(),
        merged_from=(),
        input_prefix="",  # its own copies, made when it is planned
    )


def split_bound(files: int, bad: int) -> int:
    """The most jobs that splitting a failed job of `files` inputs, `bad` of them bad, can create: each level
    of halving holds at most `bad` failing jobs, each split in two, over ceil(log2 files) levels; and never
    more than a full binary tree's 2 * files - 2."""
    if files < 2 or bad < 1:
        return 0
    return min(2 * bad * math.ceil(math.log2(files)), 2 * files - 2)


def transform_job_request(
    plan: JobPlan,
    job_name: str,
    instance_type: str | None = None,
    *,
    max_payload_mb: int,
    max_concurrent_transforms: int,
) -> dict[str, Any]:
    """The CreateTransformJob request for a plan (a retry passes its own name / instance type)."""
    return {
        "TransformJobName": job_name,
        "ModelName": plan.model_name,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": max_payload_mb,
        "MaxConcurrentTransforms": max_concurrent_transforms,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "ManifestFile",
                    "S3Uri": f"s3://{plan.bucket}/{plan.manifest_key}",
                }
            },
            "ContentType": plan.content_type,
            "CompressionType": plan.compression,
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{plan.bucket}/{plan.output_prefix}",
            "AssembleWith": "Line",
        },
        "TransformResources": {
            "InstanceType": instance_type or plan.instance_type,
            "InstanceCount": plan.instance_count,
        },
        "Tags": [
            {"Key": "sagepilot:model-package-group", "Value": plan.group},
            {"Key": "sagepilot:model-package-version", "Value": str(plan.model.version)},
            {"Key": "sagepilot:manifest", "Value": f"s3://{plan.bucket}/{plan.manifest_key}"},
            {"Key": "sagepilot:input-count", "Value": str(len(plan.inputs))},
        ],
    }
