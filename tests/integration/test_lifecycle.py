"""Replicas and the operator under faults, as a client sees them: an update that fails while the
old version's replicas die, an operator that comes back while requests flow."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from inferd.config.load import load_project
from inferd.engine.local import LocalEngine
from inferd.gateway.app import Gateway
from tests.conftest import INFERD, make_project, wait_for
from tests.integration.conftest import Inferd, free_port, stop_operator

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


class _SlowOrigin(http.server.BaseHTTPRequestHandler):
    """A model origin that answers at once until ``delay`` is set (then each request waits)."""

    delay = 0.0
    body = b"weights"

    def do_HEAD(self) -> None:
        time.sleep(self.delay)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("ETag", '"w1"')
        self.end_headers()

    def do_GET(self) -> None:
        self.do_HEAD()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowOrigin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/m.bin"
    server.shutdown()
    server.server_close()
    _SlowOrigin.delay = 0.0


def test_an_api_being_restored_is_never_a_404(inferd: Inferd, tmp_path: Path, origin: str) -> None:
    # Was: a restarted operator's gateway listened before its APIs were back, and answered
    # `404 no API at /back/api (endpoints: none)` meanwhile (seconds, while the model's origin
    # was asked again): a client took the API for deleted. Now 503 with Retry-After, or it waits.
    project = make_project(
        tmp_path / "back",
        "- kind: deployment\n  name: back\n- kind: api\n  name: api\n"
        f"  predictor:\n    path: p.py\n    model: {origin}\n",
        {"p.py": PID},
    )
    inferd.run("deploy", str(project))
    assert inferd.post("/back/api", {}).ok
    _SlowOrigin.delay = 3.0  # the restore asks the origin again: the API comes back 3 s later
    os.kill(inferd.operator_pid() or 0, signal.SIGKILL)
    answers: list[requests.Response] = []

    def answered() -> bool:
        try:
            answers.append(inferd.post("/back/api", {}, timeout=60))
        except requests.ConnectionError:  # the gateway is not listening yet
            return False
        return answers[-1].ok

    wait_for(answered, 90, "the restored API to answer")
    refused = [answer for answer in answers if not answer.ok]
    assert refused  # the gateway listened while the model's origin kept the API from coming back
    assert all(answer.status_code == 503 and answer.headers.get("Retry-After") for answer in refused), [
        (answer.status_code, answer.text) for answer in refused
    ]
    assert all("restor" in answer.json()["error"] for answer in refused)


def test_inferd_serve_answers_503_not_404_while_it_sets_its_apis_up(tmp_path: Path, origin: str) -> None:
    # Was: `inferd serve` listened before its APIs existed, and answered `404 no API at ...`
    # while it set them up (here: the model's origin is slow): the API seemed not to exist.
    project = make_project(
        tmp_path / "up",
        "- kind: deployment\n  name: up\n- kind: api\n  name: api\n"
        f"  predictor:\n    path: p.py\n    model: {origin}\n",
        {"p.py": PID},
    )
    _SlowOrigin.delay = 2.0
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(INFERD), "serve", str(project), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    answers: list[requests.Response] = []

    def answered() -> bool:
        assert server.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            answers.append(requests.post(f"http://127.0.0.1:{port}/up/api", json={}, timeout=60))
        except requests.ConnectionError:  # not listening yet
            return False
        return answers[-1].ok

    try:
        wait_for(answered, 120, "the API to answer")
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    refused = [answer for answer in answers if not answer.ok]
    assert refused  # it listened while the origin held the API back
    assert all(answer.status_code == 503 and answer.headers.get("Retry-After") for answer in refused)
    assert all("setting up its APIs" in answer.json()["error"] for answer in refused)


def test_an_update_that_cannot_fit_leaves_the_old_version_serving(tmp_path: Path) -> None:
    # Was: the rollout retired the old replicas one by one to make room that could never be
    # enough (the new version needs 300m, 200m would be free without them): the API had no
    # replica left and answered every request 503 `compute unavailable`.
    runner = Inferd(tmp_path / "home")
    runner.env["INFERD_CPUS"] = "1"
    config = (
        "- kind: deployment\n  name: fit\n"
        "- kind: api\n  name: keep\n  predictor:\n    path: p.py\n  compute:\n    cpu: 800m\n"
        "- kind: api\n  name: grow\n  predictor:\n    path: p.py\n  compute:\n    min_replicas: 2\n"
        "    cpu: 100m\n"
    )
    project = make_project(tmp_path / "fit", config, {"p.py": PID})
    try:
        runner.run("deploy", str(project))
        (project / "cortex.yaml").write_text(config.replace("cpu: 100m", "cpu: 300m"))
        deployed = runner.run("deploy", str(project), check=False)
        assert deployed.returncode == 1
        assert (
            "api 'grow' failed (compute unavailable): needs cpu 0.3, 0.2 of the 1 INFERD_CPUS"
            in deployed.stderr
        )
        assert "the previous version keeps serving" in deployed.stderr
        info = runner.api("grow")
        assert (info["status"], info["available"], info["up_to_date"]) == ("compute unavailable", 2, 0)
        assert all(runner.post("/fit/grow", {}).ok for _ in range(10))
    finally:
        stop_operator(runner)


def test_every_api_of_a_full_machine_rolls_when_all_change_at_once(tmp_path: Path) -> None:
    # Was: five APIs filling the machine (5 x 200m of INFERD_CPUS=1), all updated by one edit:
    # each counted the others' old replicas twice (as replicas, and as the room their rollouts
    # reserve), so none fitted even once its old replicas were gone; none moved, one had retired
    # its only replica, and `inferd deploy` waited until its timeout.
    runner = Inferd(tmp_path / "home")
    runner.env["INFERD_CPUS"] = "1"
    config = "- kind: deployment\n  name: full\n" + "".join(
        f"- kind: api\n  name: a{i}\n  predictor:\n    path: p.py\n" for i in range(5)
    )
    project = make_project(tmp_path / "full", config, {"p.py": PID})
    try:
        runner.run("deploy", str(project))
        before = {runner.post(f"/full/a{i}", {}).json() for i in range(5)}
        (project / "p.py").write_text(PID + "\n# an edit every API's version includes\n")
        runner.run("deploy", str(project), timeout=240)
        infos = [runner.api(f"a{i}") for i in range(5)]
        assert all((info["status"], info["up_to_date"]) == ("live", 1) for info in infos), infos
        after = {runner.post(f"/full/a{i}", {}).json() for i in range(5)}
        assert len(after) == 5 and not after & before  # five new replicas answer
    finally:
        stop_operator(runner)


def test_requests_wait_for_the_replica_an_update_starts_in_the_room_of_the_old_ones(tmp_path: Path) -> None:
    # Was: once the last old replica had made room for the new version (of which one replica
    # fits, not the two min_replicas asks), the API was `compute unavailable` and every request
    # was refused at once (503) while that new replica loaded, though it would answer.
    runner = Inferd(tmp_path / "home")
    runner.env["INFERD_CPUS"] = "1"
    config = (
        "- kind: deployment\n  name: fit\n"
        "- kind: api\n  name: keep\n  predictor:\n    path: p.py\n  compute:\n    cpu: 200m\n"
        "- kind: api\n  name: grow\n  predictor:\n    path: slow.py\n    metadata: {load: 0}\n"
        "  compute:\n    min_replicas: 2\n    cpu: 400m\n"
    )
    slow = "import time\n\n\ndef init(model_path, metadata):\n    time.sleep(metadata['load'])\n\n\n" + PID
    project = make_project(tmp_path / "fit", config, {"p.py": PID, "slow.py": slow})
    try:
        runner.run("deploy", str(project))
        # the new version loads for 3 s; one replica of it fits once both old ones are gone
        (project / "cortex.yaml").write_text(
            config.replace("cpu: 400m", "cpu: 500m").replace("load: 0", "load: 3")
        )
        deployed = runner.run("deploy", str(project), check=False)
        assert "api 'grow' failed (compute unavailable): needs cpu 0.5" in deployed.stderr
        answer = runner.post("/fit/grow", {}, timeout=60)
        assert answer.status_code == 200, answer.text
        info = runner.api("grow")
        assert (info["status"], info["up_to_date"], info["requested"]) == ("compute unavailable", 1, 2)
        assert "needs cpu 0.5" in info["error"]
    finally:
        stop_operator(runner)


def test_two_apis_rolling_at_once_on_a_full_machine_both_go_live(tmp_path: Path) -> None:
    # Was: the first API whose old replicas were gone found the room the other's rollout still
    # held, was `compute unavailable` for a moment, and the deploy failed (exit 1) though both
    # APIs were live a second later.
    runner = Inferd(tmp_path / "home")
    runner.env["INFERD_CPUS"] = "1"
    config = (
        "- kind: deployment\n  name: both\n"
        "- kind: api\n  name: big\n  predictor:\n    path: p.py\n  compute:\n    min_replicas: 2\n"
        "    cpu: 400m\n"
        "- kind: api\n  name: small\n  predictor:\n    path: p.py\n  compute:\n    min_replicas: 2\n"
        "    cpu: 100m\n"
    )
    project = make_project(tmp_path / "both", config, {"p.py": PID})
    try:
        runner.run("deploy", str(project))
        for edit in range(2):  # a new version of both (the file is in each API's version)
            (project / "p.py").write_text(PID + f"\n# edit {edit}\n")
            deployed = runner.run("deploy", str(project), check=False)
            assert deployed.returncode == 0, deployed.stderr
            assert [api["status"] for api in runner.json("get")] == ["live", "live"]
    finally:
        stop_operator(runner)


def test_a_deploy_right_after_a_delete_serves_its_requests(tmp_path: Path) -> None:
    # Was: a deploy that came before the engine's next step (within 0.25 s of `inferd delete`)
    # kept the deleted API's replica, ready and of the same version, as the new API's, though the
    # gateway's new queue for the API had no replica: every request waited for its timeout.
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: d\n- kind: api\n  name: echo\n  predictor:\n    path: p.py\n",
        {"p.py": PID},
    )

    async def scenario() -> tuple[int, int]:
        gateway = Gateway()
        engine = LocalEngine(gateway, home=tmp_path / "home")
        await gateway.start("127.0.0.1", 0)
        url = f"http://127.0.0.1:{gateway.ports[0]}/d/echo"
        try:
            await engine.apply(load_project(project))
            while not all(queue.ready for queue in gateway.apis.values()):
                await asyncio.sleep(0.05)
            first = (await asyncio.to_thread(requests.post, url, json={}, timeout=60)).json()
            engine.delete("d/echo")
            await engine.apply(load_project(project))  # no step of the engine in between
            answer = await asyncio.to_thread(requests.post, url, json={}, timeout=60)
            assert answer.status_code == 200, answer.text
            return first, answer.json()
        finally:
            await engine.stop()
            await gateway.close()

    first, second = asyncio.run(scenario())
    assert first != second  # a new replica answers: the deleted one was let go
