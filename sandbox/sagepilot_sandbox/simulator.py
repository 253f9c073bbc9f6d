"""SageMaker's side of a transform job, which moto does not play: time passes, the job runs, events fire.

A created job is InProgress (SageMaker emits that state change), then after `run_seconds` it checks
what real SageMaker checks before reading records (the manifest and every file it lists exist) and
ends Completed or Failed with SageMaker's kind of FailureReason; each change is delivered to
EventBridge. Predictions are NOT computed here: no model runs in the sandbox yet, so no `<file>.out`
is written.

Tests and the demo can inject a failure for the next job(s) with `fail_next`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sagepilot_sandbox import faithful


@dataclass
class SageMakerSimulator:
    run_seconds: float = 2.0
    injected_failures: list[tuple[str, str]] = field(default_factory=list)  # (name fragment, reason)
    finished: dict[str, str] = field(default_factory=dict)  # job name -> final status
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self) -> None:
        faithful.on_transform_job_created(self.on_created)

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
