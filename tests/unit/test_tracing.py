"""AWS calls become X-Ray subsegments only when the invocation is sampled; nothing otherwise."""

from __future__ import annotations

import json
import socket

import boto3
import moto
import pytest

from sagepilot import tracing

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"


@pytest.fixture
def daemon(monkeypatch):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(2)
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", f"127.0.0.1:{udp.getsockname()[1]}")
    yield udp
    udp.close()


@pytest.fixture
def sqs(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        yield tracing.instrument(boto3.client("sqs", region_name="us-east-1"))


def test_a_sampled_invocation_sends_one_subsegment_per_call(daemon, sqs, monkeypatch):
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ROOT};Parent={PARENT};Sampled=1")
    sqs.list_queues()
    header, body = daemon.recv(65536).split(b"\n", 1)
    assert json.loads(header) == {"format": "json", "version": 1}
    segment = json.loads(body)
    assert segment["trace_id"] == ROOT and segment["parent_id"] == PARENT and segment["type"] == "subsegment"
    assert segment["name"] == "sqs" and segment["aws"]["operation"] == "ListQueues"
    assert segment["end_time"] >= segment["start_time"] and len(segment["id"]) == 16


@pytest.mark.parametrize("header", ["", f"Root={ROOT};Parent={PARENT};Sampled=0"])
def test_unsampled_or_untraced_invocations_send_nothing(daemon, sqs, monkeypatch, header):
    monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
    sqs.list_queues()
    daemon.settimeout(0.3)
    with pytest.raises(TimeoutError):
        daemon.recv(65536)


def test_an_unreachable_daemon_never_fails_the_call(sqs, monkeypatch):
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ROOT};Parent={PARENT};Sampled=1")
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", "256.0.0.1:2000")
    assert "ResponseMetadata" in sqs.list_queues()
