"""TensorFlow SavedModels: the signature map as Cortex handed it over, and version folders."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from inferd.errors import InputError, LoadError
from inferd.runtimes.devices import Devices
from inferd.storage.layout import find_saved_model
from tests.conftest import example

pytestmark = pytest.mark.tensorflow


def tf_runtime() -> ModuleType:
    """``inferd.runtimes.tensorflow``, imported when a test first needs it: importing TensorFlow
    takes about 10 s, which every pytest worker paid while collecting, running these tests or not."""
    import inferd.runtimes.tensorflow as module

    return module


@pytest.fixture(scope="module")
def iris_tf() -> Path:
    return example("iris-tensorflow") / "models" / "iris"


def test_signature_map_is_protobuf_json_without_internal_entries(iris_tf: Path) -> None:
    signatures = tf_runtime().read_signature_map(iris_tf / "1")
    assert sorted(signatures) == ["predict", "serving_default"]
    predict = signatures["predict"]
    assert predict["methodName"] == "tensorflow/serving/predict"
    assert predict["inputs"]["sepal_length"]["dtype"] == "DT_FLOAT"
    assert predict["inputs"]["sepal_length"]["tensorShape"] == {"dim": [{"size": "-1"}]}
    assert predict["outputs"]["class_ids"]["dtype"] == "DT_INT64"
    assert sorted(predict["outputs"]) == ["class_ids", "classes", "logits", "probabilities"]


def test_signature_choice_follows_cortex() -> None:
    assert tf_runtime().choose_signature(["only"], None) == "only"
    assert tf_runtime().choose_signature(["predict", "serving_default"], None) == "predict"
    assert tf_runtime().choose_signature(["other", "serving_default"], None) == "serving_default"
    assert tf_runtime().choose_signature(["a", "b"], "b") == "b"
    with pytest.raises(LoadError, match=r"several signatures.*set tensorflow\.signature_key to one of: a, b"):
        tf_runtime().choose_signature(["a", "b"], None)
    with pytest.raises(LoadError, match="signature_key 'c' is not in the SavedModel"):
        tf_runtime().choose_signature(["a", "b"], "c")


def test_highest_numeric_version_is_served(iris_tf: Path, tmp_path: Path) -> None:
    for version in ("1", "3", "20"):
        shutil.copytree(iris_tf / "1", tmp_path / version)
    (tmp_path / "notes").mkdir()
    assert find_saved_model(tmp_path) == tmp_path / "20"


def test_zip_of_a_savedmodel(iris_tf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    archive = shutil.make_archive(str(tmp_path / "bundle"), "zip", iris_tf)
    found = find_saved_model(Path(archive))
    assert (found / "saved_model.pb").is_file()


def test_missing_savedmodel_explains_the_expected_tree(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"saved_model\.pb"):
        find_saved_model(tmp_path)


def test_run_and_specs(iris_tf: Path) -> None:
    runtime = tf_runtime().TensorFlowRuntime(iris_tf, None)
    assert runtime.signature_key == "predict"
    names = [spec.name for spec in runtime.inputs]
    assert names == ["petal_length", "petal_width", "sepal_length", "sepal_width"]
    assert runtime.inputs[0].shape == (None,)
    inputs = {
        name: np.array([v], dtype=np.float32)
        for name, v in zip(
            ["sepal_length", "sepal_width", "petal_length", "petal_width"], [6.9, 3.1, 5.4, 2.1], strict=True
        )
    }
    outputs = runtime.run(inputs)
    assert outputs["class_ids"].shape == (1, 1)
    assert outputs["class_ids"][0, 0] == 2


def test_outputs_come_in_name_order_whatever_order_tensorflow_gives(
    iris_tf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loaded signature's dict of outputs is ordered by the process's string hashes: the same
    model answered V2 outputs (and a raw prediction's keys) in another order from another replica."""
    runtime = tf_runtime().TensorFlowRuntime(iris_tf, None)
    function, signature = runtime._function, runtime._loaded.signatures["predict"]

    def reversed_order(call: object) -> object:
        return lambda **tensors: dict(reversed(list(call(**tensors).items())))  # type: ignore[operator]

    monkeypatch.setattr(runtime, "_function", reversed_order(function))
    monkeypatch.setattr(
        runtime, "_loaded", SimpleNamespace(signatures={"predict": reversed_order(signature)})
    )
    inputs = {spec.name: np.array([1.0], dtype=np.float32) for spec in runtime.inputs}
    expected = ["class_ids", "classes", "logits", "probabilities"]
    assert list(runtime.run(inputs)) == expected == [spec.name for spec in runtime.outputs]
    assert list(runtime.run_signature("predict", inputs)) == expected


def test_a_gpu_replica_on_tensorflow_cpu_fails_unless_fallback_is_allowed(iris_tf: Path) -> None:
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.fail("this test needs tensorflow-cpu (the GPU build: scripts/gpu_check.py)")
    with pytest.raises(LoadError, match="TensorFlow sees no GPU"):
        tf_runtime().TensorFlowRuntime(iris_tf, None, devices=Devices(gpus=1))
    runtime = tf_runtime().TensorFlowRuntime(iris_tf, None, devices=Devices(gpus=1, cpu_fallback=True))
    assert runtime.device == "CPU"
    assert tf_runtime().TensorFlowRuntime(iris_tf, None).device == "CPU"


