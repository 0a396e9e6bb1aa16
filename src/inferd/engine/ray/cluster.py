"""The one place that calls Ray: connect, upload, run and delete Serve applications, read state.

Everything that decides *what* to do (versions, options, statuses) lives in ``plan``,
``status`` and ``backend`` and is tested without Ray; this class only carries it out. Ray is
imported here, lazily, so ``inferd --help`` never loads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferd.engine.ray import plan
from inferd.engine.ray.status import inferd_runs
from inferd.errors import InferdError

NAMESPACE = "serve"  # where Serve's controller lives; drivers in it see its applications
# How long the head's port may take to accept a TCP connection. Without this check, ray.init
# waits for a GCS that is not there about 13 minutes (printing a warning every 5 s), and a
# Ray client address 30 s.
PROBE_TIMEOUT_S = 5.0
# Ray's client server runs each client's driver in a thread and streams this warning back.
CLIENT_NOISE = "SIGTERM handler is not set because current thread is not the main thread."
# The detached actor that reads and deletes Serve applications for commands that do not
# deploy (see agent_class).
AGENT_PREFIX = "inferd-serve-agent-"
AGENT_TIMEOUT_S = 60.0


class ClusterError(InferdError):
    """The Ray cluster cannot be reached, or refused an operation."""


@dataclass(frozen=True)
class AppSpec:
    """One application to (re)deploy: what ``plan`` decided, ready to hand to Serve."""

    name: str
    route_prefix: str
    kind: str  # "api" (ApiReplica) or "router" (ProtocolRouter)
    init_args: tuple[Any, ...]
    options: dict[str, Any]
    pip: tuple[str, ...] = ()


class RayCluster:
    """A connection to one Ray cluster (``ray.init`` once per process)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.connected = False
        self.serve_loaded = False
        self.left = False  # this process stopped inferd's agent (see details)
        self.uploaded: dict[str, Any] = {}

    def connect(self, project_root: Path | None = None) -> None:
        """Connect as a driver; with ``project_root``, upload it (and inferd) as the job's
        ``working_dir`` / ``py_modules`` so replicas can be given those URIs."""
        if importlib.util.find_spec("ray") is None:  # no extra of inferd installs it
            raise ClusterError(
                f"the Ray cluster at {self.address} needs Ray in this Python too ({sys.executable}): "
                "pip install 'ray[serve]' of the version the cluster runs (`ray --version` on its head node)"
            )
        check_reachable(self.address)
        import ray

        # A .gitignore that leaves models out must not leave them out of the deployment; the
        # project travels by plan.EXCLUDES, the rules of the local snapshot.
        os.environ.setdefault("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "1")
        runtime_env: dict[str, Any] | None = None
        if project_root is not None:
            package = str(Path(plan.__file__).resolve().parents[2])
            runtime_env = {
                "working_dir": str(project_root),
                "py_modules": [package],
                "excludes": plan.EXCLUDES,
            }
        logging.getLogger("ray.util.client.logsclient").addFilter(
            lambda record: record.getMessage() != CLIENT_NOISE
        )
        try:
            with warnings.catch_warnings():  # the failure below says it in one line
                warnings.simplefilter("ignore", UserWarning)
                ray.init(
                    address=self.address,
                    namespace=NAMESPACE,
                    runtime_env=runtime_env,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
        except Exception as exc:  # ConnectionError, RuntimeError, grpc errors, auth errors...
            raise ClusterError(
                f"cannot connect to the Ray cluster at {self.address}: {_first_line(exc)}"
            ) from None
        self.connected = True
        if project_root is not None:
            self.uploaded = dict(ray.get_runtime_context().runtime_env or {})

    def _serve(self) -> Any:
        """Ray Serve's API, imported on first use: 2 of a read command's 3.7 s went to importing
        it (``python -X importtime``), and commands that only read never need it here."""
        from ray import serve

        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # progress is inferd's to report
        self.serve_loaded = True
        return serve

    def close(self) -> None:
        if self.connected:
            import ray

            ray.shutdown()
            self.connected = False

    # Serve

    def start_serve(self, options: plan.ServeOptions) -> None:
        """Start Serve's controller and proxies unless they run (then their settings stay)."""
        self._serve().start(
            http_options={"host": options.host, "port": options.port},
            proxy_location=options.proxy_location,
        )

    def details(self) -> dict[str, Any]:
        """Serve's full state (applications, deployment configs, replicas); no applications when
        no Serve controller runs. ``ClusterError`` when the state cannot be read.

        Where Serve is imported already (a deploy), it is read here; otherwise inferd's agent
        actor on the cluster reads it and answers JSON (see ``agent_class``)."""
        # Only "no controller" means no applications: any other failure to read is an error,
        # or a deploy would recreate every application it could not see.
        try:
            if self.left and not self.serve_loaded:
                # This process stopped the agent already (a `get -w` on a cluster with nothing
                # of inferd's): importing Serve once beats a new actor at every read.
                self._serve()
            if self.serve_loaded:
                from ray.serve.context import _get_global_client

                client = _get_global_client(raise_if_no_controller_running=False)
                return agent_class().plain(client.get_serve_details()) if client else {"applications": {}}
            found: dict[str, Any] = json.loads(self._ask("read"))
        except Exception as exc:
            raise ClusterError(f"cannot read Ray Serve's state: {_first_line(exc)}") from None
        # Nothing of inferd's deployed (other Serve applications aside, the last API's routers
        # draining): no agent of inferd's stays behind a `get`, or the last `inferd delete`.
        if not inferd_runs(found.get("applications") or {}):
            self.leave()
        return found

    def _ask(self, method: str, *args: Any) -> Any:
        """Call inferd's agent actor; asked again once if it stopped meanwhile (another command
        deleted the last API)."""
        import ray
        from ray.exceptions import RayActorError

        try:
            return ray.get(getattr(self._agent(), method).remote(*args), timeout=AGENT_TIMEOUT_S)
        except RayActorError:
            return ray.get(getattr(self._agent(), method).remote(*args), timeout=AGENT_TIMEOUT_S)

    def _agent(self) -> Any:
        """The agent of this version of ``agent_class``, started once per cluster (agents of
        other versions, an older inferd's, are stopped when it starts)."""
        import ray

        name = agent_name()
        try:
            return ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:  # none yet
            self.leave(keep=name)
        return (
            ray.remote(num_cpus=0)(agent_class())
            .options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True)
            .remote()
        )

    def leave(self, keep: str = "") -> None:
        """Stop what inferd keeps on the cluster beside its applications (its agent actors, but
        ``keep``); called when the last API is deleted. Without ``keep``, this process reads
        Serve itself from then on (an `inferd delete`'s wait would start the agent again)."""
        import ray

        if not keep:
            self.left = True

        for actor in ray.util.list_named_actors(all_namespaces=True):
            name = actor["name"]
            if actor["namespace"] == NAMESPACE and name.startswith(AGENT_PREFIX) and name != keep:
                with contextlib.suppress(ValueError):  # stopped meanwhile
                    ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)

    def run(self, apps: list[AppSpec]) -> None:
        """Deploy (or roll) applications without waiting for them to be running."""
        serve = self._serve()
        from ray.serve.api import RunTarget

        from inferd.engine.ray.replica import ApiReplica, ProtocolRouter

        targets = []
        for app in apps:
            options = dict(app.options)
            actor = dict(options.pop("ray_actor_options", {}))
            actor["runtime_env"] = self.runtime_env(app)
            name = options.pop("name")
            deployment = serve.deployment(name=name)(ApiReplica if app.kind == "api" else ProtocolRouter)
            bound = deployment.options(ray_actor_options=actor, **options).bind(*app.init_args)
            targets.append(RunTarget(target=bound, name=app.name, route_prefix=app.route_prefix))
        try:
            serve.run_many(targets, wait_for_applications_running=False)
        except Exception as exc:
            raise ClusterError(f"Ray Serve refused the deployment: {_first_line(exc)}") from None

    def runtime_env(self, app: AppSpec) -> dict[str, Any]:
        """The URIs uploaded at ``connect``: an API gets the project and inferd (and its
        requirements), a router only inferd (``working_dir: None`` stops Serve from giving it
        the deploying project's)."""
        modules = list(self.uploaded.get("py_modules") or [])
        if app.kind == "router":
            return {"py_modules": modules, "working_dir": None}
        env: dict[str, Any] = {"working_dir": self.uploaded.get("working_dir"), "py_modules": modules}
        if app.pip:
            env["pip"] = list(app.pip)
        return env

    def delete(self, names: list[str]) -> None:
        """Delete applications; their replicas finish in-flight requests, then stop."""
        if not self.serve_loaded:
            try:
                self._ask("delete", names)
            except Exception as exc:
                raise ClusterError(f"Ray Serve did not take the deletion: {_first_line(exc)}") from None
            return
        serve = self._serve()
        for name in names:
            serve.delete(name, _blocking=False)

    # logs

    def read_logs(self, node_id: str, worker_id: str, offsets: dict[str, int]) -> dict[str, tuple[str, int]]:
        """New text of a replica's log files (its stdout and stderr) on its node, from ``offsets``.

        Runs a tiny task pinned to that node, so it needs neither the dashboard nor a shared
        file system.
        """
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        def read(worker: str, since: dict[str, int]) -> dict[str, tuple[str, int]]:
            import glob
            import os

            try:
                from ray._private.worker import _global_node

                assert _global_node is not None
                folder = _global_node.get_logs_dir_path()
            except Exception:
                folder = "/tmp/ray/session_latest/logs"
            found: dict[str, tuple[str, int]] = {}
            for path in sorted(glob.glob(os.path.join(folder, f"worker-{worker}-*"))):
                if not path.endswith((".out", ".err")):
                    continue
                start = since.get(path, 0)
                with open(path, "rb") as handle:
                    handle.seek(start)
                    data = handle.read(4 << 20)
                found[path] = (data.decode("utf-8", "replace"), start + len(data))
            return found

        task = ray.remote(num_cpus=0)(read).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
        )
        try:
            result: dict[str, tuple[str, int]] = ray.get(task.remote(worker_id, offsets), timeout=60)
        except Exception as exc:
            raise ClusterError(f"cannot read the replica's logs: {_first_line(exc)}") from None
        return result


