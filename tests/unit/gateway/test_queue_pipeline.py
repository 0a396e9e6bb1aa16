"""Which waiting requests an API's queue writes to a replica at once (pure dispatch logic)."""

from __future__ import annotations

from typing import Any

import pytest

from inferd.config.schema import Api, ApiConfig
from inferd.gateway import queue as queue_module
from inferd.gateway.queue import ApiQueue
from inferd.gateway.stream import Stream
from inferd.replica import messages
from inferd.replica.handle import ReplicaHandle, ReplicaState


class Request:
    closed = False
    started = sent_at = 0.0
    replica_id = ""
    trace = b""

    def __init__(self) -> None:
        self.stream: Stream | None = None
        self.replies: list[tuple[int, bytes]] = []

    def on_reply(self, status: int, body: bytes, meta: bytes) -> None:
        self.replies.append((status, body))

    def on_chunk(self, handle: Any, payload: bytes) -> None:
        raise AssertionError("no streams here")


class Replica(ReplicaHandle):
    """A ready replica that records what it was sent instead of writing to a socket."""

    def __init__(self, name: str) -> None:
        super().__init__("api", name, "v1", events=None)  # type: ignore[arg-type]
        self.state = ReplicaState.READY
        self.pipeline = True
        self.writes: list[int] = []  # requests per write

    def send(self, kind: bytes, body: bytes, waiter: Any, spin: bytes = b"") -> None:
        self.waiters = [waiter]
        self.writes.append(1)

    def send_group(self, kinds: list[bytes], bodies: list[bytes], waiters: list[Any]) -> None:
        self.waiters = list(waiters)
        self.writes.append(len(bodies))

    def answer(self, count: int) -> None:
        """The replica answers its first ``count`` requests in one read."""
        answers = [(self.waiters.pop(0), 200, b"ok", b"") for _ in range(count)]
        self._deliver(answers)


