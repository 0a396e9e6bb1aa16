"""Requests waiting for a replica, their bodies counted across every API of the process.

A body that has arrived is held until a replica takes it: an API with slow replicas and a queue
of 1,000 (the default ``max_queue_length``) held up to 1,000 bodies of up to 10 MiB each, and
``--max-body-buffer`` counted only bodies still arriving: sixty 9 MB requests queued for a
sleeping API took the gateway from 98 MiB to 1 GiB. ``QUEUED`` is what the reader adds to the
bodies still arriving when it checks that budget.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inferd.gateway.queue import Entry


class Tally:
    """Bytes of the bodies in every ``Waiting`` of the process."""

    bytes = 0


QUEUED = Tally()


class Waiting(deque["Entry"]):
    """A FIFO of ``(request, kind, body)`` whose bodies are counted in ``QUEUED`` while in it."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        super().__init__()
        self.extend(entries)

    def append(self, entry: Entry) -> None:
        super().append(entry)
        QUEUED.bytes += len(entry[2])

    def extend(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.append(entry)

    def popleft(self) -> Entry:
        entry = super().popleft()
        QUEUED.bytes -= len(entry[2])
        return entry

    def clear(self) -> None:
        while self:
            self.popleft()

    def discard(self, request: object) -> None:
        """Take out ``request``'s entry, if it is here (its client left while it waited)."""
        for index, entry in enumerate(self):
            if entry[0] is request:
                del self[index]
                QUEUED.bytes -= len(entry[2])
                return
