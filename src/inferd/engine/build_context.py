"""The export folder as a Docker build context: its ``Dockerfile`` (inferd with its runtimes,
the project and its requirements) and the ``README.md`` that says how to build, push and apply
the manifests (``engine/kubernetes.py``, ``engine/kuberay.py``). Pure generation.
"""

from __future__ import annotations

import json

from inferd.config.schema import Project
from inferd.engine.kubernetes import (
    GRACE_SECONDS,
    PORT,
    PROJECT_IN_IMAGE,
    aws_secret_name,
    resource_name,
    secret_name,
    serve_command,
)
from inferd.engine.kubernetes_names import RAY_SERVICE_LENGTH, object_name
from inferd.engine.kubernetes_requirements import requirements_step


def dockerfile(
    with_ray: str | None = None, relax: bool = False, extras: str = "all", requirements: bool = True
) -> str:
    """The image: python:3.11-slim, inferd with its runtimes (``extras``) from ``inferd/``, the
    project in /app/project with its requirements (and Ray Serve for a RayService).
    ``relax``: the deployment's ``relax_pins``; ``requirements``: whether an API runs the user's
    Python, for which alone ``requirements.txt`` is installed (as by ``inferd deploy``)."""
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
    if requirements and with_ray:
        lines += [
            f"RUN if [ -f {PROJECT_IN_IMAGE}/requirements.txt ]; then \\",
            f"    pip install -r {PROJECT_IN_IMAGE}/requirements.txt; fi",
        ]
    elif requirements:
        lines += requirements_step(relax)
    lines.append(f"WORKDIR {PROJECT_IN_IMAGE}")
    if not with_ray:
        lines += [f"EXPOSE {PORT}", "CMD " + json.dumps(serve_command())]
    return "\n".join(lines) + "\n"


def readme(project: Project, image: str, ray: bool) -> str:
    """OUT/README.md: how the image is built and the manifests applied."""
    name = object_name(project.deployment.name, max_length=RAY_SERVICE_LENGTH)  # the RayService's
    lines = [
        f"# {project.deployment.name}: inferd on Kubernetes",
        "",
        "Written by `inferd export`. This folder is a Docker build context:",
        "",
        "- `inferd/`: inferd's source (the version that exported it, with its `cortex` package) and a",
        "  pyproject listing the same dependencies; the Dockerfile installs it with its runtimes:",
        "  `inferd[all]` (onnxruntime and tensorflow-cpu), `inferd[gpu]` (their CUDA builds) when an API",
        "  asks for a GPU, and `inferd[cortex]` (what Cortex's image pre-installed) when the inferd that",
        "  exported it has it.",
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
            *_aws_readme(project),
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
            *_aws_readme(project),
        ]
    return "\n".join(lines) + "\n"


def _aws_readme(project: Project) -> list[str]:
    """How the pods get AWS credentials: an optional Secret, or the cluster's IAM roles."""
    if not project.apis:
        return []
    remote = [c.name for c in project.apis if (c.api.model_uri or "").startswith("s3://")]
    needs = f"the models of {', '.join(remote)} are read from S3, so " if remote else ""
    secret = aws_secret_name(project.deployment.name)
    return [
        "",
        "## AWS credentials",
        "",
        f"The pods read `s3://` models (and handlers call AWS) with AWS's credential chain: {needs}give",
        f"them keys with a Secret named `{secret}` (each of its keys becomes an",
        "environment variable of the pods; optional), or with your cluster's IAM roles for service accounts:",
        "",
        "```sh",
        f"kubectl create secret generic {secret} \\",
        "  --from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=...",
        "```",
    ]


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
