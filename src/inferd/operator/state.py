"""The operator's state on disk (``$INFERD_HOME``): deployed projects, snapshots, token.

Each deploy snapshots the project folder (as Cortex zipped it: hidden files and ``.pyc`` left
out) into ``projects/<digest>/``, so a restarted operator brings back exactly what was deployed,
whatever happened to the source folder since. ``state.json`` is written atomically; a corrupt
one stops the operator with a clear error instead of silently forgetting deployments.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferd.errors import InferdError
from inferd.storage import CREATED_MARK, file_digest, project_files

if TYPE_CHECKING:
    from inferd.config.schema import Project

STATE_FILE = "state.json"
SECRETS_FILE = "secrets.json"
TOKEN_FILE = "token"
OPERATOR_FILE = "operator.json"


class StateError(InferdError):
    """The state folder cannot be read or written."""


@dataclass
class DeploymentRecord:
    """One deployed project."""

    source: str
    snapshot: str
    refresh: str = ""
    relax_pins: bool = False  # deployed with --relax-pins
    updated: float = field(default_factory=time.time)
    deleted_apis: list[str] = field(default_factory=list)
    # per API: what its current and its previous version read (snapshot, model, environment),
    # kept by the garbage collection (a rollback needs the previous one)
    uses: dict[str, list[str]] = field(default_factory=dict)
    previous: dict[str, list[str]] = field(default_factory=dict)
    # traffic splitter -> the API ``inferd promote`` gave weight 100 (until the next deploy)
    promoted: dict[str, str] = field(default_factory=dict)

    def kept(self) -> set[Path]:
        paths = {Path(self.snapshot)}
        for used in (*self.uses.values(), *self.previous.values()):
            paths.update(Path(path) for path in used)
        return paths


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path``, readable by this user only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


class State:
    """Deployments known to the operator, persisted in ``state.json``.

    The environment variables a deployment's API keys come from (``auth.keys_from_env``, taken
    from the shell that ran ``inferd deploy``) are kept apart in ``secrets.json``, mode 0600
    like the token, so that ``state.json`` can be read and shared without them.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / STATE_FILE
        self.secrets_path = home / SECRETS_FILE
        self.deployments: dict[str, DeploymentRecord] = {}
        self.secrets: dict[str, dict[str, str]] = {}

    def load(self) -> State:
        for path in (self.path, self.secrets_path):
            if not path.exists():
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if path == self.path:
                    self.deployments = {
                        name: DeploymentRecord(**record) for name, record in data["deployments"].items()
                    }
                else:
                    self.secrets = {name: dict(values) for name, values in data.items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise StateError(
                    f"the state file {path} is corrupt ({type(exc).__name__}: {exc}); nothing was "
                    f"changed: fix it, or move it away to start with no deployments"
                ) from None
        return self

    def save(self) -> None:
        data = {"deployments": {name: asdict(record) for name, record in self.deployments.items()}}
        secrets = {name: values for name, values in self.secrets.items() if name in self.deployments}
        try:
            write_private(self.path, json.dumps(data, indent=2))
            if secrets or self.secrets_path.exists():
                write_private(self.secrets_path, json.dumps(secrets))
        except OSError as exc:
            raise StateError(f"cannot save the state to {self.path}: {exc.strerror or exc}") from exc


def project_fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """The project's files by name, size and modification time: whether a folder is the one a
    running deploy copied, without reading the files."""
    found = []
    for path in project_files(root):
        with contextlib.suppress(OSError):
            stat = path.stat()
            found.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def key_files(project: Project) -> set[Path]:
    """The API key files (``auth.keys_file``) inside the project: never copied into a snapshot."""
    found = set()
    for config in project.apis:
        auth = config.api.auth
        if auth is not None and auth.keys_file is not None:
            path = Path(auth.keys_file)
            found.add((path if path.is_absolute() else project.root / path).resolve())
    return found


def snapshot_project(root: Path, home: Path, skip: set[Path] | None = None) -> Path:
    """Copy the project's files into ``projects/<digest>`` (once per distinct content), but ``skip``."""
    files = [path for path in project_files(root) if not skip or path.resolve() not in skip]
    try:
        digest = file_digest_of(root, files)
    except OSError as exc:  # a file that went away or cannot be read since the walk
        raise StateError(f"cannot read the project's file {exc.filename}: {exc.strerror or exc}") from exc
    target = home / "projects" / digest
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".copy-"))
    try:
        for path in files:
            destination = scratch / path.relative_to(root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
        (scratch / CREATED_MARK).write_text("")
        scratch.rename(target)
    except OSError as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        if target.is_dir():
            return target
        raise StateError(f"cannot copy the project into {target.parent}: {exc.strerror or exc}") from exc
    return target


def file_digest_of(root: Path, files: list[Path]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + file_digest(path).encode())
    return digest.hexdigest()[:24]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
