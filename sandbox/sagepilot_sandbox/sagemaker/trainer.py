"""Training jobs that really train: SageMaker's side of a job between InProgress and Completed.

`run_training_job(name)` does what SageMaker and the training container do, with the example
classifier of `sagepilot_model_server.examples` standing in for whatever `TrainingImage` says:

- reads the `train` channel and, when the job has one, the `validation` channel: each channel's
  `ManifestFile` (exactly the listed objects) or `S3Prefix` (every object under it), decompressed when
  the channel's `CompressionType` is Gzip (or the object is gzip);
- parses labelled rows: CSV with the label in the first column and no header (`text/csv`), or JSON
  Lines `{"label": y, "features": [...]}` (`application/jsonlines`; the channel's ContentType, else
  the file's extension, decides);
- trains the example classifier (scaling + logistic regression) and measures `train:accuracy` on the
  rows it learnt from and `validation:accuracy` on the validation channel (without one, on every 5th
  training row, held out); metrics as SageMaker reports them in FinalMetricDataList;
- writes `model.tar.gz` (the model, its config.json and the example's `code/inference.py`, which the
  sandbox's model servers load) to the job's `ModelArtifacts.S3ModelArtifacts`
  (`<S3OutputPath><job>/output/model.tar.gz`, as DescribeTrainingJob names it).

Bad data fails the job as a training container would, with `AlgorithmError: ...` naming the channel,
file, line and column (a value that is not a number, a label that is not a class, ragged rows, a
single class, no rows); missing data fails it with `ClientError: ...` as SageMaker's download does.
The job's timing and its state-change event are the simulator's (see `simulator.SageMakerSimulator`).
"""

from __future__ import annotations

import gzip
import json
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto.sagemaker.models import sagemaker_backends

from sagepilot_sandbox import storage
from sagepilot_sandbox.bus import DEFAULT_ACCOUNT, DEFAULT_REGION


class TrainingFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class TrainingResult:
    status: str  # Completed | Failed
    metrics: dict[str, float] = field(default_factory=dict)
    failure_reason: str = ""
    artifact: str = ""
    rows: dict[str, int] = field(default_factory=dict)  # channel -> rows read


def _channel_objects(channel: dict[str, Any], account: str, role: str | None) -> list[tuple[str, str]]:
    source = channel["DataSource"]["S3DataSource"]
    uri = str(source["S3Uri"])
    bucket, key = storage.parse_uri(uri)
    if source.get("S3DataType") == "ManifestFile":
        try:
            manifest = json.loads(storage.read(bucket, key, account=account, role=role))
            p_bucket, p_key = storage.parse_uri(str(manifest[0]["prefix"]))
            return [(p_bucket, p_key + str(entry)) for entry in manifest[1:]]
        except storage.NotFound:
            raise TrainingFailed(f"ClientError: Data download failed: manifest {uri} does not exist.") from None
        except storage.AccessDenied as denied:
            raise TrainingFailed(f"ClientError: Data download failed: {uri}: Access Denied. {denied.reason}") from None
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise TrainingFailed(f"ClientError: The manifest file {uri} is not valid: {exc}") from None
    try:
        keys = storage.list_keys(bucket, key, account=account, role=role)
    except (storage.NotFound, storage.AccessDenied):
        keys = []  # SageMaker says the same for a prefix it may not list
    if not keys:
        raise TrainingFailed(
            f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure that '
            "the bucket exists in the selected region, that objects exist under that S3 prefix, and that the role "
            f'has "s3:ListBucket" permissions on bucket "{bucket}".'
        )
    return [(bucket, k) for k in keys]


def _content_type(channel: dict[str, Any], key: str) -> str:
    declared = str(channel.get("ContentType") or "")
    if declared:
        return declared
    name = key.lower().removesuffix(".gz")
    return "application/jsonlines" if name.endswith((".jsonl", ".json")) else "text/csv"


def _read_channel(channel: dict[str, Any], account: str, role: str | None) -> Any:
    from sagepilot_model_server.examples.training import LabeledData, TrainingDataError, parse_labeled

    data = LabeledData()
    name = channel.get("ChannelName", "train")
    for bucket, key in _channel_objects(channel, account, role):
        try:
            raw = storage.read(bucket, key, account=account, role=role)
        except storage.NotFound:
            raise TrainingFailed(f"ClientError: Data download failed: s3://{bucket}/{key} does not exist.") from None
        except storage.AccessDenied:  # SageMaker's own words (observed); the denial is the role's
            raise TrainingFailed(
                f"ClientError: Data download failed:Unable to download object s3://{bucket}/{key} "
                "(AccessDenied: Access Denied)"
            ) from None
        if channel.get("CompressionType") == "Gzip" or raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as exc:
                raise TrainingFailed(f"ClientError: s3://{bucket}/{key} is not valid gzip: {exc}") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TrainingFailed(
                f"AlgorithmError: the {name} channel: s3://{bucket}/{key} is not UTF-8 text (byte {exc.start})"
            ) from None
        try:
            data.extend(parse_labeled(text, _content_type(channel, key), source=f"s3://{bucket}/{key}"))
        except TrainingDataError as exc:
            raise TrainingFailed(f"AlgorithmError: the {name} channel: {exc}") from None
    return data


def run_training_job(
    name: str, *, account: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION, seed: int = 1
) -> TrainingResult:
    """Train on the job's channels and write its model artifact (see the module docstring)."""
    from sagepilot_model_server.examples.training import TrainingDataError, package_trained, train_and_evaluate

    job = sagemaker_backends[account][region].training_jobs[name]
    channels = {str(c.get("ChannelName")): c for c in job.input_data_config or []}
    result = TrainingResult("Completed")
    try:
        if "train" not in channels:
            raise TrainingFailed(
                f"ClientError: the job has no 'train' channel (channels: {', '.join(sorted(channels)) or 'none'})."
            )
        job.secondary_status = "Downloading"
        role = str(job.role_arn) if job.role_arn else None
        train = _read_channel(channels["train"], account, role)
        validation = _read_channel(channels["validation"], account, role) if "validation" in channels else None
        result.rows = {"train": len(train), **({"validation": len(validation)} if validation is not None else {})}
        job.secondary_status = "Training"
        try:
            model = train_and_evaluate(train, validation, seed=seed)
        except TrainingDataError as exc:
            raise TrainingFailed(f"AlgorithmError: {exc}") from None
        job.secondary_status = "Uploading"
        artifact = str(job.model_artifacts["S3ModelArtifacts"])
        with tempfile.TemporaryDirectory(prefix="sagepilot-training-") as folder:
            archive = package_trained(model, folder, version=name)
            data = Path(archive).read_bytes()
        bucket, key = storage.parse_uri(artifact)
        try:
            storage.write(bucket, key, data, account=account, role=role)
        except storage.AccessDenied as denied:
            raise TrainingFailed(
                f"ClientError: Failed to upload the model artifact to {artifact}: Access Denied. {denied.reason}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - a missing output bucket is the job's failure
            raise TrainingFailed(f"ClientError: Failed to upload the model artifact to {artifact}: {exc}") from None
        result.metrics, result.artifact = model.metrics, artifact
    except TrainingFailed as failure:
        result.status, result.failure_reason = "Failed", failure.reason
    return result
