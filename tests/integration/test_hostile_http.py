"""Sloppy and hostile HTTP against a real `inferd serve`: each answer is well-formed and says what
was wrong, no answer is lost, and the server keeps serving.

Raw sockets over loopback, where a well-behaved client library would hide the mistake.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import os
import resource
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from inferd.operator.payloads import readable
from tests.conftest import INFERD, Server, make_project, wait_for, whole_lines
from tests.integration.conftest import Inferd, stop_operator
from tests.integration.test_edge import HOLD, closed_by_server

V2_BODY = b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.2,3.6,1.4,0.3]}]}'
ROWS = b"[[5.2,3.6,1.4,0.3]]"
TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
WORDS = """
def predict(sample, metadata):
    yield from sample["words"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, iris_onnx_model: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("hostile")
    project = make_project(
        root / "p",
        "- kind: deployment\n  name: d\n- kind: api\n  name: iris\n  onnx:\n    model: m.onnx\n"
        "- kind: api\n  name: words\n  predictor:\n    path: words.py\n"
        "- kind: api\n  name: hold\n  predictor:\n    path: hold.py\n",
        {"words.py": WORDS, "hold.py": HOLD},
        {"m.onnx": iris_onnx_model},
    )
    running = Server(project, root / "serve.log").wait_ready()
    yield running
    running.stop()


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> object:
        return json.loads(self.body)


class Client:
    """One raw connection: send bytes, read whole responses (by Content-Length)."""

    def __init__(self, server: Server) -> None:
        port = int(server.url.rsplit(":", 1)[1])
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def read(self, head: bool = False) -> Response:
        """The next response (``head``: the answer to a HEAD, which has no body)."""
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"the connection closed before a response: {self.buffer!r}"
        top, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = 0 if head else int(headers["content-length"])
        while len(self.buffer) < length:
            assert self._fill(), "the connection closed inside a body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(status, headers, body)

    def closed(self) -> bool:
        """The server closed the connection (after everything it sent was read)."""
        try:
            return self.buffer == b"" and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def request(method: str, path: str, body: bytes = b"", headers: str = "", version: str = "1.1") -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nHost: x\r\n{headers}"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def test_a_malformed_request_behind_others_is_answered_after_them(server: Server) -> None:
    with Client(server) as client:
        client.send(request("POST", "/d/iris", ROWS) + request("GET", "/healthz") + b"GARBAGE\r\n\r\n")
        first = client.read()
        assert first.status == 200 and first.body.startswith(b"[[0],")  # setosa
        assert client.read().json() == {"ok": True}
        refused = client.read()
        assert refused.status == 400 and refused.headers["connection"] == "close"
        assert "malformed HTTP request" in str(refused.json())
        assert client.closed()
    assert server.healthy()


def test_every_answer_says_when_it_was_made(server: Server) -> None:
    """RFC 9110 6.6.1: a server with a clock sends ``Date`` (IMF-fixdate, GMT) on its answers; a
    prediction, an error, a refusal at the edge and a streamed answer carried none."""
    with Client(server) as client:
        client.send(
            request("POST", "/d/iris", ROWS)
            + request("POST", "/d/iris", b"{not json")
            + request("GET", "/healthz")
            + request("POST", "/d/iris", ROWS, "Content-Encoding: gzip\r\n")
        )
        answers = [client.read() for _ in range(4)]
    streamed = requests.post(f"{server.url}/d/words", json={"words": ["a", "b"]}, stream=True, timeout=30)
    with streamed:
        dates = [answer.headers["date"] for answer in answers] + [streamed.headers["Date"]]
    assert [answer.status for answer in answers] == [200, 400, 200, 415]
    for date in dates:
        assert date.endswith(" GMT"), date
        made = email.utils.parsedate_to_datetime(date)
        assert abs((made - datetime.now(UTC)).total_seconds()) < 300, date


def test_head_answers_carry_no_body_and_the_connection_goes_on(server: Server) -> None:
    with Client(server) as client:
        for path in ("/healthz", "/v2/health/ready", "/v2/models/iris", "/v1/models/iris", "/d/iris"):
            client.send(request("HEAD", path) + request("GET", "/v2/health/live"))
            answer = client.read(head=True)
            assert answer.status == 200, path
            assert int(answer.headers["content-length"]) > 0
            after = client.read()  # parsed right only if no body followed the HEAD answer
            assert (after.status, after.json()) == (200, {"live": True}), path


def test_an_absurd_binary_header_length_is_400(server: Server) -> None:
    with Client(server) as client:
        for length in ("99999999999999999999", "4294967296", str(len(V2_BODY) + 1)):
            given = f"Inference-Header-Content-Length: {length}\r\n"
            client.send(request("POST", "/v2/models/iris/infer", V2_BODY, given))
            answer = client.read()
            assert answer.status == 400, length
            assert answer.json() == {
                "error": "Inference-Header-Content-Length is larger than the request body"
            }
        client.send(request("POST", "/v2/models/iris/infer", V2_BODY))
        assert client.read().status == 200


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (f"00-{TRACE}-{PARENT}-01", True),
        (f"01-{TRACE}-{PARENT}-01-what-a-later-version-adds", True),  # a later version: its 4 fields
        (f"00-{TRACE.upper()}-{PARENT}-01", False),  # hex is lowercase
        (f"ff-{TRACE}-{PARENT}-01", False),  # version ff is invalid
        (f"00-{'0' * 32}-{PARENT}-01", False),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", False),  # all-zero parent id
        (f"00-{TRACE}-{PARENT}-01-extra", False),  # version 00 has exactly four fields
        (f"00-{TRACE}-{PARENT}", False),
        ("x" * 4000, False),
        # two traceparent fields: invalid, a new trace (the W3C test suite's "duplicated" case;
        # the last one was kept)
        (f"00-{'1' * 32}-{PARENT}-01\r\ntraceparent: 00-{TRACE}-{PARENT}-01", False),
    ],
)
def test_traceparent_on_every_protocol(server: Server, given: str, kept: bool) -> None:
    header = f"traceparent: {given}\r\n"
    with Client(server) as client:
        for sent in (
            request("POST", "/d/iris", ROWS, header),
            request("POST", "/v2/models/iris/infer", V2_BODY, header),
            request("POST", "/v1/models/iris:predict", b'{"instances": [[5.2, 3.6, 1.4, 0.3]]}', header),
        ):
            client.send(sent)
            answer = client.read()
            assert answer.status == 200
            version, trace, span, flags = answer.headers["traceparent"].split("-")
            assert version == "00" and len(span) == 16 and span != PARENT and flags == "01"
            assert (trace == TRACE) is kept and len(trace) == 32 and trace == trace.lower()


