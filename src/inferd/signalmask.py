"""Signals blocked by whatever started inferd are unblocked in each of its processes.

A blocked signal stays blocked across fork and exec, so a job runner or supervisor that starts
its jobs with signals blocked left them blocked in every process of inferd's: the zygote never
heard SIGCHLD (a killed replica stayed a zombie and its API never came back), the operator and
``inferd serve`` never heard SIGTERM or SIGINT (nothing drained or stopped), and a zygote whose
engine died never got the SIGTERM it asked for then. Each entry point calls ``unblock_signals``
first; what it starts inherits the empty mask.
"""

from __future__ import annotations

import signal


def unblock_signals() -> None:
    """Unblock every signal in this thread (the process's first, before it starts another)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
