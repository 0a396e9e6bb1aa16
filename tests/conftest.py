"""Shared fixtures: example paths, small models built on the fly, and a real `inferd serve`."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
INFERD = Path(sys.executable).parent / "inferd"
T = TypeVar("T")


# `make test` hands whole files to two workers in collection order (--no-loadscope-reorder:
# pytest-xdist otherwise starts with the files that have the most tests, and the Ray file's 4
# minutes, 5 tests, came 72nd of 142). The slowest files go first and the many short files of
# tests/unit last, so that neither worker is left alone with a long file at the end.
SLOWEST_FILES = ("tests/integration/test_ray.py", "tests/compat/test_cortex_v010.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first = {path: rank for rank, path in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: first.get(item.nodeid.split("::", 1)[0], len(first)))


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def loopback_without_proxy(environ: MutableMapping[str, str]) -> None:
    """Add the loopback addresses to ``no_proxy`` and ``NO_PROXY`` where a proxy is set.

    A CI machine may reach PyPI through ``http_proxy``; the suite's own HTTP clients
    (requests, httpx, curl) took that for the servers it starts on 127.0.0.1, and every wait
    for a server timed out at the proxy. pip, run by tests that install packages, keeps it."""
    if not any(
        environ.get(f"{scheme}_{case}") for scheme in ("http", "https", "all") for case in ("proxy", "PROXY")
    ):
        return
    for name in ("no_proxy", "NO_PROXY"):
        hosts = [host.strip() for host in environ.get(name, "").split(",") if host.strip()]
        environ[name] = ",".join(hosts + [host for host in LOOPBACK if host not in hosts])


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis keeps its database and caches in a folder of this run's, removed after it:
    by default it makes ``.hypothesis`` in the working directory, in the repository or wherever
    pytest was started from (``cd / && pytest ...`` left ``/.hypothesis``). A proxy in the
    environment is for the internet, never for this machine's servers. inferd's settings from
    the shell (``INFERD_CPUS``, ``INFERD_PORT``...: a user of inferd may keep them in a profile)
    are not the suite's: each test sets those it means, and the defaults hold for the rest. No
    display either: on a desktop each ``inferd dashboard`` the suite ran opened a browser tab,
    which spent the one-time link before the test could (its browser runs headless)."""
    from hypothesis.configuration import set_hypothesis_home_dir

    loopback_without_proxy(os.environ)
    for name in [name for name in os.environ if name.startswith("INFERD_")]:
        del os.environ[name]
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        os.environ.pop(name, None)

    home = Path(tempfile.mkdtemp(prefix="inferd-tests-hypothesis-"))
    set_hypothesis_home_dir(home)
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI (every dependency installed, run as root) a skipped test is a failure: a skip
    there is a check that did not run, and the run would be green with it."""
    under_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if not under_ci or hasattr(session.config, "workerinput"):  # xdist: the controller says
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if reporter is not None and skipped and exitstatus == pytest.ExitCode.OK:
        reporter.write("\n")  # after the progress line
        reporter.write_sep(
            "=", f"CI: {len(skipped)} skipped test(s) fail the run (their reasons below)", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def inferd_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every inferd the suite starts keeps its state in this run's own folder, never in ~/.inferd.

    So no test leans on a cache (models, requirement environments) that an earlier run left.
    """
    home = tmp_path_factory.mktemp("inferd-home")
    previous = os.environ.get("INFERD_HOME")
    os.environ["INFERD_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("INFERD_HOME", None)
    else:
        os.environ["INFERD_HOME"] = previous


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def child_pids(pid: int) -> set[int]:
    """The processes whose parent is ``pid``, from ``/proc`` (``ps`` is procps', which a
    container image may lack: every test that looked for a replica failed there)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rpartition(b")")[2].split()
        except OSError:
            continue  # ended meanwhile
        if len(fields) > 1 and int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def is_zygote(pid: int) -> bool:
    try:
        return b"inferd.replica.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def zygote_pids(server_pid: int) -> set[int]:
    """The replica zygotes an ``inferd serve`` (or operator) process started."""
    return {pid for pid in child_pids(server_pid) if is_zygote(pid)}


def replica_pids(server_pid: int) -> set[int]:
    """The replica processes of a server: its own children and those its zygotes forked."""
    children = child_pids(server_pid)
    zygotes = {pid for pid in children if is_zygote(pid)}
    forked = set().union(*(child_pids(pid) for pid in zygotes)) if zygotes else set()
    return {pid for pid in (children - zygotes) | forked if process_alive(pid)}


def whole_lines(path: Path) -> list[str]:
    """The complete lines of a file another process appends to (a payload log): a record being
    written is left out until its newline is there (none when the file is not there yet)."""
    text = path.read_text() if path.is_file() else ""
    return text.split("\n")[:-1]


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Server:
    """A real ``inferd serve`` process on a free port, its log in a file."""

    def __init__(self, project: Path, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [str(INFERD), "serve", str(project), "--port", "0", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:  # the imports before the banner take seconds on a loaded machine: a generous deadline
            self.url = wait_for(self._banner, 120, "the serving banner")
        except BaseException:
            self.stop()  # a server that never came up leaves no process and no open file
            raise

    def _banner(self) -> str | None:
        if self.process.poll() is not None:
            raise AssertionError(f"inferd serve exited ({self.process.returncode}):\n{self.log()}")
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", self.log())
        return found.group(1) if found else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self, timeout: float = 180.0) -> Server:
        """Until /healthz is 200: every API has a ready replica (TensorFlow's import alone took
        close to a minute on a busy 2-core machine, so the deadline is generous)."""
        try:
            wait_for(self.healthy, timeout, "/healthz 200")
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}; log:\n{self.log()}") from None
        return self

    def post(
        self, path: str, body: Any = None, data: bytes | None = None, **kwargs: Any
    ) -> requests.Response:
        if data is None:
            return requests.post(f"{self.url}{path}", json=body, timeout=30, **kwargs)
        return requests.post(f"{self.url}{path}", data=data, timeout=30, **kwargs)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``inferd serve`` on a project; every server is stopped at teardown."""
    servers: list[Server] = []

    def start(project: Path, *args: str, ready: bool = True) -> Server:
        server = Server(project, tmp_path / f"serve-{len(servers)}.log", *args)
        servers.append(server)
        return server.wait_ready() if ready else server

    yield start
    for server in servers:
        server.stop()


def example(name: str) -> Path:
    path = EXAMPLES / name
    if not (path / "models").exists():
        subprocess.run([sys.executable, str(path / "build_model.py")], check=True)
    return path


@pytest.fixture(scope="session")
def iris_onnx_model() -> Path:
    return example("iris-onnx") / "models" / "iris.onnx"


@pytest.fixture(scope="session")
def two_input_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX model with inputs a, b (float [N, 2]) and output sum = a + b."""
    from onnx import TensorProto, helper, save_model

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 2])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 2])
    out = helper.make_tensor_value_info("sum", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["sum"])], "add", [a, b], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("models") / "add.onnx"
    save_model(model, str(path))
    return path


# A V2 infer request for ``two_input_model``: sum = [[4, 6]].
ADD_V2_BODY = {
    "inputs": [
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
        {"name": "b", "shape": [1, 2], "datatype": "FP32", "data": [3, 4]},
    ]
}


def make_project(
    root: Path, yaml_text: str, files: dict[str, str] | None = None, models: dict[str, Path] | None = None
) -> Path:
    """Write a project folder: cortex.yaml, handler files and copied model files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cortex.yaml").write_text(yaml_text)
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name, source in (models or {}).items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    return root


V2_TYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)


