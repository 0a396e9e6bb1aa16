"""API keys (the ``auth`` extension): loaded when an API is added, checked in constant time.

Keys come from environment variables and/or a file. For ``inferd serve`` the variables are the
serving process's own; for ``inferd deploy`` they are those of the shell that ran the deploy
(sent with it, kept in the operator's private state). Keys are never logged. A missing key is
401 (with a ``WWW-Authenticate: Bearer`` challenge), a wrong one 403.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from inferd.config.schema import ApiConfig

if TYPE_CHECKING:
    from inferd.gateway.app import Gateway
    from inferd.gateway.http import HttpConnection
    from inferd.gateway.queue import ApiQueue

# Sent with every 401 (RFC 9110 11.6.1: a 401 must name a scheme). Bearer, not Basic: a browser
# shows no login dialog for it.
CHALLENGE = b'WWW-Authenticate: Bearer realm="inferd"\r\n'


class KeysError(Exception):
    """The API's keys cannot be read (an unset variable, an unreadable file, no key at all)."""


def load_keys(config: ApiConfig, environ: Mapping[str, str] | None = None) -> list[bytes]:
    """The API's keys; variables from ``environ`` (a deploy's), else from this process."""
    auth = config.api.auth
    assert auth is not None
    keys: list[bytes] = []
    for name in auth.keys_from_env:
        value = (os.environ if environ is None else environ).get(name)
        if not value:
            where = "" if environ is None else " in the shell that ran `inferd deploy`"
            raise KeysError(f"the environment variable {name} is not set{where}")
        keys.append(value.strip().encode())
    if auth.keys_file is not None:
        path = Path(auth.keys_file)
        if not path.is_absolute() and config.project_root is not None:
            path = config.project_root / path
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise KeysError(f"cannot read the keys file {path}: {exc.strerror or exc}") from None
        keys.extend(line.strip().encode() for line in lines if line.strip() and not line.startswith("#"))
    if not keys:
        raise KeysError("no API key is configured")
    return keys


def check(headers: dict[bytes, bytes], keys: list[bytes]) -> int | None:
    """``None`` when the request carries a valid key, else 401 (none) or 403 (wrong)."""
    given = headers.get(b"x-api-key")
    authorization = headers.get(b"authorization")
    if given is not None:
        given = given.strip()  # RFC 9110 5.5: the spaces around a field value are not of it
    elif authorization is not None and authorization[:7].lower() == b"bearer ":
        given = authorization[7:].strip()
    if not given:
        return 401
    matched = False
    for key in keys:  # compare with every key, so the time says nothing about which matched
        matched |= hmac.compare_digest(given, key)
    return None if matched else 403


def authorized(
    gateway: Gateway,
    conn: HttpConnection,
    headers: dict[bytes, bytes],
    queue: ApiQueue,
    protocol: str,
    early: bool = False,
) -> bool:
    """Check ``queue``'s keys (if its API has ``auth``); answer 401/403 (503: its keys cannot be
    read) and return False when wrong (``early``: called by ``admit`` when the headers end, before
    the request was started)."""
    if queue.config.api.auth is None:
        return True
    status = 503 if queue.auth_error is not None else check(headers, queue.keys)
    if status is None:
        return True
    if early:  # the answer names this request, not the last one on this keep-alive connection
        conn.adopt(headers)
    challenge = b""
    if status == 503:
        message = f"api '{queue.name}' cannot check API keys: {queue.auth_error}"
    elif status == 401:
        message = "this API needs a key (Authorization: Bearer KEY, or X-API-Key)"
        challenge = CHALLENGE
    else:
        message = "wrong API key"
    gateway.reject(conn, queue, status, message, protocol, challenge)
    return False
