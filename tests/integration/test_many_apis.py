"""One operator serving many APIs, as a team's machine does after a few months: Python
predictors that import nothing, one deployment shared by the file (it costs seconds)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import INFERD, make_project, wait_for
from tests.integration.conftest import Inferd, stop_operator

APIS = 24
PREDICTOR = "def predict(sample, metadata):\n    return [metadata['tag'], sample]\n"


def config(tags: dict[int, str] | None = None) -> str:
    """The project's cortex.yaml: ``APIS`` APIs, each tagged ``v1`` unless ``tags`` says."""
    blocks = "".join(
        f"- kind: api\n  name: a{i:02d}\n  predictor:\n    path: p.py\n"
        f"    metadata: {{tag: {(tags or {}).get(i, 'v1')}}}\n  compute: {{cpu: 10m, mem: 10Mi}}\n"
        for i in range(APIS)
    )
    return "- kind: deployment\n  name: many\n" + blocks


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Inferd, Path]]:
    """An operator with the ``many`` deployment live, and the project's folder."""
    root = tmp_path_factory.mktemp("many")
    runner = Inferd(root / "home")
    project = make_project(root / "project", config(), files={"p.py": PREDICTOR})
    try:
        runner.run("deploy", str(project))
        yield runner, project
    finally:
        stop_operator(runner)


def test_a_404_names_the_nearest_endpoints_not_every_one(many: tuple[Inferd, Path]) -> None:
    inferd, _ = many
    answer = inferd.post("/many/a7", {})  # a typo of /many/a07
    assert answer.status_code == 404
    message = answer.json()["error"]
    # It named all 24 (2 KB for 81 APIs); now the ten nearest, and where the rest are listed
    assert message.startswith(f"no API at /many/a7 ({APIS} endpoints, the nearest: /many/a0"), message
    assert message.endswith("; GET / lists them all)"), message
    assert message.count("/many/a") == 10 + 1
    assert len(requests.get(inferd.url + "/", timeout=30).json()["apis"]) == APIS


def test_an_update_of_one_api_of_many_shows_that_api_and_restarts_it_alone(many: tuple[Inferd, Path]) -> None:
    inferd, project = many
    before = {f"a{i:02d}": inferd.replica_pids(f"many/a{i:02d}") for i in range(APIS)}
    (project / "cortex.yaml").write_text(config({5: "v2"}))
    result = inferd.run("deploy", str(project))
    assert result.stdout.strip() == "deployment updated"
    lines = result.stderr.splitlines()
    # Each of the 23 others was a line of its own ("a00: live (1/1 replicas up to date)", ...)
    assert lines[-1] == "a05: live (1/1 replicas up to date)", result.stderr
    assert f"{APIS - 1} unchanged apis: live" in lines, result.stderr
    assert not any(line.startswith("a00:") for line in lines), result.stderr
    assert inferd.post("/many/a05", 1).json() == ["v2", 1]
    after = {name: inferd.replica_pids(f"many/{name}") for name in before}
    assert [name for name in before if after[name] != before[name]] == ["a05"]


def test_get_w_on_a_terminal_shorter_than_the_table_keeps_its_header_and_says_what_is_left_out(
    many: tuple[Inferd, Path],
) -> None:
    inferd, _ = many
    rows, columns = 12, 100
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    watch = subprocess.Popen(
        [str(INFERD), "get", "-w"],
        env=inferd.env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(follower)
    seen = bytearray()
    clear = b"\x1b[2J"

    def two_screens() -> bool:
        try:
            seen.extend(os.read(leader, 65536))
        except OSError:  # the command ended: its output is all there
            return True
        return seen.count(clear) >= 3

    try:
        wait_for(two_screens, 60, "two screens of `inferd get -w`")
    finally:
        watch.send_signal(signal.SIGINT)
        watch.wait(timeout=30)
        os.close(leader)
    screen = seen.decode().split("\x1b[2J")[1]
    lines = re.sub(r"\x1b\[[0-9;]*H", "", screen).replace("\r", "").rstrip("\n").split("\n")
    # Each screen was the whole table (25 lines): the header scrolled off the top each second
    assert len(lines) <= rows - 1, lines
    assert lines[0].split()[:3] == ["api", "deployment", "status"], lines
    assert lines[-1] == f"... {APIS + 1 - (rows - 2)} more lines: inferd get without -w prints them all"


def test_a_name_not_deployed_is_answered_with_the_nearest_names_not_every_one(
    many: tuple[Inferd, Path],
) -> None:
    inferd, _ = many
    hint = f"({APIS} apis deployed, the nearest: many/a10, many/a11, many/a12, many/a13, many/a14, "
    for command in ("get", "delete", "logs"):
        answer = inferd.run(command, "a1x", check=False)
        assert answer.returncode == 1, answer.stderr
        # It named all 24 (1.8 KB for 110 APIs), where the gateway's 404 names the ten nearest
        assert answer.stderr.startswith(
            f"error: no API {'or deployment ' * (command == 'delete')}named 'a1x' "
        ), (
            command,
            answer.stderr,
        )
        assert hint in answer.stderr, (command, answer.stderr)
        assert "many/a19; inferd get lists them all)" in answer.stderr, (command, answer.stderr)
        assert answer.stderr.count("many/a") == 10, (command, answer.stderr)
