"""Shadow copies in the shadow API's queue: behind its own requests, bounded, never in their way."""

from __future__ import annotations

import asyncio

import pytest

from inferd.config.blocks import Batching
from inferd.gateway import queue as queue_module
from inferd.gateway import shadow as shadow_module
from inferd.gateway.payloads import PayloadBuffer
from inferd.gateway.queue import ApiQueue
from inferd.gateway.shadow import ShadowRoute, Shadows
from inferd.replica import messages
from tests.unit.gateway.test_queue_pipeline import Request, api_queue, still_clock

__all__ = ["still_clock"]  # autouse here too: the queue's clock stands still


def test_copies_go_to_an_idle_replica_and_wait_behind_the_apis_own_requests() -> None:
    queue, (handle,) = api_queue(1, service=0.05)
    first = Request()
    assert queue.submit_copies([(first, messages.PREDICT, b"{}")]) == 1
    assert handle.waiters == [first]  # an idle replica takes a copy at once
    copy, own = Request(), Request()
    assert queue.submit_copies([(copy, messages.PREDICT, b"{}")]) == 1
    queue.submit(own, messages.PREDICT, b"{}")
    assert not queue.full  # copies do not count against the API's own requests
    handle.answer(1)
    assert handle.waiters == [own]  # the API's own request first, though it came later
    handle.answer(1)
    assert handle.waiters == [copy]
    handle.answer(1)
    assert queue.in_flight == 0 and not queue.copies
    assert [r.replies for r in (first, own, copy)] == [[(200, b"ok")]] * 3


def test_copies_beyond_the_queues_room_are_refused() -> None:
    queue, _ = api_queue(1, service=0.05)
    queue.max_queue_length = 2
    queue.submit(Request(), messages.PREDICT, b"{}")  # the replica is busy with the API's own
    queue.submit(Request(), messages.PREDICT, b"{}")  # and one waits: room for one copy
    copies = [(Request(), messages.PREDICT, b"{}") for _ in range(3)]
    assert queue.submit_copies(copies) == 1 and len(queue.copies) == 1
    # an idle replica's copy goes at once: it takes no room of the queue's
    queue, _ = api_queue(1, service=0.05)
    queue.max_queue_length = 2
    copies = [(Request(), messages.PREDICT, b"{}") for _ in range(5)]
    assert queue.submit_copies(copies) == 3 and len(queue.copies) == 2


def test_copies_of_a_fast_shadow_go_in_one_write() -> None:
    queue, (handle,) = api_queue(1, service=0.0001)
    queue.submit(Request(), messages.PREDICT, b"{}")
    assert queue.submit_copies([(Request(), messages.PREDICT, b"{}") for _ in range(4)]) == 4
    handle.answer(1)
    assert handle.writes == [1, 4]


def test_a_queue_that_cannot_serve_answers_its_copies() -> None:
    queue, _ = api_queue(1, service=0.05)
    queue.submit(Request(), messages.PREDICT, b"{}")
    waiting = Request()
    queue.submit_copies([(waiting, messages.PREDICT, b"{}")])
    queue.fail_waiting(503, b"gone")
    assert waiting.replies == [(503, b"gone")] and not queue.copies


def test_copies_are_not_shared_out_among_idle_replicas() -> None:
    # nobody waits for a copy: each write wakes a replica, so copies go to as few as can take them
    queue, handles = api_queue(4, service=0.0001)
    assert queue.submit_copies([(Request(), messages.PREDICT, b"{}") for _ in range(8)]) == 8
    assert sorted(len(h.writes) for h in handles) == [0, 0, 0, 1]
    assert [w for h in handles for w in h.writes] == [8]


def test_the_autoscaling_load_counts_copies_by_the_replicas_they_keep_busy() -> None:
    # Counted one by one (in_flight), eight copies sent to one replica at once asked for eight
    # replicas' worth: a shadow of one connection's traffic was scaled to 4 replicas, one of
    # which took every group.
    queue, handles = api_queue(2, service=0.0001)
    assert queue.submit_copies([(Request(), messages.PREDICT, b"{}") for _ in range(8)]) == 8
    assert queue.in_flight == 8 and queue.load == 1  # one replica runs them
    (first,) = [h for h in handles if h.waiters]
    (second,) = [h for h in handles if h is not first]
    queue.submit(Request(), messages.PREDICT, b"{}")  # a request of its own: one more
    assert queue.load == 2
    waiting = [(Request(), messages.PREDICT, b"{}") for _ in range(9)]
    assert queue.submit_copies(waiting) == 9  # both replicas busy: they wait (two groups' work)
    assert queue.in_flight == 18 and queue.load == 4
    first.answer(3)  # part of the group answered: the replica is still at it
    assert queue.load == 4
    first.answer(5)  # done: it takes the next eight waiting copies
    assert queue.load == 3 and len(queue.copies) == 1
    second.answer(1)
    first.answer(8)
    second.answer(1)
    assert queue.in_flight == 0 and queue.load == 0 and not queue.copying
    # A slow shadow takes its copies one at a time: each one is a replica's work then.
    slow, _ = api_queue(1, service=0.05)
    assert slow.submit_copies([(Request(), messages.PREDICT, b"{}") for _ in range(3)]) == 3
    assert slow.load == 3


