"""The operator's state on disk (``$INFERD_HOME``): deployed projects, their records, token.

Each deployment's record names its snapshot (``operator/snapshots.py``), so a restarted operator
brings back exactly what was deployed. ``state.json`` is written atomically; a corrupt one stops
the operator with a clear error instead of silently forgetting deployments.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inferd import __version__
from inferd.errors import InferdError
from inferd.storage import write_private

STATE_FILE = "state.json"
# The format of state.json. Older inferd versions ignore it (they read ``deployments`` only); a
# change that an older reader would misread (a new field: it refuses unknown ones) takes the next
# number, so this reader refuses a newer file with a sentence instead of calling it corrupt and
# asking the user to move it away.
STATE_FORMAT = 1
SECRETS_FILE = "secrets.json"
TOKEN_FILE = "token"
OPERATOR_FILE = "operator.json"
KEEP_FILES_PERIOD = 2.0  # how soon a removed operator.json or token is written again

log = logging.getLogger("inferd.operator")


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
    # per API: when its version was last deployed (`last update` after an operator restart)
    updated_apis: dict[str, float] = field(default_factory=dict)
    # the newest snapshot whose APIs were all live: restored first when ``snapshot`` never went
    # live (a failed update), so the version that served still serves after a restart
    serving: str = ""

    def kept(self) -> set[Path]:
        paths = {Path(self.snapshot), *([Path(self.serving)] if self.serving else [])}
        for used in (*self.uses.values(), *self.previous.values()):
            paths.update(Path(path) for path in used)
        return paths

    def moved_to(self, home: Path) -> DeploymentRecord:
        """This record with the paths of the home it was written in (its snapshot's, always
        ``HOME/projects/<digest>``) made paths of ``home``: a home moved or copied elsewhere (to a
        bigger disk, from a backup) restores. Was: no deployment restored, and the collection
        then removed every snapshot of the moved home, which no record named any more."""
        old = Path(self.snapshot).parent.parent
        if Path(self.snapshot).parent.name != "projects" or old == home:
            return self

        def moved(path: str) -> str:
            inside = Path(path).is_relative_to(old)
            return str(home / Path(path).relative_to(old)) if inside and path else path

        return dataclasses.replace(
            self,
            snapshot=moved(self.snapshot),
            serving=moved(self.serving),
            uses={api: [moved(path) for path in used] for api, used in self.uses.items()},
            previous={api: [moved(path) for path in used] for api, used in self.previous.items()},
        )


def pending_record(
    old: DeploymentRecord | None, source: Path, snapshot: Path, token: str
) -> DeploymentRecord:
    """The record of a deploy under way: ``snapshot`` the newest, not live yet, so a restart
    first brings back what served (``serving``), as for an update that failed."""
    if old is None:
        return DeploymentRecord(source=str(source), snapshot=str(snapshot), refresh=token)
    # as the record the deploy ends with: the APIs deleted one by one and the promotions are
    # the old project's (a restart must not leave out an API this deploy brings back)
    return dataclasses.replace(
        old, source=str(source), snapshot=str(snapshot), refresh=token, deleted_apis=[], promoted={}
    )


def deployed_record(
    old: DeploymentRecord | None,
    source: Path,
    snapshot: Path,
    token: str,
    versions: Mapping[str, tuple[list[str], float]],
) -> DeploymentRecord:
    """The deployment's record after a deploy: what each API's version uses (``versions``: per
    API, what it reads and when it was last updated), and its previous one's."""
    record = DeploymentRecord(source=str(source), snapshot=str(snapshot), refresh=token)
    record.serving = old.serving if old is not None else ""
    for api, (uses, updated) in versions.items():
        record.uses[api] = uses
        record.updated_apis[api] = updated
        before = old.uses.get(api) if old is not None else None
        if before and before != uses:
            record.previous[api] = before
        elif old is not None and api in old.previous:
            record.previous[api] = old.previous[api]
    return record


