"""Running pip for a project's ``requirements.txt``: into a scratch folder, ending with inferd.

``engine.packages`` decides what to hand pip; this module runs it, removes what a failed run
left, and says why it failed in a sentence (pip's own last lines that give the reason).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from inferd.errors import LoadError

PIP_TIMEOUT = 900
# ``python -m pip``, but killed by the kernel when the thread that started it ends (the operator
# killed, or stopped by ``inferd down`` during the install): an orphaned pip went on writing
# into a scratch folder nobody would use.
_PIP_ENDING_WITH_US = (
    "import ctypes, os, runpy, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGKILL); "  # PR_SET_PDEATHSIG
    "os.getppid() == {parent} or sys.exit('the process that started pip is gone'); "
    "runpy.run_module('pip', run_name='__main__', alter_sys=True)"
)


def pip_install(scratch: Path, lines: list[str], cwd: Path, *options: str) -> None:
    """pip-install ``lines`` into ``scratch``, run in ``cwd`` (the project: its relative paths);
    ``LoadError`` with pip's reason, ``scratch`` removed, when it fails or takes too long."""
    listing = scratch / ".requirements.txt"
    listing.write_text("\n".join(lines) + "\n")
    command = [
        sys.executable,
        "-P",
        "-c",
        _PIP_ENDING_WITH_US.format(parent=os.getpid()),
        "install",
        "--quiet",
    ]
    command += ["--disable-pip-version-check", *options]
    command += ["--no-input", "--target", str(scratch), "-r", str(listing)]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT,
            env=dict(os.environ, PIP_NO_INPUT="1"),
            cwd=str(cwd),
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(scratch, ignore_errors=True)
        raise LoadError(f"installing requirements.txt took longer than {PIP_TIMEOUT}s") from None
    if result.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        reason = pip_failure(result.stderr or result.stdout, result.returncode)
        raise LoadError(f"installing requirements.txt failed: {reason}")


# What pip wraps a failing build's output in (its box drawing, notes and hints), not the reason.
_DECORATION = re.compile(
    "^\\s*(?:[\u00d7\u2502\u2570\u2551\u2559].*|"  # pip's box: the command, its status, its frame
    r"\[end of output\]|\[\d+ lines? of output\]|note: .*|hint: .*|"
    r"error: subprocess-exited-with-error|error: metadata-generation-failed|exit code: \d+)\s*$"
)

_IN_LISTING = re.compile(
    r" \((?:from -r \S+\.requirements\.txt \(line \d+\)|from line \d+ of \S+\.requirements\.txt)\)"
)


def pip_failure(output: str, status: int) -> str:
    """The last lines of pip's error output that say why (a failing build's own lines included)."""
    found = [line.strip() for line in output.splitlines() if line.strip() and not _DECORATION.match(line)]
    # where in inferd's copy of the list: its line numbers are not the user's file's
    found = [_IN_LISTING.sub("", line) for line in found]
    # pip's warnings (an index location of its configuration missing) are not why it failed
    found = [line for line in found if not line.startswith("WARNING:")] or found
    return "; ".join(found[-3:]) if found else f"pip exited with status {status}"
