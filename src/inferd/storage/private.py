"""The folders inferd keeps in ``$INFERD_HOME`` are readable by their owner only.

A home inferd makes is mode 0700, but ``INFERD_HOME`` may name a folder that already exists and
others may read (``mkdir /srv/inferd`` with the usual umask). Its files that hold secrets are
0600 (the token, ``secrets.json``, logs, payload logs), but the snapshots of deployed projects
(handlers, configuration, models), the models downloaded into the cache and the installed
packages were readable by every user of the machine there: the folders holding them were made
as the parents of their first file, 0755. They are made 0700 when the operator or ``inferd
serve`` starts. A folder of that name that exists is left as it is: ``INFERD_HOME`` may be a
folder of the user's own (their home, with its ``projects``), whose modes are not inferd's.

A home another user owns, or one every user may write (``INFERD_HOME=/tmp/inferd``, made first by
someone else), is refused: its owner could replace ``operator.json`` (the CLI would send the
token, and a deploy its API keys, to a port of theirs), ``state.json`` or a snapshot (code the
operator runs as this user). So is a link another user made, to a folder of this user's: its
maker could point it elsewhere once the operator runs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from pathlib import Path

from inferd.errors import UsageError

FOLDERS = ("projects", "cache", "envs", "logs", "payloads", "workspace")  # workspace: the Python client's


def make_private_folders(home: Path) -> None:
    """Make ``home`` (0700, if it does not exist) and the folders inferd keeps in it (best effort:
    one that cannot be made is named by whatever later writes into it). ``inferd serve`` made
    the home as its first payload log's parent, 0755, and the Python client (``inferd.sdk``) its
    ``workspace`` (the models and handlers it deploys) before any operator ran."""
    with contextlib.suppress(OSError):
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in FOLDERS:
        with contextlib.suppress(OSError):
            (home / name).mkdir(mode=0o700, exist_ok=True)


def refuse_a_home_others_control(home: Path) -> None:
    """Raise ``UsageError`` when ``home`` exists and another user owns it or every user may
    write it (a sticky ``/tmp`` too: its files would be this user's, its names anyone's)."""
    try:
        link, found = home.lstat(), home.stat()
    except OSError:
        return  # not made yet: whoever makes it makes it 0700
    fix = "set INFERD_HOME to a folder of your own"
    # A link another user made to a folder of this user's passed: its maker could point it at
    # files of theirs once the operator runs (only they may replace it, in a sticky /tmp too).
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (os.getuid(), 0):
        raise UsageError(
            f"INFERD_HOME {home} is a link that {_name(link.st_uid)} made: they could point it at "
            f"files of theirs while inferd runs; {fix} (the folder it names: {home.resolve()})"
        )
    if found.st_uid != os.getuid():
        raise UsageError(
            f"INFERD_HOME {home} belongs to {_name(found.st_uid)}: they could replace the files "
            f"inferd trusts there (the operator's address, its state, the deployed code); {fix}"
        )
    if stat.S_ISDIR(found.st_mode) and found.st_mode & stat.S_IWOTH:
        raise UsageError(
            f"INFERD_HOME {home} may be written by every user (mode {found.st_mode & 0o7777:o}): "
            f"they could put files there that inferd trusts; {fix}, or `chmod o-w` it"
        )


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"user id {uid}"