def test_checkpoint_folder_with_the_export_inside(iris_tf: Path, tmp_path: Path) -> None:
    # estimator.train_and_evaluate's model_dir, uploaded as it is (Cortex's packaging docs)
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-100"\n')
    (tmp_path / "model.ckpt-100.index").write_bytes(b"")
    (tmp_path / "eval").mkdir()
    for export in ("best_exporter/1568244606", "best_exporter/1568240000", "latest_exporter/1568244000"):
        shutil.copytree(iris_tf / "1", tmp_path / "export" / export)
    assert find_saved_model(tmp_path) == tmp_path / "export/best_exporter/1568244606"


def test_inputs_the_model_cannot_run_on_are_the_clients_400_naming_the_node(iris_tf: Path) -> None:
    """Four features of one row, one of them given twice: TensorFlow's stack refuses them inside
    the graph (InvalidArgumentError). It was a 500 'the model failed' of eight lines ("Graph
    execution error", "<stack traces unavailable>", the function's internal name); it is the
    client's 400 with the shapes sent and the operation's own sentence, on every route."""
    runtime = tf_runtime().TensorFlowRuntime(iris_tf, None)
    inputs = {
        spec.name: np.array([1.0, 2.0] if spec.name == "petal_width" else [1.0], dtype=np.float32)
        for spec in runtime.inputs
    }
    for run in (runtime.run, lambda given: runtime.run_signature("predict", given)):
        with pytest.raises(InputError) as refused:
            run(dict(inputs))
        message = refused.value.message
        assert message.startswith(
            "the model cannot run on these inputs ('petal_length' [1], 'petal_width' [2], "
            "'sepal_length' [1], 'sepal_width' [1]): its stack node says: Shapes of all inputs must match"
        )
        assert "\n" not in message and "Graph execution" not in message and "__inference" not in message


def test_a_complaint_from_inside_a_function_names_its_node_and_keeps_its_sentence(tmp_path: Path) -> None:
    """A signature whose ops TensorFlow keeps in a function of their own (here a lambda made a
    tf.function) tags the operation ``[[{{function_node __inference_<lambda>_39}}{{node add}}]]``.
    That line was taken for the complaint: the client read 'it says: [[{{function_node
    __inference_<lambda>_39}}{{node add}}]] [Op:__inference_signature_wrapper_45]' and never
    the sentence, 'Incompatible shapes: [3] vs. [2]'."""
    import tensorflow as tf

    from tests.conftest import save_tensorflow

    module = tf.Module()
    specs = [tf.TensorSpec([None], tf.float32, name=name) for name in ("x", "y")]
    module.serve = tf.function(lambda x, y: {"out": x + y}, input_signature=specs)
    signatures = {"serving_default": module.serve.get_concrete_function()}
    save_tensorflow(module, tmp_path / "model", signatures)
    runtime = tf_runtime().TensorFlowRuntime(tmp_path / "model", None)
    inputs = {"x": np.ones(3, np.float32), "y": np.ones(2, np.float32)}
    with pytest.raises(InputError) as refused:
        runtime.run(inputs)
    assert refused.value.message == (
        "the model cannot run on these inputs ('x' [3], 'y' [2]): its add node says: "
        "Incompatible shapes: [3] vs. [2]"
    )


@pytest.mark.parametrize(
    ("said", "node", "complaint"),
    [
        (  # an operation run on its own (eagerly): one line, its function and op around it
            "{{function_node __wrapped__AddV2_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
            "Incompatible shapes: [3] vs. [2] [Op:AddV2] name: ",
            "",
            "Incompatible shapes: [3] vs. [2]",
        ),
        (  # a function called by a function
            "Graph execution error:\n\nDetected at node Gather defined at (most recent call last):\n"
            "<stack traces unavailable>\nindices[1] = 7 is not in [0, 3)\n\t [[{{function_node "
            "__inference_a_3}}{{function_node __inference_b_5}}{{node Gather}}]] [Op:__inference_w_9]",
            "Gather",
            "indices[1] = 7 is not in [0, 3)",
        ),
    ],
)
def test_the_node_and_sentence_of_each_shape_of_message(said: str, node: str, complaint: str) -> None:
    assert tf_runtime()._node_complaint(said) == (node, complaint)


def test_a_complaint_quoting_the_clients_text_keeps_all_of_it_on_one_line(tmp_path: Path) -> None:
    """tf.strings.to_number quotes the text it could not read, line breaks and all: the 400 kept
    the line before the operation's tag only, 'its StringToNumber node says: ghi' for
    'abc\\ndef\\n\\tghi'."""
    import tensorflow as tf

    from tests.conftest import save_tensorflow

    module = tf.Module()
    spec = tf.TensorSpec([None], tf.string, name="s")
    module.serve = tf.function(lambda s: {"n": tf.strings.to_number(s)}, input_signature=[spec])
    save_tensorflow(module, tmp_path / "model", {"serving_default": module.serve.get_concrete_function()})
    runtime = tf_runtime().TensorFlowRuntime(tmp_path / "model", None)
    for text, read in [
        ("abc\ndef\n\n\tghi", "abc def ghi"),
        ("abc\u2028def", "abc def"),
    ]:
        with pytest.raises(InputError) as refused:
            runtime.run({"s": np.array([b"1.5", text.encode()], dtype=object)})
        assert refused.value.message == (
            "the model cannot run on these inputs ('s' [2]): its StringToNumber node says: "
            f"StringToNumberOp could not correctly convert string: {read}"
        )
