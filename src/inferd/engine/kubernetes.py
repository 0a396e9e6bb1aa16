"""``inferd export --kubernetes``: a Dockerfile and manifests for a project (pure generation).

Each API becomes a Deployment whose pods run inferd's own gateway and exactly one replica
(``inferd serve /app/project --replicas 1 ...``: the fast local data path inside every pod, no
autoscaling inside it), a Service, and a HorizontalPodAutoscaler on CPU (Cortex's
``target_cpu_utilization``) between ``min_replicas`` and ``max_replicas`` pods: one layer of
scaling. A pod's resources are the replica's ``compute`` (cpu and mem requested, gpu, and
``mem_limit`` as the memory limit). API keys come from a Secret the user creates. With
``ray=True`` the project becomes one KubeRay ``RayService`` whose ``serveConfigV2`` is the same
translation ``inferd deploy -e`` sends to Ray Serve.
Nothing here talks to a cluster; ``cli/export.py`` writes the files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from inferd.config.blocks import Compute
from inferd.config.schema import ApiConfig, Project
from inferd.engine.kubernetes_names import RAY_SERVICE_LENGTH, object_name
from inferd.engine.kubernetes_requirements import HOME_IN_POD, requirements_step
from inferd.engine.ray import plan
from inferd.errors import ConfigError

PROJECT_IN_IMAGE = "/app/project"
PORT = 8888
GRACE_SECONDS = 30  # inferd serve's default --grace: accepted requests finish within this
PRESTOP_SECONDS = 5  # endpoints stop sending before SIGTERM starts the drain
RAY_SERVE_PORT = 8000
DEFAULT_RAY_VERSION = "2.60.0"
LABEL = "inferd.dev"


@dataclass(frozen=True)
class ExportFile:
    """One file to write under the output folder."""

    path: str
    text: str


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
    """A ``compute`` value as Kubernetes reads it (``200m``, ``0.5``, ``1Gi``: the same units)."""
    if isinstance(value, int):
        return str(value)  # bytes, to the byte (`:g` keeps six digits)
    return value if isinstance(value, str) else f"{value:g}"


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
        "env": [
            {"name": "INFERD_HOME", "value": HOME_IN_POD},
            # One replica per pod shares its weights with nobody: no copy to write at each start.
            {"name": "INFERD_SHARE_WEIGHTS", "value": "0"},
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


def ray_service(project: Project, image: str, ray_version: str, max_workers: int = 4) -> dict[str, Any]:
    """A KubeRay RayService: a Ray cluster from the image, and the project's Serve config."""
    serve_config = plan.serve_config_v2(project, PROJECT_IN_IMAGE, RAY_SERVE_PORT)
    ports = [
        {"name": "gcs", "containerPort": 6379},
        {"name": "dashboard", "containerPort": 8265},
        {"name": "client", "containerPort": 10001},
        {"name": "serve", "containerPort": RAY_SERVE_PORT},
    ]
    cpu = max(
        1, math.ceil(sum(c.api.compute.cpu_cores * max(1, c.api.compute.max_replicas) for c in project.apis))
    )
    worker_cpu = str(min(cpu, 4))
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {
            "name": object_name(project.deployment.name, max_length=RAY_SERVICE_LENGTH),
            "labels": {"app.kubernetes.io/name": "inferd"},
        },
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config, sort_keys=False),
            "rayClusterConfig": {
                "rayVersion": ray_version,
                "headGroupSpec": {
                    "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "ray-head",
                                    "image": image,
                                    "ports": ports,
                                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                                }
                            ]
                        }
                    },
                },
                "workerGroupSpecs": [
                    {
                        "groupName": "workers",
                        "replicas": 1,
                        "minReplicas": 1,
                        "maxReplicas": max_workers,
                        "rayStartParams": {},
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "ray-worker",
                                        "image": image,
                                        "resources": {"requests": {"cpu": worker_cpu, "memory": "2Gi"}},
                                    }
                                ]
                            }
                        },
                    }
                ],
            },
        },
    }


def _keys_readme(project: Project) -> list[str]:
    """How to create the Secret the API keys come from (nothing secret is ever exported)."""
    arguments: list[str] = []
    for config in project.apis:
        auth = config.api.auth
        if auth is None:
            continue
        arguments += [f"--from-literal={variable}=..." for variable in auth.keys_from_env]
        if auth.keys_file is not None:
            name = auth.keys_file.rsplit("/", 1)[-1]
            arguments.append(f"--from-file={name}=path/to/{name}")
    if not arguments:
        return []
    unique = list(dict.fromkeys(arguments))
    return [
        "",
        "## API keys",
        "",
        "The pods read the API keys (`auth`) from a Secret, which you create before applying:",
        "",
        "```sh",
        f"kubectl create secret generic {secret_name(project.apis[0])} \\",
        *(f"  {argument} \\" for argument in unique[:-1]),
        f"  {unique[-1]}",
        "```",
    ]


