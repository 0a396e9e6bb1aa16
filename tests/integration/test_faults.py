"""Faults: a corrupt state file, a full disk, a model source that never answers, a handler's
child processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests

from inferd.client import Client
from inferd.errors import OperatorError
from tests.conftest import INFERD, example, make_project, process_alive, wait_for
from tests.integration.conftest import HangingOrigin, Inferd, stop_operator

SAMPLE = json.loads((example("iris-onnx") / "sample.json").read_text())


def test_a_corrupt_state_file_stops_the_operator_with_a_clear_error(inferd: Inferd) -> None:
    inferd.run("deploy", str(example("iris-onnx")))
    inferd.wait_status("classifier", "live")
    inferd.run("down")
    state = inferd.home / "state.json"
    state.write_text('{"deployments": {"iris": {"source": ')  # cut short, as by a crash mid-write
    result = inferd.run("up", check=False)
    assert result.returncode == 1
    assert (
        "state file" in result.stderr
        and "is corrupt" in result.stderr
        and "nothing was changed" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert state.read_text() == '{"deployments": {"iris": {"source": '  # left for the user to inspect


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_loses_nothing_and_keeps_serving(small_disk: Path, tmp_path: Path) -> None:
    inferd = Inferd(small_disk / "home")
    try:
        project = tmp_path / "iris"
        subprocess.run(["cp", "-r", str(example("iris-onnx")), str(project)], check=True)
        inferd.run("deploy", str(project))
        inferd.wait_status("classifier", "live")
        state_before = (inferd.home / "state.json").read_text()
        filler = small_disk / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)  # until full
        for _ in range(50):  # logs and access logs cannot be written: requests still succeed
            assert inferd.post("/iris/classifier", SAMPLE).json() == "iris-setosa"
        handler = project / "handlers" / "iris.py"
        handler.write_text(
            handler.read_text().replace("labels[predicted_class_id]", "labels[predicted_class_id] + '!'")
        )
        failed = inferd.run("deploy", str(project), check=False)
        assert failed.returncode == 1
        assert "No space left on device" in failed.stderr and "Traceback" not in failed.stderr
        assert (inferd.home / "state.json").read_text() == state_before  # not half-written
        assert inferd.post("/iris/classifier", SAMPLE).json() == "iris-setosa"  # the old version serves
        filler.unlink()
        assert inferd.run("deploy", str(project)).stdout.strip() == "deployment updated"
        inferd.wait_status("classifier", "live")
        assert inferd.post("/iris/classifier", SAMPLE).json() == "iris-setosa!"
    finally:
        inferd.run("down", check=False)


def test_a_model_source_that_never_answers_is_the_apis_error(inferd: Inferd, tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # accept connections and never answer them
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        inferd.env.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{silent.getsockname()[1]}",
            AWS_ACCESS_KEY_ID="x",
            AWS_SECRET_ACCESS_KEY="x",
            AWS_DEFAULT_REGION="us-east-1",
            INFERD_S3_TIMEOUT="1",
        )
        project = make_project(
            tmp_path / "p",
            "- kind: deployment\n  name: remote\n- kind: api\n  name: stalled\n  onnx:\n"
            "    model: s3://models/iris.onnx\n",
        )
        inferd.run("deploy", str(project), "--no-wait", timeout=120)
        failed = inferd.wait_status("stalled", "error")
        assert "s3://models/iris.onnx: cannot download" in failed["error"]
        assert "timeout" in failed["error"].lower()
        assert inferd.post("/remote/stalled", {}).status_code == 503
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        silent.close()


@pytest.mark.parametrize("damage", ["corrupt", "removed"])
def test_an_operator_whose_files_are_damaged_can_still_be_stopped(inferd: Inferd, damage: str) -> None:
    # Was: with operator.json edited or removed while the operator ran (`rm -rf ~/.inferd/*`),
    # `inferd down` said "the inferd operator is not running" (exit 0) and left it and its
    # port running for good; `inferd up` then failed with "Address already in use".
    inferd.run("up")
    pid, supervisor = inferd.operator_pid(), inferd.operator_pid("supervisor")
    assert pid is not None and supervisor is not None
    try:
        for name in ("operator.json", "token"):
            if damage == "corrupt":
                (inferd.home / name).write_bytes(b"\xff\xfe{")
            else:
                (inferd.home / name).unlink()
        wait_for(lambda: inferd.operator_pid() == pid, 60, "operator.json to be written again")
        result = inferd.run("down")
        assert "stopped" in result.stdout
        assert not process_alive(pid) and not process_alive(supervisor)
    finally:
        for left in (supervisor, pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(left, signal.SIGKILL)


def test_down_never_says_stopped_while_the_operator_runs(inferd: Inferd) -> None:
    # Was: with the operator's event loop busy (10,000 APIs being created), `inferd down` gave
    # up waiting after 60 s and said "the inferd operator stopped"; the operator ran on.
    inferd.run("up")
    pid, supervisor = inferd.operator_pid(), inferd.operator_pid("supervisor")
    assert pid is not None and supervisor is not None
    os.kill(pid, signal.SIGSTOP)  # answers nothing, as a blocked event loop
    try:
        with pytest.raises(OperatorError, match=f"the operator \\(pid {pid}\\) is still running after 3s"):
            Client(inferd.home).stop(timeout=3)
        os.kill(pid, signal.SIGCONT)  # it takes the SIGTERM its supervisor passed on, and drains
        wait_for(lambda: not process_alive(pid) and not process_alive(supervisor), 60, "the operator to stop")
        assert inferd.run("down").stdout.strip() == "the inferd operator is not running"
    finally:
        for left in (supervisor, pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(left, signal.SIGKILL)


def _all_ended(pids: list[int]) -> bool:
    return not any(map(process_alive, pids))


def _spawner_answer(inferd: Inferd) -> Any:
    try:
        answer = inferd.post("/kids/spawner", {}, timeout=10)
    except requests.RequestException:  # the gateway is coming back with its operator
        return None
    return answer.ok and answer.json()


SPAWNER = """
import os, subprocess

