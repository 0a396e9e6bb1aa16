"""A project's ``requirements.txt`` as a file: its limits, the files it includes, its digest.

``engine.packages`` checks the pins and runs pip; this module reads the file (and those its
``-r``/``-c`` lines name) the same way for ``inferd validate``, ``inferd test``, ``serve`` and the
operator, and names the cached environment by the content of all of them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from pathlib import Path

from inferd.errors import LoadError

# Each pin inferd's environment does not meet is looked up on the index (a pip run of about a
# second) before pip installs anything: a 10 MB file of pins ran for hours, saying nothing.
MAX_REQUIREMENTS_BYTES = 1 << 20
MAX_REQUIREMENTS = 2_000


def requirement_lines(text: str) -> list[str]:
    """The lines of a requirements file that say something (comments and blank lines left out)."""
    lines = (raw.split(" #", 1)[0].strip() for raw in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def read_requirements(requirements: Path) -> str:
    """``requirements.txt``'s text; ``LoadError`` when it is past the limits, said before any pip run."""
    try:
        size = requirements.stat().st_size
        if size > MAX_REQUIREMENTS_BYTES:
            raise LoadError(
                f"requirements.txt is {size / (1 << 20):.1f} MiB; inferd takes one of at most "
                f"{MAX_REQUIREMENTS_BYTES >> 20} MiB (a pip freeze of a large environment is a few KiB)"
            )
        text = requirements.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise LoadError(f"requirements.txt cannot be read: {exc.strerror or exc}") from None
    # a line ending in a backslash goes on in the next (pip-compile's `--hash` lines): one requirement
    count = sum(not line.endswith("\\") for line in requirement_lines(text))
    if count > MAX_REQUIREMENTS:
        raise LoadError(
            f"requirements.txt lists {count:,} requirements; inferd installs at most "
            f"{MAX_REQUIREMENTS:,} (a pip freeze of a large environment lists a few hundred)"
        )
    return text


# pip reads the file a ``-r FILE`` or ``-c FILE`` line names beside the file naming it, and
# inferd hands pip a copy of the list written elsewhere ("Could not open requirements file").
_INCLUDE = re.compile(r"^(-r|-c|--requirement|--constraint)(?:\s*=\s*|\s+|)(\S.*)$")
MAX_INCLUDED = 100


def _includes(text: str, folder: Path, root: Path) -> list[tuple[str, str, Path]]:
    """(line, option, absolute path) of each ``-r``/``-c`` line of ``text``, a file in ``folder``."""
    found = []
    for line in requirement_lines(text):
        match = _INCLUDE.match(line)
        if match is None or "://" in match.group(2):  # a URL: pip fetches it
            continue
        path = Path(os.path.normpath(folder / match.group(2).strip().strip("'\"")))
        if path != root and root not in path.parents:
            raise LoadError(
                f"requirements.txt: {line} is outside the project folder, which is all a deploy "
                "copies: move the file into the project"
            )
        if not path.is_file():
            raise LoadError(f"requirements.txt: {line}: no such file in the project")
        found.append((line, match.group(1), path))
    return found


def included_files(requirements: Path) -> list[Path]:
    """The files ``requirements`` includes (``-r``, ``-c``) at any depth, each once."""
    root = Path(os.path.normpath(requirements.parent.absolute()))
    pending, found = [requirements], [requirements]
    while pending:
        current = pending.pop()
        for _line, _option, path in _includes(read_requirements(current), current.parent, root):
            if path not in found:
                if len(found) > MAX_INCLUDED:
                    raise LoadError(f"requirements.txt includes more than {MAX_INCLUDED} files")
                found.append(path)
                pending.append(path)
    return found[1:]


def expanded(requirements: Path) -> str:
    """``requirements``'s lines with each ``-r`` file's lines in its place (at any depth, each
    file once), so that their pins are checked as its own (``--relax-pins``, inferd's own
    packages: pip was handed ``-r FILE`` as it was); ``-c`` lines name their files by absolute
    paths (pip reads them beside the list it is handed, elsewhere)."""
    root = Path(os.path.normpath(requirements.parent.absolute()))
    seen = {Path(os.path.normpath(requirements.absolute()))}
    lines = _expand(read_requirements(requirements), root, root, seen)
    count = sum(not line.endswith("\\") for line in lines)
    if count > MAX_REQUIREMENTS:
        raise LoadError(
            f"requirements.txt and the files it includes list {count:,} requirements; inferd installs "
            f"at most {MAX_REQUIREMENTS:,} (a pip freeze of a large environment lists a few hundred)"
        )
    return "\n".join(lines)


def _expand(text: str, folder: Path, root: Path, seen: set[Path]) -> list[str]:
    includes = {line: (option, path) for line, option, path in _includes(text, folder, root)}
    lines = []
    for line in requirement_lines(text):
        if line not in includes:
            lines.append(line)
            continue
        option, path = includes[line]
        if option in ("-c", "--constraint"):
            lines.append(f"{option} {shlex.quote(str(path))}")
        elif path not in seen:
            seen.add(path)
            if len(seen) > MAX_INCLUDED:
                raise LoadError(f"requirements.txt includes more than {MAX_INCLUDED} files")
            lines += _expand(read_requirements(path), path.parent, root, seen)
    return lines


def packages_dir(home: Path, requirements: Path, relax: bool = False) -> Path:
    read_requirements(requirements)  # past the limits: said here, before the bytes are read
    content = requirements.read_bytes()
    for path in included_files(requirements):  # an edit of an included file is a new install
        content += (
            b"\0" + os.fsencode(path.relative_to(requirements.parent.absolute())) + b"\0" + path.read_bytes()
        )
    digest = hashlib.sha256(content + (b"\0relax" if relax else b"")).hexdigest()[:24]
    return home / "envs" / digest
