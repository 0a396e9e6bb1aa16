"""`inferd serve` whose standard streams are not a terminal: a pipe whose reader went away, a
descriptor closed by the script or supervisor that started it."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import INFERD, make_project, served_url

# A predictor that prints, as handlers do: under `inferd serve` its output reaches serve's stdout.
PRINTS = """\
def predict(sample, metadata):
    print("predicting", sample, flush=True)
    return "ok"
"""
YAML = """\
- kind: deployment
  name: out
- kind: api
  name: printer
  predictor:
    path: predictor.py
"""


@pytest.fixture
def printer(tmp_path: Path) -> Path:
    return make_project(tmp_path / "printer", YAML, {"predictor.py": PRINTS})


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The servers a test starts, stopped at teardown whatever happened."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_handler_that_prints_after_serve_s_reader_went_away_still_answers(
    printer: Path, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    # `inferd serve PROJECT | head`, or a log collector that restarted: each print in a handler
    # raised BrokenPipeError and its request was a 500
    log = tmp_path / "serve.err"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [str(INFERD), "serve", str(printer), "--port", "0"], stdout=subprocess.PIPE, stderr=err
        )
    started.append(process)
    url = served_url(log, process)
    assert process.stdout is not None
    process.stdout.close()  # the reader goes away
    for _ in range(3):
        answer = requests.post(f"{url}/out/printer", json={"n": 1}, timeout=30)
        assert (answer.status_code, answer.json()) == (200, "ok"), log.read_text()
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    assert "Traceback" not in log.read_text()


def test_serve_started_with_its_stdout_closed_serves_handlers_that_print(
    printer: Path, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    # A script or supervisor that closed stdout (`inferd serve ... >&-`): the event loop's epoll
    # took descriptor 1, the replicas got it as their stdout (each print failed), and serve ended
    # with status 1 and a traceback (sys.stdout was None)
    log = tmp_path / "serve.err"
    with log.open("wb") as err:
        process = subprocess.Popen(
            ["sh", "-c", 'exec "$0" "$@" >&-', str(INFERD), "serve", str(printer), "--port", "0"],
            stdin=subprocess.DEVNULL,
            stderr=err,
        )
    started.append(process)
    url = served_url(log, process)
    answer = requests.post(f"{url}/out/printer", json={"n": 1}, timeout=30)
    assert (answer.status_code, answer.json()) == (200, "ok"), log.read_text()
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    assert "Traceback" not in log.read_text()


def test_serve_under_warnings_as_errors_leaves_no_traceback_when_its_replicas_leave(
    printer: Path, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    # Was: each replica left its socket to the engine for the finalizer, which called it a leak:
    # under PYTHONWARNINGS=error (a CI job's, or -X dev) every replica that left wrote
    # "Exception ignored ... Traceback ... ResourceWarning: unclosed <socket.socket>".
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(INFERD), "serve", str(printer), "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONWARNINGS="error", PYTHONUNBUFFERED="1"),
        )
    started.append(process)
    url = served_url(log, process)
    answer = requests.post(f"{url}/out/printer", json={"n": 1}, timeout=30)
    assert (answer.status_code, answer.json()) == (200, "ok"), log.read_text()
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    assert "Traceback" not in log.read_text() and "ResourceWarning" not in log.read_text(), log.read_text()
