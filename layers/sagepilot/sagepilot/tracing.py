"""X-Ray subsegments for AWS calls, with nothing to import or pay at cold start.

With the template's `Tracing: Active` Lambda records each invocation in X-Ray by itself. To see the AWS
calls inside it, the X-Ray SDK (powertools' Tracer) would cost about as much import time as boto3 at
every cold start. Instead, two botocore event hooks on our clients time each call and, only when the
invocation is sampled (`Sampled=1` in `_X_AMZN_TRACE_ID`) and an X-Ray daemon address is set
(`AWS_XRAY_DAEMON_ADDRESS`, which Lambda sets when tracing is on), send one subsegment per call to the
daemon over UDP, as the SDK does. When tracing is off the hooks only read an environment variable.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from typing import Any

_HEADER = b'{"format": "json", "version": 1}\n'
_STARTED = "sagepilot_trace_started"


def _trace_context() -> tuple[str, str] | None:
    """(trace id, parent segment id) of a sampled invocation, or None."""
    header = os.environ.get("_X_AMZN_TRACE_ID", "")
    if "Sampled=1" not in header or not os.environ.get("AWS_XRAY_DAEMON_ADDRESS"):
        return None
    parts = dict(p.split("=", 1) for p in header.split(";") if "=" in p)
    if "Root" not in parts or "Parent" not in parts:
        return None
    return parts["Root"], parts["Parent"]


def _send(document: dict[str, Any]) -> None:
    host, _, port = os.environ["AWS_XRAY_DAEMON_ADDRESS"].rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(_HEADER + json.dumps(document).encode(), (host, int(port)))


def _before_call(context: dict[str, Any], **_: Any) -> None:
    if _trace_context() is not None:
        context[_STARTED] = time.time()


def _after_call(http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    started = context.get(_STARTED)
    trace = _trace_context()
    if started is None or trace is None:
        return
    status = int(getattr(http_response, "status_code", 0) or 0)
    document = {
        "name": model.service_model.service_id.hyphenize(),
        "id": secrets.token_hex(8),
        "trace_id": trace[0],
        "parent_id": trace[1],
        "start_time": started,
        "end_time": time.time(),
        "type": "subsegment",
        "namespace": "aws",
        "aws": {
            "operation": model.name,
            "request_id": (parsed.get("ResponseMetadata") or {}).get("RequestId", ""),
            "retries": (parsed.get("ResponseMetadata") or {}).get("RetryAttempts", 0),
        },
        "http": {"response": {"status": status}},
    }
    if 400 <= status < 500:
        document["error"] = True
    elif status >= 500:
        document["fault"] = True
    try:
        _send(document)
    except OSError:
        return  # tracing must never fail a call: a lost subsegment is acceptable


def instrument(client: Any) -> Any:
    """Register the hooks on a boto3 client; returns the client."""
    client.meta.events.register("before-call.*.*", _before_call)
    client.meta.events.register("after-call.*.*", _after_call)
    return client
