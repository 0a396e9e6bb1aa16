"""Every protocol with real clients against real replicas: tritonclient, plain HTTP, Prometheus."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import requests
import tritonclient.http as triton
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.conftest import V2_TYPES, Server, example, make_project, replica_pids, wait_for

IRIS_ROWS = [[5.2, 3.6, 1.4, 0.3], [6.9, 3.1, 5.4, 2.1]]
NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


@pytest.fixture(scope="module")
def scalar_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX model with a scalar output: numbers int64 [N, 3] -> total (their sum, shape []), same."""
    from onnx import TensorProto, helper, save_model

    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["numbers"], ["total"], keepdims=0),
            helper.make_node("Identity", ["numbers"], ["same"]),
        ],
        "scalar",
        [helper.make_tensor_value_info("numbers", TensorProto.INT64, ["batch", 3])],
        [
            helper.make_tensor_value_info("total", TensorProto.INT64, []),
            helper.make_tensor_value_info("same", TensorProto.INT64, ["batch", 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("models") / "scalar.onnx"
    save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def any_shape_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX Identity whose float input and output declare no shape (any rank, any dims)."""
    from onnx import TensorProto, helper, save_model

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "any",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("models") / "any.onnx"
    save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    iris_onnx_model: Path,
    all_types_model: Path,
    regression_model: Path,
    scalar_model: Path,
    any_shape_model: Path,
) -> Iterator[Server]:
    root = make_project(
        tmp_path_factory.mktemp("protocols") / "project",
        "- kind: deployment\n  name: proto\n"
        "- kind: api\n  name: iris\n  onnx:\n    model: iris.onnx\n"
        "- kind: api\n  name: types\n  onnx:\n    model: all.onnx\n"
        "- kind: api\n  name: linear\n  onnx:\n    model: linear.onnx\n"
        "  tracker:\n    model_type: regression\n"
        "- kind: api\n  name: scalar\n  onnx:\n    model: scalar.onnx\n"
        "- kind: api\n  name: shapeless\n  onnx:\n    model: any.onnx\n"
        "- kind: api\n  name: labels\n  onnx:\n    model: iris.onnx\n    request_handler: h.py\n"
        "  tracker:\n    model_type: classification\n"
        "- kind: api\n  name: broken\n  onnx:\n    model: iris.onnx\n    request_handler: bad.py\n",
        {
            "h.py": (example("iris-onnx") / "handlers" / "iris.py").read_text(),
            "bad.py": "raise ImportError('this handler cannot load')\n",
        },
        {
            "iris.onnx": iris_onnx_model,
            "all.onnx": all_types_model,
            "linear.onnx": regression_model,
            "scalar.onnx": scalar_model,
            "any.onnx": any_shape_model,
        },
    )
    running = Server(root, tmp_path_factory.mktemp("logs") / "serve.log", "--access-log")
    wait_for(
        lambda: (
            requests.get(f"{running.url}/v2/models/types/ready", timeout=5).status_code == 200
            and requests.get(f"{running.url}/v2/models/iris/ready", timeout=5).status_code == 200
            and requests.get(f"{running.url}/v2/models/linear/ready", timeout=5).status_code == 200
            and requests.get(f"{running.url}/v2/models/scalar/ready", timeout=5).status_code == 200
            and requests.get(f"{running.url}/v2/models/shapeless/ready", timeout=5).status_code == 200
            and requests.get(f"{running.url}/v2/models/labels/ready", timeout=5).status_code == 200
            # and the broken API has failed (not still loading, when its requests would wait)
            and requests.get(f"{running.url}/proto/broken", timeout=5).json()["status"] == "error"
        ),
        180,
    )
    yield running
    running.stop()


@pytest.fixture
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield connection
    connection.close()


def test_tritonclient_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert not client.is_server_ready()  # the broken API has no ready replica
    assert client.is_model_ready("iris")
    assert not client.is_model_ready("broken")
    server_meta = client.get_server_metadata()
    assert {"binary_tensor_data", "model_configuration"} <= set(server_meta["extensions"])
    meta = client.get_model_metadata("iris")
    assert meta["platform"] == "onnx_onnxv1"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"][0] == {"name": "output_label", "datatype": "INT64", "shape": [-1]}
    assert client.get_model_metadata("iris", model_version="1")["versions"] == ["1"]


def test_tritonclient_reads_the_model_repository_index(
    client: triton.InferenceServerClient, server: Server
) -> None:
    # Triton's POST /v2/repository/index (get_model_repository_index) was a 404
    index = client.get_model_repository_index()
    states = {entry["name"]: (entry["version"], entry["state"]) for entry in index}
    assert states["iris"] == ("1", "READY") and states["broken"] == ("1", "UNAVAILABLE")
    assert set(states) == set(requests.get(f"{server.url}/v2/models", timeout=5).json()["models"])
    ready = requests.post(f"{server.url}/v2/repository/index", json={"ready": True}, timeout=5).json()
    assert "iris" in {entry["name"] for entry in ready} and "broken" not in {entry["name"] for entry in ready}


def test_tritonclient_model_config_matches_the_metadata(client: triton.InferenceServerClient) -> None:
    # Triton's config route, which tritonclient (and perf_analyzer) read before inferring
    config = client.get_model_config("iris")
    assert config["name"] == "iris" and config["platform"] == "onnx_onnxv1"
    assert config["backend"] == "onnxruntime" and config["max_batch_size"] == 0  # dims include the batch
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [-1, 4]}]
    assert config["output"][0] == {"name": "output_label", "data_type": "TYPE_INT64", "dims": [-1]}
    types = {tensor["name"]: tensor["data_type"] for tensor in client.get_model_config("types", "1")["input"]}
    assert types["in_bytes"] == "TYPE_STRING" and types["in_fp16"] == "TYPE_FP16"
    assert types["in_bool"] == "TYPE_BOOL" and types["in_uint64"] == "TYPE_UINT64"
    scalar = client.get_model_config("scalar")["output"]
    assert scalar[0] == {"name": "total", "data_type": "TYPE_INT64", "dims": []}
    for model, version, status in (("nope", "", 404), ("iris", "2", 404), ("broken", "", 503)):
        with pytest.raises(InferenceServerException) as raised:
            client.get_model_config(model, version)
        assert raised.value.status() == str(status), raised.value.message()


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infer_binary_and_json(client: triton.InferenceServerClient, binary: bool) -> None:
    tensor = triton.InferInput("input", [2, 4], "FP32")
    tensor.set_data_from_numpy(np.array(IRIS_ROWS, dtype=np.float32), binary_data=binary)
    wanted = [triton.InferRequestedOutput("output_label", binary_data=binary)]
    result = client.infer("iris", [tensor], outputs=wanted, request_id="req-7")
    assert result.as_numpy("output_label").tolist() == [0, 2]
    assert result.get_response()["id"] == "req-7"
    assert result.as_numpy("output_probability") is None  # not asked for
    everything = client.infer("iris", [tensor])  # no outputs: all of them, binary (tritonclient's default)
    assert everything.as_numpy("output_label").tolist() == [0, 2]
    rows = [json.loads(row) for row in everything.as_numpy("output_probability").tolist()]
    assert rows[1]["2"] > 0.5


@pytest.mark.parametrize("binary", [True, False])
def test_every_datatype_round_trips(client: triton.InferenceServerClient, binary: bool) -> None:
    inputs, outputs, sent = [], [], {}
    for datatype in V2_TYPES:
        if datatype == "BYTES":
            value = np.array([[b"hello", b"w\xc3\xb6rld"], [b"", b"x"]], dtype=np.object_)
        elif datatype == "BOOL":
            value = np.array([[True, False], [False, True]])
        else:
            value = np.arange(4).reshape(2, 2).astype(NUMPY[datatype]) + 1
        tensor = triton.InferInput(f"in_{datatype.lower()}", [2, 2], datatype)
        tensor.set_data_from_numpy(value, binary_data=binary)
        inputs.append(tensor)
        outputs.append(triton.InferRequestedOutput(f"out_{datatype.lower()}", binary_data=binary))
        sent[datatype] = value
    result = client.infer("types", inputs, outputs=outputs)
    for datatype, value in sent.items():
        back = result.as_numpy(f"out_{datatype.lower()}")
        assert back.shape == (2, 2), datatype
        if datatype == "BYTES":
            assert [bytes(v) if not isinstance(v, str) else v.encode() for v in back.ravel()] == list(
                value.ravel()
            )
        else:
            assert back.dtype == value.dtype, datatype
            assert back.tolist() == value.tolist(), datatype


def test_v2_errors(client: triton.InferenceServerClient, server: Server) -> None:
    with pytest.raises(InferenceServerException, match="model 'nope' is not found"):
        client.get_model_metadata("nope")
    wrong_type = triton.InferInput("input", [1, 4], "FP64")
    wrong_type.set_data_from_numpy(np.ones((1, 4)), binary_data=True)
    with pytest.raises(InferenceServerException, match="datatype FP64 does not match the model's FP32"):
        client.infer("iris", [wrong_type])
    wrong_shape = triton.InferInput("input", [1, 3], "FP32")
    wrong_shape.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException, match=r"shape \[1, 3\] does not fit the model's \[-1, 4\]"):
        client.infer("iris", [wrong_shape])
    cases = [
        ("/v2/models/nope/infer", {"inputs": []}, None, 404),
        ("/v2/models/iris/versions/7/infer", {"inputs": []}, None, 404),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]},
            None,
            400,
        ),
        (
            "/v2/models/iris/infer",
            {
                "inputs": [
                    {"name": "input", "shape": [100000, 100000, 100000], "datatype": "FP32", "data": []}
                ]
            },
            None,
            400,
        ),
        (
            "/v2/models/iris/infer",
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, 4],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": 16},
                    }
                ]
            },
            60,
            400,
        ),
        ("/v2/models/iris/infer", {"inputs": []}, None, 400),
        ("/v2/models/broken/infer", {"inputs": []}, None, 503),
    ]
    for path, document, header_length, status in cases:
        body = json.dumps(document).encode()
        headers = {}
        if header_length is not None:  # the header length lies: it says more than was sent
            headers["Inference-Header-Content-Length"] = str(len(body) + header_length)
        response = requests.post(server.url + path, data=body, headers=headers, timeout=10)
        assert response.status_code == status, (path, response.text)
        assert "error" in response.json()
    lying = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 8}}
            ]
        }
    ).encode()
    response = requests.post(
        server.url + "/v2/models/iris/infer",
        data=lying + b"\0" * 8,
        headers={"Inference-Header-Content-Length": str(len(lying))},
        timeout=10,
    )
    assert response.status_code == 400
    assert "binary_data_size is 8 bytes, but shape [1, 4] of FP32 needs 16" in response.json()["error"]
    # the protocol's id is a string (echoed as given): a number is refused, not echoed as one
    numbered = {
        "id": 7,
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
    }
    response = requests.post(server.url + "/v2/models/iris/infer", json=numbered, timeout=10)
    assert response.status_code == 400 and "'id' must be a string" in response.json()["error"]
    assert requests.get(server.url + "/v2/models/broken/ready", timeout=5).status_code == 503
    assert requests.get(server.url + "/v2/health/ready", timeout=5).status_code == 503
    assert requests.get(server.url + "/v2/models", timeout=5).json()["models"] == [
        "broken",
        "iris",
        "labels",
        "linear",
        "scalar",
        "shapeless",
        "types",
    ]


def test_tensorflow_serving_predict_rows_and_columns(server: Server) -> None:
    url = server.url + "/v1/models/iris"
    status = requests.get(url, timeout=5).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE" and status["ready"] is True
    rows = requests.post(url + ":predict", json={"instances": IRIS_ROWS}, timeout=10).json()
    assert [row["output_label"] for row in rows["predictions"]] == [0, 2]
    named = requests.post(
        url + ":predict", json={"instances": [{"input": row} for row in IRIS_ROWS]}, timeout=10
    )
    assert [row["output_label"] for row in named.json()["predictions"]] == [0, 2]
    columns = requests.post(url + ":predict", json={"inputs": {"input": IRIS_ROWS}}, timeout=10).json()
    assert columns["outputs"]["output_label"] == [0, 2]
    assert requests.post(url + ":predict", json={"inputs": IRIS_ROWS}, timeout=10).json()["outputs"][
        "output_label"
    ] == [0, 2]
    versioned = requests.post(url + "/versions/1:predict", json={"instances": IRIS_ROWS}, timeout=10)
    assert versioned.status_code == 200


def test_a_scalar_output_is_a_value_in_columns_and_v2_and_a_clear_400_in_rows(
    server: Server, client: triton.InferenceServerClient, scalar_model: Path
) -> None:
    numbers = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    expected_total, _ = ort.InferenceSession(str(scalar_model)).run(None, {"numbers": numbers})
    url = server.url + "/v1/models/scalar:predict"
    columns = requests.post(url, json={"inputs": numbers.tolist()}, timeout=10)
    assert columns.status_code == 200, columns.text
    assert columns.json()["outputs"] == {"total": int(expected_total), "same": numbers.tolist()}
    # TF Serving's rows need every output to have the batch dimension: a scalar has none
    rows = requests.post(url, json={"instances": numbers.tolist()}, timeout=10)
    assert rows.status_code == 400, rows.text
    assert "output 'total'" in rows.json()["error"] and "'inputs'" in rows.json()["error"]
    tensor = triton.InferInput("numbers", [2, 3], "INT64")
    tensor.set_data_from_numpy(numbers, binary_data=True)
    result = client.infer("scalar", [tensor])
    assert result.as_numpy("total").shape == ()
    assert result.as_numpy("total").tolist() == int(expected_total)


def test_tensorflow_serving_on_a_savedmodel_answers_as_tensorflow_does(
    serve: Callable[..., Server],
) -> None:
    import tensorflow as tf

    project = example("iris-tensorflow")
    server = serve(project)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows = [dict(zip(names, row, strict=True)) for row in IRIS_ROWS]
    loaded = tf.saved_model.load(str(next((project / "models" / "iris").iterdir())))
    direct = loaded.signatures["predict"](**{n: tf.constant([r[n] for r in rows], tf.float32) for n in names})
    url = server.url + "/v1/models/tensorflow"
    predictions = requests.post(url + ":predict", json={"instances": rows}, timeout=10).json()["predictions"]
    assert [p["class_ids"] for p in predictions] == direct["class_ids"].numpy().tolist()
    got = np.array([p["probabilities"] for p in predictions])
    assert np.allclose(got, direct["probabilities"].numpy(), atol=1e-6)
    columns = {n: [r[n] for r in rows] for n in names}
    body = {"signature_name": "serving_default", "inputs": columns}
    outputs = requests.post(url + ":predict", json=body, timeout=10).json()["outputs"]
    assert outputs["classes"] == [[c.decode() for c in row] for row in direct["classes"].numpy().tolist()]
    # TensorFlow's InvalidArgumentError (inputs of different batch sizes) is TF Serving's 400, and
    # on every route the same sentence (the Cortex route's was a 500, as a model's own failure)
    columns["sepal_width"] = columns["sepal_width"][:1]
    n = len(rows)
    said = f"the model cannot run on these inputs ('petal_length' [{n}], 'petal_width' [{n}], "
    said += f"'sepal_length' [{n}], 'sepal_width' [1]): its stack node says: Shapes of all inputs must match"
    answer = requests.post(url + ":predict", json={"inputs": columns}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"].startswith(said), answer.text
    tensors = [{"name": n, "shape": [len(v)], "datatype": "FP32", "data": v} for n, v in columns.items()]
    answer = requests.post(server.url + "/v2/models/tensorflow/infer", json={"inputs": tensors}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"].startswith(said), answer.text
    answer = server.post("/iris-tf/tensorflow", columns)
    assert answer.status_code == 400 and answer.json()["error"].startswith(said), answer.text


def test_tensorflow_serving_answers_nan_and_infinity_as_it_takes_them(server: Server) -> None:
    # TF Serving writes non-finite floats as NaN / Infinity / -Infinity (non-RFC JSON that Python's
    # json reads back); null would lose which one it was
    columns: dict[str, object] = {f"in_{t.lower()}": [[1, 0]] for t in V2_TYPES if t != "BYTES"}
    columns["in_bytes"] = [["a", "b"]]
    columns["in_fp32"] = [[float("nan"), float("inf")]]
    columns["in_fp64"] = [[float("-inf"), 2.5]]
    url = server.url + "/v1/models/types:predict"
    outputs = requests.post(url, data=json.dumps({"inputs": columns}), timeout=10).json()["outputs"]
    assert np.isnan(outputs["out_fp32"][0][0]) and outputs["out_fp32"][0][1] == float("inf")
    assert outputs["out_fp64"] == [[float("-inf"), 2.5]]
    rows = [{name: value[0] for name, value in columns.items()}]  # type: ignore[index]
    predictions = requests.post(url, data=json.dumps({"instances": rows}), timeout=10).json()["predictions"]
    assert predictions[0]["out_fp64"] == [float("-inf"), 2.5]


def test_v2_json_carries_nan_and_infinity_both_ways_as_triton_does(
    client: triton.InferenceServerClient,
) -> None:
    # Triton reads and writes NaN / Infinity / -Infinity in JSON tensors, and tritonclient sends
    # them so; an infinity sent back as null reached tritonclient as NaN
    inputs, outputs = [], []
    for datatype in ("FP16", "FP32", "FP64"):
        value: np.ndarray[Any, Any] = np.array([[np.nan, np.inf], [-np.inf, 1.5]], dtype=NUMPY[datatype])
        tensor = triton.InferInput(f"in_{datatype.lower()}", [2, 2], datatype)
        tensor.set_data_from_numpy(value, binary_data=False)
        inputs.append(tensor)
        outputs.append(triton.InferRequestedOutput(f"out_{datatype.lower()}", binary_data=False))
    for datatype in V2_TYPES:
        if datatype not in ("FP16", "FP32", "FP64"):
            values = [["a", "b"], ["c", "d"]] if datatype == "BYTES" else [[1, 0], [0, 1]]
            tensor = triton.InferInput(f"in_{datatype.lower()}", [2, 2], datatype)
            tensor.set_data_from_numpy(np.array(values).astype(NUMPY[datatype]), binary_data=True)
            inputs.append(tensor)
    result = client.infer("types", inputs, outputs=outputs)
    for datatype in ("FP16", "FP32", "FP64"):
        back = result.as_numpy(f"out_{datatype.lower()}")
        assert np.isnan(back[0, 0]) and back.tolist()[0][1:] + back.tolist()[1] == [np.inf, -np.inf, 1.5], (
            back
        )


def test_v2_an_empty_outputs_list_answers_every_output(server: Server) -> None:
    # as Triton and KServe do (no output asked for: all of them); this answered none
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROWS[0]}
    url = f"{server.url}/v2/models/iris/infer"
    every = requests.post(url, json={"inputs": [tensor]}, timeout=10).json()["outputs"]
    answer = requests.post(url, json={"inputs": [tensor], "outputs": []}, timeout=10)
    assert answer.status_code == 200 and answer.json()["outputs"] == every


def test_tritonclient_classification_extension_gives_the_top_values_with_their_index(
    client: triton.InferenceServerClient, server: Server
) -> None:
    numbers = np.array([[1, 7, 3], [9, 5, 6]], dtype=np.int64)
    tensor = triton.InferInput("numbers", [2, 3], "INT64")
    tensor.set_data_from_numpy(numbers, binary_data=False)
    for binary in (True, False):
        wanted = [triton.InferRequestedOutput("same", binary_data=binary, class_count=2)]
        result = client.infer("scalar", [tensor], outputs=wanted)
        assert result.get_output("same")["datatype"] == "BYTES"
        top = [[v.decode() if isinstance(v, bytes) else v for v in row] for row in result.as_numpy("same")]
        expected = [[f"{row[i]}:{i}" for i in np.argsort(-row, kind="stable")[:2]] for row in numbers]
        assert top == expected == [["7:1", "3:2"], ["9:0", "6:2"]]
    body = {
        "inputs": [
            {"name": "numbers", "shape": [2, 3], "datatype": "INT64", "data": numbers.ravel().tolist()}
        ],
        "outputs": [{"name": "same", "parameters": {"classification": 0}}],
    }
    answer = requests.post(server.url + "/v2/models/scalar/infer", json=body, timeout=10)
    assert answer.status_code == 400 and "classification" in answer.json()["error"], answer.text


def test_a_bool_input_takes_only_true_false_1_and_0(server: Server) -> None:
    # numpy would turn 2, 0.5 and the text "false" into True: the model would see a different input
    columns: dict[str, object] = {f"in_{t.lower()}": [[1, 0]] for t in V2_TYPES if t != "BYTES"}
    columns["in_bytes"] = [["a", "b"]]
    answer = requests.post(server.url + "/v1/models/types:predict", json={"inputs": columns}, timeout=10)
    assert answer.status_code == 200, answer.text  # 1 and 0 are exact
    assert answer.json()["outputs"]["out_bool"] == [[True, False]]
    for bad, says in (([[2, 0]], "2 is not a bool value"), ([["false", "true"]], "not text")):
        columns["in_bool"] = bad
        answer = requests.post(server.url + "/v1/models/types:predict", json={"inputs": columns}, timeout=10)
        assert answer.status_code == 400 and says in answer.json()["error"], answer.text
    tensors = [
        {"name": name, "shape": [1, 2], "datatype": name.removeprefix("in_").upper(), "data": data}
        for name, data in {**columns, "in_bool": [0.5, 1]}.items()
    ]
    answer = requests.post(server.url + "/v2/models/types/infer", json={"inputs": tensors}, timeout=10)
    assert answer.status_code == 400 and "0.5 is not a BOOL value" in answer.json()["error"], answer.text
    # binary BOOL is one byte an element: a byte 2 reached the model as a bool holding 2 (its Not
    # was true, not false), so only bytes 0 and 1 are bools
    tensors = [tensor for tensor in tensors if tensor["name"] != "in_bool"]
    tensors.append(
        {"name": "in_bool", "shape": [1, 2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}
    )
    header = json.dumps({"inputs": tensors}).encode()
    headers = {"Inference-Header-Content-Length": str(len(header))}
    url = server.url + "/v2/models/types/infer"
    answer = requests.post(url, data=header + b"\x02\x00", headers=headers, timeout=10)
    assert answer.status_code == 400, answer.text
    assert (
        answer.json()["error"] == "input 'in_bool': binary BOOL data holds the byte 2 (a BOOL byte is 0 or 1)"
    )
    answer = requests.post(url, data=header + b"\x01\x00", headers=headers, timeout=10)
    outputs = {output["name"]: output["data"] for output in answer.json()["outputs"]}
    assert outputs["out_bool"] == [True, False], answer.text


def test_tensorflow_serving_b64_classify_regress_metadata(server: Server) -> None:
    encoded = base64.b64encode(b"bin\x00ary").decode()
    columns: dict[str, object] = {f"in_{t.lower()}": [[1, 0]] for t in V2_TYPES if t not in ("BYTES", "BOOL")}
    columns["in_bool"] = [[True, False]]
    columns["in_bytes"] = [[{"b64": encoded}, "plain"]]
    body = {"inputs": columns}
    answer = requests.post(server.url + "/v1/models/types:predict", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    plain = base64.b64encode(b"plain").decode()
    # Outputs whose names end in _bytes come back as {"b64": ...}; other strings as text.
    assert answer.json()["outputs"]["raw_bytes"] == [[{"b64": encoded}, {"b64": plain}]]
    assert answer.json()["outputs"]["echo_text"] == [["bin\x00ary", "plain"]]
    assert answer.json()["outputs"]["out_fp16"] == [[1.0, 0.0]]

    classify = requests.post(
        server.url + "/v1/models/iris:classify", json={"examples": [{"input": IRIS_ROWS[1]}]}, timeout=10
    ).json()
    labels = classify["results"][0]
    assert [label for label, _ in labels] == ["0", "1", "2"]
    assert max(labels, key=lambda pair: pair[1])[0] == "2"
    regress = requests.post(
        server.url + "/v1/models/linear:regress",
        json={"context": {}, "examples": [{"features": [1, 1]}, {"features": [2, 0]}]},
        timeout=10,
    ).json()
    assert regress["results"] == pytest.approx([6.0, 5.0], abs=1e-3)

    metadata = requests.get(server.url + "/v1/models/iris/metadata", timeout=5).json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["input"]["dtype"] == "DT_FLOAT"
    assert signature["inputs"]["input"]["tensor_shape"]["dim"] == [{"size": "-1"}, {"size": "4"}]
    assert requests.get(server.url + "/v1/models", timeout=5).json()["models"][0] == "broken"


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/models/nope:predict", {"instances": []}, 404, "Servable not found for request: Latest(nope)"),
        ("/v1/models/iris:predict", {"instances": [[1, 2, 3]]}, 400, "expected shape [-1, 4]"),
        ("/v1/models/iris:predict", {"instances": [["a", "b", "c", "d"]]}, 400, "expected float32"),
        ("/v1/models/iris:predict", {"instances": [[1, 2, 3, 4]], "inputs": {}}, 400, "exactly one of"),
        (
            "/v1/models/iris:predict",
            {"signature_name": "other", "instances": [[1, 2, 3, 4]]},
            400,
            "signature 'other' is not in the model",
        ),
        ("/v1/models/iris:regress", {"examples": [{"input": [1, 2, 3, 4]}]}, 400, "no output to regress"),
        ("/v1/models/linear:classify", {"examples": [{"features": [1, 2]}]}, 400, "no output to classify"),
        ("/v1/models/broken:predict", {"instances": [[1, 2, 3, 4]]}, 503, "is not ready"),
        ("/v1/models/iris:explode", {"instances": []}, 404, "no TensorFlow Serving route"),
        # KServe V1's explain: known, not served (KServe answers NotImplemented so)
        ("/v1/models/iris:explain", {"instances": [[1, 2, 3, 4]]}, 501, "no explainer"),
        ("/v1/models/iris/versions/2:predict", {"instances": []}, 404, "Specific(iris, 2)"),
        # no label is configured: TF Serving refuses one it does not know (this answered version 1)
        (
            "/v1/models/iris/labels/canary:predict",
            {"instances": [[1, 2, 3, 4]]},
            400,
            "Unrecognized servable version label: canary",
        ),
    ],
)
def test_tensorflow_serving_errors(
    server: Server, path: str, body: object, status: int, message: str
) -> None:
    response = requests.post(server.url + path, json=body, timeout=10)
    assert response.status_code == status
    assert message in response.json()["error"]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_prometheus_counters_move_by_exactly_the_requests_sent(server: Server) -> None:
    before = _samples(requests.get(server.url + "/metrics", timeout=5).text)
    for _ in range(5):
        assert server.post("/proto/labels", json.loads((example("iris-onnx") / "sample.json").read_text())).ok
    for _ in range(3):
        assert server.post("/proto/labels", data=b"{bad").status_code == 400
    for _ in range(2):
        assert requests.post(
            server.url + "/v2/models/iris/infer",
            timeout=5,
            json={"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
        ).ok
    for value in ([[1, 1]], [[2, 3]]):
        assert server.post("/proto/linear", value).ok
    after = _samples(requests.get(server.url + "/metrics", timeout=5).text)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted({"deployment": "proto", **labels}.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("inferd_requests_total", api="labels", protocol="cortex", code="200") == 5
    assert delta("inferd_requests_total", api="labels", protocol="cortex", code="400") == 3
    assert delta("inferd_requests_total", api="iris", protocol="v2", code="200") == 2
    assert delta("inferd_request_duration_seconds_count", api="labels") == 8
    assert delta("inferd_stage_duration_seconds_count", api="labels", stage="pre_inference") == 5
    assert delta("inferd_stage_duration_seconds_count", api="labels", stage="model") == 5
    assert delta("inferd_stage_duration_seconds_count", api="labels", stage="queue") == 5
    assert delta("inferd_predictions_total", api="labels", **{"class": "iris-setosa"}) == 5
    assert delta("inferd_prediction_value_count", api="linear") == 2
    assert delta("inferd_prediction_value_sum", api="linear") == pytest.approx(6.0 + 14.0, abs=1e-3)
    assert after[("inferd_prediction_value_max", (("api", "linear"), ("deployment", "proto")))] >= 14.0 - 1e-3
    assert after[("inferd_in_flight_requests", (("api", "labels"), ("deployment", "proto")))] == 0
    assert after[("inferd_replicas", (("api", "labels"), ("deployment", "proto"), ("state", "ready")))] == 1


def test_openapi_document_is_valid_and_docs_render(server: Server) -> None:
    document = requests.get(server.url + "/openapi.json", timeout=5).json()
    validate(document)
    assert "/proto/iris" in document["paths"] and "/v2/models/{model_name}/infer" in document["paths"]
    iris = document["paths"]["/proto/iris"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert iris["oneOf"][1]["required"] == ["input"]  # no pre_inference: the schema is the model's input
    labels = document["paths"]["/proto/labels"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert "pre_inference" in labels["description"]
    page = requests.get(server.url + "/docs", timeout=5)
    assert page.headers["Content-Type"].startswith("text/html") and "openapi.json" in page.text


def test_request_ids_and_access_log(server: Server) -> None:
    given = requests.post(
        server.url + "/proto/iris", json=IRIS_ROWS, headers={"X-Request-ID": "trace-42"}, timeout=5
    )
    assert given.headers["X-Request-ID"] == "trace-42"
    generated = {
        requests.post(server.url + "/proto/iris", json=IRIS_ROWS, timeout=5).headers["X-Request-ID"]
        for _ in range(3)
    }
    assert len(generated) == 3
    record = wait_for(
        lambda: next((json.loads(line) for line in server.log().splitlines() if '"trace-42"' in line), None),
        10,
        "the access log line",
    )
    assert record["route"] == "/proto/iris" and record["status"] == 200 and record["api"] == "iris"
    assert record["replica"].startswith("iris-") and record["latency_ms"] > 0
    assert "error" not in record
    # an error answer's line carries its message: a request id in a client's report finds why
    refused = requests.post(
        server.url + "/proto/iris", data=b"{not json", headers={"X-Request-ID": "trace-43"}, timeout=5
    )
    assert refused.status_code == 400
    failed = wait_for(
        lambda: next((json.loads(line) for line in server.log().splitlines() if '"trace-43"' in line), None),
        10,
        "the error's access log line",
    )
    assert failed["status"] == 400 and failed["error"] == refused.json()["error"]


def test_a_string_holding_a_lone_surrogate_is_the_clients_400(server: Server) -> None:
    # JSON's "\ud800" alone reads as text Python holds but UTF-8 cannot: onnxruntime refused to
    # encode it, a 500 "the model failed" for the client's input.
    sample: dict[str, Any] = {f"in_{name.lower()}": [[0, 1]] for name in V2_TYPES}
    sample["in_bool"] = [[True, False]]
    sample["in_bytes"] = [["caf\u00e9 \U0001f30d", "\ud800"]]
    for path, body in (("/proto/types", sample), ("/v1/models/types:predict", {"inputs": sample})):
        answer = server.post(path, data=json.dumps(body).encode())  # the escape as JSON writes it
        assert answer.status_code == 400, answer.text
        assert "input 'in_bytes'" in answer.json()["error"]
        assert "lone surrogate (\\ud800 without its pair)" in answer.json()["error"]
    sample["in_bytes"] = [["caf\u00e9 \U0001f30d", "\u0130"]]
    answer = server.post("/v1/models/types:predict", data=json.dumps({"inputs": sample}).encode())
    assert answer.json()["outputs"]["echo_text"] == [["caf\u00e9 \U0001f30d", "\u0130"]]


def _replicas_of(server: Server, api: str) -> set[int]:
    """The pids of an API's replicas (their process titles name them: ``inferd replica iris-1``)."""
    return {
        pid
        for pid in replica_pids(server.process.pid)
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(f"inferd replica {api}-".encode())
    }


def test_an_input_named_with_a_lone_surrogate_is_the_clients_400_and_the_replica_lives(
    server: Server,
) -> None:
    # A V2 input named "\ud800" (JSON's escape of a lone surrogate): the 400 naming it could not
    # be written by orjson, the replica ended, the client got a 503 "retry it" and the API lost
    # its replica to one malformed request (found by fuzzing the data plane with hypothesis)
    before = _replicas_of(server, "iris")
    good = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROWS[0]}
    bad = {**good, "name": "\ud800"}
    for path, body in (
        ("/v2/models/iris/infer", {"inputs": [bad]}),
        ("/v2/models/iris/infer", {"inputs": [good], "outputs": [{"name": "\ud800"}]}),
        ("/v1/models/iris:predict", {"inputs": {"\ud800": [IRIS_ROWS[0]]}}),
    ):
        answer = server.post(path, data=json.dumps(body).encode())
        assert answer.status_code == 400, answer.text
        assert "'\ud800'" in answer.json()["error"]  # named as the client wrote it
    assert _replicas_of(server, "iris") == before and len(before) == 1
    answer = server.post("/v2/models/iris/infer", {"inputs": [good]})
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [0]


def test_a_v2_id_holding_a_lone_surrogate_is_echoed_as_its_escape(server: Server) -> None:
    # the protocol echoes "id": orjson refused to write it, a 500 "internal error: TypeError"
    body = {
        "id": "run-\ud800",
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROWS[0]}],
    }
    answer = server.post("/v2/models/iris/infer", data=json.dumps(body).encode())
    assert answer.status_code == 200, answer.text
    assert b'"id":"run-\\ud800"' in answer.content and answer.json()["id"] == "run-\ud800"


