"""Upgrading inferd while its operator runs: the new CLI meets the operator the old code started.

Every inferd says version 0.1.0; what tells them apart is the code each runs (``code_identity``).
The older operator here is a small process answering the admin API exactly as the first-round
operator did (2026-11-27: ``/info`` without ``code``, ``no admin route ...`` for a route it did
not have, ``no API named ...`` for the ``DEPLOYMENT/API`` names it did not know), with its
``operator.json`` written in that version's form.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import inferd as inferd_package
from tests.conftest import example, process_alive, wait_for
from tests.integration.conftest import Inferd

# The admin API of the first-round operator (src/inferd/operator/server.py of 2026-11-27),
# reduced to its answers. The file's name holds "inferd.operator.", as that operator's command
# line did, which is how the CLI knows an operator's process.
OLDER_OPERATOR = """
import http.server, json, os, sys, time
home, token = sys.argv[1], open(os.path.join(sys.argv[1], "token")).read().strip()
started = time.time()
# an API as its /apis listed one (engine/local.py's describe of then, and its url)
CLASSIFIER = {"name": "classifier", "deployment": "iris", "endpoint": "/iris/classifier",
              "model_format": "onnx", "status": "live", "requested": 1, "available": 1,
              "up_to_date": 1, "stale": 0, "failed": 0, "in_flight": 0, "last_update": started,
              "version": "a2b30fd38e46776e", "error": None, "error_detail": None,
              "replicas": [{"id": "classifier-1", "pid": 1, "version": "a2b30fd38e46776e",
                            "state": "ready", "requests": 0}],
              "url": "http://127.0.0.1:1/iris/classifier"}

class Admin(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with open(os.path.join(home, "asked"), "a") as asked:
            asked.write(f"{method} {self.path}\\n")
        if self.headers.get("Authorization") != f"Bearer {token}":
            return self.answer(403, {"error": "wrong operator token", "type": "ForbiddenError"})
        if method == "GET" and self.path == "/info":
            return self.answer(200, {"version": "0.1.0", "pid": os.getpid(),
                                     "gateway": "http://127.0.0.1:1", "started": started})
        if method == "GET" and self.path == "/apis":
            return self.answer(200, [CLASSIFIER])
        if method == "GET" and self.path.startswith("/apis/"):
            name = self.path.removeprefix("/apis/")
            return self.answer(404, {"error": f"no API named '{name}'", "type": "NotFoundError"})
        if method == "POST" and self.path == "/down":
            self.answer(200, {"message": "stopping"})
            os._exit(0)
        self.answer(404, {"error": f"no admin route {method} {self.path}", "type": "NotFoundError"})

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Admin)
info = {"pid": os.getpid(), "admin_port": server.server_address[1], "gateway": "http://127.0.0.1:1",
        "version": "0.1.0", "started": started, "dashboard": "http://127.0.0.1:1"}
with open(os.path.join(home, "operator.json"), "w") as out:
    json.dump(info, out)
server.serve_forever()
"""

RESTART = "restart it: `inferd down && inferd up`, which brings its APIs back on this one"


@contextlib.contextmanager
def older_operator(home: Path, **environ: str) -> Iterator[Inferd]:
    """An operator of the first round's code running on ``home``."""
    runner = Inferd(home)
    runner.home.mkdir(mode=0o700)
    (runner.home / "token").write_text("older-token")
    script = home.parent / "inferd.operator.older.py"
    script.write_text(OLDER_OPERATOR)
    # Started from a shell, unless ``environ`` says otherwise: a CI job run by a systemd service
    # (a runner's) inherits its INVOCATION_ID, and the hint named a systemd unit to restart.
    shell = {name: value for name, value in runner.env.items() if name != "INVOCATION_ID"}
    process = subprocess.Popen([sys.executable, str(script), str(runner.home)], env=dict(shell, **environ))
    try:
        wait_for(lambda: (runner.home / "operator.json").exists(), 30, "the older operator")
        yield runner
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def older(tmp_path: Path) -> Iterator[Inferd]:
    with older_operator(tmp_path / "home") as runner:
        yield runner


