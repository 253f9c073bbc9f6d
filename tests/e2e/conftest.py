"""End-to-end fixtures: one running sandbox (embedded AWS + the stack + its functions) per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sagepilot_sandbox.server import Sandbox, free_port


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    running = Sandbox(
        port=free_port(),
        run_seconds=1.0,
        retry_delay=1,
        log_dir=tmp_path_factory.mktemp("lambda-logs"),
        record_calls=True,  # each module's last test checks them against the IAM policies (iam_calls.py)
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()
