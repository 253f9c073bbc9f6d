"""End-to-end fixtures: one running sandbox (embedded AWS + the stack + its functions) per module."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sagepilot_sandbox.server import Sandbox, free_port


@contextmanager
def started_sandbox(tmp_path_factory: pytest.TempPathFactory, **options: Any) -> Iterator[Sandbox]:
    """A running sandbox with the end-to-end defaults (transform jobs of 1 s, retries after 1 s, every AWS call
    a function makes recorded: each module's last test checks them against the IAM policies, iam_calls.py);
    `options` (Sandbox's keyword arguments) override or add to them."""
    settings: dict[str, Any] = {"run_seconds": 1.0, "retry_delay": 1, "record_calls": True, **options}
    running = Sandbox(port=free_port(), log_dir=tmp_path_factory.mktemp("lambda-logs"), **settings)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with started_sandbox(tmp_path_factory) as running:
        yield running
