"""Fixtures for tests that drive the real operator through the real CLI."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import random
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from inferd.cli.inspect import resolve
from inferd.client import Client
from inferd.engine.priority import group_nice_of
from inferd.errors import NotFoundError
from tests.conftest import INFERD, wait_for

_PICK = random.SystemRandom()  # not the global generator, which hypothesis seeds


def free_port() -> int:
    """A port free now, for a process that binds it later (an operator's ``INFERD_PORT``).

    It is picked below the kernel's ephemeral range: that range is where every ``--port 0``
    server and every outgoing connection of the tests running beside this one take their ports,
    so one of them could take a port picked there before its process binds it (seconds later on
    a loaded machine). Below the range only another ``free_port`` competes, at random.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low > 10000:
        for _ in range(100):
            port = _PICK.randrange(low - 10000, low)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


class Inferd:
    """Runs ``inferd`` commands against one operator with its own home and port."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, INFERD_HOME=str(home), INFERD_PORT=str(self.port), PYTHONUNBUFFERED="1")

    def run(
        self, *args: str, check: bool = True, timeout: float = 300, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        for _ in range(3):
            result = subprocess.run(
                [str(INFERD), *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=cwd
            )
            # The port picked was free, but something beside the test (Ray's workers take ports
            # of their own) bound it before the operator could: start it on another one (unless
            # the test expects a failure, as the one that takes the port itself does).
            taken = f"cannot listen on 127.0.0.1:{self.port}: Address already in use" in result.stderr
            if not (check and taken):
                break
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self.env["INFERD_PORT"] = str(self.port)
        if check and result.returncode != 0:
            raise AssertionError(f"inferd {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def api(self, name: str) -> dict[str, Any]:
        (info,) = self.json("get", name)
        return dict(info)

    def status(self, name: str) -> dict[str, Any]:
        """What ``inferd get NAME -o json`` says, asked in this process (cheap to poll).

        Polling through the CLI started a Python process (about a CPU-second) every 50 ms,
        which on two cores slowed the replicas being waited for.
        """
        client = Client(self.home)
        try:
            return dict(client.api(resolve(client, name)))
        finally:
            client.close()

    def wait_status(self, name: str, status: str, timeout: float = 120) -> dict[str, Any]:
        """Until the API has ``status`` (a replica start after a restart or a --no-wait deploy
        took tens of seconds on a loaded 2-core machine: the deadline is generous)."""

        def reached() -> bool:
            try:
                return bool(self.status(name)["status"] == status)
            except NotFoundError:  # not yet: `inferd up` returns before the restore lists every API
                return False

        def told() -> dict[str, Any] | None:
            info = self.api(name)
            return info if info["status"] == status else None

        wait_for(reached, timeout, f"api '{name}' to be {status}")
        # and the CLI says so too (asked again only if the status moved on in between)
        return dict(wait_for(told, timeout, f"`inferd get {name}` to say {status}"))

    def operator_pid(self, key: str = "pid") -> int | None:
        """The operator's pid (or its supervisor's, with ``key="supervisor"``)."""
        try:
            return int(json.loads((self.home / "operator.json").read_text())[key])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def group_nice(self) -> int | None:
        """The nice value of the operator's autogroup (it leads a session of its own, so it has one
        wherever the kernel has autogroups): what its replicas' groups are set against."""
        pid = self.operator_pid()
        assert pid is not None, "no operator running"
        return group_nice_of(pid)

    def post(self, path: str, body: Any, timeout: float = 30) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=timeout)

    def replica_pids(self, name: str) -> list[int]:
        return [int(r["pid"]) for r in self.status(name)["replicas"] if r["state"] == "ready"]


@pytest.fixture
def inferd(tmp_path: Path) -> Iterator[Inferd]:
    """A private operator; stopped (and anything left killed) at teardown."""
    runner = Inferd(tmp_path / "home")
    yield runner
    stop_operator(runner)


def stop_operator(runner: Inferd) -> None:
    """``inferd down``, then kill whatever of the operator is left."""
    supervisor = runner.operator_pid("supervisor")
    pid = runner.operator_pid()
    runner.run("down", check=False, timeout=120)
    for leftover in (supervisor, pid):  # the supervisor first, or it starts the operator again
        if leftover is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)


class HangingOrigin:
    """An HTTP origin serving one model file until ``hang()``; then it accepts requests and never
    answers them (a model store gone dark), until ``close()``."""

    def __init__(self, model: Path) -> None:
        data = model.read_bytes()
        self.hanging, self.released = threading.Event(), threading.Event()
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.do_GET(body=False)

            def do_GET(self, body: bool = True) -> None:
                if origin.hanging.is_set():
                    origin.released.wait(60)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", '"v1"')
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/iris.onnx"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hang(self) -> None:
        self.hanging.set()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
