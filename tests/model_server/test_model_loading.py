"""Loading models: archive, directory, S3 (through an S3 endpoint, as in the sandboxes), and the
inference.py convention (model_fn, optional input_fn / predict_fn / output_fn, or transform_fn)."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import textwrap
from pathlib import Path

import boto3
import joblib
import pytest

import sagepilot_model_server.handler as handler_module
from sagepilot_model_server import BadRequest, ModelError, load_model, resolve_model_source
from sagepilot_model_server.errors import NotAcceptable, UnsupportedContentType
from sagepilot_model_server.examples import feature_rows, to_csv, train_classifier
from sagepilot_model_server.packaging import package_model, package_model_dir

from .conftest import call, invoke


def write_model(root: Path, inference: str | None = None, files: dict[str, str] | None = None) -> Path:
    """An extracted model directory: code/inference.py (if given) and other files by relative path."""
    all_files = dict(files or {})
    if inference is not None:
        all_files["code/inference.py"] = inference
    for name, text in all_files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


SUM_MODEL = """
def model_fn(model_dir):
    return "sum"


def predict_fn(data, model):
    return [sum(record) for record in data]
"""


# Sources ------------------------------------------------------------------------------------------------------------
def test_archive_directory_with_archive_and_extracted_directory_all_load(tmp_path, models):
    extracted = tmp_path / "extracted"
    with tarfile.open(models.v1) as tar:
        tar.extractall(extracted, filter="data")
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / "model.tar.gz").write_bytes(models.v1.read_bytes())
    body = to_csv(feature_rows(30, seed=3)).encode()
    outputs = []
    for source in (models.v1, holder, extracted):
        handler = load_model(source)
        try:
            outputs.append(handler.invoke(body, "text/csv", "text/csv"))
        finally:
            handler.close()
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0][1] == "text/csv"


def test_temporary_directories_are_removed_when_the_server_stops(models, serve):
    server = serve(models.v1)
    server.wait_until_ready(10)
    model_dir = server.handler.model_dir
    assert (model_dir / "model.joblib").is_file()
    server.stop()
    assert not model_dir.exists()


def test_an_extracted_directory_is_never_removed(tmp_path):
    model_dir = write_model(tmp_path / "m", SUM_MODEL)
    handler = load_model(model_dir)
    handler.close()
    assert (model_dir / "code" / "inference.py").is_file()


def test_sm_model_dir_is_the_default_source(tmp_path, monkeypatch):
    model_dir = write_model(tmp_path / "opt-ml-model", SUM_MODEL)
    monkeypatch.setenv("SM_MODEL_DIR", str(model_dir))
    assert resolve_model_source().model_dir == model_dir


def test_archive_members_outside_the_model_directory_are_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"print('pwned')"
        info = tarfile.TarInfo("../../evil.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="cannot unpack model archive"):
        load_model(archive)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on loopback: what the sandbox's AWS_ENDPOINT_URL points at."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_a_model_in_s3_is_downloaded_through_aws_endpoint_url(models, serve, s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="models")
    s3.upload_file(str(models.v2), "models", "churn/v2/model.tar.gz")

    server = serve("s3://models/churn/v2/model.tar.gz")
    server.wait_until_ready(20)
    records = feature_rows(40, seed=4)
    reply = invoke(server, to_csv(records), accept="application/json")
    assert reply.status == 200
    expected = [int(x) for x in train_classifier(seed=2).predict(records)]
    assert reply.json() == {"predictions": expected}
    assert call(server, "GET", "/ping").json()["status"] == "ready"


def test_a_missing_s3_object_fails_the_load(serve, s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = serve("s3://no-such-bucket/model.tar.gz")
    with pytest.raises(RuntimeError, match="failed to load"):
        server.wait_until_ready(20)
    assert call(server, "GET", "/ping").status == 500


def test_s3_uri_must_name_an_object():
    with pytest.raises(ValueError, match="not an S3 object URI"):
        handler_module.download_model_data("s3://bucket-only", "/tmp")


# The inference.py convention ------------------------------------------------------------------------------------------
def test_model_fn_alone_gets_the_default_input_predict_and_output(tmp_path):
    model_dir = write_model(
        tmp_path / "m",
        """
        class Doubler:
            n_features_in_ = 2

            def predict(self, rows):
                return [2 * a + b for a, b in rows]


        def model_fn(model_dir):
            return Doubler()
        """,
    )
    handler = load_model(model_dir)
    body, content_type = handler.invoke(b"1,2\n3,4\n", "text/csv", "application/jsonlines")
    assert (body, content_type) == (b"4.0\n10.0\n", "application/jsonlines")
    with pytest.raises(BadRequest, match="record 1 has 3 features; this model expects 2"):
        handler.invoke(b"1,2,3\n", "text/csv", "text/csv")


def test_custom_input_and_output_functions(tmp_path, serve):
    model_dir = write_model(
        tmp_path / "m",
        """
        import json

        from sagepilot_model_server import BadRequest


        def model_fn(model_dir):
            return {"scale": 10}


        def input_fn(body, content_type):
            if content_type != "text/plain":
                raise BadRequest(f"send text/plain, not {content_type}")
            return [float(word) for word in body.split()]


        def predict_fn(data, model):
            return [model["scale"] * value for value in data]


        def output_fn(prediction, accept):
            if accept == "text/html":
                return "<b>" + " ".join(str(p) for p in prediction) + "</b>", "text/html"
            return json.dumps({"scaled": prediction}), "application/vnd.scaled+json"
        """,
    )
    server = serve(model_dir)
    server.wait_until_ready(10)
    reply = invoke(server, "1 2.5", content_type="text/plain", accept="text/html")
    assert (reply.status, reply.headers["content-type"], reply.text) == (200, "text/html", "<b>10.0 25.0</b>")
    reply = invoke(server, "3", content_type="text/plain")
    assert reply.headers["content-type"] == "application/vnd.scaled+json"
    assert json.loads(reply.body) == {"scaled": [30.0]}
    refused = invoke(server, "1,2\n", content_type="text/csv")
    assert refused.status == 400
    assert refused.json()["message"] == "send text/plain, not text/csv"


def test_transform_fn_replaces_the_three_functions(tmp_path):
    model_dir = write_model(
        tmp_path / "m",
        """
        def model_fn(model_dir):
            return "upper"


        def transform_fn(model, body, content_type, accept):
            return body.upper().encode(), "text/x-shout"
        """,
    )
    handler = load_model(model_dir)
    assert handler.invoke(b"hello", "text/plain", "*/*") == (b"HELLO", "text/x-shout")


def test_transform_fn_with_predict_fn_is_refused(tmp_path):
    model_dir = write_model(
        tmp_path / "m",
        """
        def model_fn(model_dir):
            return None


        def transform_fn(model, body, content_type, accept):
            return body


        def predict_fn(data, model):
            return data
        """,
    )
    with pytest.raises(TypeError, match="transform_fn and input_fn/predict_fn/output_fn"):
        load_model(model_dir)


def test_model_fn_with_the_wrong_signature_is_refused(tmp_path):
    model_dir = write_model(tmp_path / "m", "def model_fn():\n    return None\n")
    with pytest.raises(TypeError, match=r"model_fn\(model_dir\)"):
        load_model(model_dir)


def test_errors_in_user_code_become_model_errors(tmp_path):
    model_dir = write_model(
        tmp_path / "m",
        """
        def model_fn(model_dir):
            return None


        def predict_fn(data, model):
            if len(data) == 2:
                return [1]
            return [1 / 0 for _ in data]
        """,
    )
    handler = load_model(model_dir)
    with pytest.raises(ModelError, match="predict_fn raised ZeroDivisionError: division by zero"):
        handler.invoke(b"1\n", "text/csv", "text/csv")
    with pytest.raises(ModelError, match="predict_fn returned 1 predictions for 2 records"):
        handler.invoke(b"1\n2\n", "text/csv", "text/csv")


RAISES_KEY_ERROR = """
def predict_fn(data, model):
    raise KeyError("k")
