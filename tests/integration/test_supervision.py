"""The operator stays supervised: whichever of the operator and its supervisor dies, the other
brings it back, with no command run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import requests

from inferd.code_identity import code_identity
from tests.conftest import INFERD, make_project, process_alive, wait_for
from tests.integration.conftest import Inferd

PREDICTOR = "def predict(sample, metadata):\n    print('asked', sample)\n    return 'ok'\n"
DEPLOYMENT = "- kind: deployment\n  name: watched\n"
API = "- kind: api\n  name: {name}\n  predictor:\n    path: p.py\n"


def _answers(inferd: Inferd) -> bool:
    """Whether the guarded API answers now (an operator started again is up)."""
    try:
        return inferd.post("/watched/guarded", {"n": 1}, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_a_killed_supervisor_is_replaced_and_the_operator_still_comes_back(
    inferd: Inferd, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "p", DEPLOYMENT + API.format(name="guarded"), {"p.py": PREDICTOR})
    inferd.run("deploy", str(project))
    operator, supervisor = inferd.operator_pid(), inferd.operator_pid("supervisor")
    assert operator is not None and supervisor is not None
    os.kill(supervisor, signal.SIGKILL)
    # Was: the operator ran on with no supervisor (operator.json still named the dead one), and
    # `inferd up` said "already running": the next crash took every API down for good.

    def replaced() -> bool:
        now = inferd.operator_pid("supervisor")
        return now is not None and now != supervisor and process_alive(now)

    wait_for(replaced, 30, "a new supervisor for the running operator")
    assert inferd.operator_pid() == operator  # the operator itself was not restarted
    assert inferd.post("/watched/guarded", {"n": 1}).json() == "ok"
    # The operator's log goes on reaching operator.log through the new supervisor.
    (project / "cortex.yaml").write_text(DEPLOYMENT + API.format(name="guarded") + API.format(name="second"))
    inferd.run("deploy", str(project))
    wait_for(
        lambda: "'watched/second'" in (inferd.home / "operator.log").read_text(),
        30,
        "the operator's line about the new API in operator.log",
    )

    os.kill(operator, signal.SIGKILL)

    wait_for(lambda: _answers(inferd), 120, "an answer from the operator the new supervisor started again")
    assert inferd.operator_pid() not in (None, operator)
    assert "starting it again" in (inferd.home / "operator.log").read_text()
    adopter = inferd.operator_pid("supervisor")
    assert adopter is not None
    assert inferd.run("down").stdout.strip() == "the inferd operator stopped"
    wait_for(lambda: not process_alive(adopter), 30, "the supervisor gone with the operator")


def test_an_operator_killed_while_it_stops_stays_stopped(inferd: Inferd, tmp_path: Path) -> None:
    sleepy = "import time\n\ndef predict(sample, metadata):\n    time.sleep(sample['s'])\n    return 'ok'\n"
    project = make_project(tmp_path / "p", DEPLOYMENT + API.format(name="slow"), {"p.py": sleepy})
    inferd.run("deploy", str(project))
    operator, supervisor = inferd.operator_pid(), inferd.operator_pid("supervisor")
    assert operator is not None and supervisor is not None
    held = threading.Thread(target=lambda: _post_quietly(inferd, {"s": 60}), daemon=True)
    held.start()
    wait_for(
        lambda: requests.get(inferd.url + "/watched/slow", timeout=5).json()["replicas"]["busy"] == 1,
        30,
        "the long request at its replica",
    )
    down = subprocess.Popen([INFERD, "down"], env=inferd.env, stdout=subprocess.PIPE, text=True)
    wait_for(lambda: requests.get(inferd.url + "/healthz", timeout=5).status_code == 503, 30, "the drain")
    os.kill(operator, signal.SIGKILL)  # the drain takes too long: the user kills it
    # Was: its supervisor started it again, every API came back, and `inferd down` (which waited
    # for the supervisor 60 s) said "the inferd operator stopped".
    out, _ = down.communicate(timeout=120)
    wait_for(lambda: not process_alive(supervisor), 30, "the supervisor gone")
    assert out.strip() == "the inferd operator stopped"
    assert inferd.operator_pid() in (None, operator)  # no new operator


def _post_quietly(inferd: Inferd, body: dict[str, int]) -> None:
    with contextlib.suppress(requests.RequestException):
        inferd.post("/watched/slow", body, timeout=120)


def test_a_stray_module_in_the_shell_s_folder_never_reaches_the_operator(
    inferd: Inferd, tmp_path: Path
) -> None:
    # Was: the supervisor and the operator ran `python -m` in the folder `inferd deploy` was
    # typed in, which `-m` puts first on sys.path: a json.py lying there was the operator's json.
    shell = tmp_path / "shell"
    marker = tmp_path / "imported"
    stray = f"open({str(marker)!r}, 'w').close()\nraise ImportError('a stray json.py')\n"
    project = make_project(shell, DEPLOYMENT + API.format(name="calm"), {"p.py": PREDICTOR, "json.py": stray})
    inferd.run("deploy", ".", cwd=shell)
    assert inferd.post("/watched/calm", {"n": 1}).json() == "ok"
    assert project == shell and not marker.exists()


def test_a_hung_operator_is_stopped_and_started_again(inferd: Inferd, tmp_path: Path) -> None:
    # Was: a hung operator kept its pid and answered nothing, for good; its supervisor only
    # restarted one that died. SIGSTOP hangs it as a deadlock would: no beat, no answer.
    inferd.env["INFERD_HANG_TIMEOUT"] = "3"
    project = make_project(tmp_path / "p", DEPLOYMENT + API.format(name="guarded"), {"p.py": PREDICTOR})
    inferd.run("deploy", str(project))
    operator = inferd.operator_pid()
    assert operator is not None
    os.kill(operator, signal.SIGSTOP)

    # The hung one is sent SIGABRT and SIGCONT: while it writes its threads' stacks, another of
    # its threads may answer once more, so the answer looked for is the new operator's
    wait_for(
        lambda: inferd.operator_pid() not in (None, operator) and _answers(inferd),
        120,
        "an answer from the operator started again after it hung",
    )
    assert not process_alive(operator)
    assert inferd.operator_pid() not in (None, operator)
    log = (inferd.home / "operator.log").read_text()
    assert f"the operator (pid {operator}) has not run for" in log
    assert "most recent call first" in log  # every thread's stack, to see where it hung
    assert "starting it again" in log


# An operator at the end of `inferd down`: it answers one last request, then is gone. The file's
# name holds "inferd.operator.", as an operator's command line does.
LAST_ANSWER = """
import http.server, json, os, sys

