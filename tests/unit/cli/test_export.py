"""`inferd export` writes only into an empty folder or one it wrote; it never deletes the user's files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner, Result

from inferd.cli.main import cli
from inferd.engine.packages import packages_dir
from tests.conftest import built_wheel, example, make_project, package_sources, wheel_contents


def export(project: Path, out: Path, *options: str) -> Result:
    return CliRunner().invoke(cli, ["export", str(project), "--kubernetes", str(out), *options])


def one_onnx_api(root: Path, compute: str) -> Path:
    """Deployment ``d`` with one ONNX API ``a`` (the iris model) and these ``compute:`` lines."""
    return make_project(
        root,
        "- kind: deployment\n  name: d\n- kind: api\n  name: a\n  onnx:\n    model: m.onnx\n"
        f"  compute:\n{compute}",
        {},
        {"m.onnx": example("iris-onnx") / "models" / "iris.onnx"},
    )


def user_project(root: Path) -> Path:
    iris = example("iris-onnx")
    return make_project(
        root,
        (iris / "cortex.yaml").read_text(),
        {"handlers/iris.py": (iris / "handlers" / "iris.py").read_text()},
        {"models/iris.onnx": iris / "models" / "iris.onnx"},
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_holding_the_project_is_refused_and_nothing_is_deleted(tmp_path: Path) -> None:
    work = tmp_path / "w"
    project = user_project(work / "project")
    (work / "inferd").mkdir()
    (work / "inferd" / "notes.txt").write_text("mine")
    (work / "kubernetes").mkdir()
    (work / "kubernetes" / "cluster.yaml").write_text("mine too")
    before = tree(work)
    result = export(project, work)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "holds the project folder" in result.output
    assert tree(work) == before


def test_a_folder_with_other_files_is_refused(tmp_path: Path) -> None:
    project = user_project(tmp_path / "project")
    out = tmp_path / "out"
    out.mkdir()
    (out / "Dockerfile").write_text("FROM mine")
    result = export(project, out)
    assert result.exit_code == 2
    assert "not empty and was not written by inferd export" in result.output
    assert (out / "Dockerfile").read_text() == "FROM mine"


def test_a_new_folder_then_a_second_export_over_it_keeps_added_files(tmp_path: Path) -> None:
    project = user_project(tmp_path / "project")
    out = tmp_path / "out"
    assert export(project, out).exit_code == 0
    listed = json.loads((out / ".inferd-export").read_text())["files"]
    assert "Dockerfile" in listed and "kubernetes/classifier.yaml" in listed
    (out / "kubernetes" / "mine.yaml").write_text("kept")
    (out / "project" / "handlers" / "old.py").unlink(missing_ok=True)
    assert export(project, out).exit_code == 0
    assert (out / "kubernetes" / "mine.yaml").read_text() == "kept"  # not written by inferd: kept
    assert (out / "Dockerfile").is_file()


def test_image_names_the_image_the_manifests_and_the_readme_use(tmp_path: Path) -> None:
    project = user_project(tmp_path / "project")
    out = tmp_path / "out"
    assert export(project, out, "--image", "registry.example/team/iris:1.2").exit_code == 0
    pods = [doc for doc in yaml.safe_load_all((out / "kubernetes" / "classifier.yaml").read_text())]
    images = {
        container["image"]
        for doc in pods
        if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"registry.example/team/iris:1.2"}
    assert "docker build -t registry.example/team/iris:1.2 ." in (out / "README.md").read_text()


@pytest.mark.parametrize(
    "image", ["bad image name", "", 'a"b', "Iris:1", "iris:", "-iris", "iris:1 ; rm -rf ~", "a" * 256, "irís"]
)
def test_an_image_name_docker_does_not_take_is_refused_and_nothing_is_written(
    tmp_path: Path, image: str
) -> None:
    # Was: written into every manifest (an InvalidImageName in the cluster) and into the
    # README's `docker build -t bad image name .`; an empty one became the default silently.
    project = user_project(tmp_path / "project")
    result = export(project, tmp_path / "out", "--image", image)
    assert (
        result.exit_code == 2
        and f"Invalid value for '--image': {image!r} is not an image name" in result.output
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "image",
    [
        "iris",
        "localhost:5000/iris:1.2",
        "Registry.Example:443/team/my_model__x-1:v1.2-rc.3",
        f"iris@sha256:{'a' * 64}",
        "a" * 255 + ":1",
    ],
)
def test_image_names_docker_takes_are_written(tmp_path: Path, image: str) -> None:
    assert export(user_project(tmp_path / "project"), tmp_path / "out", "--image", image).exit_code == 0
    assert f"image: {image}" in (tmp_path / "out" / "kubernetes" / "classifier.yaml").read_text()


def test_api_key_files_are_not_copied_into_the_build_context(tmp_path: Path) -> None:
    iris = example("iris-onnx")
    project = make_project(
        tmp_path / "project",
        "- kind: deployment\n  name: d\n- kind: api\n  name: guarded\n  onnx:\n    model: m.onnx\n"
        "  auth:\n    keys_file: secrets/keys.txt\n",
        {"secrets/keys.txt": "top-secret\n"},
        {"m.onnx": iris / "models" / "iris.onnx"},
    )
    out = tmp_path / "out"
    assert export(project, out).exit_code == 0, ""
    assert not (out / "project" / "secrets" / "keys.txt").exists()
    assert not any(b"top-secret" in content for content in tree(out).values())


TWO_APIS = """- kind: deployment
  name: shop
