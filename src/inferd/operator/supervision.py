"""The operator keeps a supervisor: when the one that started it dies, it starts another.

The supervisor (``operator/supervisor.py``) brings a dead operator back; nothing brought a dead
supervisor back. Killed (``kill -9``, the OOM killer, a user cleaning up processes), it left the
operator running unwatched: ``operator.json`` named a dead supervisor, ``inferd up`` said the
operator was running, and the operator's next crash took every API down for good. Its log
went nowhere too, its stdout being a pipe nobody read.

So the operator looks at its supervisor every second. Once it is gone, the operator starts a new
one that adopts it: the new supervisor reads the operator's output from a new pipe (the
operator's stdout and stderr are moved onto it) and, once the operator dies, starts it again
as the first one would have. ``operator.json`` (kept by ``keep_files``) names the new one.
Only an operator started by a supervisor does this (``inferd up --systemd`` leaves it to
systemd).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson

from inferd.operator.state import OPERATOR_FILE, write_small
from inferd.operator.supervisor import ADOPT_ENV, SUPERVISOR_ENV

log = logging.getLogger("inferd.operator")

CHECK_PERIOD = 1.0


def _is_supervisor(pid: int) -> bool:
    """Whether ``pid`` runs (not a zombie) an inferd supervisor (not a process that took its pid)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state != "Z" and b"inferd.operator.supervisor" in command


def start_adopting_supervisor() -> int:
    """Start a supervisor that adopts this process; its pid. This process's stdout and stderr
    now go to it."""
    read, write = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "inferd.operator.supervisor"],
            stdin=read,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(os.environ, **{ADOPT_ENV: str(os.getpid())}),
        )
    except BaseException:
        os.close(write)
        raise
    finally:
        os.close(read)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(write, 1)
    os.dup2(write, 2)
    os.close(write)
    # It outlives this process as a rule; should it end first, it is reaped, not left a zombie.
    threading.Thread(target=process.wait, name="inferd-supervisor-reaper", daemon=True).start()
    os.environ[SUPERVISOR_ENV] = str(process.pid)
    return process.pid


async def keep_supervised(home: Path, info: dict[str, object], files: dict[str, str]) -> None:
    """While the operator runs: replace a supervisor that died (see the module's docstring).

    ``info`` is what ``operator.json`` holds; ``files`` is what ``keep_files`` keeps written,
    updated here to name the new supervisor."""
    while True:
        await asyncio.sleep(CHECK_PERIOD)
        supervisor = info.get("supervisor")
        if not isinstance(supervisor, int) or _is_supervisor(supervisor):
            continue
        try:
            info["supervisor"] = start_adopting_supervisor()
        except OSError as exc:
            log.error("the supervisor (pid %d) is gone and no other could start: %s", supervisor, exc)
            await asyncio.sleep(30 * CHECK_PERIOD)
            continue
        described = orjson.dumps(info).decode()
        files[OPERATOR_FILE] = described
        try:
            write_small(home / OPERATOR_FILE, described)
        except OSError as exc:  # keep_files tries again
            log.error("cannot write %s: %s", home / OPERATOR_FILE, exc)
        log.warning(
            "the supervisor (pid %d) is gone: supervisor %s now restarts this operator if it dies",
            supervisor,
            info["supervisor"],
        )


def mark_stopping(home: Path, info: dict[str, object], files: dict[str, str]) -> None:
    """Say in ``operator.json`` that this operator stops as asked (``inferd down``, SIGTERM): one
    killed while it drains (someone found the drain too long) is not started again by its
    supervisor (it was: every API came back, and ``inferd down`` said the operator stopped)."""
    info["stopping"] = True
    files[OPERATOR_FILE] = orjson.dumps(info).decode()
    with contextlib.suppress(OSError):
        write_small(home / OPERATOR_FILE, files[OPERATOR_FILE])
