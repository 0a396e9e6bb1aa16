"""The addresses a listener binds for a host name: each one this machine has.

Real sockets and binds; only the name's resolution is given, as a container's ``/etc/hosts``
gives it: Docker's names ``localhost`` ``::1`` too, and a container without IPv6 has no ``::1``.
An address of TEST-NET-1 (192.0.2.0/24, RFC 5737) stands for it: no machine has one, so its
bind fails as ``::1``'s did there (EADDRNOTAVAIL).
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest

from inferd.gateway.edge import listen

ABSENT = "192.0.2.1"


def resolving(monkeypatch: pytest.MonkeyPatch, name: str, addresses: list[str]) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        return [info for address in addresses for info in real(address, port, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_name_with_an_address_this_machine_lacks_is_served_on_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Was: INFERD_HOST=localhost in a container without IPv6: "cannot listen on localhost:8888:
    # Cannot assign requested address", and no gateway at all.
    resolving(monkeypatch, "localhost", ["127.0.0.1", ABSENT])
    sockets = listen("localhost", 0)
    try:
        assert [sock.getsockname()[0] for sock in sockets] == ["127.0.0.1"]
        port = sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass
    finally:
        for sock in sockets:
            sock.close()


def test_a_name_with_no_address_here_or_a_port_in_use_is_still_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolving(monkeypatch, "elsewhere", [ABSENT])
    with pytest.raises(OSError) as absent:
        listen("elsewhere", 0)
    assert absent.value.errno == errno.EADDRNOTAVAIL
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        resolving(monkeypatch, "localhost", ["127.0.0.1", ABSENT])
        with pytest.raises(OSError) as in_use:
            listen("localhost", taken.getsockname()[1])
    assert in_use.value.errno == errno.EADDRINUSE
