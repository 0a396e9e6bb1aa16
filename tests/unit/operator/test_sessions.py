"""Dashboard logins: one-time tokens, their expiry, sessions, the cookie header."""

from __future__ import annotations

from inferd.operator.sessions import MAX_PENDING, Sessions, cookie_value, scope_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_login_token_works_once() -> None:
    sessions = Sessions(clock=Clock())
    token = sessions.new_login()
    session = sessions.redeem(token)
    assert session is not None
    assert len(session) >= 43  # 32 random bytes, URL-safe base64
    assert sessions.valid(session, scope_of(session))
    assert sessions.redeem(token) is None
    assert not sessions.valid(token, scope_of(token))  # a login token is not a session


def test_a_login_token_expires() -> None:
    clock = Clock()
    sessions = Sessions(clock=clock, login_ttl=600)
    late = sessions.new_login()
    fresh = sessions.new_login()
    clock.now += 600
    assert sessions.redeem(late) is None
    clock.now -= 1
    assert sessions.redeem(fresh) is not None


def test_unknown_secrets_are_refused() -> None:
    sessions = Sessions(clock=Clock())
    token = sessions.new_login()
    assert sessions.redeem("") is None
    assert sessions.redeem(token[:-1]) is None
    assert sessions.redeem(token + "x") is None
    assert not sessions.valid(None, "")
    assert not sessions.valid("", scope_of(""))
    assert sessions.redeem(token) is not None


def test_pending_logins_are_bounded() -> None:
    sessions = Sessions(clock=Clock())
    tokens = [sessions.new_login() for _ in range(MAX_PENDING + 1)]
    assert sessions.redeem(tokens[0]) is None  # the oldest made room
    assert sessions.redeem(tokens[-1]) is not None


def test_cookie_value() -> None:
    header = b"other=1; inferd_dashboard_8000=abc; inferd_dashboard_9000=def"
    assert cookie_value(header, "inferd_dashboard_9000") == "def"
    assert cookie_value(header, "inferd_dashboard_8000") == "abc"
    assert cookie_value(header, "inferd_dashboard") is None
    assert cookie_value(b"", "inferd_dashboard_9000") is None


def test_a_session_opens_only_the_pages_under_its_own_scope() -> None:
    sessions = Sessions(clock=Clock())
    first = sessions.redeem(sessions.new_login())
    second = sessions.redeem(sessions.new_login())
    assert first is not None and second is not None
    assert scope_of(first) != scope_of(second) and len(scope_of(first)) == 24
    assert first not in scope_of(first)  # the path tells nothing of the cookie
    assert not sessions.valid(first, scope_of(second))
    assert not sessions.valid(first, "")
    assert sessions.valid(second, scope_of(second))
