"""One lock per deployment, for the deploys, deletes and promotions that change it, kept only while
one of them holds or waits for it.

An operator kept up for weeks sees many deployment names (a CI's ``pr-123``, deployed then
deleted): a lock kept per name ever deployed, with what its last deploy deployed, grew the
operator by each of them for good.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class DeploymentLocks:
    """``async with locks.held(name, what)``: changes of deployment ``name`` one at a time;
    ``what`` (what a deploy deploys) is told to the others meanwhile by ``holding``."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}  # holders and waiters of each lock
        self._what: dict[str, object] = {}

    @contextlib.asynccontextmanager
    async def held(self, name: str, what: object = None) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        self._users[name] = self._users.get(name, 0) + 1
        try:
            async with lock:
                self._what[name] = what
                try:
                    yield
                finally:
                    self._what.pop(name, None)
        finally:
            self._users[name] -= 1
            if not self._users[name]:  # no one holds or waits for it: a later change makes another
                del self._users[name]
                del self._locks[name]

    def locked(self, name: str) -> bool:
        """Whether a change of deployment ``name`` is in progress."""
        lock = self._locks.get(name)
        return lock is not None and lock.locked()

    def holding(self, name: str) -> object:
        """What the change in progress of ``name`` said it does (None: none is in progress)."""
        return self._what.get(name)

    def any_locked(self) -> bool:
        return any(lock.locked() for lock in self._locks.values())

    def __len__(self) -> int:
        """How many deployments have a lock now (held or waited for)."""
        return len(self._locks)
