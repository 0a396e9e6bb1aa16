"""The payload store: rotated at the API's size, one older file kept, read back newest last."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from inferd.gateway import payloads as gateway_payloads
from inferd.gateway.payloads import PayloadBuffer
from inferd.operator import payloads
from inferd.operator.payloads import TAIL_BYTES, PayloadWriter, payload_path, read_payloads, recent_payloads
from inferd.operator.state import StateError


def test_the_store_rotates_and_stays_bounded(tmp_path: Path) -> None:
    writer = PayloadWriter(tmp_path, PayloadBuffer())
    limit = 8192
    for index in range(400):
        writer.write([("shop/api", limit, {"index": index, "request": {"json": "x" * 100}})])
    writer.close()
    records = read_payloads(tmp_path, "shop/api")
    path = payload_path(tmp_path, "shop/api")
    files = list(path.parent.iterdir())
    assert len(files) == 2
    assert sum(file.stat().st_size for file in files) <= 2 * limit + 200
    indices = [record["index"] for record in records]
    assert indices == sorted(indices) and indices[-1] == 399 and indices[0] > 0
    assert [r["index"] for r in read_payloads(tmp_path, "shop/api", 3)] == [397, 398, 399]
    assert read_payloads(tmp_path, "shop/other") == []


def test_the_dashboards_samples_skip_a_record_too_long_to_show(tmp_path: Path) -> None:
    # One request with a body over TAIL_BYTES hid every sample of the API (the dashboard showed none).
    writer = PayloadWriter(tmp_path, PayloadBuffer())
    for index in range(3):
        writer.write([("shop/api", 1 << 24, {"request_id": str(index), "request": {"json": index}})])
    writer.write([("shop/api", 1 << 24, {"request_id": "big", "request": {"json": "x" * TAIL_BYTES * 3}})])
    writer.write([("shop/api", 1 << 24, {"request_id": "3", "request": {"json": 3}})])
    writer.close()
    assert [r["request_id"] for r in recent_payloads(tmp_path, "shop/api", 8)] == ["3", "2", "1", "0"]
    assert [r["request_id"] for r in recent_payloads(tmp_path, "shop/api", 2)] == ["3", "2"]


def test_a_record_after_a_torn_one_is_kept(tmp_path: Path) -> None:
    # An operator killed (or a disk that filled) in the middle of a record left the file ending
    # inside a line: the first record written after it was glued to it, and lost with it.
    path = payload_path(tmp_path, "shop/api")
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"request_id": "0"}\n{"request_id": "1", "requ')
    writer = PayloadWriter(tmp_path, PayloadBuffer())
    writer.write([("shop/api", 1 << 24, {"request_id": "2"})])
    writer.write([("shop/api", 1 << 24, {"request_id": "3"})])
    writer.close()
    assert [r["request_id"] for r in read_payloads(tmp_path, "shop/api")] == ["0", "2", "3"]


def test_a_payload_log_that_cannot_be_read_is_said_not_empty(tmp_path: Path) -> None:
    # Was: "no payloads recorded for api 'shop/api' (set payload_log: ... on it)" for a log this
    # user cannot read (`sudo inferd deploy` once), and `inferd replay` found nothing to replay.
    path = payload_path(tmp_path, "shop/api")
    path.mkdir(parents=True)  # root reads any file: a folder stands for one it cannot
    with pytest.raises(StateError, match=r"cannot read the payload log .*api\.jsonl \(Is a directory\)"):
        read_payloads(tmp_path, "shop/api")


def test_a_read_as_the_log_rotates_leaves_no_gap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Was: `inferd replay` read the older file, then the writer rotated (the current file became
    # the older one), then it read the new current file: the records of the file rotated in between
    # were missing, and the last ones it replayed were from before them, with a gap.
    writer = PayloadWriter(tmp_path, PayloadBuffer())
    limit = 8192
    for index in range(120):
        writer.write([("shop/api", limit, {"index": index, "request": {"json": "x" * 100}})])
    path = payload_path(tmp_path, "shop/api")
    assert path.with_name(path.name + ".1").exists()
    opened = Path.open
    rotated: list[bool] = []

    def open_then_rotate(self: Path, *args: object, **kwargs: object) -> object:
        handle = opened(self, *args, **kwargs)  # type: ignore[call-overload]
        if self.parent == path.parent and not rotated:  # the writer rotates between two opens
            rotated.append(True)
            writer.write([("shop/api", limit, {"index": 1000, "request": {"json": "y" * limit}})])
        return handle

    monkeypatch.setattr(Path, "open", open_then_rotate)
    indices = [record["index"] for record in read_payloads(tmp_path, "shop/api")]
    writer.close()
    assert rotated
    # the newest records before the rotation are all there, in order, with none missing
    assert 119 in indices and indices[: indices.index(119) + 1] == list(range(indices[0], 120)), indices


def test_records_are_encoded_on_the_loop_in_steps_and_written_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker thread parsed every body: a thread running Python takes the GIL from the event
    # loop in turns, and under a 100% shadow the clients' p50 rose 30-50% (bench/shadow_latency.py).
    # Now the loop parses a few records a turn, serving requests in between; the thread only writes.
    parsed_on: set[int] = set()
    parse = gateway_payloads.parse_bodies

    def watched(record: dict[str, Any]) -> dict[str, Any]:
        parsed_on.add(threading.get_ident())
        return parse(record)

    monkeypatch.setattr(payloads, "parse_bodies", watched)
    buffer = PayloadBuffer()
    count = 3 * payloads.ENCODE_CHUNK + 5
    buffer.pending = [
        ("shop/api", 1 << 24, {"index": i, "request": b'{"x": %d}' % i, "response": b'"ok"'})
        for i in range(count)
    ]
    writer = PayloadWriter(tmp_path, buffer)
    turns = 0

    async def main() -> None:
        nonlocal turns
        flush = asyncio.ensure_future(writer.flush())
        while not flush.done():
            turns += 1
            await asyncio.sleep(0)
        await flush

    asyncio.run(main())
    writer.close()
    assert parsed_on == {threading.get_ident()}  # the loop's thread (asyncio.run runs it here)
    assert turns > count // payloads.ENCODE_CHUNK  # the loop ran between the steps
    records = read_payloads(tmp_path, "shop/api")
    assert [r["index"] for r in records] == list(range(count))
    assert records[7]["request"] == {"json": {"x": 7}} and records[7]["response"] == {"json": "ok"}


def test_a_step_holds_at_most_its_count_of_records_or_about_its_bytes_of_bodies() -> None:
    small = [("a/b", 1, {"request": b"1"}) for _ in range(70)]
    assert [len(step) for step in payloads.steps(small)] == [32, 32, 6]
    big = b"x" * payloads.ENCODE_BYTES
    mixed = [("a/b", 1, {"request": b"1"}), ("a/b", 1, {"response": big}), ("a/b", 1, {"request": b"2"})]
    assert [len(step) for step in payloads.steps(mixed)] == [2, 1]
    assert list(payloads.steps([])) == []


def records_of(first: int, count: int) -> list[tuple[str, int, dict[str, Any]]]:
    return [("shop/api", 1 << 24, {"index": i, "request": b"%d" % i}) for i in range(first, first + count)]


def test_a_writer_stopped_between_two_steps_still_writes_the_records_it_took(tmp_path: Path) -> None:
    # The stop came while the event loop turned a flush's records into lines (the writer awaits
    # between two steps): those records had left the buffer, and the last write, of the buffer
    # only, lost them.
    buffer = PayloadBuffer()
    count = 2 * payloads.ENCODE_CHUNK + 1
    buffer.pending = records_of(0, count)
    writer = PayloadWriter(tmp_path, buffer)

    async def main() -> None:
        task = asyncio.ensure_future(writer.run_forever())
        while buffer.pending:  # not taken yet
            await asyncio.sleep(0.001)
        buffer.pending = records_of(count, 3)  # and more came meanwhile
        task.cancel()  # the flush awaits between its first two steps
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert [r["index"] for r in read_payloads(tmp_path, "shop/api")] == list(range(count + 3))


def test_a_writer_stopped_while_its_thread_writes_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stop came while the worker thread wrote a flush's lines: the last records were written
    # before them (out of order), and the files were closed under the thread.
    buffer = PayloadBuffer()
    buffer.pending = records_of(0, 3)
    writer = PayloadWriter(tmp_path, buffer)
    writing, go_on = threading.Event(), threading.Event()
    write_lines = writer.write_lines

    def slow(lines: payloads.Lines) -> None:
        if threading.current_thread() is not threading.main_thread() and not writing.is_set():
            writing.set()
            go_on.wait(30)
        write_lines(lines)

    monkeypatch.setattr(writer, "write_lines", slow)

    async def main() -> None:
        task = asyncio.ensure_future(writer.run_forever())
        while not writing.is_set():
            await asyncio.sleep(0.001)
        buffer.pending = records_of(3, 2)
        task.cancel()
        asyncio.get_running_loop().call_soon(go_on.set)  # the thread finishes after the stop began
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())  # (waits for the worker thread as it ends)
    assert [r["index"] for r in read_payloads(tmp_path, "shop/api")] == list(range(5))
    assert not writer._logs  # every file closed, none reopened behind the stop


def test_a_step_counts_the_shadows_answer_among_its_bytes() -> None:
    # A record holds its shadow's answer too, parsed with the rest: 32 records of a shadow
    # answering 200 KiB each were one step of 6 MiB, parsed in one turn of the event loop.
    big = b"x" * (payloads.ENCODE_BYTES // 2)
    records = [("a/b", 1, {"request": b"1", "response": b"2", "shadow": {"response": big}}) for _ in range(4)]
    assert [len(step) for step in payloads.steps(records)] == [2, 2]


@pytest.mark.parametrize("body", [5, [1, 2], "text", {"base64": 7}])
def test_the_dashboards_samples_show_a_record_whose_body_is_no_body(tmp_path: Path, body: Any) -> None:
    # was a TypeError or AttributeError (a 500 on the dashboard) for a line edited by hand or
    # written by another tool; the records around it are shown as before
    path = payload_path(tmp_path, "shop/api")
    path.parent.mkdir(parents=True)
    odd = {"request_id": "odd", "request": body, "response": body, "shadow": {"api": "b", "response": body}}
    good = {"request_id": "good", "request": {"json": {"x": 1}}}
    path.write_text(f"{json.dumps(good)}\n{json.dumps(odd)}\n")
    samples = recent_payloads(tmp_path, "shop/api", 10)
    assert [sample["request_id"] for sample in samples] == ["odd", "good"]
    assert samples[1]["request"] == '{"x":1}'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"id": 18446744073709551616, "x": [0.5]}', {"id": 2**64, "x": [0.5]}),
        (b"-9223372036854775809", -(2**63) - 1),  # 19 digits: the fewest beyond 64 bits
        (b"[9223372036854775807, 1]", [2**63 - 1, 1]),  # 19 digits that orjson reads itself
        (b"[0.12345678901234567890123, 1e5]", [0.12345678901234568, 100000.0]),  # no integer
        (b"12", 12),  # shorter than any such integer
    ],
)
def test_a_records_bodies_keep_their_integers_as_written(tmp_path: Path, body: bytes, expected: Any) -> None:
    # the writer reads bodies on the gateway's event loop: plain orjson, and a cheap test of the
    # text first, then the integers beyond 64 bits that orjson reads as floats, as written
    writer = PayloadWriter(tmp_path, PayloadBuffer())
    writer.write([("shop/api", 1 << 20, {"status": 200, "request": body, "response": b'"setosa"'})])
    writer.close()
    (record,) = read_payloads(tmp_path, "shop/api")
    assert repr(record["request"]) == repr({"json": expected})
    assert record["response"] == {"json": "setosa"}


def test_a_large_body_is_written_as_its_text_and_read_as_json(tmp_path: Path) -> None:
    # Parsing a 1.2 MB request's JSON to write it held the gateway's event loop 40 ms: a body over
    # TEXT_BYTES goes into the line as its text, unparsed, and reading the log parses it.
    request = {"instances": [[0.5, 18446744073709551616, "é"]] * (gateway_payloads.TEXT_BYTES // 40)}
    body = json.dumps(request, indent=1).encode()  # newlines too: the line stays one line
    answer = json.dumps(list(range(20_000))).encode()
    assert len(body) > gateway_payloads.TEXT_BYTES and len(answer) > gateway_payloads.TEXT_BYTES
    not_json = b"x" * (gateway_payloads.TEXT_BYTES + 1)
    not_text = b"\xff" * (gateway_payloads.TEXT_BYTES + 1)
    deep = b"[" * 300 + b"]" * 300 + b" " * gateway_payloads.TEXT_BYTES  # deeper than a record holds
    shadow = {"api": "b", "status": 200, "response": answer}
    writer = PayloadWriter(tmp_path, PayloadBuffer())
    writer.write(
        [
            (
                "shop/api",
                1 << 30,
                {"request_id": "big", "request": body, "response": answer, "shadow": shadow},
            ),
            ("shop/api", 1 << 30, {"request_id": "odd", "request": not_json, "response": not_text}),
            ("shop/api", 1 << 30, {"request_id": "deep", "request": deep, "response": b"1"}),
        ]
    )
    writer.close()
    lines = payload_path(tmp_path, "shop/api").read_bytes().splitlines()
    assert len(lines) == 3
    written = json.loads(lines[0])
    assert written["request"] == {"json_text": body.decode()} and written["shadow"]["response"] == {
        "json_text": answer.decode()
    }
    big, odd, deeper = read_payloads(tmp_path, "shop/api")
    assert big["request"] == {"json": request} and big["request"]["json"]["instances"][0][1] == 2**64
    assert big["response"] == big["shadow"]["response"] == {"json": list(range(20_000))}
    assert odd["request"] == gateway_payloads.base64_of(not_json)  # as a small body that is no JSON
    assert odd["response"] == gateway_payloads.base64_of(not_text)
    assert deeper["request"] == gateway_payloads.base64_of(deep)
    writer = PayloadWriter(tmp_path, PayloadBuffer())
    writer.write([("shop/api", 1 << 30, {"request_id": "shown", "request": body, "response": b"1"})])
    writer.close()
    sample = recent_payloads(tmp_path, "shop/api", 1)[0]  # the dashboard: the text as sent, cut short
    assert sample["request_id"] == "shown" and sample["request"].startswith('{\n "instances": [\n  [')
    assert sample["request"].endswith("…")
