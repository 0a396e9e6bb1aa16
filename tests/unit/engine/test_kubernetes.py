"""`inferd export --kubernetes`: every manifest validated offline against Kubernetes' schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from click.testing import CliRunner

from inferd.cli.main import cli
from inferd.cli.serve import serve as serve_command
from inferd.config.load import load_project
from inferd.engine import kubernetes as k8s
from tests.conftest import example, make_project

K8S_VERSION = "1.30.0"  # a version kubernetes-validate ships; Deployment/Service/HPA v2 are stable there


def validate(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def export(tmp_path: Path, project: Path, *args: str) -> Path:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", str(project), "--kubernetes", str(out), *args])
    assert result.exit_code == 0, result.output
    return out


def test_each_api_gets_a_valid_deployment_service_and_autoscaler(tmp_path: Path) -> None:
    out = export(tmp_path, example("iris-onnx"))
    documents = list(yaml.safe_load_all((out / "kubernetes" / "classifier.yaml").read_text()))
    assert [d["kind"] for d in documents] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for document in documents:
        validate(document)
    deployment, service, hpa = documents
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(k8s.PRESTOP_SECONDS)]
    assert pod["terminationGracePeriodSeconds"] > k8s.PRESTOP_SECONDS + k8s.GRACE_SECONDS
    assert container["resources"]["requests"] == {"cpu": "200m"}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 100)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
    for name in (
        "Dockerfile",
        "README.md",
        "inferd/pyproject.toml",
        "project/cortex.yaml",
        "project/models/iris.onnx",
    ):
        assert (out / name).is_file(), name
    assert (out / "inferd/src/inferd/cli/main.py").is_file()
    dockerfile = (out / "Dockerfile").read_text()
    assert dockerfile.startswith("# Built by") and "FROM python:3.11-slim" in dockerfile
    assert 'pip install "/app/inferd[all' in dockerfile  # (and cortex: tests/unit/cli/test_export.py)
    assert "docker build" in (out / "README.md").read_text()
    assert "onnxruntime" in (out / "inferd/pyproject.toml").read_text()


def test_the_pod_runs_the_same_serve_command_as_the_local_tests(tmp_path: Path) -> None:
    config = load_project(example("iris-onnx")).apis[0]
    (container,) = k8s.deployment(config, "img", k8s.PROJECT_IN_IMAGE)["spec"]["template"]["spec"][
        "containers"
    ]
    command = container["command"]
    assert command[:2] == ["inferd", "serve"]
    context = serve_command.make_context("serve", command[2:])  # the real `inferd serve` accepts it
    params = context.params
    assert (str(params["project_dir"]), params["host"], params["port"], params["replicas"]) == (
        "/app/project",
        "0.0.0.0",
        8888,
        1,  # one replica per pod, autoscaling off in it: the HorizontalPodAutoscaler scales pods
    )
    # and with nothing to share its weights with, the replica loads the model the plain way
    assert {"name": "INFERD_SHARE_WEIGHTS", "value": "0"} in container["env"]
    # and it never spins: the HorizontalPodAutoscaler would count the CPU as load
    assert {"name": "INFERD_SPIN_US", "value": "0"} in container["env"]


def test_compute_sets_resources_and_bounds(tmp_path: Path) -> None:
    config_text = (example("iris-onnx") / "cortex.yaml").read_text() + (
        "  compute:\n    min_replicas: 2\n    max_replicas: 5\n    init_replicas: 2\n"
        "    cpu: 1\n    mem: 1Gi\n    gpu: 1\n    target_cpu_utilization: 60\n"
    )
    project = make_project(
        tmp_path / "p", config_text, models={"models/iris.onnx": example("iris-onnx") / "models/iris.onnx"}
    )
    (project / "handlers").mkdir()
    (project / "handlers/iris.py").write_text((example("iris-onnx") / "handlers/iris.py").read_text())
    config = load_project(project).apis[0]
    deployment, _, hpa = k8s.api_manifests(config, "img")
    for document in (deployment, hpa):
        validate(document)
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    # the pod holds one replica: its resources are the API's compute, not multiplied
    assert resources == {
        "requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    assert deployment["spec"]["replicas"] == 2  # init_replicas pods, then the autoscaler
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_a_multi_api_project_gives_each_api_its_own_config(tmp_path: Path) -> None:
    text = """
- kind: deployment
  name: two
- kind: api
  name: first
  predictor:
    path: predictor.py
- kind: api
  name: second
  predictor:
    path: predictor.py
"""
    project = make_project(
        tmp_path / "p", text, {"predictor.py": "def predict(sample, metadata):\n    return 1\n"}
    )
    out = export(tmp_path, project)
    for name in ("first", "second"):
        deployment = next(yaml.safe_load_all((out / "kubernetes" / f"{name}.yaml").read_text()))
        command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[2] == f"/app/project/inferd-{name}.yaml"
        only = load_project(out / "project" / f"inferd-{name}.yaml")
        assert [api.name for api in only.apis] == [name]


def test_ray_service_has_what_kuberay_requires(tmp_path: Path) -> None:
    out = export(tmp_path, example("iris-onnx"), "--ray")
    (service,) = yaml.safe_load_all((out / "kubernetes" / "rayservice.yaml").read_text())
    assert service["apiVersion"] == "ray.io/v1" and service["kind"] == "RayService"
    spec = service["spec"]
    serve_config = yaml.safe_load(spec["serveConfigV2"])
    names = [app["name"] for app in serve_config["applications"]]
    assert names == ["classifier", "inferd.v2", "inferd.tfserving"]
    cluster = spec["rayClusterConfig"]
    assert cluster["rayVersion"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    assert cluster["workerGroupSpecs"][0]["groupName"]
    for group in groups:
        assert "rayStartParams" in group
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": group["template"]["spec"],
        }
        validate(pod)
    assert "ray[serve]==" in (out / "Dockerfile").read_text()


def test_the_output_must_not_be_inside_the_project(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", "- kind: deployment\n  name: x\n")
    result = CliRunner().invoke(cli, ["export", str(project), "--kubernetes", str(project / "out")])
    assert result.exit_code == 2 and "outside the project" in result.output


def test_mem_limit_is_the_pods_memory_limit_and_keys_come_from_a_secret(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: vault\n- kind: api\n  name: guarded\n  onnx:\n    model: m.onnx\n"
        "  compute:\n    cpu: 500m\n    mem: 256Mi\n    mem_limit: 1Gi\n"
        "  auth:\n    keys_from_env: [VAULT_KEY]\n    keys_file: secrets/keys.txt\n",
        {"secrets/keys.txt": "file-secret\n"},
        {"m.onnx": example("iris-onnx") / "models/iris.onnx"},
    )
    config = load_project(project).apis[0]
    deployment, _, hpa = k8s.api_manifests(config, "img")
    validate(deployment)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert {
        "name": "VAULT_KEY",
        "valueFrom": {"secretKeyRef": {"name": "vault-api-keys", "key": "VAULT_KEY"}},
    } in container["env"]
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/app/project/secrets/keys.txt" and mount["subPath"] == "keys.txt"
    (volume,) = pod["volumes"]
    assert volume["secret"]["secretName"] == "vault-api-keys"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 100)
    out = export(tmp_path, project)
    readme = (out / "README.md").read_text()
    assert "kubectl create secret generic vault-api-keys" in readme and "--from-literal=VAULT_KEY=" in readme
    assert "file-secret" not in "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
