"""The operator's admin API: the HTTP routes the CLI calls, each behind the operator's token.

It listens on loopback only, on a port of its own, and answers only requests that carry the
token from ``$INFERD_HOME/token`` (mode 0600). It is a cold path: plain JSON over the same small
HTTP connection class the gateway uses; the work is done by ``Operator`` (``server.py``) and by
one module per operation (``deploy.py``, ``delete.py``, ``promote.py``).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from inferd import __version__, codec
from inferd.errors import (
    ForbiddenError,
    InferdError,
    InputError,
    NotFoundError,
    UnauthorizedError,
    in_several_deployments,
    shown,
)
from inferd.gateway.auth import CHALLENGE
from inferd.gateway.http import HttpConnection
from inferd.gateway.server import HttpServer
from inferd.gateway.wire import Request, parse_query
from inferd.logreading import Cursor
from inferd.operator.delete import delete
from inferd.operator.deploy import deploy
from inferd.operator.logs import log_path, logged_keys, read_logs
from inferd.operator.promote import promote
from inferd.storage.remote import s3_settings

if TYPE_CHECKING:
    from inferd.operator.server import Operator

log = logging.getLogger("inferd.operator")

# ``API`` or ``DEPLOYMENT/API``: never a path, nor a file name longer than a name may be
LOG_NAME = re.compile(r"[a-z0-9-]{1,63}(/[a-z0-9-]{1,63})?")


def _deleted_log(operator: Operator, name: str) -> str:
    """The key of the deleted API whose log a bare ``API`` name means: the only deployment that
    left a log of that name (``DEPLOYMENT/API`` names one when several did)."""
    keys = logged_keys(operator.home, name) if "/" not in name else []
    if len(keys) > 1:
        raise in_several_deployments("api", name, keys, was=True)
    if not keys:
        raise NotFoundError(f"no API named {shown(name)}")
    return keys[0]


class AdminApp(HttpServer):
    """Routes of the admin API; every route needs the operator's token."""

    body_limit = 1 << 20

    def __init__(self, operator: Operator) -> None:
        self.operator = operator
        self.connections: set[HttpConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # The logs are read in a thread of their own: the event loop that answers every API's
        # requests never waits on the disk. `inferd logs API --tail 1000000` read four rotated
        # files back on it (130 MB, not in the page cache: every request waited 0.4-0.8 s).
        self._logs = ThreadPoolExecutor(1, thread_name_prefix="inferd-logs")

    def finished(self, *args: Any, **kwargs: Any) -> bytes:
        """Admin requests are not counted."""
        return b""

    def handle(self, conn: HttpConnection, request: Request) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(conn, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, conn: HttpConnection, request: Request) -> None:
        try:
            self._authorize(request)
            result = await self._route(request)
            conn.respond(200, orjson.dumps(result))
        except InferdError as exc:
            body = orjson.dumps({"error": exc.message, "type": type(exc).__name__})
            conn.respond(exc.status_code, body, headers=CHALLENGE if exc.status_code == 401 else b"")
        except Exception as exc:
            log.exception("admin request failed")
            conn.respond(500, codec.error_body(f"operator error: {type(exc).__name__}: {exc}"))

    def _authorize(self, request: Request) -> None:
        header = request.headers.get(b"authorization", b"")
        if not header.startswith(b"Bearer "):
            raise UnauthorizedError("the operator needs its token (Authorization: Bearer ...)")
        if not hmac.compare_digest(header[7:].strip(), self.operator.token.encode()):
            raise ForbiddenError("wrong operator token")

    async def _route(self, request: Request) -> Any:
        operator = self.operator
        method = request.method
        path = request.path.decode("utf-8", "replace")
        body = _json_object(request.body)
        if method == b"GET" and path == "/info":
            return {
                "version": __version__,
                "code": operator.code,
                "pid": os.getpid(),
                "gateway": operator.gateway_url,
                "started": operator.started,
                # the AWS settings its s3:// reads use: a deploy from a shell with others says so
                "s3_settings": s3_settings(),
                # deployments the operator could not bring back when it started: name -> why,
                # and the folder they were deployed from
                "unrestored": {
                    name: {"reason": reason, "source": operator.state.deployments[name].source}
                    for name, reason in operator.unrestored.items()
                    if name in operator.state.deployments
                },
                # deployments a restart is still bringing back (their APIs are not listed yet)
                "restoring": sorted(
                    name
                    for name, done in operator.restored.items()
                    if not done.is_set() and name in operator.state.deployments
                ),
            }
        if method == b"POST" and path == "/deploy":
            environ = body.get("environ") or {}
            if not isinstance(environ, dict) or not all(isinstance(v, str) for v in environ.values()):
                raise InputError("'environ' must be an object of variables, each a string")
            return await deploy(
                operator,
                _text(body, "path"),
                bool(body.get("force")),
                bool(body.get("refresh")),
                environ,
                bool(body.get("replace")),
                bool(body.get("relax_pins")),
            )
        if method == b"GET" and path == "/apis":
            # What ``inferd deploy`` waits on: once it says live, a restart brings this version back.
            operator.note_serving()
            return operator.api_list()
        if method == b"POST" and path == "/promote":
            judged = body.get("judged")  # the version a replay judged (--min-agreement)
            return await promote(
                operator,
                _text(body, "splitter"),
                _text(body, "api"),
                judged if isinstance(judged, str) else None,
            )
        if method == b"GET" and path == "/splitters":
            return operator.gateway.splitters.describe()
        if method == b"GET" and path.startswith("/apis/"):
            return operator.api_info(path.removeprefix("/apis/"))
        if method == b"POST" and path == "/delete":
            return await delete(operator, _text(body, "name"))
        if method == b"GET" and path.startswith("/logs/"):
            name = path.removeprefix("/logs/")
            try:
                name = operator.resolve(name)
            except NotFoundError:
                # A deleted API's log (or an older version's ``logs/<api>.log``) stays readable.
                if not LOG_NAME.fullmatch(name):
                    raise
                if not log_path(operator.home, name).exists():
                    name = _deleted_log(operator, name)
            query = parse_query(request.query)
            try:
                tail = int(query["tail"]) if "tail" in query else None
                since = float(query["since"]) if "since" in query else None
            except ValueError:
                raise InputError("'tail' and 'since' must be numbers") from None
            cursor = query.get("cursor") or None
            try:
                if cursor is not None:
                    Cursor.decode(cursor)
            except ValueError:  # was a 500: "invalid literal for int()"
                raise InputError(
                    "'cursor' must be INODE:OFFSET (two whole numbers, as an earlier answer gave it)"
                ) from None
            read = functools.partial(
                read_logs,
                operator.home,
                name,
                access=query.get("access") == "1",
                cursor=cursor,
                tail=tail,
                since=since,
            )
            return await asyncio.get_running_loop().run_in_executor(self._logs, read)
        if method == b"POST" and path == "/prune":
            return await operator.prune()
        if method == b"POST" and path == "/dashboard/login":
            return operator.dashboard.new_login()
        if method == b"POST" and path == "/down":
            asyncio.get_running_loop().call_later(0.05, operator.stop_event.set)
            return {"message": "stopping"}
        raise NotFoundError(f"no admin route {method.decode()} {path}")


def _json_object(raw: bytes) -> dict[str, Any]:
    """An admin request's body: a JSON object (empty when none came), else 400."""
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:  # a path that is not UTF-8 (a folder named in Latin-1 bytes), which orjson refuses
            value = json.loads(raw)
        except ValueError:
            raise InputError(f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError("the request body must be a JSON object")
    return value


def _text(body: dict[str, Any], key: str) -> str:
    """The string ``body[key]``, else 400 naming it."""
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(f"the request body needs '{key}' (a string)")
    return value
