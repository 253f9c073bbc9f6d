"""SageMaker's side of what moto does not play: time passes, jobs run, models predict, endpoints change,
alarms judge real traffic, events fire.

Time is compressed. A transform job runs at least `run_seconds`; a training job at least
`training_seconds` (default: `run_seconds`); an endpoint's creation, update or rollback takes
`endpoint_seconds` (SageMaker takes minutes), a change of weights or capacity and a deletion half of
that; an update under a DeploymentConfig also waits out its traffic shifting and baking, counted in AWS
seconds (WaitIntervalInSeconds per step, TerminationWaitInSeconds) and multiplied by `time_scale`
(0.002: SageMaker's 10 minutes take 1.2 s). Every status change is delivered to EventBridge.

Start-up: SageMaker starts a job's instances minutes after it is created, and reads the inputs and the
model only then. `startup_seconds` (default: `SAGEPILOT_SANDBOX_STARTUP_SECONDS`, else 0) makes the
sandbox wait that long after a transform or training job is InProgress before it reads anything, and
before an endpoint's new containers fetch their model, so that an overwrite or a deletion during
start-up can be reproduced: the job reads what the keys hold when it starts, not when it was created.

Models run for real, in `sagepilot_model_server` processes (`modelservers.ModelServers`, one per model
artifact, `model_isolation` "process" or "thread"), started when first needed and stopped by `stop()`:

- Transform jobs: a created job is InProgress (SageMaker emits that state change); then what real
  SageMaker checks before reading records (the manifest and every file it lists exist), then the job
  really runs (`transform.run_transform_job`: records split by line, batched within MaxPayloadInMB,
  sent to the job's model, `<input>.out` written beside the others under S3OutputPath), and after at
  least `run_seconds` it ends Completed, or Failed with SageMaker's kind of FailureReason (e.g.
  `ClientError: ... the model returned 400: record 2 has 5 features; this model expects 4`).
  `fail_next(reason)` fails the next job (before it reads anything) instead.
- Training jobs (`training.on_training_job_created`): the job really trains (`trainer.run_training_job`:
  its train / validation channels, the example classifier, `model.tar.gz` at its ModelArtifacts) and
  ends Completed with `train:accuracy` and `validation:accuracy` in FinalMetricDataList, or Failed with
  `AlgorithmError: ...` for bad data; SageMaker's `SageMaker Training Job State Change` events are
  delivered (InProgress, then the final one). `fail_next_training(reason)` fails the next one instead.
- Endpoints: each pending transition (see `endpoints`) is completed after its time; while an update
  with AutoRollbackConfiguration runs, its alarms are watched every `poll_seconds` and the first one in
  ALARM rolls the update back at once. A create or update starts the model servers of the variants it
  deploys and runs SageMaker's health check on each (`ModelServers.health_check`: `/ping` 200 with the
  model loaded within `health_check_seconds` of the container's start). A variant that does not pass
  fails the transition as SageMaker does: a new endpoint ends `Failed` with "The primary container for
  production variant <v> did not pass the ping health check. ...", an update leaves the endpoint
  InService on its previous config with that FailureReason. Models without a ModelDataUrl (the sandbox
  serves artifacts only) and artifacts that do not exist are not checked.
  `fail_next_endpoint` fails the next create or update.
- Real-time invocations (`invocations`): `aws sagemaker-runtime invoke-endpoint` reaches the variants'
  model servers; each invocation is published to CloudWatch (`metrics.InvocationMetrics`, every
  `metrics_flush_seconds`).
- Alarms: with `alarm_evaluation_seconds` set, every alarm is evaluated that often on the compressed
  alarm clock of `alarm_time_scale` (real seconds per second of an alarm's Period; see
  `alarms.evaluate_alarm`). With 0.05, a 60-s period is 3 real seconds: the stack's `-5xx` alarm goes
  to ALARM within a few seconds of a broken canary's errors and back to OK 3 s after they stop, the p99
  `-latency` alarm needs two such windows, and a `-low-traffic` alarm (300-s periods, missing data
  breaching) fires after 15 s without invocations per idle period (IdleMinutes / 5, so tag a group
  `sagepilot:idle-minutes` = 5 for one period). Without it, alarms change only when told to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagepilot_sandbox import faithful
from sagepilot_sandbox.cloudwatch import alarms
from sagepilot_sandbox.sagemaker import endpoints, invocations, trainer, training, transform
from sagepilot_sandbox.sagemaker.containers import (
    ImageNotPullable,
    ModelContainer,
    check_artifact_exists,
    check_image,
    resolve_container,
)
from sagepilot_sandbox.sagemaker.metrics import InvocationMetrics
from sagepilot_sandbox.sagemaker.modelservers import CannotDownload, Isolation, ModelServers, ModelUnavailable
from sagepilot_sandbox.sagemaker.trainer import TrainingResult
from sagepilot_sandbox.sagemaker.transform import TransformResult

logger = logging.getLogger(__name__)

STARTUP_ENV = "SAGEPILOT_SANDBOX_STARTUP_SECONDS"


@dataclass
class SageMakerSimulator:
    run_seconds: float = 2.0
    endpoint_seconds: float = 1.0
    time_scale: float = 0.002
    poll_seconds: float = 0.05
    alarm_evaluation_seconds: float | None = None
    alarm_time_scale: float = 1.0
    training_seconds: float | None = None
    startup_seconds: float = field(default_factory=lambda: float(os.environ.get(STARTUP_ENV, "0") or 0))
    model_isolation: Isolation = "process"
    log_dir: Path | None = None
    metrics_flush_seconds: float = 0.25
    # SageMaker's start-up window for a variant's container (its ContainerStartupHealthCheckTimeoutInSeconds),
    # in sandbox seconds; tests make it short to fail a slow model quickly.
    health_check_seconds: float = 60.0
    injected_failures: list[tuple[str, str]] = field(default_factory=list)  # (name fragment, reason)
    injected_training_failures: list[tuple[str, str]] = field(default_factory=list)
    finished: dict[str, str] = field(default_factory=dict)  # transform job name -> final status
    transform_results: dict[str, TransformResult] = field(default_factory=dict)
    training_results: dict[str, TrainingResult] = field(default_factory=dict)
    endpoint_events: list[dict[str, object]] = field(default_factory=list)  # what transitions emitted
    servers: ModelServers = field(init=False)
    metrics: InvocationMetrics = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.servers = ModelServers(isolation=self.model_isolation, log_dir=self.log_dir)
        self.metrics = InvocationMetrics(self.metrics_flush_seconds)

    def attach(self) -> None:
        self._stop.clear()
        faithful.on_transform_job_created(self.on_created)
        endpoints.on_endpoint_transition(self.on_endpoint_transition)
        training.on_training_job_created(self.on_training_created)
        invocations.configure(self.servers, self.metrics)
        self.metrics.start()
        if self.alarm_evaluation_seconds:
            threading.Thread(target=self._evaluate_alarms, name="alarm-evaluation", daemon=True).start()

    def detach(self) -> None:
        """Stop the simulator's own threads and its model servers (a job still running fails to finish)."""
        self._stop.set()
        invocations.clear()
        self.metrics.stop()
        self.servers.stop()

    # Transform jobs -------------------------------------------------------------------------------------
    def fail_next(self, reason: str, name_contains: str = "") -> None:
        """The next transform job whose name contains `name_contains` fails with `reason`."""
        with self._lock:
            self.injected_failures.append((name_contains, reason))

    def on_created(self, account: str, region: str, name: str) -> None:
        created = time.monotonic()
        threading.Thread(
            target=self._run_transform, args=(account, region, name, created), name=f"transform:{name}", daemon=True
        ).start()

    def _emit(self, account: str, region: str, name: str) -> None:
        faithful.deliver_event(
            faithful.transform_job_event(name, account=account, region=region), account=account, region=region
        )

    @staticmethod
    def _take(injected: list[tuple[str, str]], name: str) -> str | None:
        for i, (fragment, reason) in enumerate(injected):
            if fragment in name:
                del injected[i]
                return reason
        return None

    def _injected(self, name: str) -> str | None:
        with self._lock:
            return self._take(self.injected_failures, name)

    def _run_transform(self, account: str, region: str, name: str, created: float) -> None:
        if self._stop.wait(0.05):
            return
        with contextlib.suppress(KeyError):  # the account was reset under it
            self._emit(account, region, name)
            if self._stop.wait(self.startup_seconds):
                return
            reason = faithful.check_transform_inputs(name, account=account, region=region) or self._injected(name)
            result = TransformResult("Failed", reason) if reason else None
            if result is None:
                result = transform.run_transform_job(name, self.servers, account=account, region=region)
            if self._stop.wait(max(0.0, created + self.run_seconds - time.monotonic())):
                return
            event = faithful.finish_transform_job(
                name, result.status, result.failure_reason, account=account, region=region, stand_in_outputs=False
            )
            with self._lock:
                self.finished[name] = result.status
                self.transform_results[name] = result
            faithful.deliver_event(event, account=account, region=region)

    # Training jobs --------------------------------------------------------------------------------------
    def fail_next_training(self, reason: str, name_contains: str = "") -> None:
        """The next training job whose name contains `name_contains` fails with `reason`."""
        with self._lock:
            self.injected_training_failures.append((name_contains, reason))

    def on_training_created(self, account: str, region: str, name: str) -> None:
        created = time.monotonic()
        threading.Thread(
            target=self._run_training, args=(account, region, name, created), name=f"training:{name}", daemon=True
        ).start()

    def _run_training(self, account: str, region: str, name: str, created: float) -> None:
        if self._stop.wait(0.05):
            return
        with contextlib.suppress(KeyError):
            faithful.deliver_event(
                training.training_job_event(name, account=account, region=region), account=account, region=region
            )
            if self._stop.wait(self.startup_seconds):
                return
            with self._lock:
                reason = self._take(self.injected_training_failures, name)
            result = (
                TrainingResult("Failed", failure_reason=reason)
                if reason
                else trainer.run_training_job(name, account=account, region=region)
            )
            duration = self.run_seconds if self.training_seconds is None else self.training_seconds
            if self._stop.wait(max(0.0, created + duration - time.monotonic())):
                return
            event = training.finish_training_job(
                name,
                result.status,
                metrics=result.metrics,
                failure_reason=result.failure_reason,
                account=account,
                region=region,
            )
            with self._lock:
                self.training_results[name] = result
            faithful.deliver_event(event, account=account, region=region)

    # Endpoints --------------------------------------------------------------------------------------------
    def fail_next_endpoint(self, reason: str = "", name_contains: str = "", *, rollback: bool = False) -> None:
        """The next endpoint create or update whose name contains `name_contains` fails (see endpoints)."""
        endpoints.fail_next_endpoint(reason, name_contains, rollback=rollback)

    def transition_seconds(self, transition: endpoints.Transition) -> float:
        """How long the sandbox takes for a transition SageMaker takes minutes for."""
        base = self.endpoint_seconds / 2 if transition.kind in ("weights", "delete") else self.endpoint_seconds
        return base + transition.bake_seconds * self.time_scale

    def on_endpoint_transition(self, account: str, region: str, name: str) -> None:
        transition = endpoints.pending_endpoint_transition(name, account=account, region=region)
        if transition is not None:
            if transition.kind in ("create", "update") and not self.startup_seconds:
                self._prewarm(account, region, name, transition)
            threading.Thread(
                target=self._run_transition,
                args=(account, region, name, transition),
                name=f"endpoint:{name}:{transition.kind}",
                daemon=True,
            ).start()

    def _prewarm(self, account: str, region: str, name: str, transition: endpoints.Transition) -> None:
        """Start the model servers of what the endpoint is about to serve (as SageMaker starts containers)."""
        backend: Any = faithful.sagemaker_backend(account, region)
        endpoint = backend.endpoints.get(name)
        config_name = transition.config_name or (endpoint.endpoint_config_name if endpoint is not None else "")
        config = backend.endpoint_configs.get(config_name)
        for spec in endpoints.config_variants(config) if config is not None else []:
            with contextlib.suppress(ModelUnavailable, KeyError):
                container = resolve_container(str(spec.get("ModelName", "")), account=account, region=region)
                self.servers.prewarm(container.model_data_url, account=account, environment=container.environment)

    def _deployed_models(
        self, account: str, region: str, name: str, transition: endpoints.Transition
    ) -> list[tuple[str, ModelContainer | str]]:
        """(variant, container) of what a create or update deploys, or (variant, SageMaker's failure) for a
        model whose role may not pull its image or read its artifact, or whose artifact is not there; models
        without an artifact left out."""
        backend: Any = faithful.sagemaker_backend(account, region)
        endpoint = backend.endpoints.get(name)
        config_name = transition.config_name or (endpoint.endpoint_config_name if endpoint is not None else "")
        config = backend.endpoint_configs.get(config_name)
        found: list[tuple[str, ModelContainer | str]] = []
        for spec in endpoints.config_variants(config) if config is not None else []:
            variant = str(spec["VariantName"])
            model_name = str(spec.get("ModelName", ""))
            try:
                check_image(model_name, account=account, region=region)
                container = resolve_container(model_name, account=account, region=region)
                check_artifact_exists(container, account=account)
                found.append((variant, container))
            except ImageNotPullable as denied:
                found.append((variant, denied.endpoint_failure(variant)))
            except CannotDownload as denied:
                found.append((variant, denied.reason))
            except (ModelUnavailable, KeyError):
                continue
        return found

    def health_check(self, account: str, region: str, name: str, transition: endpoints.Transition) -> str:
        """SageMaker's start-up health check of the variants a create or update deploys: "" when all pass,
        else the FailureReason SageMaker gives (the first variant that did not pass)."""
        for variant, container in self._deployed_models(account, region, name, transition):
            if isinstance(container, str):
                logger.warning(
                    "endpoint variant could not pull its image or download its model",
                    extra={"endpoint": name, "variant": variant, "why": container},
                )
                return container
            unhealthy = self.servers.health_check(
                container.model_data_url, self.health_check_seconds, account=account, environment=container.environment
            )
            if unhealthy is not None:
                logger.warning(
                    "endpoint variant did not pass the health check",
                    extra={
                        "endpoint": name,
                        "variant": variant,
                        "model": container.model_data_url,
                        "why": unhealthy.detail,
                    },
                )
                return endpoints.health_check_reason(variant)
        return ""

    def _run_transition(self, account: str, region: str, name: str, transition: endpoints.Transition) -> None:
        if self.startup_seconds and transition.kind in ("create", "update"):
            if self._stop.wait(self.startup_seconds):
                return
            self._prewarm(account, region, name, transition)
        deadline = time.monotonic() + self.transition_seconds(transition)
        while time.monotonic() < deadline and not self._stop.is_set():
            if transition.alarms and endpoints.alarms_in_alarm(transition.alarms, account=account, region=region):
                break
            time.sleep(min(self.poll_seconds, max(0.0, deadline - time.monotonic())))
        if self._stop.is_set():
            return
        failure = ""
        if transition.kind in ("create", "update"):
            with contextlib.suppress(KeyError):  # the account was reset under it
                failure = self.health_check(account, region, name, transition)
            if self._stop.is_set():
                return
        event = endpoints.complete_endpoint_transition(
            name, account=account, region=region, token=transition.token, deliver=True, failure=failure
        )
        if event is not None:
            with self._lock:
                self.endpoint_events.append(event)

    # Alarms ----------------------------------------------------------------------------------------------
    def _evaluate_alarms(self) -> None:
        interval = self.alarm_evaluation_seconds or 1.0
        while not self._stop.wait(interval):
            try:
                for account, region in self._regions():
                    alarms.evaluate_alarms(account=account, region=region, time_scale=self.alarm_time_scale)
            except Exception:  # noqa: BLE001, S112 - an evaluation racing a deletion is retried next time
                continue

    @staticmethod
    def _regions() -> list[tuple[str, str]]:
        return [(faithful.DEFAULT_ACCOUNT, "us-east-1")]