def test_a_client_value_quoted_in_an_error_is_a_400_whatever_it_holds(server: Server) -> None:
    # an error message quoting the client's text holding a lone surrogate was a 500 "internal
    # error: TypeError: str is not valid UTF-8: surrogates not allowed"
    row = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROWS[0]}
    cases = [
        ("/v1/models/iris:regress", {"examples": [], "signature_name": {"\ud800": 1}}, '{"\\ud800": 1}'),
        (
            "/v1/models/iris:predict",
            {"instances": [IRIS_ROWS[0]], "signature_name": ["\ud800"]},
            '["\\ud800"]',
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [row], "parameters": {"binary_data_output": "\udfff"}},
            '"\\udfff"',
        ),
        ("/v2/models/iris/infer", {"inputs": [{**row, "data": [1, 2, 3, "\ud800"]}]}, '"\\ud800"'),
    ]
    for path, body, quoted in cases:
        answer = server.post(path, data=json.dumps(body).encode())
        assert answer.status_code == 400, (body, answer.text)
        assert quoted in answer.json()["error"], answer.text


def test_an_integer_beyond_64_bits_quoted_in_an_error_is_named_as_written(server: Server) -> None:
    # orjson read 18446744073709551616 as 1.8446744073709552e+19 (so the message named a number
    # the client never sent), and one that reached a message otherwise was a 500 "internal
    # error: TypeError: Integer exceeds 64-bit range"
    row = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROWS[0]}
    both = {"name": "in_bytes", "shape": [1, 2], "datatype": "BYTES", "data": ["a", 2**64]}
    cases = [
        ("/v1/models/iris:predict", {"instances": [IRIS_ROWS[0]], "signature_name": [2**64]}),
        ("/v2/models/iris/infer", {"inputs": [row], "parameters": {"signature_name": 2**64}}),
        ("/v2/models/iris/infer", {"inputs": [row], "parameters": {"binary_data_output": 2**64}}),
        ("/v2/models/types/infer", {"inputs": [both]}),
        (
            "/v2/models/types/infer",
            {"inputs": [{**both, "name": "in_bool", "datatype": "BOOL", "data": [1, 2**64]}]},
        ),
    ]
    for path, body in cases:
        answer = server.post(path, data=json.dumps(body).encode())
        assert answer.status_code == 400, (body, answer.text)
        assert "18446744073709551616" in answer.json()["error"], answer.text