@pytest.fixture(scope="session")
def all_types_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX model with one Identity per V2 datatype: in_<type> [N, 2] -> out_<type>.

    BF16 is left out: onnxruntime's Python API cannot take bfloat16 inputs.
    """
    from onnx import TensorProto, helper, save_model

    onnx_types = {
        "BOOL": TensorProto.BOOL,
        "UINT8": TensorProto.UINT8,
        "UINT16": TensorProto.UINT16,
        "UINT32": TensorProto.UINT32,
        "UINT64": TensorProto.UINT64,
        "INT8": TensorProto.INT8,
        "INT16": TensorProto.INT16,
        "INT32": TensorProto.INT32,
        "INT64": TensorProto.INT64,
        "FP16": TensorProto.FLOAT16,
        "FP32": TensorProto.FLOAT,
        "FP64": TensorProto.DOUBLE,
        "BYTES": TensorProto.STRING,
    }
    inputs, outputs, nodes = [], [], []
    for name in V2_TYPES:
        kind = onnx_types[name]
        inputs.append(helper.make_tensor_value_info(f"in_{name.lower()}", kind, [None, 2]))
        outputs.append(helper.make_tensor_value_info(f"out_{name.lower()}", kind, [None, 2]))
        nodes.append(helper.make_node("Identity", [f"in_{name.lower()}"], [f"out_{name.lower()}"]))
    # TensorFlow Serving sends outputs named *_bytes as {"b64": ...}, other strings as text.
    for extra in ("raw_bytes", "echo_text"):
        outputs.append(helper.make_tensor_value_info(extra, TensorProto.STRING, [None, 2]))
        nodes.append(helper.make_node("Identity", ["in_bytes"], [extra]))
    model = helper.make_model(
        helper.make_graph(nodes, "identity", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    path = tmp_path_factory.mktemp("models") / "all_types.onnx"
    save_model(model, str(path))
    return path


@pytest.fixture(scope="session")
def regression_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linear regression y = 2a + 3b + 1 exported to ONNX: input float [N, 2], output [N, 1]."""
    import numpy as np
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LinearRegression

    features = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [2, 3]], dtype=np.float32)
    target = features @ np.array([2.0, 3.0]) + 1.0
    model = convert_sklearn(
        LinearRegression().fit(features, target), initial_types=[("features", FloatTensorType([None, 2]))]
    )
    path = tmp_path_factory.mktemp("models") / "linear.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def save_tensorflow(module: Any, path: Path, signatures: dict[str, Any]) -> None:
    """``tf.saved_model.save``, leaving nothing in $TMPDIR: AutoGraph imports the code it
    generates from temporary files it removes, and Python wrote their bytecode beside them
    (each run of the suite left /tmp/__pycache__/__autograph_generated_file*.pyc)."""
    import tensorflow as tf

    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        tf.saved_model.save(module, str(path), signatures=signatures)
    finally:
        sys.dont_write_bytecode = writes_bytecode


