"""The SageMaker Python SDK (2.x) as a client of the sandbox, as people use it: register a model package
approved (the control plane deploys it), predict with the CSV serializer and the scikit-learn defaults
(application/x-npy), run a Transformer on a prefix, drop a file with S3Uploader and read the control
plane's predictions, and deploy an SKLearnModel with its own entry_point and source_dir.

The SDK runs in its own virtualenv (`make sdk`, .tools/sagemaker-sdk, from requirements-sdk.txt), driven
step by step through tests/e2e/sdk/scenario.py: its pins are not the project's, and it stays out of every
Lambda. `make test` (and so .ci/run) creates that virtualenv first.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagepilot_model_server.examples import build_example_model, feature_rows, load_estimator, to_csv
from sagepilot_sandbox.server import Sandbox

from .conftest import started_sandbox
from .iam_calls import assert_calls_allowed

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SDK_PYTHON = ROOT / ".tools" / "sagemaker-sdk" / "bin" / "python"
SCENARIO = Path(__file__).with_name("sdk") / "scenario.py"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1"
GROUP = "sdkchurn"
ENTRY_POINT = """
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(data, model):
    return [[int(p), 1 - int(p)] for p in model.predict(data)]
"""


class SDK:
    def __init__(self, sandbox: Sandbox, work: Path) -> None:
        assert sandbox.stack is not None
        self.sandbox = sandbox
        self.bucket = sandbox.stack.outputs["DataBucketName"]
        self.role = sandbox.stack.functions["BatchIntakeFunction"].environment["SAGEMAKER_ROLE_ARN"]
        config = work / "sagemaker-config.yaml"  # no telemetry calls to the internet
        config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))},
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": sandbox.endpoint_url,  # the first line of docs/sandbox.md's SDK example
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config),
            "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
        }

    def run(self, step: str, **arguments: Any) -> dict[str, Any]:
        done = subprocess.run(
            [str(SDK_PYTHON), str(SCENARIO), step, json.dumps({"bucket": self.bucket, "role": self.role, **arguments})],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


# SKLearnModel's image is SageMaker's scikit-learn container, which SageMaker pulls as the stack's role: by
# default that role pulls only this account's images and SageMaker's XGBoost (docs/configuration.md:
# ImageRepositoriesAllowed).
SKLEARN_REPOSITORY = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    allowed = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/*,{SKLEARN_REPOSITORY}"
    with started_sandbox(tmp_path_factory, overrides={"ImageRepositoriesAllowed": allowed}) as running:
        yield running


@pytest.fixture(scope="module")
def sdk(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> SDK:
    if not SDK_PYTHON.exists():
        pytest.fail(f"the SageMaker SDK's virtualenv is missing ({SDK_PYTHON}): run `make sdk` (make test does)")
    return SDK(sandbox, tmp_path_factory.mktemp("sdk"))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_example_model(tmp_path_factory.mktemp("sdk-model"), seed=1)


@pytest.fixture(scope="module")
def model_data(sdk: SDK, archive: Path) -> str:
    """Under models/, where the stack's SageMaker role may read artifacts (docs/sandbox.md)."""
    sdk.sandbox.client("s3").put_object(Bucket=sdk.bucket, Key="models/sdk/v1/model.tar.gz", Body=archive.read_bytes())
    return sdk.uri("models/sdk/v1/model.tar.gz")


@pytest.fixture(scope="module")
def registered(sdk: SDK, model_data: str) -> dict[str, Any]:
    return sdk.run("register", image=IMAGE, model_data=model_data, group=GROUP, endpoint=f"sagepilot-{GROUP}")


def expected(archive: Path, rows: list[list[float]]) -> list[int]:
    return [int(p) for p in load_estimator(archive).predict(rows)]


