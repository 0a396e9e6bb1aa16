"""Ray Serve's application state -> inferd's statuses and counts."""

from __future__ import annotations

from typing import Any

from inferd.engine.ray.status import api_view, api_views, http_port, summarize_error

DEPLOYED = 1000.0


def replica(state: str = "RUNNING", started: float = DEPLOYED + 1, node: str = "n1") -> dict[str, Any]:
    return {"replica_id": "r", "state": state, "start_time_s": started, "node_id": node, "pid": 7}


def app(
    replicas: list[dict[str, Any]],
    app_status: str = "RUNNING",
    status: str = "HEALTHY",
    target: int | None = None,
    minimum: int = 1,
    message: str = "",
    trigger: str = "CONFIG_UPDATE_COMPLETED",
    dead: int = 0,
) -> dict[str, Any]:
    return {
        "status": app_status,
        "route_prefix": "/iris/classifier",
        "last_deployed_time_s": DEPLOYED,
        "message": "",
        "deployments": {
            "inferd": {
                "status": status,
                "status_trigger": trigger,
                "message": message,
                "target_num_replicas": len(replicas) if target is None else target,
                "deployment_config": {
                    "autoscaling_config": {"min_replicas": minimum},
                    "user_config": {"version": "v2", "deployment": "iris", "model_format": "onnx"},
                },
                "replicas": replicas,
                "recent_dead_replicas": [{}] * dead,
            }
        },
    }


def test_healthy_is_live_with_every_count() -> None:
    view = api_view("classifier", app([replica(), replica(node="n2")]))
    assert view["status"] == "live"
    assert (view["requested"], view["available"], view["up_to_date"], view["stale"]) == (2, 2, 2, 0)
    assert (view["deployment"], view["version"], view["endpoint"]) == ("iris", "v2", "/iris/classifier")


def test_a_rolling_update_counts_old_replicas_as_stale() -> None:
    replicas = [replica(started=DEPLOYED - 50), replica(started=DEPLOYED - 40), replica(state="STARTING")]
    updating = api_view("classifier", app(replicas, "DEPLOYING", "UPDATING", target=2, minimum=2))
    assert updating["status"] == "updating"
    assert (updating["available"], updating["up_to_date"], updating["stale"]) == (2, 0, 2)
    replicas[2] = replica()
    half = api_view("classifier", app(replicas, "DEPLOYING", "UPDATING", target=2, minimum=2))
    assert (half["status"], half["up_to_date"], half["stale"]) == ("updating", 1, 2)
    # One replica: the new one is up, but the proxy still sends requests to the old one too.
    both = [replica(started=DEPLOYED - 50), replica()]
    one = api_view("classifier", app(both, "DEPLOYING", "UPDATING", target=1, minimum=1))
    assert (one["status"], one["up_to_date"], one["stale"]) == ("updating", 1, 1)
    done = api_view("classifier", app(both[1:], "DEPLOYING", "UPDATING", target=1, minimum=1))
    assert (done["status"], done["up_to_date"], done["stale"]) == ("live", 1, 0)


def test_a_failed_version_is_an_error_with_its_reason() -> None:
    message = (
        "The deployment failed to start 3 times in a row.\nTraceback (most recent call last):\n"
        '  File "x.py", line 1\ninferd.errors.LoadError: handlers/iris.py: cannot import: boom\n'
    )
    view = api_view(
        "classifier",
        app(
            [replica(started=DEPLOYED - 5)],
            "DEPLOY_FAILED",
            "DEPLOY_FAILED",
            message=message,
            trigger="REPLICA_STARTUP_FAILED",
            dead=3,
        ),
    )
    assert view["status"] == "error"
    assert view["error"] == "handlers/iris.py: cannot import: boom"
    assert view["failed"] == 3 and view["available"] == 1 and view["error_detail"] == message


