"""The folders inferd keeps in ``$INFERD_HOME`` are readable by their owner only.

A home inferd makes is mode 0700, but ``INFERD_HOME`` may name a folder that already exists and
others may read (``mkdir /srv/inferd`` with the usual umask). Its files that hold secrets are
0600 (the token, ``secrets.json``, logs, payload logs), but the snapshots of deployed projects
(handlers, configuration, models), the models downloaded into the cache and the installed
packages were readable by every user of the machine there: the folders holding them were made
as the parents of their first file, 0755. They are made 0700 when the operator or ``inferd
serve`` starts. A folder of that name that exists is left as it is: ``INFERD_HOME`` may be a
folder of the user's own (their home, with its ``projects``), whose modes are not inferd's.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

FOLDERS = ("projects", "cache", "envs", "logs", "payloads")


def make_private_folders(home: Path) -> None:
    """Make ``home`` (0700, if it does not exist) and the folders inferd keeps in it (best effort:
    one that cannot be made is named by whatever later writes into it). ``inferd serve`` made
    the home as its first payload log's parent, 0755."""
    with contextlib.suppress(OSError):
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in FOLDERS:
        with contextlib.suppress(OSError):
            (home / name).mkdir(mode=0o700, exist_ok=True)
