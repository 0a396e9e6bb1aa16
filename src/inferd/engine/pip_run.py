"""Running pip for a project's ``requirements.txt``: into a scratch folder, ending with inferd.

``engine.requirement_plan`` decides what to hand pip; this module runs it, removes what a failed run
left, and says why it failed in a sentence (pip's own last lines that give the reason).
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import os
import re
import shutil
import signal
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
    # in the encoding pip reads it in (its locale's, UTF-8 in its UTF-8 mode), a path's bytes as
    # they are: under an ASCII locale a path that is not ASCII (-c /home/josé/c.txt) raised here
    encoding = "utf-8" if _ascii_locale() else sys.getfilesystemencoding()
    listing.write_text("\n".join(lines) + "\n", encoding=encoding, errors="surrogateescape")
    # pip's own temporary folders (builds, wheels) inside the scratch folder: a pip killed (its
    # timeout, the operator's end) left them in /tmp for good, about four a run of the suite
    temporary = scratch / ".pip-tmp"
    temporary.mkdir(exist_ok=True)
    # not --quiet: a dependency conflict's cause ("aaa 1.0 depends on ccc==1.0") is on its stdout
    command = [sys.executable, "-P", "-c", _PIP_ENDING_WITH_US.format(parent=os.getpid()), "install"]
    command += ["--disable-pip-version-check", *options]
    command += ["--no-input", "--target", str(scratch), "-r", str(listing)]
    # in this process group still: Ctrl-C in a terminal (inferd serve) interrupts it too
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8" if _ascii_locale() else None,
        errors="replace",  # a build's message in another encoding is read, not a UnicodeDecodeError
        env=dict(os.environ, PIP_NO_INPUT="1", TMPDIR=str(temporary), **_utf8_mode()),
        cwd=str(cwd),
    )
    try:
        stdout, stderr = process.communicate(timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill(process)
        shutil.rmtree(scratch, ignore_errors=True)
        raise LoadError(f"installing requirements.txt took longer than {PIP_TIMEOUT}s") from None
    except BaseException:
        _kill(process)
        raise
    if process.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        reason = pip_failure(_with_cause(stderr or stdout, stdout), process.returncode, lines)
        raise LoadError(f"installing requirements.txt failed: {reason}")
    shutil.rmtree(temporary, ignore_errors=True)


def _ascii_locale() -> bool:
    return codecs.lookup(sys.getfilesystemencoding()).name == "ascii"


def _utf8_mode() -> dict[str, str]:
    """Python's UTF-8 mode for pip under an ASCII locale (``LANG=C`` with
    ``PYTHONCOERCECLOCALE=0``): pip failed on a path that is not ASCII (a home or project under
    /home/josé), writing it into its records ("surrogates not allowed")."""
    return {"PYTHONUTF8": "1"} if _ascii_locale() else {}


def _kill(process: subprocess.Popen[str]) -> None:
    """Kill pip and what it runs (a hung build), and reap pip."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGSTOP)  # starts nothing more while its tree is read
        for pid in [*_descendants(process.pid), process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    process.communicate()


def _descendants(root: int) -> list[int]:
    """The processes ``root`` started, and theirs (Linux's /proc); none where it cannot tell."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        children = parents.get(pending.pop(), [])
        found += children
        pending += children
    return found


def _with_cause(stderr: str, stdout: str) -> str:
    """``stderr`` with the cause of a dependency conflict, which pip writes to stdout, before its end."""
    lines = stdout.splitlines()
    if "ResolutionImpossible" not in stderr or "The conflict is caused by:" not in lines:
        return stderr
    start = lines.index("The conflict is caused by:")
    cause = list(itertools.takewhile(str.strip, lines[start + 1 :]))
    said = [line for line in stderr.splitlines() if "ResolutionImpossible: for help visit" not in line]
    return "\n".join([*said, "The conflict is caused by:", *cause])


# What pip wraps a failing build's output in (its box drawing, notes and hints), not the reason.
_DECORATION = re.compile(
    "^\\s*(?:[\u00d7\u2502\u2570\u2551\u2559].*|"  # pip's box: the command, its status, its frame
    r"\[end of output\]|\[\d+ lines? of output\]|note: .*|hint: .*|"
    r"error: subprocess-exited-with-error|error: metadata-generation-failed|exit code: \d+)\s*$"
)

# (the list's path is any text up to its name: a home's path may hold a space, /home/Jane Doe)
_IN_LISTING = re.compile(
    r" \((?:from -r .+?\.requirements\.txt \(line \d+\)|from line \d+ of .+?\.requirements\.txt)\)"
)


def pip_failure(output: str, status: int, lines: list[str] | None = None) -> str:
    """The last lines of pip's error output that say why (a failing build's own lines included);
    ``lines``: the list pip was handed, to name a line of it by its text."""
    found = [line.strip() for line in output.splitlines() if line.strip() and not _DECORATION.match(line)]
    # where in inferd's copy of the list: its line numbers are not the user's file's
    found = [_IN_LISTING.sub("", line) for line in found]
    if lines:  # "Cannot install -r /.../.requirements.txt (line 3) and ...": the line itself
        found = [_LISTING_LINE.sub(lambda match: _line(lines, int(match[1])), line) for line in found]
    # pip's warnings (an index location of its configuration missing) are not why it failed, but
    # its last retry of an index that did not answer is
    retried = [line for line in found if line.startswith("WARNING: Retrying (")][-1:]
    found = [line for line in found if not line.startswith("WARNING:") or line in retried] or found
    said = found[-3:]
    # what the last lines are about (THESE PACKAGES DO NOT MATCH THE HASHES, then each package's)
    errors = [line for line in found[:-3] if line.startswith("ERROR:")]
    if errors and not any(line.startswith("ERROR:") for line in said):
        said.insert(0, errors[-1])
    return "; ".join(said) if said else f"pip exited with status {status}"


_LISTING_LINE = re.compile(r"-r .+?\.requirements\.txt \(line (\d+)\)")


def _line(lines: list[str], number: int) -> str:
    return lines[number - 1] if 0 < number <= len(lines) else f"line {number}"
