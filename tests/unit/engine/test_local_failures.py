"""A reconcile step that fails becomes the API's error with a back-off, not a silent loop."""

from __future__ import annotations

import asyncio
import errno
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from inferd.config.load import load_project
from inferd.config.schema import ApiConfig
from inferd.engine import failures, launch, report
from inferd.engine.local import LocalEngine
from inferd.replica.handle import ReplicaHandle, ReplicaState


class Sink:
    """Records what the engine tells the gateway."""

    def __init__(self) -> None:
        self.errors: dict[str, str | None] = {}

    def add_api(self, config: ApiConfig, environ: Mapping[str, str] | None = None) -> None: ...

    def remove_api(self, name: str) -> None: ...

    def replica_ready(self, api: str, handle: ReplicaHandle) -> None: ...

    def replica_gone(self, api: str, handle: ReplicaHandle) -> None: ...

    def api_error(self, api: str, reason: str | None) -> None:
        self.errors[api] = reason

    def in_flight(self, api: str) -> int:
        return 0

    def load(self, api: str) -> int:
        return 0

    def arrivals(self, api: str) -> int:
        return 0

    def api_status(self, api: str, status: str) -> None: ...

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def test_a_replica_that_cannot_start_is_the_apis_error_with_back_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_dir = tmp_path / "p"
    project_dir.mkdir()
    (project_dir / "cortex.yaml").write_text(
        "- kind: deployment\n  name: d\n- kind: api\n  name: doomed\n  predictor:\n    path: p.py\n"
    )
    (project_dir / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    calls: list[str] = []

    def refuse(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        calls.append(argv[argv.index("-m") + 1])  # python [-P] -m MODULE: a replica, or a zygote
        raise OSError(errno.E2BIG, "Argument list too long")

    async def scenario() -> tuple[LocalEngine, Sink]:
        sink = Sink()
        engine = LocalEngine(sink, home=tmp_path / "home", log_dir=tmp_path / "home" / "logs")
        monkeypatch.setattr(subprocess, "Popen", refuse)
        monkeypatch.setattr(launch, "SpawnedReplica", refuse)
        await engine.apply(load_project(project_dir))
        for _ in range(20):  # 20 steps in a row: the back-off keeps the attempts few
            engine.reconcile()
        await engine.stop()
        return engine, sink

    engine, sink = asyncio.run(scenario())
    info = engine.describe("d/doomed")
    assert info["status"] == "error"
    assert "cannot run this API: OSError: [Errno 7] Argument list too long" in info["error"]
    assert sink.errors["d/doomed"] == info["error"]
    # one replica start, and one zygote start (not tried again while no replica is ready)
    assert sorted(calls) == ["inferd.replica.worker", "inferd.replica.zygote"]
    log = (tmp_path / "home" / "logs" / "d" / "doomed.log").read_text()
    assert log.count("Argument list too long") == 1  # said once, not every 250 ms


def test_a_redeploy_applies_new_autoscaling_and_starts_an_api_at_zero_again(tmp_path: Path) -> None:
    """A new version of an API scaled to zero asks for a replica (the deploy shows whether it
    loads); changed ``autoscaling:`` windows take effect at the redeploy."""
    project_dir = tmp_path / "p"
    project_dir.mkdir()
    config = project_dir / "cortex.yaml"
    (project_dir / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    api = "- kind: deployment\n  name: d\n- kind: api\n  name: cold\n  predictor:\n    path: p.py\n"

    async def scenario() -> list[tuple[int, float]]:
        engine = LocalEngine(Sink(), home=tmp_path / "home", log_dir=tmp_path / "home" / "logs")
        seen = []
        try:
            config.write_text(api + "  compute: {min_replicas: 0, init_replicas: 0}\n")
            await engine.apply(load_project(project_dir))
            state = engine.apis["d/cold"]
            seen.append((state.desired, state.autoscaler.down_window))
            config.write_text(api + "  compute: {min_replicas: 0}\n  autoscaling: {downscale_window: 7}\n")
            await engine.apply(load_project(project_dir))
            seen.append((state.desired, state.autoscaler.down_window))
        finally:
            await engine.stop()
        return seen

    assert asyncio.run(scenario()) == [(0, 60.0), (1, 7.0)]


def test_a_crashing_replica_is_started_again_after_a_doubling_pause_up_to_30_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """README: the next start waits 0.25 s, then twice as long after each crash, up to 30 s,
    until a replica runs a minute."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    version = SimpleNamespace(id="v1", failures=0, next_start=0.0)
    state: Any = SimpleNamespace(failed=0, version=version)

    def crash(ran: float) -> float:
        replica: Any = SimpleNamespace(version="v1", started=now[0] - ran, loaded=True)
        failures.crashed(state, replica, True, lambda api, text, level=0: None)
        return float(version.next_start - now[0])

    pauses = [crash(ran=1.0) for _ in range(10)]
    assert pauses == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert state.failed == 10
    assert crash(ran=61.0) == 0.25  # it ran a minute: a fresh failure, the pause starts over


def test_a_crash_loop_that_recovered_is_no_error_when_the_api_next_starts_a_replica(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three crashes in a row, then a replica that served for minutes and was scaled down (not
    a crash): the next cold start is ``live`` scaling up, not ``error`` naming the old crashes
    (the count was reset only by a crash after a minute, never by a replica retired after one)."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    compute = SimpleNamespace(min_replicas=0)
    version = SimpleNamespace(id="v1", failures=0, next_start=0.0, last_crash="", error=None, oom=False)
    state: Any = SimpleNamespace(
        failed=0,
        version=version,
        key="d/a",
        replicas=[],
        deleting=False,
        desired=1,
        deferred=0,
        unschedulable=False,
        status="live",
        config=SimpleNamespace(api=SimpleNamespace(compute=compute)),
    )
    sink = Sink()

    def replica(ran: float, code: int) -> Any:
        process = SimpleNamespace(poll=lambda: code)
        handle = SimpleNamespace(state=ReplicaState.CLOSED)
        return SimpleNamespace(
            id=f"r{len(state.replicas)}",
            version="v1",
            started=now[0] - ran,
            loaded=True,
            retired=False,
            crashed=False,
            died_loading=False,
            cgroup=None,
            over_mem_limit=False,
            process=process,
            handle=handle,
        )

    for _ in range(3):
        crashing = replica(ran=1.0, code=3)
        state.replicas.append(crashing)
        failures.crashed(state, crashing, False, lambda api, text, level=0: None)
        failures.reap(state, sink, lambda api, text, level=0: None)
    assert report.status(state) == "error"  # the loop, while none is ready
    healthy = replica(ran=600.0, code=0)
    healthy.retired = True  # scaled down to zero after serving for ten minutes
    state.replicas.append(healthy)
    failures.reap(state, sink, lambda api, text, level=0: None)
    assert failures.crash_loop(state) is None
    assert report.status(state) == "live"  # scaling up from zero at a request


async def _until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_a_replica_let_go_while_it_loads_is_said_to_be_loading_when_killed(tmp_path: Path) -> None:
    """A replica deleted (or replaced) while its model still loads is killed 10 s after it was
    let go, and the API's log says so. Was: "(its code keeps the process alive: an exit handler
    that does not return)", of a replica that had run no code of the user's but its import."""
    project_dir = tmp_path / "p"
    project_dir.mkdir()
    (project_dir / "cortex.yaml").write_text(
        "- kind: deployment\n  name: d\n- kind: api\n  name: slow\n  predictor:\n    path: p.py\n"
    )
    (project_dir / "p.py").write_text(
        "import time\ntime.sleep(3600)  # a model that loads for a long time\n\n\n"
        "def predict(sample, metadata):\n    return 1\n"
    )
    said: list[str] = []

    async def scenario() -> None:
        engine = LocalEngine(Sink(), home=tmp_path / "home", log_dir=tmp_path / "home" / "logs")
        try:
            await engine.apply(load_project(project_dir))
            state = engine.apis["d/slow"]
            await _until(lambda: state.replicas and not state.replicas[0].handle.greeting, 60, "a replica")
            (replica,) = state.replicas
            engine.delete("d/slow")
            engine.reconcile()  # lets it go: its connection closes
            await _until(lambda: replica.closed_at is not None, 30, "its connection to close")
            assert replica.closed_at is not None and not replica.loaded
            later = replica.closed_at + failures.LINGER_SECONDS
            failures.end_lingering(state, lambda api, text, level=0: said.append(text), later)
            await _until(lambda: replica.process.poll() is not None, 30, "the kill")
        finally:
            await engine.stop()

    asyncio.run(scenario())
    (line,) = said
    assert "was still loading 10s after it was let go; killing it" in line, line
    assert "exit handler" not in line