def save_two_signatures(path: Path) -> None:
    """A SavedModel with two signatures, neither ``predict`` nor ``serving_default``: ``area``
    (sizes [N, 2] -> area) and ``double`` (x [N] -> twice)."""
    import tensorflow as tf

    class Shapes(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])  # type: ignore[untyped-decorator]
        def area(self, sizes: Any) -> dict[str, Any]:
            return {"area": sizes[:, 0] * sizes[:, 1]}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])  # type: ignore[untyped-decorator]
        def double(self, x: Any) -> dict[str, Any]:
            return {"twice": x * 2}

    shapes = Shapes()
    save_tensorflow(shapes, path, {"area": shapes.area, "double": shapes.double})


def from_a_terminal(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``inferd ARGS`` in the background with its output piped, as a terminal's Ctrl-C finds it:
    a background job (a shell's, CI's) starts with SIGINT ignored."""
    return subprocess.Popen(
        [str(INFERD), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def served_url(log: Path, process: subprocess.Popen[bytes]) -> str:
    """The URL an ``inferd serve`` writing its output to ``log`` serves on, once its /healthz
    answers 200 (an AssertionError with the log if the process ends first)."""

    def exited() -> None:
        if process.poll() is not None:
            raise AssertionError(f"inferd serve exited ({process.returncode}):\n{log.read_text()}")

    def banner() -> str | None:
        exited()
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text())
        return found.group(1) if found else None

    url: str = wait_for(banner, 120, "the serving banner")

    def ready() -> bool:
        exited()  # (a serve that dies while its replicas load: said now, with its log, not in 180 s)
        try:
            return requests.get(f"{url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(ready, 180, "/healthz 200")
    return url


def calls_made(function: Callable[[], T]) -> tuple[int, T]:
    """How many Python and C calls ``function()`` made, and what it returned: a cost measured as
    work done, which a shared machine's load does not change, rather than as time."""
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        result = function()
    finally:
        sys.setprofile(None)
    return calls, result


def suspended(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """As after ``seconds`` with the machine suspended (a laptop's lid closed): the wall clock and
    the boot clock went on, the monotonic clock did not."""
    wall, clock = time.time, time.clock_gettime
    monkeypatch.setattr(time, "time", lambda: wall() + seconds)
    monkeypatch.setattr(
        time, "clock_gettime", lambda which: clock(which) + seconds * (which == time.CLOCK_BOOTTIME)
    )


def built_wheel(source: Path, out: Path) -> dict[str, bytes]:
    """The files of the wheel that ``pip install SOURCE`` builds (setuptools, as pip runs it, in
    about 1.5 s), by name. The build writes ``build/`` and ``*.egg-info`` into ``source``: give it
    a copy, never the checkout (an egg-info in src/ would be found beside the editable install)."""
    build = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", build, str(out)], cwd=source, capture_output=True, text=True, check=True
    )
    with zipfile.ZipFile(out / done.stdout.splitlines()[-1]) as wheel:
        return {name: wheel.read(name) for name in wheel.namelist()}


def package_sources() -> set[str]:
    """Every file of inferd's packages in src/ (``inferd/operator/static/index.html``), as a wheel
    names them: what the code may read at run time (bytecode caches aside)."""
    src = ROOT / "src"
    files = (path.relative_to(src) for path in src.rglob("*") if path.is_file())
    return {
        file.as_posix()
        for file in files
        if not any(part == "__pycache__" or part.endswith(".egg-info") for part in file.parts)
    }


def wheel_contents(wheel: dict[str, bytes]) -> tuple[set[str], dict[str, str]]:
    """What installing ``wheel`` puts in site-packages (its metadata aside) and the commands it
    makes (``{"inferd": "inferd.cli.main:main"}``)."""
    (name,) = [name for name in wheel if name.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel[name].decode())
    return {name for name in wheel if ".dist-info/" not in name}, dict(parser["console_scripts"])
