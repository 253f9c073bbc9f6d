"""A model server process of the sandbox: `python -m sagepilot_model_server serve`, bound to the sandbox.

It is the container's own command (same arguments, same SIGTERM handling) with one addition: it stops
when its standard input closes, i.e. when the sandbox that started it is gone, even if the sandbox was
killed before it could stop its servers; no model server outlives the sandbox.
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def _stop_when_parent_goes() -> None:
    sys.stdin.read()  # returns at end of file: the sandbox closed the pipe, or died
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    from sagepilot_model_server.__main__ import main as serve

    threading.Thread(target=_stop_when_parent_goes, name="parent-watch", daemon=True).start()
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
