"""``inferd export --kubernetes``: each API's Kubernetes manifests (pure generation).

Each API becomes a Deployment whose pods run inferd's own gateway and exactly one replica
(``inferd serve /app/project --replicas 1 ...``: the fast local data path inside every pod, no
autoscaling inside it), a Service, and a HorizontalPodAutoscaler on CPU (Cortex's
``target_cpu_utilization``) between ``min_replicas`` and ``max_replicas`` pods: one layer of
scaling. A pod's resources are the replica's ``compute`` (cpu and mem requested, gpu, and
``mem_limit`` as the memory limit). API keys come from a Secret the user creates. With
``--ray`` the project becomes one KubeRay ``RayService`` instead (``engine/kuberay.py``); the
Dockerfile and README beside the manifests are ``engine/build_context.py``'s.
Nothing here talks to a cluster; ``cli/export.py`` writes the files.
"""

from __future__ import annotations

from typing import Any

import yaml

from inferd.config.blocks import Compute
from inferd.config.schema import ApiConfig, Project
from inferd.engine.kubernetes_names import object_name
from inferd.engine.kubernetes_requirements import HOME_IN_POD
from inferd.errors import ConfigError

PROJECT_IN_IMAGE = "/app/project"
PORT = 8888
GRACE_SECONDS = 30  # inferd serve's default --grace: accepted requests finish within this
PRESTOP_SECONDS = 5  # endpoints stop sending before SIGTERM starts the drain
LABEL = "inferd.dev"


REPLICAS_PER_POD = 1


def serve_command(project_path: str = PROJECT_IN_IMAGE, port: int = PORT) -> list[str]:
    """The pod's command: ``inferd serve`` as locally, with a fixed replica count."""
    return [
        "inferd",
        "serve",
        project_path,
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--replicas",
        str(REPLICAS_PER_POD),
    ]


def secret_name(config: ApiConfig) -> str:
    """The Secret holding a deployment's API keys (created by the user, never exported)."""
    return f"{config.deployment}-api-keys"[:253]


def aws_secret_name(deployment: str) -> str:
    """An optional Secret whose keys become the pods' environment: AWS credentials for ``s3://``
    models and for handlers that call AWS themselves (created by the user, never exported)."""
    return f"{deployment}-aws"[:253]


def aws_env_from(deployment: str) -> list[dict[str, Any]]:
    """A container's ``envFrom`` for that Secret: optional, so pods start without it (IAM roles
    for service accounts give credentials too)."""
    return [{"secretRef": {"name": aws_secret_name(deployment), "optional": True}}]


def resource_name(config: ApiConfig) -> str:
    """``<deployment>-<api>``, valid and distinct for any names Cortex allows (``kubernetes_names``)."""
    return object_name(config.deployment, config.name)


def _labels(config: ApiConfig) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "inferd",
        "app.kubernetes.io/instance": resource_name(config),
        f"{LABEL}/deployment": config.deployment,
        f"{LABEL}/api": config.name,
    }


def _quantity(value: str | int | float) -> str:
    """A ``compute`` value as Kubernetes reads it (``200m``, ``0.5``, ``1Gi``: the same units, but
    for Cortex's ``K``, which Kubernetes spells ``k``, and blanks, which it refuses)."""
    if isinstance(value, int):
        return str(value)  # bytes, to the byte (`:g` keeps six digits)
    if not isinstance(value, str):
        return f"{value:g}"
    text = value.strip()
    return text[:-1] + "k" if text.endswith("K") else text


def resources(compute: Compute) -> dict[str, Any]:
    """The pod's resources: the one replica's ``compute`` (mem is a request, mem_limit a cap)."""
    requests: dict[str, str] = {"cpu": _quantity(compute.cpu)}
    limits: dict[str, str] = {}
    if compute.mem is not None:
        requests["memory"] = _quantity(compute.mem)
    if compute.mem_limit is not None:
        limits["memory"] = _quantity(compute.mem_limit)
    if compute.gpu:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(compute.gpu)
    result: dict[str, Any] = {"requests": requests}
    if limits:
        result["limits"] = limits
    return result


