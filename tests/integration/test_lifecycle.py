"""Replicas and the operator under faults, as a client sees them: an update that fails while the
old version's replicas die."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.conftest import make_project, wait_for
from tests.integration.conftest import Inferd

PID = "import os\n\n\ndef predict(sample, metadata):\n    return os.getpid()\n"


def test_old_replicas_that_die_while_an_update_fails_are_replaced(inferd: Inferd, tmp_path: Path) -> None:
    # Was: with another old replica still ready, a dead one was not replaced: an API of two
    # replicas whose update failed served on one for good (its 504 said "being replaced").
    project = make_project(
        tmp_path / "pair",
        "- kind: deployment\n  name: pair\n- kind: api\n  name: twin\n  predictor:\n    path: p.py\n"
        "  compute:\n    min_replicas: 2\n",
        {"p.py": PID},
    )
    inferd.run("deploy", str(project))
    with (project / "p.py").open("a") as handler:
        handler.write("raise RuntimeError('version 2 does not load')\n")
    assert inferd.run("deploy", str(project), check=False).returncode == 1
    killed, kept = sorted(inferd.replica_pids("twin"))
    os.kill(killed, signal.SIGKILL)

    def two_ready() -> list[int]:
        pids = inferd.replica_pids("twin")
        return pids if len(pids) == 2 and killed not in pids else []

    pids = wait_for(two_ready, 60, "the old version back at two ready replicas")
    assert kept in pids
    info = inferd.api("twin")
    assert info["status"] == "error" and "version 2 does not load" in info["error"]
    assert info["available"] == 2
    answers = {inferd.post("/pair/twin", {}).json() for _ in range(20)}
    assert answers <= set(pids)
