"""One Lambda function in its own process, as the Lambda runtime runs it.

Started by the sandbox with the function's environment (and AWS_ENDPOINT_URL pointing at the
sandbox), it imports the handler once (the cold start), then answers one invocation per line of
standard input with one JSON line on the original standard output. Everything the function prints or
logs goes to standard error, which the sandbox keeps as the function's log; the lines of an invocation's
output that look like EMF documents also go back with its response (`emf`), for the sandbox to turn into
metrics as CloudWatch Logs does (see `emf`). With SAGEPILOT_RECORD_CALLS=1, every AWS call the function
makes (from its cold start on) is recorded and goes back with the next response (`calls`, see
call_recording.py) for the sandbox's IAM check.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import uuid
from typing import Any

from sagepilot_sandbox.lambda_runtime import call_recording


class LambdaContext:
    def __init__(self, function_name: str, timeout_seconds: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "sandbox"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _Output:
    """The function's standard output: written to the log, and its EMF-looking lines kept for the response."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self._partial = ""
        self._metric_lines: list[str] = []

    def write(self, text: str) -> int:
        self._log.write(text)
        *complete, self._partial = (self._partial + text).split("\n")
        self._metric_lines += [line for line in complete if '"_aws"' in line]
        return len(text)

    def flush(self) -> None:
        self._log.flush()

    def take_metric_lines(self) -> list[str]:
        taken, self._metric_lines = self._metric_lines, []
        return taken

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding...: the log's
        return getattr(self._log, name)


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "ok": False,
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exc().splitlines(),
    }


def main(argv: list[str]) -> int:
    function_name, timeout, code_dir, handler_path, *layer_dirs = argv
    protocol = sys.stdout
    output = _Output(sys.stderr)
    sys.stdout = output
    for path in [code_dir, *layer_dirs]:
        sys.path.insert(0, path)
    recorder: call_recording.Recorder | None = None
    if os.environ.get(call_recording.ENVIRONMENT_VARIABLE) == "1":
        recorder = call_recording.Recorder()
        call_recording.install(recorder)  # before the handler's import: its cold-start calls count too
    module_name, _, function = handler_path.rpartition(".")
    init_error: dict[str, Any] | None = None
    try:
        handler = getattr(importlib.import_module(module_name), function)
    except Exception as exc:  # noqa: BLE001 - an init failure is reported on every invocation, as Lambda does
        init_error = _error(exc)
        print(json.dumps({"initError": init_error}), file=sys.stderr, flush=True)
    for line in sys.stdin:
        event = json.loads(line)
        if init_error is not None:
            response = init_error
        else:
            try:
                result = handler(event, LambdaContext(function_name, int(timeout)))
                response = {"ok": True, "result": result}
            except Exception as exc:  # noqa: BLE001 - a function error is the invocation's result
                response = _error(exc)
                print(json.dumps({"functionError": response}), file=sys.stderr, flush=True)
        metric_lines = output.take_metric_lines()
        if metric_lines:
            response["emf"] = metric_lines
        if recorder is not None:
            response["calls"] = recorder.take()
        protocol.write(json.dumps(response, default=str) + "\n")
        protocol.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
