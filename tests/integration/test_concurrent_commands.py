"""Commands run at the same time against one operator: what each says, and what is left."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from inferd.client import Client as OperatorClient
from tests.conftest import INFERD, from_a_terminal, make_project, process_alive, wait_for
from tests.integration.conftest import HangingOrigin, Inferd
from tests.integration.test_operator import HeldModel


def start(inferd: Inferd, *args: str) -> subprocess.Popen[str]:
    """``inferd ARGS`` in the background."""
    return subprocess.Popen(
        [str(INFERD), *args], env=inferd.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


NEAR = "- kind: deployment\n  name: race\n- kind: api\n  name: near\n  onnx:\n    model: m.onnx\n"
# A splitter's deployment (the candidate's version: VERSION's value), and an API to add to it whose
# model download waits (FAR's ``{url}``: a HeldModel's).
SHOP = (
    "- kind: deployment\n  name: shop\n"
    "- kind: api\n  name: champion\n  predictor:\n    path: p.py\n"
    "- kind: api\n  name: candidate\n  predictor:\n    path: p.py\n    metadata: {v: VERSION}\n"
    "- kind: traffic_splitter\n  name: front\n  apis:\n"
    "  - name: champion\n    weight: 100\n  - name: candidate\n    weight: 0\n"
)
ONE = {"p.py": "def predict(sample, metadata):\n    return 1\n"}
FAR = "- kind: api\n  name: far\n  onnx:\n    model: {url}\n"


def deploy_held(inferd: Inferd, project: Path, config: str, origin: HeldModel) -> subprocess.Popen[str]:
    """``inferd deploy`` of ``project`` as ``config`` (its ``{url}``: ``origin``'s), in the
    background, once the download that holds the deployment has begun."""
    (project / "cortex.yaml").write_text(config.replace("{url}", origin.url))
    deploy = start(inferd, "deploy", str(project))
    assert origin.asked.wait(60)
    return deploy


def promote_waits(inferd: Inferd, promote: subprocess.Popen[str]) -> None:
    """Until the operator says the promote waits for the deploy in progress (or it ended)."""
    waiting = "deployment 'shop': the promote waits for the deploy in progress to finish"
    wait_for(
        lambda: promote.poll() is not None or waiting in (inferd.home / "operator.log").read_text(),
        60,
        "the promote to reach the operator",
    )


def test_a_delete_during_a_deploy_of_the_same_deployment_is_not_undone(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """`inferd deploy` then `inferd delete` of the same deployment: the delete waits for the
    deploy in progress, then removes everything (it was: the deploy brought the deleted
    deployment back, and the delete waited for its APIs to drain until its timeout)."""
    project = make_project(tmp_path / "p", NEAR, {}, {"m.onnx": iris_onnx_model})
    inferd.run("deploy", str(project))
    origin = HeldModel(iris_onnx_model)
    try:
        # The update adds an API whose model download waits: the deploy holds the deployment.
        far = f"- kind: api\n  name: far\n  onnx:\n    model: {origin.url}\n"
        (project / "cortex.yaml").write_text(NEAR + far)

        deploy = start(inferd, "deploy", str(project))
        assert origin.asked.wait(60)
        delete = start(inferd, "delete", "race", "--timeout", "60")
        waiting = "deployment 'race': the delete waits for the deploy in progress to finish"
        wait_for(
            lambda: delete.poll() is not None or waiting in (inferd.home / "operator.log").read_text(),
            60,
            "the delete to reach the operator",
        )
        origin.release()
        deployed = deploy.communicate(timeout=120)
        deleted = delete.communicate(timeout=120)
    finally:
        origin.close()
    assert delete.returncode == 0, deleted
    assert deleted[0].strip() == "deleting deployment 'race'"
    # The deploy ends with one sentence saying its APIs went, not with a success.
    assert deploy.returncode == 1, deployed
    assert "api 'far' was removed before it became live" in deployed[1]
    wait_for(lambda: inferd.json("get") == [], 60, "every API of the deleted deployment gone")
    assert "race" not in json.loads((inferd.home / "state.json").read_text())["deployments"]


def test_down_while_a_deploy_downloads_its_model_stops_the_operator(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """`inferd down` does not wait for a model download (or a pip install) that a deploy in
    progress runs: it was 'the operator (pid N) is still running after 60s', exit 1, and the
    operator went on until the download ended."""
    origin = HeldModel(iris_onnx_model)
    try:
        far = f"- kind: api\n  name: remote\n  onnx:\n    model: {origin.url}\n"
        project = make_project(tmp_path / "p", "- kind: deployment\n  name: far\n" + far)
        inferd.run("up")
        pid = inferd.operator_pid()
        assert pid is not None
        deploy = start(inferd, "deploy", str(project))
        assert origin.asked.wait(60)  # the download is under way, and waits
        down = inferd.run("down", check=False, timeout=120)
        deployed = deploy.communicate(timeout=60)
    finally:
        origin.close()
    assert (down.returncode, down.stdout.strip()) == (0, "the inferd operator stopped"), down.stderr
    assert not process_alive(pid)
    # The deploy it cut short says so in one sentence.
    assert deploy.returncode == 1
    assert deployed[1].strip() == (
        "error: the operator stopped before it answered (`inferd down`, or it crashed): "
        "see `inferd get` once it is up again"
    )


def _pip_processes(home: Path) -> list[int]:
    """The pids of pip processes installing into ``home``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if entry.name.isdigit() and "install" in command and str(home / "envs") in command:
            found.append(int(entry.name))
    return found


def test_down_during_a_requirements_install_leaves_no_pip_behind(inferd: Inferd, tmp_path: Path) -> None:
    """pip ends with the operator (it was left running, its parent gone, writing into a
    folder nobody would use): here, an install waiting on a package index that never answers."""
    (tmp_path / "empty").write_bytes(b"")
    index = HeldModel(tmp_path / "empty")  # answers nothing until released
    predictor = "def predict(sample, metadata):\n    return sample\n"
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: pkgs\n- kind: api\n  name: echo\n  predictor:\n    path: p.py\n",
        {
            "p.py": predictor,
            "requirements.txt": f"--index-url {index.url.rsplit('/', 1)[0]}/simple/\nnot-on-any-index==1.0\n",
        },
    )
    try:
        deploy = start(inferd, "deploy", str(project))
        assert index.asked.wait(120)  # pip is asking the index
        pips = _pip_processes(inferd.home)
        assert pips
        inferd.run("down")
        deploy.communicate(timeout=60)
        wait_for(lambda: not any(process_alive(pid) for pid in pips), 30, "pip to end with the operator")
    finally:
        for pid in _pip_processes(inferd.home):  # (only when the test failed)
            os.kill(pid, signal.SIGKILL)
        index.close()


