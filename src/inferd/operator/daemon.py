"""``python -m inferd.operator.daemon``: run the operator (``inferd deploy`` starts it detached)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sys
from typing import NoReturn

import uvloop

from inferd.errors import InferdError
from inferd.operator.server import Operator
from inferd.storage import inferd_home


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s operator %(levelname)s %(message)s", stream=sys.stderr
    )
    home = inferd_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    host = os.environ.get("INFERD_HOST", "127.0.0.1")
    port = int(os.environ.get("INFERD_PORT", "8888"))
    try:
        # The runner is not closed: closing it waits for worker threads (see ``exit_now``).
        return asyncio.Runner(loop_factory=uvloop.new_event_loop).run(Operator(home, host, port).run())
    except InferdError as exc:
        logging.getLogger("inferd.operator").error("%s", exc.message)
        return exc.exit_code
    except OSError as exc:
        hint = "; set INFERD_PORT to another port" if exc.errno == errno.EADDRINUSE else ""
        logging.getLogger("inferd.operator").error(
            "cannot listen on %s:%d: %s%s", host, port, exc.strerror or exc, hint
        )
        return 1


def exit_now(code: int) -> NoReturn:
    """End the process without waiting for threads still at work.

    Everything the operator owns is stopped by then; what may still run in a worker thread is a
    model download (or a ``pip install``, whose process the kernel ends) for a deploy that
    ``inferd down`` cut short. Python would wait for it at exit (minutes, past ``inferd down``'s
    60 s); its half-written files are in scratch folders the next collection removes, as after
    a ``kill -9``.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
