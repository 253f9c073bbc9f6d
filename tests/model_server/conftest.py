"""Fixtures of the model server tests: example model archives, servers on 127.0.0.1, an HTTP client."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sagepilot_model_server import ModelServer, start_server
from sagepilot_model_server.examples import build_example_model, feature_rows, load_estimator

MB = 1024 * 1024


@dataclass(frozen=True)
class Models:
    v1: Path
    v2: Path
    broken: Path  # 30% of records fail, by hash
    flaky: Path  # 50% of requests fail, seeded random stream
    unloadable: Path  # model_fn raises


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("models")
    return Models(
        v1=build_example_model(root / "v1", seed=1, version="v1"),
        v2=build_example_model(root / "v2", seed=2, version="v2"),
        broken=build_example_model(root / "broken", seed=1, version="v3", broken_share=0.3, failure_seed=11),
        flaky=build_example_model(root / "flaky", seed=1, broken_share=0.5, broken_mode="random", failure_seed=7),
        unloadable=build_example_model(root / "unloadable", seed=1, fail_on_load=True),
    )


@pytest.fixture(scope="session")
def v1_estimator(models: Models) -> Any:
    return load_estimator(models.v1)


@pytest.fixture
def serve() -> Iterator[Callable[..., ModelServer]]:
    """Start servers (`start_server` arguments) on 127.0.0.1 and a free port; all stopped at teardown."""
    servers: list[ModelServer] = []

    def start(source: Any = None, **kwargs: Any) -> ModelServer:
        server = start_server(source, host="127.0.0.1", port=0, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def v1_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """A ready server of the v1 example model, shared by a module's tests."""
    archive = build_example_model(tmp_path_factory.mktemp("v1-shared"), seed=1, version="v1")
    server = start_server(archive, host="127.0.0.1", port=0)
    try:
        server.wait_until_ready(30)
        yield server
    finally:
        server.stop()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def call(
    server: ModelServer,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> Reply:
    """One HTTP request to `server` (on `connection` if given, to test keep-alive)."""
    conn = connection or http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        data = body.encode() if isinstance(body, str) else body
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        if connection is None:
            conn.close()


def invoke(
    server: ModelServer, body: bytes | str, content_type: str | None = "text/csv", accept: str | None = None
) -> Reply:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    return call(server, "POST", "/invocations", body, headers)


def rows(n: int, seed: int = 5) -> list[list[float]]:
    return feature_rows(n, seed=seed)