def test_deleting_waiting_for_resources_and_scaled_to_zero() -> None:
    assert api_view("c", app([replica()], "DELETING"))["status"] == "stopping"
    waiting = "Deployment 'inferd' has 1 replicas that have taken more than 30s to be scheduled."
    pending = app([replica(state="PENDING_ALLOCATION")], "DEPLOYING", "UPDATING", message=waiting)
    assert api_view("c", pending)["status"] == "compute unavailable"
    # Serve's own words (Ray 2.60): the reason `inferd deploy -e` and `inferd get -e` give.
    waiting += (
        " This may be due to waiting for the cluster to auto-scale or for a runtime environment to be "
        'installed. Resources required for each replica: {"CPU": 0.2, "GPU": 1}, total resources '
        'available: {"CPU": 3.6}. Use `ray status` for more details.'
    )
    gpu = api_view("c", app([replica(state="PENDING_ALLOCATION")], "DEPLOYING", "UPDATING", message=waiting))
    assert gpu["status"] == "compute unavailable"
    assert gpu["error"] == (
        'each replica needs {"CPU": 0.2, "GPU": 1}; the cluster has {"CPU": 3.6} available '
        "(`ray status` says more)"
    )
    # Serve warns after 30 s also when the resources are free (a worker slow to start on a busy
    # node): that is a slow start, and a deploy waits on instead of failing.
    slow = waiting.replace('"GPU": 1}', '"memory": 1000}').replace(
        '{"CPU": 3.6}', '{"CPU": 3.6, "memory": 5e9}'
    )
    assert slow != waiting
    view = api_view("c", app([replica(state="PENDING_ALLOCATION")], "DEPLOYING", "UPDATING", message=slow))
    assert view["status"] == "updating" and view["error"] is None
    assert api_view("c", app([], target=0, minimum=0))["status"] == "live"
    assert api_view("c", app([replica(state="STARTING")], "DEPLOYING", "UPDATING"))["status"] == "updating"


def test_only_inferd_apps_are_listed_and_the_real_port_wins() -> None:
    details = {
        "http_options": {"port": 8123},
        "applications": {"b": app([replica()]), "other": {"deployments": {"Model": {}}}, "a": app([])},
    }
    assert [view["name"] for view in api_views(details)] == ["a", "b"]
    assert http_port(details, 8000) == 8123
    assert http_port({}, 8000) == 8000


def test_summarize_error_keeps_one_line() -> None:
    assert summarize_error("RuntimeError: boom\n") == "boom"
    assert (
        summarize_error("ModuleNotFoundError: No module named 'x'")
        == "ModuleNotFoundError: No module named 'x'"
    )
    assert summarize_error("plain words\nmore") == "plain words"


def test_a_failed_init_says_what_the_local_operator_says() -> None:
    # Serve's message (Ray 2.60) for a predictor whose init raised: inferd's LoadError, then the
    # handler's own traceback again; the LoadError's message names the file and the exception.
    message = (
        "The deployment failed to start 3 times in a row. Error:\n"
        '  File "predictor.py", line 2, in init\n'
        '    raise RuntimeError("cannot load the weights")\n'
        "RuntimeError: cannot load the weights\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "    raise LoadError(\n"
        "inferd.errors.LoadError: init in predictor.py failed: RuntimeError: cannot load the weights\n"
        "ray::ServeReplica:broken:inferd.initialize_and_get_metadata() (pid=5751, ip=127.0.0.1)\n"
        '  File "predictor.py", line 2, in init\n'
        '    raise RuntimeError("cannot load the weights")\n'
        "RuntimeError: cannot load the weights\n"
    )
    assert summarize_error(message) == "init in predictor.py failed: RuntimeError: cannot load the weights"


def test_get_v_shows_the_apis_config_as_locally() -> None:
    # `inferd get API -v -e` printed only "- endpoint: /iris/classifier" where the local one
    # prints the API's whole config: the deploy now keeps it in the app's user_config.
    from inferd.cli.render import api_detail
    from inferd.config.load import load_project
    from inferd.engine.ray.plan import deployment_options
    from tests.conftest import example

    (config,) = load_project(example("iris-onnx")).apis
    deployed = app([replica()])
    sent = deployment_options(config, "v2")["user_config"]
    deployed["deployments"]["inferd"]["deployment_config"]["user_config"] = sent
    view = api_view("classifier", deployed)
    assert view["config"] == config.api.shown()
    assert view["config"]["onnx"]["request_handler"] == "handlers/iris.py"
    assert view["config"]["compute"]["init_replicas"] == 1  # filled in, as Cortex's -v showed it
    view["url"] = "http://127.0.0.1:8000/iris/classifier"
    assert "    request_handler: handlers/iris.py" in api_detail(view, verbose=True)
    assert api_view("classifier", app([replica()]))["config"] == {}  # deployed by an older inferd
