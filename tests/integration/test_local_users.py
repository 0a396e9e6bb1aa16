"""What another user of the machine can reach of a deployment: nothing in ``$INFERD_HOME``."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from inferd import Client
from tests.conftest import INFERD, Server, example, make_project, wait_for
from tests.integration.conftest import Inferd

YAML = """
- kind: deployment
  name: private
- kind: api
  name: recorded
  predictor: {path: predictor.py}
  compute: {cpu: 0.1}
  payload_log: {sample: 1.0}
"""


def test_the_folders_of_a_home_others_may_read_are_the_owners_only(inferd: Inferd, tmp_path: Path) -> None:
    """``INFERD_HOME`` may name a folder that exists and others may read (``mkdir /srv/inferd``):
    the snapshots of deployed projects in it were readable by every user of the machine, its
    logs and payload logs listed. inferd's folders in it are the owner's only."""
    inferd.home.mkdir()
    inferd.home.chmod(0o755)
    project = make_project(
        tmp_path / "project", YAML, {"predictor.py": "def predict(sample, metadata):\n    return sample\n"}
    )
    inferd.run("deploy", str(project), "--wait")
    assert inferd.post("/private/recorded", {"secret": 1}).status_code == 200
    wait_for(lambda: any((inferd.home / "payloads").rglob("*.jsonl")), 30, "a payload log")
    for name in ("projects", "cache", "envs", "logs", "payloads"):
        mode = (inferd.home / name).stat().st_mode
        assert stat.S_ISDIR(mode) and mode & 0o077 == 0, (name, oct(mode))
    assert inferd.home.stat().st_mode & 0o777 == 0o755  # the user's own folder is left as it is


def test_no_file_of_a_home_others_may_read_is_theirs_to_write_under_umask_000(
    inferd: Inferd, tmp_path: Path
) -> None:
    """Under umask 000, operator.beat, operator.start.lock and replica-ids were 0666 in a home
    others may read: any user could keep a hung operator's beat fresh or renumber its replicas."""
    inferd.home.mkdir()
    inferd.home.chmod(0o755)
    project = make_project(
        tmp_path / "project", YAML, {"predictor.py": "def predict(sample, metadata):\n    return sample\n"}
    )
    deploy = [str(INFERD), "deploy", str(project), "--wait"]
    done = subprocess.run(deploy, env=inferd.env, umask=0, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: (inferd.home / "operator.beat").exists(), 30, "the operator's beat")
    names = {path.name for path in inferd.home.iterdir()}
    assert {"operator.beat", "operator.start.lock", "replica-ids"} <= names
    writable = {
        path.name: oct(path.stat().st_mode) for path in inferd.home.iterdir() if path.stat().st_mode & 0o022
    }
    assert writable == {}


