"""SageMaker's side of what moto does not play: time passes, jobs run, endpoints change, events fire.

Time is compressed. A transform job runs `run_seconds`; an endpoint's creation, update or rollback
takes `endpoint_seconds` (SageMaker takes minutes), a change of weights or capacity and a deletion
half of that; an update under a DeploymentConfig also waits out its traffic shifting and baking,
counted in AWS seconds (WaitIntervalInSeconds per step, TerminationWaitInSeconds) and multiplied by
`time_scale` (0.002: SageMaker's 10 minutes take 1.2 s). Every status change is delivered to
EventBridge.

Transform jobs: a created job is InProgress (SageMaker emits that state change), then after
`run_seconds` it checks what real SageMaker checks before reading records (the manifest and every file
it lists exist) and ends Completed or Failed with SageMaker's kind of FailureReason. Predictions are
NOT computed here: no model runs in the sandbox yet, so no `<file>.out` is written.

Endpoints: each pending transition (see `endpoints`) is completed after its time; while an update
with AutoRollbackConfiguration runs, its alarms are watched every `poll_seconds` and the first one in
ALARM rolls the update back at once.

Alarms: with `alarm_evaluation_seconds` set, every alarm is evaluated that often (see
`alarms.evaluate_alarm`); by default alarms change only when told to (SetAlarmState).

Tests and the demo can inject failures with `fail_next` (jobs) and `fail_next_endpoint` (endpoints).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sagepilot_sandbox import alarms, endpoints, faithful


@dataclass
class SageMakerSimulator:
    run_seconds: float = 2.0
    endpoint_seconds: float = 1.0
    time_scale: float = 0.002
    poll_seconds: float = 0.05
    alarm_evaluation_seconds: float | None = None
    injected_failures: list[tuple[str, str]] = field(default_factory=list)  # (name fragment, reason)
    finished: dict[str, str] = field(default_factory=dict)  # job name -> final status
    endpoint_events: list[dict[str, object]] = field(default_factory=list)  # what transitions emitted
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def attach(self) -> None:
        self._stop.clear()
        faithful.on_transform_job_created(self.on_created)
        endpoints.on_endpoint_transition(self.on_endpoint_transition)
        if self.alarm_evaluation_seconds:
            threading.Thread(target=self._evaluate_alarms, name="alarm-evaluation", daemon=True).start()

    def detach(self) -> None:
        """Stop the simulator's own threads (timers already started still fire)."""
        self._stop.set()

    # Transform jobs -------------------------------------------------------------------------------------
    def fail_next(self, reason: str, name_contains: str = "") -> None:
        """The next job whose name contains `name_contains` fails with `reason`."""
        with self._lock:
            self.injected_failures.append((name_contains, reason))

    def on_created(self, account: str, region: str, name: str) -> None:
        threading.Timer(0.05, self._emit, args=(account, region, name)).start()
        threading.Timer(self.run_seconds, self._finish, args=(account, region, name)).start()

    def _emit(self, account: str, region: str, name: str) -> None:
        faithful.deliver_event(
            faithful.transform_job_event(name, account=account, region=region), account=account, region=region
        )

    def _injected(self, name: str) -> str | None:
        with self._lock:
            for i, (fragment, reason) in enumerate(self.injected_failures):
                if fragment in name:
                    del self.injected_failures[i]
                    return reason
        return None

    def _finish(self, account: str, region: str, name: str) -> None:
        reason = faithful.check_transform_inputs(name, account=account, region=region) or self._injected(name)
        status = "Failed" if reason else "Completed"
        event = faithful.finish_transform_job(name, status, reason or "", account=account, region=region)
        with self._lock:
            self.finished[name] = status
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
            threading.Thread(
                target=self._run_transition,
                args=(account, region, name, transition),
                name=f"endpoint:{name}:{transition.kind}",
                daemon=True,
            ).start()

    def _run_transition(self, account: str, region: str, name: str, transition: endpoints.Transition) -> None:
        deadline = time.monotonic() + self.transition_seconds(transition)
        while time.monotonic() < deadline and not self._stop.is_set():
            if transition.alarms and endpoints.alarms_in_alarm(transition.alarms, account=account, region=region):
                break
            time.sleep(min(self.poll_seconds, max(0.0, deadline - time.monotonic())))
        if self._stop.is_set():
            return
        event = endpoints.complete_endpoint_transition(
            name, account=account, region=region, token=transition.token, deliver=True
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
                    alarms.evaluate_alarms(account=account, region=region)
            except Exception:  # noqa: BLE001, S112 - an evaluation racing a deletion is retried next time
                continue

    @staticmethod
    def _regions() -> list[tuple[str, str]]:
        return [(faithful.DEFAULT_ACCOUNT, "us-east-1")]
