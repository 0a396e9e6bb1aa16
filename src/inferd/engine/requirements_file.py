"""A project's ``requirements.txt`` as a file: its limits, the files it includes, its digest.

``engine.requirement_plan`` checks the pins and ``engine.packages`` runs pip; this module reads
the file (and those its ``-r``/``-c`` lines name) the same way for ``inferd validate``,
``inferd test``, ``serve`` and the operator, and names the cached environment by the content of
all of them.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

from inferd.errors import LoadError
from inferd.storage import SKIPPED_DIRS, SKIPPED_SUFFIXES, SNAPSHOT_FILES, file_digest

# Each pin inferd's environment does not meet is looked up on the index (a pip run of about a
# second) before pip installs anything: a 10 MB file of pins ran for hours, saying nothing.
MAX_REQUIREMENTS_BYTES = 1 << 20
MAX_REQUIREMENTS = 2_000


_COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's: a # after whitespace (`#egg=` in a URL is not one)


def requirement_lines(text: str) -> list[str]:
    """The lines of a requirements file that say something (comments and blank lines left out)."""
    lines = (_COMMENT.sub("", raw).strip() for raw in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def joined(lines: list[str]) -> list[str]:
    """``lines`` with each one ending in a backslash joined to the next (pip-compile's hashes)."""
    joined: list[str] = []
    pending = ""
    for line in lines:
        if line.endswith("\\"):
            pending += line.removesuffix("\\").strip() + " "
        else:
            joined.append(pending + line)
            pending = ""
    return [*joined, pending.strip()] if pending.strip() else joined


# ``-e PATH``: pip's editable install leaves a ``.pth`` file that replicas never read (the folder
# is on sys.path, not a site folder); a deployed version runs a copy anyway, so it is installed as one.
_EDITABLE = re.compile(r"^(?:-e|--editable)(?:\s*=\s*|\s+|)(\S.*)$")


def not_editable(line: str) -> str:
    match = _EDITABLE.match(line)
    return line if match is None else match.group(1)


def frozen_elsewhere(line: str) -> str | None:
    """Why ``pkg @ file:///...`` cannot install: a file of another machine (``pip freeze`` in a
    conda environment); None for any other line, or one naming a file here."""
    if " @ file:" not in line:
        return None
    name, _, url = line.partition(" @ ")
    path = url.split(";", 1)[0].strip().removeprefix("file:")
    if not path.startswith("///") or Path(path.removeprefix("//")).exists():
        return None
    return (
        f"{line} names a file of the machine it was frozen on (pip freeze in a conda "
        f"environment): pin a version from the index instead ({name.strip()}==VERSION, or pip list "
        "--format=freeze)"
    )


def read_requirements(requirements: Path) -> str:
    """``requirements.txt``'s text; ``LoadError`` when it is past the limits, said before any pip run."""
    try:
        size = requirements.stat().st_size
        if size > MAX_REQUIREMENTS_BYTES:
            raise LoadError(
                f"requirements.txt is {size / (1 << 20):.1f} MiB; inferd takes one of at most "
                f"{MAX_REQUIREMENTS_BYTES >> 20} MiB (a pip freeze of a large environment is a few KiB)"
            )
        text = decode(requirements.read_bytes())
    except OSError as exc:
        raise LoadError(f"requirements.txt cannot be read: {exc.strerror or exc}") from None
    _refuse_conda(text)
    # a line ending in a backslash goes on in the next (pip-compile's `--hash` lines): one requirement
    count = sum(not line.endswith("\\") for line in requirement_lines(text))
    if count > MAX_REQUIREMENTS:
        raise LoadError(
            f"requirements.txt lists {count:,} requirements; inferd installs at most "
            f"{MAX_REQUIREMENTS:,} (a pip freeze of a large environment lists a few hundred)"
        )
    return text


# Windows editors and PowerShell's ``pip freeze > requirements.txt`` write a byte order mark
# (UTF-16 for PowerShell 5); pip reads them, and inferd hands pip its own UTF-8 copy of the list.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def decode(raw: bytes) -> str:
    """The text of a requirements file: UTF-8, or the encoding its byte order mark names."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return raw[len(bom) :].decode(encoding, errors="replace")
    return raw.decode("utf-8", errors="replace")


_CONDA_KEY = re.compile(r"^(name|channels|dependencies|prefix|variables):")
_CONDA_PIP = re.compile(r"^\s*-\s*pip\s*:\s*$")


def _refuse_conda(text: str) -> None:
    """``LoadError`` for a conda ``environment.yml`` saved as ``requirements.txt`` (no pip line
    starts with ``name:``), naming the first of its pip packages as what to write instead."""
    lines = text.splitlines()
    found = next(((number, line) for number, line in enumerate(lines, 1) if _CONDA_KEY.match(line)), None)
    if found is None:
        return
    number, line = found
    pip_items = (
        item.strip().removeprefix("-").strip()
        for start, marker in enumerate(lines)
        if _CONDA_PIP.match(marker)
        for item in lines[start + 1 :]
        if item.strip().startswith("-")
    )
    example = next(pip_items, None)
    raise LoadError(
        f"requirements.txt is a conda environment file (line {number}: {line.strip()}); inferd "
        "installs pip requirements: list the packages of its pip: section one per line"
        + (f" ({example})" if example else "")
    )


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


# Lines naming a local package pip installs (``-e ./mylib``, ``./wheels/x-0.1-py3-none-any.whl``,
# ``x @ file:./x``) or a folder of wheels it looks in (``--find-links ./wheels``).
_OPTION_PATH = re.compile(r"^(-e|--editable|-f|--find-links)(?:\s*=\s*|\s+|)(\S.*)$")
_ARCHIVE = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")
# What building or importing a package leaves in its folder: no edit of it. Nor is what a deploy
# does not copy (hidden files, ``__pycache__``, ``.venv``: ``storage.project_files``), so that
# ``inferd test`` and the deploy of the same files name the same environment.
_LEFT_BY_SETUPTOOLS = {"build", ".eggs"}  # in the package's own folder (a build/ further in is code)


def _local_path(line: str) -> tuple[str, bool] | None:
    """The path a requirement line names, and whether it is a folder of wheels (``--find-links``)."""
    option = _OPTION_PATH.match(line)
    finds = option is not None and option.group(1) in ("-f", "--find-links")
    text = option.group(2) if option is not None else line
    if " @ " in text:
        text = text.split(" @ ", 1)[1]
    text = text.split(";", 1)[0].split("#", 1)[0].strip().strip("'\"")
    if text.startswith("file:"):
        text = text.removeprefix("file:").removeprefix("//")
    elif "://" in text or text.startswith("-"):
        return None
    elif option is None and not (text.startswith((".", "/", "~")) or text.endswith(_ARCHIVE) or "/" in text):
        return None  # a requirement (``mylib==0.1``), not a path (pip's: ``libs/mylib`` is one)
    return re.sub(r"\[[^\]]*\]$", "", text), finds  # ``./mylib[extra]``: the folder


def _local_files(path: Path, finds: bool) -> Iterator[Path]:
    if path.is_file():
        yield path
    elif finds:  # pip looks at the folder's own files only
        yield from sorted(entry for entry in path.iterdir() if entry.is_file() and _copied(entry.name))
    elif path.is_dir():
        for folder, folders, files in os.walk(path):
            folders[:] = sorted(
                f
                for f in folders
                if not f.startswith(".")
                and f not in SKIPPED_DIRS
                and not f.endswith(".egg-info")
                and not (folder == str(path) and f in _LEFT_BY_SETUPTOOLS)
            )
            yield from (Path(folder) / name for name in sorted(files) if _copied(name))


def _copied(name: str) -> bool:
    """Whether a deploy copies a file of this name (``storage.project_files``)."""
    return not name.startswith(".") and not name.endswith(SKIPPED_SUFFIXES)


def local_sources(requirements: Path) -> list[Path]:
    """The files of the local packages ``requirements`` (and the files it includes) install;
    ``LoadError`` for a relative path out of the project folder (a deploy copies the folder)."""
    root = Path(os.path.normpath(requirements.parent.absolute()))  # pip runs there
    found: list[Path] = []
    for line in expanded(requirements).splitlines():
        named = _local_path(line)
        if named is not None:
            path = Path(os.path.normpath(root / os.path.expanduser(named[0])))
            if not os.path.isabs(os.path.expanduser(named[0])) and root not in (path, *path.parents):
                raise LoadError(  # an absolute path is this machine's, and works for it
                    f"requirements.txt: {line} is outside the project folder, which is all a deploy "
                    "copies: move it into the project"
                )
            found += [file for file in _local_files(path, named[1]) if file not in found]
    return found


def packages_dir(home: Path, requirements: Path, relax: bool = False) -> Path:
    read_requirements(requirements)  # past the limits: said here, before the bytes are read
    digest = hashlib.sha256(requirements.read_bytes())
    folder = requirements.parent.absolute()
    # an edit of an included file is a new install
    for path in included_files(requirements):
        digest.update(
            b"\0" + os.fsencode(path.relative_to(folder) if folder in path.parents else path) + b"\0"
        )
        with path.open("rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
    # and so is a local package rebuilt under the same version: its files by their content
    root = Path(os.path.normpath(folder))
    # a deploy's snapshot (a copy of one elsewhere is the user's project: its edits count)
    listed = (
        _snapshot_files(root) if root.parent == Path(os.path.normpath(home.absolute())) / "projects" else None
    )
    for path in local_sources(requirements):
        inside = root in path.parents
        if listed is not None and inside:
            # a deployed project's: as copied (a replica's writes in its folder since are not)
            content = listed.get(str(path.relative_to(root)))
            if not isinstance(content, str):
                continue
        else:
            content = file_digest(path)  # a model in ``-e .``: read a block at a time
        name = os.fsencode(path.relative_to(root) if inside else path)
        digest.update(b"\0" + name + b"\0" + content.encode())
    digest.update(b"\0relax" if relax else b"")
    return home / "envs" / digest.hexdigest()[:24]


def _snapshot_files(root: Path) -> dict[str, object] | None:
    """The files a deploy's snapshot of the project holds (relative path -> content digest), when
    ``root`` is one; None for a project folder of the user's."""
    try:
        listed = json.loads((root / SNAPSHOT_FILES).read_text())
    except (OSError, ValueError):
        return None
    return listed if isinstance(listed, dict) else None
