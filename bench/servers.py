"""How each benchmarked server is installed, started, found ready and stopped.

Every server runs as a subprocess in its own session on a free loopback port, so that a stop
can find all of it: the session's members plus every descendant of the leader (Ray's actors
and BentoML's workers move to process groups of their own). A stop sends SIGTERM, waits a
few seconds and SIGKILLs what is left; `stop_all()` does the same for anything still running
when the bench is interrupted, so no server outlives `make bench`.

The peers (LitServe, BentoML, Ray Serve) each live in their own venv under
bench/.cache/venvs/<peer>, created once and reused while its requirements stay the same.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import ProcStat, all_processes, process_tree, read_stat

STOP_GRACE_S = 8.0


class ServerError(RuntimeError):
    """A server could not be installed or did not come up; the message says why, in one line."""


@dataclass(frozen=True)
class Probe:
    """The request whose 200 answer means 'ready'."""

    method: str
    path: str
    body: bytes | None = None


@dataclass
class ServerSpec:
    """One server process (tree) to start; several rows of the report may share it."""

    key: str
    label: str
    argv: Callable[[int], list[str]]  # port -> command line
    ready: Probe
    config: str  # how it is configured, for the report
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    start_timeout_s: float = 60.0
    unavailable: str | None = None  # set when it cannot run here (install failed, ...)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def request(port: int, probe: Probe, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of one request to 127.0.0.1:port; raises OSError when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if probe.body is not None else {}
        connection.request(probe.method, probe.path, body=probe.body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class RunningServer:
    """A started server; use as a context manager so that it is stopped whatever happens."""

    def __init__(self, spec: ServerSpec, log_dir: Path) -> None:
        self.spec = spec
        self.port = free_port()
        self.log_path = log_dir / f"{spec.key}.log"
        self._seen: set[tuple[int, int]] = set()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                spec.argv(self.port),
                cwd=spec.cwd,
                env={**os.environ, **spec.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.spec.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"exited with status {self.process.returncode}: {self.log_tail()}")
            try:
                if request(self.port, self.spec.ready)[0] == 200:
                    self.members()  # remember the tree now, in case the leader dies first
                    self.wait_settled()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise ServerError(f"not ready after {self.spec.start_timeout_s:.0f} s: {self.log_tail()}")

    def wait_settled(self, idle_cores: float = 0.05, window: float = 0.5, limit: float = 30.0) -> None:
        """Wait until the idle server's processes use almost no CPU (at most ``limit`` seconds).

        Ready is not idle: inferd starts its replica zygote once the first replica is ready, and
        other servers warm up in the background; CPU spent on that must not be charged to the
        requests measured next.
        """
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = sum(stat.cpu_seconds for stat in self.members())
            time.sleep(window)
            if sum(stat.cpu_seconds for stat in self.members()) - before <= idle_cores * window:
                return

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        interesting = [line.strip() for line in lines if line.strip()]
        return interesting[-1][:300] if interesting else "(empty log)"

    def members(self) -> list[ProcStat]:
        """Live processes of this server: the leader's descendants and its session's members."""
        tree = process_tree(self.pid)
        session = [stat for stat in all_processes() if stat.sid == self.pid]
        found = {(stat.pid, stat.start_ticks): stat for stat in [*tree, *session]}
        for pid, start in list(self._seen):
            stat = read_stat(pid)
            if stat is not None and stat.start_ticks == start:
                found[(pid, start)] = stat
        self._seen |= set(found)
        return [stat for stat in found.values() if stat.state != "Z"]

    def stop(self) -> None:
        """SIGTERM everything it started, SIGKILL what is left after a grace period.

        The server leaves the live set only once it is gone, so that an interrupt in the middle
        of a stop still gets it stopped by `stop_all()`.
        """
        for sig, grace in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
            targets = self.members()
            if not targets:
                break
            for stat in targets:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(stat.pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                self.process.poll()  # reap the leader so that it does not linger as a zombie
                if not self.members():
                    break
                time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        _LIVE.discard(self)


_LIVE: set[RunningServer] = set()


def stop_all() -> None:
    """Stop every server still running (on Ctrl-C, SIGTERM or an exception); Ctrl-C waits for it."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for server in list(_LIVE):
            server.stop()
    finally:
        signal.signal(signal.SIGINT, previous)


# --- peers: one venv each --------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    key: str
    label: str
    distribution: str  # whose version the report shows
    requirements: tuple[str, ...]


PEERS = (
    Peer("litserve", "LitServe", "litserve", ("litserve",)),
    Peer("bentoml", "BentoML", "bentoml", ("bentoml",)),
    Peer("ray", "Ray Serve", "ray", ("ray[serve]",)),
)
PEER_COMMON = ("onnxruntime", "numpy")


@dataclass(frozen=True)
class PeerEnv:
    peer: Peer
    venv: Path
    version: str = ""
    error: str | None = None

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR") or "error" in line.lower()]
    return (errors or lines or ["no output"])[-1][:300]


