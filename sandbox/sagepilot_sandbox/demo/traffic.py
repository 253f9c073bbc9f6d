"""Real-time traffic for the demo: clients calling InvokeEndpoint, and what their answers prove.

`Traffic` sends requests of a few synthetic customers each (`sagepilot_model_server.examples` rows) to
the endpoint through boto3's `sagemaker-runtime` client, from several threads, and keeps every
answer: the variant that served it (`x-Amzn-Invoked-Production-Variant`), the predictions, or the
error (`ModelError` with the model's original status). `trickle()` keeps a steady background load, as
an application calling the endpoint would. `split_within_bound` is the check that the traffic split
matches the endpoint's weights: the observed share of a variant must be within 4 standard deviations of
its weight (a binomial bound: with 400 requests at 10%, 10% +- 6%).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError

from sagepilot_model_server.examples import feature_rows, to_csv


@dataclass(frozen=True)
class Outcome:
    rows: tuple[tuple[float, ...], ...]
    variant: str | None = None
    predictions: tuple[int, ...] | None = None
    error: str | None = None  # error code, e.g. ModelError
    original_status: int | None = None


class Traffic:
    def __init__(self, client_factory: Callable[[], Any], endpoint: str, *, seed: int = 100) -> None:
        self._factory = client_factory
        self.endpoint = endpoint
        self._pool = feature_rows(2000, seed=seed)
        self._random = random.Random(seed)  # noqa: S311 - synthetic traffic
        self._lock = threading.Lock()
        self._local = threading.local()
        self._trickle: threading.Thread | None = None
        self._trickle_stop = threading.Event()
        self.trickled: list[Outcome] = []

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._factory()
        return client

    def _rows(self, count: int) -> list[list[float]]:
        with self._lock:
            return [self._pool[self._random.randrange(len(self._pool))] for _ in range(count)]

    def invoke(self, rows: list[list[float]]) -> Outcome:
        frozen = tuple(tuple(r) for r in rows)
        client = self._client()
        try:
            answer = client.invoke_endpoint(
                EndpointName=self.endpoint, Body=to_csv(rows).encode(), ContentType="text/csv", Accept="text/csv"
            )
        except client.exceptions.ClientError as exc:
            response = exc.response
            return Outcome(
                frozen, error=str(response["Error"]["Code"]), original_status=response.get("OriginalStatusCode")
            )
        except BotoCoreError as exc:  # the sandbox is not there (any more)
            return Outcome(frozen, error=type(exc).__name__)
        predictions = tuple(int(line) for line in answer["Body"].read().decode().split())
        return Outcome(frozen, variant=answer.get("InvokedProductionVariant"), predictions=predictions)

    def burst(self, count: int, *, records: int = 4, threads: int = 4) -> list[Outcome]:
        """`count` requests of `records` customers each, from `threads` clients at once."""
        batches = [self._rows(records) for _ in range(count)]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(self.invoke, batches))

    def until(self, done: Callable[[], bool], *, timeout: float, records: int = 4, threads: int = 4) -> list[Outcome]:
        """Requests from `threads` clients until `done()` (checked between requests) or `timeout` seconds."""
        outcomes: list[Outcome] = []
        stop = threading.Event()
        deadline = time.monotonic() + timeout

        def client() -> None:
            while not stop.is_set() and time.monotonic() < deadline:
                outcome = self.invoke(self._rows(records))
                with self._lock:
                    outcomes.append(outcome)

        workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        while time.monotonic() < deadline and not done():
            time.sleep(0.2)
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        return outcomes

    def trickle(self, interval: float = 0.4) -> None:
        """A steady background load of one request every `interval` seconds, until `stop_trickle()`."""

        def run() -> None:
            while not self._trickle_stop.wait(interval):
                outcome = self.invoke(self._rows(2))
                with self._lock:
                    self.trickled.append(outcome)

        self._trickle_stop.clear()
        self._trickle = threading.Thread(target=run, name="demo-trickle", daemon=True)
        self._trickle.start()

    def stop_trickle(self) -> None:
        self._trickle_stop.set()
        if self._trickle is not None:
            self._trickle.join(timeout=30)
            self._trickle = None


def split_within_bound(outcomes: list[Outcome], variant: str, share: float) -> tuple[int, int, float, bool]:
    """(served by `variant`, answered, 4-sigma bound, whether the share is within it)."""
    answered = [o for o in outcomes if o.variant is not None]
    n = len(answered)
    k = sum(1 for o in answered if o.variant == variant)
    if n == 0:
        return 0, 0, 0.0, False
    bound = 4 * math.sqrt(share * (1 - share) / n)
    return k, n, bound, abs(k / n - share) <= bound + 1e-12


def predictions_match(outcomes: list[Outcome], estimators: dict[str, Any]) -> tuple[int, int]:
    """(answers equal to the serving variant's own model.predict, answers checked)."""
    checked = agreed = 0
    for outcome in outcomes:
        if outcome.variant is None or outcome.predictions is None or outcome.variant not in estimators:
            continue
        expected = tuple(int(p) for p in estimators[outcome.variant].predict([list(r) for r in outcome.rows]))
        checked += 1
        agreed += int(expected == outcome.predictions)
    return agreed, checked
