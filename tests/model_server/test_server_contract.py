"""SageMaker's container contract, over real HTTP: /ping, /invocations, payload limits, errors, formats."""

from __future__ import annotations

import http.client
import json
import random
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest

from sagepilot_model_server import load_model
from sagepilot_model_server.examples import record_fails, to_csv, to_jsonl

from .conftest import MB, call, invoke, rows


def predictions_of(estimator, records) -> list[int]:
    return [int(label) for label in estimator.predict(records)]


# /ping and loading ----------------------------------------------------------------------------------------------------
GATED_INFERENCE = """
import sagepilot_test_gate


def model_fn(model_dir):
    sagepilot_test_gate.entered.set()
    if not sagepilot_test_gate.release.wait(10):
        raise TimeoutError("the test never released the gate")
    return "gated model"


def predict_fn(data, model):
    return [sum(record) for record in data]
"""


@pytest.fixture
def gate(monkeypatch):
    """A module the gated model's model_fn imports: it waits on `release` and signals `entered`."""
    module = types.ModuleType("sagepilot_test_gate")
    module.entered = threading.Event()
    module.release = threading.Event()
    monkeypatch.setitem(sys.modules, "sagepilot_test_gate", module)
    yield module
    module.release.set()


def test_ping_is_200_while_model_fn_runs_and_invocations_get_503(tmp_path, serve, gate):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(GATED_INFERENCE)
    server = serve(tmp_path)
    assert gate.entered.wait(10), "model_fn was never called"

    ping = call(server, "GET", "/ping")
    assert ping.status == 200
    assert ping.json() == {"status": "loading"}
    assert server.status.state == "loading"

    early = invoke(server, "1,2\n")
    assert early.status == 503
    assert early.headers["retry-after"] == "2"
    assert early.json()["error"] == "ModelLoading"
    assert "still loading" in early.json()["message"]

    gate.release.set()
    server.wait_until_ready(10)
    ping = call(server, "GET", "/ping")
    assert ping.status == 200
    assert ping.json()["status"] == "ready"
    ready = invoke(server, "1,2\n3,4\n", accept="application/json")
    assert ready.status == 200
    assert ready.json() == {"predictions": [3.0, 7.0]}


def test_strict_ping_is_503_while_loading(models, serve):
    release = threading.Event()

    def slow_loader():
        release.wait(10)
        return load_model(models.v1)

    server = serve(loader=slow_loader, ping_while_loading=False)
    ping = call(server, "GET", "/ping")
    assert (ping.status, ping.json()) == (503, {"status": "loading"})
    release.set()
    server.wait_until_ready(10)
    assert call(server, "GET", "/ping").status == 200


def test_a_model_that_cannot_load_makes_the_container_unhealthy(models, serve):
    server = serve(models.unloadable)
    with pytest.raises(RuntimeError, match="fail_on_load"):
        server.wait_until_ready(10)
    ping = call(server, "GET", "/ping")
    assert ping.status == 500
    assert ping.json()["status"] == "failed"
    assert "SimulatedModelFailure" in ping.json()["error"]
    reply = invoke(server, "1,2,3,4\n")
    assert reply.status == 500
    assert reply.json()["error"] == "ModelLoadFailed"
    assert "fail_on_load" in reply.json()["message"]


def test_a_missing_model_makes_the_container_unhealthy(tmp_path, serve):
    server = serve(tmp_path / "nowhere")
    with pytest.raises(RuntimeError, match="no model at"):
        server.wait_until_ready(10)
    assert call(server, "GET", "/ping").status == 500


# Formats, order, Accept -----------------------------------------------------------------------------------------------
def test_csv_round_trip_keeps_the_order_of_records(v1_server, v1_estimator):
    records = rows(300)
    reply = invoke(v1_server, to_csv(records))
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/csv"
    assert reply.text.endswith("\n")
    lines = reply.text.splitlines()
    assert [int(line) for line in lines] == predictions_of(v1_estimator, records)
    assert len(set(lines)) == 2  # both classes occur, so the order check means something


