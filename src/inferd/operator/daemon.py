"""``python -m inferd.operator.daemon``: run the operator (``inferd deploy`` starts it detached)."""

from __future__ import annotations

import errno
import faulthandler
import logging
import os
import sys

from inferd.errors import InferdError
from inferd.operator.serve import exit_now, run_leaving_threads
from inferd.operator.server import Operator
from inferd.signalmask import unblock_signals
from inferd.storage import pin_inferd_home
from inferd.storage.private import make_private_folders


def main() -> int:
    unblock_signals()  # started by systemd, a supervisor, or a script: see signalmask.py
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s operator %(levelname)s %(message)s", stream=sys.stderr
    )
    faulthandler.enable()  # a fatal error or a SIGABRT (operator/watchdog.py) writes every stack
    home = pin_inferd_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    make_private_folders(home)
    # empty is unset, as for `inferd serve`: `INFERD_HOST=` listened on every interface
    host = os.environ.get("INFERD_HOST", "").strip() or "127.0.0.1"
    text = os.environ.get("INFERD_PORT", "").strip() or "8888"
    port = int(text) if text.strip().isdigit() else -1
    if not 0 <= port <= 65535:  # a socket takes 99999 as 99999 - 65536: never a surprise port
        logging.getLogger("inferd.operator").error(
            "INFERD_PORT %r must be a port number from 0 to 65535", text
        )
        return 2
    try:
        return run_leaving_threads(Operator(home, host, port).run())
    except InferdError as exc:
        logging.getLogger("inferd.operator").error("%s", exc.message)
        return exc.exit_code
    except OSError as exc:
        if exc.filename is not None:  # a file of $INFERD_HOME, not the address (was: "cannot listen")
            logging.getLogger("inferd.operator").error("%s: %s", exc.filename, exc.strerror or exc)
            return 1
        hint = "; set INFERD_PORT to another port" if exc.errno == errno.EADDRINUSE else ""
        logging.getLogger("inferd.operator").error(
            "cannot listen on %s:%d: %s%s", host, port, exc.strerror or exc, hint
        )
        return 1


if __name__ == "__main__":
    exit_now(main())
