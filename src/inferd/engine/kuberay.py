"""``inferd export --kubernetes OUT --ray``: the project as one KubeRay ``RayService`` whose
``serveConfigV2`` is the same translation ``inferd deploy -e`` sends to Ray Serve (pure
generation; ``cli/export.py`` writes the file).
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from inferd.config.schema import Project
from inferd.engine.kubernetes import PROJECT_IN_IMAGE, aws_env_from
from inferd.engine.kubernetes_names import RAY_SERVICE_LENGTH, object_name
from inferd.engine.ray import plan

RAY_SERVE_PORT = 8000
DEFAULT_RAY_VERSION = "2.60.0"


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
                                    "envFrom": aws_env_from(project.deployment.name),
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
                                        "envFrom": aws_env_from(project.deployment.name),
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