def dockerfile(with_ray: str | None = None, relax: bool = False, extras: str = "all") -> str:
    """The image: python:3.11-slim, inferd with its runtimes (``extras``) from ``inferd/``, the
    project in /app/project with its requirements (and Ray Serve for a RayService).
    ``relax``: the deployment's ``relax_pins``."""
    lines = [
        "# Built by `inferd export`; see README.md beside it.",
        "FROM python:3.11-slim",
        "ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
        "WORKDIR /app",
        "COPY inferd/ /app/inferd/",
        f'RUN pip install "/app/inferd[{extras}]"',
    ]
    if with_ray:
        lines += [
            "# KubeRay's probes call wget; Ray Serve runs the APIs.",
            "RUN apt-get update && apt-get install -y --no-install-recommends wget \\",
            "    && rm -rf /var/lib/apt/lists/*",
            f'RUN pip install "ray[serve]=={with_ray}"',
        ]
    lines.append(f"COPY project/ {PROJECT_IN_IMAGE}/")
    if with_ray:
        lines += [
            f"RUN if [ -f {PROJECT_IN_IMAGE}/requirements.txt ]; then \\",
            f"    pip install -r {PROJECT_IN_IMAGE}/requirements.txt; fi",
        ]
    else:
        lines += requirements_step(relax)
    lines.append(f"WORKDIR {PROJECT_IN_IMAGE}")
    if not with_ray:
        lines += [f"EXPOSE {PORT}", "CMD " + json.dumps(serve_command())]
    return "\n".join(lines) + "\n"


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


def single_api_config(config_text: str, api: str) -> str:
    """A project's config with only ``api`` (and the deployment): what one API's pods serve
    when the project has several (``inferd serve`` takes a config file as well as a folder)."""
    from inferd.config.load import parse_yaml

    data, _ = parse_yaml(config_text, "cortex.yaml")
    kept = [item for item in data if item.get("kind") != "api" or item.get("name") == api]
    return f"# inferd export: api '{api}' only, from the project's config\n" + yaml.safe_dump(
        kept, sort_keys=False
    )


def readme(project: Project, image: str, ray: bool) -> str:
    """OUT/README.md: how the image is built and the manifests applied."""
    name = object_name(project.deployment.name, max_length=RAY_SERVICE_LENGTH)  # the RayService's
    lines = [
        f"# {project.deployment.name}: inferd on Kubernetes",
        "",
        "Written by `inferd export`. This folder is a Docker build context:",
        "",
        "- `inferd/`: inferd's source (the version that exported it) with a pyproject listing the",
        "  same dependencies; the Dockerfile installs it with its runtimes: `inferd[all]` (onnxruntime",
        "  and tensorflow-cpu), `inferd[gpu]` (their CUDA builds) when an API asks for a GPU, and",
        "  `inferd[cortex]` (what Cortex's image pre-installed) when the inferd that exported it has it.",
        "- `project/`: the project's files (hidden files, virtualenvs and bytecode left out), copied to",
        f"  `{PROJECT_IN_IMAGE}` in the image; its `requirements.txt`, if any, is installed at build time",
        "  as `inferd deploy` installs it (pins that inferd's own packages meet are not installed again).",
        "- `Dockerfile`: `python:3.11-slim` + the two above.",
        "- `kubernetes/`: the manifests.",
        "",
        "## Build and push the image",
        "",
        "```sh",
        f"docker build -t {image} .",
        f"docker push {image}        # to a registry your cluster pulls from (or `kind load docker-image`)",
        "```",
        "",
    ]
    if ray:
        lines += [
            "## Apply (KubeRay)",
            "",
            "Needs the KubeRay operator (`helm install kuberay-operator kuberay/kuberay-operator`).",
            "",
            "```sh",
            "kubectl apply -f kubernetes/rayservice.yaml",
            f"kubectl get rayservice {name}           # wait for the service to be Running",
            f"kubectl port-forward svc/{name}-serve-svc 8000:8000",
            "```",
            "",
            "Each API is a Ray Serve application at its endpoint (as `inferd deploy -e` makes it);",
            "`/v2/...` and `/v1/models/...` are answered by two small router applications.",
            "Autoscaling follows `compute` (replicas between min and max, on in-flight requests);",
            "KubeRay adds worker pods when replicas do not fit.",
        ]
    else:
        lines += [
            "## Apply",
            "",
            "```sh",
            "kubectl apply -f kubernetes/",
            *(f"kubectl rollout status deployment/{resource_name(c)}" for c in project.apis),
            f"kubectl port-forward svc/{resource_name(project.apis[0])} 8888:80" if project.apis else "",
            "```",
            "",
            "Then, for example:",
            "",
            "```sh",
            *(
                f"curl -X POST -H 'Content-Type: application/json' -d @project/sample.json "
                f"http://127.0.0.1:8888{c.endpoint}"
                for c in project.apis[:1]
            ),
            "```",
            "",
            "Per API: a Deployment whose pods run `inferd serve --replicas 1` (inferd's gateway and",
            "one replica of the API, no autoscaling inside the pod; ready when `/healthz` answers",
            "200), a ClusterIP Service on port 80 and a HorizontalPodAutoscaler between",
            "`min_replicas` (at least 1) and `max_replicas` pods at `target_cpu_utilization`: the",
            "only layer of scaling. A pod requests the replica's `compute.cpu` and `compute.mem`",
            "(and `compute.gpu`); `compute.mem_limit` is its memory limit. A pod that stops is taken",
            f"out of the Service (preStop), then finishes its accepted requests within {GRACE_SECONDS}s",
            "before exiting; rolling updates lose no request. Install the metrics-server for the",
            "autoscaler.",
            *_keys_readme(project),
        ]
    return "\n".join(lines) + "\n"
