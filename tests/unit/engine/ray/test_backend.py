"""The Ray environment's decisions (what to deploy, roll, delete) against a fake cluster."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from inferd.engine.ray import plan
from inferd.engine.ray.backend import RayBackend, merged_logs, without_markers
from inferd.engine.ray.cluster import AppSpec
from inferd.environments import Environment
from inferd.errors import ConfigError, LoadError, NotFoundError
from tests.conftest import example

LAB = Environment(name="lab", provider="ray", address="127.0.0.1:6379", http_port=8123)


class FakeCluster:
    """Serve's state as dicts; ``run`` and ``delete`` change it as Serve would, at once."""

    def __init__(self) -> None:
        self.apps: dict[str, Any] = {}
        self.runs: list[list[str]] = []
        self.specs: list[AppSpec] = []
        self.deleted: list[str] = []
        self.left = False
        self.connected_with: Path | None = None
        self.serve_options: plan.ServeOptions | None = None

    def connect(self, project_root: Path | None = None) -> None:
        self.connected_with = project_root

    def start_serve(self, options: plan.ServeOptions) -> None:
        self.serve_options = options

    def details(self) -> dict[str, Any]:
        return {"http_options": {"port": 8123}, "applications": self.apps}

    def run(self, apps: list[AppSpec]) -> None:
        self.runs.append([app.name for app in apps])
        self.specs.extend(app for app in apps if app.kind == "api")
        for app in apps:
            name = plan.API_DEPLOYMENT if app.kind == "api" else plan.ROUTER_DEPLOYMENT
            self.apps[app.name] = {
                "status": "RUNNING",
                "route_prefix": app.route_prefix,
                "last_deployed_time_s": 1.0,
                "deployments": {
                    name: {
                        "status": "HEALTHY",
                        "target_num_replicas": 1,
                        "deployment_config": {"user_config": app.options.get("user_config")},
                        "replicas": [
                            {"state": "RUNNING", "start_time_s": 2.0, "node_id": "n", "worker_id": "w"}
                        ],
                    }
                },
            }

    def delete(self, names: list[str]) -> None:
        self.deleted.extend(names)
        for name in names:
            self.apps.pop(name, None)

    def leave(self) -> None:
        self.left = True

    def read_logs(self, node_id: str, worker_id: str, offsets: dict[str, int]) -> dict[str, tuple[str, int]]:
        start = offsets.get("/logs/worker-w.err", 0)
        text = ":job_id:01000000\n:actor_name:ServeReplica\nreplica is ready\n"[start:]
        return {"/logs/worker-w.err": (text, start + len(text))}


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


def test_first_deploy_starts_the_api_and_the_routers(cluster: FakeCluster) -> None:
    result = RayBackend(LAB, cluster).deploy(example("iris-onnx"))
    assert result == {
        "message": "deployment started",
        "deployment": "iris",
        "apis": {"classifier": "created"},
        "warnings": [],  # the example sets nothing that only inferd's gateway does
    }
    assert cluster.runs == [["classifier", "inferd.v2", "inferd.tfserving"]]
    assert cluster.connected_with == example("iris-onnx").resolve()
    assert cluster.serve_options == plan.ServeOptions("127.0.0.1", 8123, "HeadOnly")
    views = RayBackend(LAB, cluster).apis()
    assert views[0]["url"] == "http://127.0.0.1:8123/iris/classifier"


def test_an_unchanged_project_is_up_to_date_and_a_change_rolls(cluster: FakeCluster, tmp_path: Path) -> None:
    import shutil

    project = tmp_path / "iris"
    shutil.copytree(example("iris-onnx"), project)
    # a refresh of a project never deployed starts it (it said "deployment refreshed")
    assert RayBackend(LAB, cluster).deploy(project, refresh=True)["message"] == "deployment started"
    again = RayBackend(LAB, cluster).deploy(project)
    assert again["message"] == "deployment is up-to-date" and len(cluster.runs) == 1
    (project / "handlers" / "iris.py").write_text((project / "handlers" / "iris.py").read_text() + "\n# v2\n")
    updated = RayBackend(LAB, cluster).deploy(project)
    assert updated["message"] == "deployment updated" and cluster.runs[-1] == ["classifier"]
    refreshed = RayBackend(LAB, cluster).deploy(project, refresh=True)
    assert refreshed["message"] == "deployment refreshed"
    after = RayBackend(LAB, cluster).deploy(project)
    assert after["message"] == "deployment is up-to-date"  # the refresh token is kept


