"""``peer_uid`` finds the user at the other end of a loopback connection in ``/proc/net/tcp{,6}``."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from inferd.operator.peers import peer_uid


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc/net/tcp")
@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_the_user_of_a_loopback_connection_is_found(family: int, host: str) -> None:
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")
    with socket.socket(family) as listener:
        try:
            listener.bind((host, 0))
        except OSError:
            pytest.skip(f"cannot bind {host}")
        listener.listen()
        with socket.create_connection(listener.getsockname()[:2]) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert peer_uid(accepted) == os.getuid()
                assert peer_uid(client) == os.getuid()  # either end: each line names its owner


def test_nothing_to_tell_without_a_socket() -> None:
    assert peer_uid(None) is None
