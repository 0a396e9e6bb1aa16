"""Ray Serve's view of an application -> inferd's status and replica counts (pure).

The input is what Serve's controller reports (``get_serve_details()``: applications, their
deployments, deployment configs and replicas), as plain JSON. The output has the same keys
as the local engine's ``describe`` so ``inferd get`` renders both alike:

- **requested** = the deployment's target replica count (autoscaling's choice);
- **available** = replicas in state RUNNING;
- **up_to_date** = RUNNING replicas of the current version: those the last deploy did not
  replace (it names them in ``user_config``; every deploy replaces every replica);
- **failed** = replicas that died while the deployment reports failures;
- **status**: ``stopping`` (app DELETING), ``error`` (DEPLOY_FAILED / UNHEALTHY, with Serve's
  message), ``live`` (enough current replicas), ``compute unavailable`` (replicas waiting for
  resources), else ``updating`` / ``pending``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from inferd.engine.ray.plan import API_DEPLOYMENT, ROUTERS

FAILURE_TRIGGERS = ("REPLICA_STARTUP_FAILED", "HEALTH_CHECK_FAILED", "DEPLOYMENT_ACTOR_FAILED")
UNSCHEDULABLE = re.compile(r"taken more than \d+s to be scheduled|resources? (are|is) not available", re.I)
# The last "SomeError: message" line of a traceback Serve passes on.
ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")
# inferd's own error, raised in the replica: its message is the one the local operator shows.
INFERD_ERROR = re.compile(r"^inferd\.errors\.\w+: (.+)$")
# Serve's reason a replica waits for a node: what it needs and what the cluster has free.
RESOURCES = re.compile(
    r"Resources required for each replica: (\{.*?\}), total resources available: (\{.*?\})"
)


def is_api_app(app: dict[str, Any]) -> bool:
    """An application that inferd deployed (its one deployment is called ``inferd``)."""
    return API_DEPLOYMENT in (app.get("deployments") or {})


def inferd_runs(applications: dict[str, Any]) -> bool:
    """Whether an application of inferd's (an API or a router) is on the cluster and not just
    draining after a delete; other Serve applications do not count."""
    return any(
        (name in ROUTERS or is_api_app(app)) and app.get("status") != "DELETING"
        for name, app in applications.items()
    )


def summarize_error(message: str) -> str:
    """One line out of Serve's message: inferd's own error when the replica raised one (Serve
    prints the handler's traceback again after it), else the innermost ``Error: ...`` line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in reversed(lines):
        own = INFERD_ERROR.match(line)
        if own:
            return own.group(1)
    for line in reversed(lines):
        found = ERROR_LINE.match(line)
        if found:
            return found.group(2) if found.group(1) in ("LoadError", "RuntimeError") else line
    return lines[0] if lines else ""


def api_view(name: str, app: dict[str, Any]) -> dict[str, Any]:
    """``inferd get``'s fields for one API application of Serve's details."""
    deployment = app["deployments"][API_DEPLOYMENT]
    config = deployment.get("deployment_config") or {}
    user = config.get("user_config") or {}
    autoscaling = config.get("autoscaling_config") or {}
    minimum = int(autoscaling.get("min_replicas", config.get("num_replicas") or 1))
    replicas = deployment.get("replicas") or []
    running = [r for r in replicas if r.get("state") == "RUNNING"]
    deployed_at = float(app.get("last_deployed_time_s") or 0.0)
    replaced = user.get("replaces")  # the replicas of the versions before this deploy
    if replaced is not None:
        # Each `serve.run` gives the deployment a new code version, so Serve replaces every
        # replica; right after it, Serve may still call the old ones HEALTHY.
        current = [r for r in running if r.get("replica_id") not in replaced]
    elif deployment.get("status") == "HEALTHY":
        current = running
    else:  # an app deployed once only (Serve keeps the time of the first deploy)
        current = [r for r in running if float(r.get("start_time_s") or 0.0) >= deployed_at]
    requested = int(deployment.get("target_num_replicas", len(replicas)))
    trigger = deployment.get("status_trigger", "")
    failed = len(deployment.get("recent_dead_replicas") or []) if trigger in FAILURE_TRIGGERS else 0
    message = str(deployment.get("message") or app.get("message") or "")
    # Serve's proxies route to every RUNNING replica, old ones too: the new version alone
    # answers (what `inferd deploy` waits for, as locally) once none of those is left.
    serving = len(current) if len(current) == len(running) else 0
    status = _status(
        app.get("status", ""), deployment.get("status", ""), serving, minimum, requested, message
    )
    error = summarize_error(message) if status == "error" else None
    if status == "compute unavailable":
        error = _unschedulable(message)
    return {
        "name": name,
        "deployment": user.get("deployment", ""),
        "endpoint": app.get("route_prefix") or "",
        "model_format": user.get("model_format", ""),
        "status": status,
        "requested": requested,
        "available": len(running),
        "up_to_date": len(current),
        "stale": len(running) - len(current),
        "failed": max(failed, 1) if trigger in FAILURE_TRIGGERS and status == "error" else failed,
        "in_flight": None,
        # The time of the last deploy that changed it (Serve's stays the first deploy's).
        "last_update": float(user.get("deployed_at") or deployed_at),
        "version": user.get("version", ""),
        "refresh": user.get("refresh", ""),
        "error": error,
        "error_detail": message or None,
        "config": user.get("config") or {},  # as inferd deployed it (plan.deployment_options)
        "replicas": [
            {
                "id": r.get("replica_id"),
                "pid": r.get("pid"),
                "node_id": r.get("node_id"),
                "node_ip": r.get("node_ip"),
                "state": str(r.get("state", "")).lower(),
                "actor_id": r.get("actor_id"),
                "worker_id": r.get("worker_id"),
                "log_file": r.get("log_file_path"),
            }
            for r in replicas
        ],
    }


def _unschedulable(message: str) -> str:
    """Why replicas wait: what each one needs, against what the cluster has free."""
    found = RESOURCES.search(message)
    if found is None:
        return summarize_error(message)
    needs, available = found.groups()
    return f"each replica needs {needs}; the cluster has {available} available (`ray status` says more)"


def _status(app: str, deployment: str, current: int, minimum: int, requested: int, message: str) -> str:
    if app == "DELETING":
        return "stopping"
    if app == "DEPLOY_FAILED" or deployment in ("DEPLOY_FAILED", "UNHEALTHY"):
        return "error"
    if current >= max(1, minimum) or (requested == 0 and minimum == 0):
        return "live"
    if UNSCHEDULABLE.search(message) and not _fits(message):
        return "compute unavailable"
    return "updating" if requested > 0 else "pending"


def _fits(message: str) -> bool:
    """Whether Serve's own numbers say one replica fits in what the cluster has free.

    Serve warns about any replica unscheduled for 30 s, also when the resources are there and
    the node is only slow to start the replica's worker (a busy machine, a runtime environment
    being installed): that is a slow start, not a shortage, and the deploy waits on.
    """
    found = RESOURCES.search(message)
    if found is None:
        return False
    try:
        needs, available = (json.loads(group) for group in found.groups())
        return all(float(available.get(key, 0)) >= float(amount) for key, amount in needs.items())
    except (ValueError, TypeError, AttributeError):
        return False


def api_views(details: dict[str, Any]) -> list[dict[str, Any]]:
    """Every inferd API of a cluster, by name."""
    apps = details.get("applications") or {}
    return [api_view(name, apps[name]) for name in sorted(apps) if is_api_app(apps[name])]


def http_port(details: dict[str, Any], default: int) -> int:
    """The port Serve's proxies really listen on (Serve may have been started by someone else)."""
    options = details.get("http_options") or {}
    return int(options.get("port") or default)
