"""A project's ``requirements.txt``, installed once per distinct content into a cached folder.

Replicas append the folder to ``sys.path``, after inferd's own packages, so what Cortex
pre-installed (numpy, boto3, requests, msgpack, dill, the runtimes) stays the version inferd
runs with. Cortex ran ``pip install`` at every replica start; here a scale-up costs nothing.
What pip is handed, and what the user is told about the rest, is ``engine.requirement_plan``'s.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from inferd.engine.pip_run import pip_install as _pip_install
from inferd.engine.requirement_plan import installed_version, plan
from inferd.engine.requirements_file import expanded
from inferd.engine.requirements_file import packages_dir as packages_dir
from inferd.engine.shadowed import remove_shadowed, shadowed_modules
from inferd.errors import LoadError
from inferd.storage import scratch_folder

NOTES_FILE = ".notes.json"
Note = Callable[[str], None]


def ensure_packages(home: Path, requirements: Path, relax: bool = False, warn: Note | None = None) -> Path:
    """Install ``requirements`` into its cached folder (once); the folder. Raises ``LoadError``.

    ``relax`` installs the nearest installable version of a pin that cannot install here;
    ``warn`` receives each warning (relaxed pins, conflicts with inferd's own packages).
    """
    say = warn or (lambda text: None)
    target = packages_dir(home, requirements, relax)
    if (target / ".complete").exists():
        for text in _read_notes(target):
            say(text)
        return target
    checked = plan(expanded(requirements), relax)
    for text in checked.warnings:
        say(text)
    try:
        scratch = scratch_folder(target.parent, ".installing-")
    except OSError as exc:
        raise _unwritable(target, exc) from exc
    try:
        if checked.lines or checked.no_deps:
            try:
                if checked.lines:
                    _pip_install(scratch, checked.lines, requirements.parent)
                if checked.no_deps:
                    _pip_install(scratch, checked.no_deps, requirements.parent, "--no-deps")
            except LoadError as exc:
                if not checked.built:
                    raise
                raise LoadError(f"{exc.message}; {'; '.join(checked.built)}") from exc
            brought = remove_shadowed(scratch, installed_version)  # never imported: inferd's come first
            brought += shadowed_modules(scratch)
            for text in brought:
                say(text)
            checked.warnings += brought
        (scratch / NOTES_FILE).write_text(json.dumps(checked.warnings))
        (scratch / ".complete").write_text("")
        try:
            scratch.rename(target)
        except OSError:
            if not (target / ".complete").exists():
                raise
            shutil.rmtree(scratch, ignore_errors=True)  # another deploy finished the same install first
    except BaseException as exc:
        # a failure after pip (a full disk writing the notes): this process's folder would be kept
        # while it runs (the collection keeps a running maker's folders), so it goes now
        shutil.rmtree(scratch, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _unwritable(target, exc) from exc
        raise
    return target


def _unwritable(target: Path, exc: OSError) -> LoadError:
    """The API's error for a cache folder that cannot be written (a full disk), as a download's:
    the OSError was the deploy's 500, "operator error: OSError: [Errno 28] ..."."""
    return LoadError(f"cannot install requirements.txt into {target.parent}: {exc.strerror or exc}")


def _read_notes(target: Path) -> list[str]:
    try:
        notes = json.loads((target / NOTES_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [str(note) for note in notes] if isinstance(notes, list) else []
