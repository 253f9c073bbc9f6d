"""Start the whole sandbox: embedded AWS on 127.0.0.1, the stack, its functions and SageMaker's side.

Time is compressed (see faithful.py and simulator.py): `run_seconds` per transform job (at least; the
records really go through the model), `training_seconds` per training job (default `run_seconds`),
`endpoint_seconds` per endpoint creation / update / rollback (half for weights and deletions),
`time_scale` sandbox seconds per AWS second of a DeploymentConfig's waits, a schedule fires every
`schedule_seconds`, alarms are evaluated every `alarm_evaluation_seconds` when set (otherwise only
SetAlarmState changes them) on a clock where one second of an alarm's Period lasts `alarm_time_scale`
real seconds (0.05: a 60-s period is 3 s of real traffic). Models run in `sagepilot_model_server`
subprocesses (`model_isolation="process"`; "thread" runs them in this process), one per model
artifact, their logs beside the functions' in `log_dir`; `stop()` ends them. With `record_calls`, every
function's AWS calls are recorded for the IAM check (`lambdas.functions[id].recorded_calls()`, iam_check.py).
`lambda_concurrency` is the account's unreserved Lambda concurrency (default SAGEPILOT_SANDBOX_LAMBDA_CONCURRENCY,
else 10; see runtime.py).
`endpoint_status_spelling` ("describe": InService, "event": IN_SERVICE) spells EndpointStatus in
endpoint events; `s3_event_copies` and `model_package_event_copies` deliver each such event that many
times, to show at-least-once delivery. One sandbox runs at a time in a process (moto's state is
process-wide): starting one stops the one still running.
"""

from __future__ import annotations

import logging
import os
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
from sagepilot_sandbox.lambda_runtime.runtime import CONCURRENCY_ENV, DEFAULT_ACCOUNT_CONCURRENCY, LambdaService
from sagepilot_sandbox.sagemaker import endpoints, registry
from sagepilot_sandbox.sagemaker.modelservers import Isolation
from sagepilot_sandbox.sagemaker.simulator import SageMakerSimulator
from sagepilot_sandbox.stack.provision import Stack, provision
from sagepilot_sandbox.stack.template import REGION, load_template

ROOT = Path(__file__).resolve().parents[2]
# Short waits so that a scenario takes seconds; every other setting is the template's default.
SANDBOX_PARAMETERS = {
    "BatchingWindowSeconds": "2",
    "BakeSeconds": "4",
    "TrainingSettleSeconds": "2",
    # A held job is released once its group has been quiet this long: the batching window, as the template's 60 s
    # and 60 s. (Release messages have a queue of their own: in the intake queue, 100 groups' release messages, sent
    # again every quarter of the quiet, each saw the others as a backlog until the hold's end; bench/README.md.)
    "HoldQuietSeconds": "2",
}


# Connections a client of the sandbox keeps to the embedded AWS. The Lambda service's pollers share one SQS client:
# each SQS event source keeps RECEIVES_IN_FLIGHT receives in flight and deletes from up to five delivering
# threads, each rule or schedule target long-polls its delivery queue (some 45 calls at once with the stack's 3 SQS
# sources and 9 rule and schedule targets); beyond botocore's default pool of 10, each call would open a connection
# and discard it ("Connection pool is full"). A pool opens its connections only as calls need them.
CLIENT_CONNECTIONS = 64

_running: list[Sandbox] = []  # the sandbox that is running in this process, if any


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
        endpoint_seconds: float = 1.0,
        time_scale: float = 0.002,
        schedule_seconds: float = 2.0,
        alarm_evaluation_seconds: float | None = None,
        endpoint_status_spelling: str = "describe",
        model_package_event_copies: int = 1,
        alarm_time_scale: float = 1.0,
        training_seconds: float | None = None,
        model_isolation: Isolation = "process",
        record_calls: bool = False,
        health_check_seconds: float = 60.0,
        lambda_concurrency: int | None = None,
    ) -> None:
        if endpoint_status_spelling not in ("describe", "event"):
            raise ValueError("endpoint_status_spelling is 'describe' (InService) or 'event' (IN_SERVICE)")
        self.port = port
        self.root = root
        self.endpoint_url = f"http://127.0.0.1:{port}"
        # The sandbox's short waits apply to the parameters the template declares; explicit overrides
        # must all be declared (CloudFormation refuses unknown parameters).
        declared = load_template(root / "template.yaml").get("Parameters", {})
        defaults = {k: v for k, v in SANDBOX_PARAMETERS.items() if k in declared}
        self.overrides = {**defaults, **(overrides or {})}
        self.log_dir = log_dir or root / ".sandbox" / "logs"
        self.simulator = SageMakerSimulator(
            run_seconds=run_seconds,
            endpoint_seconds=endpoint_seconds,
            time_scale=time_scale,
            alarm_evaluation_seconds=alarm_evaluation_seconds,
            alarm_time_scale=alarm_time_scale,
            training_seconds=training_seconds,
            model_isolation=model_isolation,
            log_dir=self.log_dir,
            health_check_seconds=health_check_seconds,
        )
        self.retry_delay = retry_delay
        if lambda_concurrency is None:
            lambda_concurrency = int(os.environ.get(CONCURRENCY_ENV) or DEFAULT_ACCOUNT_CONCURRENCY)
        if lambda_concurrency < 1:
            raise ValueError(f"lambda_concurrency ({CONCURRENCY_ENV}) must be 1 or more, not {lambda_concurrency}")
        self.lambda_concurrency = lambda_concurrency
        self.record_calls = record_calls
        self.s3_event_copies = s3_event_copies
        self.schedule_seconds = schedule_seconds
        self.endpoint_status_spelling = endpoint_status_spelling
        self.model_package_event_copies = model_package_event_copies
        self._server: ThreadedMotoServer | None = None
        self._stopped = False
        self.stack: Stack | None = None
        self.lambdas: LambdaService | None = None

    def client(self, service: str) -> Any:
        make: Any = boto3.client  # any service by name: the typed stubs know each name only as a literal
        return make(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the sandbox accepts any key
            config=Config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=CLIENT_CONNECTIONS),
        )

    def start(self) -> Stack:
        """Start the embedded AWS and the stack. moto's state is process-wide, so two sandboxes cannot
        run side by side (each would consume the other's queues): one that is still running is stopped."""
        for other in list(_running):
            if other is not self:
                other.stop()
        self._stopped = False
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        faithful.install()
        faithful.clear_listeners()
        faithful.s3_event_copies = self.s3_event_copies
        endpoints.status_spelling = self.endpoint_status_spelling
        registry.event_copies = self.model_package_event_copies
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        # The embedded AWS lives in this process: start from an empty account every time.
        reset = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 - our own loopback server
        self.stack = provision(self.root, self.client, overrides=self.overrides)
        self.simulator.attach()
        self.lambdas = LambdaService(
            self.stack,
            self.client("sqs"),
            self.endpoint_url,
            self.log_dir,
            self.retry_delay,
            clients=self.client,
            schedule_seconds=self.schedule_seconds,
            record_calls=self.record_calls,
            concurrency=self.lambda_concurrency,
        )
        self.lambdas.start()
        _running.append(self)
        return self.stack

    def stop(self) -> None:
        """Stop everything this sandbox started; stopping twice is harmless."""
        if self._stopped:
            return
        self._stopped = True
        self.simulator.detach()
        if self.lambdas:
            self.lambdas.stop()
        if self in _running:
            _running.remove(self)
        if not _running:
            faithful.clear_listeners()  # also sets the endpoint and model package event settings back
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
