"""A transform job's DataProcessing applied as SageMaker applies it (sandbox/data_processing.py): InputFilter
before the model, JoinSource Input and OutputFilter after it; a filter the sandbox does not apply fails
the job by name instead of being ignored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sagepilot_model_server.examples import feature_rows, to_csv
from sagepilot_sandbox.sagemaker import transform
from sagepilot_sandbox.sagemaker.modelservers import ModelServers

from . import test_sandbox_transform as base
from .test_sandbox_transform import BUCKET, Recorder, World, predicted

archives, servers, world = base.archives, base.servers, base.world  # the same fixtures


def job(world: World, name: str, model: str, key: str, processing: dict[str, str], **options: Any) -> str:
    world.sm.create_transform_job(
        TransformJobName=name,
        ModelName=model,
        BatchStrategy="MultiRecord",
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{key}"}},
            "ContentType": options.get("content_type", "text/csv"),
            "SplitType": options.get("split", "Line"),
        },
        TransformOutput={
            "S3OutputPath": f"s3://{BUCKET}/out/",
            "AssembleWith": "Line",
            "Accept": options.get("accept", "text/csv"),
        },
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        DataProcessing=processing,
    )
    return name


def test_csv_input_filter_join_and_output_filter(world: World, servers: ModelServers) -> None:
    rows = feature_rows(6, seed=4)
    with_ids = [[f"c-{i}", *row] for i, row in enumerate(rows)]
    world.put("in/ids.csv", "".join(",".join(map(str, row)) + "\n" for row in with_ids).encode())
    model = world.model("m1", world.archives.v1)
    job(world, "j1", model, "in/ids.csv", {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"})
    recorder = Recorder(servers)

    result = transform.run_transform_job("j1", servers)

    assert (result.status, result.failure_reason) == ("Completed", "")
    sent = [[float(x) for x in line.split(",")] for line in recorder.bodies[0].decode().splitlines()]
    assert sent == rows  # the id column never reached the model
    expected = predicted(world.archives.v1, rows)
    assert world.lines("out/ids.csv.out") == [f"c-{i},{p}" for i, p in enumerate(expected)]


def test_json_lines_records_get_their_prediction_joined_under_sagemaker_output(
    world: World, servers: ModelServers
) -> None:
    rows = feature_rows(3, seed=5)
    records = [{"id": i, "features": row} for i, row in enumerate(rows)]
    world.put("in/r.jsonl", "".join(json.dumps(r) + "\n" for r in records).encode())
    model = world.model("m1", world.archives.v1)
    job(
        world,
        "j1",
        model,
        "in/r.jsonl",
        {"InputFilter": "$.features", "JoinSource": "Input"},
        content_type="application/jsonlines",
        accept="application/jsonlines",
    )

    result = transform.run_transform_job("j1", servers)

    assert (result.status, result.failure_reason) == ("Completed", "")
    written = [json.loads(line) for line in world.lines("out/r.jsonl.out")]
    expected = [int(p) for p in predicted(world.archives.v1, rows)]
    assert written == [{**r, "SageMakerOutput": p} for r, p in zip(records, expected, strict=True)]


def test_an_output_filter_alone_selects_from_the_prediction(world: World, servers: ModelServers) -> None:
    rows = feature_rows(4, seed=6)
    world.put("in/a.csv", to_csv(rows).encode())
    model = world.model("m1", world.archives.v1)
    job(world, "j1", model, "in/a.csv", {"JoinSource": "Input", "OutputFilter": "$[-1]"})

    result = transform.run_transform_job("j1", servers)

    assert result.status == "Completed"
    assert world.lines("out/a.csv.out") == predicted(world.archives.v1, rows)


@pytest.mark.parametrize(
    ("processing", "options", "reason"),
    [
        ({"InputFilter": "$..features"}, {}, "DataProcessing: JSONPath '$..features'"),
        ({"InputFilter": "$[*]"}, {}, "not '[*]'"),
        ({"JoinSource": "Input"}, {"split": "None"}, "JoinSource Input needs SplitType Line"),
        ({"InputFilter": "$.features"}, {}, "InputFilter: JSONPath '$.features': the record has no member"),
    ],
)
def test_what_the_sandbox_cannot_apply_fails_the_job_by_name(
    world: World, servers: ModelServers, processing: dict[str, str], options: dict[str, str], reason: str
) -> None:
    world.put("in/a.csv", to_csv(feature_rows(2, seed=7)).encode())
    job(world, "j1", world.model("m1", world.archives.v1), "in/a.csv", processing, **options)

    result = transform.run_transform_job("j1", servers)

    assert result.status == "Failed"
    assert result.failure_reason.startswith("ClientError: ")
    assert reason in result.failure_reason
    assert world.keys("out/") == []