def prepare_peer(peer: Peer, cache: Path) -> PeerEnv:
    """The peer's venv, created on first use; a failure is returned as data, never raised."""
    venv = cache / "venvs" / peer.key
    stamp = venv / ".bench-requirements"
    wanted = " ".join((*peer.requirements, *PEER_COMMON))
    env = PeerEnv(peer, venv)
    log = cache / "logs" / f"install-{peer.key}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if not (stamp.is_file() and stamp.read_text() == wanted and env.python.exists()):
        shutil.rmtree(venv, ignore_errors=True)
        # Inside .venv, `python -m venv` builds on the base interpreter, so this is Python 3.11.
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [
                str(env.python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *wanted.split(),
            ],
        ]
        for step in steps:
            try:
                done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
            except subprocess.TimeoutExpired:
                return PeerEnv(peer, venv, error=f"install timed out: {' '.join(step)}")
            log.write_text(done.stdout + done.stderr)
            if done.returncode != 0:
                return PeerEnv(peer, venv, error=f"install failed: {_last_error_line(done.stderr)}")
        stamp.write_text(wanted)
    code = f"import importlib.metadata as m; print(m.version({peer.distribution!r}))"
    version = subprocess.run([str(env.python), "-c", code], capture_output=True, text=True, check=False)
    if version.returncode != 0:
        return PeerEnv(peer, venv, error=f"broken venv: {_last_error_line(version.stderr)}")
    return PeerEnv(peer, venv, version=version.stdout.strip())


def prepare_peers(cache: Path) -> list[PeerEnv]:
    """All peers' venvs, installed concurrently (pip is mostly waiting on the network)."""
    with ThreadPoolExecutor(len(PEERS)) as pool:
        return list(pool.map(lambda peer: prepare_peer(peer, cache), PEERS))


def ray_has_throughput_mode(venv: Path) -> bool:
    for constants in venv.glob("lib/python*/site-packages/ray/serve/_private/constants.py"):
        return "RAY_SERVE_THROUGHPUT_OPTIMIZED" in constants.read_text()
    return False


# --- the servers ---------------------------------------------------------------------------


def inferd_project(example: Path, into: Path, replicas: int) -> Path:
    """A copy of the example whose api pins `replicas` replicas (Cortex's compute block)."""
    project = into / f"inferd-{replicas}"
    shutil.copytree(example, project)
    config = project / "cortex.yaml"
    text = config.read_text().rstrip("\n")
    config.write_text(f"{text}\n  compute:\n    init_replicas: {replicas}\n    max_replicas: {replicas}\n")
    return project


def with_port(*head: str | Path, flag: str | None = None) -> Callable[[int], list[str]]:
    """A command line ending in the port (after `flag` when given)."""
    return lambda port: [*map(str, head), *([flag] if flag else []), str(port)]


def build_servers(
    root: Path, model: Path, sample: bytes, workdir: Path, peers: list[PeerEnv], cache: Path
) -> list[ServerSpec]:
    """Every server of the run: B0, inferd with 1 and 2 replicas, then the peers."""
    predict = Probe("POST", "/iris/classifier", sample)
    inferd = Path(sys.executable).parent / "inferd"
    specs = [
        ServerSpec(
            "b0",
            "B0",
            with_port(sys.executable, root / "bench" / "b0_server.py", model),
            predict,
            "1 uvicorn process, uvloop + httptools, Starlette, orjson; access log off",
        ),
    ]
    for replicas in (1, 2):
        project = inferd_project(root / "examples" / "iris-onnx", workdir, replicas)
        specs.append(
            ServerSpec(
                f"inferd{replicas}",
                f"inferd, {replicas} replica{'s' if replicas > 1 else ''}",
                with_port(inferd, "serve", project, "--access-log", flag="--port"),
                Probe("GET", "/healthz"),
                f"`inferd serve --access-log`, compute init_replicas = max_replicas = {replicas}; "
                "metrics on; defaults otherwise",
                env={"INFERD_HOME": str(workdir / f"home-{replicas}")},  # not the user's ~/.inferd
            )
        )
    peer_dir = root / "bench" / "peers"
    specs += [_peer_spec(env, model, predict, peer_dir, cache) for env in peers]
    return specs


def _peer_spec(env: PeerEnv, model: Path, predict: Probe, peer_dir: Path, cache: Path) -> ServerSpec:
    label = f"{env.peer.label} {env.version}".strip()
    quiet = {"DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
    if env.peer.key == "litserve":
        spec = ServerSpec(
            "litserve",
            label,
            with_port(env.python, peer_dir / "litserve_server.py", model),
            predict,
            "accelerator=cpu, workers_per_device=2, fast_queue=True (ZeroMQ), "
            "num_api_servers=auto (one per worker)",
            env=quiet,
        )
    elif env.peer.key == "bentoml":
        serve: list[str | Path] = [env.venv / "bin" / "bentoml", "serve", "bentoml_service:IrisClassifier"]
        spec = ServerSpec(
            "bentoml",
            label,
            with_port(*serve, "--working-dir", peer_dir, "--host", "127.0.0.1", flag="--port"),
            predict,
            'workers="cpu_count" (2), resources cpu=2, sync API, access log off',
            env=quiet | {"BENCH_MODEL": str(model), "BENTOML_HOME": str(cache / "bentoml-home")},
            start_timeout_s=120.0,
        )
        spec.env["BENTOML_DO_NOT_TRACK"] = "true"
    else:
        throughput = ray_has_throughput_mode(env.venv)
        spec = ServerSpec(
            "ray",
            label,
            with_port(env.python, peer_dir / "rayserve_server.py", model),
            predict,
            "ray.init(num_cpus=2), HTTP proxy, 1 replica (beat 2 here), max_ongoing_requests=32, "
            + (
                "RAY_SERVE_THROUGHPUT_OPTIMIZED=1"
                if throughput
                else "this Ray has no RAY_SERVE_THROUGHPUT_OPTIMIZED"
            ),
            env=quiet | {"RAY_USAGE_STATS_ENABLED": "0", "BENCH_RAY_REPLICAS": "1"},
            start_timeout_s=180.0,
        )
        if throughput:
            spec.env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    spec.unavailable = env.error
    return spec