@pytest.mark.parametrize(
    "path",
    ["/healthz", "/metrics", "/", "/openapi.json", "/v2", "/v2/health/live", "/v2/models",
     "/v2/models/iris", "/v2/models/iris/ready", "/v1/models", "/v1/models/iris", "/v1/models/iris/metadata"],
)  # fmt: skip
def test_read_only_routes_refuse_a_post(server: Server, path: str) -> None:
    with Client(server) as client:
        client.send(request("POST", path, b"{}"))
        answer = client.read()
        assert answer.status == 405
        # RFC 9110 15.5.6: every method the route answers; OPTIONS (a CORS preflight) on each
        assert answer.headers["allow"] == "GET, HEAD, OPTIONS"
        assert answer.json() == {"error": "method POST is not allowed here"}
        client.send(request("GET", path))
        assert client.read().status == 200


@pytest.mark.parametrize(
    "path", ["/v2/models/iris/infer", "/v2/models/words/generate_stream", "/v1/models/iris:predict"]
)
def test_predicting_routes_refuse_a_get_and_name_what_they_answer(server: Server, path: str) -> None:
    """The V2 and TF Serving prediction routes' 405 left out OPTIONS, which they answer (204)."""
    with Client(server) as client:
        client.send(request("GET", path))
        answer = client.read()
        assert (answer.status, answer.headers["allow"]) == (405, "POST, OPTIONS")
        client.send(request("OPTIONS", path))
        assert client.read(head=True).status == 204


def test_paths_that_only_begin_like_a_protocol_are_not_found(server: Server) -> None:
    with Client(server) as client:
        for path in ("/v2x", "/v2health/live", "/v1/modelsx"):
            client.send(request("GET", path))
            answer = client.read()
            assert answer.status == 404, path
            assert "error" in answer.json()  # type: ignore[operator]


def test_an_http_1_0_keep_alive_client_is_told_the_connection_stays(server: Server) -> None:
    with Client(server) as client:
        for _ in range(2):
            client.send(request("POST", "/d/iris", ROWS, "Connection: keep-alive\r\n", version="1.0"))
            answer = client.read()
            assert answer.status == 200 and answer.headers["connection"] == "keep-alive"
        client.send(request("GET", "/healthz", version="1.0"))  # no keep-alive: closed after
        answer = client.read()
        assert answer.status == 200 and answer.headers["connection"] == "close"
        assert client.closed()