def check_reachable(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """``ClusterError`` at once when nothing accepts a connection at ``address``'s host and port
    (``ray://HOST:PORT`` or ``HOST:PORT``)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        return  # not an address this check understands: ray.init says what is wrong with it
    try:
        socket.create_connection((host, int(port)), timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(
            f"cannot connect to the Ray cluster at {address}: nothing answers at {host}:{port} "
            f"({reason}); is the cluster up (`ray status` on its head node)?"
        ) from None


def agent_class() -> Any:
    """The class of inferd's agent actor: it reads Serve's state (as JSON) and deletes
    applications on the cluster, for the commands that do not deploy.

    Those would otherwise import Ray Serve: to unpickle the controller's answer (its enums are
    Serve's classes) and to find the controller, 2 s of the 3.7 s of ``inferd get -e`` on this
    machine; the agent imports Serve once. Defined in a function, so Ray sends it by value: the
    cluster's workers need not have inferd installed.
    """

    class InferdServeAgent:
        @staticmethod
        def plain(value: Any) -> Any:
            """Serve's details hold str enums (``ReplicaState.RUNNING``): plain JSON values."""
            from enum import Enum

            def walk(item: Any) -> Any:
                if isinstance(item, dict):
                    return {str(walk(k)): walk(v) for k, v in item.items()}
                if isinstance(item, list | tuple):
                    return [walk(part) for part in item]
                return item.value if isinstance(item, Enum) else item

            return walk(value)

        @staticmethod
        def controller() -> Any:
            """Serve's controller, looked up at each call (Serve may have been started again);
            ``None`` when none runs."""
            import ray
            from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

            try:
                return ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
            except ValueError:
                return None

        def read(self) -> str:
            import json

            import ray

            controller = self.controller()
            if controller is None:
                return json.dumps({"applications": {}})
            details = ray.get(controller.get_serve_instance_details.remote())
            return json.dumps(self.plain(details), default=str)

        def delete(self, names: list[str]) -> None:
            """As ``serve.delete(name, _blocking=False)``: the controller stops them in its time."""
            import ray

            controller = self.controller()
            if controller is not None and names:
                ray.get(controller.delete_apps.remote(names))

    return InferdServeAgent


def agent_name() -> str:
    """The agent actor's name, by its code: an upgrade of inferd that changes it starts a new one
    (by inferd's version where its source is not installed, only bytecode)."""
    try:
        code = inspect.getsource(agent_class)
    except (OSError, TypeError):
        from inferd import __version__

        code = __version__
    return AGENT_PREFIX + hashlib.sha256(code.encode()).hexdigest()[:12]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