def test_jsonlines_round_trip_keeps_the_order_of_records(v1_server, v1_estimator):
    records = rows(200, seed=6)
    reply = invoke(v1_server, to_jsonl(records), content_type="application/jsonlines")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/jsonlines"
    assert [json.loads(line) for line in reply.text.splitlines()] == predictions_of(v1_estimator, records)


@pytest.mark.parametrize(
    "shape",
    [
        lambda records: records,
        lambda records: {"instances": records},
        lambda records: [{"features": record} for record in records],
        lambda records: {"instances": [{"features": record} for record in records]},
    ],
    ids=["array-of-arrays", "instances", "array-of-objects", "instances-of-objects"],
)
def test_json_round_trip(v1_server, v1_estimator, shape):
    records = rows(50, seed=7)
    reply = invoke(v1_server, json.dumps(shape(records)), content_type="application/json")
    assert reply.status == 200
    assert reply.json() == {"predictions": predictions_of(v1_estimator, records)}


def test_json_single_record(v1_server, v1_estimator):
    record = rows(1, seed=8)[0]
    for body in (record, {"features": record}):
        reply = invoke(v1_server, json.dumps(body), content_type="application/json; charset=utf-8")
        assert reply.status == 200
        assert reply.json() == {"predictions": predictions_of(v1_estimator, [record])}


@pytest.mark.parametrize(
    ("accept", "expected_type"),
    [
        (None, "text/csv"),
        ("*/*", "text/csv"),
        ("text/*", "text/csv"),
        ("application/json", "application/json"),
        ("application/json; charset=utf-8", "application/json"),
        ("application/jsonlines", "application/jsonlines"),
        ("application/x-jsonlines", "application/jsonlines"),
        ("application/xml, application/json;q=0.5, application/jsonlines;q=0.9", "application/jsonlines"),
        ("application/xml, */*;q=0.1", "text/csv"),
    ],
)
def test_accept_chooses_the_response_type(v1_server, v1_estimator, accept, expected_type):
    records = rows(20, seed=9)
    expected = predictions_of(v1_estimator, records)
    reply = invoke(v1_server, to_csv(records), accept=accept)
    assert reply.status == 200
    assert reply.headers["content-type"] == expected_type
    if expected_type == "application/json":
        assert reply.json() == {"predictions": expected}
    elif expected_type == "application/jsonlines":
        assert [json.loads(line) for line in reply.text.splitlines()] == expected
    else:
        assert [int(line) for line in reply.text.splitlines()] == expected


@pytest.mark.parametrize("accept", ["application/xml", "image/*", "application/json;q=0"])
def test_unsupported_accept_is_406(v1_server, accept):
    reply = invoke(v1_server, "1,2,3,4\n", accept=accept)
    assert reply.status == 406
    assert reply.json()["error"] == "NotAcceptable"
    message = reply.json()["message"]
    assert repr(accept) in message
    for supported in ("text/csv", "application/json", "application/jsonlines"):
        assert supported in message


def test_default_accept_from_the_environment(models, serve, monkeypatch, v1_estimator):
    monkeypatch.setenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/jsonlines")
    server = serve(models.v1)
    server.wait_until_ready(10)
    records = rows(3)
    reply = invoke(server, to_csv(records))
    assert reply.headers["content-type"] == "application/jsonlines"
    assert [json.loads(line) for line in reply.text.splitlines()] == predictions_of(v1_estimator, records)


# Payload limit --------------------------------------------------------------------------------------------------------
def test_payload_over_6_mb_is_413_and_the_connection_stays_usable(v1_server):
    connection = http.client.HTTPConnection("127.0.0.1", v1_server.port, timeout=10)
    try:
        reply = call(
            v1_server,
            "POST",
            "/invocations",
            b"1" * (6 * MB + 1),
            {"Content-Type": "text/csv"},
            connection=connection,
        )
        assert reply.status == 413
        assert reply.json()["error"] == "PayloadTooLarge"
        message = reply.json()["message"]
        assert "6 MB" in message
        assert "batch transform" in message
        assert "S3 URI" in message
        after = call(v1_server, "GET", "/ping", connection=connection)
        assert after.status == 200
    finally:
        connection.close()


