"""Inference code of the example models: packaged as `code/inference.py` in each archive.

It follows SageMaker's framework-container convention: `model_fn` loads what the archive holds, `predict_fn`
predicts; requests are read and responses written by the server's default input_fn / output_fn (CSV, JSON,
JSON Lines). `config.json` in the archive says how the model misbehaves, for rollback scenarios:

- `broken_share` with `broken_mode` "record": a record fails if a hash of its values (salted with
  `failure_seed`) falls under the share, so the same records always fail (`record_fails` tells which),
  and a request fails (500) if any of its records does;
- `broken_share` with `broken_mode` "random": each request fails with that probability, drawn from a
  random stream seeded with `failure_seed` (deterministic for a given order of requests);
- `fail_on_load`: model_fn raises (the container never becomes healthy);
- `load_delay_seconds`: model_fn sleeps first (a slow model, to watch the loading state).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sagepilot_model_server.errors import BadRequest

CONFIG_FILE = "config.json"
MODEL_FILE = "model.joblib"


class SimulatedModelFailure(RuntimeError):
    """Raised by a deliberately broken example model."""


def record_fails(record: Sequence[float], share: float, salt: int | str = 0) -> bool:
    """Whether a broken model (broken_mode "record") fails on this record: a stable hash under `share`."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    text = f"{salt}|" + ",".join(repr(float(value)) for value in record)
    fraction = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64
    return fraction < share


class ExampleModel:
    """The scikit-learn estimator and the example's configuration (feature count, simulated failures)."""

    def __init__(self, estimator: Any, config: dict[str, Any]) -> None:
        self.estimator = estimator
        self.config = config
        self.version = str(config.get("version", ""))
        self.n_features = int(config["n_features"])
        self.broken_share = float(config.get("broken_share", 0.0))
        self.broken_mode = str(config.get("broken_mode", "record"))
        self.failure_seed = config.get("failure_seed", 0)
        self._random = random.Random(self.failure_seed)  # noqa: S311 - simulated failures, not security
        self._lock = threading.Lock()

    def _request_fails(self) -> bool:
        with self._lock:
            return self._random.random() < self.broken_share

    def predict(self, rows: Sequence[Sequence[float]]) -> list[int]:
        for index, row in enumerate(rows, start=1):
            if len(row) != self.n_features:
                raise BadRequest(f"record {index} has {len(row)} features; this model expects {self.n_features}")
        if self.broken_share > 0:
            if self.broken_mode == "random":
                if self._request_fails():
                    raise SimulatedModelFailure(f"model {self.version} failed on this request (simulated)")
            else:
                for index, row in enumerate(rows, start=1):
                    if record_fails(row, self.broken_share, self.failure_seed):
                        raise SimulatedModelFailure(f"model {self.version} failed on record {index} (simulated)")
        return [int(label) for label in self.estimator.predict(rows)]


def model_fn(model_dir: str) -> ExampleModel:
    import joblib

    config: dict[str, Any] = json.loads((Path(model_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    delay = float(config.get("load_delay_seconds", 0.0))
    if delay > 0:
        time.sleep(delay)
    if config.get("fail_on_load"):
        raise SimulatedModelFailure(f"model {config.get('version')} cannot load (built with fail_on_load)")
    return ExampleModel(joblib.load(Path(model_dir) / MODEL_FILE), config)


def predict_fn(data: Any, model: ExampleModel) -> list[int]:
    return model.predict(data)
