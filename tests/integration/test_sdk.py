"""``from inferd import Client``: Cortex's Python client deploys a model with handler functions."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from inferd import Client
from inferd.client import Client as OperatorClient
from inferd.errors import DeployFailedError, UsageError
from tests.conftest import example, save_two_signatures
from tests.integration.conftest import HangingOrigin, Inferd

SAMPLES = [
    {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3},
    {"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.4, "petal_width": 2.1},
]
SETOSA = [5.2, 3.6, 1.4, 0.3]
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


@pytest.fixture
def client(inferd: Inferd, monkeypatch: pytest.MonkeyPatch) -> Client:
    """A client of the test's private operator (which it starts itself)."""
    monkeypatch.setenv("INFERD_HOME", str(inferd.home))
    monkeypatch.setenv("INFERD_PORT", str(inferd.port))
    return Client()


def test_deploy_an_onnx_model_with_two_lambdas(inferd: Inferd, client: Client, tmp_path: Path) -> None:
    labels = ["iris-setosa", "iris-versicolor", "iris-virginica"]  # a closure's free variable
    url = client.deploy(
        "lambdas",
        "classifier",
        example("iris-onnx") / "models" / "iris.onnx",
        pre_inference=lambda sample, signature, metadata: {
            signature[0].name: [sample[feature] for feature in FEATURES]
        },
        post_inference=lambda prediction, signature, metadata: labels[prediction[0][0]],
        model_format="onnx",
    )
    assert url == f"{inferd.url}/lambdas/classifier"
    assert [requests.post(url, json=sample, timeout=30).json() for sample in SAMPLES] == [
        "iris-setosa",
        "iris-virginica",
    ]

    # It answers like the same model and handler deployed from a folder (here next to it, as
    # another deployment's "classifier").
    inferd.run("deploy", str(example("iris-onnx")))
    folder = inferd.wait_status("iris/classifier", "live")["url"]
    for sample in SAMPLES:
        assert (
            requests.post(url, json=sample, timeout=30).json()
            == requests.post(folder, json=sample, timeout=30).json()
        )
    sample_file = tmp_path / "sample.json"
    sample_file.write_text(json.dumps(SAMPLES[1]))
    assert (
        json.loads(inferd.run("predict", "lambdas/classifier", str(sample_file)).stdout) == "iris-virginica"
    )

    # Another API of the same deployment is added; the first one stays.
    raw = client.deploy("lambdas", "raw", example("iris-onnx") / "models" / "iris.onnx")
    assert requests.post(raw, json=[[6.9, 3.1, 5.4, 2.1]], timeout=30).json()[0] == [2]
    assert requests.post(url, json=SAMPLES[0], timeout=30).json() == "iris-setosa"

    # inferd's own client (the CLI's), shared by threads: each keeps a connection of its own
    shared = OperatorClient(inferd.home)
    try:
        with ThreadPoolExecutor(8) as pool:
            listed = list(pool.map(lambda _: len(shared.apis()), range(64)))
    finally:
        shared.close()
    assert listed == [3] * 64


