"""Property-based fuzzing of the operator's admin API as an authenticated client: malformed
bodies and query values are a 4XX with a message, never a 500; the operator keeps serving and
its state on disk is unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import Inferd, stop_operator


class Admin:
    def __init__(self, runner: Inferd) -> None:
        self.runner = runner
        port = json.loads((runner.home / "operator.json").read_text())["admin_port"]
        self.url = f"http://127.0.0.1:{port}"
        self.session = requests.Session()
        self.session.trust_env = False  # a loopback client ignores proxy settings
        self.session.headers["Authorization"] = f"Bearer {(runner.home / 'token').read_text().strip()}"

    def state(self) -> bytes:
        path = self.runner.home / "state.json"
        return path.read_bytes() if path.exists() else b""

    def check(self, answer: requests.Response) -> None:
        """A 2XX, or a 4XX whose body names the error in one line; the operator still answers."""
        assert answer.status_code < 500, (answer.request.url, answer.text[:300])
        if answer.status_code >= 400:
            error = answer.json()["error"]
            assert error and "\n" not in error, error
        assert self.session.get(self.url + "/info", timeout=30).status_code == 200


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    runner = Inferd(tmp_path_factory.mktemp("admin-fuzz") / "home")
    try:
        runner.run("up")
        logs = runner.home / "logs" / "gone"
        logs.mkdir(parents=True, exist_ok=True)
        (logs / "api.log").write_text("2026-01-01 00:00:00 a line\n")  # a deleted API's log
        client = Admin(runner)
        yield client
        client.session.close()
    finally:
        stop_operator(runner)


_QUERY = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        ["", "-1", "0", "1e400", "nan", "inf", "9" * 25, "1:2", "1:-1", "-1:0", "1:2:3", ":", "x:y"]
    ),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        ["", "/", "/nonexistent", "/etc/passwd", "/dev/zero", ".", "..", "nope/nope", "x" * 3000]
    ),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=4,
)
_KEYS = ["path", "force", "refresh", "environ", "replace", "relax_pins", "splitter", "api", "judged", "name"]
_BODIES = st.one_of(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=4), _VALUES)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(["gone/api", "gone/api", "nope"]),
    st.none() | _QUERY,
    st.none() | _QUERY,
    st.none() | _QUERY,
)
def test_odd_log_queries_are_a_4xx_and_change_nothing(
    admin: Admin, name: str, tail: str | None, since: str | None, cursor: str | None
) -> None:
    before = admin.state()
    given_values = {"tail": tail, "since": since, "cursor": cursor}
    query = {key: value for key, value in given_values.items() if value is not None}
    admin.check(admin.session.get(f"{admin.url}/logs/{name}", params=query, timeout=30))
    assert admin.state() == before


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["/deploy", "/promote", "/delete"]), _BODIES)
def test_odd_bodies_are_a_4xx_and_change_nothing(admin: Admin, path: str, body: Any) -> None:
    before = admin.state()
    admin.check(admin.session.post(admin.url + path, data=json.dumps(body), timeout=60))
    assert admin.state() == before


@pytest.mark.parametrize("cursor", ["x", ":", "1:2:3", "5:-1", "-5:3"])
def test_a_malformed_log_cursor_is_400(admin: Admin, cursor: str) -> None:
    # was a 500, "operator error: ValueError: invalid literal for int() with base 10"
    answer = admin.session.get(f"{admin.url}/logs/gone/api", params={"cursor": cursor}, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json() == {
        "error": "'cursor' must be INODE:OFFSET (two whole numbers, as an earlier answer gave it)",
        "type": "InputError",
    }


def test_a_log_cursor_an_answer_gave_reads_on(admin: Admin, tmp_path: Path) -> None:
    first = admin.session.get(f"{admin.url}/logs/gone/api", params={"tail": "5"}, timeout=30).json()
    assert first["text"] == "2026-01-01 00:00:00 a line\n"
    again = admin.session.get(f"{admin.url}/logs/gone/api", params={"cursor": first["cursor"]}, timeout=30)
    assert again.status_code == 200 and again.json()["text"] == ""


@pytest.mark.parametrize("route", ["/apis/", "/logs/", "/logs/gone/"])
@pytest.mark.parametrize("name", ["a\nb", "x" * 3000])
def test_a_name_no_api_has_is_quoted_in_one_short_line(admin: Admin, route: str, name: str) -> None:
    # was the name as sent: a line break split the error, and 3,000 characters of it made the sentence
    answer = admin.session.get(admin.url + route + quote(name, safe=""), timeout=30)
    assert answer.status_code == 404, answer.text
    error = answer.json()["error"]
    assert "\n" not in error and len(error) < 120, error[:200]


@pytest.mark.parametrize("value", [5, None, ["x"], {"a": "b"}, True])
def test_a_deploy_whose_environ_holds_a_value_that_is_not_text_is_400(admin: Admin, value: Any) -> None:
    # was stored as its Python text ("5", "None", "['x']") as the value of an API key's variable
    answer = admin.session.post(
        admin.url + "/deploy", json={"path": "/nonexistent", "environ": {"KEYS": value}}, timeout=30
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "'environ' must be an object of variables, each a string"
