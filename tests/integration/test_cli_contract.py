"""The CLI's contract, command by command, run as a user runs it (the real `inferd` process, no
operator unless a test needs one): an error is one sentence on stderr and a non-zero exit, never
a traceback; hostile names and numbers are refused or read as what they say."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from inferd.gateway.payloads import PayloadBuffer
from inferd.operator.payloads import PayloadWriter
from tests.conftest import INFERD, example, make_project, wait_for
from tests.integration.conftest import Inferd, free_port, stop_operator


def run(home: Path, *args: str, stdout: int | IO[str] = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, INFERD_HOME=str(home))
    # Output buffered as a user's shell leaves it (this machine's sets PYTHONUNBUFFERED, under
    # which `inferd --help > /dev/full` passed and a user's ended with status 120)
    environment.pop("PYTHONUNBUFFERED", None)
    return subprocess.run(
        [str(INFERD), *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        timeout=60,
        cwd=home if home.is_dir() else None,  # not the checkout: no project is served by mistake
    )


def _recorded(home: Path, count: int) -> None:
    """A payload log of API shop/api with ``count`` records, each with its shadow's answer."""
    writer = PayloadWriter(home, PayloadBuffer())
    for index in range(count):
        record = {
            "request_id": str(index),
            "status": 200,
            "latency_ms": 1.0,
            "version": "v1",
            "protocol": "cortex",
            "request": {"json": index},
            "response": {"json": index},
            "shadow": {"api": "other", "status": 200, "latency_ms": 1.0, "response": {"json": index}},
        }
        writer.write([("shop/api", 1 << 24, record)])
    writer.close()


def test_a_count_beyond_what_was_recorded_reads_every_record(tmp_path: Path) -> None:
    # `-n 99999999999999999999999` ended in a traceback (OverflowError: Python int too large to
    # convert to C ssize_t); "the last N" of fewer records is all of them, as for a small N.
    _recorded(tmp_path, 3)
    ended = run(tmp_path, "payloads", "shop/api", "-n", str(10**23), "-o", "json")
    assert (ended.returncode, ended.stderr) == (0, "")
    assert [record["request_id"] for record in json.loads(ended.stdout)] == ["0", "1", "2"]


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"]])
def test_help_and_version_to_a_full_disk_are_one_line_and_exit_1(tmp_path: Path, args: list[str]) -> None:
    # `inferd --help > /dev/full` (and --version) ended in click's traceback: OSError: [Errno 28]
    with open("/dev/full", "w") as full:
        ended = run(tmp_path, *args, stdout=full)
    assert (ended.returncode, ended.stderr) == (1, "error: No space left on device\n")


def test_a_commands_output_to_a_full_disk_is_one_line_and_exit_1(tmp_path: Path) -> None:
    # Was: "error: No space left on device", then Python's "Exception ignored ... OSError" as
    # it flushed the same output again at exit, and status 120.
    with open("/dev/full", "w") as full:
        ended = run(tmp_path, "env", "list", stdout=full)
    assert (ended.returncode, ended.stderr) == (1, "error: No space left on device\n")


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_to_a_reader_that_left_end_as_sigpipe(tmp_path: Path, args: list[str]) -> None:
    # Every command ends with 141 when what reads its output left (`inferd get | head -1`), but
    # `inferd --help | head -1` ended with 1, which a script's pipefail reads as a failure.
    read, write = os.pipe()
    os.close(read)
    try:
        ended = run(tmp_path, *args, stdout=write)
    finally:
        os.close(write)
    assert (ended.returncode, ended.stderr) == (141, "")


@pytest.mark.parametrize("name", ["../notes", "shop/../../notes"])
def test_logs_read_after_down_only_an_apis_log(tmp_path: Path, name: str) -> None:
    # With no operator running, `inferd logs ../notes` printed $INFERD_HOME/notes.log: the name
    # went into the path as it was, and any file ending in .log was shown as an API's log.
    (tmp_path / "logs" / "shop").mkdir(parents=True)
    (tmp_path / "logs" / "shop" / "api.log").write_text("the api's line\n")
    (tmp_path / "notes.log").write_text("not a log of inferd's\n")
    ended = run(tmp_path, "logs", name)
    assert ended.returncode == 1 and ended.stdout == ""
    assert (
        ended.stderr
        == f"error: no API named '{name}' has a log in {tmp_path / 'logs'} (the operator is not running)\n"
    )
    assert run(tmp_path, "logs", "api").stdout == "the api's line\n"  # the lines of one that has


def test_a_name_whose_api_is_empty_names_no_api_after_down_too(tmp_path: Path) -> None:
    # As while the operator runs (exit 2); was "no API named 'shop/' has a log" (exit 1)
    (tmp_path / "logs" / "shop").mkdir(parents=True)
    (tmp_path / "logs" / "shop" / "api.log").write_text("the api's line\n")
    ended = run(tmp_path, "logs", "shop/")
    assert (ended.returncode, ended.stdout) == (2, "") and "'shop/' names no API" in ended.stderr


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inferd]:
    """An operator serving examples/iris-onnx (deployment iris, API classifier), alone."""
    runner = Inferd(tmp_path_factory.mktemp("contract") / "home")
    try:
        runner.run("deploy", str(example("iris-onnx")))
        yield runner
    finally:
        stop_operator(runner)