def test_a_delete_whose_apis_are_deployed_again_while_they_drain_ends(inferd: Inferd, tmp_path: Path) -> None:
    """`inferd delete` waits for the deleted APIs to drain; when the deployment is deployed again
    meanwhile, the wait ends and says so (it waited for its timeout, 600 s, then exit 1)."""
    release = tmp_path / "release"
    predictor = (
        "import pathlib, time\n"
        "def predict(sample, metadata):\n"
        f"    while sample.get('hold') and not pathlib.Path({str(release)!r}).exists():\n"
        "        time.sleep(0.05)\n"
        "    return 'ok'\n"
    )
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: again\n- kind: api\n  name: echo\n  predictor:\n    path: p.py\n",
        {"p.py": predictor},
    )
    inferd.run("deploy", str(project))
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(inferd.post, "/again/echo", {"hold": True}, 120)  # keeps a replica draining
        wait_for(lambda: inferd.status("echo")["in_flight"] == 1, 60, "the request at the replica")
        delete = start(inferd, "delete", "again", "--timeout", "120")
        try:
            wait_for(lambda: inferd.status("echo")["status"] == "stopping", 60, "the API draining")
            inferd.run("deploy", str(project))
            deleted = delete.communicate(timeout=60)
        finally:
            release.touch()
            if delete.poll() is None:
                delete.kill()
                delete.wait()
            for pipe in (delete.stdout, delete.stderr):  # a failure here leaves no open file behind
                if pipe is not None:
                    pipe.close()
        assert held.result().status_code == 200  # the drained request was answered
    assert delete.returncode == 0, deleted
    assert deleted[0].strip() == "deleting deployment 'again'"
    assert deleted[1].strip() == "again/echo was deployed again while it drained"
    assert inferd.post("/again/echo", {}).json() == "ok"


