"""Requests to a served API's URL (the local gateway or a Ray cluster's proxy), as ``inferd
predict`` and ``inferd replay`` send them; ``inferd.client`` is the operator's admin API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inferd.errors import OperatorError

if TYPE_CHECKING:
    import requests


def api_headers(key: str | None = None) -> dict[str, str]:
    """The headers of a JSON request to an API, with its key (``auth:``) when given."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def post_sample(
    url: str,
    body: bytes,
    debug: bool = False,
    timeout: float = 600,
    key: str | None = None,
    stream: bool = False,
) -> requests.Response:
    """POST a JSON sample to an API URL (local gateway or a Ray cluster's proxy alike).

    With ``stream``, the body is read as the caller iterates it (a streamed answer's items as
    they arrive); the caller closes the response.
    """
    from urllib.parse import urlsplit

    import requests

    session = requests.Session()
    session.trust_env = urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1")
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
