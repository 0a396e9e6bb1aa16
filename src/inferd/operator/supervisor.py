"""``python -m inferd.operator.supervisor``: keeps the operator running, and its log rotated.

``inferd up`` and ``inferd deploy`` start this small process, which starts the operator
(``inferd.operator.daemon``) and starts it again whenever it dies after it had come up (a crash,
``kill -9``, the kernel's OOM killer), at once the first time and with a growing pause while it
keeps dying young. The new operator restores every deployment from ``$INFERD_HOME``. The
operator exiting 0 (``inferd down``, SIGTERM) ends the supervisor too; an operator that fails
before it is up (a corrupt state, a port in use) is not retried: the CLI reports why.

The operator's stdout and stderr come through a pipe into ``$INFERD_HOME/operator.log``, rotated
like the API logs. A supervisor that dies (``kill -9``, the OOM killer) is replaced by the
operator, which starts a new one that *adopts* it (``ADOPT_ENV``: the operator's pid; the
operator's output comes on this process's stdin): it watches the running operator, then starts
it again as above when it dies (``operator/supervision.py``).

``inferd up --systemd`` prints a unit for those who prefer their init system (then systemd
restarts the operator, and this process is not used).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from inferd.logfiles import RotatingLog
from inferd.operator.state import OPERATOR_FILE, read_json
from inferd.operator.watchdog import Watchdog, hang_timeout
from inferd.procfs import running
from inferd.signalmask import unblock_signals
from inferd.storage import inferd_home

SUPERVISOR_ENV = "INFERD_SUPERVISOR"
ADOPT_ENV = "INFERD_ADOPT"  # set by an operator whose supervisor died: its pid
MAX_PAUSE = 10.0
YOUNG = 10.0  # an operator that dies sooner than this after starting is crash-looping


def copy_output(fd: int, out: RotatingLog) -> None:
    """Write what the operator prints into ``out``, whole lines at a time, until it closes."""
    partial = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        partial += chunk
        end = partial.rfind(b"\n")
        if end >= 0:
            out.write(partial[:end].decode("utf-8", "replace"))
            partial = partial[end + 1 :]
    if partial:
        out.write(partial.decode("utf-8", "replace"))


def _stamp(text: str) -> str:
    return f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor {text}"


class Supervisor:
    def __init__(self, home: Path, adopted: int = 0) -> None:
        self.home = home
        self.out = RotatingLog(home / "operator.log")
        self.child: subprocess.Popen[bytes] | None = None
        self.adopted = adopted  # an operator started by an earlier supervisor, until it exits
        self.pid = adopted  # the operator's pid
        self.stopping = False
        self.hang = hang_timeout()

    def _say(self, text: str) -> None:
        self.out.write(_stamp(text))

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
        elif self.adopted and running(self.adopted):
            os.kill(self.adopted, signal.SIGTERM)

    def watch_adopted(self) -> tuple[int, bool, float]:
        """Follow the adopted operator until it exits, as ``run_once`` follows its own child.

        Its exit status cannot be read (it is not this process's child): an operator that
        stopped as asked removed ``operator.json`` last, one that died left it naming its pid.
        """
        started, pid = time.monotonic(), self.adopted
        with Watchdog(self.home, pid, self.hang, self._say):
            copy_output(sys.stdin.fileno(), self.out)  # until the operator (and its children) close it
        while running(pid):
            time.sleep(0.05)
        self.adopted = 0
        info = read_json(self.home / OPERATOR_FILE)
        died = bool(info) and info is not None and info.get("pid") == pid
        return (-signal.SIGKILL if died else 0), True, time.monotonic() - started

    def run_once(self) -> tuple[int, bool, float]:
        """Run the operator until it exits: its exit status, whether it had come up, how long."""
        if self.adopted:
            return self.watch_adopted()
        started = time.monotonic()
        self.child = subprocess.Popen(
            [sys.executable, "-P", "-m", "inferd.operator.daemon"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, **{SUPERVISOR_ENV: str(os.getpid())}),
        )
        self.pid = self.child.pid
        assert self.child.stdout is not None
        with Watchdog(self.home, self.pid, self.hang, self._say):
            copy_output(self.child.stdout.fileno(), self.out)
            code = self.child.wait()
        info = read_json(self.home / OPERATOR_FILE)
        came_up = bool(info) and info is not None and info.get("pid") == self.child.pid
        return code, came_up, time.monotonic() - started

    def stopped_as_asked(self) -> bool:
        """Whether the operator that died was stopping as asked (``operator.json`` says so): then
        it is not started again (``operator/supervision.py``, ``mark_stopping``)."""
        info = read_json(self.home / OPERATOR_FILE)
        if not info or info.get("pid") != self.pid or info.get("stopping") is not True:
            return False
        self.out.write(_stamp(f"the operator (pid {self.pid}) ended while it stopped; not starting it again"))
        (self.home / OPERATOR_FILE).unlink(missing_ok=True)
        return True

    def run(self) -> int:
        young = 0
        while True:
            code, came_up, lasted = self.run_once()
            if self.stopping or code == 0 or not came_up:
                return code
            if self.stopped_as_asked():
                return 0
            if self.child is None or self.child.pid != self.pid:
                how = "died"  # an adopted operator: how is not known
            elif code < 0:
                how = f"was killed by signal {-code}"
            else:
                how = f"exited with status {code}"
            young = young + 1 if lasted < YOUNG else 0
            pause = 0.0 if young <= 1 else min(MAX_PAUSE, 0.5 * 2 ** (young - 2))
            self.out.write(
                _stamp(
                    f"the operator (pid {self.pid}) {how}; "
                    f"starting it again{f' in {pause:.1f}s' if pause else ''}"
                )
            )
            deadline = time.monotonic() + pause
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.stopping:
                return 0


def main() -> int:
    unblock_signals()  # started by a script's Client().deploy: see signalmask.py
    home = inferd_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    adopted = os.environ.pop(ADOPT_ENV, "")
    supervisor = Supervisor(home, int(adopted) if adopted.isdigit() else 0)
    if supervisor.adopted:
        supervisor.out.write(_stamp(f"watching the running operator (pid {supervisor.adopted})"))
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