def test_a_shape_numpy_cannot_hold_is_a_400_even_with_no_elements(server: Server) -> None:
    # beside a 0 the shape has no elements, so the element count let it through: numpy could not
    # make the array, a 500 "internal error: ValueError: array is too big" (found by fuzzing)
    for shape, says in (
        ([2**62, 4], "is too large (18446744073709551616 elements)"),
        ([0, 2**62], "has a dimension larger than 268435456"),
        ([2**40, 0], "has a dimension larger than 268435456"),
        ([0] * 70, "shape has 70 dimensions (at most 32)"),
    ):
        for body in (
            {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": []}]},
            {
                "inputs": [
                    {"name": "x", "shape": shape, "datatype": "FP32", "parameters": {"binary_data_size": 0}}
                ]
            },
        ):
            header = json.dumps(body).encode()
            answer = server.post(
                "/v2/models/shapeless/infer",
                data=header,
                headers={"Inference-Header-Content-Length": str(len(header))},
            )
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"].startswith("input 'x': ") and says in answer.json()["error"]
    answer = server.post(
        "/v2/models/shapeless/infer",
        {"inputs": [{"name": "x", "shape": [0, 5], "datatype": "FP32", "data": []}]},
    )
    assert answer.status_code == 200 and answer.json()["outputs"][0]["shape"] == [0, 5]


ECHO = """\
- kind: deployment
  name: echo
- kind: api
  name: labeler
  predictor: {path: predictor.py}
  tracker: {model_type: classification}
"""


def test_a_tracked_class_holding_a_lone_surrogate_is_counted_as_its_escape(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    # The class is what the client sent (echoed): orjson refused JSON's "\ud800" when the gateway
    # folded the tracker's counts, so the scrape of /metrics failed with a 500 and a traceback,
    # and the classes of that batch after it were never counted
    predictor = "def predict(sample, metadata):\n    return sample['label']\n"
    server = serve(make_project(tmp_path / "echo", ECHO, files={"predictor.py": predictor}))
    for body in (b'{"label": "a"}', b'{"label": "\\ud800"}', b'{"label": "b"}'):
        answer = requests.post(f"{server.url}/echo/labeler", data=body, timeout=30)
        assert answer.status_code == 200, answer.text
    scraped = requests.get(f"{server.url}/metrics", timeout=30)
    assert scraped.status_code == 200, server.log()
    counted = {
        sample.labels["class"]: sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
        if sample.name == "inferd_predictions_total"
    }
    assert counted == {"a": 1.0, "\\ud800": 1.0, "b": 1.0}


UNTRACKABLE = """\
class Result:
    def __init__(self):
        self.name = "setosa"

    def __repr__(self):
        raise RuntimeError("no repr")


def predict(sample, metadata):
    return {"label": Result()}  # answered as its attributes; not a class label to count
"""


def test_a_tracked_value_whose_repr_fails_never_fails_the_request(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    # The tracker's warning about a value it cannot count quoted its repr(); a repr that raised
    # made the answer a 500 "internal error: RuntimeError: no repr" (a tracker never fails a
    # request), batched or not.
    yaml = ECHO.replace("classification}", "classification, key: label}")
    server = serve(make_project(tmp_path / "echo", yaml, files={"predictor.py": UNTRACKABLE}))
    for _ in range(2):
        answer = requests.post(f"{server.url}/echo/labeler", json={}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"label": {"name": "setosa"}}
    assert "a Result (its repr failed: RuntimeError: no repr) is not a classification value" in server.log()
