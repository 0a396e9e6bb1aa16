"""``compute.mem_limit``: a hard cap on a replica's memory, by the kernel where inferd may.

``compute.mem`` is a request (as in Cortex, a Kubernetes memory request): it places replicas
and bounds how many fit, and never stops one. ``mem_limit`` (an inferd extension) caps each
replica: with cgroup v2, when this process may create child cgroups under its own (a systemd
unit with ``Delegate=yes``, a container with a writable ``/sys/fs/cgroup``), each replica runs in
``<own cgroup>/inferd-replicas/<replica>`` with ``memory.max`` set, and the kernel's OOM killer
ends it there (``memory.events`` says so). Elsewhere (cgroup v1, no permission) the engine
polls the replica's RSS and stops it once past the cap.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

log = logging.getLogger("inferd.engine")

GROUP = "inferd-replicas"


def own_cgroup(root: Path, proc_self_cgroup: str) -> Path | None:
    """This process's cgroup v2 folder under ``root``, or None when not on cgroup v2 alone."""
    lines = [line for line in proc_self_cgroup.splitlines() if line.strip()]
    if len(lines) != 1 or not lines[0].startswith("0::"):
        return None  # cgroup v1 (or hybrid): no kernel cap from here
    if not (root / "cgroup.controllers").is_file():
        return None
    return root / lines[0][3:].lstrip("/")


def _leave_for_a_leaf(own: Path) -> None:
    """cgroup v2 lets a cgroup enable controllers for its children only while it holds no
    process: move this process (and its supervisor) into ``own/inferd-operator``, as systemd
    asks of a delegated unit. Anyone else's process there means the cgroup is not ours."""
    ours = {os.getpid(), os.getppid()}
    members = {int(pid) for pid in (own / "cgroup.procs").read_text().split()}
    if not members <= ours:
        raise OSError(errno.EBUSY, "other processes share this cgroup")
    leaf = own / "inferd-operator"
    leaf.mkdir(exist_ok=True)
    for pid in sorted(members):
        (leaf / "cgroup.procs").write_text(str(pid))


class MemoryCaps:
    """Creates one capped cgroup per replica, when the system lets this process."""

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), proc_file: Path = Path("/proc/self/cgroup")):
        self.base: Path | None = None
        try:
            own = own_cgroup(root, proc_file.read_text())
        except OSError:
            own = None
        if own is None:
            return
        try:
            if "memory" not in (own / "cgroup.controllers").read_text().split():
                return
            base = own / GROUP
            base.mkdir(exist_ok=True)
            if "memory" not in (base / "cgroup.controllers").read_text().split():
                _leave_for_a_leaf(own)
                (own / "cgroup.subtree_control").write_text("+memory")
            (base / "cgroup.subtree_control").write_text("+memory")
            self.base = base
        except OSError as exc:
            log.info("memory caps use the RSS watch (no cgroup v2 delegation here: %s)", exc.strerror or exc)

    @property
    def kernel(self) -> bool:
        """Whether caps are enforced by the kernel (else by the engine's RSS watch)."""
        return self.base is not None

    def confine(self, replica_id: str, pid: int, limit: int) -> Path | None:
        """Put ``pid`` into a new cgroup capped at ``limit`` bytes; None when that failed."""
        if self.base is None:
            return None
        group = self.base / replica_id
        try:
            group.mkdir(exist_ok=True)
            (group / "memory.max").write_text(str(limit))
            with contextlib.suppress(OSError):
                (group / "memory.swap.max").write_text("0")
            (group / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            log.warning("cannot cap replica %s with a cgroup (%s); watching its RSS", replica_id, exc)
            self.release(group)
            return None
        return group

    @staticmethod
    def killed(group: Path) -> bool:
        """Whether the kernel's OOM killer ended a process of ``group``."""
        try:
            for line in (group / "memory.events").read_text().splitlines():
                name, _, count = line.partition(" ")
                if name == "oom_kill" and int(count) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    @staticmethod
    def release(group: Path) -> None:
        """Remove a replica's cgroup once its process is gone."""
        with contextlib.suppress(OSError):
            group.rmdir()
