"""What the package index has: the versions of a package pip could install here.

``engine.requirement_plan`` asks about each pin inferd's environment does not meet. ``pip index
versions`` answers in pip's own terms (its configuration, this Python's wheel tags), but each
run is a pip process of about 0.7 s of CPU: the many pins of a ``pip freeze`` are asked in a few
processes that each import pip once (``many_wheel_versions``).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

INDEX_TIMEOUT = 120
# After a lookup the index did not answer (each is pip's full wait: 6 tries of 15 s), the others
# are not asked for this long: pip says why when it installs.
UNANSWERED_FOR = 300
_unanswered = [float("-inf")]  # when one last did not answer (time.monotonic)
_RETRIED = "WARNING: Retrying ("  # pip's warning that the index did not answer a try
# pre-releases too (pip leaves them out unless asked): a pin naming one (``==2.0rc1``) installs one
_OPTIONS = ["--pre", "--disable-pip-version-check", "--no-input"]
# pip's own entry point (what its `pip` script calls), once per name in one process; None for a
# name pip found nothing for; it stops at a name whose index did not answer (pip retried it)
_MANY = (
    "import contextlib, io, json, sys\n"
    "from pip._internal.cli.main import main\n"
    "found = {}\n"
    "for name in sys.argv[1:]:\n"
    "    out, err = io.StringIO(), io.StringIO()\n"
    "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
    "        try:\n"
    f"            code = main(['index', 'versions', name, '--json', '--only-binary=:all:', *{_OPTIONS!r}])\n"
    "        except SystemExit as exit:\n"
    "            code = exit.code\n"
    f"    if code != 0 and {_RETRIED!r} in err.getvalue():\n"
    "        found[''] = None\n"
    "        break\n"
    "    found[name] = out.getvalue() if code == 0 else None\n"
    "print(json.dumps(found))\n"
)
MANY_PROCESSES = 4


class NotOnIndex(LookupError):
    """The index has no package of this name (pip's "No matching distribution found")."""


def wheel_versions(name: str) -> list[Version]:
    """Versions of ``name`` on the index with a wheel for this Python and platform (pip's view)."""
    return _index_versions(name, wheels_only=True)


def source_versions(name: str) -> list[Version]:
    """Versions of ``name`` on the index that pip could install here, building sources included."""
    return _index_versions(name, wheels_only=False)


def _index_unanswered() -> bool:
    return time.monotonic() - _unanswered[0] < UNANSWERED_FOR


def _index_versions(name: str, wheels_only: bool) -> list[Version]:
    if _index_unanswered():
        return []
    return _asked(name, wheels_only)


@functools.lru_cache(maxsize=256)
def _asked(name: str, wheels_only: bool) -> list[Version]:
    command = [sys.executable, "-P", "-m", "pip", "index", "versions", name, "--json"]
    command += ["--only-binary=:all:"] if wheels_only else []
    command += _OPTIONS
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=INDEX_TIMEOUT)
    except subprocess.TimeoutExpired:
        _unanswered[0] = time.monotonic()
        return []
    if result.returncode != 0:
        # pip says so of an index that did not answer too, after its warnings that it retried
        if _RETRIED in result.stderr:
            _unanswered[0] = time.monotonic()
        elif not wheels_only and "No matching distribution found" in result.stderr:
            raise NotOnIndex(name)
        return []  # the index unreachable: pip says why when it installs
    return _versions(result.stdout)


def many_wheel_versions(names: Iterable[str]) -> dict[str, list[Version]]:
    """``wheel_versions`` of each of ``names`` (by canonical name) in a few pip processes; a
    name these could not ask about is left out (``wheel_versions`` asks again)."""
    wanted = sorted({canonicalize_name(name) for name in names})
    if not wanted or _index_unanswered():
        return {}
    count = min(MANY_PROCESSES, os.cpu_count() or 1, len(wanted))
    with ThreadPoolExecutor(max_workers=count) as pool:
        answers = list(pool.map(_ask_many, [wanted[start::count] for start in range(count)]))
    return {name: versions for answer in answers for name, versions in answer.items()}


def _ask_many(names: list[str]) -> dict[str, list[Version]]:
    command = [sys.executable, "-P", "-c", _MANY, *names]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=INDEX_TIMEOUT + len(names))
        found = json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else {}
    except subprocess.TimeoutExpired:
        _unanswered[0] = time.monotonic()
        return {}
    except (ValueError, IndexError):
        return {}  # each asked again, alone (pip's internals changed)
    if not isinstance(found, dict):
        return {}
    if found.pop("", False) is None:  # a name the index did not answer: the rest not asked
        _unanswered[0] = time.monotonic()
    return {name: [] if output is None else _versions(str(output)) for name, output in found.items()}


def _versions(output: str) -> list[Version]:
    """The versions in ``pip index versions --json``'s output, oldest first."""
    try:
        found = json.loads(output).get("versions", [])
    except (ValueError, AttributeError):
        return []
    versions = []
    for text in found:
        try:
            versions.append(Version(text))
        except InvalidVersion:
            continue
    return sorted(versions)