def test_the_dashboard_and_admin_api_close_requests_never_finished(tmp_path: Path) -> None:
    runner = Inferd(tmp_path / "home")
    runner.env["INFERD_HEADER_TIMEOUT"] = "1"
    runner.env["INFERD_MAX_HEADER_BYTES"] = "4096"  # README: the operator reads the flags' names
    try:
        runner.run("up")
        with socket.create_connection(("127.0.0.1", runner.port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 431 ")  # the gateway's limit, from it
        info = json.loads((runner.home / "operator.json").read_text())
        ports = [int(info["dashboard"].rsplit(":", 1)[1]), int(info["admin_port"])]
        attackers = []
        for port in ports:
            for _ in range(20):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"GET /dashboard/ HTTP/1.1\r\nHost: x\r\n")  # never finished
                attackers.append(sock)
            attackers.append(socket.create_connection(("127.0.0.1", port)))  # sends nothing
        wait_for(lambda: all(closed_by_server(sock) for sock in attackers), 30, "slow clients closed")
        for sock in attackers:
            sock.close()
        answer = requests.get(f"http://127.0.0.1:{ports[0]}/dashboard/", timeout=10)  # still serving
        assert answer.status_code == 401 and "inferd dashboard" in answer.json()["error"]
        # A refusal at the edge carries the dashboard's security headers too (it came without them).
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=10) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            refused = sock.recv(65536)
        assert refused.startswith(b"HTTP/1.1 400 "), refused
        assert b"X-Frame-Options: DENY\r\n" in refused and b"Content-Security-Policy: " in refused
        # A session cookie sent as a trailer field is no cookie (it opened the dashboard).
        login = requests.get(runner.run("dashboard").stdout.strip(), allow_redirects=False, timeout=10)
        cookie, pages = login.headers["set-cookie"].split(";")[0], login.headers["location"]
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=10) as sock:
            sock.sendall(
                b"GET "
                + pages.encode()
                + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0\r\nCookie: " + cookie.encode() + b"\r\n\r\n"
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 401 ")
        opened = requests.get(f"http://127.0.0.1:{ports[0]}{pages}", headers={"Cookie": cookie}, timeout=10)
        assert opened.status_code == 200  # the same cookie as a header
    finally:
        stop_operator(runner)


def test_a_flood_of_idle_connections_to_the_dashboard_and_admin_api_leaves_the_cli_working(
    tmp_path: Path,
) -> None:
    """Each holds at most SIDE_CONNECTIONS (64): was 800 idle connections to either took every
    file descriptor of an operator limited to 600, and `inferd get` found no operator."""
    runner = Inferd(tmp_path / "home")
    attackers: list[socket.socket] = []
    # This process holds the 1,600 attacking sockets: a soft limit of 1,024 (common) is raised.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2048 if hard == resource.RLIM_INFINITY else min(hard, 2048)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        # the operator (started by `inferd up`) inherits the lowered open-file limit
        subprocess.run(
            ["sh", "-c", 'ulimit -n 600 && exec "$0" up', str(INFERD)],
            env=runner.env,
            check=True,
            timeout=120,
        )
        info = json.loads((runner.home / "operator.json").read_text())
        dashboard = int(info["dashboard"].rsplit(":", 1)[1])
        for port in (dashboard, int(info["admin_port"])):
            for _ in range(800):  # each sends a request, then holds the connection idle (keep-alive)
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"GET /dashboard/ HTTP/1.1\r\nHost: x\r\n\r\n")
                attackers.append(sock)
        assert runner.run("get", timeout=60).returncode == 0
        answer = requests.get(f"http://127.0.0.1:{dashboard}/dashboard/", timeout=30)
        assert answer.status_code == 401  # the dashboard still serves (its login is the CLI's)
        assert requests.get(f"{runner.url}/healthz", timeout=30).status_code == 200
        assert len(os.listdir(f"/proc/{info['pid']}/fd")) < 400
    finally:
        for sock in attackers:
            sock.close()
        stop_operator(runner)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_admin_api_answers_a_malformed_body_with_400(tmp_path: Path) -> None:
    runner = Inferd(tmp_path / "home")
    try:
        runner.run("up")
        port = json.loads((runner.home / "operator.json").read_text())["admin_port"]
        token = (runner.home / "token").read_text().strip()
        url = f"http://127.0.0.1:{port}"
        with requests.Session() as admin:
            admin.headers["Authorization"] = f"Bearer {token}"
            for path, body in (
                ("/deploy", b"{not json"),
                ("/deploy", b"[1, 2]"),
                ("/deploy", b"{}"),
                ("/deploy", b'{"path": 5}'),
                ("/deploy", b'{"path": "/x", "environ": [1]}'),
                ("/promote", b'{"splitter": "s"}'),
                ("/delete", b'{"name": null}'),
            ):
                answer = admin.post(url + path, data=body, timeout=10)
                assert answer.status_code == 400, (path, body, answer.text)
                assert answer.json()["type"] == "InputError"
            (runner.home / "logs" / "gone").mkdir(parents=True, exist_ok=True)
            (runner.home / "logs" / "gone" / "api.log").write_text("a line\n")  # a deleted API's log
            assert admin.get(f"{url}/logs/gone/api?tail=1", timeout=10).status_code == 200
            answer = admin.get(f"{url}/logs/gone/api?tail=many", timeout=10)
            assert answer.status_code == 400 and answer.json()["type"] == "InputError"
            assert admin.get(f"{url}/info", timeout=10).status_code == 200  # still serving
    finally:
        stop_operator(runner)


def test_a_stream_to_an_http_1_0_client_is_not_chunked(server: Server) -> None:
    """HTTP/1.0 has no chunked encoding (nginx's ``proxy_pass`` speaks it upstream by default):
    the stream's bytes as they are, then the close."""
    body = b'{"words": ["one", "two"]}'
    for accept, expected in (
        ("", b'"one"\n"two"\n'),
        ("Accept: text/event-stream\r\n", b'data: "one"\n\ndata: "two"\n\n'),
    ):
        with Client(server) as client:
            client.send(request("POST", "/d/words", body, accept + "Connection: keep-alive\r\n", "1.0"))
            answer = client.read(head=True)
            assert answer.status == 200 and "transfer-encoding" not in answer.headers
            assert answer.headers["connection"] == "close"
            # what lets nginx (HTTP/1.0 upstream by default, buffering on) pass each item on
            assert answer.headers["x-accel-buffering"] == "no"
            assert answer.headers["cache-control"] == "no-cache"
            while client._fill():
                pass
            assert client.buffer == expected
    with Client(server) as client:  # HTTP/1.1: chunked, and the connection stays
        client.send(request("POST", "/d/words", body))
        answer = client.read(head=True)
        assert answer.headers["transfer-encoding"] == "chunked"
        while not client.buffer.endswith(b"0\r\n\r\n"):
            assert client._fill()
        assert client.buffer == b'6\r\n"one"\n\r\n6\r\n"two"\n\r\n0\r\n\r\n'
        client.buffer = b""
        client.send(request("GET", "/healthz"))
        assert client.read().status == 200