def test_a_home_inferd_serve_makes_is_the_owners_only(
    serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator made its home 0700, ``inferd serve`` 0755 (as the first payload log's parent)."""
    home = tmp_path / "home"
    monkeypatch.setenv("INFERD_HOME", str(home))
    project = make_project(
        tmp_path / "project", YAML, {"predictor.py": "def predict(sample, metadata):\n    return sample\n"}
    )
    server = serve(project)
    assert server.post("/private/recorded", {"secret": 1}).status_code == 200
    wait_for(lambda: any((home / "payloads").rglob("*.jsonl")), 30, "a payload log")
    for folder in (home, home / "payloads"):
        assert folder.stat().st_mode & 0o077 == 0, (folder, oct(folder.stat().st_mode))


@pytest.mark.parametrize("made", [True, False], ids=["a home others may read", "no home yet"])
def test_the_projects_the_python_client_writes_are_the_owners_only(
    inferd: Inferd, monkeypatch: pytest.MonkeyPatch, made: bool
) -> None:
    """``Client().deploy`` writes the model and the pickled handlers into ``workspace``: it was
    made 0755 (as the parent of its first file), and the home too when the client made it."""
    if made:
        inferd.home.mkdir()
        inferd.home.chmod(0o755)
    monkeypatch.setenv("INFERD_HOME", str(inferd.home))
    monkeypatch.setenv("INFERD_PORT", str(inferd.port))
    Client().deploy("sdk-private", "raw", example("iris-onnx") / "models" / "iris.onnx")
    if made:
        assert inferd.home.stat().st_mode & 0o777 == 0o755  # the user's own folder is left as it is
    for folder in (inferd.home / "workspace", *([] if made else [inferd.home])):
        assert folder.stat().st_mode & 0o077 == 0, (folder, oct(folder.stat().st_mode))


@pytest.mark.parametrize("other", ["every user may write it", "another user owns it"])
def test_a_home_another_user_controls_is_refused(inferd: Inferd, other: str) -> None:
    """``INFERD_HOME=/tmp/inferd``, made first by another user: its owner could replace
    ``operator.json`` (the CLI sent the token, and a deploy its keys, to their port) or the state
    (code the operator runs). inferd refuses it and writes nothing there."""
    inferd.home.mkdir()
    if other == "another user owns it":
        if os.geteuid() != 0:
            pytest.skip("giving a folder to another user needs root")
        os.chown(inferd.home, 65534, 65534)  # nobody
        said = "belongs to"
    else:
        inferd.home.chmod(0o777)
        said = "may be written by every user"
    for command in (["up"], ["get"]):
        refused = inferd.run(*command, check=False, timeout=60)
        assert refused.returncode == 2 and said in refused.stderr, refused
    assert list(inferd.home.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a link to another user needs root")
def test_a_home_that_is_another_users_link_is_refused(inferd: Inferd, tmp_path: Path) -> None:
    """``INFERD_HOME=/tmp/inferd`` made first by another user as a link to a folder of mine: the
    folder passed, and its maker could point the link at files of theirs once the operator ran
    (a replica started later imports the snapshot found there). A link of one's own is a home."""
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    inferd.home.symlink_to(mine)
    os.lchown(inferd.home, 65534, 65534)  # nobody
    refused = inferd.run("get", check=False, timeout=60)
    assert refused.returncode == 2 and "a link that nobody made" in refused.stderr, refused
    assert list(mine.iterdir()) == []
    inferd.home.unlink()
    inferd.home.symlink_to(mine)
    assert inferd.run("get", check=False, timeout=60).returncode != 2


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("curl") is None, reason="runs curl as user nobody (root only)"
)
def test_a_dashboard_widened_beyond_loopback_takes_its_link_from_any_user(inferd: Inferd) -> None:
    """On loopback, a link opened by another user is refused (test_dashboard_views.py); an
    operator run as root with the browser of a user (a container on the host's network) widens
    the listener, which makes the link its only guard, as for a browser on another machine."""
    inferd.env["INFERD_DASHBOARD_HOST"] = "0.0.0.0"
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        inferd.env.pop(name, None)
    inferd.run("up")
    link = inferd.run("dashboard").stdout.strip()
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*", link]
    other = subprocess.run(command, user="nobody", capture_output=True, text=True, timeout=30, check=False)
    assert other.stdout == "303", other


@pytest.mark.skipif(os.geteuid() != 0, reason="starts a process as user nobody (root only)")
def test_an_operator_file_naming_another_users_operator_is_stale(inferd: Inferd) -> None:
    """After a reboot, ``operator.json`` may name a pid that another user's operator has now.
    The CLI took it for this home's operator (its environment cannot be read, so it could not
    tell): ``get`` sent the token to it ("wrong operator token"), ``down`` signalled it
    ("Operation not permitted"; root's killed it), ``up`` waited 60 s for it and gave up."""
    theirs = subprocess.Popen(
        ["sh", "-c", "sleep 120; :", "inferd.operator.daemon"],
        user="nobody",
        env={"INFERD_HOME": str(inferd.home), "PATH": "/usr/bin:/bin"},
    )
    try:
        inferd.home.mkdir(mode=0o700)
        stale = {
            "pid": theirs.pid,
            "supervisor": theirs.pid,
            "admin_port": 9,
            "gateway": "http://127.0.0.1:9",
        }
        (inferd.home / "operator.json").write_text(json.dumps(stale))
        said = inferd.run("get", check=False, timeout=60)
        assert said.returncode == 1 and "is not running" in said.stderr, said
        assert inferd.run("down", check=False, timeout=60).returncode == 0
        assert theirs.poll() is None  # left running
        inferd.run("up", timeout=120)
        assert json.loads((inferd.home / "operator.json").read_text())["pid"] != theirs.pid
    finally:
        theirs.kill()
        theirs.wait()
