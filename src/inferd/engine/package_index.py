"""What the package index has: the versions of a package pip could install here.

``engine.packages`` asks about each pin inferd's environment does not meet. ``pip index
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
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

INDEX_TIMEOUT = 120
# pre-releases too (pip leaves them out unless asked): a pin naming one (``==2.0rc1``) installs one
_OPTIONS = ["--pre", "--disable-pip-version-check", "--no-input"]
# pip's own entry point (what its `pip` script calls), once per name in one process; None for a
# name pip found nothing for
_MANY = (
    "import contextlib, io, json, sys\n"
    "from pip._internal.cli.main import main\n"
    "found = {}\n"
    "for name in sys.argv[1:]:\n"
    "    out = io.StringIO()\n"
    "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):\n"
    "        try:\n"
    f"            code = main(['index', 'versions', name, '--json', '--only-binary=:all:', *{_OPTIONS!r}])\n"
    "        except SystemExit as exit:\n"
    "            code = exit.code\n"
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


@functools.lru_cache(maxsize=256)
def _index_versions(name: str, wheels_only: bool) -> list[Version]:
    command = [sys.executable, "-P", "-m", "pip", "index", "versions", name, "--json"]
    command += ["--only-binary=:all:"] if wheels_only else []
    command += _OPTIONS
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=INDEX_TIMEOUT)
    except subprocess.TimeoutExpired:
        return []
    if result.returncode != 0:
        # pip says so of an index that did not answer too, after its warnings that it retried
        unanswered = "WARNING: Retrying (" in result.stderr
        if not wheels_only and "No matching distribution found" in result.stderr and not unanswered:
            raise NotOnIndex(name)
        return []  # the index unreachable: pip says why when it installs
    return _versions(result.stdout)


def many_wheel_versions(names: Iterable[str]) -> dict[str, list[Version]]:
    """``wheel_versions`` of each of ``names`` (by canonical name) in a few pip processes; a
    name these could not ask about is left out (``wheel_versions`` asks again)."""
    wanted = sorted({canonicalize_name(name) for name in names})
    if not wanted:
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
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return {}  # each asked again, alone (pip's internals changed, the index is slow)
    if not isinstance(found, dict):
        return {}
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
