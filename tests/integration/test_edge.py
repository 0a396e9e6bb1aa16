"""The HTTP edge against hostile and mistaken clients: every limit decided before it costs much.

Each test starts its own `inferd serve` (those that need only the default limits share one) and
talks raw HTTP/1.1 over loopback sockets where a well-behaved library would hide the attack.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from inferd.engine.state import rss_bytes
from tests.conftest import INFERD, Server, make_project, wait_for
from tests.integration.conftest import Inferd, free_port

Serve = Callable[..., Server]
ROWS = [[5.2, 3.6, 1.4, 0.3]]
MiB = 1024 * 1024


def iris(root: Path, model: Path, extra: str = "", files: dict[str, str] | None = None) -> Path:
    return make_project(
        root,
        "- kind: deployment\n  name: d\n- kind: api\n  name: iris\n  onnx:\n    model: m.onnx\n" + extra,
        files,
        {"m.onnx": model},
    )


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def answer_of(sock: socket.socket, timeout: float = 10) -> tuple[int, bytes]:
    """Read one response (status, whole bytes read until EOF or the end of its body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data


def closed_by_server(sock: socket.socket) -> bool:
    try:
        sock.setblocking(False)
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, iris_onnx_model: Path) -> Iterator[Server]:
    """A server with the default limits, shared by the tests that leave it as they found it."""
    root = tmp_path_factory.mktemp("plain")
    server = Server(iris(root / "p", iris_onnx_model), root / "serve.log").wait_ready()
    yield server
    server.stop()


def test_a_megabyte_of_headers_is_431_and_the_server_keeps_serving(plain: Server) -> None:
    server = plain
    many = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(1024))
    heads = (
        b"POST /d/iris HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n",  # many headers
        b"POST /d/iris HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MiB + b"\r\n\r\n",  # one huge value
        b"GET /" + b"a" * MiB + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a huge request line
    )
    for head in heads:
        with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
            sock.sendall(head)  # never reset: the rest is read and dropped after the answer
            # a server that read on for the end of the head would never answer: answer_of's read
            # timeout fails the test then
            status, data = answer_of(sock)
            assert status == 431, data[:200]
            assert b"Connection: close" in data
    assert server.post("/d/iris", ROWS).status_code == 200


def test_a_trailing_slash_is_taken_on_every_route_as_on_an_api_s_endpoint(plain: Server) -> None:
    # was: POST /d/iris/ answered, but GET /healthz/ (a probe written with a slash) was a 404
    for path in ("/healthz/", "/metrics/", "/openapi.json/", "/docs/", "/d/iris/"):
        assert requests.get(plain.url + path, timeout=10).status_code == 200, path
    assert requests.get(plain.url + "/docs/", timeout=10).headers["Content-Type"].startswith("text/html")
    assert requests.get(plain.url + "/openapi.json/", timeout=10).json()["openapi"].startswith("3.")
    assert plain.post("/d/iris/", ROWS).status_code == 200
    assert requests.post(plain.url + "/healthz/", timeout=10).status_code == 405


def test_the_header_limit_is_exact_however_the_head_arrives(plain: Server) -> None:
    """README: request line + headers larger than 65536 bytes are a 431. A head that ended in
    the read that crossed the limit used to pass (100,000 bytes sent at once got a 200)."""

    def head(size: int) -> bytes:
        start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
        return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"

    for size, status in ((65536, 200), (65537, 431), (100_000, 431)):
        request = head(size)
        assert len(request) == size
        with socket.create_connection(("127.0.0.1", port_of(plain))) as sock:
            sock.sendall(request)
            got, data = answer_of(sock)
            assert got == status, (size, data[:200])
    assert plain.post("/d/iris", ROWS).status_code == 200