def test_a_roll_counts_the_replicas_it_replaces_as_stale(cluster: FakeCluster, tmp_path: Path) -> None:
    import shutil

    project = tmp_path / "iris"
    shutil.copytree(example("iris-onnx"), project)
    RayBackend(LAB, cluster).deploy(project)
    inferd = cluster.apps["classifier"]["deployments"][plan.API_DEPLOYMENT]
    old = {**inferd["replicas"][0], "replica_id": "old"}
    (project / "handlers" / "iris.py").write_text((project / "handlers" / "iris.py").read_text() + "\n# v2\n")
    inferd["replicas"] = [old]
    RayBackend(LAB, cluster).deploy(project)
    # Right after the run, Serve may still call the deployment HEALTHY with the old replica.
    inferd = cluster.apps["classifier"]["deployments"][plan.API_DEPLOYMENT]
    inferd["replicas"] = [old]
    (view,) = RayBackend(LAB, cluster).apis()
    assert (view["status"], view["up_to_date"], view["stale"]) == ("updating", 0, 1)
    # Serve mid-roll (Ray 2.60): the new replica is up, the old one still takes requests, and
    # the app's last_deployed_time_s is still the first deploy's.
    inferd["status"] = "UPDATING"
    inferd["replicas"] = [old, {**old, "replica_id": "new"}]
    (view,) = RayBackend(LAB, cluster).apis()
    assert (view["status"], view["up_to_date"], view["stale"]) == ("updating", 1, 1)
    inferd["replicas"] = [{**old, "replica_id": "new"}]
    (view,) = RayBackend(LAB, cluster).apis()
    assert (view["status"], view["up_to_date"], view["stale"]) == ("live", 1, 0)


class SlowController(FakeCluster):
    """Serve as it is right after ``serve.run``: for a few reads it reports the apps as before."""

    def __init__(self) -> None:
        super().__init__()
        self.before: dict[str, Any] = {}
        self.stale_reads = 0

    def run(self, apps: list[AppSpec]) -> None:
        self.before = copy.deepcopy(self.apps)
        self.stale_reads = 2 if self.apps else 0
        super().run(apps)

    def details(self) -> dict[str, Any]:
        if self.stale_reads:
            self.stale_reads -= 1
            return {"http_options": {"port": 8123}, "applications": self.before}
        return super().details()


def test_a_deploy_is_not_taken_for_the_state_serve_reports_before_it(tmp_path: Path) -> None:
    import shutil

    cluster = SlowController()
    project = tmp_path / "iris"
    shutil.copytree(example("iris-onnx"), project)
    RayBackend(LAB, cluster).deploy(project)
    inferd = cluster.apps["classifier"]["deployments"][plan.API_DEPLOYMENT]
    inferd["replicas"][0]["replica_id"] = "r1"
    handler = project / "handlers" / "iris.py"
    for failed in (True, False):  # the version before failed, or is live
        cluster.apps["classifier"]["status"] = "DEPLOY_FAILED" if failed else "RUNNING"
        handler.write_text(handler.read_text() + "\n# again\n")
        backend = RayBackend(LAB, cluster)
        backend.deploy(project)
        sent = cluster.apps["classifier"]["deployments"][plan.API_DEPLOYMENT]["deployment_config"]
        (view,) = backend.apis()  # what `inferd deploy` waits on next: this deploy's version
        assert view["version"] == sent["user_config"]["version"] and view["status"] == "live"


def test_an_edit_of_one_api_rolls_that_api_alone(cluster: FakeCluster, tmp_path: Path) -> None:
    import shutil

    project = tmp_path / "iris"
    shutil.copytree(example("iris-onnx"), project)
    config = project / "cortex.yaml"
    second = "\n- kind: api\n  name: second\n  onnx:\n    model: models/iris.onnx\n"
    config.write_text(config.read_text() + second)
    RayBackend(LAB, cluster).deploy(project)
    config.write_text(config.read_text() + "  compute:\n    max_replicas: 3\n")  # the second's block
    updated = RayBackend(LAB, cluster).deploy(project)
    assert updated["apis"] == {"classifier": "unchanged", "second": "updated"}
    assert cluster.runs[-1] == ["second"]


