"""The HTTP side of SageMaker's inference container contract.

- `GET /ping`: answers as soon as the port is bound. 200 `{"status": "loading"}` while the model loads in a
  background thread (503 instead with `ping_while_loading=False`), 200 `{"status": "ready"}` once loaded,
  500 `{"status": "failed", "error": ...}` if loading failed (the container is unhealthy for good).
- `POST /invocations`: 503 + Retry-After while loading; the body (CSV, JSON or JSON Lines by default) goes
  through the model's input_fn / predict_fn / output_fn; the response type follows `Accept` (default: the
  request's type, or `SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`). Bodies over the payload limit (6 MB, or
  `SAGEMAKER_MAX_PAYLOAD_IN_MB`) get 413. Errors are JSON: `{"error": <code>, "message": <sentence>}`.
- `GET /execution-parameters`: batch transform's optional tuning hints.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sagepilot_model_server import codecs
from sagepilot_model_server.errors import (
    BadRequest,
    LengthRequired,
    ModelLoadFailed,
    ModelNotReady,
    ModelServerError,
    PayloadTooLarge,
    UnsupportedContentType,
)
from sagepilot_model_server.handler import InferenceHandler, load_model

log = logging.getLogger(__name__)

MB = 1024 * 1024
DEFAULT_PORT = 8080
DEFAULT_MAX_PAYLOAD_MB = 6
RETRY_AFTER_SECONDS = 2
_DRAIN_LIMIT = 64 * MB  # read and drop at most this much of an oversized body, so the client sees the 413

State = Literal["loading", "ready", "failed"]


@dataclass(frozen=True)
class ModelStatus:
    state: State
    error: str | None = None
    load_seconds: float | None = None


def env_port(default: int = DEFAULT_PORT) -> int:
    """`SAGEMAKER_BIND_TO_PORT`, or 8080."""
    value = os.environ.get("SAGEMAKER_BIND_TO_PORT")
    return int(value) if value else default


def env_max_payload_bytes() -> int:
    """`SAGEMAKER_MAX_PAYLOAD_IN_MB` (set by batch transform; 0 means no limit) in bytes, or 6 MB."""
    value = os.environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB")
    megabytes = int(value) if value else DEFAULT_MAX_PAYLOAD_MB
    return megabytes * MB


class ModelServer:
    """A model server on `host:port` (port 0: a free one); `start()` binds, serves and loads the model.

    `loader` returns the InferenceHandler (e.g. `functools.partial(load_model, "s3://.../model.tar.gz")`); it
    runs in a background thread so /ping answers while it works.
    """

    def __init__(
        self,
        loader: Callable[[], InferenceHandler],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_payload_bytes: int | None = None,
        ping_while_loading: bool = True,
        default_accept: str | None = None,
    ) -> None:
        self._loader = loader
        self.max_payload_bytes = env_max_payload_bytes() if max_payload_bytes is None else max_payload_bytes
        self.ping_while_loading = ping_while_loading
        self.default_accept = default_accept or codecs.media_type(
            os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT")
        )
        self._lock = threading.Lock()
        self._status = ModelStatus("loading")
        self._handler: InferenceHandler | None = None
        self._settled = threading.Event()
        self._stopped = False
        self._httpd = _HTTPServer((host, port), _RequestHandler)
        self._httpd.model_server = self
        self._serve_thread: threading.Thread | None = None
        self._load_thread: threading.Thread | None = None

    # Lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> ModelServer:
        self._serve_thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="model-server-http", daemon=True
        )
        self._serve_thread.start()
        self._load_thread = threading.Thread(target=self._load, name="model-server-load", daemon=True)
        self._load_thread.start()
        log.info("model server listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and remove the model's temporary files (a model_fn still running is left to finish)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            handler, self._handler = self._handler, None
        if self._serve_thread is not None:
            self._httpd.shutdown()
            self._serve_thread.join()
        self._httpd.server_close()
        if handler is not None:
            handler.close()

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _load(self) -> None:
        started = time.monotonic()
        try:
            handler = self._loader()
        except Exception as error:
            log.exception("loading the model failed")
            status = ModelStatus("failed", error=f"{type(error).__name__}: {error}")
            handler = None
        else:
            status = ModelStatus("ready", load_seconds=round(time.monotonic() - started, 3))
            log.info("model loaded in %.2f s", status.load_seconds)
        with self._lock:
            if self._stopped:
                if handler is not None:
                    handler.close()
                return
            self._status, self._handler = status, handler
        self._settled.set()

    # State ----------------------------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104 - not a bind: the address to call us at
        return f"http://{host}:{self.port}"

    @property
    def status(self) -> ModelStatus:
        with self._lock:
            return self._status

    @property
    def handler(self) -> InferenceHandler | None:
        with self._lock:
            return self._handler

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        """Block until the model is loaded; RuntimeError if loading failed, TimeoutError if it takes too long."""
        if not self._settled.wait(timeout):
            raise TimeoutError(f"the model did not finish loading within {timeout} s")
        status = self.status
        if status.state == "failed":
            raise RuntimeError(f"the model failed to load: {status.error}")

    def ready_handler(self) -> InferenceHandler:
        """The loaded handler, or the error to answer an invocation with."""
        with self._lock:
            status, handler = self._status, self._handler
        if status.state == "failed":
            raise ModelLoadFailed(f"the model failed to load, so this container cannot serve: {status.error}")
        if handler is None:
            raise ModelNotReady(f"the model is still loading; retry in {RETRY_AFTER_SECONDS} seconds")
        return handler

    def execution_parameters(self) -> dict[str, Any]:
        return {
            "MaxConcurrentTransforms": max(1, min(4, os.cpu_count() or 1)),
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": self.max_payload_bytes // MB if self.max_payload_bytes else DEFAULT_MAX_PAYLOAD_MB,
        }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops connections when clients open several at once
    model_server: ModelServer


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as SageMaker's front end uses
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm holds the body back until
    # the client acknowledges the headers, which a keep-alive client delays (~40 ms per request on Linux).
    disable_nagle_algorithm = True
    server: _HTTPServer

    @property
    def model_server(self) -> ModelServer:
        return self.server.model_server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    # Routes ---------------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/ping":
            self._ping()
        elif path == "/execution-parameters":
            self._reply_json(200, self.model_server.execution_parameters())
        elif path == "/invocations":
            self._reply_json(405, _error_document("MethodNotAllowed", "use POST /invocations"), {"Allow": "POST"})
        else:
            self._reply_json(404, _error_document("NotFound", f"no route {path!r}; use GET /ping or POST /invocations"))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/invocations":
            self._invocations()
            return
        try:
            self._read_body()
        except ModelServerError:
            self.close_connection = True
        if path == "/ping":
            self._reply_json(405, _error_document("MethodNotAllowed", "use GET /ping"), {"Allow": "GET"})
        else:
            self._reply_json(404, _error_document("NotFound", f"no route {path!r}; use POST /invocations"))

    def _ping(self) -> None:
        server = self.model_server
        status = server.status
        if status.state == "ready":
            self._reply_json(200, {"status": "ready", "load_seconds": status.load_seconds})
        elif status.state == "loading":
            code = 200 if server.ping_while_loading else 503
            self._reply_json(code, {"status": "loading"}, {"Retry-After": str(RETRY_AFTER_SECONDS)})
        else:
            self._reply_json(500, {"status": "failed", "error": status.error})

    def _invocations(self) -> None:
        server = self.model_server
        started = time.monotonic()
        try:
            body = self._read_body()
            handler = server.ready_handler()
            content_type = codecs.media_type(self.headers.get("Content-Type"))
            if content_type is None:
                raise UnsupportedContentType(
                    f"the request has no Content-Type; send one of {', '.join(codecs.SUPPORTED_TYPES)}"
                )
            handler.check_content_type(content_type)
            supported = handler.supported_accepts()
            default = server.default_accept or content_type
            if supported is not None and default not in supported:
                default = codecs.JSON
            accept = codecs.negotiate_accept(self.headers.get("Accept"), default=default, supported=supported)
            if not body:
                raise BadRequest("the request body is empty; send at least one record")
            response, response_type = handler.invoke(body, content_type, accept)
        except ModelNotReady as error:
            self._reply_error(error, {"Retry-After": str(RETRY_AFTER_SECONDS)})
        except ModelServerError as error:
            if error.status >= 500:
                log.warning("invocation failed: %s", error.message)
            self._reply_error(error)
        else:
            log.debug(
                "invocation: %d bytes in, %d out, %.1f ms",
                len(body),
                len(response),
                (time.monotonic() - started) * 1000,
            )
            self._reply(200, response, response_type)

    # Reading --------------------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        limit = self.model_server.max_payload_bytes or None
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        header = self.headers.get("Content-Length")
        if header is None:
            self.close_connection = True
            raise LengthRequired("send a Content-Length header (or Transfer-Encoding: chunked)")
        try:
            length = int(header)
            if length < 0:
                raise ValueError(header)
        except ValueError:
            self.close_connection = True
            raise BadRequest(f"Content-Length {header!r} is not a byte count") from None
        if limit is not None and length > limit:
            self._discard(length)
            raise PayloadTooLarge(_too_large_message(length, limit))
        return self.rfile.read(length)

    def _read_chunked(self, limit: int | None) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise BadRequest("malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if limit is not None and total > limit:
                self.close_connection = True
                raise PayloadTooLarge(_too_large_message(total, limit, at_least=True))
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk

    def _discard(self, length: int) -> None:
        if length > _DRAIN_LIMIT:
            self.close_connection = True
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 * MB))
            if not chunk:
                self.close_connection = True
                return
            remaining -= len(chunk)

    # Writing --------------------------------------------------------------------------------------------------
    def _reply(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _reply_json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        self._reply(status, (json.dumps(document) + "\n").encode(), codecs.JSON, headers)

    def _reply_error(self, error: ModelServerError, headers: dict[str, str] | None = None) -> None:
        self._reply_json(error.status, _error_document(error.code, error.message), headers)


def _error_document(code: str, message: str) -> dict[str, str]:
    return {"error": code, "message": message}


def _too_large_message(size: int, limit: int, *, at_least: bool = False) -> str:
    amount = f"over {size:,}" if at_least else f"{size:,}"
    return (
        f"the request body is {amount} bytes, over the {limit / MB:g} MB limit of a single invocation; "
        "split the records into smaller requests, run a batch transform job for large inputs, "
        "or upload the data to S3 and pass its S3 URI instead"
    )


def start_server(
    source: str | Path | None = None,
    *,
    loader: Callable[[], InferenceHandler] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    program: str | None = None,
    submit_dir: str | None = None,
    s3_client: Any = None,
    max_payload_bytes: int | None = None,
    ping_while_loading: bool = True,
    default_accept: str | None = None,
) -> ModelServer:
    """Start a server for a model (see `resolve_model_source` for `source`) or for a custom `loader`.

    Returns at once, with the port bound and the model loading; call `wait_until_ready()` to wait for it.
    """
    if loader is None:
        loader = functools.partial(load_model, source, program=program, submit_dir=submit_dir, s3_client=s3_client)
    server = ModelServer(
        loader,
        host=host,
        port=port,
        max_payload_bytes=max_payload_bytes,
        ping_while_loading=ping_while_loading,
        default_accept=default_accept,
    )
    return server.start()
