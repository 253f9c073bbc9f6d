"""`python -m sagepilot_model_server serve`: what SageMaker runs (`docker run <image> serve`)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from sagepilot_model_server.server import env_port, start_server

log = logging.getLogger("sagepilot_model_server")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sagepilot_model_server", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="serve")
    serve = commands.add_parser("serve", help="serve a model on /ping and /invocations")
    serve.add_argument(
        "--host",
        default=os.environ.get("SAGEPILOT_MODEL_SERVER_HOST", "0.0.0.0"),  # noqa: S104 - a container serves on all interfaces
        help="address to bind (default: $SAGEPILOT_MODEL_SERVER_HOST or 0.0.0.0)",
    )
    serve.add_argument(
        "--port", type=int, default=None, help="port (default: $SAGEMAKER_BIND_TO_PORT or 8080; 0: any free)"
    )
    serve.add_argument(
        "--model",
        default=None,
        help="model directory, model.tar.gz or s3:// URI (default: $SM_MODEL_DIR or /opt/ml/model)",
    )
    serve.add_argument("--program", default=None, help="module in code/ (default: $SAGEMAKER_PROGRAM or inference.py)")
    serve.add_argument(
        "--strict-ping",
        action="store_true",
        default=os.environ.get("SAGEPILOT_STRICT_PING", "").lower() in ("1", "true", "yes"),
        help="answer /ping with 503 (not 200) while the model loads (default: $SAGEPILOT_STRICT_PING)",
    )
    serve.add_argument("--log-level", default=os.environ.get("SAGEPILOT_LOG_LEVEL", "INFO"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    server = start_server(
        args.model,
        host=args.host,
        port=env_port() if args.port is None else args.port,
        program=args.program,
        ping_while_loading=not args.strict_ping,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"sagepilot model server listening on {server.url}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
