"""Batch transform jobs that really predict (sandbox/transform.py), against moto.mock_aws with the faithful
patches and model servers in this process: the manifest's files (and an S3Prefix's), gzip, records
split by line and batched within MaxPayloadInMB, one output line per record in order, and the job's
failure with the model's own message when it refuses a record."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from sagepilot_model_server.examples import build_example_model, feature_rows, load_estimator, to_csv, to_jsonl
from sagepilot_sandbox import faithful
from sagepilot_sandbox.sagemaker import transform
from sagepilot_sandbox.sagemaker.modelservers import ModelServers

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sagemaker"
BUCKET = "data-bucket"
SESSION = boto3.session.Session()  # parses the service models once (mock_aws resets the default session)


def client(service: str) -> Any:
    return SESSION.client(service, region_name=REGION)


@dataclass(frozen=True)
class Archives:
    v1: Path
    v2: Path
    broken: Path  # half of its records fail (500)


@pytest.fixture(scope="session")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Archives:
    root = tmp_path_factory.mktemp("sandbox-models")
    return Archives(
        v1=build_example_model(root / "v1", seed=1, version="v1"),
        v2=build_example_model(root / "v2", seed=2, version="v2"),
        broken=build_example_model(root / "broken", seed=3, version="broken", broken_share=0.5),
    )


@pytest.fixture
def servers(aws: None) -> Iterator[ModelServers]:
    running = ModelServers(isolation="thread")
    yield running
    running.stop()


@dataclass
class World:
    s3: Any
    sm: Any
    archives: Archives

    def put(self, key: str, body: bytes) -> str:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return f"s3://{BUCKET}/{key}"

    def model(self, name: str, archive: Path, *, package: bool = False) -> str:
        """A SageMaker model whose artifact is `archive` (through a model package when `package`)."""
        url = self.put(f"models/{name}/model.tar.gz", archive.read_bytes())
        container: dict[str, Any] = {"Image": "img", "ModelDataUrl": url}
        if package:
            group = f"group-{name}"
            self.sm.create_model_package_group(ModelPackageGroupName=group)
            arn = self.sm.create_model_package(
                ModelPackageGroupName=group,
                ModelApprovalStatus="Approved",
                InferenceSpecification={
                    "Containers": [container],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
            )["ModelPackageArn"]
            container = {"ModelPackageName": arn}
        self.sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
        return name

    def job(self, name: str, model: str, source: dict[str, Any], **options: Any) -> str:
        transform_input = {
            "DataSource": {"S3DataSource": source},
            "ContentType": options.pop("content_type", "text/csv"),
            "CompressionType": options.pop("compression", "None"),
            "SplitType": options.pop("split", "Line"),
        }
        self.sm.create_transform_job(
            TransformJobName=name,
            ModelName=model,
            BatchStrategy=options.pop("strategy", "MultiRecord"),
            MaxPayloadInMB=options.pop("max_payload", 6),
            TransformInput=transform_input,
            TransformOutput={"S3OutputPath": f"s3://{BUCKET}/out/", "AssembleWith": "Line", "Accept": "text/csv"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        )
        return name

    def manifest(self, key: str, prefix: str, relatives: list[str]) -> dict[str, str]:
        self.put(key, json.dumps([{"prefix": f"s3://{BUCKET}/{prefix}"}, *relatives]).encode())
        return {"S3DataType": "ManifestFile", "S3Uri": f"s3://{BUCKET}/{key}"}

    def lines(self, key: str) -> list[str]:
        return str(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()).splitlines()

    def keys(self, prefix: str) -> list[str]:
        return sorted(o["Key"] for o in self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


@pytest.fixture
def world(aws: None, archives: Archives) -> World:
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return World(s3, client("sagemaker"), archives)


class Recorder:
    """Wraps ModelServers.invoke to see every request the job sends."""

    def __init__(self, servers: ModelServers) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[tuple[str | None, str | None]] = []
        original = servers.invoke

        def invoke(url: str, body: bytes, content_type: str | None, accept: str | None, **kwargs: Any) -> Any:
            self.bodies.append(body)
            self.headers.append((content_type, accept))
            return original(url, body, content_type, accept, **kwargs)

        servers.invoke = invoke  # type: ignore[method-assign]


def predicted(archive: Path, rows: list[list[float]]) -> list[str]:
    return [str(int(p)) for p in load_estimator(archive).predict(rows)]


def test_a_manifest_job_writes_one_prediction_per_record_in_order(world: World, servers: ModelServers) -> None:
    first, second, third = feature_rows(7, seed=1), feature_rows(3, seed=2), feature_rows(4, seed=3)
    world.put("incoming/churn/a.csv", to_csv(first).encode())
    world.put("incoming/churn/sub dir/b ü.csv", to_csv(second).encode())
    world.put("incoming/churn/c.csv", to_csv(third).encode())
    world.put("incoming/churn/a.csv.bak", b"not,listed\n")
    source = world.manifest("jobs/m.json", "incoming/churn/", ["sub dir/b ü.csv", "a.csv"])
    world.job("j1", world.model("m1", world.archives.v1, package=True), source)
    recorder = Recorder(servers)

    result = transform.run_transform_job("j1", servers)

    assert (result.status, result.failure_reason) == ("Completed", "")
    assert result.outputs == [f"s3://{BUCKET}/out/sub dir/b ü.csv.out", f"s3://{BUCKET}/out/a.csv.out"]
    assert world.keys("out/") == ["out/a.csv.out", "out/sub dir/b ü.csv.out"]
    assert world.lines("out/a.csv.out") == predicted(world.archives.v1, first)
    assert world.lines("out/sub dir/b ü.csv.out") == predicted(world.archives.v1, second)
    assert (result.records, result.requests) == (10, 2)  # one request per file: both fit in 6 MB
    assert recorder.headers == [("text/csv", "text/csv")] * 2


def test_gzipped_json_lines_are_decompressed_and_split(world: World, servers: ModelServers) -> None:
    rows = feature_rows(9, seed=4)
    world.put("in/events.jsonl.gz", gzip.compress(to_jsonl(rows).encode()))
    source = world.manifest("jobs/m.json", "in/", ["events.jsonl.gz"])
    world.job(
        "j", world.model("m", world.archives.v2), source, content_type="application/jsonlines", compression="Gzip"
    )

    result = transform.run_transform_job("j", servers)

    assert result.status == "Completed", result.failure_reason
    assert world.lines("out/events.jsonl.gz.out") == predicted(world.archives.v2, rows)


def test_multi_record_batches_stay_within_max_payload_and_keep_every_record(
    world: World, servers: ModelServers
) -> None:
    rows = feature_rows(60_000, seed=5)  # about 1.2 MB of CSV: more than one 1-MB request
    body = to_csv(rows).encode()
    assert len(body) > 1024 * 1024
    world.put("in/big.csv", body)
    world.job(
        "big",
        world.model("m", world.archives.v1),
        {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/in/"},
        max_payload=1,
    )
    recorder = Recorder(servers)

    result = transform.run_transform_job("big", servers)

    assert result.status == "Completed", result.failure_reason
    assert len(recorder.bodies) == result.requests >= 2
    assert all(len(b) <= 1024 * 1024 for b in recorder.bodies)
    assert b"".join(recorder.bodies) == body  # every record, once, in order
    assert world.lines("out/big.csv.out") == predicted(world.archives.v1, rows)


def test_single_record_sends_one_request_per_record(world: World, servers: ModelServers) -> None:
    rows = feature_rows(5, seed=6)
    world.put("in/sub/x.csv", to_csv(rows).encode() + b"\n\n")  # blank lines are not records
    world.job(
        "single",
        world.model("m", world.archives.v1),
        {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/in/"},
        strategy="SingleRecord",
    )
    recorder = Recorder(servers)

    result = transform.run_transform_job("single", servers)

    assert result.status == "Completed", result.failure_reason
    assert [b.count(b"\n") for b in recorder.bodies] == [1] * 5
    assert world.lines("out/sub/x.csv.out") == predicted(world.archives.v1, rows)  # S3Prefix: path below in/


def test_batches_split_on_the_payload_limit() -> None:
    records = [b"x" * 400_000] * 5  # 400 kB each (+ newline): two fit in 1 MB, not three
    assert transform.batches(records, "MultiRecord", 1) == [(0, 2), (2, 4), (4, 5)]
    assert transform.batches(records, "SingleRecord", 1) == [(i, i + 1) for i in range(5)]
    assert transform.batches(records, "MultiRecord", 0) == [(0, 5)]  # 0: no limit
    with pytest.raises(transform.JobFailed, match="larger than MaxPayloadInMB"):
        transform.batches([b"x" * (2 * 1024 * 1024)], "MultiRecord", 1)
    assert transform.split_records(b"a\r\nb\n\n c\n", "Line") == [b"a", b"b", b" c"]
    assert transform.split_records(b"a\nb\n", None) == [b"a\nb\n"]


def test_a_record_the_model_refuses_fails_the_job_with_the_models_message(world: World, servers: ModelServers) -> None:
    good = feature_rows(3, seed=7)
    world.put("in/a.csv", to_csv(good).encode())
    world.put("in/b.csv", b"1,2,3,4,5\n5,6,7,8,9\n")  # five features: the model expects four
    source = world.manifest("jobs/m.json", "in/", ["a.csv", "b.csv"])
    world.job("refused", world.model("m", world.archives.v1), source)

    result = transform.run_transform_job("refused", servers)

    assert result.status == "Failed"
    assert result.failure_reason.startswith("ClientError: ")
    assert f"s3://{BUCKET}/in/b.csv (records 1-2): the model returned 400" in result.failure_reason
    assert "record 1 has 5 features; this model expects 4" in result.failure_reason
    assert world.keys("out/") == ["out/a.csv.out"]  # the file done before keeps its output
    assert world.lines("out/a.csv.out") == predicted(world.archives.v1, good)


def test_a_failing_model_is_an_algorithm_error(world: World, servers: ModelServers) -> None:
    world.put("in/a.csv", to_csv(feature_rows(20, seed=8)).encode())
    world.job(
        "broken", world.model("m", world.archives.broken), {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/in/"}
    )

    result = transform.run_transform_job("broken", servers)

    assert result.status == "Failed"
    assert result.failure_reason.startswith("AlgorithmError: ")
    assert "the model returned 500" in result.failure_reason and "failed on record" in result.failure_reason


def test_missing_inputs_and_model_data_fail_as_sagemaker_says(world: World, servers: ModelServers) -> None:
    world.sm.create_model(
        ModelName="ghost",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "img", "ModelDataUrl": f"s3://{BUCKET}/models/none.tar.gz"},
    )
    world.put("in/a.csv", b"1,2,3,4\n")
    world.job("no-model", "ghost", {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/in/"})
    world.job(
        "no-input", world.model("m", world.archives.v1), {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/none/"}
    )
    world.job("no-file", "m", world.manifest("jobs/m.json", "in/", ["a.csv", "gone.csv"]))

    no_model = transform.run_transform_job("no-model", servers)
    assert no_model.status == "Failed"
    assert no_model.failure_reason.startswith('ClientError: Failed to download model data for container "container_1"')
    assert transform.run_transform_job("no-input", servers).failure_reason.startswith(
        f'ClientError: No S3 objects found under S3 URL "s3://{BUCKET}/none/"'
    )
    assert faithful.check_transform_inputs("no-file") == (
        f"ClientError: Failed to download data. s3://{BUCKET}/in/gone.csv does not exist."
    )
    assert faithful.check_transform_inputs("no-input") is not None