@pytest.fixture(autouse=True)
def still_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue's clock stands still, so a replica's measured time per request is 0 and whether
    an API counts as fast is the ``service`` each test sets. With the real clock, this process
    paused for 4 ms between a write and its answer (a busy machine) took a "fast" API over the
    1 ms line, and its waiting requests went one by one instead of in the group asserted."""
    monkeypatch.setattr(queue_module, "perf_counter", lambda: 1000.0)


def api_queue(replicas: int, service: float) -> tuple[ApiQueue, list[Replica]]:
    api = Api.model_validate({"kind": "api", "name": "api", "predictor": {"path": "p.py"}})
    queue = ApiQueue(ApiConfig(api=api, deployment="d", endpoint="/d/api"))
    queue.service = service
    handles = [Replica(f"r{i}") for i in range(replicas)]
    for handle in handles:
        queue.add(handle)
    return queue, handles


def test_a_fast_apis_waiting_requests_are_shared_out_in_groups() -> None:
    queue, (first, second) = api_queue(2, service=0.0001)
    requests = [Request() for _ in range(12)]
    for request in requests:
        queue.submit(request, messages.PREDICT, b"{}")
    assert first.writes == [1] and second.writes == [1]  # idle replicas take one at once
    first.answer(1)  # 10 wait, 2 replicas: a group of 5 (half the queue)
    assert first.writes == [1, 5] and queue.pipelined == 4
    second.answer(1)  # 5 wait: a group of 3
    assert second.writes == [1, 3]
    first.answer(2)  # part of a group answered: nothing new is written yet
    assert first.writes == [1, 5] and queue.running == 6
    first.answer(3)  # 2 wait, 2 replicas: one each
    assert first.writes == [1, 5, 1]
    second.answer(3)
    assert second.writes == [1, 3, 1]
    first.answer(1)
    second.answer(1)
    assert [request.replies for request in requests] == [[(200, b"ok")]] * 12
    assert queue.running == 0 and not queue.waiting


def test_a_slow_or_streaming_api_gets_one_request_per_replica() -> None:
    queue, (handle,) = api_queue(1, service=0.05)
    for _ in range(4):
        queue.submit(Request(), messages.PREDICT, b"{}")
    handle.answer(1)
    assert handle.writes == [1, 1]

    queue, (handle,) = api_queue(1, service=0.0001)
    handle.pipeline = False  # its answers stream
    for _ in range(4):
        queue.submit(Request(), messages.PREDICT, b"{}")
    handle.answer(1)
    assert handle.writes == [1, 1]


def test_pipelining_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_module, "PIPELINE", 1)
    queue, (handle,) = api_queue(1, service=0.0001)
    for _ in range(4):
        queue.submit(Request(), messages.PREDICT, b"{}")
    handle.answer(1)
    assert handle.writes == [1, 1] and queue.pipelined == 0


@pytest.mark.parametrize(
    ("name", "text", "default", "expected"),
    [
        ("INFERD_PIPELINE_BELOW_MS", "0.5", 1, 0.5),  # was: ignored, 1 ms
        ("INFERD_PIPELINE_BELOW_MS", " 2 ", 1, 2.0),
        ("INFERD_PIPELINE", "1", 8, 1),
        ("INFERD_PIPELINE", "-3", 8, 8),
        ("INFERD_PIPELINE", "lots", 8, 8),
        ("INFERD_PIPELINE", "nan", 8, 8),
    ],
)
def test_the_pipeline_settings_take_any_number_from_0_up(
    monkeypatch: pytest.MonkeyPatch, name: str, text: str, default: int, expected: float
) -> None:
    monkeypatch.setenv(name, text)
    assert queue_module._setting(name, default) == expected


def test_a_request_past_its_deadline_on_a_healthy_replica_is_answered_and_the_replica_kept() -> None:
    # A request that waited most of the API's timeout in the queue had its replica stopped and
    # replaced a moment after the replica took it: under a backlog, one healthy replica after another.
    queue, (handle,) = api_queue(1, service=0.5)
    timeout = queue.config.api.timeout
    first, later = Request(), Request()
    first.started, later.started = 1000.0 - timeout + 1, 1000.0  # queued for timeout - 1 s
    queue.submit(first, messages.PREDICT, b"{}")  # sent at 1000.0 (the clock stands still)
    queue.submit(later, messages.PREDICT, b"{}")
    queue.expire(1001.0)  # first's client has waited its timeout; the replica ran it for 1 s
    assert first.replies == [(504, first.replies[0][1])] and b"timeout" in first.replies[0][1]
    assert b"stopped" not in first.replies[0][1]
    assert handle in queue.replicas and queue.in_flight == 2 and not later.replies
    # The connection's next request must not get the late answer of the one it was told 504 for.
    first.started = 1001.0
    queue.submit(first, messages.PREDICT, b"{}")
    handle.answer(1)  # the late answer: nobody's
    assert first.replies[1:] == [] and handle.waiters == [later]
    handle.answer(1)
    handle.answer(1)
    assert later.replies == [(200, b"ok")] and first.replies[1:] == [(200, b"ok")]
    assert queue.in_flight == 0 and queue.load == 0


class Streams(Replica):
    """A replica of an API known to stream, whose abandoning is recorded (no process to stop)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.pipeline = False
        self.abandoned = False

    def abandon(self) -> list[Any]:
        waiters, self.waiters = self.waiters, []
        self.abandoned = True
        return waiters


def test_a_stream_answered_at_its_deadline_before_its_first_item_still_has_its_item_timeout() -> None:
    # A stream answered 504 at its deadline, its replica stuck before the first item: the replica
    # was replaced only a whole timeout (60 s) after taking it, not after item_timeout (10 s).
    spec = {"kind": "api", "name": "api", "predictor": {"path": "p.py"}, "timeout": 60, "item_timeout": 10}
    queue = ApiQueue(ApiConfig(api=Api.model_validate(spec), deployment="d", endpoint="/d/api"))
    handle = Streams("r0")
    queue.add(handle)
    request = Request()
    request.started = 1000.0 - 59  # waited 59 s of its 60 in the queue; sent at 1000.0
    queue.submit(request, messages.PREDICT, b"{}")
    queue.expire(1001.0)
    assert [status for status, _ in request.replies] == [504] and not handle.abandoned
    queue.expire(1009.0)
    assert not handle.abandoned
    queue.expire(1010.0)  # no first item 10 s after it was sent: stuck
    assert handle.abandoned and handle not in queue.replicas and queue.in_flight == 0
    assert len(request.replies) == 1