def test_a_failing_handler_and_bad_arguments(inferd: Inferd, client: Client) -> None:
    model = example("iris-onnx") / "models" / "iris.onnx"
    with pytest.raises(UsageError, match="model_format must be 'onnx' or 'tensorflow', not 'pytorch'"):
        client.deploy("bad", "classifier", model, model_format="pytorch")
    with pytest.raises(UsageError, match="pre_inference must be a function, not str"):
        client.deploy("bad", "classifier", model, pre_inference="not a function")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"does-not-exist\.onnx does not exist"):
        client.deploy("bad", "classifier", "does-not-exist.onnx")
    with pytest.raises(DeployFailedError, match=r"api 'classifier' failed \(error\): .*post_inference"):
        client.deploy("bad", "classifier", model, post_inference=lambda only_one: None, timeout=120)
    assert inferd.api("bad/classifier")["status"] == "error"  # deployed, as `inferd deploy` leaves it

    # A refused deploy leaves the deployment as it was. Was: the refused API stayed in the
    # workspace's project, so every later deploy to "bad" was refused for it (a ConfigError
    # naming a cortex.yaml line the user never wrote), and a refused update lost the old files.
    url = client.deploy("bad", "raw", model)
    for api in ("saved", "raw"):
        with pytest.raises(
            DeployFailedError, match=rf"api 'bad/{api}' was not deployed: .*SavedModel folder"
        ):
            client.deploy("bad", api, model, model_format="tensorflow")
    assert requests.post(url, json=[SETOSA], timeout=30).json()[0] == [0]
    # An API removed with `inferd delete` stays removed when another one is deployed beside it
    # (was: the client's project still held it, and it came back).
    inferd.run("delete", "bad/classifier")
    client.deploy("bad", "again", model)
    assert sorted(api["name"] for api in inferd.json("get", "-a") if api["deployment"] == "bad") == [
        "again",
        "raw",
    ]

    # Deploys beside each other at once (a script's threads) all go live. Was: one was refused
    # ("deployment 'bad' is currently updating"), or lost the folder another one was writing.
    with ThreadPoolExecutor(2) as pool:
        urls = list(pool.map(lambda name: client.deploy("bad", name, model), ["left", "right"]))
    assert [requests.post(url, json=[SETOSA], timeout=30).status_code for url in urls] == [200, 200]
    assert sorted(api["name"] for api in inferd.json("get", "-a") if api["deployment"] == "bad") == [
        "again",
        "left",
        "raw",
        "right",
    ]

    # A deployment made from a folder is not the client's to replace; the refusal told a Python
    # caller to "use --force", which the client does not have.
    inferd.run("deploy", str(example("iris-onnx")))
    with pytest.raises(DeployFailedError, match="deploy under another deployment name") as refused:
        client.deploy("iris", "extra", model)
    assert "--force" not in str(refused.value)
    assert [api["name"] for api in inferd.json("get", "-a") if api["deployment"] == "iris"] == ["classifier"]

    # `inferd prune` frees what a deleted deployment of the client's leaves: its project (the
    # model copies) and its APIs' last replays. Was: workspace/bad/ stayed for good. A project
    # not marked as this operator's (one deployed to a Ray cluster, which this home's state does
    # not record) stays.
    workspace = inferd.home / "workspace"
    assert (workspace / "bad" / "raw" / "iris.onnx").is_file()
    (workspace / "elsewhere" / "api").mkdir(parents=True)
    replays = inferd.home / "replays" / "bad"
    replays.mkdir(parents=True)
    (replays / "raw.json").write_text("{}")  # as `inferd replay bad/raw --against ...` writes it
    inferd.run("delete", "bad")
    assert "Python client projects" in inferd.run("prune").stdout
    assert not (workspace / "bad").exists() and not replays.exists()
    assert (workspace / "elsewhere" / "api").is_dir()


@pytest.mark.tensorflow
def test_a_savedmodel_s_signature_is_asked_for_as_tf_serving_key(client: Client, tmp_path: Path) -> None:
    # was: "... set tensorflow.signature_key to one of: area, double", of a cortex.yaml the
    # client wrote, where the caller passes tf_serving_key
    save_two_signatures(tmp_path / "shapes")
    with pytest.raises(DeployFailedError) as caught:
        client.deploy("shapes", "area", tmp_path / "shapes")
    assert str(caught.value).endswith(
        "the SavedModel has several signatures and none is called 'predict' or 'serving_default'; "
        "pass tf_serving_key, one of: area, double"
    )
    with pytest.raises(DeployFailedError) as caught:
        client.deploy("shapes", "area", tmp_path / "shapes", tf_serving_key="areas")
    assert str(caught.value).endswith(
        "tf_serving_key 'areas' is not in the SavedModel (it has: area, double)"
    )
    url = client.deploy("shapes", "area", tmp_path / "shapes", tf_serving_key="area")
    assert requests.post(url, json={"sizes": [[2, 3]]}, timeout=30).json() == {"area": [6.0]}


def test_a_deploy_while_the_operator_restores_the_deployment_keeps_its_apis_not_back_yet(
    inferd: Inferd, client: Client
) -> None:
    """A notebook's first ``Client().deploy`` after a restart (the machine's, or ``inferd down``)
    starts the operator, which brings each deployment back one API at a time. It listed the
    APIs back so far, and the deploy, taking the others for deleted, removed them from the
    project: the operator dropped them for good (found in a Jupyter kernel, the deploy of a cell
    right after the restart; here the restore is held up by a model origin that does not answer)."""
    model = example("iris-onnx") / "models" / "iris.onnx"
    origin = HangingOrigin(model)
    try:
        client.deploy("mix", "alpha", model)  # a local model: back at once
        client.deploy("mix", "remote", origin.url)  # restored after alpha, held up by its origin
        origin.hang()
        inferd.run("down")
        inferd.run("up")
        with ThreadPoolExecutor(1) as pool:
            deploy = pool.submit(client.deploy, "mix", "beta", model)
            try:
                written = client.workspace / "mix" / "beta" / "api.json"
                while not written.exists() and not deploy.done():
                    time.sleep(0.05)
                assert (client.workspace / "mix" / "remote" / "api.json").is_file()
            finally:
                origin.close()  # remote comes back from the model cache
            deploy.result(timeout=240)
        listed = {info["name"] for info in OperatorClient(inferd.home).apis() if info["deployment"] == "mix"}
        assert listed == {"alpha", "remote", "beta"}
    finally:
        origin.close()