@pytest.mark.parametrize(
    "args",
    [
        ["get"],
        ["get", "classifier"],
        ["logs", "classifier"],
        ["predict", "classifier", str(example("iris-onnx") / "sample.json")],
        ["payloads", "classifier"],
        ["version"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_command_leaves_no_connection_to_the_operator_open(iris: Inferd, args: list[str]) -> None:
    # Was: every command that asked the operator left its connection for the socket's finalizer,
    # which called it a leak (ResourceWarning): under PYTHONWARNINGS=error (a CI job's, or -X dev)
    # each one printed "Exception ignored ... Traceback ... unclosed <socket.socket>" after its
    # output.
    ended = subprocess.run(
        [str(INFERD), *args],
        env=dict(iris.env, PYTHONWARNINGS="error"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ended.returncode == 0, ended.stderr
    assert "Traceback" not in ended.stderr and "ResourceWarning" not in ended.stderr, ended.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["get", "iris/"],
        ["get", "/"],
        ["logs", "iris/"],
        ["predict", "iris/", str(example("iris-onnx") / "sample.json")],
        ["replay", "classifier", "--against", ""],
        ["replay", "classifier", "--against", "iris/"],
    ],
    ids=[
        "get iris/",
        "get /",
        "logs iris/",
        "predict iris/",
        "replay --against ''",
        "replay --against iris/",
    ],
)
def test_a_name_whose_api_is_empty_names_no_api(iris: Inferd, args: list[str]) -> None:
    # `inferd get iris/` (a deployment meant, say) showed classifier, `inferd predict iris/`
    # posted to it and `inferd replay X --against ''` replayed against it: an empty API name was
    # a prefix of every name, and the only API matched it.
    ended = iris.run(*args, check=False)
    assert ended.returncode == 2 and ended.stdout == ""
    empty = "error: the API name is empty\n"
    assert (ended.stderr == empty) if "" in args else ("names no API" in ended.stderr)


def test_a_config_file_that_cannot_be_read_is_said_in_words(tmp_path: Path) -> None:
    # Was: "cortex.yaml: cannot read the file: [Errno 13] Permission denied: '/.../cortex.yaml'",
    # Python's text of the exception.
    project = tmp_path / "project"
    shutil.copytree(example("iris-onnx"), project)
    (project / "cortex.yaml").chmod(0)
    # root reads any file: run without that power
    cut = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    environment = dict(os.environ, INFERD_HOME=str(tmp_path / "home"))
    ended = subprocess.run(
        [*cut, str(INFERD), "validate", str(project)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert (ended.returncode, ended.stderr) == (
        2,
        "error: cortex.yaml: cannot read the file (Permission denied)\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["get", "-d", ""], "the deployment name is empty"),
        (["get", "-d", " ", "-s"], "the deployment name is empty"),
        (["logs", "classifier", "-d", ""], "the deployment name is empty"),
        (
            ["predict", "classifier", str(example("iris-onnx") / "sample.json"), "-d", ""],
            "the deployment name is empty",
        ),
        (["promote", "", "classifier"], "the traffic splitter name is empty"),
        (["promote", "split", ""], "the API name is empty"),
    ],
    ids=[
        "get -d ''",
        "get -d ' ' -s",
        "logs -d ''",
        "predict -d ''",
        "promote '' API",
        "promote SPLITTER ''",
    ],
)
def test_an_empty_name_is_a_usage_error_in_every_command(iris: Inferd, args: list[str], message: str) -> None:
    # As `inferd get ''` (exit 2); was: `inferd get -d ''` "no deployment named ''" (exit 1),
    # `inferd predict classifier s.json -d ''` posted to classifier of any deployment, and
    # `inferd promote '' API` looked for a splitter named ''.
    ended = iris.run(*args, check=False)
    assert (ended.returncode, ended.stdout, ended.stderr) == (2, "", f"error: {message}\n")


@pytest.mark.parametrize(
    "args",
    [
        ["deploy", "--timeout", "nan"],
        ["refresh", "--timeout", "nan"],
        ["delete", "classifier", "--timeout", "nan"],
        ["serve", "--grace", "nan"],
        ["serve", "--header-timeout", "nan"],
        ["serve", "--keepalive-timeout", "NaN"],
    ],
    ids=" ".join,
)
def test_nan_seconds_are_refused(tmp_path: Path, args: list[str]) -> None:
    # NaN passed click's FloatRange (every comparison with it is false): `inferd deploy --timeout
    # nan` never stopped waiting, `inferd serve --header-timeout nan` never cut a slow client.
    ended = run(tmp_path, *args)
    option = args[-2]
    assert ended.returncode == 2 and ended.stdout == ""
    assert ended.stderr.startswith(
        f"error: Invalid value for '{option}': '{args[-1]}' is not a number of seconds"
    )


def listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp shows them) of the sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


LOOPBACK = {"0100007F"}  # 127.0.0.1


def test_an_empty_inferd_host_is_the_default_loopback_for_inferd_serve(tmp_path: Path) -> None:
    # `INFERD_HOST=` (a unit file's or an .env's empty line) listened on every interface of the
    # machine, IPv4 and IPv6, and the banner said http://:PORT.
    log = tmp_path / "serve.log"
    environment = dict(os.environ, INFERD_HOME=str(tmp_path / "home"), INFERD_HOST="", PYTHONUNBUFFERED="1")
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(INFERD), "serve", str(example("iris-onnx")), "--port", "0"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    try:
        banner = wait_for(
            lambda: re.search(r"serving deployment 'iris' on (http://\S*:(\d+))", log.read_text()),
            120,
            "the banner",
        )
        assert banner.group(1).startswith("http://127.0.0.1:")
        assert listening(int(banner.group(2))) == LOOPBACK
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)


def test_an_empty_host_flag_is_refused(tmp_path: Path) -> None:
    # `inferd serve --host "$HOST"` with HOST unset listened on every interface
    ended = run(tmp_path, "serve", str(example("iris-onnx")), "--host", "")
    assert (ended.returncode, ended.stdout) == (2, "")
    assert ended.stderr.startswith("error: Invalid value for '--host': give an address to listen on")


def test_an_empty_inferd_host_or_port_is_the_default_for_the_operator(tmp_path: Path) -> None:
    # As under `inferd serve`: was every interface for INFERD_HOST= (and for INFERD_DASHBOARD_HOST=,
    # the dashboard's, which then took requests naming any host), and "the operator could not
    # start: INFERD_PORT '' must be a port number" for INFERD_PORT= (which `inferd serve` took as 8888).
    runner = Inferd(tmp_path / "home")
    dashboard = free_port()
    runner.env.update(INFERD_HOST="", INFERD_DASHBOARD_HOST="", INFERD_DASHBOARD_PORT=str(dashboard))
    try:
        assert f"on http://127.0.0.1:{runner.port}" in runner.run("up").stdout
        assert f"http://127.0.0.1:{dashboard}/" in runner.run("dashboard", "--no-browser").stdout
        assert listening(runner.port) == LOOPBACK and listening(dashboard) == LOOPBACK
    finally:
        stop_operator(runner)
    runner.env["INFERD_PORT"] = " "
    with socket.socket() as taken:  # the default port, held here (or by something else already)
        with contextlib.suppress(OSError):
            taken.bind(("127.0.0.1", 8888))
            taken.listen()
        try:
            up = runner.run("up", check=False)
        finally:
            stop_operator(runner)
    assert "cannot listen on 127.0.0.1:8888: Address already in use" in up.stderr, up.stderr


SHOP = """
- kind: deployment
  name: shop
- kind: api
  name: champion
  predictor: {path: p.py}
  compute: {cpu: 0.1}
- kind: api
  name: challenger
  predictor: {path: p.py}
  compute: {cpu: 0.1}
- kind: traffic_splitter
  name: recommend
  apis:
    - {name: champion, weight: 100}
    - {name: challenger, weight: 0}
"""


@pytest.mark.parametrize(
    "record",
    ['{"api": "shop/champion", "agreement": 1.0', "{}", "[]", '{"api": "shop/champion", "agreement": "all"}'],
    ids=["cut off", "empty", "a list", "agreement text"],
)
def test_a_last_replay_that_cannot_be_read_is_said_so_by_promote(
    iris: Inferd, tmp_path: Path, record: str
) -> None:
    # A record cut off (a disk that filled, an editor) or written by another inferd ended
    # `inferd promote --min-agreement` in a traceback (JSONDecodeError, KeyError: 'api').
    iris.run(
        "deploy",
        str(
            make_project(
                tmp_path / "shop", SHOP, {"p.py": "def predict(sample, metadata):\n    return sample\n"}
            )
        ),
    )
    last = iris.home / "replays" / "shop" / "challenger.json"
    last.parent.mkdir(parents=True, exist_ok=True)
    last.write_text(record)
    ended = iris.run("promote", "recommend", "challenger", "--min-agreement", "0.9", check=False)
    assert (ended.returncode, ended.stdout) == (1, "")
    assert ended.stderr == (
        f"error: not promoting 'challenger': the last replay against it ({last}) cannot be read; "
        "replay it again (`inferd replay API --against challenger`)\n"
    )


def test_an_onnx_project_in_a_folder_whose_name_is_not_utf8_runs(tmp_path: Path) -> None:
    # A folder named in Latin-1 (an old disk, an archive): onnxruntime takes UTF-8 paths only, and
    # the model failed to load with its binding's dump ("incompatible constructor arguments ...
    # Invoked with: <...SessionOptions object at 0x...>, '.../caf\\udce9/...'").
    project = tmp_path / os.fsdecode(b"caf\xe9")
    shutil.copytree(example("iris-onnx"), project)
    ended = run(tmp_path, "test", str(project))
    assert (ended.returncode, ended.stdout) == (0, 'classifier  sample.json: "iris-setosa"\n1 passed\n'), (
        ended.stderr
    )
