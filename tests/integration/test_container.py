"""`inferd serve` as the exported image runs it: the first process (PID 1) of a PID namespace
of its own, with no init beside it (Kubernetes, `docker run` without `--init`)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import INFERD, child_pids, make_project, served_url, wait_for

# unshare(1): as root a PID namespace of its own; otherwise in a user namespace, where allowed.
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]
if os.geteuid() != 0:
    UNSHARE.insert(1, "--map-root-user")

# A handler whose helper runs in the background: the shell exits at once, and the helper, an
# orphan, is the container's PID 1's to reap once it ends.
PREDICTOR = """\
import subprocess, time
def predict(sample, metadata):
    subprocess.run("sleep 0.05 &", shell=True, check=True)
    time.sleep(sample.get("sleep", 0))
    return "ok"
"""
YAML = """\
- kind: deployment
  name: box
- kind: api
  name: helper
  predictor:
    path: predictor.py
"""


@pytest.fixture
def contained(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    if subprocess.run([*UNSHARE, "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare cannot make a PID namespace here")
    project = make_project(tmp_path / "box", YAML, {"predictor.py": PREDICTOR})
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*UNSHARE, str(INFERD), "serve", str(project), "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    yield process, log
    first = child_pids(process.pid)
    for pid in first:  # the namespace's PID 1: every process in it ends with it
        os.kill(pid, signal.SIGKILL)
    process.wait(60)


def _tree(pid: int) -> set[int]:
    below = child_pids(pid)
    return below.union(*(_tree(child) for child in below))


def _zombies(pid: int) -> set[int]:
    found = set()
    for child in _tree(pid):
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == "Z":
            found.add(child)
    return found


def test_serve_as_pid_1_reaps_the_orphans_of_handlers_and_drains_on_sigterm(
    contained: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, log = contained
    url = served_url(log, process)
    for _ in range(3):
        assert requests.post(f"{url}/box/helper", json={}, timeout=30).json() == "ok"
    # each helper ends 50 ms after its request; as PID 1 inferd serve left every one a zombie
    wait_for(lambda: not _zombies(process.pid), 10, f"no zombie in the container:\n{log.read_text()}")
    (pid_1,) = child_pids(process.pid)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(requests.post, f"{url}/box/helper", json={"sleep": 1.5}, timeout=30)
        wait_for(
            lambda: requests.get(f"{url}/box/helper", timeout=5).json()["replicas"]["busy"] == 1, 30, "busy"
        )
        os.kill(pid_1, signal.SIGTERM)  # what Kubernetes sends the container
        answer = slow.result()
    assert (answer.status_code, answer.json()) == (200, "ok")
    assert process.wait(60) == 0
    assert "Traceback" not in log.read_text()
