"""The supervisor's watch over a hung operator (operator/watchdog.py), on real processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

from inferd.operator.watchdog import BEAT_FILE, DEFAULT_HANG, Watchdog, hang_timeout


def test_the_hang_timeout_is_read_from_the_environment() -> None:
    assert hang_timeout({}) == DEFAULT_HANG == 60  # README: default 60
    assert hang_timeout({"INFERD_HANG_TIMEOUT": "2.5"}) == 2.5
    assert hang_timeout({"INFERD_HANG_TIMEOUT": "0"}) == 0  # off
    for bad in ("-1", "soon", "nan", "inf"):
        assert hang_timeout({"INFERD_HANG_TIMEOUT": bad}) == DEFAULT_HANG


def test_a_process_whose_beat_stopped_is_killed_and_one_never_beating_is_not(tmp_path: Path) -> None:
    said: list[str] = []
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        # One that never beat (still starting, or another operator's file): left alone.
        (tmp_path / BEAT_FILE).write_text(str(silent.pid + 100000))
        with Watchdog(tmp_path, silent.pid, 0.5, said.append):
            assert silent.poll() is None
            with contextlib.suppress(subprocess.TimeoutExpired):
                silent.wait(3)
        assert silent.poll() is None and said == []
        # One whose beat names it and does not move: SIGABRT, as it ignores nothing.
        (tmp_path / BEAT_FILE).write_text(str(hung.pid))
        with Watchdog(tmp_path, hung.pid, 0.5, said.append):
            assert hung.wait(30) != 0
        assert len(said) == 1 and f"(pid {hung.pid}) has not run for" in said[0]
    finally:
        for process in (silent, hung):
            process.kill()
            process.wait()
