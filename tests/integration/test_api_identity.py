"""API names are unique per deployment (as in Cortex): two deployments each with an API "classifier"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import example, wait_for
from tests.integration.conftest import Inferd

SAMPLE = json.loads((example("iris-onnx") / "sample.json").read_text())
ROW = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.2, 3.6, 1.4, 0.3]}


def _garden(tmp_path: Path) -> Path:
    """The iris example as deployment "garden", whose classifier prefixes its labels."""
    project = tmp_path / "garden"
    shutil.copytree(example("iris-onnx"), project)
    config = project / "cortex.yaml"
    config.write_text(config.read_text().replace("name: iris", "name: garden"))
    handler = project / "handlers" / "iris.py"
    handler.write_text(
        handler.read_text().replace("labels[predicted_class_id]", '"garden:" + labels[predicted_class_id]')
    )
    return project


def _requests_of(metrics: str, deployment: str, protocol: str) -> float:
    wanted = {"deployment": deployment, "api": "classifier", "protocol": protocol, "code": "200"}
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "inferd_requests_total" and sample.labels == wanted
    )


def test_two_deployments_each_with_a_classifier(inferd: Inferd, tmp_path: Path) -> None:
    iris = tmp_path / "iris"
    shutil.copytree(example("iris-onnx"), iris)
    inferd.run("deploy", str(iris))
    assert inferd.run("deploy", str(_garden(tmp_path))).stdout.strip() == "deployment started"
    inferd.wait_status("iris/classifier", "live")
    inferd.wait_status("garden/classifier", "live")

    rows = [line.split()[:3] for line in inferd.run("get").stdout.splitlines()]
    assert rows == [
        ["api", "deployment", "status"],
        ["classifier", "garden", "live"],
        ["classifier", "iris", "live"],
    ]

    sample = str(iris / "sample.json")
    assert json.loads(inferd.run("predict", "iris/classifier", sample).stdout) == "iris-setosa"
    assert json.loads(inferd.run("predict", "garden/classifier", sample).stdout) == "garden:iris-setosa"
    assert json.loads(inferd.run("predict", "garden/class", sample).stdout) == "garden:iris-setosa"
    assert inferd.post("/iris/classifier", SAMPLE).json() == "iris-setosa"
    assert inferd.post("/garden/classifier", SAMPLE).json() == "garden:iris-setosa"

    # A bare name that two deployments use is an error naming both, for every command.
    for args in (
        ("predict", "classifier", sample),
        ("get", "classifier"),
        ("logs", "classifier"),
        ("delete", "classifier"),  # refused: nothing is deleted
    ):
        ambiguous = inferd.run(*args, check=False)
        assert ambiguous.returncode == 2
        assert ambiguous.stderr.strip() == (
            "error: api 'classifier' is in several deployments (garden/classifier, iris/classifier); "
            "name one as DEPLOYMENT/API"
        )
    assert inferd.run("get", "nowhere/classifier", check=False).returncode == 1

    # Logs are kept per deployment: each API's log holds its own events only.
    iris_log = inferd.run("logs", "iris/classifier").stdout
    garden_log = inferd.run("logs", "garden/classifier").stdout
    assert "iris/classifier [inferd]" in iris_log and "garden/" not in iris_log
    assert "garden/classifier [inferd]" in garden_log and "iris/" not in garden_log

    # V2 and TF Serving: "deployment.api" always, the bare name only while it is unique.
    base = inferd.url
    assert requests.get(f"{base}/v2/models", timeout=5).json()["models"] == [
        "garden.classifier",
        "iris.classifier",
    ]
    clash = requests.get(f"{base}/v2/models/classifier/ready", timeout=5)
    assert clash.status_code == 404
    assert clash.json()["error"] == (
        "model 'classifier' is ambiguous: name one of garden.classifier, iris.classifier"
    )
    assert requests.get(f"{base}/v1/models/classifier", timeout=5).status_code == 404
    before = requests.get(f"{base}/metrics", timeout=5).text
    v2 = requests.post(f"{base}/v2/models/iris.classifier/infer", json={"inputs": [ROW]}, timeout=10)
    assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == [0]
    tf = requests.post(
        f"{base}/v1/models/garden.classifier:predict", json={"instances": [ROW["data"]]}, timeout=10
    )
    assert tf.status_code == 200 and tf.json()["predictions"][0]["output_label"] == 0
    after = requests.get(f"{base}/metrics", timeout=5).text
    # Metrics are labelled by deployment and API: each request counted once, for its own API.
    assert _requests_of(after, "iris", "v2") - _requests_of(before, "iris", "v2") == 1
    assert _requests_of(after, "garden", "v2") == _requests_of(before, "garden", "v2")
    assert _requests_of(after, "garden", "tfserving") - _requests_of(before, "garden", "tfserving") == 1
    assert _requests_of(after, "iris", "cortex") >= 1 and _requests_of(after, "garden", "cortex") >= 1

    # Once one is deleted, the bare name is unique again on the CLI and the protocols.
    assert inferd.run("delete", "garden/classifier").stdout.strip() == (
        "deleting api 'garden/classifier', the last of deployment 'garden', which goes with it"
    )
    wait_for(lambda: len(inferd.json("get")) == 1, 60, "garden/classifier to be gone")
    assert json.loads(inferd.run("predict", "classifier", sample).stdout) == "iris-setosa"
    assert requests.get(f"{base}/v2/models", timeout=5).json()["models"] == ["classifier"]
    assert requests.get(f"{base}/v2/models/classifier/ready", timeout=5).status_code == 200
    assert requests.get(f"{base}/v2/models/iris.classifier/ready", timeout=5).status_code == 200
    # The deleted API's log is still readable by its full name.
    assert "garden/classifier [inferd] deleted" in inferd.run("logs", "garden/classifier").stdout