def test_payload_records_larger_than_a_write_stay_one_line_each(
    serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payload log is one JSON record a line, however large (records are written in pieces of
    an eighth of max_size: a larger record was cut across lines, and its file unreadable)."""
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: d\n- kind: api\n  name: words\n  predictor:\n    path: words.py\n"
        "  payload_log: {sample: 1.0, max_size: 1Mi}\n",
        {"words.py": "def predict(sample, metadata):\n    return len(sample['pad'])\n"},
    )
    server = serve(project)
    sizes = [300_000, 5, 200_000]  # 128 KiB pieces
    for size in sizes:
        assert server.post("/d/words", {"pad": "x" * size}).json() == size
    log = tmp_path / "home" / "payloads" / "d" / "words.jsonl"

    def recorded() -> list[Any] | None:
        lines = whole_lines(log)  # a record is appended in pieces: wait for its end
        # (a body over 64 KiB is kept as its text, parsed as inferd reads it: ``readable``)
        return [readable(json.loads(line)) for line in lines] if len(lines) >= len(sizes) else None

    records = wait_for(recorded, 30, "the payload records")
    assert [len(r["request"]["json"]["pad"]) for r in records] == sizes
    assert [r["response"]["json"] for r in records] == sizes


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/v2/models/typo/infer", 404, "model 'typo' is not found"),
        ("/v1/models/typo:predict", 404, "Servable not found for request: Latest(typo)"),
        ("/d/typo", 404, "no API at /d/typo"),
        ("/healthz", 405, "method POST is not allowed here"),
    ],
)
def test_a_large_body_to_a_mistyped_name_is_404_not_413(
    server: Server, path: str, status: int, error: str
) -> None:
    """No API reads this body: the answer names the real mistake, not the body's size."""
    body = b"[" + b"1.5," * 100_000 + b"1]"  # beyond the 64 KiB read for routes without an API
    with Client(server) as client:
        client.send(request("POST", path, body))
        answer = client.read()
        assert answer.status == status and str(answer.json()).count(error) == 1


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/v2/models/typo/infer", 404, "model 'typo' is not found"),
        ("/d/typo", 404, "no API at /d/typo"),
        ("/healthz", 405, "method POST is not allowed here"),
    ],
)
def test_a_large_chunked_body_to_a_mistyped_name_is_404_not_413(
    server: Server, path: str, status: int, error: str
) -> None:
    """A body of unknown length (Go's http.Post of an *os.File, Java's ofInputStream, curl -T -,
    a stream from Node's fetch) is chunked: past the 64 KiB read for a route without an API, its
    answer names the route's mistake as a Content-Length body's does (it was a 413, 'larger than
    65536 bytes', to a client whose API takes 10 MiB)."""
    piece = b"[" + b"1.5," * 5_000 + b"1]"  # 20 KB
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    with Client(server) as client:
        client.send(head + b"%x\r\n%s\r\n" % (len(piece), piece) * 5 + b"0\r\n\r\n")
        answer = client.read()
        assert answer.status == status and str(answer.json()).count(error) == 1
    with Client(server) as client:  # under 64 KiB the body is read and the route answers as ever
        client.send(head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(piece), piece) + request("GET", "/healthz"))
        answer = client.read()
        assert answer.status == status and str(answer.json()).count(error) == 1
        assert client.read().json() == {"ok": True}


def test_a_large_body_to_a_mistyped_name_is_answered_as_its_own_request(server: Server) -> None:
    """The 404 given before the body is read names this request, not the one before it on the
    connection: its X-Request-ID, and no traceparent of the earlier request."""
    body = b"[" + b"1.5," * 100_000 + b"1]"
    with Client(server) as client:
        traced = f"traceparent: 00-{TRACE}-{PARENT}-01\r\nX-Request-ID: first-request\r\n"
        client.send(request("POST", "/d/iris", ROWS, traced))
        first = client.read()
        assert first.status == 200 and TRACE in first.headers["traceparent"]
        client.send(request("POST", "/d/typo", body, "X-Request-ID: second-request\r\n"))
        answer = client.read()
        assert answer.status == 404 and answer.headers["x-request-id"] == "second-request"
        assert "traceparent" not in answer.headers


def test_an_upgrade_is_answered_as_plain_http_once_and_the_connection_ends(server: Server) -> None:
    websocket = "Connection: Upgrade\r\nUpgrade: websocket\r\n"
    with Client(server) as client:  # answered as if no upgrade was asked; the bytes after, dropped
        client.send(
            request("POST", "/d/iris", ROWS) + request("GET", "/healthz", b"", websocket) + b"\x81\x05hi"
        )
        assert client.read().status == 200
        answer = client.read()
        assert (answer.status, answer.json(), answer.headers["connection"]) == (200, {"ok": True}, "close")
        assert client.closed()  # one answer per request, no error for the other protocol's bytes
    with Client(server) as client:
        client.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01")
        assert client.read().status == 404
        assert client.closed()
    assert server.healthy()


# What Java's java.net.http.HttpClient (HTTP/2 by default) sends for a POST to an http:// URL;
# curl --http2 sends the same Upgrade: h2c.
H2C = (
    "Connection: Upgrade, HTTP2-Settings\r\n"
    "HTTP2-Settings: AAEAAEAAAAIAAAAAAAMAAAAAAAQBAAAAAAUAAEAAAAYABgAA\r\nUpgrade: h2c\r\n"
)