def test_a_package_registered_approved_with_the_sdk_is_deployed_by_the_control_plane(
    sdk: SDK, registered: dict[str, Any], model_data: str
) -> None:
    assert registered["endpoint_status"] == "InService"
    sm = sdk.sandbox.client("sagemaker")
    package = sm.describe_model_package(ModelPackageName=registered["package"])
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == model_data
    endpoint = sm.describe_endpoint(EndpointName=f"sagepilot-{GROUP}")
    [variant] = endpoint["ProductionVariants"]
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    container = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])["PrimaryContainer"]
    assert registered["package"] in (container.get("ModelPackageName"), None) and (
        container.get("ModelPackageName") == registered["package"] or container.get("ModelDataUrl") == model_data
    )
    assert variant["CurrentWeight"] > 0


def test_the_sdks_predictors_call_the_endpoint_in_csv_and_npy(
    sdk: SDK, registered: dict[str, Any], archive: Path
) -> None:
    rows = feature_rows(8, seed=11)
    answer = sdk.run("predict", endpoint=f"sagepilot-{GROUP}", rows=rows)
    assert [int(p) for p in answer["csv"]] == expected(archive, rows)
    assert answer["npy_content_type"] == "application/x-npy"
    assert answer["npy"] == expected(archive, rows)


def test_a_transformer_runs_on_a_prefix(sdk: SDK, model_data: str, archive: Path) -> None:
    first, second = feature_rows(5, seed=12), feature_rows(3, seed=13)
    s3 = sdk.sandbox.client("s3")
    # jobs/ is readable by the stack's role and watched by no rule (incoming/ would start the control plane's job)
    s3.put_object(Bucket=sdk.bucket, Key="jobs/sdk-batch/in/a.csv", Body=to_csv(first).encode())
    s3.put_object(Bucket=sdk.bucket, Key="jobs/sdk-batch/in/b.csv", Body=to_csv(second).encode())
    answer = sdk.run(
        "transform",
        image=IMAGE,
        model_data=model_data,
        data=sdk.uri("jobs/sdk-batch/in/"),
        # The stack's role writes only job outputs (jobs/<folder>/<prefix>-<job>/output/): predictions/ is the
        # control plane's, which copies them there itself.
        output=sdk.uri("jobs/sdk-batch/sagepilot-sdk-batch/output"),
    )
    assert (answer["status"], answer["failure"]) == ("Completed", "")
    outputs = {uri.rsplit("/", 1)[1]: [int(x) for x in text.split()] for uri, text in answer["outputs"].items()}
    assert outputs == {"a.csv.out": expected(archive, first), "b.csv.out": expected(archive, second)}


def test_a_file_dropped_with_s3uploader_gets_the_control_planes_predictions(
    sdk: SDK, registered: dict[str, Any], archive: Path
) -> None:
    rows = feature_rows(6, seed=14)
    answer = sdk.run(
        "drop",
        body=to_csv(rows),
        target=sdk.uri(f"incoming/{GROUP}/2026-12/customers.csv"),
        predictions=sdk.uri(f"predictions/{GROUP}/2026-12/customers.csv.out"),
    )
    assert [int(x) for x in answer["predictions"].split()] == expected(archive, rows)


def test_an_sklearn_model_with_its_own_entry_point_serves_that_code(
    sdk: SDK, model_data: str, archive: Path, tmp_path: Path
) -> None:
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    (source_dir / "entry.py").write_text(ENTRY_POINT)
    rows = feature_rows(4, seed=15)
    answer = sdk.run(
        "entry_point",
        model_data=model_data,
        source_dir=str(source_dir),
        code_location=sdk.uri("models/sdk-code"),  # where the stack's role may read the sources
        endpoint="sdk-entry-point",
        rows=rows,
    )
    assert answer["status"] == "InService"
    assert answer["environment"]["SAGEMAKER_PROGRAM"] == "entry.py"
    assert answer["environment"]["SAGEMAKER_SUBMIT_DIRECTORY"].startswith(sdk.uri("models/sdk-code/"))
    assert answer["npy"] == [[p, 1 - p] for p in expected(archive, rows)]  # the entry point's, not the archive's
    assert answer["counts"] == [2]  # Predictor.update_endpoint carried the config over


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    assert_calls_allowed(
        sandbox,
        min_pairs=10,
        expected=[
            ("RolloutFunction", "sagemaker.CreateEndpoint"),
            ("BatchIntakeFunction", "sagemaker.CreateTransformJob"),
        ],
    )