def test_apis_gone_from_the_config_are_deleted(cluster: FakeCluster, tmp_path: Path) -> None:
    import shutil

    project = tmp_path / "iris"
    shutil.copytree(example("iris-onnx"), project)
    RayBackend(LAB, cluster).deploy(project)
    config = project / "cortex.yaml"
    config.write_text(config.read_text().replace("name: classifier", "name: renamed"))
    result = RayBackend(LAB, cluster).deploy(project)
    assert result["message"] == "deployment updated"
    assert cluster.deleted == ["classifier"]


def test_names_owned_by_others_are_refused(cluster: FakeCluster) -> None:
    cluster.apps["classifier"] = {"route_prefix": "/x", "deployments": {"SomeModel": {}}}
    with pytest.raises(ConfigError, match="another Serve application called 'classifier'"):
        RayBackend(LAB, cluster).deploy(example("iris-onnx"))
    cluster.apps = {"mine": {"route_prefix": "/iris/classifier", "deployments": {"X": {}}}}
    with pytest.raises(ConfigError, match="already served by the Serve application 'mine'"):
        RayBackend(LAB, cluster).deploy(example("iris-onnx"))


def test_delete_by_api_or_deployment_and_routers_go_last(cluster: FakeCluster, tmp_path: Path) -> None:
    backend = RayBackend(LAB, cluster)
    backend.deploy(example("iris-onnx"))
    with pytest.raises(NotFoundError):
        backend.delete("nothing")
    project = tmp_path / "two"
    shutil.copytree(example("iris-onnx"), project)
    config = project / "cortex.yaml"
    config.write_text(
        config.read_text().replace("name: iris", "name: two").replace("name: classifier", "name: other")
    )
    backend.deploy(project)
    backend.delete("other")
    assert cluster.deleted == ["other"] and not cluster.left  # an API is left: inferd stays
    result = backend.delete("iris")
    assert result == {"message": "deleting deployment 'iris'", "apis": ["iris/classifier"]}
    assert cluster.deleted == ["other", "classifier", "inferd.v2", "inferd.tfserving"]
    assert cluster.left  # the last API: inferd's reader goes too


def test_an_api_is_named_by_name_or_deployment_slash_name(cluster: FakeCluster) -> None:
    backend = RayBackend(LAB, cluster)
    backend.deploy(example("iris-onnx"))
    assert backend.api("iris/classifier")["name"] == "classifier"
    with pytest.raises(NotFoundError):
        backend.api("other/classifier")
    assert backend.delete("iris/classifier")["apis"] == ["iris/classifier"]


def test_logs_follow_from_a_cursor_without_ray_markers(cluster: FakeCluster) -> None:
    backend = RayBackend(LAB, cluster)
    backend.deploy(example("iris-onnx"))
    text, cursor = backend.logs("classifier")
    assert text == "replica is ready\n"
    assert backend.logs("classifier", cursor)[0] == ""
    assert without_markers(":task_name:x\nkept\n") == "kept\n"


def test_relax_pins_relaxes_the_pip_list_as_a_local_deploy_does(cluster: FakeCluster, tmp_path: Path) -> None:
    # scikit-learn 0.21 has no wheel for this Python; inferd's environment has scikit-learn, so
    # the relaxed pin is left to it, as for a local deploy, and the warning says so.
    project = tmp_path / "mpg"
    shutil.copytree(example("iris-onnx"), project)
    (project / "requirements.txt").write_text("scikit-learn==0.21.3\n")
    backend = RayBackend(LAB, cluster)
    result = backend.deploy(project, relax_pins=True)
    assert [w for w in result["warnings"] if "scikit-learn==0.21.3 relaxed to scikit-learn" in w]
    assert not cluster.specs[-1].pip
    # Without --relax-pins the deploy stops at once with the local deploy's sentence: sent to the
    # cluster, Serve's pip failed on the node and the API said "updating" until --timeout.
    runs = len(cluster.runs)
    with pytest.raises(
        LoadError, match=r"scikit-learn==0\.21\.3 cannot be installed on Python .*--relax-pins"
    ):
        backend.deploy(project, refresh=True)
    assert len(cluster.runs) == runs  # nothing was sent
    (project / "requirements.txt").write_text("scikit-learn\n")  # what installs travels as written
    backend.deploy(project)
    assert cluster.specs[-1].pip == ("scikit-learn",)