def test_a_post_offering_h2c_is_answered_as_plain_http_and_the_connection_goes_on(server: Server) -> None:
    """RFC 9110 7.8: a server may ignore Upgrade; the body is the request's (it was a 400)."""
    with Client(server) as client:
        chunked = "Transfer-Encoding: chunked\r\n" + H2C
        client.send(
            request("POST", "/d/iris", ROWS, H2C + "Content-Type: application/json\r\n")
            + request("POST", "/d/iris", ROWS, H2C)[:-12]  # the rest of this body comes in a later read
        )
        first = client.read()
        assert first.status == 200, first.body
        assert json.loads(first.body)[0] == [0]
        client.send(ROWS[7:])
        second = client.read()
        assert second.status == 200 and second.headers["connection"] == "keep-alive", second.body
        client.send(
            b"POST /d/iris HTTP/1.1\r\nHost: x\r\n"
            + chunked.encode()
            + b"\r\n13\r\n"
            + ROWS
            + b"\r\n0\r\n\r\n"
        )
        assert client.read().status == 200
        expect = f"{H2C}Expect: 100-continue\r\nContent-Length: {len(ROWS)}\r\n"
        client.send(f"POST /d/iris HTTP/1.1\r\nHost: x\r\n{expect}\r\n".encode())
        while b"\r\n\r\n" not in client.buffer:  # the body is sent once the server asks for it
            assert client._fill()
        assert client.buffer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        client.buffer = client.buffer[25:]
        client.send(ROWS)
        assert client.read().status == 200
        client.send(request("GET", "/healthz"))  # still plain HTTP/1.1 on the same connection
        assert client.read().json() == {"ok": True}


def test_a_get_offering_h2c_keeps_its_connection(server: Server) -> None:
    """Java's java.net.http.HttpClient offers h2c on the first request of every connection, a GET
    too, and sends nothing of HTTP/2 before a 101: a GET, HEAD or OPTIONS that offers it is
    answered in HTTP/1.1 and the connection goes on (each such GET closed it, so a Java client
    opened a connection per GET: 5 GETs, 5 connections)."""
    with Client(server) as client:
        client.send(request("GET", "/healthz", b"", H2C) + request("HEAD", "/d/iris", b"", H2C))
        first = client.read()
        assert (first.json(), first.headers["connection"]) == ({"ok": True}, "keep-alive")
        assert client.read(head=True).status == 200
        client.send(request("OPTIONS", "/d/iris", b"", H2C + "Origin: http://a.example\r\n"))
        assert client.read(head=True).status == 204
        client.send(request("POST", "/d/iris", ROWS))
        assert client.read().status == 200


def _v2(**extra: object) -> bytes:
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.2, 3.6, 1.4, 0.3]}
    tensor.update(extra.pop("tensor", {}))  # type: ignore[call-overload]
    return json.dumps({"inputs": [tensor], **extra}).encode()


V2 = "/v2/models/iris/infer"


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        (V2, _v2(outputs=[{"name": "output_label", "parameters": [1]}]), "must be an object"),
        (V2, _v2(outputs=[{"name": "output_label"}, 5]), "must be an object with a 'name'"),
        (V2, _v2(outputs={"name": "output_label"}), "'outputs' must be a list"),
        (V2, _v2(parameters=[1]), "'parameters' must be an object"),
        (V2, _v2(tensor={"parameters": "x"}), "'parameters' must be an object"),
        (V2, _v2(tensor={"parameters": {"binary_data_size": "16"}}), "a number of bytes"),
        (V2, _v2(tensor={"data": [1e39, 1, 2, 3]}), "1e+39 is out of FP32's range"),
        # "false" read as true: binary data to a client that asked for JSON
        (V2, _v2(outputs=[{"name": "output_label", "parameters": {"binary_data": "false"}}]), "true or"),
        (V2, _v2(parameters={"binary_data_output": 1}), "'binary_data_output' must be true or false"),
        ("/v1/models/iris:predict", b'{"signature_name": 5, "instances": [[1, 2, 3, 4]]}', "a string"),
    ],
)  # fmt: skip
def test_protocol_fields_of_the_wrong_type_are_400(
    server: Server, path: str, body: bytes, error: str
) -> None:
    """Never a 500, never silently ignored: the answer names the field."""
    with Client(server) as client:
        client.send(request("POST", path, body))
        answer = client.read()
        assert answer.status == 400 and error in answer.json()["error"]  # type: ignore[index]


def test_an_error_quoting_a_huge_input_is_cut(server: Server) -> None:
    """numpy quotes the value it could not convert: a 2 MiB string must not come back whole."""
    with Client(server) as client:
        client.send(request("POST", "/d/iris", b'[["' + b"x" * (2 << 20) + b'", 1, 2, 3]]'))
        answer = client.read()
        assert answer.status == 400 and len(answer.body) < 10_000
        assert "could not convert string to float" in answer.json()["error"]  # type: ignore[index]
        assert answer.json()["error"].endswith("more characters)")  # type: ignore[index]


def test_a_compressed_body_is_415_not_malformed_json(server: Server) -> None:
    body = gzip.compress(ROWS)
    with Client(server) as client:
        client.send(request("POST", "/d/iris", body, "Content-Encoding: gzip\r\n"))
        answer = client.read()
        assert answer.status == 415
        assert answer.json() == {
            "error": "Content-Encoding gzip is not supported: send the body uncompressed"
        }
    with Client(server) as client:  # identity is no encoding at all; answers are never compressed
        client.send(
            request("POST", "/d/iris", ROWS, "Content-Encoding: identity\r\nAccept-Encoding: gzip\r\n")
        )
        answer = client.read()
        assert answer.status == 200 and "content-encoding" not in answer.headers
    with Client(server) as client:  # its lines are one list (RFC 9110 5.3): identity twice is identity
        client.send(
            request("POST", "/d/iris", ROWS, "Content-Encoding: identity\r\nContent-Encoding: identity\r\n")
        )
        assert client.read().status == 200  # was a 415 "Content-Encoding identity, identity"


