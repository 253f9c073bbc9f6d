"""The containers SageMaker would run for a model: `sagepilot_model_server` processes, one per model artifact.

SageMaker starts the model's container on instances of its own for a transform job or an endpoint
variant. The sandbox starts `sagepilot_model_server` (container/) instead, whatever the model's Image
says, and keeps it for every later user of the same artifact:

- one server per model data URL and object version (its ETag): a transform job and an endpoint variant
  of the same model share it; a new upload to the same URL gets a new server;
- `isolation="process"` (the default): each server is a subprocess (`model_worker`: the container's
  `serve` command, which also ends when the sandbox does), so each model's `code/inference.py` is
  imported in a process of its own, as container/README.md advises; its log is `model-<digest>.log`
  in `log_dir`.
  `isolation="thread"`: in this process (`start_server`), quicker to start, for tests;
- the archive is read from the sandbox's S3 (moto's backend, see `storage`) and handed to the server as
  a local file, so the server needs no credentials and the same code works under `mock_aws`;
- a missing artifact is SageMaker's `Failed to download model data for container "container_1" from URL:
  ...` (`ModelUnavailable`); a model whose `model_fn` fails leaves its server answering 500, as the
  container's `/ping` and `/invocations` would;
- servers accept request bodies up to 100 MB (the largest MaxPayloadInMB a transform job may ask for);
  the 6 MB limit of real-time invocations is enforced by SageMaker's front end (`invocations`).

`health_check(url, window)` is SageMaker's start-up health check as an endpoint variant meets it: the
model's server (started if needed) must answer `GET /ping` 200 with its model loaded within `window`
seconds of the server's start (the time counts from the start, so a server shared with an earlier user
gives the same verdict every time). A model that fails to load, or loads later than that, or a server
that does not start, is `Unhealthy`. An artifact that cannot be downloaded is not judged here (the
endpoint serves, and its invocations answer with the download failure, as before).

A server runs with the model container's `environment` (`containers.resolve_container`: e.g.
`SAGEMAKER_PROGRAM` and `SAGEMAKER_SUBMIT_DIRECTORY` for a user's entry point); the same artifact with
another environment gets a server of its own.

`resolve_model_data_url` reads CreateModel's definition as SageMaker does: `PrimaryContainer` (or the
first of `Containers`) with a `ModelDataUrl`, or a `ModelPackageName` whose
`InferenceSpecification.Containers[0].ModelDataUrl` is used. `stop()` ends every server (Sandbox.stop).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from moto.sagemaker.models import sagemaker_backends

from sagepilot_sandbox import storage
from sagepilot_sandbox.bus import DEFAULT_ACCOUNT, DEFAULT_REGION
from sagepilot_sandbox.sagemaker import roles

Isolation = Literal["process", "thread"]
MAX_SERVER_PAYLOAD_MB = 100
_LISTENING = "sagepilot model server listening on "


class ModelUnavailable(Exception):
    """The model cannot be served (no artifact, no model, a server that did not start); `reason` says so
    in SageMaker's words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CannotDownload(ModelUnavailable):
    """What the container needs cannot be downloaded as the model's execution role (the artifact or its sources
    denied, the sources missing): SageMaker fails the endpoint with the download failure."""


@dataclass(frozen=True)
class Unhealthy:
    """Why a model's container did not pass SageMaker's start-up health check."""

    detail: str


@dataclass(frozen=True)
class ModelResponse:
    status: int
    body: bytes
    content_type: str
    seconds: float

    @property
    def message(self) -> str:
        """The error's message as the model server wrote it (`{"error", "message"}`), else the body."""
        text = self.body.decode("utf-8", "replace").strip()
        with contextlib.suppress(ValueError, AttributeError):
            document = json.loads(text)
            if isinstance(document, dict) and isinstance(document.get("message"), str):
                return str(document["message"])
        return text


def download_failure(url: str) -> str:
    return (
        f'Failed to download model data for container "container_1" from URL: "{url}". Please ensure that there '
        "is an object located at the URL and that the role passed to CreateModel has permissions to download "
        "the object."
    )


