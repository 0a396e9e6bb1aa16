"""An API's deadlines, kept on its queue: ``timeout`` (from a request's arrival: queue + run)
and, for streams, ``item_timeout`` (between two items).

A request past its deadline is answered 504: one still queued leaves the queue; one a replica
runs is answered at once and a stand-in (``Answered``) takes its place on the replica, which is
left to finish. A replica is stuck, and stopped and replaced, only once it has run its requests
for the whole timeout, or a stream for ``item_timeout`` without an item (gateway/stream.py keeps
the clocks of a stream that has begun).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inferd import codec

if TYPE_CHECKING:
    from inferd.gateway.queue import ApiQueue, QueuedRequest
    from inferd.gateway.stream import Stream
    from inferd.replica.handle import ReplicaHandle


class Answered:
    """Stands in, on its replica, for a request whose client was answered 504 while the replica
    ran it: the replica's answer, when it comes, goes nowhere (not to the connection's next one);
    a stream is told to stop at its first item (it streamed on to nobody until the replica was
    replaced, a whole ``timeout`` after taking it)."""

    closed: bool = True
    stream: Stream | None = None

    def __init__(self, request: QueuedRequest) -> None:
        self.started, self.sent_at = request.started, request.sent_at
        self.replica_id, self.trace = request.replica_id, request.trace
        self.stopped = False

    def on_reply(self, status: int, body: bytes, meta: bytes) -> None:
        pass

    def on_chunk(self, handle: ReplicaHandle, payload: bytes) -> None:
        if not self.stopped:
            self.stopped = True
            handle.stop()


def expire(queue: ApiQueue, now: float) -> None:
    """Answer 504 to requests past the API's timeout; abandon replicas stuck on one."""
    timeout = queue.config.api.timeout
    item_timeout = queue.config.api.item_timeout or timeout
    for waiting in (queue.waiting, queue.copies):
        if waiting and waiting[0][0].started + timeout <= now:
            # a request no replica took: its model did not run slowly, none had loaded yet
            why = (
                f": no replica of api '{queue.api_name}' became ready in that time" if not queue.ready else ""
            )
            why += " (one is still starting: the api's log says how it goes)" if why else ""
            body = codec.error_body(
                f"the request did not finish within the api's timeout ({timeout:g}s){why}"
            )
            while waiting and waiting[0][0].started + timeout <= now:
                request, _, _ = waiting.popleft()
                if not request.closed:
                    request.on_reply(504, body, b"")
    for handle, requests in list(queue.busy.items()):
        stream = requests[0].stream if requests else None
        if stream is not None and stream.opened:  # a stream's own clocks (gateway/stream.py)
            if stream.overdue(now, timeout, item_timeout):
                queue.abandon(handle, requests, "the stream overran its timeout")
            continue
        # A replica is stuck once it has run its requests for the whole timeout; a client whose
        # request waited most of it in the queue is answered 504 at its deadline, the replica
        # left to finish (stopped, a healthy replica was replaced each time under a backlog).
        if requests and min(r.sent_at for r in requests) + timeout <= now:
            body = codec.error_body(
                f"the request did not finish within the api's timeout ({timeout:g}s); its replica "
                "was stopped and is being replaced"
            )
            queue.abandon(handle, requests, body)
        elif handle not in queue.copying and any(
            r.started + timeout <= now and not isinstance(r, Answered) for r in requests
        ):
            _answer_overdue(handle, requests, now, timeout)
        elif (  # stuck before its first item, on an API known to stream (generator function, or has)
            len(requests) == 1
            and (not handle.pipeline or queue.stats.streams)
            and queue.batching is None
            and requests[0].sent_at + item_timeout <= now
            and not (isinstance(requests[0], Answered) and requests[0].stopped)  # it had an item
        ):
            body = codec.error_body(
                f"the stream produced no item within the api's item_timeout ({item_timeout:g}s); "
                "its replica was stopped and is being replaced"
            )
            queue.abandon(handle, requests, body)


def _answer_overdue(handle: ReplicaHandle, requests: list[QueuedRequest], now: float, timeout: float) -> None:
    """Answer 504 to the clients of ``requests`` past their deadline; a stand-in takes each one's
    place on ``handle`` (its answer, when the replica gives it, goes nowhere)."""
    body = codec.error_body(f"the request did not finish within the api's timeout ({timeout:g}s)")
    for at, request in enumerate(requests):
        if request.started + timeout <= now and not isinstance(request, Answered):
            requests[at] = stand_in = Answered(request)
            handle.waiters = [stand_in if w is request else w for w in handle.waiters]
            request.on_reply(504, body, b"")  # a client that left is counted so (499), as in abandon