def test_a_huge_content_length_is_413_at_once_and_never_read(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path
) -> None:
    server = serve(iris(tmp_path / "p", iris_onnx_model, "  max_body_size: 1Ki\n"), "--access-log")
    port = port_of(server)
    for length in (1073741824, 2048):  # past the default limit; past this API's 1 KiB
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /d/iris HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length)
            status, data = answer_of(sock)
            assert status == 413, data
            assert b"larger than 1024 bytes" in data
    # V2 and TF Serving routes know their API's limit as early
    for path in (b"/v2/models/iris/infer", b"/v1/models/iris:predict"):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n" % path)
            assert answer_of(sock)[0] == 413
    # a chunked body is counted as it arrives
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /d/iris HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"800\r\n" + b"[" * 2048 + b"\r\n")
        assert answer_of(sock)[0] == 413
    # an honest client sending a too-large body sees the 413, not a reset
    answer = requests.post(f"{server.url}/d/iris", data=b"[" * 200_000, timeout=10)
    assert answer.status_code == 413
    # behind a request on the same connection, answered in its turn
    with socket.create_connection(("127.0.0.1", port)) as sock:
        small = json.dumps(ROWS).encode()
        sock.sendall(
            b"POST /d/iris HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(small), small)
            + b"POST /d/iris HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n"
            + b"[" * 2048
        )
        sock.settimeout(10)
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 413" in data, data
    assert server.post("/d/iris", ROWS).status_code == 200
    # so are a coded body (415) and a transfer coding other than chunked (501), refused as early
    for rest, status in (
        (b"Content-Encoding: gzip\r\nContent-Length: 2\r\n\r\n[]", 415),
        (b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n", 501),
    ):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /d/iris HTTP/1.1\r\nHost: x\r\n" + rest)
            assert answer_of(sock)[0] == status
    # a method the API's route does not take (405) is one of its requests too (it was not counted)
    assert requests.put(f"{server.url}/d/iris", json=ROWS, timeout=10).status_code == 405
    # each refusal is one of the API's requests, by protocol (it was missing from /metrics)
    families = {f.name: f for f in text_string_to_metric_families(requests.get(f"{server.url}/metrics").text)}
    counts = {
        (s.labels["protocol"], s.labels["code"]): s.value
        for s in families["inferd_requests"].samples
        if s.name == "inferd_requests_total" and s.labels["api"] == "iris" and s.value  # not the 0s
    }
    assert counts == {
        ("cortex", "413"): 5,
        ("v2", "413"): 1,
        ("tfserving", "413"): 1,
        ("cortex", "200"): 2,
        ("cortex", "415"): 1,
        ("cortex", "501"): 1,
        ("cortex", "405"): 1,
    }
    # and a line of the access log each

    def refused() -> list[int] | None:
        lines = [json.loads(line) for line in server.log().splitlines() if line.startswith('{"time"')]
        statuses = sorted(line["status"] for line in lines if line["status"] != 200)
        return statuses if len(statuses) >= 10 else None

    assert wait_for(refused, 10, "the refusals' access lines") == [405] + [413] * 7 + [415, 501]


def test_a_missing_key_is_refused_when_the_headers_end(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_KEY", "edge-secret")
    server = serve(iris(tmp_path / "p", iris_onnx_model, "  auth:\n    keys_from_env: [EDGE_KEY]\n"))
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        sock.sendall(b"POST /d/iris HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        status, answer = answer_of(sock)  # answered with no body byte sent
    # a 401 says which scheme it takes (RFC 9110 11.6.1: it must); Bearer: no browser login dialog
    assert status == 401 and b'\r\nWWW-Authenticate: Bearer realm="inferd"\r\n' in answer, answer
    key = {"X-API-Key": "edge-secret"}
    assert server.post("/d/iris", ROWS, headers=key).status_code == 200
    # An answer to HEAD has no body (RFC 9112 6.3), refused when the headers end too (curl -I
    # said "Excess found"; on a connection the client kept, the bytes would be the next answer's).
    for given, refused in ((b"", 401), (b"X-API-Key: wrong\r\n", 403)):
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as sock:
            sock.sendall(b"HEAD /d/iris HTTP/1.1\r\nHost: x\r\n" + given + b"\r\n")
            status, answer = answer_of(sock)
            while chunk := sock.recv(65536):  # the connection closes after it
                answer += chunk
        assert status == refused and answer.endswith(b"\r\n\r\n"), answer
        assert b"\r\nContent-Length: " in answer  # the length a GET's answer would have


def test_a_key_refused_when_the_headers_end_is_answered_as_its_own_request(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a keep-alive connection, the 401 names the refused request (its X-Request-ID, its path
    in the access log), not the one answered before it, and carries none of that one's headers."""
    monkeypatch.setenv("EDGE_KEY", "edge-secret")
    server = serve(
        iris(tmp_path / "p", iris_onnx_model, "  auth:\n    keys_from_env: [EDGE_KEY]\n"), "--access-log"
    )
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as sock:
        sock.sendall(
            b"POST /d/iris HTTP/1.1\r\nHost: x\r\nX-API-Key: edge-secret\r\nX-Request-ID: first\r\n"
            b"traceparent: " + trace.encode() + b"\r\nContent-Length: 19\r\n\r\n[[5.2,3.6,1.4,0.3]]"
        )
        data = b""
        while b"[[0]," not in data:  # the whole first answer (setosa), before the next request
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"X-Request-ID: first\r\n" in data
        sock.sendall(
            b"POST /d/iris/ HTTP/1.1\r\nHost: x\r\nX-Request-ID: second\r\nContent-Length: 100000\r\n\r\n"
        )
        status, refused = answer_of(sock)
    assert status == 401 and b"X-Request-ID: second\r\n" in refused and b"\r\ntraceparent:" not in refused

    def logged() -> list[dict[str, Any]] | None:
        lines = [json.loads(line) for line in server.log().splitlines() if line.startswith('{"time"')]
        return [line for line in lines if line["status"] == 401] or None

    (line,) = wait_for(logged, 10, "the 401's access line")
    assert (line["id"], line["route"], line["trace_id"]) == ("second", "/d/iris/", None)


def test_cors_preflight_and_protected_apis_hidden_from_listings(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_KEY", "edge-secret")
    root = iris(
        tmp_path / "p",
        iris_onnx_model,
        "  auth:\n    keys_from_env: [EDGE_KEY]\n- kind: api\n  name: open\n  onnx:\n    model: m.onnx\n",
    )
    server = serve(root)
    preflight = requests.options(
        f"{server.url}/d/iris",
        headers={
            "Origin": "http://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=5,
    )
    assert preflight.status_code == 204
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert len(preflight.raw.headers.getlist("Access-Control-Allow-Headers")) == 1
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert requests.options(f"{server.url}/v2/models/iris/infer", timeout=5).status_code == 204
    key = {"X-API-Key": "edge-secret"}
    for path, hidden in (
        ("/", lambda body: [api["name"] for api in body["apis"]]),
        ("/v2/models", lambda body: body["models"]),
        ("/v1/models", lambda body: body["models"]),
        ("/openapi.json", lambda body: " ".join(body["paths"])),
    ):
        anonymous = requests.get(server.url + path, timeout=5).json()
        assert "iris" not in hidden(anonymous) and "open" in hidden(anonymous), path
        assert "iris" in hidden(requests.get(server.url + path, headers=key, timeout=5).json()), path
    # a client generated from the document (or Swagger UI's Authorize) knows to send the key
    document = requests.get(f"{server.url}/openapi.json", headers=key, timeout=5).json()
    validate(document)
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer"}
    for method in ("post", "get"):
        operation = document["paths"]["/d/iris"][method]
        assert operation["security"] == [{"bearer": []}, {"apiKey": []}]
        assert {"401", "403"} <= set(operation["responses"])
        assert "security" not in document["paths"]["/d/open"][method]


def test_half_sent_requests_are_closed_after_the_header_timeout(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path
) -> None:
    server = serve(iris(tmp_path / "p", iris_onnx_model), "--header-timeout", "1")
    port = port_of(server)
    attackers = []
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /d/iris HTT")
        attackers.append(sock)
    silent = socket.create_connection(("127.0.0.1", port))  # connects and sends nothing
    slow_body = socket.create_connection(("127.0.0.1", port))
    slow_body.sendall(b"POST /d/iris HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[[")
    with requests.Session() as good:
        statuses = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses.add(good.post(f"{server.url}/d/iris", json=ROWS, timeout=10).status_code)
            if all(closed_by_server(sock) for sock in [*attackers, silent, slow_body]):
                break
            time.sleep(0.05)
        assert all(closed_by_server(sock) for sock in [*attackers, silent, slow_body])
        assert statuses == {200}
    for sock in [*attackers, silent, slow_body]:
        sock.close()


def test_a_body_dripped_slower_than_a_kilobyte_a_second_is_closed(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path
) -> None:
    server = serve(iris(tmp_path / "p", iris_onnx_model), "--header-timeout", "1")
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        sock.sendall(b"POST /d/iris HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        deadline = time.monotonic() + 30
        while not closed_by_server(sock):  # one byte every 0.3 s: never a pause of a second
            assert time.monotonic() < deadline, "the dripping body still held its connection after 30 s"
            with contextlib.suppress(OSError):
                sock.sendall(b" ")
            time.sleep(0.3)
    assert requests.post(f"{server.url}/d/iris", json=ROWS, timeout=10).status_code == 200


def test_a_body_that_stops_arriving_is_answered_408_before_the_close(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """RFC 9110 15.5.9. The connection was closed without an answer: behind a proxy that passes
    a body on as it comes (haproxy's default, nginx's ``proxy_request_buffering off``) the client
    got the proxy's 502 Bad Gateway, counted against the server; now the proxy passes the 408 on.
    A connection that sent nothing, or half a head, is still closed without one."""
    server = serve(iris(tmp_path / "p", iris_onnx_model), "--header-timeout", "1")
    port = port_of(server)
    with (
        socket.create_connection(("127.0.0.1", port)) as stalled,
        socket.create_connection(("127.0.0.1", port)) as dripping,
        socket.create_connection(("127.0.0.1", port)) as half_head,
    ):
        stalled.sendall(
            b"POST /d/iris HTTP/1.1\r\nHost: x\r\nX-Request-ID: up-1\r\nContent-Length: 100\r\n\r\n[["
        )
        dripping.sendall(b"POST /d/iris HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        half_head.sendall(b"POST /d/iris HTT")
        for _ in range(6):  # one byte every 0.3 s: never a pause of a second, but far below 1 KiB/s
            with contextlib.suppress(OSError):
                dripping.sendall(b" ")
            time.sleep(0.3)
        for sock in (stalled, dripping):
            sock.settimeout(30)
            data = b""
            while chunk := sock.recv(65536):  # until the close
                data += chunk
            assert data.startswith(b"HTTP/1.1 408 "), data
            assert b"Connection: close\r\n" in data and b"did not arrive in time" in data
            assert (b"X-Request-ID: up-1\r\n" in data) == (sock is stalled)  # its own id, as any answer
        assert answer_of(half_head, 30) == (0, b"")
    assert requests.post(f"{server.url}/d/iris", json=ROWS, timeout=10).status_code == 200


# Answers once the file the sample names exists (30 s at most): a request held at its replica.
HOLD = """
import os, time
def predict(sample, metadata):
    deadline = time.monotonic() + 30
    while not os.path.exists(sample["until"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "done"
"""


@pytest.fixture(scope="module")
def held_back(tmp_path_factory: pytest.TempPathFactory, iris_onnx_model: Path) -> Iterator[Server]:
    """A 2 s header timeout, an API that answers when told (``HOLD``), iris's bodies to 1 KiB."""
    root = tmp_path_factory.mktemp("held")
    extra = "  max_body_size: 1Ki\n- kind: api\n  name: hold\n  predictor:\n    path: hold.py\n"
    project = iris(root / "p", iris_onnx_model, extra, {"hold.py": HOLD})
    server = Server(project, root / "serve.log", "--header-timeout", "2").wait_ready()
    yield server
    server.stop()


def held_request(until: Path) -> bytes:
    """A request its replica answers once ``until`` exists."""
    held = json.dumps({"until": str(until)}).encode()
    return b"POST /d/hold HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(held), held)


def read_until(sock: socket.socket, data: bytes, end: bytes) -> bytes:
    """``data`` and what comes after it, until it holds ``end`` (fails at the close)."""
    while end not in data:
        chunk = sock.recv(65536)
        assert chunk, data  # closed
        data += chunk
    return data


def test_a_body_waiting_for_its_100_continue_is_not_timed_out(held_back: Server, tmp_path: Path) -> None:
    """A request behind an unanswered one waits for its ``100 Continue`` until that one's answer
    is written: the gateway holds its body back, not the client. The sweep timed its body from the
    head's end: with a prediction longer than the header timeout before it, the waiting request
    was a 408 and the connection closed, the earlier answer with it; once the 100 came, the body's
    clock still counted from the head (a 408 after a pause any body may take)."""
    until = tmp_path / "until"
    body = json.dumps(ROWS).encode()
    with socket.create_connection(("127.0.0.1", port_of(held_back))) as sock:
        sock.settimeout(30)
        sock.sendall(
            held_request(until)
            + b"POST /d/iris HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
            % len(body)
        )
        time.sleep(3.5)  # past the header timeout and the sweeps after it: the first still runs
        until.touch()
        data = read_until(sock, b"", b"HTTP/1.1 100 Continue\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200 ") and b'"done"' in data, data
        time.sleep(1.5)  # a pause within the header timeout, with a sweep in it
        sock.sendall(body)
        data = read_until(sock, data[data.index(b"100 Continue\r\n\r\n") + 16 :], b"]]")
        assert data.startswith(b"HTTP/1.1 200 "), data


def test_a_body_over_the_limit_behind_another_request_is_413_however_long_it_takes(
    held_back: Server, tmp_path: Path
) -> None:
    """A body past its API's limit behind an unanswered request is read and dropped, its 413 owed
    after the earlier answer. Its bytes did not count as arriving: at 40 KB/s, the sweep took it
    for a stalled body after the header timeout (a 408, then the close, the earlier answer lost)."""
    until = tmp_path / "until"
    size = 200_000
    with socket.create_connection(("127.0.0.1", port_of(held_back))) as sock:
        sock.settimeout(30)
        sock.sendall(
            held_request(until) + b"POST /d/iris HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
        )
        for _ in range(size // 10_000):  # 5 s, past the header timeout, never a pause of a second
            sock.sendall(b" " * 10_000)
            time.sleep(0.25)
        until.touch()
        data = read_until(sock, b"", b'"done"')
        assert data.startswith(b"HTTP/1.1 200 "), data
        data = read_until(sock, data[data.index(b'"done"') + 6 :], b"larger than 1024 bytes")
        assert data.startswith(b"HTTP/1.1 413 "), data


def test_an_idle_keep_alive_connection_is_closed(serve: Serve, tmp_path: Path, iris_onnx_model: Path) -> None:
    server = serve(iris(tmp_path / "p", iris_onnx_model), "--keepalive-timeout", "1")
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer_of(sock)[0] == 200
        wait_for(lambda: closed_by_server(sock), 15, "the idle connection to be closed")


def server_side(port: int, client_port: int) -> str | None:
    """The TCP state (``/proc/net/tcp``'s hex code) of the gateway's end of a loopback connection."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and int(fields[2].split(":")[1], 16) == client_port:
            return fields[3]
    return None


ESTABLISHED = "01"


def test_a_client_that_never_reads_its_answer_is_cut_off_after_the_keepalive_timeout(
    serve: Serve, tmp_path: Path
) -> None:
    # A stalled reader was "closed" after the keep-alive timeout with a graceful close, which
    # waits for the unsent answer to be written: to a client that never reads, for ever. Its
    # socket and the answer's buffer stayed in the gateway as long as the client cared to hold them.
    yaml = "- kind: deployment\n  name: d\n- kind: api\n  name: big\n  predictor:\n    path: big.py\n"
    project = make_project(
        tmp_path / "p", yaml, {"big.py": "def predict(sample, metadata):\n    return 'x' * 8_000_000\n"}
    )
    server = serve(project, "--keepalive-timeout", "1")
    port = port_of(server)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"POST /d/big HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        client_port = sock.getsockname()[1]
        wait_for(lambda: server_side(port, client_port) == ESTABLISHED, 10, "the connection")
        wait_for(
            lambda: server_side(port, client_port) != ESTABLISHED, 30, "the stalled reader to be cut off"
        )
    assert requests.post(f"{server.url}/d/big", json={}, timeout=30).text == '"' + "x" * 8_000_000 + '"'


def test_accepting_pauses_at_the_connection_cap_and_resumes(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path
) -> None:
    server = serve(iris(tmp_path / "p", iris_onnx_model), "--max-connections", "20")
    port = port_of(server)
    held = []
    for _ in range(20):  # each connection is served (the cap is not below 20), and then busy:
        sock = socket.create_connection(("127.0.0.1", port))  # half a body follows the first request
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /d/iris HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[["
        )
        assert answer_of(sock)[0] == 200
        held.append(sock)
    waiting = socket.create_connection(("127.0.0.1", port))  # in the kernel's backlog
    waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    waiting.settimeout(1.0)
    with pytest.raises(TimeoutError):
        waiting.recv(100)
    for sock in held[:5]:
        sock.close()
    assert answer_of(waiting)[0] == 200  # accepted once connections closed
    for sock in [*held[5:], waiting]:
        sock.close()


def test_at_the_cap_idle_connections_make_room_for_clients_with_a_request(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # The header and keep-alive timeouts are long: only giving idle places away lets a client in.
    limits = ("--max-connections", "20", "--header-timeout", "120", "--keepalive-timeout", "120")
    server = serve(iris(tmp_path / "p", iris_onnx_model), *limits)
    port = port_of(server)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
    for sock in idle:  # answered, then idle on keep-alive
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer_of(sock)[0] == 200
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]  # never send a byte
    time.sleep(1.5)  # past the grace a silent connection is given (the only wait: nothing to poll)
    with requests.Session() as client:
        for _ in range(5):
            assert client.post(f"{server.url}/d/iris", json=ROWS, timeout=20).status_code == 200
    assert any(closed_by_server(sock) for sock in [*idle, *silent])
    for sock in [*idle, *silent]:
        sock.close()


def test_pipelined_requests_are_answered_in_order_and_bounded(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path
) -> None:
    server = serve(iris(tmp_path / "p", iris_onnx_model))
    port = port_of(server)
    body = b"[[5.2, 3.6, 1.4, 0.3]]"
    ordered = b"".join(
        b"POST /d/iris HTTP/1.1\r\nHost: x\r\nX-Request-ID: r%d\r\nContent-Length: %d\r\n\r\n%s"
        % (i, len(body), body)
        for i in range(50)
    )
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(ordered)
        sock.settimeout(30)
        data = b""
        while data.count(b"HTTP/1.1 200") < 50:
            chunk = sock.recv(65536)
            assert chunk, data[-300:]
            data += chunk
    ids = [line.split(b": ")[1] for line in data.split(b"\r\n") if line.startswith(b"X-Request-ID")]
    assert ids == [b"r%d" % i for i in range(50)]
    # many more, never read: memory stays bounded and other clients are served
    pid = server.process.pid
    flood = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 100_000
    before = rss_bytes(pid)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 20
        while sent < len(flood) and time.monotonic() < deadline:
            try:
                sent += sock.send(flood[sent : sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        assert server.post("/d/iris", ROWS).status_code == 200
        assert rss_bytes(pid) - before < 64 * MiB


def test_healthz_is_never_ready_while_an_api_would_be_404(
    tmp_path: Path, iris_onnx_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    root = iris(  # a handler (defining neither hook): requirements.txt is installed for it
        tmp_path / "p",
        iris_onnx_model,
        extra="    request_handler: h.py\n",
        files={"requirements.txt": "# nothing to install\n", "h.py": ""},
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(INFERD), "serve", str(root), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = requests.get(f"{url}/healthz", timeout=5).status_code
                ready = requests.get(f"{url}/v2/health/ready", timeout=5).status_code
                predict = requests.post(f"{url}/d/iris", json=ROWS, timeout=10).status_code
            except requests.ConnectionError:  # not listening yet
                time.sleep(0.02)  # not a busy loop: it took CPU from the server it waited for
                continue
            seen.append((health, ready, predict))
            if health == 200:
                break
            time.sleep(0.02)
        assert seen and seen[-1][0] == 200, seen[-5:]
        assert all(predict == 200 for health, ready, predict in seen if 200 in (health, ready))
        assert "installing requirements.txt" in (tmp_path / "serve.log").read_text()
    finally:
        process.terminate()
        process.wait(60)
        log.close()
    # Served again, its requirements installed already: it does not say it installs them (it did
    # each time).
    with (tmp_path / "again.log").open("wb") as log:
        process = subprocess.Popen(
            [str(INFERD), "serve", str(root), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for(lambda: _answers(f"{url}/healthz"), 120, "the project served again")
        finally:
            process.terminate()
            process.wait(60)
    said = (tmp_path / "again.log").read_text()
    assert "serving deployment" in said and "installing requirements.txt" not in said, said


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def test_deep_nesting_is_400_on_every_route(plain: Server) -> None:
    server = plain
    for depth in (900, 5000):
        nested = b"[" * depth + b"]" * depth
        for path, body in (
            ("/d/iris", nested),
            ("/v1/models/iris:predict", b'{"instances": ' + nested + b"}"),
            ("/v1/models/iris:predict", b'{"inputs": ' + nested + b"}"),
            ("/v2/models/iris/infer", b'{"inputs": [{"name": "input", "data": ' + nested + b"}]}"),
        ):
            answer = server.post(path, data=body)
            assert answer.status_code == 400, (path, depth, answer.text)
    assert server.post("/v1/models/iris:predict", {"instances": ROWS}).status_code == 200


@contextlib.contextmanager
def recording_proxy(inferd: Inferd) -> Iterator[list[bytes]]:
    """An HTTP proxy in the CLI's environment (http_proxy, all_proxy) that answers nothing and
    keeps the first bytes of each request it gets (a replica's libraries may try the internet)."""
    seen: list[bytes] = []
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(16)
        proxy.settimeout(0.2)
        stop = threading.Event()

        def record() -> None:
            while not stop.is_set():
                try:
                    conn, _ = proxy.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(2)
                    with contextlib.suppress(OSError):
                        seen.append(conn.recv(4096))

        watcher = threading.Thread(target=record)
        watcher.start()
        for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            inferd.env[name] = f"http://127.0.0.1:{proxy.getsockname()[1]}"
        for name in ("no_proxy", "NO_PROXY"):
            inferd.env.pop(name, None)
        try:
            yield seen
        finally:
            stop.set()
            watcher.join()


def test_loopback_admin_calls_never_go_through_a_proxy(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    with recording_proxy(inferd) as seen:
        root = iris(tmp_path / "p", iris_onnx_model)
        (tmp_path / "sample.json").write_text("[[5.2, 3.6, 1.4, 0.3]]")
        inferd.run("deploy", str(root))
        inferd.wait_status("iris", "live")
        assert inferd.run("predict", "iris", str(tmp_path / "sample.json")).returncode == 0
    token = (inferd.home / "token").read_bytes().strip()
    for request in seen:  # the admin API and the gateway are never asked through the proxy
        assert b"127.0.0.1" not in request and b"localhost" not in request and token not in request, request


def test_a_sample_to_the_gateway_at_this_machine_s_hostname_never_goes_through_a_proxy(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # INFERD_HOST set to this machine's name: `inferd predict` sent the sample and the key to
    # http_proxy (only addresses were known to be this machine's), which failed the request.
    host = socket.gethostname()
    try:  # a name the gateway can listen on here (a container's may name no address of its own)
        with socket.socket() as probe:
            probe.bind((host, 0))
    except OSError:  # then another name for this machine that no address check knew: 127.1
        host = "127.1"
    inferd.env["INFERD_HOST"] = host
    with recording_proxy(inferd) as seen:
        keys = {"secrets/keys.txt": "the-key\n"}
        root = iris(tmp_path / "p", iris_onnx_model, "  auth:\n    keys_file: secrets/keys.txt\n", keys)
        (tmp_path / "sample.json").write_text("[[5.2, 3.6, 1.4, 0.3]]")
        inferd.run("deploy", str(root))
        inferd.wait_status("iris", "live")
        sample = str(tmp_path / "sample.json")
        said = inferd.run("predict", "iris", sample, "--key", "the-key", check=False)
    assert not [request for request in seen if b"the-key" in request or host.encode() in request], seen
    assert said.returncode == 0, said.stdout + said.stderr


def test_a_keys_file_is_never_copied_into_the_snapshot(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    root = iris(
        tmp_path / "p",
        iris_onnx_model,
        "  auth:\n    keys_file: secrets/keys.txt\n",
        {"secrets/keys.txt": "first-key\n"},
    )
    inferd.run("deploy", str(root))
    inferd.wait_status("iris", "live")
    url = f"{inferd.url}/d/iris"
    assert requests.post(url, json=ROWS, headers={"X-API-Key": "first-key"}, timeout=10).status_code == 200
    copied = [path for path in (inferd.home / "projects").rglob("*") if path.is_file()]
    assert copied and not [path for path in copied if b"first-key" in path.read_bytes()]
    (root / "secrets" / "keys.txt").write_text("second-key\n")  # rotated: the next deploy reads it
    inferd.run("deploy", str(root))
    assert requests.post(url, json=ROWS, headers={"X-API-Key": "second-key"}, timeout=10).status_code == 200
    assert requests.post(url, json=ROWS, headers={"X-API-Key": "first-key"}, timeout=10).status_code == 403