def test_payload_limit_is_inclusive(models, serve, v1_estimator):
    server = serve(models.v1, max_payload_bytes=1024)
    server.wait_until_ready(10)
    line = "1,2,3,4\n"
    body = line * (1024 // len(line))
    assert len(body) == 1024
    reply = invoke(server, body)
    assert reply.status == 200
    assert len(reply.text.splitlines()) == 128
    assert invoke(server, body + "\n").status == 413


def test_payload_limit_from_batch_transform_environment(models, serve, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", "1")
    server = serve(models.v1)
    server.wait_until_ready(10)
    assert server.max_payload_bytes == MB
    reply = invoke(server, b"1" * (MB + 1))
    assert reply.status == 413
    assert "1 MB" in reply.json()["message"]
    assert call(server, "GET", "/execution-parameters").json()["MaxPayloadInMB"] == 1


def test_chunked_request_body(v1_server, v1_estimator):
    records = rows(10)
    body = to_csv(records).encode()
    connection = http.client.HTTPConnection("127.0.0.1", v1_server.port, timeout=10)
    try:
        connection.request(
            "POST", "/invocations", body=iter([body[:7], body[7:]]), headers={"Content-Type": "text/csv"}
        )
        response = connection.getresponse()
        assert response.status == 200
        assert [int(x) for x in response.read().decode().splitlines()] == predictions_of(v1_estimator, records)
    finally:
        connection.close()


# Malformed input ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content_type", "body", "status", "fragments"),
    [
        ("text/csv", "1,2,3,4\n5,6,abc,8\n", 400, ["CSV line 2, column 3", "'abc' is not a number"]),
        ("text/csv", "a,b,c,d\n1,2,3,4\n", 400, ["CSV line 1, column 1", "no header row"]),
        ("text/csv", "1,2,3,4\n5,6,7\n", 400, ["line 2 has 3 features but line 1 has 4"]),
        ("text/csv", "1,2,3\n5,6,7\n", 400, ["record 1 has 3 features", "expects 4"]),
        ("text/csv", "1,2,3,4\n\n5,6,7,8\n", 400, ["CSV line 2 is empty"]),
        ("text/csv", "1,2,nan,4\n", 400, ["'nan' is not a finite number"]),
        ("text/csv", "\n\n", 400, ["no records"]),
        ("application/json", '{"instances": [[1,2,3,4],', 400, ["not valid JSON"]),
        ("application/json", '{"rows": [[1,2,3,4]]}', 400, ["'instances'", "'features'"]),
        ("application/json", '[[1,2,3,4],[1,"x",3,4]]', 400, ["record 2, feature 2", "'x' is not a number"]),
        ("application/json", "[[1,2,3,4],[true,2,3,4]]", 400, ["record 2, feature 1"]),
        ("application/json", '"hello"', 400, ["array or an object"]),
        ("application/json", "[]", 400, ["no records"]),
        ("application/jsonlines", "[1,2,3,4]\n{oops}\n", 400, ["JSON Lines line 2 is not valid JSON"]),
        ("application/jsonlines", "[1,2,3,4]\n[1,2,3,4,5]\n", 400, ["line 2 has 5 features but line 1 has 4"]),
        ("application/jsonlines", '[1,2,3,4]\n"text"\n', 400, ["JSON Lines line 2", "a string"]),
        ("application/xml", "<rows/>", 415, ["'application/xml' is not supported", "text/csv"]),
        ("application/octet-stream", "\x00\x01", 415, ["not supported"]),
        (None, "1,2,3,4\n", 415, ["no Content-Type"]),
        ("text/csv", "", 400, ["body is empty"]),
    ],
)
def test_malformed_requests_get_a_clear_4xx(v1_server, content_type, body, status, fragments):
    reply = invoke(v1_server, body, content_type=content_type)
    assert reply.status == status, reply.body
    message = reply.json()["message"]
    for fragment in fragments:
        assert fragment in message


def test_invalid_utf8_is_400(v1_server):
    reply = invoke(v1_server, b"1,2,3,\xff\n")
    assert reply.status == 400
    assert "not valid UTF-8" in reply.json()["message"]


def test_routes_and_methods(v1_server):
    assert call(v1_server, "GET", "/nope").status == 404
    wrong = call(v1_server, "GET", "/invocations")
    assert (wrong.status, wrong.headers["allow"]) == (405, "POST")
    assert call(v1_server, "POST", "/ping", b"x", {"Content-Type": "text/plain"}).status == 405
    parameters = call(v1_server, "GET", "/execution-parameters")
    assert parameters.status == 200
    assert parameters.json()["BatchStrategy"] == "MULTI_RECORD"
    assert parameters.json()["MaxPayloadInMB"] == 6
    assert parameters.json()["MaxConcurrentTransforms"] >= 1


# Broken models --------------------------------------------------------------------------------------------------------
def test_broken_model_fails_exactly_the_records_its_share_selects(models, serve, v1_estimator):
    server = serve(models.broken)
    server.wait_until_ready(10)
    records = rows(200, seed=12)
    expected_failures = [record_fails(record, 0.3, 11) for record in records]
    assert 30 <= sum(expected_failures) <= 90  # about 30% of 200

    statuses = []
    for record in records:
        reply = invoke(server, to_csv([record]))
        statuses.append(reply.status)
        if reply.status == 500:
            assert reply.json()["error"] == "ModelError"
            assert "SimulatedModelFailure" in reply.json()["message"]
            assert "record 1 (simulated)" in reply.json()["message"]
        else:
            assert int(reply.text) == predictions_of(v1_estimator, [record])[0]
    assert statuses == [500 if fails else 200 for fails in expected_failures]

    good = [record for record, fails in zip(records, expected_failures, strict=True) if not fails]
    bad_index = expected_failures.index(True)
    assert invoke(server, to_csv(good)).status == 200
    mixed = invoke(server, to_csv([*good[:5], records[bad_index], *good[5:10]]))
    assert mixed.status == 500
    assert "record 6" in mixed.json()["message"]


def test_randomly_broken_model_follows_its_seeded_stream(models, serve):
    server = serve(models.flaky)
    server.wait_until_ready(10)
    draws = random.Random(7)
    expected = [500 if draws.random() < 0.5 else 200 for _ in range(40)]
    statuses = [invoke(server, "1,2,3,4\n").status for _ in range(40)]
    assert statuses == expected
    assert 8 <= statuses.count(500) <= 32


def test_the_server_stays_up_after_model_errors(models, serve):
    server = serve(models.broken)
    server.wait_until_ready(10)
    for _ in range(3):
        invoke(server, "not,a,number,row\n")
    assert call(server, "GET", "/ping").json()["status"] == "ready"


# Concurrency and versions ---------------------------------------------------------------------------------------------
def test_concurrent_requests_each_get_their_own_predictions(v1_server, v1_estimator):
    batches = [rows(25, seed=100 + i) for i in range(16)]

    def run(records):
        reply = invoke(v1_server, to_csv(records), accept="application/json")
        assert reply.status == 200
        return reply.json()["predictions"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, batches))
    assert results == [predictions_of(v1_estimator, records) for records in batches]


def test_two_versions_side_by_side_in_one_process(models, serve):
    v1 = serve(models.v1)
    v2 = serve(loader=partial(load_model, models.v2))
    v1.wait_until_ready(10)
    v2.wait_until_ready(10)
    body = to_csv(rows(500, seed=13))
    first = invoke(v1, body).text.splitlines()
    second = invoke(v2, body).text.splitlines()
    assert len(first) == len(second) == 500
    differing = sum(a != b for a, b in zip(first, second, strict=True))
    assert 0 < differing < 100  # slightly different, as a retrained version is
