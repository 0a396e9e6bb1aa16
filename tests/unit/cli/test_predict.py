"""`inferd predict` checks its sample before it asks the operator anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from inferd.cli.main import cli


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(b"petal_length=1.4", "line 1 column 1", id="text"),
        pytest.param(b"", "empty document", id="empty"),
        pytest.param(b'{"a": 1', "", id="cut-short"),
    ],
)
def test_a_sample_that_is_not_json_is_named_as_the_mistake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, reason: str
) -> None:
    # No operator runs in this home: the sample is refused before one is needed.
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    sample = tmp_path / "sample.json"
    sample.write_bytes(content)
    result = CliRunner().invoke(cli, ["predict", "classifier", str(sample)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {sample} is not JSON (")
    assert reason in result.output
    assert result.output.endswith("): a sample is a JSON request body\n")
    assert result.output.count("\n") == 1


def test_a_sample_that_is_not_utf8_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A review saved as Latin-1 ("café"): was "is not JSON (str is not valid UTF-8: surrogates
    not allowed: line 1 column 1 (char 0))", no surrogate in it and not at column 1."""
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    sample = tmp_path / "sample.json"
    sample.write_bytes('{"review": "café"}'.encode("latin-1"))
    result = CliRunner().invoke(cli, ["predict", "classifier", str(sample)])
    assert result.exit_code == 2
    assert result.output == (
        f"error: {sample} is not UTF-8 text (byte 0xe9 at offset 15): a sample is a JSON request "
        "body, sent as UTF-8\n"
    )


def test_a_sample_with_nan_is_sent_as_the_apis_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # json.dumps writes NaN for a missing value; the APIs read it (Cortex's Flask did), so the
    # sample goes on to the operator (none runs in this home: that is the error here).
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    sample = tmp_path / "sample.json"
    sample.write_text('{"sepal_length": 5.2, "sepal_width": NaN, "petal_length": Infinity}')
    result = CliRunner().invoke(cli, ["predict", "classifier", str(sample)])
    assert "is not JSON" not in result.output
    assert "operator is not running" in result.output and result.exit_code == 1


def test_a_sample_read_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # was: "Invalid value for 'SAMPLE': File '-' does not exist" (`... | inferd predict API -`)
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    bad = CliRunner().invoke(cli, ["predict", "classifier", "-"], input=b'{"a": 1')
    assert bad.exit_code == 2
    assert bad.output.startswith("error: stdin is not JSON (")
    good = CliRunner().invoke(cli, ["predict", "classifier", "-"], input=b'{"a": 1}')
    assert "operator is not running" in good.output and good.exit_code == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.2", "[::1]"])
def test_a_sample_to_a_gateway_on_this_machine_never_goes_through_a_proxy(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    # INFERD_HOST=0.0.0.0 makes the gateway's URL http://0.0.0.0:PORT: with http_proxy set,
    # `inferd predict` sent the sample, and the API key, to the proxy (which failed it).
    import contextlib
    import http.server
    import socket
    import threading

    from inferd.cli.api_http import post_sample

    family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
    if family == socket.AF_INET6:
        try:  # a kernel or container without IPv6 (no socket, or no ::1 on its loopback)
            with socket.socket(family) as probe:
                probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 here")

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.HTTPServer):
        address_family = family

    proxied: list[bytes] = []
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(4)
        for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.getsockname()[1]}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        with Server(("::1" if family == socket.AF_INET6 else host, 0), Answer) as server:
            threading.Thread(target=server.handle_request, daemon=True).start()
            url = f"http://{host}:{server.server_address[1]}/d/api"
            proxy.settimeout(0.01)
            try:
                answer = post_sample(url, b'{"x": 1}', timeout=2, key="secret")
            finally:
                with contextlib.suppress(OSError), proxy.accept()[0] as asked:
                    proxied.append(asked.recv(4096))
    assert proxied == [] and answer.status_code == 200 and answer.content == b'{"x": 1}'


def predict_with_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str) -> Result:
    """``inferd predict classifier sample.json --key KEY`` with no operator running."""
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    sample = tmp_path / "sample.json"
    sample.write_text("{}")
    return CliRunner().invoke(cli, ["predict", "classifier", str(sample), "--key", key], prog_name="inferd")


@pytest.mark.parametrize("key", ["a\nb", "a\rb", "\tkey", "k\x00", "k\udcff"])
def test_a_key_holding_a_control_character_is_refused_before_the_operator_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    # was "cannot reach http://...: Invalid leading whitespace, reserved character(s), or return
    # character(s) in header value" (exit 1), after the API was looked up
    result = predict_with_key(tmp_path, monkeypatch, key)
    assert result.exit_code == 2, result.output
    assert result.output == (
        "error: Invalid value for '--key': an API key is one line of text, without control characters "
        "(a line break, a tab) (see `inferd predict --help`)\n"
    )


@pytest.mark.parametrize("key", ["a\u00a0b", "key\u200b", "cl\u00e9\u20ac"])
def test_a_key_the_gateway_takes_is_not_refused_for_a_character_that_is_no_control(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    # A key of a keys_file with a no-break space or a zero-width space (pasted from a web page)
    # is a key the gateway takes, sent as UTF-8; it was refused as holding a control character.
    result = predict_with_key(tmp_path, monkeypatch, key)
    assert "'--key'" not in result.output
    assert "operator is not running" in result.output and result.exit_code == 1


def test_a_key_outside_latin_1_is_sent_as_utf_8() -> None:
    # was a UnicodeEncodeError traceback (requests encodes a str header in Latin-1); the gateway
    # reads its keys (keys_file, keys_from_env) as UTF-8, as curl sends them
    import http.server
    import threading

    from inferd.cli.api_http import post_sample

    got: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.headers["Authorization"].encode("latin-1"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        answer = post_sample(f"http://127.0.0.1:{server.server_port}/d/a", b"{}", key="clé€", local=True)
        assert answer.status_code == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert got == ["Bearer clé€".encode()]


def test_an_api_that_failed_to_start_on_ray_is_said_as_locally() -> None:
    # Serve's proxy answers for a Ray API whose replicas failed to start, in its own words
    # (`inferd predict -e` printed them); the line now is the local gateway's, with the reason.
    import requests

    from inferd.cli.predict import _print_answer
    from inferd.errors import InferdError

    response = requests.Response()
    response.status_code = 503
    response._content = b"Deployment(name='inferd', app='broken') is unavailable because it failed to deploy."
    why = "init in predictor.py failed: RuntimeError: cannot load the weights"
    with pytest.raises(InferdError) as raised:
        _print_answer("broken", response, why)
    assert str(raised.value) == f"api 'broken' is not ready: {why} (503)"
    response._content = (
        b'{"error": "api \'broken\' is overloaded (9 requests waiting)"}'  # inferd's own: kept
    )
    with pytest.raises(InferdError) as raised:
        _print_answer("broken", response, why)
    assert str(raised.value) == "api 'broken' is overloaded (9 requests waiting) (503)"
