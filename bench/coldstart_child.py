"""The process a cold start is timed on (run by path, so that nothing of the bench is imported first).

    coldstart_child.py handler <code_dir> <module> [<layer_dir> ...]   the Lambda init phase
    coldstart_child.py floor <service>[,<service> ...]                 import boto3 + the same clients
    coldstart_child.py probe <code_dir> <module> [<layer_dir> ...]     the init, listing boto3 clients made

Prints one JSON line: {"ready_ns": CLOCK_MONOTONIC when the init was done, "cpu_s": the process's CPU
time so far, "gc_s": time spent in garbage collections, ...}. CLOCK_MONOTONIC is system-wide on Linux,
so the parent subtracts the instant it started this process.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time

_gc = {"start": 0.0, "total": 0.0, "collections": 0}


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc["start"] = time.perf_counter()
    else:
        _gc["total"] += time.perf_counter() - _gc["start"]
        _gc["collections"] += 1


gc.callbacks.append(_gc_timer)


def _lambda_path(code_dir: str, layer_dirs: list[str]) -> None:
    # Lambda: /var/task (the function's code) first, then /opt/python (the layers), then the runtime.
    for path in reversed([code_dir, *layer_dirs]):
        sys.path.insert(0, path)


def _init(code_dir: str, module: str, layer_dirs: list[str]) -> None:
    _lambda_path(code_dir, layer_dirs)
    # __import__, not importlib.import_module: only the former shows in -X importtime's report.
    __import__(module)


def main(argv: list[str]) -> int:
    mode = argv[0]
    created: list[str] = []
    if mode == "probe":
        import botocore.session

        original = botocore.session.Session.create_client

        def create_client(self: object, service_name: str, *args: object, **kwargs: object) -> object:
            created.append(service_name)
            return original(self, service_name, *args, **kwargs)

        botocore.session.Session.create_client = create_client
    started = time.perf_counter()
    if mode in ("handler", "probe"):
        _init(argv[1], argv[2], argv[3:])
    elif mode == "floor":
        import boto3

        for service in filter(None, argv[1].split(",")):
            boto3.client(service)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    ready = time.monotonic_ns()
    usage = resource.getrusage(resource.RUSAGE_SELF)  # CPU since the process started, interpreter start-up included
    cpu = usage.ru_utime + usage.ru_stime
    report = {"ready_ns": ready, "cpu_s": cpu, "gc_s": _gc["total"], "gc_collections": _gc["collections"]}
    print(json.dumps({**report, "in_process_s": time.perf_counter() - started, "clients": created}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
