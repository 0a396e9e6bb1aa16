"""The payload buffer's bound: records wait for the writer within a budget of bytes, not only of
records (10,000 records of 10 MiB bodies would have been 100 GiB)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from inferd.gateway.payloads import MAX_PENDING_BYTES, PayloadBuffer

QUEUE: Any = SimpleNamespace(key="d/a", config=SimpleNamespace(api=SimpleNamespace(payload_log=None)))
BODY = b"x" * (8 << 20)


def test_large_records_are_dropped_and_counted_past_the_byte_budget() -> None:
    buffer = PayloadBuffer()
    for _ in range(100):  # 800 MiB of requests, while the writer has taken nothing
        buffer.put(QUEUE, {"request": BODY, "response": b"{}"})
    kept = len(buffer.pending)
    assert kept * len(BODY) <= MAX_PENDING_BYTES + len(BODY)
    assert buffer.dropped == 100 - kept and kept > 0
    assert len(buffer.take()) == kept  # the writer took them: room again
    buffer.put(QUEUE, {"request": b"{}", "response": b"{}", "shadow": {"response": BODY}})
    assert len(buffer.pending) == 1 and buffer.size == len(BODY) + 4


def test_small_records_are_bounded_by_count() -> None:
    buffer = PayloadBuffer()
    for _ in range(10_005):
        buffer.put(QUEUE, {"request": b"[1]", "response": b"[2]"})
    assert len(buffer.pending) == 10_000 and buffer.dropped == 5
