"""How replica and zygote processes end: at once, with exit handlers run and output flushed."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from inferd.config.load import load_project
from inferd.replica import messages
from inferd.replica.messages import ReplicaSpec
from tests.conftest import example


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


def test_a_replica_let_go_while_loading_leaves_without_a_traceback(tmp_path: Path) -> None:
    # A newer deploy (or `inferd down`) replaces a replica that is still loading: the gateway
    # closes its socket, and the API's log must not show that as a crash.
    project = load_project(example("iris-onnx"))
    (config,) = project.apis
    spec = ReplicaSpec(
        api=config.api,
        project_root=project.root,
        model_path=project.root / "models" / "iris.onnx",
        replica_id="classifier-1",
        version="v1",
    )
    ours, theirs = socket.socketpair()
    with ours, theirs:
        replica = subprocess.Popen(
            [sys.executable, "-m", "inferd.replica.worker", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stderr=subprocess.PIPE,
            text=True,
        )
        ours.sendall(messages.frame(messages.SPEC, spec.model_dump_json().encode()))
    _, stderr = replica.communicate(timeout=120)
    assert replica.returncode == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
    assert "replica stopped before it was ready" in stderr