def test_a_pipelined_100_continue_comes_after_the_answers_before_it(server: Server) -> None:
    """Answers go out in order (RFC 9112): was the 100 Continue for the second request written
    while the first was at the replica, so a client took it for the first request's answer."""
    expecting = request("POST", "/d/iris", ROWS, "Expect: 100-continue\r\n")[: -len(ROWS)]
    with Client(server) as client:
        client.send(request("POST", "/d/iris", ROWS) + expecting)  # one write: the first is unanswered
        first = client.read()
        assert first.status == 200 and first.body.startswith(b"[[0],")
        assert client.read(head=True).status == 100  # now it is the second request's turn
        client.send(ROWS)
        assert client.read().status == 200
    with Client(server) as client:  # its body sent without waiting: answered, no 100 needed
        client.send(
            request("POST", "/d/iris", ROWS) + request("POST", "/d/iris", ROWS, "Expect: 100-continue\r\n")
        )
        assert client.read().status == 200
        assert client.read().status == 200
        client.send(request("GET", "/healthz"))
        assert client.read().json() == {"ok": True}  # nothing stray (a late 100) came before it


def test_expect_100_continue_is_ignored_from_an_http_1_0_client(server: Server) -> None:
    """HTTP/1.0 knows no 1xx answer: its client would take a 100 Continue for the final one."""
    with Client(server) as client:
        client.send(request("POST", "/d/iris", ROWS, "Expect: 100-continue\r\n", "1.0"))
        answer = client.read()
        assert answer.status == 200 and answer.body.startswith(b"[[0],")
    with Client(server) as client:  # HTTP/1.1: the 100 first, then the answer
        client.send(request("POST", "/d/iris", ROWS, "Expect: 100-continue\r\n")[: -len(ROWS)])
        assert client.read(head=True).status == 100
        client.send(ROWS)
        assert client.read().status == 200


@pytest.mark.parametrize(
    "coding",
    [
        "gzip, chunked",
        "deflate,chunked",
        "gzip\r\nTransfer-Encoding: chunked",  # two lines are one list (RFC 9110 5.3): was read as chunked
    ],
)
def test_a_transfer_coding_other_than_chunked_is_501_not_read_as_plain(server: Server, coding: str) -> None:
    """RFC 9112 6.1: a transfer coding the server does not understand is a 501. The body was read
    as if only chunked: a gzip-coded body came to the handler compressed (400 malformed JSON) and
    a plain one was answered as though the coding had been applied."""
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(ROWS), ROWS)
    with Client(server) as client:
        client.send(
            f"POST /d/iris HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n\r\n".encode() + body
        )
        answer = client.read()
        assert answer.status == 501 and answer.headers["connection"] == "close"
        shown = coding.replace("\r\n", ",").split(",")[0].strip()
        assert answer.json() == {
            "error": f"Transfer-Encoding {shown} is not supported: send the body with chunked alone"
        }
    with Client(server) as client:  # chunked alone, in any case, is read as it always was
        client.send(b"POST /d/iris HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n" + body)
        assert client.read().status == 200


def test_an_absolute_form_target_is_answered_as_its_path(server: Server) -> None:
    """RFC 9112 3.2.2: a server must accept the absolute form (``POST http://host/d/iris``, as a
    client configured with the gateway as its proxy sends); it was a 404 naming the whole URL."""
    with Client(server) as client:
        for target in ("http://127.0.0.1/d/iris", "HTTPS://gateway:8888/d/iris?debug=false"):
            client.send(request("POST", target, ROWS))
            answer = client.read()
            assert answer.status == 200 and answer.body.startswith(b"[[0],"), target
        client.send(request("GET", "http://gateway"))  # no path: the root
        assert "apis" in client.read().json()  # type: ignore[operator]


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_a_request_with_two_host_lines_is_400_and_the_connection_closes(server: Server, version: str) -> None:
    """RFC 9112 3.2: a server MUST answer 400 to a request with several Host lines (a proxy and
    the gateway could each read another one); it was predicted. nginx and haproxy refuse it too."""
    with Client(server) as client:
        head = f"POST /d/iris HTTP/{version}\r\nHost: a\r\nhost: b\r\nContent-Length: {len(ROWS)}\r\n\r\n"
        client.send(head.encode() + ROWS + request("GET", "/healthz"))
        answer = client.read()
        assert (answer.status, answer.json()) == (
            400,
            {"error": "a request must carry one Host header, not several"},
        )
        assert answer.headers["connection"] == "close"
        assert client.closed()  # nothing pipelined behind it was read as a request


