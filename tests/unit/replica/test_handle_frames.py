"""The gateway's end of a replica socket: frames cut anywhere by the transport arrive whole, and a
large answer costs work in proportion to its size (it was parsed again at every piece: a 50 MiB
answer took 40 s, and blocked every other client meanwhile)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from inferd.replica import messages
from inferd.replica.handle import ReplicaHandle


class Waiter:
    closed = False
    started = 0.0
    sent_at = 0.0
    replica_id = ""
    stream = None
    trace = b""

    def __init__(self) -> None:
        self.replies: list[tuple[int, bytes]] = []
        self.chunks: list[bytes] = []

    def on_reply(self, status: int, body: bytes, meta: bytes) -> None:
        self.replies.append((status, body))

    def on_chunk(self, handle: ReplicaHandle, payload: bytes) -> None:
        self.chunks.append(payload)


class CountingLength:
    """``messages.LENGTH`` that counts the frame headers read."""

    def __init__(self) -> None:
        self.reads = 0
        self.inner = struct.Struct(">I")

    def unpack_from(self, data: Any, offset: int = 0) -> tuple[int, ...]:
        self.reads += 1
        return self.inner.unpack_from(data, offset)


def feed(replica: ReplicaHandle, data: bytes, piece: int) -> None:
    for start in range(0, len(data), piece):
        replica.data_received(data[start : start + piece])


def test_a_large_answer_in_small_pieces_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingLength()
    monkeypatch.setattr(messages, "LENGTH", counting)
    replica = ReplicaHandle("d/a", "a-1", "v", events=None)  # type: ignore[arg-type]
    waiter = Waiter()
    replica.waiters = [waiter]
    body = b'"' + b"x" * (8 << 20) + b'"'
    feed(replica, messages.reply_frame(200, body), 64 * 1024)  # 129 pieces
    assert waiter.replies == [(200, body)]
    assert counting.reads <= 2  # the header when it came, and once more when the frame was whole


@pytest.mark.parametrize("piece", [1, 3, 4, 5, 7, 4096])
def test_frames_cut_anywhere_arrive_whole_and_in_order(piece: int) -> None:
    replica = ReplicaHandle("d/a", "a-1", "v", events=None)  # type: ignore[arg-type]
    streamed, first, second = Waiter(), Waiter(), Waiter()
    replica.waiters = [streamed, first, second]
    data = b"".join(
        (
            messages.frame(messages.CHUNK, b'"one"'),
            messages.frame(messages.CHUNK, b""),
            messages.reply_frame(200, b"", b""),
            messages.reply_frame(400, b'{"error":"e"}'),
            messages.reply_frame(200, b"[" + b"1," * 5000 + b"1]"),
        )
    )
    feed(replica, data, piece)
    assert streamed.chunks == [b'"one"', b""] and streamed.replies == [(200, b"")]
    assert first.replies == [(400, b'{"error":"e"}')]
    assert second.replies == [(200, b"[" + b"1," * 5000 + b"1]")]
    assert replica.waiters == []
