"""What a person at a terminal does with `inferd get` and `inferd logs`: -w and -f run until
Ctrl-C, which ends them quietly with exit 0, and the curl line `inferd get API` prints runs as
pasted."""

from __future__ import annotations

import signal
import subprocess
import threading

from tests.conftest import INFERD, example, from_a_terminal, wait_for
from tests.integration.conftest import Inferd

SAMPLE = {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3}


class Following:
    """An ``inferd`` command run as from a terminal, its output collected as it comes."""

    def __init__(self, inferd: Inferd, *args: str) -> None:
        self.process = from_a_terminal(list(args), inferd.env)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def ctrl_c(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        _, stderr = self.process.communicate(timeout=60)
        self.reader.join(timeout=10)
        return self.process.returncode, stderr


def test_get_w_re_runs_until_ctrl_c(inferd: Inferd) -> None:
    inferd.run("deploy", str(example("iris-onnx")))
    watching = Following(inferd, "get", "-w")
    try:
        wait_for(lambda: sum(line.startswith("api ") for line in watching.lines) >= 2, 60, "a second table")
    finally:
        code, stderr = watching.ctrl_c()
    assert (code, stderr) == (0, "")
    assert any(line.startswith("classifier   iris         live") for line in watching.lines)


def test_logs_f_follows_until_ctrl_c(inferd: Inferd) -> None:
    inferd.run("deploy", str(example("iris-onnx")))
    following = Following(inferd, "logs", "classifier", "--access", "-f", "--tail", "0")
    try:

        def followed() -> bool:
            assert inferd.post("/iris/classifier", SAMPLE).json() == "iris-setosa"
            return any('"status":200' in line.replace(" ", "") for line in following.lines)

        wait_for(followed, 60, "the access line of a request made while following")
    finally:
        code, stderr = following.ctrl_c()
    assert (code, stderr) == (0, "")


def test_the_curl_line_of_get_runs_as_pasted(inferd: Inferd) -> None:
    project = example("iris-onnx")
    inferd.run("deploy", str(project))
    shown = inferd.run("get", "classifier").stdout
    (line,) = [line for line in shown.splitlines() if line.startswith("curl ")]
    # failglob: as zsh does by default, an unquoted `?` that matches no file is an error
    pasted = subprocess.run(
        ["bash", "-O", "failglob", "-c", line + " --silent --show-error"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pasted.returncode == 0, pasted.stderr
    assert pasted.stdout == '"iris-setosa"'


def test_logs_f_ends_when_its_reader_goes_away_with_nothing_new_to_write(inferd: Inferd) -> None:
    # `inferd logs API -f | head -1` on an API with nothing more to say waited for ever: only a
    # write finds a closed pipe, and there was none to make
    inferd.run("deploy", str(example("iris-onnx")))
    following = subprocess.Popen(
        [str(INFERD), "logs", "classifier", "-f"],
        env=inferd.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert following.stdout is not None and following.stderr is not None
    try:
        assert following.stdout.readline()  # head -1
        following.stdout.close()
        assert following.wait(60) == 141  # as a program that SIGPIPE killed: pipefail sees it
        assert following.stderr.read() == ""
    finally:
        following.kill()
        following.wait()
        following.stderr.close()