def test_a_request_without_host_is_answered(server: Server) -> None:
    """RFC 9112 3.2 asks a 400 of an HTTP/1.1 request without Host; the gateway answers it, as it
    never reads Host: haproxy 2.6's health check ``option httpchk GET /healthz HTTP/1.1`` sends
    none (with the 400 its server was marked DOWN), and nginx sends none for an HTTP/1.0 client
    behind ``proxy_http_version 1.1`` and ``proxy_set_header Host $host`` with no ``server_name``."""
    with Client(server) as client:
        client.send(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert client.read().json() == {"ok": True}
        client.send(f"POST /d/iris HTTP/1.1\r\nContent-Length: {len(ROWS)}\r\n\r\n".encode() + ROWS)
        answer = client.read()
        assert answer.status == 200 and answer.body.startswith(b"[[0],")


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
CHUNKED_ROWS = b"%x\r\n%s\r\n0\r\n\r\n" % (len(ROWS), ROWS)


@pytest.mark.parametrize(
    ("head", "body"),
    [
        # CL.TE / TE.CL: RFC 9112 6.1 lets a server reject both; read either way, one hides a request
        (f"Content-Length: {len(CHUNKED_ROWS)}\r\nTransfer-Encoding: chunked\r\n", CHUNKED_ROWS),
        ("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", CHUNKED_ROWS),
        (f"Content-Length: {len(ROWS)}\r\nTransfer-Encoding: xchunked\r\n", ROWS),
        ("Transfer-Encoding: chunked, identity\r\n", CHUNKED_ROWS),
        ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", CHUNKED_ROWS),
        (f"Content-Length: {len(ROWS)}\r\nContent-Length: 5\r\n", ROWS),
        (f"Content-Length: {len(ROWS)}\r\nContent-Length: {len(ROWS)}\r\n", ROWS),
        (f"Content-Length: {len(ROWS)}, {len(ROWS)}\r\n", ROWS),
        (f"Content-Length: +{len(ROWS)}\r\n", ROWS),
        ("Content-Length: 99999999999999999999999\r\n", ROWS),
        ("Transfer-Encoding: chunked\r\n", b"10000000000000013\r\n" + ROWS + b"\r\n0\r\n\r\n"),  # overflow
        ("Transfer-Encoding: chunked\r\n", b"13 \r\n" + ROWS + b"\r\n0\r\n\r\n"),
        ("Transfer-Encoding: chunked\r\n", b"13\n" + ROWS + b"\n0\n\n"),  # bare LF
        ("Transfer-Encoding: chunked\r\n", b"13\r\n" + ROWS + b"XX0\r\n\r\n"),
        (" Transfer-Encoding: chunked\r\n", CHUNKED_ROWS),  # obs-fold of Host's line
        (f"X-A: a\r\n b\r\nContent-Length: {len(ROWS)}\r\n", ROWS),  # obs-fold
        (f"Content-Length : {len(ROWS)}\r\n", ROWS),  # whitespace before the colon
        (f"X-A: a\x00b\r\nContent-Length: {len(ROWS)}\r\n", ROWS),
        (f"X-A: a\rContent-Length: 5\r\nContent-Length: {len(ROWS)}\r\n", ROWS),  # bare CR
    ],
)
def test_a_request_framed_two_ways_is_400_and_nothing_behind_it_is_read(
    server: Server, head: str, body: bytes
) -> None:
    """Request smuggling: a body whose length a proxy in front and the gateway could read
    differently is a 400 that closes the connection (RFC 9112 6.1, 6.3, 5.2); a request sent
    behind it is never answered, so none can hide in a body. nginx and haproxy refuse most of
    these themselves; those they pass on (haproxy: an obs-fold line, a NUL) reach this."""
    with Client(server) as client:
        client.send(
            b"POST /d/iris HTTP/1.1\r\nHost: x\r\n" + head.encode("latin-1") + b"\r\n" + body + SMUGGLED
        )
        answer = client.read()
        assert answer.status == 400, answer.body
        assert answer.headers["connection"] == "close"
        assert client.closed(), client.buffer  # the smuggled request was not answered


def test_a_204_answer_carries_no_content_length(server: Server) -> None:
    """RFC 9110 8.6: a server MUST NOT send Content-Length in a 204; a CORS preflight's carried
    ``Content-Length: 0``. Its connection goes on."""
    with Client(server) as client:
        for path in ("/d/iris", "/healthz", "*"):
            client.send(request("OPTIONS", path, headers="Origin: http://a\r\n") + request("GET", "/healthz"))
            answer = client.read(head=True)
            assert answer.status == 204 and "content-length" not in answer.headers, path
            assert client.read().json() == {"ok": True}, path


def test_a_percent_encoded_path_is_answered_as_its_decoded_path(server: Server) -> None:
    """``urllib.parse.quote("iris:predict")`` is ``iris%3Apredict``: TF Serving decodes the path,
    as Flask (Cortex's replicas) and every ASGI server do; it was a 404."""
    with Client(server) as client:
        tf_serving = b'{"instances": [[5.2, 3.6, 1.4, 0.3]]}'
        for target, body in (
            ("/v1/models/iris%3Apredict", tf_serving),
            ("/v2/models/iris/infer%2F", V2_BODY),
            ("/%64/iris", ROWS),
            ("/d/iris?x=%3A", ROWS),
            ("//d/iris", ROWS),  # a base URL ending in "/" joined with "/d/iris": merged, as nginx does
            ("/v1/models//iris:predict", tf_serving),
        ):
            client.send(request("POST", target, body))
            answer = client.read()
            assert answer.status == 200, (target, answer.body)
        client.send(request("POST", "/d/ir%ZZis", ROWS))  # not an escape: left as it is
        assert client.read().status == 404


def test_pipelined_bodies_behind_an_unanswered_request_are_not_read_ahead(
    server: Server, tmp_path: Path
) -> None:
    """--max-pipeline bounds pipelined requests, but each could hold a whole body (10 MiB): a
    client that pipelined large bodies behind a slow request made the gateway hold them all
    (nine 9 MB bodies on one connection: 440 MB for five connections). Behind an unanswered
    request a body is read ahead 1 MiB at most; the rest waits in the socket."""
    release = tmp_path / "release"
    held = json.dumps({"until": str(release)}).encode()
    data = request("POST", "/d/hold", held) + request("POST", "/d/hold", held + b" " * (4 << 20)) * 8
    with Client(server) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        client.sock.setblocking(False)
        pushed = 0
        stalled_since = time.monotonic()
        while pushed < len(data) and time.monotonic() - stalled_since < 1.0:
            try:
                sent = client.sock.send(data[pushed : pushed + 65536])
            except BlockingIOError:
                time.sleep(0.01)
                continue
            pushed += sent
            stalled_since = time.monotonic()
        release.touch()
        client.sock.setblocking(True)
        client.sock.sendall(data[pushed:])
        for _ in range(9):
            answer = client.read()
            assert (answer.status, answer.json()) == (200, "done")
    # What the kernel's socket buffers hold (a few MiB on loopback) plus 1 MiB read ahead; it
    # was every body up to --max-pipeline (32 MiB here).
    assert pushed < 16 << 20, f"the gateway read {pushed >> 20} MiB ahead"
    assert server.healthy()


def test_trailer_fields_are_bounded_and_never_taken_for_headers(server: Server) -> None:
    """Trailer fields after a chunked body were no part of the head: unbounded (42 MiB of one
    trailer accepted in 8 s, the parser copying the growing value at every read, the event loop
    busy the while) and stored over the headers (a trailer ``X-Request-ID`` named the answer)."""
    chunked = (
        b"POST /d/iris HTTP/1.1\r\nHost: x\r\nX-Request-ID: head-id\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    body = b"%x\r\n%s\r\n0\r\n" % (len(ROWS), ROWS)
    with Client(server) as client:
        client.send(chunked + body + b"X-Request-ID: trailer-id\r\nX-Trace: 1\r\n\r\n")
        answer = client.read()
        assert answer.status == 200 and answer.headers["x-request-id"] == "head-id"
        client.send(chunked + body + b"X-Pad: " + b"a" * (100 << 10) + b"\r\n\r\n")
        refused = client.read()
        assert refused.status == 431 and refused.headers["connection"] == "close"
        assert refused.json() == {
            "error": "the chunked body's framing and trailer fields are larger than 65536 bytes"
        }
    assert server.healthy()


SIZE = """
def predict(sample, metadata):
    return len(sample["data"])
"""


def test_bodies_arriving_at_once_are_held_up_to_the_gateways_budget(tmp_path: Path) -> None:
    # Many slow uploads at once would each stay under max_body_size and the rate floor, and
    # together hold the gateway's memory: past --max-body-buffer, the body that crosses it is
    # refused (503), the others go on, and the bytes handed on or refused are counted out.
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: d\n- kind: api\n  name: size\n  predictor:\n    path: size.py\n",
        {"size.py": SIZE},
    )
    budget = 3 << 20
    running = Server(project, tmp_path / "serve.log", "--max-body-buffer", str(budget)).wait_ready()
    try:
        port = int(running.url.rsplit(":", 1)[1])
        body = b'{"data": "' + b"x" * ((2 << 20) - 12) + b'"}'
        head = b"POST /d/size HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += b"Content-Length: %d\r\n\r\n" % len(body)
        first_part = 1_700_000  # two of them: over the budget, one alone is not
        uploads = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(2)]
        for upload in uploads:
            upload.sendall(head + body[:first_part])
        answered, _, _ = select.select(uploads, [], [], 30)  # the other waits for the rest of its body
        assert len(answered) == 1
        refusal = _answer_within(answered[0], 30)
        assert refusal is not None and refusal.startswith(b"HTTP/1.1 503")
        assert b"holding too many request bodies" in refusal
        survivor = next(upload for upload in uploads if upload is not answered[0])
        survivor.sendall(body[first_part:])
        answer = _answer_within(survivor, 30)
        assert (
            answer is not None
            and answer.startswith(b"HTTP/1.1 200")
            and answer.endswith(b"%d" % (len(body) - 12))
        )
        for upload in uploads:
            upload.close()
        # Everything counted in was counted out: a body near the budget on its own still fits.
        assert requests.post(f"{running.url}/d/size", data=body, timeout=30).json() == len(body) - 12
    finally:
        running.stop()