helper = subprocess.Popen(["sleep", "600"])  # a helper server a handler starts at import


def predict(sample, metadata):
    return {"replica": os.getpid(), "children": [helper.pid, subprocess.Popen(["sleep", "601"]).pid]}
"""


def test_the_processes_a_handler_starts_end_with_its_replica(inferd: Inferd, tmp_path: Path) -> None:
    # Was: they outlived it, adopted by init: every replica killed, replaced or deleted left
    # its handler's processes running for good (Cortex's containers took theirs with them).
    project = make_project(
        tmp_path / "kids",
        "- kind: deployment\n  name: kids\n- kind: api\n  name: spawner\n  predictor:\n    path: p.py\n",
        {"p.py": SPAWNER},
    )
    started: list[int] = []
    try:
        inferd.run("deploy", str(project))
        first = inferd.post("/kids/spawner", {}).json()
        started += first["children"]
        os.kill(first["replica"], signal.SIGKILL)
        wait_for(
            lambda: not any(map(process_alive, first["children"])), 30, "a killed replica's children to end"
        )
        second = wait_for(
            lambda: (answer := inferd.post("/kids/spawner", {})).ok and answer.json(), 60, "a new replica"
        )
        started += second["children"]
        # README ("failed"): `inferd logs` names each crash's exit code or signal
        killed = "was killed by signal 9; starting another in"
        assert killed in wait_for(
            lambda: killed in (t := inferd.run("logs", "spawner").stdout) and t, 30, "the kill logged"
        )
        for _ in range(2):  # a restored replica is spawned by the operator, not forked: both ways
            os.kill(inferd.operator_pid() or 0, signal.SIGKILL)  # its replicas go: their children too
            gone: list[int] = second["children"]
            wait_for(partial(_all_ended, gone), 30, "a replica's children to end with it")
            second = wait_for(partial(_spawner_answer, inferd), 60, "the restored replica")
            started += second["children"]
        inferd.run("delete", "kids")
        wait_for(
            lambda: not any(map(process_alive, second["children"])), 30, "a deleted replica's children to end"
        )
    finally:
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_an_old_replica_killed_during_a_failing_rollout_is_replaced(inferd: Inferd, tmp_path: Path) -> None:
    # Was: a replica of the serving version that died while a new version loaded was not
    # replaced; when the new version then failed, the API answered 503 to everything.
    project = make_project(
        tmp_path / "roll",
        "- kind: deployment\n  name: roll\n- kind: api\n  name: steady\n  predictor:\n    path: p.py\n",
        {"p.py": "import os\n\n\ndef predict(sample, metadata):\n    return os.getpid()\n"},
    )
    inferd.run("deploy", str(project))
    serving = inferd.post("/roll/steady", {}).json()
    with (project / "p.py").open("a") as handler:
        handler.write("import time\ntime.sleep(3)\nraise RuntimeError('version 2 does not load')\n")
    inferd.run("deploy", str(project), "--no-wait")
    os.kill(serving, signal.SIGKILL)
    assert "version 2 does not load" in inferd.wait_status("steady", "error")["error"]
    again = wait_for(
        lambda: (answer := inferd.post("/roll/steady", {})).ok and answer.json(), 60, "an answer"
    )
    assert again != serving
    # and `inferd logs` names the crash, as it does a current replica's (it was counted, unsaid)
    killed = "of the previous version was killed by signal 9; starting another like it"
    assert killed in wait_for(
        lambda: killed in (t := inferd.run("logs", "steady").stdout) and t, 30, "the log"
    )


def test_a_killed_operator_comes_back_on_a_full_disk(small_disk: Path, tmp_path: Path) -> None:
    inferd = Inferd(small_disk / "home")
    try:
        project = make_project(
            tmp_path / "p",
            "- kind: deployment\n  name: full\n- kind: api\n  name: steady\n  predictor:\n    path: p.py\n",
            {"p.py": "def predict(sample, metadata):\n    return 'ok'\n"},
        )
        inferd.run("deploy", str(project))
        pid = inferd.operator_pid()
        assert pid is not None
        subprocess.run(["dd", "if=/dev/zero", f"of={small_disk / 'filler'}", "bs=4k"], capture_output=True)
        os.kill(pid, signal.SIGKILL)

        def answered() -> bool:
            try:
                return inferd.post("/full/steady", {}, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        # Was: the new operator could not write operator.json ("cannot listen on ...: No space
        # left on device"), so its supervisor gave up and the APIs stayed down.
        wait_for(answered, 120, "an answer from the operator restarted on a full disk")
        assert inferd.run("get", "steady").stdout.startswith("status")
    finally:
        stop_operator(inferd)


def test_a_deployment_that_cannot_be_restored_is_named_by_get(inferd: Inferd, tmp_path: Path) -> None:
    projects = {
        name: make_project(
            tmp_path / name,
            f"- kind: deployment\n  name: {name}\n- kind: api\n  name: gone\n  predictor:\n    path: p.py\n",
            {"p.py": "def predict(sample, metadata):\n    return 'ok'\n"},
        )
        for name in ("lost", "locked", "logless")
    }
    project = projects["lost"]
    for folder in projects.values():
        inferd.run("deploy", str(folder))
    state_file = inferd.home / "state.json"
    state = json.loads(state_file.read_text())
    snapshot = state["deployments"]["lost"]["snapshot"]
    inferd.run("down")
    subprocess.run(["rm", "-r", snapshot], check=True)  # a user freeing disk space by hand
    # A snapshot this user cannot read (made by `sudo inferd deploy`): the operator exited at
    # every start (PermissionError), its supervisor restarting it for ever, every API down.
    Path(state["deployments"]["locked"]["snapshot"]).chmod(0)
    # A file where the deployment's log folder goes: the same (NotADirectoryError); it serves.
    (inferd.home / "logs" / "logless").rename(inferd.home / "logs" / "logless.old")
    (inferd.home / "logs" / "logless").write_text("not a folder")
    # The record as an inferd of 2026-11-29 wrote it: no times per API (`last update` became
    # the restart's time).
    record = state["deployments"]["logless"]
    del record["updated_apis"], record["serving"]
    record["updated"] = time.time() - 86400
    state_file.write_text(json.dumps(state))
    # root reads any file: the operator runs without that power, as a user's does
    cut = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    up = subprocess.run(
        [*cut, str(INFERD), "up"], env=inferd.env, capture_output=True, text=True, timeout=120
    )
    assert up.returncode == 0, up.stderr
    # Was: "no APIs are deployed", the reason only in operator.log.
    wait_for(
        lambda: "deployment 'lost' was not restored" in inferd.run("get").stdout,
        30,
        "inferd get naming the deployment it could not restore",
    )
    shown = inferd.run("get").stdout
    assert "no such project folder" in shown and f"inferd deploy {project}" in shown, shown
    assert "deployment 'locked' was not restored" in shown and "Permission denied" in shown, shown
    assert inferd.post("/logless/gone", {}).json() == "ok"
    (logless,) = [api for api in inferd.json("get") if api["deployment"] == "logless"]
    assert logless["last_update"] == pytest.approx(record["updated"], abs=1)
    assert "logs/logless/gone.log (Not a directory)" in (inferd.home / "operator.log").read_text()
    inferd.run("deploy", str(project))
    assert inferd.post("/lost/gone", {}).json() == "ok"
    assert "'lost' was not restored" not in inferd.run("get").stdout


def test_a_deploy_whose_state_cannot_be_saved_changes_nothing(inferd: Inferd, tmp_path: Path) -> None:
    predictor = "def predict(sample, metadata):\n    return {version!r}\n"
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: unsaved\n- kind: api\n  name: same\n  predictor:\n    path: p.py\n"
        "- kind: api\n  name: other\n  predictor:\n    path: p.py\n",
        {"p.py": predictor.format(version="first")},
    )
    inferd.run("deploy", str(project))
    state = inferd.home / "state.json"
    before = state.read_text()
    state.unlink()
    state.mkdir()  # stands for a full disk: state.json cannot be written (root ignores modes)
    try:
        (project / "p.py").write_text(predictor.format(version="second"))
        failed = inferd.run("deploy", str(project), check=False)
        assert failed.returncode == 1 and "cannot save the state" in failed.stderr, failed.stderr
        # Was: the new version served, though the deploy said it failed and a restart would
        # bring the first one back.
        assert inferd.post("/unsaved/same", {}).json() == "first"
        assert inferd.api("same")["status"] == "live"
        # Was: "cannot save the state", the API (or deployment) deleted all the same, and back at
        # the next start.
        for name in ("unsaved/other", "unsaved"):
            refused = inferd.run("delete", name, check=False)
            assert refused.returncode == 1 and "cannot save the state" in refused.stderr, refused.stderr
        assert inferd.post("/unsaved/other", {}).json() == "first"
        assert inferd.api("same")["status"] == "live"
        # Was: a new deployment refused so was awaited for good: /healthz 503 naming its API.
        config = (project / "cortex.yaml").read_text().replace("unsaved", "fresh")
        fresh = make_project(tmp_path / "fresh", config, {"p.py": predictor.format(version="fresh")})
        refused = inferd.run("deploy", str(fresh), check=False)
        assert refused.returncode == 1 and "cannot save the state" in refused.stderr, refused.stderr
        health = requests.get(inferd.url + "/healthz", timeout=30)
        assert health.status_code == 200, health.text
    finally:
        state.rmdir()
        state.write_text(before)
    assert inferd.run("deploy", str(project)).returncode == 0
    assert inferd.post("/unsaved/same", {}).json() == "second"


def test_a_stale_operator_file_never_stops_another_homes_operator(inferd: Inferd, tmp_path: Path) -> None:
    # After a reboot, operator.json (left by an operator that did not stop) may name a pid that
    # now belongs to the operator of another INFERD_HOME: a process of the same command line.
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "-m", "inferd.operator.daemon"],
        env=dict(os.environ, INFERD_HOME=str(tmp_path / "other-home")),
    )
    try:
        inferd.home.mkdir(parents=True)
        (inferd.home / "operator.json").write_text(
            json.dumps({"pid": other.pid, "admin_port": 1, "gateway": inferd.url, "supervisor": None})
        )
        (inferd.home / "token").write_text("stale")
        result = inferd.run("down", check=False)
        # Was: "the inferd operator stopped", the other home's operator sent SIGTERM.
        assert result.stdout.strip() == "the inferd operator is not running", result
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_deployment_still_being_restored_is_said_by_get(inferd: Inferd, tmp_path: Path) -> None:
    # Was: "no APIs are deployed" while a restart brought it back (its model's origin not
    # answering, tried three times: half a minute; a project holding a 20 GiB sparse file: 90 s)
    origin = HangingOrigin(example("iris-onnx") / "models" / "iris.onnx")
    try:
        project = make_project(
            tmp_path / "p",
            f"- kind: deployment\n  name: far\n- kind: api\n  name: far\n  onnx:\n    model: {origin.url}\n",
            {},
        )
        inferd.run("deploy", str(project))
        origin.hang()
        inferd.run("down")
        inferd.run("up")
        shown = inferd.run("get").stdout
        assert (
            "deployment 'far' is being restored (the operator started again): its APIs are shown once it is"
            in shown
        )
        assert "no APIs are deployed" not in shown
        assert "deployment 'far' is being restored" in inferd.run("get", "-d", "far").stdout
    finally:
        origin.close()


LINGERER = """
import atexit, os, threading

def _flush_for_ever():
    threading.Event().wait()  # an exit handler that waits for what never comes (a dead collector)

atexit.register(_flush_for_ever)

def predict(sample, metadata):
    return {"replica": os.getpid()}
"""


def test_a_replica_whose_exit_handler_never_returns_is_killed_once_let_go(
    inferd: Inferd, tmp_path: Path
) -> None:
    # Was: a replica let go (deleted, replaced, scaled down) was waited for until it exited, so
    # an exit handler that never returned kept it, and its room, for ever: `inferd delete` gave
    # up after 600 s ("still draining"), and the API could never be deployed again.
    project = make_project(
        tmp_path / "linger",
        "- kind: deployment\n  name: linger\n- kind: api\n  name: stays\n  predictor:\n    path: p.py\n",
        {"p.py": LINGERER},
    )
    inferd.run("deploy", str(project))
    replica = inferd.post("/linger/stays", {}).json()["replica"]
    try:
        inferd.run("delete", "stays", timeout=120)
        assert not process_alive(replica)
        assert "has not exited 10s after it was let go" in inferd.run("logs", "linger/stays").stdout
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(replica, signal.SIGKILL)