def resolve_model_data_url(model_name: str, *, account: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION) -> str:
    """The model artifact SageMaker would load for a model created with CreateModel, which SageMaker
    downloads as the model's execution role: ModelUnavailable with its download failure (and the
    denial) when the role may not read it (`roles`), or when it is not in S3."""
    url = _artifact_url(model_name, account=account, region=region)
    role = sagemaker_backends[account][region]._models[model_name].execution_role_arn
    try:
        bucket, key = storage.parse_uri(url)
        if role:
            roles.check_read(str(role), bucket, key, account=account)
    except ValueError:
        raise ModelUnavailable(download_failure(url)) from None
    except roles.AccessDenied as denied:
        raise CannotDownload(f"{download_failure(url)} ({denied.reason})") from None
    return url


def _artifact_url(model_name: str, *, account: str, region: str) -> str:
    backend = sagemaker_backends[account][region]
    model = backend._models.get(model_name)
    if model is None:
        raise ModelUnavailable(f'Could not find model "{model_name}".')
    container = model.primary_container or (model.containers[0] if model.containers else {})
    if container.get("ModelDataUrl"):
        return str(container["ModelDataUrl"])
    package_name = container.get("ModelPackageName")
    if package_name:
        arn = backend.model_package_name_mapping.get(package_name, package_name)
        package = backend.model_packages.get(arn)
        if package is None:
            raise ModelUnavailable(f"Model package {package_name} of model {model_name} was not found.")
        containers = (package.inference_specification or {}).get("Containers") or []
        if containers and containers[0].get("ModelDataUrl"):
            return str(containers[0]["ModelDataUrl"])
        raise ModelUnavailable(f"Model package {package_name} has no ModelDataUrl in its InferenceSpecification.")
    raise ModelUnavailable(f"Model {model_name} has no ModelDataUrl (the sandbox serves model artifacts only).")


class _Server:
    """One running model server and a keep-alive connection per calling thread."""

    def __init__(self, url: str, stop: Any, key: str) -> None:
        self.url = url
        self.key = key
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", int(parts.port or 80)
        self._stop = stop
        self._local = threading.local()
        self.invocations = 0

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        for attempt in (1, 2):
            conn = self._connection(fresh=attempt == 2)
            try:
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
                data = response.read()
                return response.status, dict(response.getheaders()), data
            except (ConnectionError, http.client.HTTPException, OSError):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> ModelResponse:
        headers = {"Content-Length": str(len(body))}
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        started = time.perf_counter()
        try:
            status, response_headers, data = self.request("POST", "/invocations", body, headers)
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise ModelUnavailable(f"the model container stopped answering: {type(exc).__name__}: {exc}") from exc
        self.invocations += 1
        lowered = {k.lower(): v for k, v in response_headers.items()}
        return ModelResponse(
            status, data, lowered.get("content-type", "application/octet-stream"), time.perf_counter() - started
        )

    def ping(self) -> tuple[int, dict[str, Any]]:
        status, _headers, data = self.request("GET", "/ping")
        try:
            document = json.loads(data)
        except ValueError:
            document = {}
        return status, document if isinstance(document, dict) else {}

    def stop(self) -> None:
        self._stop()


