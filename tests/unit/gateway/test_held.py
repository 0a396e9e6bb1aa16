"""The answers held for clients that do not read them: counted, and bounded (gateway/held.py)."""

from __future__ import annotations

from typing import Any, cast

from inferd.gateway.held import HeldAnswers
from inferd.gateway.http import HttpConnection


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False
        self.buffered = 1 << 40  # what it has not sent yet: never less (its client does not read)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str) -> Any:
        return None

    def abort(self) -> None:
        self.aborted = True


class FakeConnection:
    def __init__(self) -> None:
        self.transport = FakeTransport()


def _conn() -> Any:
    return FakeConnection()


def test_past_the_budget_the_client_that_stalled_first_is_reset_and_the_others_kept() -> None:
    held = HeldAnswers(budget=100)
    first, second, third = _conn(), _conn(), _conn()
    held.hold(cast(HttpConnection, first), 40)
    held.hold(cast(HttpConnection, second), 40)
    held.hold(cast(HttpConnection, first), 50)  # more written to a client still not reading
    assert not first.transport.aborted and held.total == 90
    held.hold(cast(HttpConnection, third), 40)  # 130: the first stalled goes, 80 left
    assert first.transport.aborted and not second.transport.aborted and not third.transport.aborted
    assert held.total == 80


def test_a_client_that_reads_again_or_leaves_is_no_longer_counted() -> None:
    held = HeldAnswers(budget=100)
    reader, leaver = _conn(), _conn()
    held.hold(cast(HttpConnection, reader), 60)
    held.hold(cast(HttpConnection, leaver), 30)
    held.release(cast(HttpConnection, reader))
    held.release(cast(HttpConnection, leaver))
    held.release(cast(HttpConnection, leaver))  # twice (resumed, then closed): counted out once
    assert held.total == 0
    held.hold(cast(HttpConnection, _conn()), 100)  # the whole budget is there again
    assert held.total == 100


def test_a_client_that_read_since_its_stall_goes_after_those_that_did_not() -> None:
    mib = 1 << 20
    held = HeldAnswers(budget=100 * mib)
    downloading, stopped, newest = _conn(), _conn(), _conn()
    for conn in (downloading, stopped):
        conn.transport.buffered = 50 * mib
        held.hold(cast(HttpConnection, conn), 50 * mib)
    stopped.transport.buffered -= 4096  # a client that stopped still takes its receive window
    downloading.transport.buffered -= 5 * mib  # it reads its answer, slowly
    newest.transport.buffered = 40 * mib
    held.hold(cast(HttpConnection, newest), 40 * mib)  # 140: the one that stopped goes
    assert stopped.transport.aborted and not downloading.transport.aborted
    assert not newest.transport.aborted and held.total == 85 * mib