def _answer_within(sock: socket.socket, seconds: float) -> bytes | None:
    """The first answer on ``sock`` (headers and body as one), or ``None`` if none came in time."""
    sock.settimeout(seconds)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return data or None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return head + b"\r\n\r\n" + rest
    except TimeoutError:
        return None


def test_many_pipelined_posts_offering_h2c_in_one_read_are_each_answered(server: Server) -> None:
    """Each is read again without its Upgrade in a loop (it recursed once per request: a few
    thousand in one read were a RecursionError and a reset connection, none answered)."""
    count = 4000
    one = request("POST", "/d/none", headers="Connection: Upgrade\r\nUpgrade: h2c\r\n")
    with Client(server) as client:
        client.send(one * count)
        statuses = {client.read().status for _ in range(count)}
        assert statuses == {404}
        client.send(request("GET", "/healthz"))
        assert client.read().json() == {"ok": True}


def test_a_lone_surrogate_read_from_a_request_is_echoed_as_its_escape(server: Server) -> None:
    # JSON allows "\ud800" (RFC 8259 8.2 leaves its meaning open); Cortex read it with Python's
    # json and answered it escaped. Echoed back, it was a 500 blaming the predictor.
    body = b'{"words": ["a\\ud800", "\\udfffb", "ok"]}'
    answer = requests.post(
        f"{server.url}/d/words", data=body, headers={"Accept": "application/x-ndjson"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert [json.loads(line) for line in answer.content.splitlines()] == ["a\ud800", "\udfffb", "ok"]


def test_an_integer_beyond_64_bits_reaches_the_predictor_as_written(server: Server) -> None:
    # orjson read it as a float, its digits lost: 123456789012345678901234 reached the predictor
    # as 1.2345678901234569e+23 (Cortex's Flask read it with Python's json, as written)
    body = b'{"words": [123456789012345678901234, 18446744073709551616, -9223372036854775809, 0.5]}'
    answer = requests.post(
        f"{server.url}/d/words", data=body, headers={"Accept": "application/x-ndjson"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.content.splitlines() == [
        b"123456789012345678901234",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"0.5",
    ]