class ModelServers:
    """Model servers started on demand, cached per model artifact (see the module docstring)."""

    def __init__(
        self,
        *,
        isolation: Isolation = "process",
        log_dir: Path | None = None,
        start_timeout: float = 90.0,
    ) -> None:
        if isolation not in ("process", "thread"):
            raise ValueError("isolation is 'process' or 'thread'")
        self.isolation = isolation
        self.log_dir = log_dir
        self.start_timeout = start_timeout
        self._servers: dict[str, _Server] = {}
        self._failures: dict[str, str] = {}
        self._started: dict[str, float] = {}  # key -> monotonic time its server began starting
        self._ready_after: dict[str, float] = {}  # key -> seconds from start to a ready /ping
        self._unhealthy: dict[str, str] = {}  # key -> why its /ping says failed (the model did not load)
        self._locks: dict[str, threading.Lock] = {}
        self._environments: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._work_dir: Path | None = None
        self._stopped = False

    # Public ---------------------------------------------------------------------------------------------
    def invoke(
        self,
        model_data_url: str,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        *,
        account: str = DEFAULT_ACCOUNT,
        environment: Mapping[str, str] | None = None,
    ) -> ModelResponse:
        """POST /invocations to the model's server (started if needed); ModelUnavailable if it cannot run."""
        return self.server_for(model_data_url, account=account, environment=environment).invoke(
            body, content_type, accept
        )

    def server_for(
        self, model_data_url: str, *, account: str = DEFAULT_ACCOUNT, environment: Mapping[str, str] | None = None
    ) -> _Server:
        key = self._server_key(model_data_url, account, environment)
        with self._lock:
            self._environments.setdefault(key, dict(environment or {}))
            if self._stopped:
                raise ModelUnavailable("the sandbox is stopping")
            server = self._servers.get(key)
            if server is not None:
                return server
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                server = self._servers.get(key)
                if server is not None:
                    return server
                if key in self._failures:
                    raise ModelUnavailable(self._failures[key])
            try:
                server = self._start(model_data_url, key, account)
            except ModelUnavailable as exc:
                with self._lock:
                    self._failures[key] = exc.reason
                raise
            with self._lock:
                if self._stopped:
                    server.stop()
                    raise ModelUnavailable("the sandbox is stopping")
                self._servers[key] = server
            return server

    def prewarm(
        self, model_data_url: str, *, account: str = DEFAULT_ACCOUNT, environment: Mapping[str, str] | None = None
    ) -> None:
        """Start the model's server in the background (as SageMaker does while an endpoint is created)."""

        def start() -> None:
            with contextlib.suppress(ModelUnavailable):
                self.server_for(model_data_url, account=account, environment=environment)

        threading.Thread(target=start, name="model-server-prewarm", daemon=True).start()

    def health_check(
        self,
        model_data_url: str,
        window: float,
        *,
        account: str = DEFAULT_ACCOUNT,
        environment: Mapping[str, str] | None = None,
    ) -> Unhealthy | None:
        """None if the model's server answers /ping 200, model loaded, within `window` seconds of its start.

        Starts the server if nobody has yet (in the background) and waits at most until the window ends.
        """
        key = self._server_key(model_data_url, account, environment)
        with self._lock:
            begun = key in self._started or key in self._servers or key in self._failures
        if not begun:
            self.prewarm(model_data_url, account=account, environment=environment)
        first_look = time.monotonic()
        while True:
            with self._lock:
                failure = self._failures.get(key)
                unhealthy = self._unhealthy.get(key)
                ready_after = self._ready_after.get(key)
                started = self._started.get(key, first_look)
                stopped = self._stopped
            if failure is not None:
                if failure == download_failure(model_data_url):
                    return None  # no artifact to start: not judged here (invocations answer ModelUnavailable)
                return Unhealthy(failure)
            if unhealthy is not None:
                return Unhealthy(f"/ping answered that the model failed to load: {unhealthy}")
            if ready_after is not None:
                if ready_after <= window:
                    return None
                return Unhealthy(f"/ping answered 200 only after {ready_after:.1f} s (window {window:g} s)")
            if time.monotonic() - started > window:
                return Unhealthy(f"/ping did not answer 200 within {window:g} s of the container's start")
            if stopped:
                return Unhealthy("the sandbox is stopping")
            time.sleep(0.05)

    @property
    def running(self) -> dict[str, str]:
        """Model data URL (and ETag) -> the URL its server answers on."""
        with self._lock:
            return {key: server.url for key, server in self._servers.items()}

    def stop(self) -> None:
        """Stop every server and remove the archives handed to them; the cache starts afresh afterwards."""
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
            self._failures.clear()
            self._started.clear()
            self._ready_after.clear()
            self._unhealthy.clear()
            self._stopped = True
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
        with self._lock:
            self._stopped = False

    # Starting -------------------------------------------------------------------------------------------
    @classmethod
    def _server_key(cls, model_data_url: str, account: str, environment: Mapping[str, str] | None) -> str:
        """One server per artifact version and container environment."""
        key = cls._key(model_data_url, account)
        if environment:
            key += "#env-" + hashlib.sha256(json.dumps(dict(environment), sort_keys=True).encode()).hexdigest()[:12]
        return key

    @staticmethod
    def _key(model_data_url: str, account: str) -> str:
        try:
            bucket, key = storage.parse_uri(model_data_url)
            etag = str(storage.head(bucket, key, account=account).etag).strip('"')
        except (ValueError, storage.NotFound):
            etag = "missing"
        return f"{model_data_url}#{etag}"

    def _archive(self, model_data_url: str, key: str, account: str) -> Path:
        try:
            bucket, object_key = storage.parse_uri(model_data_url)
            data = storage.read(bucket, object_key, account=account)
        except (ValueError, storage.NotFound):
            raise ModelUnavailable(download_failure(model_data_url)) from None
        with self._lock:
            if self._work_dir is None:
                self._work_dir = Path(tempfile.mkdtemp(prefix="sagepilot-sandbox-models-"))
            work_dir = self._work_dir
        folder = work_dir / hashlib.sha256(key.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        archive = folder / "model.tar.gz"
        archive.write_bytes(data)
        return archive

    def _start(self, model_data_url: str, key: str, account: str) -> _Server:
        began = time.monotonic()
        with self._lock:
            self._started.setdefault(key, began)
        archive = self._archive(model_data_url, key, account)
        server = self._start_thread(archive, key) if self.isolation == "thread" else self._start_process(archive, key)
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                status, document = server.ping()
            except OSError:
                status, document = 0, {}
            if status == 200 and document.get("status") == "ready":
                with self._lock:
                    self._ready_after.setdefault(key, time.monotonic() - began)
                return server
            if status >= 500 or document.get("status") == "failed":
                # The container is unhealthy for good, as SageMaker would see it: keep it, it answers 500.
                with self._lock:
                    self._unhealthy.setdefault(key, str(document.get("error") or f"HTTP {status}"))
                return server
            if time.monotonic() > deadline:
                server.stop()
                raise ModelUnavailable(
                    f"The primary container for model data {model_data_url} did not pass the ping health check "
                    f"within {self.start_timeout:g} s."
                )
            time.sleep(0.05)

    def _start_thread(self, archive: Path, key: str) -> _Server:
        from sagepilot_model_server import start_server

        environment = self._environments.get(key, {})
        server = start_server(
            archive,
            host="127.0.0.1",
            port=0,
            max_payload_bytes=MAX_SERVER_PAYLOAD_MB * 1024 * 1024,
            program=environment.get("SAGEMAKER_PROGRAM"),
            submit_dir=environment.get("SAGEMAKER_SUBMIT_DIRECTORY"),
        )
        return _Server(server.url, server.stop, key)

    def _start_process(self, archive: Path, key: str) -> _Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_", "SM_"))}
        env.update(self._environments.get(key, {}))
        env.update(
            SAGEMAKER_MAX_PAYLOAD_IN_MB=str(MAX_SERVER_PAYLOAD_MB),
            PYTHONUNBUFFERED="1",
            SAGEPILOT_LOG_LEVEL="WARNING",
        )
        log: Any = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = (self.log_dir / f"model-{hashlib.sha256(key.encode()).hexdigest()[:12]}.log").open("a")
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "sagepilot_sandbox.sagemaker.model_worker",
                "serve",
                "--model",
                str(archive),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            text=True,
        )
        if log is not subprocess.DEVNULL:
            log.close()  # the child has its own copy
        lines: queue.Queue[str] = queue.Queue()

        def read_stdout() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)

        threading.Thread(target=read_stdout, name="model-server-stdout", daemon=True).start()

        def stop() -> None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)

        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if process.poll() is not None or time.monotonic() > deadline:
                    stop()
                    raise ModelUnavailable(
                        f"The model server for {key.split('#')[0]} did not start (exit status {process.poll()})."
                    ) from None
                continue
            if line.startswith(_LISTENING):
                return _Server(line[len(_LISTENING) :].strip(), stop, key)