def _record(fields: Any) -> DeploymentRecord:
    """A record read back from ``state.json``, its fields' types checked (a hand edit that put a
    number where a path goes crashed the operator at every start, its supervisor restarting it)."""
    from pydantic import TypeAdapter, ValidationError

    if not isinstance(fields, dict):
        raise ValueError(f"a deployment is a map, not {type(fields).__name__}")
    unknown = sorted(set(fields) - {known.name for known in dataclasses.fields(DeploymentRecord)})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}")
    try:
        return TypeAdapter(DeploymentRecord).validate_python(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the record"
        raise ValueError(f"{where}: {first['msg']}") from None


def _check_format(path: Path, data: Any) -> None:
    """Refuse a ``state.json`` a newer inferd wrote, saying so (``STATE_FORMAT``)."""
    found = data.get("format", STATE_FORMAT) if isinstance(data, dict) else STATE_FORMAT
    if isinstance(found, int) and found > STATE_FORMAT:
        raise StateError(
            f"the state file {path} was written by a newer inferd (state format {found}; this "
            f"one reads format {STATE_FORMAT}); nothing was changed: run that inferd, or upgrade "
            f"this one ({__version__})"
        )


def write_small(path: Path, text: str) -> None:
    """``write_private`` for the token and ``operator.json``, which every operator start writes
    anew. On a full disk, where the new copy an atomic replace needs finds no room, the file is
    written over in place, into the room its own old content frees: an operator restarted on a
    full disk comes up (it could not, and its supervisor gave up: every API stayed down). A
    reader that meets it half-written finds no operator and tries again."""
    try:
        write_private(path, text)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        try:  # no O_CREAT: only a file that already holds room
            handle = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        except OSError:
            raise exc from None
        try:
            os.fchmod(handle, 0o600)
            data = memoryview(text.encode("utf-8"))
            while data:
                data = data[os.write(handle, data) :]
        finally:
            os.close(handle)


def rewrite_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` again (``write_small``) when the file no longer holds it."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, ValueError):
        pass
    write_small(path, text)
    return True


async def keep_files(home: Path, files: dict[str, str]) -> None:
    """Put back ``operator.json`` and the token when removed or edited (the operator runs this
    while it runs): without them no ``inferd`` command finds the operator, not even ``down``."""
    import asyncio  # here: every CLI command imports this module, and asyncio costs it 40 ms

    while True:
        await asyncio.sleep(KEEP_FILES_PERIOD)
        for name, text in files.items():
            try:
                if rewrite_if_changed(home / name, text):
                    log.warning("%s was removed or changed: written again", home / name)
            except OSError as exc:
                log.error("cannot write %s again: %s", home / name, exc)


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
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                text = "\ufffd"  # not JSON: corrupt, as below
            except OSError as exc:  # was "corrupt (PermissionError ...)": move it away, it said
                raise StateError(
                    f"cannot read the state file {path} ({exc.strerror or exc}); nothing was "
                    f"changed: make it a file this user can read"
                ) from None
            try:
                data = json.loads(text)
                if path == self.path:
                    _check_format(path, data)
                    self.deployments = {
                        str(name): _record(record).moved_to(self.home)
                        for name, record in data["deployments"].items()
                    }
                else:
                    self.secrets = {name: dict(values) for name, values in data.items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise StateError(
                    f"the state file {path} is corrupt ({type(exc).__name__}: {exc}); nothing was "
                    f"changed: fix it, or move it away to start with no deployments"
                ) from None
        return self

    def save_with(self, name: str, record: DeploymentRecord) -> None:
        """Save the state as if ``name`` had ``record``, leaving the state in memory as it is."""
        kept = self.deployments.get(name)
        self.deployments[name] = record
        try:
            self.save()
        finally:
            if kept is None:
                del self.deployments[name]
            else:
                self.deployments[name] = kept

    def save(self) -> None:
        deployments = {name: asdict(record) for name, record in self.deployments.items()}
        data = {"format": STATE_FORMAT, "deployments": deployments}
        secrets = {name: values for name, values in self.secrets.items() if name in self.deployments}
        try:
            write_private(self.path, json.dumps(data, indent=2))
            if secrets or self.secrets_path.exists():
                write_private(self.secrets_path, json.dumps(secrets))
        except OSError as exc:
            raise StateError(f"cannot save the state to {self.path}: {exc.strerror or exc}") from exc


def new_token() -> str:
    return secrets.token_urlsafe(32)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
