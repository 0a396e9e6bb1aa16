"""The suite runs the same whatever the machine's environment holds (tests/conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# the suite's own hook, in a folder of its own
HOOK = "from tests.conftest import pytest_configure  # noqa: F401\n"

ASKS_A_LOOPBACK_SERVER = """\
import http.server
import threading

import requests


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_a_server_of_the_suite_answers():
    with http.server.HTTPServer(("127.0.0.1", 0), Answer) as server:
        threading.Thread(target=server.handle_request, daemon=True).start()
        answer = requests.get(f"http://127.0.0.1:{server.server_address[1]}/", timeout=10)
        assert answer.text == "ok"
"""


def run_probe(tmp_path: Path, probe: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(HOOK)
    (tmp_path / "test_probe.py").write_text(probe)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        timeout=120,
    )


def test_the_suites_servers_are_reached_directly_where_the_machine_has_a_proxy(tmp_path: Path) -> None:
    # Was: with http_proxy set (a CI machine that reaches PyPI through one) and no no_proxy,
    # every request the suite sent to the servers it starts on 127.0.0.1 went to the proxy,
    # and each wait for a server timed out after minutes.
    with socket.socket() as dead:  # bound, never listening: a proxy that refuses everything
        dead.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
        env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
        env.update(http_proxy=proxy, HTTP_PROXY=proxy, https_proxy=proxy, HTTPS_PROXY=proxy)
        run = run_probe(tmp_path, ASKS_A_LOOPBACK_SERVER, env)
    assert run.returncode == 0, run.stdout + run.stderr


def test_inferds_settings_and_a_desktops_display_from_the_shell_reach_no_test(tmp_path: Path) -> None:
    # Was: INFERD_CPUS=16 in the shell of `make test` (a user's profile) reached every operator
    # the suite started, and a test of the default ("needs cpu 64, this machine has 2") read
    # "needs cpu 64, INFERD_CPUS allows 16". And with DISPLAY set (a developer's desktop), each
    # `inferd dashboard` of the suite opened a browser tab, which spent the one-time link: the
    # test that then opened it got no session.
    probe = (
        "import os\n\n"
        "from inferd.cli.dashboard import has_display\n\n\n"
        "def test_the_defaults_hold():\n"
        "    assert sorted(name for name in os.environ if name.startswith('INFERD_')) == []\n\n\n"
        "def test_no_display():\n"
        "    assert not has_display()\n"
    )
    settings = {"INFERD_CPUS": "16", "INFERD_PORT": "9999", "INFERD_SHADOW_NICE": "0"}
    desktop = {"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}
    run = run_probe(tmp_path, probe, {**os.environ, **settings, **desktop})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout, run.stdout


def test_make_test_installs_the_tools_the_suite_runs_when_either_is_missing() -> None:
    # README, "What make test needs": chromium for the dashboard's browser test, and curl, which
    # two tests run as another user (a slim image has neither; a skip fails the run under CI).
    steps = subprocess.run(
        ["make", "-n", "browser"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "test -x /usr/bin/chromium && test -x /usr/bin/curl" in steps
    assert "apt-get install -y chromium curl" in steps
