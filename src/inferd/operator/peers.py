"""Which local user holds the other end of a loopback TCP connection (Linux's ``/proc/net/tcp``).

The dashboard's one-time login link travels in a browser's command line (``inferd dashboard``
opens it with ``webbrowser``), and any user of the machine can read a process's command line
(``ps aux``). A user who copies the link before the browser opens it would get a dashboard
session; the login refuses a connection that another local user opened, so a copied link is of
no use to them. The kernel lists each TCP socket with the user that opened it: the client's end
is the line whose local address is the connection's peer and whose remote address is ours.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any, Protocol


class Endpoints(Protocol):
    """A connected socket, or the stand-in an asyncio or uvloop transport gives for one."""

    @property
    def family(self) -> int: ...

    def getpeername(self) -> Any: ...
    def getsockname(self) -> Any: ...


TABLES: dict[int, Path] = {socket.AF_INET: Path("/proc/net/tcp"), socket.AF_INET6: Path("/proc/net/tcp6")}


def _hex(address: tuple[str, int] | tuple[str, int, int, int], family: int) -> str:
    """``address`` as ``/proc/net/tcp{,6}`` writes it: the address's 32-bit words in host
    (little-endian) order, then the port, in upper-case hex."""
    packed = socket.inet_pton(family, address[0].split("%")[0])
    words = "".join(packed[i : i + 4][::-1].hex() for i in range(0, len(packed), 4))
    return f"{words.upper()}:{address[1]:04X}"


def peer_uid(sock: Endpoints | None) -> int | None:
    """The user id that owns the other end of ``sock``, a TCP connection accepted on this
    machine; ``None`` when it cannot be told (a peer on another machine, no ``/proc``)."""
    if sock is None or sock.family not in TABLES:
        return None
    try:
        peer, ours = sock.getpeername(), sock.getsockname()
        if not ipaddress.ip_address(peer[0].split("%")[0]).is_loopback and peer[0] != ours[0]:
            return None  # another machine's user: not in this kernel's table
        wanted = (_hex(peer, sock.family), _hex(ours, sock.family))
        lines = TABLES[sock.family].read_text().splitlines()[1:]
    except (OSError, ValueError):
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 7 and (fields[1], fields[2]) == wanted:
            return int(fields[7])
    return None
