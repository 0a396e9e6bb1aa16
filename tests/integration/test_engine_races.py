"""Commands that interleave with the engine's control loop: the engine's state and the gateway's
routing table stay in step whatever comes between two reconcile steps.

Each test runs a real ``Gateway`` and a ``LocalEngine`` in one event loop, with real replica
processes and real HTTP, and takes the engine's steps itself (``Stepped``): a deploy, a delete
or a replica's event lands exactly between the steps it names.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import requests

from inferd.config.load import load_project
from inferd.engine.local import LocalEngine
from inferd.gateway.app import Gateway
from inferd.operator.reload import Reloader
from inferd.replica.handle import ReplicaState
from tests.conftest import make_project

T = TypeVar("T")

# Each answer names the API (its metadata) and the replica (its pid) that gave it.
WHO = "import os\n\n\ndef predict(sample, metadata):\n    return [metadata['api'], os.getpid()]\n"
WAIT = 60.0  # seconds a condition may take on a loaded machine before the test fails


class Stepped(LocalEngine):
    """A local engine whose reconcile steps are the test's to take (``reconcile()``)."""

    async def _reconcile_forever(self) -> None:
        await asyncio.Event().wait()


class Rig:
    """A gateway and a stepped engine on one event loop."""

    def __init__(self, home: Path) -> None:
        self.gateway = Gateway()
        self.engine = Stepped(self.gateway, home=home)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.gateway.ports[0]}{path}"

    async def post(self, path: str, body: Any = None) -> requests.Response:
        return await asyncio.to_thread(requests.post, self.url(path), json=body or {}, timeout=WAIT)

    def check(self) -> None:
        """The gateway routes to exactly the engine's serving replicas of its live APIs."""
        engine, gateway = self.engine, self.gateway
        for key, state in engine.apis.items():
            queue = gateway.apis.get(key)
            if state.deleting:
                assert queue is None, f"{key} is deleted, and the gateway still routes to it"
                continue
            assert queue is not None, f"{key} is live in the engine, and the gateway has no queue for it"
            serving = {r.replica_id for r in queue.replicas if r.state == ReplicaState.READY}
            ready = {r.id for r in state.replicas if r.ready and not r.stuck}
            assert serving == ready, f"{key}: the gateway routes to {serving}, the engine's ready: {ready}"
        for key in gateway.apis:
            assert key in engine.apis, f"the gateway routes to {key}, which the engine does not have"

    async def until(self, condition: Callable[[], T | None], what: str) -> T:
        """Take steps until ``condition()`` is true (checking the invariants at each); its value."""
        deadline = time.monotonic() + WAIT
        while True:
            self.check()
            value = condition()
            if value:
                return value
            assert time.monotonic() < deadline, f"waited {WAIT:g}s for {what}"
            self.engine.reconcile()
            self.check()
            await asyncio.sleep(0.02)

    async def live(self, *keys: str) -> None:
        """Until each API's version has a ready replica, and the old ones are let go."""

        def done() -> bool:
            states = [self.engine.apis.get(key) for key in keys]
            return all(
                state is not None
                and state.status == "live"
                and all(r.version == state.version.id for r in state.replicas if not r.retired)
                for state in states
            )

        await self.until(done, f"{', '.join(keys)} live")


async def replaced(rig: Rig, key: str) -> int:
    """Kill one of the API's replicas; the pid of the one that takes its place, once it serves."""
    state = rig.engine.apis[key]
    killed = state.replicas[0]
    killed.process.kill()

    def back() -> int | None:
        ready = [r for r in state.replicas if r.ready]
        if killed in state.replicas or len(ready) < state.desired or state.status != "live":
            return None
        return ready[-1].process.pid

    return await rig.until(back, f"{key} replaced")


def run(tmp_path: Path, scenario: Callable[[Rig], Awaitable[T]]) -> T:
    async def main() -> T:
        rig = Rig(tmp_path / "home")
        await rig.gateway.start("127.0.0.1", 0)
        try:
            return await scenario(rig)
        finally:
            await rig.engine.stop()
            await rig.gateway.close()

    return asyncio.run(main())


def api(name: str, endpoint: str | None = None, extra: str = "") -> str:
    where = f"  endpoint: {endpoint}\n" if endpoint else ""
    return (
        f"- kind: api\n  name: {name}\n{where}  predictor:\n    path: p.py\n"
        f"    metadata:\n      api: {name}\n{extra}"
    )


def project(root: Path, *apis: str, deployment: str = "d") -> Path:
    return make_project(root, f"- kind: deployment\n  name: {deployment}\n" + "".join(apis), {"p.py": WHO})