def test_last_update_is_the_last_deploy_not_the_first(cluster: FakeCluster, tmp_path: Path) -> None:
    """Serve keeps an application's first ``last_deployed_time_s`` when it is run again (the fake
    says 1.0 each time): `inferd get -e` showed "8m" as last update right after an update."""
    import shutil
    import time

    project = tmp_path / "iris"
    shutil.copytree(example("iris-onnx"), project)
    started = time.time()
    RayBackend(LAB, cluster).deploy(project)
    (first,) = RayBackend(LAB, cluster).apis()
    assert first["last_update"] >= started
    (project / "handlers" / "iris.py").write_text((project / "handlers" / "iris.py").read_text() + "\n# v2\n")
    updated_at = time.time()
    RayBackend(LAB, cluster).deploy(project)
    (updated,) = RayBackend(LAB, cluster).apis()
    assert updated["last_update"] >= updated_at
    RayBackend(LAB, cluster).deploy(project)  # up-to-date: nothing is deployed, nor its time changed
    (unchanged,) = RayBackend(LAB, cluster).apis()
    assert unchanged["last_update"] == updated["last_update"]


def test_get_api_on_ray_says_requests_are_not_counted_there(cluster: FakeCluster) -> None:
    """`inferd get API -e` showed "0.0" requests/s and no 2XX for an API that had answered
    hundreds: inferd's gateway counts requests, and it does not run on Ray."""
    from inferd.cli.render import api_detail

    RayBackend(LAB, cluster).deploy(example("iris-onnx"))
    shown = api_detail(RayBackend(LAB, cluster).api("classifier"))
    assert "requests/s" not in shown
    assert "metrics: requests and the tracker are not counted on a Ray cluster" in shown


def test_an_apis_signature_is_asked_of_a_cluster_on_this_machine_without_a_proxy(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With http_proxy set (a machine that reaches the internet through one) and no no_proxy,
    `inferd get API -e` asked Serve's proxy on 127.0.0.1 through it, got nothing, and showed
    no signature and no device."""
    import http.server
    import socket
    import threading

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"signature": {"input": "float32"}, "device": "cpu"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with socket.socket() as dead, http.server.HTTPServer(("127.0.0.1", 0), Answer) as serve:
        dead.bind(("127.0.0.1", 0))  # a proxy that refuses every connection
        for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{dead.getsockname()[1]}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        port = serve.server_address[1]
        monkeypatch.setattr(
            cluster, "details", lambda: {"http_options": {"port": port}, "applications": cluster.apps}
        )
        threading.Thread(target=serve.handle_request, daemon=True).start()
        RayBackend(LAB, cluster).deploy(example("iris-onnx"))
        view = RayBackend(LAB, cluster).api("classifier")
    assert view["signature"] == {"input": "float32"} and view["device"] == "cpu"


def test_the_logs_of_several_replicas_are_merged_in_time() -> None:
    # `inferd logs -e` printed each replica's lines after the other's, as the local log is not:
    # one replica's error came after lines written seconds later by another.
    first = (
        "2026-12-02 11:57:30,100 ids [11] INFO replica is ready (pid 11)\n"
        "2026-12-02 11:57:45,205 ids [11] ERROR pre_inference in handlers/h.py failed:\n"
        "Traceback (most recent call last):\n"
        "RuntimeError: pre boom\n"
        "INFO 2026-12-02 11:57:45,206 ids_inferd a1 -- POST /onx/ids 500 5.8ms\n"
    )
    second = (
        "2026-12-02 11:57:31,000 ids [12] INFO replica is ready (pid 12)\n"
        "INFO 2026-12-02 11:57:40,000 ids_inferd b2 -- POST /onx/ids 200 2.0ms\n"
        "a line without a time\n"
    )
    assert merged_logs([first, second]).splitlines() == [
        "2026-12-02 11:57:30,100 ids [11] INFO replica is ready (pid 11)",
        "2026-12-02 11:57:31,000 ids [12] INFO replica is ready (pid 12)",
        "INFO 2026-12-02 11:57:40,000 ids_inferd b2 -- POST /onx/ids 200 2.0ms",
        "a line without a time",  # with the line before it, whose time it shares
        "2026-12-02 11:57:45,205 ids [11] ERROR pre_inference in handlers/h.py failed:",
        "Traceback (most recent call last):",
        "RuntimeError: pre boom",
        "INFO 2026-12-02 11:57:45,206 ids_inferd a1 -- POST /onx/ids 500 5.8ms",
    ]
    assert merged_logs(["no time at all\n", ""]) == "no time at all\n"
