"""The serving process's heap after many deploys: ``heap.settle`` runs after each one."""

from __future__ import annotations

import subprocess
import sys

# In a process of its own: gc.freeze would keep the test runner's objects for good.
SCRIPT = """
import gc, sys, weakref
from inferd.operator import heap

heap.THAW_EVERY = float(sys.argv[1])

class Connection:  # as a request's objects: alive during a deploy, in a cycle, gone after
    def __init__(self):
        self.me = self

alive = []
for _ in range(200):
    held = Connection()
    alive.append(weakref.ref(held))
    heap.settle()  # a deploy while the connection is open
    del held  # the connection closes
heap.settle()
print(sum(ref() is not None for ref in alive))
"""


def kept(thaw_every: float) -> int:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(thaw_every)], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_objects_alive_at_a_deploy_are_freed_once_they_die_later() -> None:
    """200 deploys, each while a request's objects (a reference cycle) were alive: once those
    die, a later deploy's collection frees them. ``gc.freeze`` had kept every one for good, so an
    operator deployed to every day grew by what it held at each deploy."""
    assert kept(thaw_every=0.0) <= 1


def test_deploys_close_together_leave_the_frozen_objects_alone() -> None:
    """Within THAW_EVERY, a deploy's collection skips what was frozen (a thawed one held the
    gateway's event loop up to 150 ms): those objects wait for a later deploy's collection."""
    assert kept(thaw_every=3600.0) >= 199
