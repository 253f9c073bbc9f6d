"""The SageMaker Python SDK (2.x) against a running sandbox: what tests/e2e/test_sagemaker_sdk.py drives.

Runs in the SDK's own virtualenv (`make sdk`: .tools/sagemaker-sdk), never in the project's: the SDK pins
what the project pins differently. Pointed at the sandbox by AWS_ENDPOINT_URL, with the bucket and role
passed explicitly (the SDK asks a hardcoded STS endpoint for them otherwise). One step per call:
`python scenario.py <step> <json arguments>`; it prints one JSON document with what it saw.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import boto3
import numpy as np
import sagemaker
from sagemaker.deserializers import CSVDeserializer
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.s3 import S3Downloader, S3Uploader
from sagemaker.serializers import CSVSerializer
from sagemaker.sklearn.model import SKLearnModel, SKLearnPredictor


def session(bucket: str) -> sagemaker.Session:
    return sagemaker.Session(boto_session=boto3.Session(region_name="us-east-1"), default_bucket=bucket)


def wait_for(what: str, check: Any, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise TimeoutError(what)


def endpoint_status(sm: Any, name: str) -> str | None:
    try:
        return str(sm.describe_endpoint(EndpointName=name)["EndpointStatus"])
    except sm.exceptions.ClientError:
        return None


def register(a: dict[str, Any]) -> dict[str, Any]:
    """(a) Model.register(..., approval_status="Approved"); the control plane deploys it."""
    s = session(a["bucket"])
    model = Model(image_uri=a["image"], model_data=a["model_data"], role=a["role"], sagemaker_session=s)
    package = model.register(
        content_types=["text/csv"],
        response_types=["text/csv"],
        inference_instances=["ml.m5.large"],
        transform_instances=["ml.m5.xlarge"],
        model_package_group_name=a["group"],
        approval_status="Approved",
    )
    sm = s.sagemaker_client
    status = wait_for("the endpoint", lambda: endpoint_status(sm, a["endpoint"]) == "InService" and "InService")
    return {"package": package.model_package_arn, "endpoint_status": status}


def predict(a: dict[str, Any]) -> dict[str, Any]:
    """(b) Predictor with the CSV serializer, and SKLearnPredictor's defaults (application/x-npy)."""
    s = session(a["bucket"])
    rows = a["rows"]
    csv = Predictor(a["endpoint"], sagemaker_session=s, serializer=CSVSerializer(), deserializer=CSVDeserializer())
    npy = SKLearnPredictor(a["endpoint"], sagemaker_session=s)
    return {
        "csv": [row[0] for row in csv.predict(rows)],
        "npy": np.asarray(npy.predict(np.array(rows))).tolist(),
        "npy_content_type": npy.content_type,
    }


def transform(a: dict[str, Any]) -> dict[str, Any]:
    """(c) Transformer.transform(...) on a prefix."""
    s = session(a["bucket"])
    model = Model(image_uri=a["image"], model_data=a["model_data"], role=a["role"], sagemaker_session=s)
    transformer = model.transformer(
        instance_count=1,
        instance_type="ml.m5.xlarge",
        output_path=a["output"],
        accept="text/csv",
        assemble_with="Line",
        strategy="MultiRecord",
    )
    transformer.transform(a["data"], content_type="text/csv", split_type="Line", wait=False, logs=False)
    sm = s.sagemaker_client
    name = transformer.latest_transform_job.name
    status = wait_for(
        "the transform job",
        lambda: (
            sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"] in ("Completed", "Failed")
            and sm.describe_transform_job(TransformJobName=name)
        ),
    )
    outputs = sorted(S3Downloader.list(a["output"], sagemaker_session=s))
    return {
        "status": status["TransformJobStatus"],
        "failure": status.get("FailureReason", ""),
        "outputs": {uri: S3Downloader.read_file(uri, sagemaker_session=s) for uri in outputs},
    }


def drop(a: dict[str, Any]) -> dict[str, Any]:
    """(d) A file dropped with the SDK's S3Uploader; the control plane's predictions read back."""
    s = session(a["bucket"])
    S3Uploader.upload_string_as_file_body(a["body"], a["target"], sagemaker_session=s)
    text = wait_for(
        "the control plane's predictions",
        lambda: (
            a["predictions"] in S3Downloader.list(a["predictions"], sagemaker_session=s)
            and S3Downloader.read_file(a["predictions"], sagemaker_session=s)
        ),
        seconds=90,
    )
    return {"predictions": text}


def entry_point(a: dict[str, Any]) -> dict[str, Any]:
    """(e) SKLearnModel with entry_point + source_dir, deployed and called."""
    s = session(a["bucket"])
    model = SKLearnModel(
        model_data=a["model_data"],
        role=a["role"],
        entry_point="entry.py",
        source_dir=a["source_dir"],
        framework_version="1.2-1",
        code_location=a["code_location"],
        sagemaker_session=s,
    )
    model.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=a["endpoint"], wait=False)
    sm = s.sagemaker_client
    status = wait_for("the endpoint", lambda: endpoint_status(sm, a["endpoint"]) in ("InService", "Failed"))
    status = endpoint_status(sm, a["endpoint"])
    predictor = SKLearnPredictor(a["endpoint"], sagemaker_session=s)
    environment = sm.describe_model(ModelName=model.name)["PrimaryContainer"]["Environment"]
    predictions = np.asarray(predictor.predict(np.array(a["rows"]))).tolist()
    # The SDK reads the endpoint config's DataCaptureConfig to carry it over (an empty one broke it).
    predictor.update_endpoint(initial_instance_count=2, instance_type="ml.m5.large", wait=False)
    updated = wait_for("the update", lambda: endpoint_status(sm, a["endpoint"]) == "InService" and "InService")
    config = sm.describe_endpoint(EndpointName=a["endpoint"])["EndpointConfigName"]
    counts = [
        v["InitialInstanceCount"] for v in sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    ]
    return {"status": status, "npy": predictions, "environment": environment, "updated": updated, "counts": counts}


STEPS = {"register": register, "predict": predict, "transform": transform, "drop": drop, "entry_point": entry_point}

if __name__ == "__main__":
    print(json.dumps(STEPS[sys.argv[1]](json.loads(sys.argv[2])), default=str))
