"""Dashboard access: one-time login tokens exchanged for session cookies.

Why not the admin token in the URL: a URL ends up in browser history, shell history and
screenshots. ``inferd dashboard`` (which can read the admin token) asks for a login token that
works once and for ten minutes; the browser trades it for a random session cookie (HttpOnly,
SameSite=Strict) that scripts on other sites can neither read nor send. Secrets are compared
with ``hmac.compare_digest``; the clock is a parameter so tests need not wait.

Browsers send a cookie to every port of a host: a program of another user listening on another
127.0.0.1 port got the dashboard's cookie as soon as the browser asked it for a page under
``/dashboard``, and then could use it here. So a session's pages live under a path of their own,
``/dashboard/s/<scope>/``, and its cookie is sent only there: ``scope`` is derived one way from
the session (knowing the path gives nothing of the cookie), and a request needs both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

LOGIN_TTL = 600.0
MAX_PENDING = 64
MAX_SESSIONS = 64


class Sessions:
    """Pending login tokens and open sessions of one operator (lost when it stops)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, login_ttl: float = LOGIN_TTL) -> None:
        self.clock = clock
        self.login_ttl = login_ttl
        self._logins: dict[str, float] = {}  # token -> expiry
        self._sessions: dict[str, float] = {}  # session id -> creation time

    def new_login(self) -> str:
        """A fresh one-time login token (URL-safe), valid for ``login_ttl`` seconds."""
        now = self.clock()
        self._logins = {token: expiry for token, expiry in self._logins.items() if expiry > now}
        while len(self._logins) >= MAX_PENDING:  # the oldest unused links stop working first
            del self._logins[min(self._logins, key=self._logins.__getitem__)]
        token = secrets.token_urlsafe(32)
        self._logins[token] = now + self.login_ttl
        return token

    def redeem(self, token: str) -> str | None:
        """Spend ``token``: a new session id, or None when it is unknown, used or expired."""
        now = self.clock()
        found = _find(self._logins, token)
        if found is None:
            return None
        expiry = self._logins.pop(found)
        if expiry <= now:
            return None
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[min(self._sessions, key=self._sessions.__getitem__)]
        session = secrets.token_urlsafe(32)  # 32 random bytes
        self._sessions[session] = now
        return session

    def valid(self, session: str | None, scope: str) -> bool:
        """Whether ``session`` (a cookie value) is an open session whose pages are under ``scope``."""
        if not session or _find(self._sessions, session) is None:
            return False
        return hmac.compare_digest(scope_of(session).encode(), scope.encode())


def scope_of(session: str) -> str:
    """The path part under which ``session``'s pages live (one way: it tells nothing of it)."""
    digest = hashlib.sha256(b"inferd dashboard scope:" + session.encode()).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def _find(secrets_by_value: dict[str, float], given: str) -> str | None:
    """The stored secret equal to ``given``, compared in constant time against each."""
    encoded = given.encode()
    match = None
    for value in secrets_by_value:
        if hmac.compare_digest(value.encode(), encoded):
            match = value
    return match


def cookie_value(header: bytes, cookie: str) -> str | None:
    """The value of the cookie named ``cookie`` in a ``Cookie:`` header, if present."""
    for part in header.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == cookie and value:
            return value
    return None
