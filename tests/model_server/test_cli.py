"""`python -m sagepilot_model_server serve`, as the Dockerfile's ENTRYPOINT runs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from sagepilot_model_server.examples import feature_rows, load_estimator, to_csv

from .conftest import Reply


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def test_serve_binds_sagemaker_bind_to_port_serves_the_model_and_stops_on_sigterm(models, tmp_path):
    port = free_port()
    env = {**os.environ, "SAGEMAKER_BIND_TO_PORT": str(port), "SM_MODEL_DIR": str(models.v1.parent)}
    process = subprocess.Popen(
        [sys.executable, "-m", "sagepilot_model_server", "serve", "--host", "127.0.0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"sagepilot model server listening on http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while http(port, "GET", "/ping").json()["status"] != "ready":
            assert time.monotonic() < deadline, "the model never became ready"
            time.sleep(0.05)
        records = feature_rows(20, seed=50)
        reply = http(port, "POST", "/invocations", to_csv(records).encode(), {"Content-Type": "text/csv"})
        assert reply.status == 200
        assert [int(x) for x in reply.text.splitlines()] == [int(x) for x in load_estimator(models.v1).predict(records)]
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        _, stderr = process.communicate()
    assert "model loaded" in stderr


def test_only_serve_is_a_command():
    result = subprocess.run(
        [sys.executable, "-m", "sagepilot_model_server", "train"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "invalid choice: 'train'" in result.stderr


def test_strict_ping_from_the_environment(monkeypatch):
    from sagepilot_model_server.__main__ import build_parser

    assert build_parser().parse_args(["serve"]).strict_ping is False
    monkeypatch.setenv("SAGEPILOT_STRICT_PING", "1")
    assert build_parser().parse_args(["serve"]).strict_ping is True
