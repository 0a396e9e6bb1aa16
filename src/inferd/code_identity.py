"""Which inferd code a process runs: a digest of the installed package's source files.

Every inferd says version 0.1.0, so the version cannot tell a CLI from an operator that started
before ``pip install -U inferd`` replaced the files under it. Such an operator keeps its old code
in memory while what it imports later (a replica forked from its zygote loading a module it had
not loaded yet) comes from the new files: an update deployed to it failed to load with
``TypeError: TensorSpec.__init__() got an unexpected keyword argument 'dim_names'``, and a
first-round operator answered the new CLI's ``inferd get`` with ``no admin route GET
/splitters``. The operator writes this digest into ``operator.json``; the CLI compares it with
its own and names the way out (:func:`restart_hint`).
"""

from __future__ import annotations

import hashlib
import sys
from functools import cache
from pathlib import Path
from typing import Any

RESTART = "inferd down && inferd up"
RESTART_UNIT = "systemctl --user restart inferd"  # the unit `inferd up --systemd` says to write


PACKAGE = Path(__file__).resolve().parent


@cache
def code_identity() -> str:
    """A digest of inferd's source files as they were on disk when this process first asked
    (about 10 to 40 ms; once a process): the operator's, taken as it starts."""
    return source_digest(PACKAGE)


def source_digest(root: Path) -> str:
    """A digest of the package ``root``'s source: its ``.py`` files, names and contents.

    Bytecode counts only where there is no source beside it (an install of ``.pyc`` files
    alone); ``__pycache__`` never does, as Python writes it as modules are first imported.
    """
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py*")):
        if path.suffix not in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        if path.suffix == ".pyc" and path.with_suffix(".py").is_file():
            continue  # Python runs the source (a legacy .pyc beside it, from compileall -b)
        try:
            data = path.read_bytes()
        except OSError:
            continue
        digest.update(f"{path.relative_to(root)}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def restart_hint(info: dict[str, Any], state_format: int) -> str | None:
    """What to do when the operator ``info`` (``operator.json``) describes runs other inferd code
    than this process, else None. An operator that runs as a systemd unit (``inferd up
    --systemd``) is restarted by its unit: ``inferd down && inferd up`` would leave the unit
    stopped and start an operator of inferd's own beside it. An operator whose state is of a
    newer format than this process reads (``state_format``) is not restarted on this code: it
    would refuse the state, and the APIs would not come back (a downgrade)."""
    newer = info.get("state_format")
    if isinstance(newer, int) and newer > state_format:
        return (
            f"the running operator (pid {info.get('pid')}) runs a newer inferd than this command "
            f"(state format {newer}; this one reads up to {state_format}): use that inferd, or "
            "upgrade this one (pip install -U inferd); restarted on this one, the operator could not "
            "read its state and its APIs would not come back"
        )
    theirs = info.get("code")
    # Against the files installed now, not this process's first digest: a long-lived process (a
    # notebook's kernel that deployed before `pip install -U`) was refused for good by the
    # operator restarted onto the new files, and let an operator of the replaced code through.
    if theirs == source_digest(PACKAGE):
        return None
    prefix = info.get("prefix")  # its Python environment (written since 2026-12-01)
    if theirs is None:
        which = "an older inferd than this command (from before inferd was upgraded)"
    elif isinstance(prefix, str) and prefix != sys.prefix:  # another virtual environment's inferd
        which = f"the inferd of another Python environment ({prefix}; this command runs {sys.prefix})"
    else:
        which = "other inferd code than this command (inferd was upgraded or reinstalled since it started)"
    # The unit runs the operator itself; `inferd up` runs it under inferd's supervisor, in a shell
    # that may have INVOCATION_ID from a service of its own (JupyterHub's terminals, tmux's).
    systemd = not info.get("supervisor") and _under_systemd(int(info.get("pid") or 0))
    how = f"its systemd unit: `{RESTART_UNIT}`" if systemd else f"it: `{RESTART}`"
    return (
        f"the running operator (pid {info.get('pid')}) runs {which}; restart {how}, which brings "
        f"its APIs back on this one"
    )


def _under_systemd(pid: int) -> bool:
    """Whether process ``pid`` runs as a systemd unit (systemd sets ``INVOCATION_ID`` in the
    environment of each unit's processes)."""
    try:
        return b"\0INVOCATION_ID=" in b"\0" + Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
