"""Requests to a served API's URL (the local gateway or a Ray cluster's proxy), as ``inferd
predict`` and ``inferd replay`` send them; ``inferd.client`` is the operator's admin API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inferd.errors import OperatorError

if TYPE_CHECKING:
    import requests


def api_headers(key: str | None = None) -> dict[str, str | bytes]:
    """The headers of a JSON request to an API, with its key (``auth:``) when given.

    The key goes as UTF-8, as the gateway reads its keys and curl sends them: requests encodes a
    text header in Latin-1, and a key such as ``clé€`` ended in a UnicodeEncodeError traceback."""
    headers: dict[str, str | bytes] = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = b"Bearer " + key.encode()
    return headers


def on_this_machine(url: str) -> bool:
    """Whether ``url`` names this machine by address: loopback, or the unspecified address a
    gateway listening on every interface shows (``INFERD_HOST=0.0.0.0`` gives
    ``http://0.0.0.0:8888``). A proxy in the environment is never used for those: it got the
    sample and the API key, then failed the request."""
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def post_sample(
    url: str,
    body: bytes,
    debug: bool = False,
    timeout: float = 600,
    key: str | None = None,
    stream: bool = False,
    local: bool = False,
) -> requests.Response:
    """POST a JSON sample to an API URL (local gateway or a Ray cluster's proxy alike).

    With ``stream``, the body is read as the caller iterates it (a streamed answer's items as
    they arrive); the caller closes the response. ``local``: the URL is the local operator's
    gateway (on this machine whatever name ``INFERD_HOST`` gives it): no proxy either.
    """
    import requests

    session = requests.Session()
    session.trust_env = not (local or on_this_machine(url))
    try:
        return session.post(
            url + ("?debug=true" if debug else ""),
            data=body,
            timeout=timeout,
            headers=api_headers(key),
            stream=stream,
        )
    except requests.RequestException as exc:
        raise OperatorError(f"cannot reach {url}: {exc}") from None
    finally:
        if not stream:
            session.close()
