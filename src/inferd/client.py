"""A Python client of the local operator; the CLI is built on it.

Errors come back as the same classes the operator raised (the response names the class), so
callers handle ``NotFoundError`` rather than status codes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from inferd.code_identity import restart_hint
from inferd.errors import InferdError, OperatorError, error_type
from inferd.operator.pids import is_operator, live_supervisor
from inferd.operator.state import OPERATOR_FILE, STATE_FORMAT, TOKEN_FILE, read_json
from inferd.procfs import running
from inferd.storage import inferd_home
from inferd.storage.private import refuse_a_home_others_control

if TYPE_CHECKING:
    from http.client import HTTPConnection

START_TIMEOUT = 60.0
RESTART_WAIT = 30.0  # a supervisor brings a killed operator back in seconds (5.4 s measured, busy)
START_LOCK = "operator.start.lock"  # held by the command that starts the operator


class Client:
    """Talks to the operator of ``$INFERD_HOME`` over its loopback admin API."""

    def __init__(self, home: Path | None = None) -> None:
        # A keep-alive connection to the admin API per thread (the client may be shared by
        # threads), made with the standard library's http.client: every CLI command is a new
        # process, and importing requests was a third of the CPU an `inferd get` took (see
        # `_send`). The admin API is on loopback and every call carries the operator's token,
        # so no proxy from the environment is ever used.
        self._connections: dict[int, HTTPConnection] = {}
        self.home = home or inferd_home()
        refuse_a_home_others_control(self.home)

    def close(self) -> None:
        """Close the connections to the operator (a later call opens another)."""
        for connection in list(self._connections.values()):
            connection.close()
        self._connections.clear()

    def __del__(self) -> None:
        # A client dropped with its connection open (each CLI command's, at its end) closes it
        # itself: the socket's own finalizer called it a leak, a ResourceWarning that
        # PYTHONWARNINGS=error (or -X dev) printed as a traceback after every command's output.
        self.close()

    def _drop(self) -> None:
        """Close this thread's connection (it failed, or the operator closed or moved it)."""
        connection = self._connections.pop(threading.get_ident(), None)
        if connection is not None:
            connection.close()

    # the operator process

    def _endpoint(self) -> tuple[str, str, dict[str, Any]] | None:
        info = read_json(self.home / OPERATOR_FILE)
        if not info:
            return None
        pid = int(info.get("pid") or 0)
        if not (pid and running(pid) and is_operator(pid, self.home)):
            return None
        try:
            token = (self.home / TOKEN_FILE).read_text().strip()
        except OSError:
            return None
        return f"http://127.0.0.1:{info['admin_port']}", token, info

    def _endpoint_once_back(self) -> tuple[str, str, dict[str, Any]] | None:
        """The operator's endpoint; while its supervisor is starting a dead one again (a crash,
        ``kill -9``), the new one's, once it is up (within ``RESTART_WAIT`` s)."""
        endpoint = self._endpoint()
        deadline = time.monotonic() + RESTART_WAIT
        while endpoint is None and time.monotonic() < deadline:
            if not live_supervisor(read_json(self.home / OPERATOR_FILE) or {}, self.home):
                return None
            time.sleep(0.1)
            endpoint = self._endpoint()
        return endpoint

    def running(self) -> bool:
        return self.running_info() is not None

    def running_info(self) -> dict[str, Any] | None:
        """The running operator's ``/info``, or None when none runs or it stopped before it
        answered. One question: asked again, an operator at the end of ``inferd down`` may be
        gone by the second."""
        if self._endpoint() is None:
            return None
        try:
            info: dict[str, Any] = self.call("GET", "/info", timeout=3)
        except InferdError:
            return None
        return info

    def start(self) -> bool:
        """Start the operator (under its supervisor) unless it runs; True when it was started.

        When a supervisor is restarting a dead operator, this waits for that one instead, and
        so does a second command starting it at the same time (two shells, a script's parallel
        deploys): one operator starts, the other command finds it running.
        """
        if self.running():
            return False
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        # the owner's only, whatever the umask (000 made it every user's to write)
        descriptor = os.open(self.home / START_LOCK, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "w") as lock:
            with contextlib.suppress(OSError):  # a lock an older inferd left
                os.fchmod(descriptor, 0o600)
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            return False if self.running() else self._start()

    def _start(self) -> bool:
        log_file = self.home / "operator.log"
        supervisor = live_supervisor(read_json(self.home / OPERATOR_FILE) or {}, self.home)
        if not supervisor:
            # One a caller started that died or was interrupted (a notebook's kernel restarted
            # mid-deploy) before its operator was up: it goes on, and is waited for. Started
            # again, the second failed on the first one's port.
            supervisor = _starting_supervisor(self.home)
        process: subprocess.Popen[bytes] | None = None
        if not supervisor:
            (self.home / OPERATOR_FILE).unlink(missing_ok=True)
            process = subprocess.Popen(
                [sys.executable, "-P", "-m", "inferd.operator.supervisor"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            supervisor = process.pid
            (self.home / START_LOCK).write_text(str(supervisor))  # under the lock: see above
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise OperatorError(f"the operator could not start: {_last_error(log_file)}")
            if process is None and not running(supervisor):
                return self._start()  # the supervisor gave up: start afresh
            info = read_json(self.home / OPERATOR_FILE)
            if info and info.get("supervisor") == supervisor and running(int(info["pid"])) and self.running():
                if process is not None:
                    # Reap the supervisor when it stops, so a long-lived caller (the Python
                    # client) keeps no zombie and no still-running Popen to warn about.
                    threading.Thread(
                        target=process.wait, name="inferd-supervisor-reaper", daemon=True
                    ).start()
                return process is not None
            time.sleep(0.1)
        if process is not None:
            process.terminate()
        raise OperatorError(f"the operator did not start within {START_TIMEOUT:.0f}s (see {log_file})")

    def stop(self, timeout: float = 60.0) -> bool:
        """Ask the operator to drain and stop; True when one was running.

        An operator that does not answer (its event loop busy or stopped) is stopped by signal:
        its supervisor passes SIGTERM on. Either way this waits for the operator itself to exit.
        """
        info = read_json(self.home / OPERATOR_FILE) or {}
        pid = int(info.get("pid") or 0)
        supervisor = live_supervisor(info, self.home)
        if self.running():
            try:
                self.call("POST", "/down")
            finally:
                self.close()  # the operator is going: nothing more to say on these connections
        else:
            living = [p for p in (supervisor, pid) if p and running(p) and is_operator(p, self.home)]
            if not living:
                return False
            os.kill(living[0], signal.SIGTERM)  # the supervisor if alive: it will not start another
        deadline = time.monotonic() + timeout
        while (running(pid) or (supervisor and running(supervisor))) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid and running(pid):
            raise OperatorError(f"the operator (pid {pid}) is still running after {timeout:.0f}s")
        return True

    # calls

    def call(self, method: str, path: str, body: Any = None, timeout: float = 600) -> Any:
        endpoint = self._endpoint_once_back()
        if endpoint is None:
            raise OperatorError(
                "the inferd operator is not running (start it: `inferd up` or `inferd deploy`)"
            )
        _, token, info = endpoint
        headers = {"Authorization": f"Bearer {token}"}
        payload = None
        if body is not None:
            payload = json.dumps(body, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        status, data = self._send(int(info["admin_port"]), method, path, payload, headers, timeout)
        try:
            return _result(status, data)
        except InferdError as exc:
            # an operator of other code (started before an upgrade) may not know the route or
            # the form of a name this CLI sends: say so, and how to restart it onto this code
            hint = restart_hint(info, STATE_FORMAT)
            if hint is None:
                raise
            raise type(exc)(f"{exc.message}; {hint}") from None

    def restart_hint(self) -> str | None:
        """What to do when the running operator runs other inferd code than this process (it
        started before an upgrade), else None (also when no operator runs)."""
        endpoint = self._endpoint()
        return restart_hint(endpoint[2], STATE_FORMAT) if endpoint is not None else None

    def _send(
        self,
        port: int,
        method: str,
        path: str,
        payload: bytes | None,
        headers: dict[str, str],
        timeout: float,
    ) -> tuple[int, bytes]:
        """One request on the kept connection (a new one when the operator closed it, or moved).

        `inferd get` took 0.26 s of CPU with this and 0.39 s with requests imported as before
        (medians of 20 runs on the 2-core machine, busy; Python itself starts in 0.03 s).
        """
        from http.client import HTTPConnection, HTTPException

        connection = self._connections.get(threading.get_ident())
        if connection is not None and (connection.port != port or _dropped(connection)):
            self._drop()
            connection = None
        try:
            if connection is None:
                connection = HTTPConnection("127.0.0.1", port, timeout=timeout)
                connection.connect()
                self._connections[threading.get_ident()] = connection
            elif connection.sock is not None:
                connection.sock.settimeout(timeout)
        except OSError as exc:
            self._drop()
            raise OperatorError(f"cannot reach the operator: {exc.strerror or exc}") from None
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except TimeoutError:
            self._drop()
            raise OperatorError(f"cannot reach the operator: no answer within {timeout:g}s") from None
        except (OSError, HTTPException):
            self._drop()
            raise OperatorError(
                "the operator stopped before it answered (`inferd down`, or it crashed): "
                "see `inferd get` once it is up again"
            ) from None

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/info")
        return result

    def deploy(
        self,
        path: Path,
        force: bool = False,
        refresh: bool = False,
        environ: dict[str, str] | None = None,
        replace: bool = False,
        relax_pins: bool = False,
    ) -> dict[str, Any]:
        """Deploy the project at ``path``; ``environ``: the variables its API keys come from.

        ``replace``: remove APIs that another folder deployed under the same deployment name
        (else ``ReplaceError``). ``relax_pins``: as ``inferd deploy --relax-pins``.

        An operator that runs other inferd code than this process is refused with a sentence
        that says how to restart it: its replicas would load a mix of its code and the files
        an upgrade put in its place (``code_identity``).
        """
        hint = self.restart_hint()
        if hint is not None:
            raise OperatorError(f"nothing was deployed: {hint}")
        body = {
            "path": str(path.resolve()),
            "force": force,
            "refresh": refresh,
            "environ": environ or {},
            "replace": replace,
            "relax_pins": relax_pins,
        }
        result: dict[str, Any] = self.call("POST", "/deploy", body)
        return result

    def apis(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", "/apis")
        return result

    def api(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/apis/{name}")
        return result

    def promote(self, splitter: str, api: str, judged: str | None = None) -> dict[str, Any]:
        """``judged``: the version of ``api`` a replay judged (refused if it runs another)."""
        body = {"splitter": splitter, "api": api, **({"judged": judged} if judged else {})}
        result: dict[str, Any] = self.call("POST", "/promote", body)
        return result

    def splitters(self) -> list[dict[str, Any]]:
        """Traffic splitters: weights and requests routed to each API."""
        result: list[dict[str, Any]] = self.call("GET", "/splitters")
        return result

    def delete(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", "/delete", {"name": name})
        return result

    def logs(
        self,
        name: str,
        cursor: str | None = None,
        tail: int | None = None,
        since: float | None = None,
        access: bool = False,
    ) -> dict[str, Any]:
        """The next lines of an API's log: ``{"text", "cursor", "more"}``.

        Without ``cursor``, the first read starts at the last ``tail`` lines (default 100) or
        at ``since`` (epoch seconds); pass the returned cursor to read on from there.
        """
        query: dict[str, str] = {"access": "1" if access else "0"}
        if cursor is not None:
            query["cursor"] = cursor
        if tail is not None:
            query["tail"] = str(tail)
        if since is not None:
            query["since"] = repr(since)
        result: dict[str, Any] = self.call("GET", f"/logs/{name}?{urlencode(query)}")
        return result

    def dashboard_login(self) -> dict[str, Any]:
        """A one-time login URL of the operator's dashboard (``url``, ``expires_in`` seconds)."""
        result: dict[str, Any] = self.call("POST", "/dashboard/login")
        return result


def _dropped(connection: HTTPConnection) -> bool:
    """Whether the operator closed a kept connection (it is readable before a request: EOF)."""
    if connection.sock is None:
        return True
    readable, _, _ = select.select([connection.sock], [], [], 0)
    return bool(readable)


def _result(status: int, raw: bytes) -> Any:
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if status < 400:
        return data
    if isinstance(data, dict) and "error" in data:
        raise error_type(str(data.get("type", "InferdError")))(str(data["error"]))
    raise OperatorError(f"the operator answered {status}")


def _last_error(log_file: Path) -> str:
    try:
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if " ERROR " in line:
            return line.split(" ERROR ", 1)[1]
    return lines[-1] if lines else f"see {log_file}"


def _starting_supervisor(home: Path) -> int:
    """The supervisor the last start wrote into the start lock, while it runs; else 0."""
    try:
        pid = int((home / START_LOCK).read_text() or 0)
    except (OSError, ValueError):
        return 0
    return pid if pid and running(pid) and is_operator(pid, home) else 0