def test_an_api_renamed_in_a_deploy_keeps_its_endpoint(tmp_path: Path) -> None:
    # Was: the new API took the endpoint, then deleting the old one (the same deploy) dropped the
    # endpoint from the gateway: every request to it was a 404 while the API was live.
    before = project(tmp_path / "v1", api("iris", "/predict"))
    after = project(tmp_path / "v2", api("iris-v2", "/predict"))

    async def scenario(rig: Rig) -> str:
        await rig.engine.apply(load_project(before))
        await rig.live("d/iris")
        assert (await rig.post("/predict")).json()[0] == "iris"
        await rig.engine.apply(load_project(after))
        await rig.live("d/iris-v2")
        answer = await rig.post("/predict")
        assert answer.status_code == 200, answer.text
        return str(answer.json()[0])

    assert run(tmp_path, scenario) == "iris-v2"


def test_two_apis_that_swap_endpoints_in_a_deploy_both_answer(tmp_path: Path) -> None:
    # Was: the second API's old endpoint was taken out of the routes though the first one had it
    # now: one endpoint answered 404, the other the second API.
    before = project(tmp_path / "v1", api("a", "/one"), api("b", "/two"))
    after = project(tmp_path / "v2", api("a", "/two"), api("b", "/one"))

    async def scenario(rig: Rig) -> dict[str, str]:
        await rig.engine.apply(load_project(before))
        await rig.live("d/a", "d/b")
        await rig.engine.apply(load_project(after))
        await rig.live("d/a", "d/b")
        answers = {path: await rig.post(path) for path in ("/one", "/two")}
        return {path: answer.text for path, answer in answers.items()}

    answers = run(tmp_path, scenario)
    assert {path: orjson.loads(text)[0] for path, text in answers.items()} == {"/one": "b", "/two": "a"}, (
        answers
    )


def test_an_update_of_an_api_that_does_not_fit_still_refuses_requests_at_once(tmp_path: Path) -> None:
    # Was: the deploy told the gateway the new version had no error, and the engine, whose reason
    # had not changed, never told it again: `inferd get` said `compute unavailable`, and each
    # request waited for its timeout (504, a minute by default) instead of a 503 with the reason.
    big = "  timeout: 5\n  compute:\n    cpu: 4096\n"
    first = project(tmp_path / "v1", api("big", extra=big))
    second = project(tmp_path / "v2", api("big", extra=big))
    (second / "p.py").write_text(WHO + "# edited\n")

    async def scenario(rig: Rig) -> list[tuple[int, str]]:
        answers = []
        for folder in (first, second, first):  # an update, then a delete and a deploy again
            if folder is first and rig.engine.apis:
                rig.engine.delete("d/big")
            await rig.engine.apply(load_project(folder))
            await rig.until(lambda: rig.engine.apis["d/big"].status == "compute unavailable", "no room")
            answer = await rig.post("/d/big")
            answers.append((answer.status_code, answer.text))
        return answers

    reason = "compute unavailable: needs cpu 4096"
    for status, text in run(tmp_path, scenario):
        assert status == 503 and reason in text, text


def test_an_api_no_longer_copied_to_runs_its_new_replicas_at_full_priority(tmp_path: Path) -> None:
    # Was: the API whose shadow it was still counted as copying to it while it drained (a deploy
    # that removed it), and after `inferd delete` until the next deploy: the replicas started
    # since ran 10 nice levels down, and its autoscaler was capped as a shadow's.
    shadowed = api("primary", extra="  shadow:\n    api: copy\n")
    both = project(tmp_path / "both", shadowed, api("copy"))
    alone = project(tmp_path / "alone", api("copy"))

    async def scenario(rig: Rig) -> list[tuple[str, int]]:
        niced = []
        for change in ("delete", "deploy"):
            await rig.engine.apply(load_project(both))
            await rig.live("d/primary", "d/copy")
            if change == "delete":
                rig.engine.delete("d/primary")
            else:
                await rig.engine.apply(load_project(alone))
            pid = await replaced(rig, "d/copy")
            niced.append((change, os.getpriority(os.PRIO_PROCESS, pid) - rig.engine.priorities.base))
        return niced

    assert run(tmp_path, scenario) == [("delete", 0), ("deploy", 0)]


