"""Start the whole sandbox: embedded AWS on 127.0.0.1, the stack, its functions and SageMaker's side."""

from __future__ import annotations

import logging
import socket
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from sagepilot_sandbox import faithful
from sagepilot_sandbox.provision import Stack, provision
from sagepilot_sandbox.runtime import LambdaService
from sagepilot_sandbox.simulator import SageMakerSimulator
from sagepilot_sandbox.template import REGION

ROOT = Path(__file__).resolve().parents[2]
# Short waits so that a scenario takes seconds; every other setting is the template's default.
SANDBOX_PARAMETERS = {"BatchingWindowSeconds": "2"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sandbox:
    def __init__(
        self,
        *,
        port: int = 4566,
        root: Path = ROOT,
        overrides: Mapping[str, str] | None = None,
        run_seconds: float = 2.0,
        retry_delay: int = 2,
        log_dir: Path | None = None,
        s3_event_copies: int = 1,
    ) -> None:
        self.port = port
        self.root = root
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self.overrides = {**SANDBOX_PARAMETERS, **(overrides or {})}
        self.simulator = SageMakerSimulator(run_seconds=run_seconds)
        self.retry_delay = retry_delay
        self.log_dir = log_dir or root / ".sandbox" / "logs"
        self.s3_event_copies = s3_event_copies
        self._server: ThreadedMotoServer | None = None
        self.stack: Stack | None = None
        self.lambdas: LambdaService | None = None

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the sandbox accepts any key
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def start(self) -> Stack:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        faithful.install()
        faithful.clear_listeners()
        faithful.s3_event_copies = self.s3_event_copies
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        # The embedded AWS lives in this process: start from an empty account every time.
        reset = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 - our own loopback server
        self.stack = provision(self.root, self.client, overrides=self.overrides)
        self.simulator.attach()
        self.lambdas = LambdaService(self.stack, self.client("sqs"), self.endpoint_url, self.log_dir, self.retry_delay)
        self.lambdas.start()
        return self.stack

    def stop(self) -> None:
        if self.lambdas:
            self.lambdas.stop()
        faithful.clear_listeners()
        faithful.s3_event_copies = 1  # moto is process-wide: leave it as it was found
        if self._server:
            self._server.stop()

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, condition: Any, timeout: float = 30.0, interval: float = 0.25) -> Any:
        """Poll `condition()` until it returns something truthy; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"condition not met within {timeout} s")
