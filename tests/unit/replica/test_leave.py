"""How replica and zygote processes end: at once, with exit handlers run and output flushed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_leaving_runs_exit_handlers_flushes_output_and_keeps_the_status(tmp_path: Path) -> None:
    marker = tmp_path / "handler-ran"
    done = run(
        f"""
        import atexit, logging, sys
        from pathlib import Path
        from inferd.replica.worker import leave
        atexit.register(Path({str(marker)!r}).write_text, "yes")  # a user's handler may register one
        logging.basicConfig(stream=sys.stderr)
        logging.getLogger("user").warning("logged last")
        sys.stdout.write("printed without a newline")  # still in the buffer
        leave(3)
        """
    )
    assert done.returncode == 3
    assert marker.read_text() == "yes"
    assert done.stdout == "printed without a newline"
    assert "logged last" in done.stderr


def test_the_zygote_leaves_quietly_when_the_engine_closes_with_its_news_unread() -> None:
    # The engine closing its end with data unread resets the connection: that is an end too.
    done = run(
        """
        import socket, sys
        from inferd.replica import zygote
        control, engine = socket.socketpair()
        control.sendall(b'{"exit": 1, "code": 0}')
        engine.close()
        sys.exit(zygote.serve(control))
        """
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
