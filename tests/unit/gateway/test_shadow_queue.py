"""Shadow copies in the shadow API's queue: behind its own requests, bounded, never in their way."""

from __future__ import annotations

from inferd.replica import messages
from tests.unit.gateway.test_queue_pipeline import Request, api_queue


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
