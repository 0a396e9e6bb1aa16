"""The web dashboard: a third listener of the operator, next to the gateway and the admin API.

It serves one static page (``static/``) and the JSON the page polls, on loopback by default
(``INFERD_DASHBOARD_HOST`` may widen it, with a warning), on a port the OS picks unless
``INFERD_DASHBOARD_PORT`` says. Every route but the login needs a session cookie, which only a
one-time token from the admin API (``inferd dashboard``) can open (see ``sessions.py``). It is
a cold path: the same small HTTP connection class as the admin API, answers built on demand
(the page's data by ``overview.py``).

The dashboard also owns the sampler that feeds ``History``: one cheap pass over the APIs every
``INFERD_DASHBOARD_SAMPLE_SECONDS`` (default 5) on the operator's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import orjson

from inferd.engine.state import boot_clock
from inferd.errors import ForbiddenError, InferdError, MethodNotAllowedError, NotFoundError, UnauthorizedError
from inferd.gateway.auth import CHALLENGE
from inferd.gateway.http import HttpConnection
from inferd.gateway.reader import HEAD
from inferd.gateway.server import HttpServer
from inferd.gateway.wire import Request, parse_query
from inferd.operator.history import PERIOD, History, class_totals
from inferd.operator.overview import overview
from inferd.operator.peers import peer_uid
from inferd.operator.recent import Recent, RecentFiles
from inferd.operator.sessions import LOGIN_TTL, Sessions, cookie_value, scope_of

if TYPE_CHECKING:
    from inferd.operator.server import Operator

log = logging.getLogger("inferd.operator")

DEFAULT_HOST = "127.0.0.1"
STATIC = Path(__file__).parent / "static"
FILES = {
    b"/dashboard/": ("index.html", b"text/html; charset=utf-8"),
    b"/dashboard/dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
    b"/dashboard/dashboard.css": ("dashboard.css", b"text/css; charset=utf-8"),
}
LOG_LINES = 50
LOG_LINE_CHARS = 2000
PAYLOAD_SAMPLES = 8  # an API's latest payload log records shown
# The page loads only its own files and talks only to this listener; nothing may frame it.
SECURITY_HEADERS = (
    b"Cache-Control: no-store\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"X-Frame-Options: DENY\r\n"
    b"Referrer-Policy: no-referrer\r\n"
    b"Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    b"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'\r\n"
)


class DashboardConnection(HttpConnection):
    """An HTTP connection that also keeps the ``Cookie`` and ``Host`` headers (the gateway's
    parser skips them)."""

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower in (b"cookie", b"host") and self.phase == HEAD:  # a trailer field is never a header
            self._headers[lower] = value
        else:
            super().on_header(name, value)


def sample_period() -> float:
    """Seconds between history samples (``INFERD_DASHBOARD_SAMPLE_SECONDS``; tests shorten it)."""
    value = os.environ.get("INFERD_DASHBOARD_SAMPLE_SECONDS")
    try:
        period = float(value) if value else PERIOD
    except ValueError:
        period = PERIOD
    return period if period > 0 else PERIOD


def dashboard_port() -> int:
    """``INFERD_DASHBOARD_PORT``, or 0: a free port chosen by the OS."""
    value = os.environ.get("INFERD_DASHBOARD_PORT", "").strip()
    if not value:
        return 0
    if not value.isdigit() or int(value) > 65535:
        raise InferdError(f"INFERD_DASHBOARD_PORT must be a port number (0-65535), not {value!r}")
    return int(value)


def host_name(header: bytes) -> str:
    """The name in a ``Host`` header, without its port or an IPv6 address's brackets."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    return text.rpartition(":")[0] if ":" in text else text


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Dashboard(HttpServer):
    """The dashboard's listener, sessions and history sampler (an ``HttpApp``)."""

    body_limit = 64 * 1024
    # on every answer: refusals at the edge (a malformed request, a header too large) too
    common_headers = SECURITY_HEADERS

    def __init__(self, operator: Operator) -> None:
        self.operator = operator
        self.connections: set[HttpConnection] = set()
        self.sessions = Sessions()
        self.history = History(period=sample_period())
        # empty is unset: `INFERD_DASHBOARD_HOST=` listened on every interface, for any Host
        self.host = os.environ.get("INFERD_DASHBOARD_HOST", "").strip() or DEFAULT_HOST
        self._loopback = is_loopback(self.host)  # then a request must name a loopback host
        self.port = dashboard_port()
        self.url = ""
        self.cookie = "inferd_dashboard"
        self._sampler: asyncio.Task[None] | None = None
        self._last_tick: float | None = None
        self._files: dict[bytes, tuple[bytes, bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # One thread reads the files: a stalled disk holds it alone, not the threads the
        # operator's other work (payload writes, deploys) shares.
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="inferd-dashboard")
        self._recent: RecentFiles | None = None  # what it read, kept while the files stay the same

    # lifecycle (called by Operator.run)

    async def start(self) -> str:
        """Listen, start sampling; the dashboard's base URL."""
        self._files = _load_files()
        loop = asyncio.get_running_loop()
        try:
            port = await self.listen("the dashboard", self.host, self.port, lambda: DashboardConnection(self))
        except OSError as exc:
            raise InferdError(
                f"cannot listen on {self.host}:{self.port} for the dashboard: {exc.strerror or exc}"
            ) from None
        # Cookies are not separated by port: a name per port keeps two operators apart.
        self.cookie = f"inferd_dashboard_{port}"
        wildcard = self.host in ("", "0.0.0.0", "::")
        host = DEFAULT_HOST if wildcard else self.host
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        if not is_loopback(self.host):
            log.warning(
                "the dashboard listens on %s:%d (INFERD_DASHBOARD_HOST), reachable from other machines; "
                "logins still need a one-time token, but traffic is plain HTTP",
                self.host or "*",
                port,
            )
        log.info("dashboard on %s/dashboard/ (log in with `inferd dashboard`)", self.url)
        self._sampler = loop.create_task(self._sample_forever())
        return self.url

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        self.stop_listening()
        self._reader.shutdown(wait=False, cancel_futures=True)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()

    def new_login(self) -> dict[str, Any]:
        """A one-time login URL (the admin API's ``POST /dashboard/login``)."""
        token = self.sessions.new_login()
        return {"url": f"{self.url}/dashboard/login?token={token}", "expires_in": LOGIN_TTL}

    # history

    async def _sample_forever(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.history.period
        due = loop.time()
        while True:
            due = max(due + period, loop.time())  # after a stalled loop: no burst of catch-up samples
            await asyncio.sleep(due - loop.time())
            try:
                self.sample()
            except Exception:  # a bug here must not stop the sampling, nor the operator
                log.exception("dashboard sampling failed")

    def sample(self) -> None:
        """Record one sample of every API: request counts, latencies since the last, queue, replicas."""
        operator = self.operator
        now, at, since = perf_counter(), time.time(), self._last_tick
        # the interval a sample covers: on the boot clock, which counts a suspended night (the
        # monotonic one left it out, and the evening's points were moved to the morning's chart)
        clock = boot_clock()
        names = list(operator.engine.apis)
        for name in names:
            info = operator.engine.describe(name)
            queue = operator.gateway.apis.get(name)
            if queue is None:
                self.history.observe(name, at, {}, (), 0, info, clock=clock)
                continue
            stats = queue.stats
            latencies = _latencies_since(stats.recent, since)
            self.history.observe(
                name, at, class_totals(stats.by_status), latencies, len(queue.waiting), info, clock=clock
            )
        self.history.keep_only(names)
        self._last_tick = now

    # HTTP

    def finished(self, *args: Any, **kwargs: Any) -> bytes:
        """Dashboard requests are not counted."""
        return b""

    def handle(self, conn: HttpConnection, request: Request) -> None:
        try:
            self._route(conn, request)
        except InferdError as exc:
            # RFC 9110: a 401 names its scheme (15.5.2), a 405 the methods there are (15.5.6)
            headers = {401: CHALLENGE, 405: b"Allow: GET\r\n"}.get(exc.status_code, b"")
            conn.respond(exc.status_code, orjson.dumps({"error": exc.message}), headers=headers)

    def _route(self, conn: HttpConnection, request: Request) -> None:
        host = request.headers.get(b"host")
        if self._loopback and host is not None and not is_loopback(host_name(host)):
            # DNS rebinding: a site's name pointed at 127.0.0.1 makes its pages same-origin with
            # this listener. They hold no session cookie, but nothing here is theirs to load.
            raise ForbiddenError("the dashboard answers only to a loopback name (127.0.0.1, localhost)")
        if request.method != b"GET":
            raise MethodNotAllowedError("the dashboard answers GET only")
        if request.path == b"/dashboard/login":
            self._login(conn, request)
            return
        # A session's pages: /dashboard/s/<scope>/<path> (sessions.py says why)
        before, scoped, rest = request.path.partition(b"/dashboard/s/")
        scope, slash, path = rest.partition(b"/")
        session = cookie_value(request.headers.get(b"cookie", b""), self.cookie)
        if before or not scoped or not self.sessions.valid(session, scope.decode("latin-1")):
            raise UnauthorizedError("log in to the dashboard with the link that `inferd dashboard` prints")
        path = b"/dashboard/" + path
        if not slash:
            _redirect(conn, b"/dashboard/s/" + scope + b"/")
        elif path == b"/dashboard/api/overview":
            task = asyncio.get_running_loop().create_task(self._send_overview(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif path in self._files:
            body, content_type = self._files[path]
            conn.respond(200, body, content_type=content_type)
        else:
            raise NotFoundError(f"no dashboard route {path.decode('utf-8', 'replace')}")

    def _login(self, conn: HttpConnection, request: Request) -> None:
        # Checked before the token is spent: another user's try leaves the owner's link working.
        # A listener widened beyond loopback has made the link its only guard (peers.py).
        uid = peer_uid(conn.transport.get_extra_info("socket") if self._loopback and conn.transport else None)
        if uid is not None and uid not in (os.getuid(), 0):
            raise ForbiddenError(
                f"this dashboard is another user's: the link was opened by user id {uid}, the "
                f"operator runs as {os.getuid()} (INFERD_DASHBOARD_HOST=0.0.0.0 lets any user in "
                "with the link)"
            )
        session = self.sessions.redeem(str(parse_query(request.query).get("token", "")))
        if session is None:
            raise UnauthorizedError(
                "this dashboard link is invalid, expired or already used; "
                "run `inferd dashboard` for a new one"
            )
        pages = f"/dashboard/s/{scope_of(session)}/"
        cookie = f"{self.cookie}={session}; Path={pages}; HttpOnly; SameSite=Strict".encode()
        _redirect(conn, pages.encode(), b"Set-Cookie: " + cookie + b"\r\n")

    # the page's data

    async def _send_overview(self, conn: HttpConnection) -> None:
        page = overview(self.operator, self.history)
        # The logs and payload logs are read in a worker thread: the event loop answering the
        # gateway's requests never waits on the disk for a page (a slow or stalled disk, or 50
        # APIs' files on every refresh of every open page).
        keys = [api["key"] for api in page["apis"]]
        files = await asyncio.get_running_loop().run_in_executor(self._reader, self._read_files, keys)
        for api in page["apis"]:
            api["logs"], api["payloads"] = files[api.pop("key")]
        conn.respond(200, orjson.dumps(page))

    def _read_files(self, keys: list[str]) -> dict[str, Recent]:
        """Each API's last log lines and payload records (a worker thread's work: files only)."""
        if self._recent is None:
            self._recent = RecentFiles(self.operator.home, LOG_LINES, LOG_LINE_CHARS, PAYLOAD_SAMPLES)
        return self._recent.read(keys)


def _redirect(conn: HttpConnection, location: bytes, headers: bytes = b"") -> None:
    conn.respond(
        303,
        b"",
        headers=b"Location: " + location + b"\r\n" + headers,
        content_type=b"text/plain",
    )


def _latencies_since(recent: deque[tuple[float, float]], since: float | None) -> list[float]:
    """Latencies (s) recorded after ``since`` (perf_counter), newest first; all when None.

    Walks back from the newest entry and stops at the first older one: a tick costs what the
    interval holds, not the whole buffer.
    """
    if since is None:
        return [seconds for _, seconds in recent]
    found = []
    for at, seconds in reversed(recent):
        if at <= since:
            break
        found.append(seconds)
    return found


def _load_files() -> dict[bytes, tuple[bytes, bytes]]:
    files: dict[bytes, tuple[bytes, bytes]] = {}
    for route, (name, content_type) in FILES.items():
        try:
            files[route] = ((STATIC / name).read_bytes(), content_type)
        except OSError as exc:
            log.error("the dashboard's file %s is missing (%s); the page will not load", name, exc)
    return files