def test_the_new_cli_names_an_older_operator_and_how_to_restart_it(older: Inferd, tmp_path: Path) -> None:
    # Was: `inferd get` said `error: no admin route GET /splitters`, `inferd predict` and `inferd
    # logs` said the API did not exist, and `inferd version` said `operator: 0.1.0` as the CLI did.
    listed = older.run("get", check=False)
    assert listed.returncode == 1
    assert listed.stderr.startswith("error: no admin route GET /splitters; the running operator (pid ")
    assert "runs an older inferd than this command (from before inferd was upgraded)" in listed.stderr
    assert RESTART in listed.stderr
    predicted = older.run(
        "predict", "iris/classifier", str(example("iris-onnx") / "sample.json"), check=False
    )
    assert predicted.returncode == 1 and RESTART in predicted.stderr
    assert "no API named 'iris/classifier'" in predicted.stderr
    assert RESTART in older.run("version").stdout.splitlines()[1]
    assert RESTART in older.run("up").stderr  # what a user tries first: it is running, it says

    # A deploy is refused before the operator is asked: its replicas would load a mix of its
    # code and the files the upgrade put in its place (a TensorSpec TypeError, seen on a real one).
    deployed = older.run("deploy", str(example("iris-onnx")), "--no-wait", check=False)
    assert deployed.returncode == 1
    assert deployed.stderr.startswith("error: nothing was deployed: the running operator")
    assert "/deploy" not in (older.home / "asked").read_text()

    # `inferd down` stops it (the older operator's own /down), and `inferd up` starts this code's
    pid = json.loads((older.home / "operator.json").read_text())["pid"]
    assert older.run("down").stdout.strip() == "the inferd operator stopped"
    assert not process_alive(pid)


def test_an_older_operator_under_systemd_is_restarted_by_its_unit(tmp_path: Path) -> None:
    # `inferd down && inferd up` would stop the unit's operator for good (it exits 0, and the
    # unit restarts only a failure) and start one outside systemd beside the unit
    with older_operator(tmp_path / "home", INVOCATION_ID="0123456789abcdef") as older:
        said = older.run("version").stdout.splitlines()[1]
    assert said.endswith(
        "; restart its systemd unit: `systemctl --user restart inferd`, which brings its APIs "
        "back on this one"
    )


def test_down_and_up_restart_the_operator_onto_this_code_with_its_apis(
    inferd: Inferd, tmp_path: Path
) -> None:
    # inferd as pip installs it (a copy, its bytecode too), then `pip install -U` replacing a
    # file under the running operator
    site = tmp_path / "site"
    shutil.copytree(Path(inferd_package.__file__).parent, site / "inferd")
    inferd.env["PYTHONPATH"] = str(site)
    inferd.run("deploy", str(example("iris-onnx")))
    assert inferd.run("version").stdout.splitlines()[1] == "operator: 0.1.0"  # the same code: no hint
    deployed = inferd.api("classifier")["last_update"]
    render = site / "inferd" / "cli" / "render.py"
    render.write_text(render.read_text() + "\n# 0.1.1\n")

    listed = inferd.run("get")  # it answers, with a note: its replicas load a mix of both codes
    assert "classifier" in listed.stdout
    assert listed.stderr.startswith("note: the running operator (pid ")
    assert "runs other inferd code than this command (inferd was upgraded or reinstalled" in listed.stderr
    refused = inferd.run("deploy", str(example("iris-onnx")), check=False)
    assert refused.returncode == 1 and "`inferd down && inferd up`" in refused.stderr

    inferd.run("down")
    inferd.run("up")
    inferd.wait_status("classifier", "live")
    assert inferd.run("get").stderr == ""
    assert "deployment is up-to-date" in inferd.run("deploy", str(example("iris-onnx"))).stdout
    sample = json.loads((example("iris-onnx") / "sample.json").read_text())
    assert inferd.post("/iris/classifier", sample).json() == "iris-setosa"
    assert inferd.api("classifier")["last_update"] == deployed


def test_a_home_of_the_first_round_comes_back_with_its_logs(inferd: Inferd) -> None:
    # The files an inferd of 2026-11-27 left: state.json without a format or the later fields,
    # a snapshot, and the API's log as logs/<api>.log (one folder per deployment came later).
    snapshot = inferd.home / "projects" / "6989bff4b456885be37c766f"
    shutil.copytree(example("iris-onnx"), snapshot)
    record: dict[str, object] = {"source": str(example("iris-onnx")), "snapshot": str(snapshot)}
    record |= {"refresh": "", "updated": 1796120069.686604, "deleted_apis": []}
    (inferd.home / "state.json").write_text(json.dumps({"deployments": {"iris": record}}, indent=2))
    (inferd.home / "logs").mkdir()
    (inferd.home / "logs" / "classifier.log").write_text(
        "2026-11-27 10:14:29 classifier [inferd] version a2b30fd38e46776e created\n"
        "2026-11-27 10:14:30,308 classifier [classifier-1] INFO replica is ready (pid 6475)\n"
    )
    inferd.run("up")
    inferd.wait_status("classifier", "live")
    sample = json.loads((example("iris-onnx") / "sample.json").read_text())
    assert inferd.post("/iris/classifier", sample).json() == "iris-setosa"
    assert inferd.api("classifier")["last_update"] == 1796120069.686604
    # Was: only the lines since the upgrade; the API's history stayed in a file no command read.
    logs = inferd.run("logs", "classifier").stdout
    assert "version a2b30fd38e46776e created" in logs
    assert logs.index("a2b30fd38e46776e") < logs.rindex("replica is ready")  # then the new lines