def _keys(
    config: ApiConfig, project_path: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Environment, volumes and mounts that bring the API's keys from its Secret."""
    auth = config.api.auth
    if auth is None:
        return [], [], []
    secret = secret_name(config)
    env: list[dict[str, Any]] = [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": variable}}}
        for variable in auth.keys_from_env
    ]
    if auth.keys_file is None:
        return env, [], []
    folder = project_path if not project_path.endswith((".yaml", ".yml")) else PROJECT_IN_IMAGE
    path = auth.keys_file if auth.keys_file.startswith("/") else f"{folder}/{auth.keys_file}"
    key = path.rsplit("/", 1)[-1]
    volumes = [{"name": "api-keys", "secret": {"secretName": secret, "items": [{"key": key, "path": key}]}}]
    mounts = [{"name": "api-keys", "mountPath": path, "subPath": key, "readOnly": True}]
    return env, volumes, mounts


def deployment(config: ApiConfig, image: str, project_path: str) -> dict[str, Any]:
    """The API's Deployment: pods running ``inferd serve``, ready when ``/healthz`` says so."""
    labels = _labels(config)
    compute = config.api.compute
    key_env, volumes, mounts = _keys(config, project_path)
    container: dict[str, Any] = {
        "name": "inferd",
        "image": image,
        "command": serve_command(project_path),
        "ports": [{"name": "http", "containerPort": PORT}],
        "envFrom": aws_env_from(config.deployment),
        "env": [
            {"name": "INFERD_HOME", "value": HOME_IN_POD},
            # One replica per pod shares its weights with nobody: no copy to write at each start.
            {"name": "INFERD_SHARE_WEIGHTS", "value": "0"},
            # The HorizontalPodAutoscaler scales on CPU: a pod spinning for one client's requests
            # (replica/spinning.py) would look busy and be scaled out.
            {"name": "INFERD_SPIN_US", "value": "0"},
            *key_env,
        ],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
        },
        # Kubernetes removes the pod from the Service while preStop sleeps; then SIGTERM makes
        # inferd turn /healthz 503, finish accepted requests (--grace) and exit 0.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
        "resources": resources(compute),
    }
    if mounts:
        container["volumeMounts"] = mounts
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": PRESTOP_SECONDS + GRACE_SECONDS + 5,
        "containers": [container],
    }
    if volumes:
        pod["volumes"] = volumes
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": resource_name(config), "labels": labels},
        "spec": {
            "replicas": max(1, compute.replicas_at_start),
            "selector": {"matchLabels": {k: labels[k] for k in (f"{LABEL}/deployment", f"{LABEL}/api")}},
            "template": {
                "metadata": {"labels": labels},
                "spec": pod,
            },
        },
    }


def service(config: ApiConfig) -> dict[str, Any]:
    """A ClusterIP Service on port 80 in front of the API's pods."""
    labels = _labels(config)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": resource_name(config), "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": {k: labels[k] for k in (f"{LABEL}/deployment", f"{LABEL}/api")},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def autoscaler(config: ApiConfig) -> dict[str, Any]:
    """Pods between min and max replicas (at least 1: a HorizontalPodAutoscaler cannot reach
    0), at Cortex's CPU target."""
    compute = config.api.compute
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": resource_name(config), "labels": _labels(config)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": resource_name(config)},
            "minReplicas": max(1, compute.min_replicas),
            "maxReplicas": max(1, compute.max_replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": compute.target_cpu_utilization,
                        },
                    },
                }
            ],
        },
    }


def api_manifests(
    config: ApiConfig, image: str, project_path: str = PROJECT_IN_IMAGE
) -> list[dict[str, Any]]:
    """Deployment, Service and HorizontalPodAutoscaler of one API."""
    return [deployment(config, image, project_path), service(config), autoscaler(config)]


def dump_all(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


def check_exportable(project: Project) -> None:
    """Refuse what the export would drop: each API runs in pods of its own, so nothing routes
    between APIs (a traffic splitter) or copies requests from one API's pods to another's."""
    for splitter in project.splitters:
        raise ConfigError(
            f"traffic_splitter '{splitter.name}': each API is exported as its own Deployment and "
            "Service, so no gateway would route the splitter's requests; remove it and split "
            "traffic with your ingress, or deploy on this machine"
        )
    for config in project.apis:
        if config.api.shadow is not None:
            raise ConfigError(
                f"api '{config.name}': shadow: api '{config.api.shadow.api}' is exported to pods of "
                "its own, out of reach of this API's gateway; remove shadow: for the export, or "
                "deploy on this machine"
            )


def unapplied(project: Project) -> list[str]:
    """What the manifests serve otherwise than the project says: one warning a field, so that
    none is changed in silence; four or more APIs alike are one warning naming them, as in
    ``inferd deploy`` (100 APIs were 100 lines of the same words)."""
    zero = [config.name for config in project.apis if config.api.compute.min_replicas == 0]
    why = (
        "min_replicas: 0: a HorizontalPodAutoscaler keeps at least 1 pod (Kubernetes scales to "
        "zero only behind its HPAScaleToZero feature gate); scale the Deployment to 0 yourself, "
        "or export with --ray, whose Serve scales to zero"
    )
    if len(zero) >= 4:
        return [f"{len(zero)} apis: {why}: " + ", ".join(f"'{name}'" for name in zero)]
    return [f"api '{name}': {why}" for name in zero]


def single_api_configs(config_text: str) -> dict[str, str]:
    """Each API's name and the project's config with only that API (and the deployment): what
    one API's pods serve when the project has several (``inferd serve`` takes a config file as
    well as a folder). The file is parsed once: once per API made an export quadratic."""
    from inferd.config.load import parse_yaml

    data, _ = parse_yaml(config_text, "cortex.yaml")
    others = [item for item in data if item.get("kind") != "api"]
    at = {id(item): index for index, item in enumerate(data)}
    configs: dict[str, str] = {}
    for item in data:
        if item.get("kind") == "api":
            kept = sorted([*others, item], key=lambda kept_item: at[id(kept_item)])  # in the file's order
            configs[item.get("name")] = (
                f"# inferd export: api '{item.get('name')}' only, from the project's config\n"
                + yaml.safe_dump(kept, sort_keys=False)
            )
    return configs