- kind: api
  name: champion
  onnx:
    model: models/iris.onnx
{extra}- kind: api
  name: challenger
  onnx:
    model: models/iris.onnx
"""
SPLITTER = """- kind: traffic_splitter
  name: ab
  apis:
  - {name: champion, weight: 80}
  - {name: challenger, weight: 20}
"""


@pytest.mark.parametrize(
    ("config", "flags", "says"),
    [
        (TWO_APIS.format(extra="") + SPLITTER, [], "traffic_splitter 'ab': each API is exported as its own"),
        (TWO_APIS.format(extra="") + SPLITTER, ["--ray"], "traffic_splitter 'ab': splitters are routed by"),
        (TWO_APIS.format(extra="  shadow: {api: challenger, percent: 100}\n"), [], "api 'champion': shadow:"),
        (
            TWO_APIS.format(extra="  shadow: {api: challenger, percent: 10}\n"),
            ["--ray"],
            "api 'champion': shadow:",
        ),
        (TWO_APIS.format(extra="  payload_log: {sample: 0.5}\n"), ["--ray"], "api 'champion': payload_log:"),
        (
            TWO_APIS.format(extra="  auth:\n    keys_from_env: [SHOP_KEY]\n"),
            ["--ray"],
            "api 'champion': auth:",
        ),
    ],
)
def test_what_the_export_would_drop_is_refused_and_nothing_is_written(
    tmp_path: Path, config: str, flags: list[str], says: str
) -> None:
    project = make_project(
        tmp_path / "p", config, {}, {"models/iris.onnx": example("iris-onnx") / "models" / "iris.onnx"}
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", str(project), "--kubernetes", str(out), *flags])
    assert result.exit_code != 0
    assert result.output.count("\n") == 1 and says in result.output
    assert not out.exists()


def test_payload_logs_are_kept_in_the_kubernetes_export(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p",
        TWO_APIS.format(extra="  payload_log: {sample: 0.5}\n"),
        {},
        {"models/iris.onnx": example("iris-onnx") / "models" / "iris.onnx"},
    )
    assert export(project, tmp_path / "out").exit_code == 0
    assert "payload_log" in (tmp_path / "out" / "project" / "inferd-champion.yaml").read_text()


def test_what_a_ray_cluster_serves_without_is_a_warning_of_the_ray_export(tmp_path: Path) -> None:
    extra = "  batching: {max_batch_size: 8, batch_interval: 0.01}\n  timeout: 5\n"
    project = make_project(
        tmp_path / "p",
        TWO_APIS.format(extra=extra),
        {},
        {"models/iris.onnx": example("iris-onnx") / "models" / "iris.onnx"},
    )
    ray = CliRunner().invoke(cli, ["export", str(project), "--kubernetes", str(tmp_path / "ray"), "--ray"])
    assert ray.exit_code == 0, ray.output
    warnings = [line for line in ray.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert "api 'champion': batching:" in warnings[0] and "api 'champion': timeout:" in warnings[1]
    kubernetes = CliRunner().invoke(cli, ["export", str(project), "--kubernetes", str(tmp_path / "k8s")])
    assert kubernetes.exit_code == 0 and "warning" not in kubernetes.stderr  # each pod runs a gateway


SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # DNS-1035 label, as the API server checks


@pytest.mark.parametrize(
    ("deployment", "apis"),
    [
        ("1iris", ["classifier"]),  # a Cortex deployment name may start with a digit
        ("d" * 50, ["classifier-aaaa1", "classifier-aaaa2"]),  # alike once cut to 63 characters
        ("e" * 63, ["a" * 63]),
    ],
)
def test_every_name_cortex_allows_gives_valid_distinct_kubernetes_names(
    tmp_path: Path, deployment: str, apis: list[str]
) -> None:
    # Was: the Service '1iris-classifier' (not a DNS-1035 label: the API server refuses it), and
    # two APIs whose '<deployment>-<api>' agree in 63 characters wrote the same objects, the
    # second replacing the first on `kubectl apply`.
    config = f"- kind: deployment\n  name: {deployment}\n" + "".join(
        f"- kind: api\n  name: {api}\n  onnx:\n    model: models/iris.onnx\n" for api in apis
    )
    project = make_project(
        tmp_path / "p", config, {}, {"models/iris.onnx": example("iris-onnx") / "models" / "iris.onnx"}
    )
    assert export(project, tmp_path / "out").exit_code == 0
    names: set[tuple[str, str]] = set()
    for api in apis:
        for document in yaml.safe_load_all((tmp_path / "out" / "kubernetes" / f"{api}.yaml").read_text()):
            kubernetes_validate.validate(document, "1.30.0", strict=True)
            name = document["metadata"]["name"]
            assert SERVICE_NAME.match(name) and len(name) <= 63, name  # valid for every kind
            assert (document["kind"], name) not in names
            names.add((document["kind"], name))
            if document["kind"] == "Deployment":
                readme = (tmp_path / "out" / "README.md").read_text()
                assert f"kubectl rollout status deployment/{name}\n" in readme
    ray = CliRunner().invoke(cli, ["export", str(project), "--kubernetes", str(tmp_path / "ray"), "--ray"])
    assert ray.exit_code == 0, ray.output
    (service,) = yaml.safe_load_all((tmp_path / "ray" / "kubernetes" / "rayservice.yaml").read_text())
    # KubeRay names the Services it makes after the RayService, '<name>-serve-svc' as long as
    # that fits in 50 characters (else it cuts the front off) and starts with a letter
    assert SERVICE_NAME.match(service["metadata"]["name"])
    assert len(f"{service['metadata']['name']}-serve-svc") <= 50
    assert f"svc/{service['metadata']['name']}-serve-svc" in (tmp_path / "ray" / "README.md").read_text()


def test_the_readme_commands_run_from_the_export_folder(tmp_path: Path) -> None:
    # Was: `curl ... -d @sample.json` beside `docker build -t ... .`: run where the README is,
    # curl found no sample.json (the project's is in project/).
    project = user_project(tmp_path / "project")
    (project / "sample.json").write_text((example("iris-onnx") / "sample.json").read_text())
    out = tmp_path / "out"
    assert export(project, out).exit_code == 0
    readme = (out / "README.md").read_text()
    assert "docker build -t inferd-iris:latest .\n" in readme and (out / "Dockerfile").is_file()
    assert "kubectl apply -f kubernetes/\n" in readme and (out / "kubernetes").is_dir()
    (sample,) = re.findall(r"-d @(\S+)", readme)
    assert json.loads((out / sample).read_text()) == json.loads((project / "sample.json").read_text())
    for line in (out / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            assert (out / line.split()[1]).is_dir(), line


# Kubernetes' own grammar of a quantity (apimachinery's resource.Quantity)
KUBERNETES_QUANTITY = re.compile(
    r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(\d+(\.\d*)?|\.\d+)))?$"
)


@pytest.mark.parametrize(
    ("compute", "written"),
    [
        # Was: mem: 1073741824 became '1.07374e+09' (six digits: 1,073,740,000 bytes), so a
        # pod's memory limit was under the mem_limit its config set.
        (
            "    cpu: 2\n    mem: 1073741824\n    mem_limit: 2147483648\n",
            {"requests": {"cpu": "2", "memory": "1073741824"}, "limits": {"memory": "2147483648"}},
        ),
        # Was: `mem: 512K` (Cortex's and inferd's spelling of 512,000) and blanks around a value
        # were written as they came, and the API server refuses both.
        (
            "    cpu: ' 500m '\n    mem: 512K\n    mem_limit: ' 1Gi'\n",
            {"requests": {"cpu": "500m", "memory": "512k"}, "limits": {"memory": "1Gi"}},
        ),
    ],
)
def test_compute_is_written_as_kubernetes_reads_it(
    tmp_path: Path, compute: str, written: dict[str, Any]
) -> None:
    project = one_onnx_api(tmp_path / "p", compute)
    assert export(project, tmp_path / "out").exit_code == 0
    deployment = next(yaml.safe_load_all((tmp_path / "out" / "kubernetes" / "a.yaml").read_text()))
    kubernetes_validate.validate(deployment, "1.30.0", strict=True)
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == written
    assert all(KUBERNETES_QUANTITY.match(value) for kind in resources.values() for value in kind.values())


def test_pods_can_be_given_aws_credentials_for_an_s3_model(tmp_path: Path) -> None:
    # Was: an s3:// model's pods had no way to get credentials, and the export did not say so.
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: shop\n- kind: api\n  name: ranker\n"
        "  onnx:\n    model: s3://models-bucket/ranker.onnx\n",
        {},
    )
    assert export(project, tmp_path / "out").exit_code == 0, export(project, tmp_path / "out").output
    deployment = next(yaml.safe_load_all((tmp_path / "out" / "kubernetes" / "ranker.yaml").read_text()))
    kubernetes_validate.validate(deployment, "1.30.0", strict=True)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    # optional: pods start without it (IAM roles for service accounts give credentials too)
    assert container["envFrom"] == [{"secretRef": {"name": "shop-aws", "optional": True}}]
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "the models of ranker are read from S3" in readme
    assert "kubectl create secret generic shop-aws \\\n  --from-literal=AWS_ACCESS_KEY_ID=..." in readme
    # Was: the KubeRay export's head and worker pods, where the replicas read the model, had no
    # way to get the credentials the Deployments get.
    ray = tmp_path / "ray"
    assert CliRunner().invoke(cli, ["export", str(project), "--kubernetes", str(ray), "--ray"]).exit_code == 0
    (service,) = yaml.safe_load_all((ray / "kubernetes" / "rayservice.yaml").read_text())
    cluster = service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for pod in pods:
        (container,) = pod["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"secretRef": {"name": "shop-aws", "optional": True}}]
    assert "kubectl create secret generic shop-aws" in (ray / "README.md").read_text()


def test_requirements_are_installed_as_inferd_deploy_installs_them(tmp_path: Path) -> None:
    # Was: the Dockerfile ran `pip install -r requirements.txt`, so a Cortex pin replaced
    # inferd's own package in the image (requests==2.21.0 under inferd's requests>=2.31) or
    # failed the build (scikit-learn==0.21.*), where `inferd deploy` keeps inferd's version
    # with a warning, or relaxes the pin with relax_pins; and each pod's `inferd serve` ran pip
    # again at its start.
    project = user_project(tmp_path / "project")
    (project / "requirements.txt").write_text("numpy\n")
    out = tmp_path / "out"
    assert export(project, out).exit_code == 0
    dockerfile = (out / "Dockerfile").read_text()
    assert "pip install -r" not in dockerfile
    (run,) = [line for line in dockerfile.splitlines() if line.startswith("RUN") and "requirements" in line]
    home = tmp_path / "home"
    # the image's folders as paths relative to the project's, which hold no space (a TMPDIR's
    # would split the shell's words, and quoting it would end the Python string they are in)
    command = (
        run.removeprefix("RUN ")
        .replace("/tmp/inferd", os.path.relpath(home, out / "project"))
        .replace("/app/project", ".")
    )
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    subprocess.run(["sh", "-c", command], check=True, cwd=out / "project", env=dict(os.environ, PATH=path))
    # what the pods' `inferd serve` finds installed, under the INFERD_HOME their Deployment sets
    pod = next(yaml.safe_load_all((out / "kubernetes" / "classifier.yaml").read_text()))["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert {"name": "INFERD_HOME", "value": "/tmp/inferd"} in container["env"]
    assert (packages_dir(home, out / "project" / "requirements.txt") / ".complete").is_file()

    assert "relax=False" in dockerfile
    # relaxed as `inferd deploy --relax-pins` does: by the option (it had none) or the config
    assert export(project, out, "--relax-pins").exit_code == 0
    assert "relax=True" in (out / "Dockerfile").read_text()
    config = project / "cortex.yaml"
    config.write_text(config.read_text().replace("name: iris\n", "name: iris\n  relax_pins: true\n", 1))
    assert export(project, out).exit_code == 0
    assert "relax=True" in (out / "Dockerfile").read_text()


def test_requirements_are_left_out_of_the_image_when_no_api_runs_python(tmp_path: Path) -> None:
    # README: a TensorFlow or ONNX API without a handler ignores requirements.txt, so a notebook's
    # 2019 pins beside it do not stop it. Was: the image installed it all the same, and its build
    # failed on such a pin (no wheel for this Python), as `inferd deploy` did not.
    project = one_onnx_api(tmp_path / "project", "    cpu: 1\n")
    (project / "requirements.txt").write_text("scikit-learn==0.21.3\n")
    for options in ((), ("--ray",)):
        out = tmp_path / f"out{len(options)}"
        assert export(project, out, *options).exit_code == 0
        assert "requirements" not in (out / "Dockerfile").read_text()


@pytest.mark.parametrize(("gpu", "runtimes"), [(0, "all"), (1, "gpu")])
def test_the_image_has_the_runtimes_and_packages_its_apis_need(
    tmp_path: Path, gpu: int, runtimes: str
) -> None:
    # Was: always inferd[all] (CPU builds of onnxruntime and TensorFlow), so a pod of an API with
    # compute.gpu got a GPU it could not use and its replica refused to load; and never
    # inferd[cortex], so a handler importing what Cortex pre-installed (pandas, scikit-learn),
    # which ran here, failed to import in the pod.
    project = one_onnx_api(tmp_path / "p", f"    gpu: {gpu}\n")
    out = tmp_path / "out"
    assert export(project, out).exit_code == 0
    (extras,) = re.findall(r'RUN pip install "/app/inferd\[([\w,-]+)\]"', (out / "Dockerfile").read_text())
    assert extras.split(",") == [runtimes, "cortex"]  # `make test` installs inferd[cortex]
    defined = tomllib.loads((out / "inferd" / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(extras.split(",")) <= set(defined)
    assert any(requirement.startswith("onnxruntime-gpu") for requirement in defined["gpu"])


def test_a_sparse_file_stays_sparse_in_the_build_context(tmp_path: Path) -> None:
    # was: a 2 GiB sparse file of the project was written in full into the export
    project = user_project(tmp_path / "project")
    size = 256 << 20
    with (project / "data.bin").open("wb") as out:
        out.write(b"head")
        out.truncate(size)
    if (project / "data.bin").stat().st_blocks * 512 >= size:
        pytest.skip("this file system keeps no sparse files")
    assert export(project, tmp_path / "out").exit_code == 0
    copy = tmp_path / "out" / "project" / "data.bin"
    assert copy.stat().st_size == size and copy.stat().st_blocks * 512 < 1 << 20
    with copy.open("rb") as read:
        assert read.read(4) == b"head"


def test_the_image_installs_the_same_files_and_commands_as_pip_install_inferd(tmp_path: Path) -> None:
    # Was: the build context held inferd's modules alone, so the image's inferd had no `cortex`
    # package (a Cortex handler's `from cortex.lib.log import get_logger` failed to import in the
    # pods, as `from cortex import Client` did), no `cortex` command and no dashboard page.
    project = user_project(tmp_path / "project")
    out = tmp_path / "out"
    assert export(project, out).exit_code == 0
    (tmp_path / "dist").mkdir()
    files, commands = wheel_contents(built_wheel(out / "inferd", tmp_path / "dist"))
    assert files == package_sources()
    assert {"cortex/lib/log.py", "inferd/operator/static/index.html"} <= files
    assert commands == {"inferd": "inferd.cli.main:main", "cortex": "inferd.cli.main:main"}


def test_scale_to_zero_that_an_hpa_cannot_do_is_a_warning_of_the_export(tmp_path: Path) -> None:
    # `min_replicas: 0` was written as an HPA of minReplicas 1, in silence: one pod ran for good
    # where the user asked for none while idle (an HPA scales to zero only behind Kubernetes'
    # HPAScaleToZero feature gate, and then on other metrics than CPU).
    project = one_onnx_api(tmp_path / "p", "    min_replicas: 0\n    max_replicas: 4\n")
    result = export(project, tmp_path / "out")
    assert result.exit_code == 0, result.output
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warning.startswith("warning: api 'a': min_replicas: 0: ") and "at least 1 pod" in warning
    manifests = list(yaml.safe_load_all((tmp_path / "out" / "kubernetes" / "a.yaml").read_text()))
    (hpa,) = [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    ray = export(project, tmp_path / "ray", "--ray")  # Serve scales a deployment to zero itself
    assert ray.exit_code == 0 and "min_replicas" not in ray.stderr