"""


def test_a_model_error_is_a_500_with_its_message(tmp_path, serve):
    model_dir = write_model(tmp_path / "m", "def model_fn(d):\n    return None\n\n" + RAISES_KEY_ERROR)
    server = serve(model_dir)
    server.wait_until_ready(10)
    reply = invoke(server, "1\n")
    assert reply.status == 500
    assert reply.json() == {"error": "ModelError", "message": "predict_fn raised KeyError: 'k'"}


def test_default_types_are_checked_before_user_code_runs(tmp_path):
    handler = load_model(write_model(tmp_path / "m", SUM_MODEL))
    with pytest.raises(UnsupportedContentType):
        handler.check_content_type("application/x-protobuf")
    with pytest.raises(NotAcceptable):
        handler.invoke(b"1\n", "text/csv", "application/xml")


def test_inference_can_import_modules_packaged_next_to_it(tmp_path):
    model_dir = write_model(
        tmp_path / "m",
        """
        from helpers_for_sagepilot_test import triple


        def model_fn(model_dir):
            return None


        def predict_fn(data, model):
            return [triple(sum(record)) for record in data]
        """,
        files={"code/helpers_for_sagepilot_test.py": "def triple(x):\n    return 3 * x\n"},
    )
    handler = load_model(model_dir)
    assert handler.invoke(b"1,2\n", "text/csv", "application/json") == (b'{"predictions":[9.0]}\n', "application/json")


def test_sagemaker_program_names_the_module(tmp_path, monkeypatch):
    model_dir = write_model(tmp_path / "m", files={"code/serve.py": SUM_MODEL})
    monkeypatch.setenv("SAGEMAKER_PROGRAM", "serve.py")
    handler = load_model(model_dir)
    assert handler.invoke(b"1,2\n", "text/csv", "text/csv") == (b"3.0\n", "text/csv")


def test_without_code_a_model_joblib_is_loaded_with_joblib(tmp_path):
    estimator = train_classifier(seed=3)
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    joblib.dump(estimator, model_dir / "model.joblib")
    archive = package_model_dir(model_dir, tmp_path / "model.tar.gz")
    handler = load_model(archive)
    records = feature_rows(10, seed=1)
    body, _ = handler.invoke(to_csv(records).encode(), "text/csv", "text/csv")
    assert [int(x) for x in body.decode().splitlines()] == [int(x) for x in estimator.predict(records)]
    with pytest.raises(BadRequest, match="expects 4"):
        handler.invoke(b"1,2\n", "text/csv", "text/csv")


def test_without_code_or_model_file_the_load_says_what_is_missing(tmp_path):
    archive = package_model({"weights.bin": b"\x00"}, tmp_path / "model.tar.gz")
    with pytest.raises(FileNotFoundError, match=r"package code/inference\.py with a model_fn"):
        load_model(archive)


def test_two_models_with_the_same_module_name_do_not_collide(tmp_path):
    code = (
        "def model_fn(model_dir):\n    return {n}\n\n\ndef predict_fn(data, model):\n    return [model] * len(data)\n"
    )
    first = load_model(write_model(tmp_path / "a", code.format(n=1)))
    second = load_model(write_model(tmp_path / "b", code.format(n=2)))
    assert first.invoke(b"0\n", "text/csv", "text/csv")[0] == b"1\n"
    assert second.invoke(b"0\n", "text/csv", "text/csv")[0] == b"2\n"
    assert first.module is not second.module
