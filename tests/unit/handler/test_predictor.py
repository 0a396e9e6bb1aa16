"""The whole pipeline in-process with real models and Cortex's own handlers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from inferd.config.load import load_project
from inferd.errors import HandlerError, InputError, LoadError
from inferd.handler.predictor import Predictor
from tests.conftest import example, make_project

SAMPLE = {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3}
VIRGINICA = {"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.4, "petal_width": 2.1}


def build(path: Path) -> Predictor:
    project = load_project(path)
    config = project.apis[0]
    uri = config.api.model_uri
    return Predictor(config.api, project.root, None if uri is None else project.root / uri)


def test_request_handlers_md_example_returns_labels() -> None:
    predictor = build(example("iris-onnx"))
    assert predictor.predict(SAMPLE) == "iris-setosa"
    assert predictor.predict(VIRGINICA) == "iris-virginica"


@pytest.mark.tensorflow
def test_cortex_tensorflow_iris_example_returns_labels() -> None:
    predictor = build(example("iris-tensorflow"))
    assert predictor.predict(SAMPLE) == "setosa"
    assert predictor.predict(VIRGINICA) == "virginica"


def test_predictor_example() -> None:
    predictor = build(example("iris-predictor"))
    assert predictor.predict(VIRGINICA) == "virginica"


@pytest.mark.tensorflow
def test_tensorflow_prediction_is_flattened_with_native_numbers(tmp_path: Path) -> None:
    handler = (
        "seen = {}\n"
        "def post_inference(prediction, signature, metadata):\n"
        "    seen['prediction'] = prediction\n"
        "    return prediction\n"
    )
    root = make_project(
        tmp_path,
        "- kind: deployment\n  name: d\n- kind: api\n  name: tf\n  tensorflow:\n    model: model\n"
        "    request_handler: h.py\n",
        {"h.py": handler},
        {"model": example("iris-tensorflow") / "models" / "iris"},
    )
    predictor = build(root)
    batch = {key: [SAMPLE[key], VIRGINICA[key]] for key in SAMPLE}
    result = predictor.predict(batch)
    assert result["class_ids"] == [0, 2]
    assert isinstance(result["class_ids"][0], int)
    assert len(result["probabilities"]) == 6
    assert result["classes"] == ["0", "2"]


@pytest.mark.tensorflow
def test_full_shapes_extension_keeps_shapes(tmp_path: Path) -> None:
    root = make_project(
        tmp_path,
        "- kind: deployment\n  name: d\n- kind: api\n  name: tf\n  tensorflow:\n    model: model\n"
        "    full_shapes: true\n",
        models={"model": example("iris-tensorflow") / "models" / "iris"},
    )
    result = build(root).predict(VIRGINICA)
    assert isinstance(result["class_ids"], np.ndarray)
    assert result["class_ids"].shape == (1, 1)
    assert result["probabilities"].shape == (1, 3)


def test_no_handler_sends_the_raw_sample_and_returns_the_raw_prediction(
    tmp_path: Path, iris_onnx_model: Path
) -> None:
    root = make_project(
        tmp_path,
        "- kind: deployment\n  name: d\n- kind: api\n  name: raw\n  onnx:\n    model: m.onnx\n",
        models={"m.onnx": iris_onnx_model},
    )
    prediction = build(root).predict([[5.2, 3.6, 1.4, 0.3], [6.9, 3.1, 5.4, 2.1]])
    assert prediction[0].tolist() == [0, 2]


def test_handler_errors_name_the_function_and_keep_globals(
    tmp_path: Path, iris_onnx_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handler = (
        "calls = 0\n"
        "def pre_inference(sample, signature, metadata):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    if sample == 'boom':\n"
        "        raise ValueError('no boom please')\n"
        "    return [1, 2, 3, 4]\n"
        "def post_inference(prediction, signature, metadata):\n"
        "    return {'calls': calls, 'label': int(prediction[0][0]), 'meta': metadata['who']}\n"
    )
    root = make_project(
        tmp_path,
        "- kind: deployment\n  name: d\n- kind: api\n  name: h\n  onnx:\n    model: m.onnx\n"
        "    request_handler: handlers/h.py\n    metadata:\n      who: me\n",
        {"handlers/h.py": handler},
        {"m.onnx": iris_onnx_model},
    )
    predictor = build(root)
    assert predictor.predict({})["calls"] == 1
    with caplog.at_level(logging.ERROR), pytest.raises(HandlerError) as caught:
        predictor.predict("boom")
    assert str(caught.value) == "pre_inference in handlers/h.py failed: ValueError: no boom please"
    # The traceback starts in the user's file: no frame of inferd's own above it.
    logged = caplog.text[caplog.text.index("Traceback") :]
    assert 'h.py", line 6, in pre_inference' in logged and "inferd/handler" not in logged
    assert predictor.predict({}) == {"calls": 3, "label": 2, "meta": "me"}


def test_input_errors_after_pre_inference_say_so(tmp_path: Path, iris_onnx_model: Path) -> None:
    root = make_project(
        tmp_path,
        "- kind: deployment\n  name: d\n- kind: api\n  name: h\n  onnx:\n    model: m.onnx\n"
        "    request_handler: h.py\n",
        {"h.py": "def pre_inference(sample, signature, metadata):\n    return [1, 2, 3]\n"},
        {"m.onnx": iris_onnx_model},
    )
    # the file too, as a handler's other errors name it (an API may have several handler files)
    with pytest.raises(
        InputError, match=r"expected shape \[-1, 4\].*\(as returned by pre_inference in h.py\)"
    ):
        build(root).predict({})


def test_a_pre_inference_that_returns_none_is_the_handlers_error(
    tmp_path: Path, iris_onnx_model: Path
) -> None:
    # It was a 400 blaming the client's sample ("expected float32 [-1, 4], got null") for a
    # return statement the handler lacks, whatever the sample.
    root = make_project(
        tmp_path,
        "- kind: deployment\n  name: d\n- kind: api\n  name: h\n  onnx:\n    model: m.onnx\n"
        "    request_handler: h.py\n",
        {"h.py": "def pre_inference(sample, signature, metadata):\n    row = [1, 2, 3, 4]\n"},
        {"m.onnx": iris_onnx_model},
    )
    with pytest.raises(
        HandlerError, match=r"^pre_inference in h.py returned None: it returns the model's input"
    ):
        build(root).predict({})


def test_a_pre_inference_that_returns_a_coroutine_is_the_handlers_error(
    tmp_path: Path, iris_onnx_model: Path
) -> None:
    # It was a 400 blaming the sample ("float() argument must be ... not 'coroutine'") and a
    # "coroutine was never awaited" warning.
    code = (
        "async def rows():\n    return [[1, 2, 3, 4]]\n"
        "def pre_inference(sample, signature, metadata):\n    return rows()\n"
    )
    root = make_project(
        tmp_path,
        "- kind: deployment\n  name: d\n- kind: api\n  name: h\n  onnx:\n    model: m.onnx\n"
        "    request_handler: h.py\n",
        {"h.py": code},
        {"m.onnx": iris_onnx_model},
    )
    with pytest.raises(HandlerError, match=r"^pre_inference in h.py returned a coroutine: inferd calls"):
        build(root).predict({})


def test_an_exception_whose_message_fails_is_still_the_handlers_error(tmp_path: Path) -> None:
    # str(exc) raised while the HandlerError was worded: the replica answered "internal error".
    code = (
        "class Odd(Exception):\n    def __str__(self):\n        raise RuntimeError('no text')\n"
        "def predict(sample, metadata):\n    raise Odd()\n"
    )
    root = make_project(
        tmp_path,
        "- kind: deployment\n  name: d\n- kind: api\n  name: p\n  predictor:\n    path: p.py\n",
        {"p.py": code},
    )
    with pytest.raises(HandlerError, match=r"^predict in p.py failed: Odd: \(its message cannot be shown"):
        build(root).predict({})


PREDICT_ONE = "def predict(sample, metadata):\n    return 1\n"


@pytest.mark.parametrize(
    ("raising", "said"),
    [
        ("sys.exit('no GPU here')", "SystemExit: no GPU here"),
        ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ],
)
def test_init_that_exits_is_a_load_error_with_its_reason(tmp_path: Path, raising: str, said: str) -> None:
    # The replica ended with "a replica exited with code 1 while loading": the reason was lost.
    root = make_project(
        tmp_path,
        "- kind: deployment\n  name: d\n- kind: api\n  name: p\n  predictor:\n    path: p.py\n",
        {"p.py": f"import sys\ndef init(model_path, metadata):\n    {raising}\n{PREDICT_ONE}"},
    )
    with pytest.raises(LoadError) as caught:
        build(root)
    assert caught.value.message.startswith(f"init in p.py failed: {said}\nTraceback")


def test_project_folder_and_python_path_are_importable(tmp_path: Path, iris_onnx_model: Path) -> None:
    root = make_project(
        tmp_path,
        "- kind: deployment\n  name: d\n- kind: api\n  name: h\n  onnx:\n    model: m.onnx\n"
        "    request_handler: handlers/h.py\n    python_path: src\n",
        {
            "handlers/h.py": "from labels_for_test import NAMES\nfrom project_helper_for_test import X\n"
            "def post_inference(prediction, signature, metadata):\n"
            "    return NAMES[int(prediction[0][0])] + X\n",
            "src/labels_for_test.py": "NAMES = ['a', 'b', 'c']\n",
            "project_helper_for_test.py": "X = '!'\n",
        },
        {"m.onnx": iris_onnx_model},
    )
    assert build(root).predict([6.9, 3.1, 5.4, 2.1]) == "c!"


def test_a_handlers_error_named_error_or_as_a_builtin_is_named_with_its_module(
    tmp_path: Path, iris_onnx_model: Path
) -> None:
    """An image handler's bad base64 raised binascii.Error, said "failed: Error: Invalid
    base64-encoded string"; requests' ConnectionError read as the builtin one. Python's own
    traceback names their module; so does the handler's 500 now (a builtin's name, and one of
    the handler's own file, stay bare)."""
    handler = (
        "import base64\n"
        "class ConnectionError(Exception):\n"
        "    pass\n"
        "def pre_inference(sample, signature, metadata):\n"
        "    if sample == 'link':\n"
        "        raise ConnectionError('no route')\n"
        "    if sample == 'bare':\n"
        "        raise KeyError('petal')\n"
        "    return base64.b64decode(sample)\n"
    )
    root = make_project(
        tmp_path,
        "- kind: deployment\n  name: d\n- kind: api\n  name: h\n  onnx:\n    model: m.onnx\n"
        "    request_handler: handlers/h.py\n",
        {"handlers/h.py": handler},
        {"m.onnx": iris_onnx_model},
    )
    predictor = build(root)
    failures = {}
    for sample in ("!!notbase64", "link", "bare"):
        with pytest.raises(HandlerError) as caught:
            predictor.predict(sample)
        failures[sample] = str(caught.value).removeprefix("pre_inference in handlers/h.py failed: ")
    assert failures["!!notbase64"].startswith("binascii.Error: Invalid base64-encoded string")
    assert failures["link"] == "ConnectionError: no route"  # the handler's own: its file is named
    assert failures["bare"] == "KeyError: 'petal'"
