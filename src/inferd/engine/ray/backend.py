"""The ``ray`` environment: deploy, inspect and delete APIs on a Ray cluster with Ray Serve.

It answers what the local operator's client answers (same dict shapes), so the CLI renders
both alike. Ray Serve's controller is the operator here: it keeps replicas running, rolls
updates and autoscales; this class decides what to send it and reads its state. Every Ray
call goes through a ``ClusterLike`` (``cluster.RayCluster``), so this logic is tested with a
fake.
"""

from __future__ import annotations

import heapq
import re
import time
from pathlib import Path
from typing import Any, Protocol

import requests

from inferd.config.load import load_project
from inferd.config.schema import ApiConfig, Project
from inferd.engine.ray import plan
from inferd.engine.ray.cluster import AppSpec
from inferd.engine.ray.status import api_views, http_port, is_api_app
from inferd.environments import Environment
from inferd.errors import ConfigError, NotFoundError
from inferd.storage import project_files


class ClusterLike(Protocol):
    """What ``RayBackend`` needs from a cluster (``cluster.RayCluster`` in production)."""

    def connect(self, project_root: Path | None = None) -> None: ...

    def start_serve(self, options: plan.ServeOptions) -> None: ...

    def details(self) -> dict[str, Any]: ...

    def run(self, apps: list[AppSpec]) -> None: ...

    def delete(self, names: list[str]) -> None: ...

    def leave(self) -> None: ...

    def read_logs(
        self, node_id: str, worker_id: str, offsets: dict[str, int]
    ) -> dict[str, tuple[str, int]]: ...


LogCursor = dict[str, int]
# A failed API's next version: how long Serve may take to stop reporting the old failure (its
# controller loop runs every 0.1 s; a new replica cannot start and fail three times this fast).
SETTLE_S = 10.0
SETTLE_POLL_S = 0.2
# Ray writes these into worker logs to tell its log monitor whose lines follow.
RAY_MARKERS = (":job_id:", ":actor_name:", ":task_name:", ":task_attempt_start", ":task_attempt_end")
LINE_TIME = re.compile(r"(?:[A-Z]+ )?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+)")