class Admin(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        data = json.dumps({"version": "0.1.0", "code": sys.argv[2], "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        os._exit(0)

server = http.server.HTTPServer(("127.0.0.1", 0), Admin)
info = {"pid": os.getpid(), "admin_port": server.server_address[1], "supervisor": None,
        "version": "0.1.0", "code": sys.argv[2], "prefix": sys.prefix}
with open(os.path.join(sys.argv[1], "operator.json.tmp"), "w") as out:
    json.dump(info, out)
os.rename(os.path.join(sys.argv[1], "operator.json.tmp"), os.path.join(sys.argv[1], "operator.json"))
server.serve_forever()
"""


def test_version_as_the_operator_stops_says_what_it_was_told(tmp_path: Path) -> None:
    # Was: `inferd version` asked the operator whether it ran, then asked it again for its
    # version; an operator that stopped in between (the end of a `down`, which `down`'s Ctrl-C
    # says to watch with `inferd version`) made it exit 1, "the inferd operator is not running".
    runner = Inferd(tmp_path / "home")
    runner.home.mkdir(mode=0o700)
    (runner.home / "token").write_text("last-token")
    script = tmp_path / "inferd.operator.last_answer.py"
    script.write_text(LAST_ANSWER)
    process = subprocess.Popen(
        [sys.executable, str(script), str(runner.home), code_identity()], env=runner.env
    )
    try:
        wait_for(lambda: (runner.home / "operator.json").exists(), 30, "the operator's file")
        said = runner.run("version", check=False)
        assert (said.returncode, said.stderr) == (0, ""), said
        assert said.stdout.splitlines()[1] == "operator: 0.1.0"
        assert process.wait(30) == 0  # it answered, then stopped
        assert runner.run("version").stdout.splitlines()[1] == "operator: not running"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