def test_a_stop_right_after_a_delete_lets_the_deleted_apis_request_finish(tmp_path: Path) -> None:
    # Was: the drain of `inferd down` (and of Ctrl-C on `inferd serve`) counted the requests of
    # live APIs only: one still running on a deleted API's replica was cut off (503) at once.
    release = tmp_path / "release"
    held = (
        "import pathlib, time\n\n\ndef predict(sample, metadata):\n"
        f"    while not pathlib.Path({str(release)!r}).exists():\n        time.sleep(0.01)\n"
        "    return 'done'\n"
    )
    folder = make_project(tmp_path / "p", "- kind: deployment\n  name: d\n" + api("held"), {"p.py": held})

    async def scenario(rig: Rig) -> tuple[int, str]:
        await rig.engine.apply(load_project(folder))
        await rig.live("d/held")
        queue = rig.gateway.apis["d/held"]
        answer = asyncio.ensure_future(rig.post("/d/held"))
        await rig.until(lambda: queue.running, "the request at the replica")
        rig.engine.delete("d/held")

        async def down() -> None:  # as the operator stops
            await rig.gateway.drain(WAIT)
            await rig.engine.stop()

        stopping = asyncio.ensure_future(down())
        await asyncio.sleep(0)  # the drain has counted the requests (released before, it might find none)
        release.touch()
        await stopping
        response = await answer
        return response.status_code, response.text

    assert run(tmp_path, scenario) == (200, '"done"')


def test_a_deploy_right_after_a_delete_starts_the_api_afresh(tmp_path: Path) -> None:
    # Was: within the engine's next step (0.25 s) of `inferd delete`, a deploy took the deleted
    # API's state over: the replica count it wanted then (2, its min_replicas), not the one the
    # new config asks for (1), and its autoscaler's past.
    two = project(tmp_path / "two", api("echo", extra="  compute:\n    min_replicas: 2\n"))
    one = project(tmp_path / "one", api("echo"))

    async def scenario(rig: Rig) -> tuple[int, int]:
        await rig.engine.apply(load_project(two))
        await rig.live("d/echo")
        rig.engine.delete("d/echo")
        await rig.engine.apply(load_project(one))  # no step of the engine in between
        await rig.live("d/echo")
        state = rig.engine.apis["d/echo"]
        return state.desired, sum(not r.retired for r in state.replicas)

    assert run(tmp_path, scenario) == (1, 1)


def test_an_api_whose_replica_dies_is_not_said_live_meanwhile(tmp_path: Path) -> None:
    # Was: until the engine's next step, `inferd get` and GET on the endpoint said `live` (with no
    # replica available) while /healthz, told at once, said the API had none ready.
    folder = project(tmp_path / "p", api("echo"))

    async def scenario(rig: Rig) -> tuple[str, str | None, list[str]]:
        await rig.engine.apply(load_project(folder))
        await rig.live("d/echo")
        queue = rig.gateway.apis["d/echo"]
        (replica,) = rig.engine.apis["d/echo"].replicas
        replica.process.kill()
        deadline = time.monotonic() + WAIT
        while queue.ready:  # no step of the engine: the gateway hears of the close
            assert time.monotonic() < deadline, "the replica's close was never seen"
            await asyncio.sleep(0.01)
        return rig.engine.describe("d/echo")["status"], queue.status, rig.gateway.not_ready()

    assert run(tmp_path, scenario) == ("updating", "updating", ["echo"])


def test_a_reload_that_renames_the_deployment_and_cannot_read_a_file_keeps_the_old_apis(
    tmp_path: Path,
) -> None:
    # Was: `inferd serve --reload` deleted the old name's APIs before the new name's deploy, which
    # failed (a file no read succeeds on): it said "the previous version keeps serving", and every
    # request to the old endpoint was a 404 until a later edit deployed the new name.
    folder = project(tmp_path / "p", api("echo"))
    said: list[str] = []

    async def scenario(rig: Rig) -> list[tuple[str, int, str]]:
        await rig.engine.apply(load_project(folder))
        await rig.live("d/echo")
        reloader = Reloader(load_project(folder), rig.engine, said.append)
        config = folder / "cortex.yaml"
        config.write_text(config.read_text().replace("name: d\n", "name: e\n", 1))
        (folder / "unreadable").symlink_to("/proc/self/mem")  # a regular file no read succeeds on
        await reloader.reload({config})
        answers = [("failed", (r := await rig.post("/d/echo")).status_code, r.text)]
        (folder / "unreadable").unlink()
        await reloader.reload({folder / "unreadable"})  # the edit that makes it load
        await rig.live("e/echo")
        for path in ("/d/echo", "/e/echo"):
            answers.append(("loaded", (r := await rig.post(path)).status_code, r.text))
        return answers

    answers = run(tmp_path, scenario)
    assert "inferd: not reloaded; the previous version keeps serving" in said, said
    status = [(when, code, orjson.loads(text)[0] if code == 200 else text) for when, code, text in answers]
    assert status[0] == ("failed", 200, "echo"), status  # the old API still answers
    assert status[1][:2] == ("loaded", 404) and status[2] == ("loaded", 200, "echo"), status
