"""One AWS call's worst case (every attempt timing out, every backoff at its longest) fits well inside the
function's timeout: the arithmetic, botocore's own backoff, and each function of the template."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff

from sagepilot.adapters import clients
from sagepilot.adapters.clients import CALL_SHARE, CallLimits, backoff_seconds, call_limits, client_config
from sagepilot.errors import ConfigurationError


def test_the_worst_case_is_every_attempt_timing_out_and_every_backoff_at_its_longest() -> None:
    # The earlier fixed limits: 6 attempts of 5 + 30 s and waits of up to 1, 2, 4, 8 and 16 s.
    assert CallLimits(connect_timeout=5, read_timeout=30, retries=5).worst_case_seconds == 6 * 35 + 31
    assert CallLimits(connect_timeout=2, read_timeout=7.5, retries=1).worst_case_seconds == 2 * 9.5 + 1
    assert CallLimits(connect_timeout=2, read_timeout=5, retries=0).worst_case_seconds == 7


@pytest.mark.parametrize("retries", range(8))
def test_the_backoff_is_botocores_longest(retries: int) -> None:
    longest = ExponentialBackoff(random=lambda: 1.0)
    waits = [longest.delay_amount(SimpleNamespace(attempt_number=n, http_response=None)) for n in range(1, retries + 1)]
    assert backoff_seconds(retries) == sum(waits)


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (60, CallLimits(2.0, 7.5, 1)),  # the rollout: (20 - 1) / 2 attempts - 2 s to connect
        (120, CallLimits(2.0, 6.25, 3)),  # the intake, training: (40 - 7) / 4 - 2; 4 retries would leave 3 s reads
        (300, CallLimits(2.0, 9.5, 5)),  # the completion: (100 - 31) / 6 - 2
        (900, CallLimits(2.0, 30.0, 5)),  # Lambda's longest: reads capped at 30 s
        (21, CallLimits(2.0, 5.0, 0)),  # the shortest with room for one attempt
    ],
)
def test_limits_from_the_function_timeout(timeout: int, expected: CallLimits) -> None:
    limits = call_limits(timeout)
    assert limits == expected
    assert limits.worst_case_seconds <= timeout * CALL_SHARE + 1e-9
    if limits.retries < clients.MAX_RETRIES:  # one more retry would not fit with reads of the shortest allowed
        tighter = CallLimits(limits.connect_timeout, clients.MIN_READ_TIMEOUT, limits.retries + 1)
        assert tighter.worst_case_seconds > timeout * CALL_SHARE


def test_a_timeout_too_short_for_one_call_is_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigurationError, match="at least 21 s"):
        call_limits(20)


def test_the_botocore_config_carries_the_limits() -> None:
    config = client_config(60)
    assert (config.connect_timeout, config.read_timeout) == (2.0, 7.5)
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}


def test_each_function_tells_its_clients_its_own_timeout(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    functions = {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    assert len(functions) == 4
    for name, properties in functions.items():
        timeout = properties.get("Timeout", template["Globals"]["Function"]["Timeout"])
        assert properties["Environment"]["Variables"]["FUNCTION_TIMEOUT_SECONDS"] == str(timeout), name
        assert call_limits(timeout).worst_case_seconds <= timeout / 3, name


def test_the_process_clients_take_the_functions_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clients.client.cache_clear()
    try:
        monkeypatch.delenv("FUNCTION_TIMEOUT_SECONDS", raising=False)
        with pytest.raises(ConfigurationError, match="FUNCTION_TIMEOUT_SECONDS"):
            clients.client("sqs")
        monkeypatch.setenv("FUNCTION_TIMEOUT_SECONDS", "120")
        config = clients.client("sqs").meta.config
        assert (config.read_timeout, config.retries["total_max_attempts"]) == (6.25, 4)
    finally:
        clients.client.cache_clear()
