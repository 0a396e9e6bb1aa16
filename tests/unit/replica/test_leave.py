"""How replica and zygote processes end: at once, with exit handlers run and output flushed."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from inferd.config.load import load_project
from inferd.replica import messages
from inferd.replica.messages import ReplicaSpec
from tests.conftest import example, process_alive, wait_for


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


def test_a_replica_out_of_file_descriptors_with_threads_left_running_still_leaves(tmp_path: Path) -> None:
    # Was: a handler that used up its file descriptors (EMFILE) made the /proc listing that ends
    # the replica's process group raise, so leave() never reached os._exit and the interpreter
    # waited for the handler's threads for ever: `inferd delete` hung 600 s on it.
    child_pid = tmp_path / "child-pid"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import resource, subprocess, threading, time
                from pathlib import Path
                from inferd.replica.group import lead_group
                from inferd.replica.worker import leave
                lead_group()
                quiet = subprocess.DEVNULL
                child = subprocess.Popen(["sleep", "3600"], stdout=quiet, stderr=quiet)
                Path({str(child_pid)!r}).write_text(str(child.pid))
                threading.Thread(target=time.sleep, args=(3600,)).start()  # never ends, not a daemon
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
                kept = []
                try:
                    while True:
                        kept.append(open("/dev/null"))
                except OSError:
                    pass
                leave(0)
                """
            ),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=30,
        check=False,
    )
    pid = int(child_pid.read_text())
    wait_for(lambda: not process_alive(pid), 10, "the replica's child to be killed with it")
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
