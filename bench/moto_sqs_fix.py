"""`--fix-moto-sqs`: kept for comparisons with older runs. The fix this bench found (moto's SQS scanning
every queued message on each send, receive and delete) now lives in the sandbox itself,
`sagepilot_sandbox.sqs_speed`, which `faithful.install()` applies; installing it again is a no-op."""

from __future__ import annotations

from sagepilot_sandbox.sqs_speed import install

__all__ = ["install"]
