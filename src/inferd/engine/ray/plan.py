"""How a project becomes Ray Serve applications: pure translation, no Ray.

Each API is one Serve application named after the API, holding one deployment called
``inferd`` whose replicas build the same ``Predictor`` as local replicas. Two small router
applications (``inferd.v2`` at ``/v2``, ``inferd.tfserving`` at ``/v1``) answer the tensor
protocols and forward to the APIs; a dot cannot occur in an API name, so they never clash.
The same translation feeds ``inferd deploy -e`` (imperative, through the wrapper) and the
KubeRay ``serveConfigV2`` of ``inferd export --ray`` (declarative).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferd.config.schema import ApiConfig, Project
from inferd.engine import requirement_plan
from inferd.engine.requirements_file import read_requirements, requirement_lines
from inferd.errors import ConfigError
from inferd.storage import project_files

API_DEPLOYMENT = "inferd"
ROUTERS = {"inferd.v2": ("/v2", "v2"), "inferd.tfserving": ("/v1", "tfserving")}
ROUTER_DEPLOYMENT = "router"
REPLICA_IMPORT_PATH = "inferd.engine.ray.replica:api_app"
ROUTER_IMPORT_PATH = "inferd.engine.ray.replica:router_app"
# Requests Ray may hand one replica at once; the replica still runs them one at a time (they
# wait in its event loop). 1 starves a replica between requests (the proxy only sends the next
# one after an answer) and collapsed at 32 connections; bench/ray_bench.py measures both.
MAX_ONGOING_REQUESTS = 5
# The project (models on local paths included) travels as a zip through Ray's GCS; bigger
# models belong in object storage, which replicas download once per node.
MAX_PROJECT_BYTES = 100 * 1024 * 1024
# Ray's gitignore-style excludes for the same rules (hidden files at any depth, not the root).
EXCLUDES = [".?*", "__pycache__/", ".venv/", "venv/", "node_modules/", "*.pyc", "*.pyo", "*.pyd"]
GRACEFUL_SHUTDOWN_S = 20.0
# A rolling update starts new replicas before old ones stop (as the local engine does); 25%
# rounds up to at least one extra replica, and old replicas keep serving while it waits.
MAX_SURGE_PERCENT = 25


def check_size(root: Path, files: list[Path], limit: int = MAX_PROJECT_BYTES) -> int:
    """The project's size in bytes; ``ConfigError`` naming the biggest files beyond ``limit``."""
    sizes = sorted(((path.stat().st_size, path) for path in files), reverse=True)
    total = sum(size for size, _ in sizes)
    if total > limit:
        biggest = ", ".join(f"{path.relative_to(root)} ({_mib(size)})" for size, path in sizes[:3])
        raise ConfigError(
            f"the project folder is {_mib(total)}, more than the {_mib(limit)} that travels to a Ray "
            f"cluster (biggest: {biggest}); put large models on s3:// (or gs://, https://) and "
            "name that URI as the model"
        )
    return total


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def digest_files(root: Path, files: list[Path]) -> str:
    """One hash over the files' names and contents."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(os.fsencode(path.relative_to(root)) + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def inferd_digest() -> str:
    """A hash of the inferd package itself: it travels too, so a new inferd rolls replicas."""
    package = Path(__file__).resolve().parents[2]
    return digest_files(package, [p for p in project_files(package) if p.suffix in (".py", ".typed")])


def version_id(config: ApiConfig, project_digest: str, code_digest: str, refresh: str = "") -> str:
    """Everything that changes what an API answers (config, project files, inferd, refresh)."""
    digest = hashlib.sha256(config.identity().encode())
    for part in (project_digest, code_digest, refresh, str(MAX_ONGOING_REQUESTS)):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:16]


def requirements(root: Path, relax: bool = False, warn: Callable[[str], None] | None = None) -> list[str]:
    """``requirements.txt`` as the runtime_env ``pip`` list (comments and blanks dropped).

    The pins are checked as for a local deploy (``engine/requirement_plan.py``): without ``relax``, one
    that cannot install on this Python is a ``LoadError``, and the list goes to Serve as written.
    With ``relax`` (``--relax-pins``), one that cannot install on this Python becomes its nearest
    installable version, one inferd's environment fits is left to it (Serve's pip environments
    see the cluster's own packages, as replicas of a local deploy see inferd's), and ``warn``
    gets each change. Ray runs the cluster on the client's Python version, so the check holds
    there too.
    """
    path = root / "requirements.txt"
    if not path.is_file():
        return []
    text = read_requirements(path)  # its limits, a byte order mark, a conda file: as a local deploy
    # A pin that cannot install fails here, in the local deploy's words (LoadError): on the
    # cluster, Serve's pip failed on the node and the API said "updating" until --timeout.
    checked = requirement_plan.plan(text, relax=relax)
    if relax:
        for warning in checked.warnings:
            (warn or (lambda _: None))(warning)
        # Serve's pip sees the cluster's torch, so torchvision's build for it needs no --no-deps there.
        return checked.lines + checked.no_deps
    return requirement_lines(text)  # pip's comments: `#sha256=` of a URL is not one


def check_supported(project: Project) -> None:
    """Refuse what the Ray backend would silently drop: what inferd's gateway does, which a Ray
    cluster does not run (Serve's proxy routes each API's requests straight to its replicas)."""
    for config in project.apis:
        if config.api.auth is not None:
            raise ConfigError(
                f"api '{config.name}': auth: API keys are enforced by inferd's gateway, which a Ray "
                "cluster does not run; remove auth: (and protect Ray Serve's port) or use "
                "`inferd export --kubernetes`"
            )
        if config.api.shadow is not None:
            raise ConfigError(
                f"api '{config.name}': shadow: copies of requests are made by inferd's gateway, which "
                "a Ray cluster does not run; remove shadow: or deploy on this machine"
            )
        if config.api.payload_log is not None:
            raise ConfigError(
                f"api '{config.name}': payload_log: requests are recorded by inferd's gateway, which "
                "a Ray cluster does not run; remove payload_log: or deploy on this machine"
            )
    for splitter in project.splitters:
        raise ConfigError(
            f"traffic_splitter '{splitter.name}': splitters are routed by inferd's gateway, which a "
            "Ray cluster does not run; remove it or deploy on this machine"
        )


def unapplied(project: Project) -> list[str]:
    """What a Ray cluster serves the project without (inferd's gateway does it): one warning a
    field the user set, so that none is dropped in silence."""
    warnings = []
    for config in project.apis:
        api = config.api
        if api.batching is not None:
            warnings.append(
                f"api '{config.name}': batching: is done by inferd's gateway, which a Ray cluster "
                "does not run; each request runs alone there"
            )
        timeouts = [field for field in ("timeout", "item_timeout") if field in api.model_fields_set]
        if timeouts:
            named = " and ".join(f"{field}:" for field in timeouts)
            it = "it" if len(timeouts) == 1 else "them"
            warnings.append(
                f"api '{config.name}': {named} inferd's gateway enforces {it}, which a Ray cluster "
                "does not run; set Serve's request_timeout_s on the cluster instead"
            )
        compute = api.compute
        if compute.mem_limit is not None:
            warnings.append(
                f"api '{config.name}': compute.mem_limit: is enforced by the local engine; on a Ray "
                "cluster a replica is placed by its mem: only and may use more"
            )
        if compute.gpu_memory is not None:
            warnings.append(
                f"api '{config.name}': compute.gpu_memory: devices are shared by the local engine "
                "only; on a Ray cluster each replica gets a whole GPU"
            )
    return warnings


def autoscaling_config(config: ApiConfig) -> dict[str, Any]:
    """Ray Serve's autoscaling from ``compute`` and inferd's in-flight target."""
    compute = config.api.compute
    autoscaling = config.api.autoscaling
    return {
        "min_replicas": compute.min_replicas,
        "max_replicas": compute.max_replicas,
        "initial_replicas": compute.replicas_at_start,
        "target_ongoing_requests": autoscaling.target_in_flight,
        "upscale_delay_s": autoscaling.upscale_window,
        "downscale_delay_s": autoscaling.downscale_window,
    }


def actor_options(config: ApiConfig) -> dict[str, Any]:
    """``num_cpus`` / ``num_gpus`` / ``memory`` of each replica, from ``compute``."""
    compute = config.api.compute
    options: dict[str, Any] = {"num_cpus": compute.cpu_cores, "num_gpus": compute.gpu}
    if compute.mem_bytes is not None:
        options["memory"] = compute.mem_bytes
    return options


def deployment_options(config: ApiConfig, version: str) -> dict[str, Any]:
    """Options of the API's Serve deployment (``Deployment.options`` / serveConfigV2 keys)."""
    return {
        "name": API_DEPLOYMENT,
        "max_ongoing_requests": MAX_ONGOING_REQUESTS,
        "max_queued_requests": config.api.max_queue_length,
        "autoscaling_config": autoscaling_config(config),
        "ray_actor_options": actor_options(config),
        "user_config": {
            "version": version,
            "deployment": config.deployment,
            "model_format": config.api.model_format,
            "config": config.api.shown(),  # what `inferd get API -v -e` shows, as locally
        },
        "graceful_shutdown_timeout_s": GRACEFUL_SHUTDOWN_S,
        "max_surge_percent": MAX_SURGE_PERCENT,
    }


def replica_args(config: ApiConfig, project_root: str | None = None) -> dict[str, Any]:
    """What an API replica is built from: the API's config and where the project lies.

    ``project_root`` ``None`` means the replica's working directory (the runtime_env
    ``working_dir``); an image that holds the project passes its path.
    """
    return {
        "config": config.model_dump(mode="json"),
        "project_root": project_root,
    }


@dataclass(frozen=True)
class ServeOptions:
    """How Serve's HTTP proxies listen (applied when inferd starts Serve on a cluster)."""

    host: str
    port: int
    proxy_location: str


def serve_options(http_port: int, on_this_machine: bool) -> ServeOptions:
    """Proxies on every node on 0.0.0.0; a cluster whose nodes all share this machine gets one
    proxy on 127.0.0.1 (several proxies on one machine cannot share the port)."""
    if on_this_machine:
        return ServeOptions(host="127.0.0.1", port=http_port, proxy_location="HeadOnly")
    return ServeOptions(host="0.0.0.0", port=http_port, proxy_location="EveryNode")


def serve_config_v2(project: Project, project_root: str, http_port: int = 8000) -> dict[str, Any]:
    """The declarative Serve config (``serve deploy`` / KubeRay ``serveConfigV2``) of a project
    whose files are at ``project_root`` on every node (baked into the image)."""
    applications: list[dict[str, Any]] = []
    for config in project.apis:
        options = deployment_options(config, version="image")
        applications.append(
            {
                "name": config.name,
                "route_prefix": config.endpoint,
                "import_path": REPLICA_IMPORT_PATH,
                "args": replica_args(config, project_root),
                "deployments": [options],
            }
        )
    for name, (prefix, protocol) in ROUTERS.items():
        applications.append(
            {
                "name": name,
                "route_prefix": prefix,
                "import_path": ROUTER_IMPORT_PATH,
                "args": {"protocol": protocol},
                "deployments": [{"name": ROUTER_DEPLOYMENT, "ray_actor_options": {"num_cpus": 0}}],
            }
        )
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": http_port},
        "applications": applications,
    }
