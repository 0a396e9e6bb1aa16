"""Whether a process runs, from /proc: zombies are gone, odd command names are read right."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from inferd.procfs import running


def test_a_process_runs_until_it_ends_and_a_zombie_counts_as_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    assert running(child.pid)
    assert child.stdin is not None
    child.stdin.close()  # it ends, and stays a zombie until waited for
    deadline = time.monotonic() + 30
    while running(child.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not running(child.pid)
    assert os.waitpid(child.pid, os.WNOHANG)[0] == child.pid  # it was a zombie, not reaped
    child.returncode = 0  # reaped here, not by Popen
    assert not running(child.pid)


def test_a_command_name_with_spaces_is_not_read_as_its_state() -> None:
    # was (client.py): the third space-separated field of /proc/PID/stat, here "Z" of the name
    code = "import pathlib, time; pathlib.Path('/proc/self/comm').write_text('x Z y'); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{child.pid}/comm").read_text().strip() != "x Z y" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert running(child.pid)
    finally:
        child.kill()
        child.wait()
