"""What a wake-up costs: round trips between two processes over a socketpair, sleeping or spinning.

A parent and a forked child send a 32-byte message back and forth. Each waits for the other's
message either in a blocking ``recv`` (the kernel puts it to sleep and wakes it when the message
comes: what a replica and the gateway did before spinning) or by reading without blocking in a
loop (``MSG_DONTWAIT``: what they do while the gateway is quiet, replica/spinning.py). Prints the
median and 90th percentile round trip for: both sleeping, the child spinning, both spinning.
A measurement, never a test: ``python bench/wakeup.py [--count N]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from time import perf_counter_ns

MESSAGE = b"x" * 32


def receive(sock: socket.socket, spin: bool) -> bytes:
    if not spin:
        return sock.recv(64)
    while True:
        try:
            return sock.recv(64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue


def round_trips(count: int, parent_spins: bool, child_spins: bool) -> list[int]:
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the child: answers each message
        ours.close()
        for _ in range(count):
            theirs.sendall(receive(theirs, child_spins))
        os._exit(0)
    theirs.close()
    took = []
    for _ in range(count):
        start = perf_counter_ns()
        ours.sendall(MESSAGE)
        receive(ours, parent_spins)
        took.append(perf_counter_ns() - start)
    os.waitpid(pid, 0)
    ours.close()
    return sorted(took)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20000, help="round trips per way (20000)")
    args = parser.parse_args()
    for name, parent, child in (
        ("both sleeping", False, False),
        ("the child spinning", False, True),
        ("both spinning", True, True),
    ):
        took = round_trips(args.count, parent, child)
        p50, p90 = took[len(took) // 2] / 1e3, took[len(took) * 9 // 10] / 1e3
        print(f"{name:20s} round trip p50 {p50:6.1f} us, p90 {p90:6.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