def test_a_deploy_while_the_operator_stops_is_refused(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """`inferd deploy` during `inferd down` (the operator draining a request) is refused in one
    sentence: it said "deployment started" and "live", exit 0, and the operator stopped."""
    release = tmp_path / "release"
    predictor = (
        "import pathlib, time\n"
        "def predict(sample, metadata):\n"
        f"    while not pathlib.Path({str(release)!r}).exists():\n"
        "        time.sleep(0.05)\n"
        "    return 'ok'\n"
    )
    held_project = make_project(
        tmp_path / "held",
        "- kind: deployment\n  name: held\n- kind: api\n  name: echo\n  predictor:\n    path: p.py\n",
        {"p.py": predictor},
    )
    other = make_project(tmp_path / "other", NEAR, {}, {"m.onnx": iris_onnx_model})
    inferd.run("deploy", str(held_project))
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(inferd.post, "/held/echo", {}, 120)  # holds the drain
        wait_for(lambda: inferd.status("echo")["in_flight"] == 1, 60, "the request at the replica")
        down = start(inferd, "down")
        try:
            wait_for(
                lambda: "stopping: draining requests" in (inferd.home / "operator.log").read_text(),
                60,
                "the operator draining",
            )
            refused = inferd.run("deploy", str(other), check=False)
        finally:
            release.touch()
            stopped = down.communicate(timeout=120)
        assert held.result().status_code == 200
    assert (refused.returncode, refused.stderr.strip()) == (
        1,
        "error: the operator is stopping (`inferd down`); deploy again once it has stopped",
    ), refused.stdout
    assert (down.returncode, stopped[0].strip()) == (0, "the inferd operator stopped")
    assert "race" not in json.loads((inferd.home / "state.json").read_text())["deployments"]


def test_two_deployments_deployed_at_once_cannot_both_take_an_endpoint(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """A deploy takes its endpoints when its models are in, so the check that no other
    deployment serves them passed for both of two deploys at once: the second to finish took the
    endpoint from the first, whose API was live in `inferd get` and never reached (or, the other
    way round, the deploy that was told `deployment started` lost its endpoint a minute later)."""
    origin = HeldModel(iris_onnx_model)
    try:
        first = make_project(
            tmp_path / "first",
            "- kind: deployment\n  name: first\n- kind: api\n  name: slow\n  endpoint: /shared\n"
            f"  onnx:\n    model: {origin.url}\n",
        )
        second = make_project(
            tmp_path / "second",
            "- kind: deployment\n  name: second\n- kind: api\n  name: quick\n  endpoint: /shared\n"
            "  predictor:\n    path: p.py\n",
            {"p.py": "def predict(sample, metadata):\n    return 'quick'\n"},
        )
        inferd.run("up")
        deploy = start(inferd, "deploy", str(first))
        assert origin.asked.wait(60)  # the first deploy is downloading its model
        refused = inferd.run("deploy", str(second), check=False)
        origin.release()
        deployed = deploy.communicate(timeout=120)
    finally:
        origin.close()
    assert (refused.returncode, refused.stderr.strip()) == (
        2,
        "error: api 'quick': endpoint /shared is already served by api 'slow' of deployment 'first' "
        "(being deployed)",
    ), refused.stdout
    assert deploy.returncode == 0, deployed
    assert requests.get(inferd.url + "/shared", timeout=30).json()["name"] == "slow"


def test_a_promote_during_a_deploy_of_its_deployment_is_not_undone(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """`inferd promote` while a deploy of the splitter's deployment is in progress waits for it,
    then gives the API its 100%: it answered at once, and the deploy, when it ended, set the
    file's weights back without a word (a promotion lasts until the next deploy, not the one
    before it)."""
    project = make_project(tmp_path / "p", SHOP.replace("VERSION", "1"), ONE)
    inferd.run("deploy", str(project))
    origin = HeldModel(iris_onnx_model)
    try:
        deploy = deploy_held(inferd, project, SHOP.replace("VERSION", "1") + FAR, origin)
        promote = start(inferd, "promote", "front", "candidate")
        promote_waits(inferd, promote)
        origin.release()
        deployed = deploy.communicate(timeout=120)
        promoted = promote.communicate(timeout=120)
    finally:
        origin.close()
    assert deploy.returncode == 0, deployed
    assert promote.returncode == 0, promoted
    (front,) = inferd.json("get", "front")
    assert {api["name"]: api["weight"] for api in front["apis"]} == {"champion": 0, "candidate": 100}


def test_healthz_awaits_a_deploy_in_progress_when_another_one_ends(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """/healthz answers 503 naming the APIs of a deploy in progress: when a deploy of another
    deployment ended meanwhile, it forgot them (200 with an API still on its way)."""
    origin = HeldModel(iris_onnx_model)
    try:
        slow = make_project(
            tmp_path / "slow",
            f"- kind: deployment\n  name: slow\n- kind: api\n  name: far\n  onnx:\n    model: {origin.url}\n",
        )
        quick = make_project(
            tmp_path / "quick",
            "- kind: deployment\n  name: quick\n- kind: api\n  name: near\n  predictor:\n    path: p.py\n",
            {"p.py": "def predict(sample, metadata):\n    return 1\n"},
        )
        inferd.run("up")
        deploy = start(inferd, "deploy", str(slow))
        assert origin.asked.wait(60)  # the first deploy is downloading its model
        inferd.run("deploy", str(quick))
        health = requests.get(inferd.url + "/healthz", timeout=30)
        origin.release()
        deployed = deploy.communicate(timeout=120)
    finally:
        origin.close()
    assert (health.status_code, "far" in health.text) == (503, True), health.text
    assert deploy.returncode == 0, deployed
    assert requests.get(inferd.url + "/healthz", timeout=30).status_code == 200


def test_a_promote_with_min_agreement_waiting_for_a_deploy_refuses_a_version_never_replayed(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """`inferd promote --min-agreement` checks that the last replay judged the version running.
    A promote made during a deploy waits for it, and the deploy may bring the API a new version:
    checked before the wait only, the promote gave 100% to a version no replay had seen."""
    project = make_project(tmp_path / "p", SHOP.replace("VERSION", "1"), ONE)
    inferd.run("deploy", str(project))
    judged = inferd.api("candidate")["version"]
    replay = inferd.home / "replays" / "shop" / "candidate.json"
    replay.parent.mkdir(parents=True, exist_ok=True)
    replay.write_text(
        json.dumps(
            {"api": "shop/champion", "against": "shop/candidate", "version": judged, "shadow": False}
            | {"agreement": 1.0, "requests": 50, "disagreements": 0}
        )
    )
    origin = HeldModel(iris_onnx_model)
    try:  # a new candidate version, deployed after the API whose model download waits
        head, rest = SHOP.replace("VERSION", "2").split("- kind: api\n  name: champion", 1)
        deploy = deploy_held(inferd, project, head + FAR + "- kind: api\n  name: champion" + rest, origin)
        promote = start(inferd, "promote", "front", "candidate", "--min-agreement", "0.9")
        promote_waits(inferd, promote)
        origin.release()
        deployed = deploy.communicate(timeout=120)
        promoted = promote.communicate(timeout=120)
    finally:
        origin.close()
    assert deploy.returncode == 0, deployed
    now = inferd.api("candidate")["version"]
    assert now != judged
    assert promote.returncode == 1, promoted
    assert f"judged its version {judged}, and it runs {now} now" in promoted[1], promoted
    (front,) = inferd.json("get", "front")
    assert {api["name"]: api["weight"] for api in front["apis"]} == {"champion": 100, "candidate": 0}


def test_a_deploy_during_a_restore_cannot_take_the_restored_deployments_endpoint(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """After a restart, a deployment whose model origin does not answer takes its time to come
    back; a deploy of another deployment meanwhile was checked against what served alone, and
    took its endpoint (then the restore took it back: the deploy told `created` lost it)."""
    origin = HangingOrigin(iris_onnx_model)
    try:
        far = make_project(
            tmp_path / "far",
            f"- kind: deployment\n  name: far\n- kind: api\n  name: far\n  endpoint: /shared\n"
            f"  onnx:\n    model: {origin.url}\n",
        )
        near = make_project(
            tmp_path / "near",
            "- kind: deployment\n  name: near\n- kind: api\n  name: near\n  endpoint: /shared\n"
            "  predictor:\n    path: p.py\n",
            {"p.py": "def predict(sample, metadata):\n    return 'near'\n"},
        )
        inferd.run("deploy", str(far))
        origin.hang()
        inferd.run("down")
        inferd.run("up")
        assert "deployment 'far' is being restored" in inferd.run("get").stdout
        refused = inferd.run("deploy", str(near), check=False)
    finally:
        origin.close()
    assert (refused.returncode, refused.stderr.strip()) == (
        2,
        "error: api 'near': endpoint /shared is already served by api 'far' of deployment 'far' "
        "(being restored)",
    ), refused.stdout


def test_ctrl_c_on_a_promote_waiting_for_a_deploy_says_the_promote_goes_on(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """A promote waits for a deploy of its deployment in progress: Ctrl-C then stops the waiting,
    not the promote. It said `stopped (Ctrl-C)`, and the splitter was promoted all the same once
    the deploy ended."""
    project = make_project(tmp_path / "p", SHOP.replace("VERSION", "1"), ONE)
    inferd.run("deploy", str(project))
    origin = HeldModel(iris_onnx_model)
    try:
        deploy = deploy_held(inferd, project, SHOP.replace("VERSION", "1") + FAR, origin)
        promote = from_a_terminal(["promote", "front", "candidate"], inferd.env)
        promote_waits(inferd, promote)
        promote.send_signal(signal.SIGINT)
        stopped = promote.communicate(timeout=60)
        origin.release()
        deployed = deploy.communicate(timeout=120)
    finally:
        origin.close()
    assert deploy.returncode == 0, deployed
    assert (promote.returncode, stopped[0]) == (1, ""), stopped
    assert stopped[1].splitlines()[-1] == (
        "error: stopped waiting (Ctrl-C); the promote goes on in the operator (once a deploy of "
        "deployment 'shop' in progress ends): see `inferd get front`"
    )
    (front,) = inferd.json("get", "front")
    assert {api["name"]: api["weight"] for api in front["apis"]} == {"champion": 0, "candidate": 100}


def test_down_during_a_restore_stops_without_waiting_for_it(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """`inferd down` while the operator restores its deployments after a restart stops it there.
    It waited for the restore: a model origin that does not answer (3 downloads of 10 s each
    here; a big model's download takes minutes, past down's 60 s), then started the APIs only to
    stop them."""
    origin = HangingOrigin(iris_onnx_model)
    try:
        far = make_project(
            tmp_path / "far",
            f"- kind: deployment\n  name: far\n- kind: api\n  name: far\n  onnx:\n    model: {origin.url}\n",
        )
        inferd.run("deploy", str(far))
        origin.hang()
        inferd.run("down")
        inferd.run("up")
        assert "deployment 'far' is being restored" in inferd.run("get").stdout
        down = inferd.run("down", check=False)
    finally:
        origin.close()
    assert (down.returncode, down.stdout.strip()) == (0, "the inferd operator stopped"), down
    second = (inferd.home / "operator.log").read_text().split("stopping: draining requests")[1]
    assert "restored deployment 'far'" not in second, second
    assert "stopping: the restore of the deployments is cut short" in second, second
    inferd.run("up")  # the deployment is still recorded: the next start restores it
    wait_for(lambda: "live" in inferd.run("get").stdout, 60, f"far restored; {inferd.run('get').stdout}")


STARTER = "\n".join(
    [
        "import sys",
        "from pathlib import Path",
        "from inferd.client import Client",
        "Client(Path(sys.argv[1])).start()",
    ]
)


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_a_start_whose_caller_died_is_waited_for_not_started_twice(
    inferd: Inferd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook's kernel restarted (SIGKILL; an interrupt, SIGINT, leaves the same) while its
    ``Client().deploy`` started the operator: the supervisor it had started went on, in a session
    of its own, but was not yet named in ``operator.json``. The next deploy started a second one,
    whose operator failed with "cannot listen on 127.0.0.1:PORT: Address already in use; set
    INFERD_PORT to another port" (found with a real Jupyter kernel, interrupted mid-deploy)."""
    caller = subprocess.Popen([sys.executable, "-c", STARTER, str(inferd.home)], env=inferd.env)
    first = 0
    try:
        # killed once its supervisor has started the operator, which is not up yet
        while not (first and _children(first)) and caller.poll() is None:
            first = next(iter(_children(caller.pid)), 0)
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait()
        assert first and not (inferd.home / "operator.json").exists()
        monkeypatch.setenv("INFERD_HOME", str(inferd.home))
        monkeypatch.setenv("INFERD_PORT", str(inferd.port))
        OperatorClient(inferd.home).start()  # the next cell's deploy, at once
        assert inferd.operator_pid("supervisor") == first
        assert inferd.run("get").returncode == 0
    finally:
        inferd.run("down", check=False)
        with contextlib.suppress(ProcessLookupError):
            os.kill(first, signal.SIGKILL)
