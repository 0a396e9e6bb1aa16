"""Reading Ray Serve's state: only "no controller" means no applications."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from inferd.engine.ray.cluster import ClusterError, RayCluster


def test_a_failed_read_is_an_error_not_an_empty_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings():  # Ray's own modules use APIs pydantic deprecated
        warnings.simplefilter("ignore")
        from ray.serve import context

    def unreachable(**kwargs: Any) -> Any:
        raise ConnectionError("GCS at 10.0.0.5:6379 did not answer\nmore detail")

    deploying = RayCluster("ray://10.0.0.5:10001")
    deploying.serve_loaded = True  # a deploy reads Serve's state in its own process
    monkeypatch.setattr(context, "_get_global_client", unreachable)
    with pytest.raises(ClusterError, match=r"cannot read Ray Serve's state: .*did not answer"):
        deploying.details()

    monkeypatch.setattr(context, "_get_global_client", lambda **kwargs: None)
    assert deploying.details() == {"applications": {}}


class FakeActors:
    """What ``RayCluster._agent`` and ``leave`` use of ``ray``: named actors, started and killed."""

    def __init__(self, names: list[str]) -> None:
        self.named = {name: object() for name in names}

    def get_actor(self, name: str, namespace: str) -> object:
        if name not in self.named:
            raise ValueError(f"no actor {name}")
        return self.named[name]

    def list_named_actors(self, all_namespaces: bool) -> list[dict[str, str]]:
        return [{"name": name, "namespace": "serve"} for name in self.named]

    def kill(self, actor: object, no_restart: bool) -> None:
        self.named = {name: held for name, held in self.named.items() if held is not actor}

    def remote(self, **resources: Any) -> Any:
        actors = self

        class Started:
            def options(self, name: str, **kwargs: Any) -> Any:
                class Handle:
                    @staticmethod
                    def remote() -> object:
                        actors.named[name] = object()
                        return actors.named[name]

                return Handle

        return lambda cls: Started()


def test_an_agent_of_other_code_is_stopped_when_this_inferd_starts_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # README: an inferd whose agent code differs starts its own and stops the old one.
    import sys
    from types import SimpleNamespace

    from inferd.engine.ray.cluster import agent_name

    old = "inferd-serve-agent-000000000000"
    actors = FakeActors([old, "someone-elses-actor"])
    fake = SimpleNamespace(
        get_actor=actors.get_actor,
        kill=actors.kill,
        remote=actors.remote,
        util=SimpleNamespace(list_named_actors=actors.list_named_actors),
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    mine = RayCluster("ray://10.0.0.5:10001")._agent()
    assert sorted(actors.named) == sorted([agent_name(), "someone-elses-actor"])
    assert actors.named[agent_name()] is mine
    assert RayCluster("ray://10.0.0.5:10001")._agent() is mine  # found again, not started twice


def _app(status: str, deployment: str = "inferd") -> dict[str, Any]:
    return {"status": status, "deployments": {deployment: {}}}


@pytest.mark.parametrize(
    ("applications", "leaves"),
    [
        ({}, True),
        # Someone else's Serve application: the agent went on running after every `get`.
        ({"chatbot": _app("RUNNING", "Chat")}, True),
        # `inferd delete` of the last API waits for its API, not for the routers that drain
        # after it: its last `get` saw them and the agent stayed.
        ({"inferd.v2": _app("DELETING", "router"), "classifier": _app("DELETING")}, True),
        ({"classifier": _app("RUNNING")}, False),
        ({"inferd.v2": _app("RUNNING", "router")}, False),
        ({"classifier": _app("DEPLOY_FAILED"), "chatbot": _app("RUNNING", "Chat")}, False),
    ],
)
def test_the_agent_stops_once_nothing_of_inferds_runs_on_the_cluster(
    monkeypatch: pytest.MonkeyPatch, applications: dict[str, Any], leaves: bool
) -> None:
    import json

    cluster = RayCluster("127.0.0.1:6379")
    left: list[bool] = []
    monkeypatch.setattr(cluster, "_ask", lambda method: json.dumps({"applications": applications}))
    monkeypatch.setattr(cluster, "leave", lambda: left.append(True))
    assert cluster.details() == {"applications": applications}
    assert bool(left) is leaves


def test_a_watch_on_an_empty_cluster_does_not_start_an_agent_at_every_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `inferd get -w -e` with nothing of inferd's deployed started an agent actor (a worker
    # process) and stopped it again every 2 s; after the first read it reads Serve itself.
    import json

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ray.serve import context

    cluster = RayCluster("127.0.0.1:6379")
    asked: list[str] = []

    def ask(method: str) -> str:
        asked.append(method)
        return json.dumps({"applications": {}})

    monkeypatch.setattr(cluster, "_ask", ask)
    monkeypatch.setattr(cluster, "leave", lambda: setattr(cluster, "left", True))  # as it does, no Ray
    monkeypatch.setattr(context, "_get_global_client", lambda **kwargs: None)
    for _ in range(3):
        assert cluster.details() == {"applications": {}}
    assert asked == ["read"]


def test_the_agent_is_named_by_inferd_s_version_where_its_source_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import inspect

    from inferd.engine.ray import cluster

    by_code = cluster.agent_name()

    def no_source(obj: Any) -> str:
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    by_version = cluster.agent_name()  # was: OSError out of every read command
    assert by_version.startswith(cluster.AGENT_PREFIX) and by_version != by_code
