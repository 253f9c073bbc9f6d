"""Batch transform as SageMaker runs it: read the job's inputs, send their records to the model, write outputs.

`run_transform_job(name, servers)` does what SageMaker does between InProgress and Completed, on the
sandbox's S3 and a model server for the job's model (`modelservers`):

- inputs: `ManifestFile` (`[{"prefix": "s3://bucket/p/"}, "rel/key", ...]`: exactly those objects, each
  output named by its path relative to the prefix) or `S3Prefix` (every object whose key starts with the
  prefix, named by its path relative to the prefix's last `/`); `CompressionType: Gzip` inputs are
  decompressed (a file that is not gzip fails the job);
- records: `SplitType: Line` makes each non-blank line a record (`\\r\\n` too); `None` makes the whole
  file one record;
- requests: `BatchStrategy: MultiRecord` packs consecutive records of one file into a request while the
  body stays within `MaxPayloadInMB` (default 6; 0: no limit); `SingleRecord` sends one record per
  request. A record larger than MaxPayloadInMB fails the job. Requests carry `Content-Type` = the job's
  input ContentType and `Accept` = `TransformOutput.Accept`, and go one at a time, in order (as with
  MaxConcurrentTransforms = 1);
- outputs: `<S3OutputPath>/<relative path>.out`, the responses of a file in order; with
  `AssembleWith: Line` each response ends with a newline (so a model that answers one line per record
  gives one output line per input record), with `None` they are concatenated as they are. A file's
  output is written when all its records are done; files go in the manifest's order;
- the first model error fails the job, with SageMaker's kind of FailureReason: `ClientError: ...` when
  the model answered 4xx (a record it cannot read), `AlgorithmError: ...` when it answered 5xx (its
  code failed), each naming the input, the records of the request and the model's own message; a model
  that cannot be served is `ClientError: Failed to download model data ...` (or why it cannot run), one
  whose image the model's role may not pull `ClientError: Please make sure all images included in the
  model exist, ...` (words inferred from the endpoint's).
  Files already done keep their outputs, as SageMaker's do.

`DataProcessing` is applied as SageMaker applies it (`data_processing`): InputFilter on each record
before it is sent, JoinSource Input and OutputFilter on each record's prediction (the model must then
answer one line per record). A filter outside the JSONPath subset SageMaker documents fails the job
with `ClientError` naming it.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from moto.sagemaker.models import sagemaker_backends

from sagepilot_sandbox import storage
from sagepilot_sandbox.bus import DEFAULT_ACCOUNT, DEFAULT_REGION
from sagepilot_sandbox.sagemaker.containers import ImageNotPullable, check_image, execution_role, resolve_container
from sagepilot_sandbox.sagemaker.data_processing import DataProcessing, FilterError, compile_data_processing, media_type
from sagepilot_sandbox.sagemaker.modelservers import ModelServers, ModelUnavailable

MB = 1024 * 1024


class JobFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class InputObject:
    bucket: str
    key: str
    relative: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass
class TransformResult:
    status: str  # Completed | Failed
    failure_reason: str = ""
    outputs: list[str] = field(default_factory=list)  # S3 URIs written
    records: int = 0
    requests: int = 0


def _job(name: str, account: str, region: str) -> Any:
    return sagemaker_backends[account][region].transform_jobs[name]


def list_inputs(job: Any, *, account: str = DEFAULT_ACCOUNT, role: str | None = None) -> list[InputObject]:
    """The objects a job reads, in order (JobFailed with SageMaker's reason when it cannot); as `role`
    when given (the model's execution role)."""
    source = job.transform_input["DataSource"]["S3DataSource"]
    uri = str(source["S3Uri"])
    kind = source.get("S3DataType", "S3Prefix")
    try:
        bucket, key = storage.parse_uri(uri)
    except ValueError:
        raise JobFailed(f"ClientError: {uri} is not a valid S3 URI.") from None
    if kind == "ManifestFile":
        try:
            manifest = json.loads(storage.read(bucket, key, account=account, role=role))
            prefix = str(manifest[0]["prefix"])
            p_bucket, p_key = storage.parse_uri(prefix)
            relatives = [str(entry) for entry in manifest[1:]]
        except storage.NotFound:
            raise JobFailed(f"ClientError: Failed to read the manifest file {uri}: it does not exist.") from None
        except storage.AccessDenied as denied:
            raise JobFailed(
                f"ClientError: Failed to read the manifest file {uri}: Access Denied. {denied.reason}"
            ) from None
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise JobFailed(f"ClientError: The manifest file {uri} is not valid: {type(exc).__name__}: {exc}") from None
        return [InputObject(p_bucket, p_key + rel, rel) for rel in relatives]
    try:
        keys = storage.list_keys(bucket, key, account=account, role=role)
    except (storage.NotFound, storage.AccessDenied):
        keys = []  # SageMaker says the same for a prefix it may not list
    if not keys:
        raise JobFailed(
            f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure that '
            "the bucket exists in the selected region, that objects exist under that S3 prefix, and that the role "
            f'has "s3:ListBucket" permissions on bucket "{bucket}".'
        )
    base = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    return [InputObject(bucket, k, k[len(base) :]) for k in keys]


def split_records(data: bytes, split_type: str | None) -> list[bytes]:
    """The records of one input (see the module docstring)."""
    if split_type != "Line":
        return [data] if data else []
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip()]


def batches(records: list[bytes], strategy: str, max_payload_mb: int) -> list[tuple[int, int]]:
    """(first, end) index ranges of the requests; JobFailed if one record alone exceeds the limit."""
    limit = max_payload_mb * MB if max_payload_mb > 0 else None
    ranges: list[tuple[int, int]] = []
    start, size = 0, 0
    for index, record in enumerate(records):
        record_size = len(record) + 1  # the newline that separates it from the next one
        if limit is not None and record_size > limit:
            raise JobFailed(
                f"ClientError: Record {index + 1} is {record_size:,} bytes, larger than MaxPayloadInMB "
                f"({max_payload_mb} MB). Increase MaxPayloadInMB or split the record."
            )
        full = limit is not None and size + record_size > limit
        if index > start and (strategy != "MultiRecord" or full):
            ranges.append((start, index))
            start, size = index, 0
        size += record_size
    if start < len(records):
        ranges.append((start, len(records)))
    return ranges


def _read_input(item: InputObject, compression: str | None, account: str, role: str | None) -> bytes:
    try:
        data = storage.read(item.bucket, item.key, account=account, role=role)
    except storage.NotFound:
        raise JobFailed(f"ClientError: Failed to download data. {item.uri} does not exist.") from None
    except storage.AccessDenied as denied:
        raise JobFailed(f"ClientError: Failed to download data. {item.uri}: Access Denied. {denied.reason}") from None
    if compression == "Gzip":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise JobFailed(f"ClientError: Failed to decompress {item.uri} with Gzip: {exc}") from None
    return data


def output_key(output_path: str, relative: str) -> tuple[str, str]:
    bucket, prefix = storage.parse_uri(output_path)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, f"{prefix}{relative}.out"


def _data_processing(job: Any) -> DataProcessing:
    try:
        processing = compile_data_processing(job.data_processing)
    except FilterError as exc:
        raise JobFailed(f"ClientError: DataProcessing: {exc}") from None
    split = job.transform_input.get("SplitType") or "None"
    if processing.join_input and split != "Line":
        raise JobFailed(f"ClientError: DataProcessing: JoinSource Input needs SplitType Line, not {split}.")
    return processing


def _filtered(
    processing: DataProcessing, records: list[bytes], content_type: str | None, item: InputObject
) -> list[bytes]:
    try:
        return [processing.filter_input(r, media_type(content_type)) for r in records]
    except (FilterError, UnicodeDecodeError) as exc:
        raise JobFailed(f"ClientError: {item.uri}: InputFilter: {exc}") from None


def _processed(
    processing: DataProcessing,
    records: list[bytes],
    response: Any,
    content_type: str | None,
    accept: str | None,
    item: InputObject,
    first: int,
) -> bytes:
    """The output lines of one request: each record's prediction line joined and filtered."""
    lines = [line.rstrip(b"\r") for line in response.body.split(b"\n") if line.strip()]
    if len(lines) != len(records):
        raise JobFailed(
            f"ClientError: {item.uri} (records {first + 1}-{first + len(records)}): the model returned "
            f"{len(lines)} lines for {len(records)} records; JoinSource and OutputFilter need one prediction "
            "line per record."
        )
    output_type = media_type(response.content_type) or media_type(accept)
    try:
        return b"".join(
            processing.output(record, line, media_type(content_type), output_type) + b"\n"
            for record, line in zip(records, lines, strict=True)
        )
    except (FilterError, UnicodeDecodeError) as exc:
        raise JobFailed(f"ClientError: {item.uri}: OutputFilter / JoinSource: {exc}") from None


def run_transform_job(
    name: str, servers: ModelServers, *, account: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION
) -> TransformResult:
    """Run the job's records through its model and write its outputs (see the module docstring)."""
    job = _job(name, account, region)
    result = TransformResult("Completed")
    role = execution_role(job.model_name, account=account, region=region)
    try:
        inputs = list_inputs(job, account=account, role=role)
        try:
            check_image(job.model_name, account=account, region=region)
            container = resolve_container(job.model_name, account=account, region=region)
            model_url, environment = container.model_data_url, container.environment
            servers.server_for(model_url, account=account, environment=environment)
        except ImageNotPullable as exc:
            raise JobFailed(f"ClientError: {exc.job_failure()}") from None
        except ModelUnavailable as exc:
            raise JobFailed(f"ClientError: {exc.reason}") from None
        transform_input = job.transform_input
        output = job.transform_output or {}
        content_type = transform_input.get("ContentType")
        accept = output.get("Accept")
        strategy = job.batch_strategy or "MultiRecord"
        max_payload = int(job.max_payload_in_mb if job.max_payload_in_mb is not None else 6)
        line_assembly = output.get("AssembleWith") == "Line"
        processing = _data_processing(job)
        for item in inputs:
            records = split_records(
                _read_input(item, transform_input.get("CompressionType"), account, role),
                transform_input.get("SplitType"),
            )
            sent = _filtered(processing, records, content_type, item)
            parts: list[bytes] = []
            for first, end in batches(sent, strategy, max_payload):
                body = b"".join(r + b"\n" for r in sent[first:end])
                try:
                    response = servers.invoke(
                        model_url, body, content_type, accept, account=account, environment=environment
                    )
                except ModelUnavailable as exc:
                    raise JobFailed(f"ClientError: {item.uri}: {exc.reason}") from None
                result.requests += 1
                if not 200 <= response.status < 300:
                    kind = "ClientError" if response.status < 500 else "AlgorithmError"
                    span = f"record {first + 1}" if end - first == 1 else f"records {first + 1}-{end}"
                    raise JobFailed(
                        f"{kind}: See job logs for more information. {item.uri} ({span}): the model returned "
                        f"{response.status}: {response.message}"
                    )
                part = response.body
                if processing.active:
                    part = _processed(processing, records[first:end], response, content_type, accept, item, first)
                if line_assembly and part and not part.endswith(b"\n"):
                    part += b"\n"
                parts.append(part)
            result.records += len(records)
            out_bucket, out_key = output_key(str(output["S3OutputPath"]), item.relative)
            try:
                storage.write(out_bucket, out_key, b"".join(parts), account=account, role=role)
            except storage.AccessDenied as denied:
                raise JobFailed(
                    f"ClientError: Failed to upload s3://{out_bucket}/{out_key}: Access Denied. {denied.reason}"
                ) from None
            except storage.WriteRefused as refused:
                failed = f"s3://{out_bucket}/{out_key}"
                raise JobFailed(f"ClientError: Failed to upload {failed}: {refused.reason}") from None
            result.outputs.append(f"s3://{out_bucket}/{out_key}")
    except JobFailed as failure:
        result.status, result.failure_reason = "Failed", failure.reason
    return result