def without_markers(text: str) -> str:
    """A worker log's text without Ray's bookkeeping lines."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(RAY_MARKERS))


def merged_logs(texts: list[str]) -> str:
    """The logs of several replicas as one, in the order they were written (as the local API's
    log is): each record (a line with its time, and the lines after it that have none, such as a
    traceback's) in the order of its time, each replica's own order kept."""
    return "".join(
        line for _, line in heapq.merge(*(_timed_lines(text) for text in texts), key=lambda x: x[0])
    )


def _timed_lines(text: str) -> list[tuple[str, str]]:
    """Each line with the time of its record (inferd's lines and Serve's access lines both
    carry one: ``2026-12-02 11:57:45,205 ...``, ``INFO 2026-12-02 11:57:45,206 ...``)."""
    stamp = ""
    timed = []
    for line in text.splitlines(keepends=True):
        found = LINE_TIME.match(line)
        if found is not None:
            stamp = found.group(1)
        timed.append((stamp, line))
    return timed


class RayBackend:
    """inferd's commands against one Ray environment."""

    def __init__(self, env: Environment, cluster: ClusterLike | None = None) -> None:
        assert env.address is not None
        self.env = env
        if cluster is None:
            from inferd.engine.ray.cluster import RayCluster

            cluster = RayCluster(env.address)
        self.cluster = cluster
        self._connected = False
        self.session = requests.Session()
        # Serve's proxy on a loopback address is never reached through a proxy of the environment
        # (http_proxy for the internet): that failed, and `inferd get API -e` showed no signature.
        self.session.trust_env = not env.on_this_machine

    def _connect(self, project_root: Path | None = None) -> None:
        if not self._connected:
            self.cluster.connect(project_root)
            self._connected = True

    # deploy

    def deploy(self, project_dir: Path, refresh: bool = False, relax_pins: bool = False) -> dict[str, Any]:
        """Create, roll or leave each API of the project; delete the deployment's other APIs.

        ``relax_pins``: requirements.txt's pins that cannot install on this Python are relaxed
        as for a local deploy (the warnings say which)."""
        project = load_project(project_dir)
        plan.check_supported(project)
        files = project_files(project.root)
        plan.check_size(project.root, files)
        # Each API's own block is in its version: another API's edit leaves it running.
        project_digest = plan.digest_files(project.root, [f for f in files if f != project.config_file])
        code_digest = plan.inferd_digest()
        relaxed: list[str] = []
        pip = tuple(plan.requirements(project.root, relax_pins, relaxed.append))
        self._connect(project.root)
        self.cluster.start_serve(plan.serve_options(self.env.http_port, self.env.on_this_machine))
        details = self.cluster.details()
        apps: dict[str, Any] = details.get("applications") or {}
        self._check_conflicts(project, apps)
        existing = {view["name"]: view for view in api_views(details)}
        token = f"{time.time_ns()}" if refresh else ""
        deployed_at = time.time()
        specs: list[AppSpec] = []
        results: dict[str, str] = {}
        for config in project.apis:
            old = existing.get(config.name)
            refresh_token = token or (old or {}).get("refresh", "")
            version = plan.version_id(config, project_digest, code_digest, refresh_token)
            if old is not None and old["version"] == version and old["status"] not in ("error", "stopping"):
                results[config.name] = "unchanged"
                continue
            results[config.name] = "created" if old is None or old["status"] == "stopping" else "updated"
            # Serve keeps last_deployed_time_s of an app's first deploy when it is run again, so
            # the replicas this version replaces are named: `inferd get -e` counts them as stale.
            replaces = [str(r["id"]) for r in (old or {}).get("replicas", []) if r.get("id")]
            specs.append(
                self._api_spec(
                    config,
                    version,
                    refresh_token,
                    pip if config.api.installs_requirements else (),
                    replaces,
                    deployed_at,
                )
            )
        specs.extend(self._router_specs(apps, code_digest[:16]))
        if specs:
            self.cluster.run(specs)
            # Until Serve's controller takes the new versions up, it may still report the old
            # ones (their failure, or them live), which `inferd deploy` would take for this deploy's.
            self._settle(
                {spec.name: spec.options["user_config"]["version"] for spec in specs if spec.kind == "api"},
                existing,
            )
        keep = {config.name for config in project.apis}
        stale = [
            name
            for name, view in existing.items()
            if view["deployment"] == project.deployment.name and name not in keep
        ]
        if stale:
            self.cluster.delete(stale)
        existed = any(view["deployment"] == project.deployment.name for view in existing.values())
        changed = any(result != "unchanged" for result in results.values()) or bool(stale)
        if not existed:  # a refresh of a project never deployed starts it (it said "refreshed")
            message = "deployment started"
        elif refresh:
            message = "deployment refreshed"
        else:
            message = "deployment updated" if changed else "deployment is up-to-date"
        return {
            "message": message,
            "deployment": project.deployment.name,
            "apis": results,
            "warnings": plan.unapplied(project) + relaxed,
        }

    def _settle(self, versions: dict[str, str], before: dict[str, dict[str, Any]]) -> None:
        """Wait (a few seconds at most) until Serve reports each API at its new version, and no
        longer the failure of the version before."""
        failed = {name for name in versions if (before.get(name) or {}).get("status") == "error"}
        deadline = time.monotonic() + SETTLE_S
        while versions and time.monotonic() < deadline:
            views = {view["name"]: view for view in api_views(self.cluster.details())}
            versions = {
                name: version
                for name, version in versions.items()
                if (views.get(name) or {}).get("version") != version
                or (name in failed and views[name]["status"] == "error")
            }
            if versions:
                time.sleep(SETTLE_POLL_S)

    @staticmethod
    def _api_spec(
        config: ApiConfig,
        version: str,
        refresh: str,
        pip: tuple[str, ...],
        replaces: list[str],
        deployed_at: float,
    ) -> AppSpec:
        options = plan.deployment_options(config, version)
        # Serve keeps an app's first last_deployed_time_s when it is run again: `inferd get -e`
        # takes the last update's time from here.
        options["user_config"] = {
            **options["user_config"],
            "refresh": refresh,
            "replaces": replaces,
            "deployed_at": deployed_at,
        }
        args = plan.replica_args(config)
        return AppSpec(
            name=config.name,
            route_prefix=config.endpoint,
            kind="api",
            init_args=(args["config"], args["project_root"]),
            options=options,
            pip=pip,
        )

    @staticmethod
    def _router_specs(apps: dict[str, Any], code_version: str) -> list[AppSpec]:
        specs = []
        for name, (prefix, protocol) in plan.ROUTERS.items():
            deployment = ((apps.get(name) or {}).get("deployments") or {}).get(plan.ROUTER_DEPLOYMENT) or {}
            user = (deployment.get("deployment_config") or {}).get("user_config") or {}
            if user.get("version") == code_version and (apps.get(name) or {}).get("status") == "RUNNING":
                continue
            options = {
                "name": plan.ROUTER_DEPLOYMENT,
                "ray_actor_options": {"num_cpus": 0},
                "user_config": {"version": code_version},
            }
            specs.append(AppSpec(name, prefix, "router", (protocol,), options))
        return specs

    @staticmethod
    def _check_conflicts(project: Project, apps: dict[str, Any]) -> None:
        routes = {app.get("route_prefix"): name for name, app in apps.items()}
        for config in project.apis:
            app = apps.get(config.name)
            if app is not None and not is_api_app(app):
                raise ConfigError(
                    f"api '{config.name}': the cluster runs another Serve application called "
                    f"'{config.name}'; rename the api"
                )
            if app is not None:
                user = (
                    app["deployments"][plan.API_DEPLOYMENT].get("deployment_config", {}).get("user_config")
                    or {}
                )
                owner = user.get("deployment")
                if owner and owner != project.deployment.name:
                    raise ConfigError(
                        f"api '{config.name}' already belongs to deployment '{owner}'; "
                        "API names are unique on one cluster"
                    )
            holder = routes.get(config.endpoint)
            if holder is not None and holder != config.name:
                raise ConfigError(
                    f"api '{config.name}': endpoint {config.endpoint} is already served by the Serve "
                    f"application '{holder}'"
                )

    # reading

    def _views(self) -> tuple[list[dict[str, Any]], int]:
        self._connect()
        details = self.cluster.details()
        port = http_port(details, self.env.http_port)
        views = api_views(details)
        base = f"http://{self.env.host}:{port}"
        for view in views:
            view["url"] = base + view["endpoint"]
        return views, port

    def apis(self) -> list[dict[str, Any]]:
        """Every inferd API on the cluster (``inferd get -e``)."""
        return self._views()[0]

    def api(self, name: str) -> dict[str, Any]:
        """One API (``API`` or ``DEPLOYMENT/API``) with its signature (asked of a replica, when one is up)."""
        for view in self.apis():
            if _named(view, name):
                answer = self._describe(view["url"])
                view["signature"] = answer.get("signature") or {}
                # One replica's answer (any of them): what its model runs on.
                view["device"] = answer.get("device")
                view["metrics"] = None
                view["metrics_note"] = (
                    "requests and the tracker are not counted on a Ray cluster "
                    "(Ray's dashboard and metrics count requests)"
                )
                return view
        raise NotFoundError(f"no API named '{name}' on {self.env.describe()}")

    def _describe(self, url: str) -> dict[str, Any]:
        try:
            response = self.session.get(url, timeout=5)
            answer: dict[str, Any] = response.json() if response.ok else {}
        except (requests.RequestException, ValueError, AttributeError):
            return {}
        return answer if isinstance(answer, dict) else {}

    # delete, logs, predict

    def delete(self, name: str) -> dict[str, Any]:
        """Delete an API, or every API of a deployment; the routers go with the last API."""
        views, _ = self._views()
        names = [view["name"] for view in views if _named(view, name)]
        what = f"api '{name}'"
        if not names:
            names = [view["name"] for view in views if view["deployment"] == name]
            what = f"deployment '{name}'"
        if not names:
            raise NotFoundError(f"no API or deployment named '{name}' on {self.env.describe()}")
        remaining = [view for view in views if view["name"] not in names]
        routers = [] if remaining else list(plan.ROUTERS)
        self.cluster.delete(names + routers)
        if not remaining:  # the last API: nothing of inferd's is left running on the cluster
            self.cluster.leave()
        keys = [f"{view['deployment']}/{view['name']}" for view in views if view["name"] in names]
        return {"message": f"deleting {what}", "apis": keys}

    def logs(self, name: str, cursor: LogCursor | None = None) -> tuple[str, LogCursor]:
        """New output of the API's replicas since ``cursor`` (start: ``None``)."""
        offsets = dict(cursor or {})
        view = next((v for v in self.apis() if _named(v, name)), None)
        if view is None:
            raise NotFoundError(f"no API named '{name}' on {self.env.describe()}")
        parts: list[str] = []
        for replica in view["replicas"]:
            if not replica.get("node_id") or not replica.get("worker_id"):
                continue
            node = str(replica["node_id"])
            known = {
                path.split("|", 1)[1]: offset for path, offset in offsets.items() if path.startswith(node)
            }
            for path, (text, offset) in self.cluster.read_logs(
                node, str(replica["worker_id"]), known
            ).items():
                offsets[f"{node}|{path}"] = offset
                parts.append(without_markers(text))
        return merged_logs(parts), offsets


def _named(view: dict[str, Any], name: str) -> bool:
    """Whether ``name`` (``API`` or ``DEPLOYMENT/API``) names the API of ``view``.

    API names are unique on a Ray cluster (each is a Serve application), so the bare name is enough.
    """
    return name in (view["name"], f"{view['deployment']}/{view['name']}")