class Conn:
    """What ``Shadows`` reads of a client connection once its request was answered."""

    request_id = b"r"
    replica_id = "r0"
    protocol = "cortex"
    started = 0.0
    trace = b""
    copy = recording = None
    headers: dict[bytes, bytes] = {}  # read only: no X-Inferd-Replay


def test_copies_wait_for_company_and_leave_together() -> None:
    async def scenario() -> None:
        target, (replica,) = api_queue(1, service=0.0001)
        target.key = "d/candidate"
        primary, _ = api_queue(1, service=0.0001)
        shadows = Shadows({"d/candidate": target}, PayloadBuffer())
        route = ShadowRoute("d/api", "d/candidate", 100)
        conns = [Conn() for _ in range(shadow_module.GROUP + 1)]
        for conn in conns[: shadow_module.GROUP]:
            shadows.observe(conn, primary, route, messages.PREDICT, b"{}", "cortex")  # type: ignore[arg-type]
            shadows.follow(conn.copy, primary, conn, b"{}", 200, b"ok")  # type: ignore[arg-type]
        assert replica.writes == []  # the client has its answer first: copies go on a later turn
        await asyncio.sleep(0)
        assert replica.writes == [shadow_module.GROUP] and route.sent == shadow_module.GROUP
        replica.answer(shadow_module.GROUP)
        last = conns[-1]
        shadows.observe(last, primary, route, messages.PREDICT, b"{}", "cortex")  # type: ignore[arg-type]
        shadows.follow(last.copy, primary, last, b"{}", 200, b"ok")  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert replica.writes == [shadow_module.GROUP]  # alone, it waits for company ...
        await asyncio.sleep(shadow_module.HOLD * 4)
        assert replica.writes == [shadow_module.GROUP, 1]  # ... at most HOLD seconds
        assert route.dropped == 0

    asyncio.run(scenario())


def test_a_copy_no_replica_took_is_dropped_not_an_error_of_the_shadow() -> None:
    # Copies waiting when the shadow stopped serving (its replicas crash-looping: status error)
    # were answered its 503 at once, counted as answers that disagreed and were errors.
    async def scenario() -> None:
        target, _ = api_queue(1, service=0.05)
        target.key = "d/candidate"
        target.submit(Request(), messages.PREDICT, b"{}")  # its one replica is busy
        primary, _ = api_queue(1, service=0.0001)
        shadows = Shadows({"d/candidate": target}, PayloadBuffer())
        route = ShadowRoute("d/api", "d/candidate", 100)
        conn = Conn()
        shadows.observe(conn, primary, route, messages.PREDICT, b"{}", "cortex")  # type: ignore[arg-type]
        shadows.follow(conn.copy, primary, conn, b"{}", 200, b"ok")  # type: ignore[arg-type]
        await asyncio.sleep(shadow_module.HOLD * 4)
        assert route.sent == 1 and len(target.copies) == 1
        target.fail_waiting(503, b'{"error": "not ready"}')
        assert (route.answered, route.errors, route.dropped) == (0, 0, 1)

    asyncio.run(scenario())


def test_the_autoscaling_load_counts_copies_one_by_one_where_they_go_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Waiting copies were counted 8 to a replica whenever the shadow was fast, though a batching
    # shadow, a streaming one, or any with pipelining turned off takes them one at a time: their
    # autoscaler saw an eighth of their work (and INFERD_PIPELINE=0 divided by zero in the
    # engine's step, the shadow API in error).
    def busy_with_copies(queue: ApiQueue) -> ApiQueue:
        queue.submit(Request(), messages.PREDICT, b"{}")  # its one replica busy: copies wait
        assert queue.submit_copies([(Request(), messages.PREDICT, b"{}") for _ in range(16)]) == 16
        return queue

    batching, _ = api_queue(1, service=0.0001)
    batching.batching = Batching(max_batch_size=4)
    assert busy_with_copies(batching).load == 1 + 16
    streaming, (handle,) = api_queue(1, service=0.0001)
    handle.pipeline = False  # its replicas stream
    assert busy_with_copies(streaming).load == 1 + 16
    for pipeline in (1, 0):  # INFERD_PIPELINE=1 or 0: turned off
        monkeypatch.setattr(queue_module, "PIPELINE", pipeline)
        assert busy_with_copies(api_queue(1, service=0.0001)[0]).load == 1 + 16
    monkeypatch.setattr(queue_module, "PIPELINE", 8)
    assert busy_with_copies(api_queue(1, service=0.0001)[0]).load == 1 + 2  # in two groups of 8
