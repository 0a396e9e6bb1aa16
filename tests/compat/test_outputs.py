"""What Cortex v0.10 handed handlers and clients as predictions, served by inferd: a TensorFlow
scalar string output as a list of one (as protobuf JSON gave it), and answers holding values
Cortex's JSON encoder (json_tricks) wrote that plain JSON has no type for."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import Server, make_project, save_tensorflow, serve

__all__ = ["serve"]


def build_png_model(target: Path) -> None:
    """A SavedModel taking encoded PNGs (a tf.string batch) and a scalar scale: the mean pixel of
    each image times the scale, and a scalar string saying how many images came."""
    import tensorflow as tf

    class PngMean(tf.Module):  # type: ignore[misc]
        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[
                tf.TensorSpec([None], tf.string, name="image_bytes"),
                tf.TensorSpec([], tf.float32, name="scale"),
            ]
        )
        def serve(self, image_bytes: tf.Tensor, scale: tf.Tensor) -> dict[str, tf.Tensor]:
            def mean(encoded: tf.Tensor) -> tf.Tensor:
                return tf.reduce_mean(tf.cast(tf.io.decode_png(encoded, channels=3), tf.float32))

            means = tf.map_fn(mean, image_bytes, fn_output_signature=tf.float32) * scale
            count = tf.strings.join(["images: ", tf.strings.as_string(tf.size(image_bytes))])
            return {"mean": means, "summary": count, "total": tf.reduce_sum(means)}

    model = PngMean()
    save_tensorflow(model, target, {"serving_default": model.serve})


PNG_HANDLER = """import base64


def pre_inference(sample, signature, metadata):
    return {"image_bytes": [base64.b64decode(sample["base64"])], "scale": metadata["scale"]}


def post_inference(prediction, signature, metadata):
    # Cortex gave every output as a flat list: a scalar string too, so [0] is the whole text
    return {"mean": prediction["mean"][0], "summary": prediction["summary"][0],
            "total": prediction["total"][0]}
"""


def png_sample(value: int) -> dict[str, str]:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(buffer, format="PNG")
    return {"base64": base64.b64encode(buffer.getvalue()).decode("ascii")}


@pytest.mark.tensorflow
def test_tensorflow_scalar_string_output_is_a_list_of_one(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    model = tmp_path / "built" / "1"
    build_png_model(model)
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: images\n"
        "- kind: api\n  name: mean\n  tensorflow:\n    model: models/png\n"
        "    request_handler: handler.py\n    metadata: {scale: 2.0}\n"
        "- kind: api\n  name: raw\n  tensorflow:\n    model: models/png\n"
        "    request_handler: pre.py\n    metadata: {scale: 2.0}\n",
        {"handler.py": PNG_HANDLER, "pre.py": PNG_HANDLER.split("\n\n\ndef post_inference")[0] + "\n"},
        {"models/png/1": model},
    )
    server = serve(project)
    handled = server.post("/images/mean", png_sample(10))
    assert handled.status_code == 200, handled.text
    assert handled.json() == {"mean": 20.0, "summary": "images: 1", "total": 20.0}

    raw = server.post("/images/raw", png_sample(3))  # pre_inference only: the prediction as is
    assert raw.status_code == 200, raw.text
    assert raw.json() == {"mean": [6.0], "summary": ["images: 1"], "total": [6.0]}


ENCODED_PREDICTOR = """import decimal
import fractions
import pathlib

import numpy


class Result:
    def __init__(self, label, score):
        self.label = label
        self.score = score


class Point:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x, self.y = x, y


def predict(sample, metadata):
    kind = sample["kind"]
    if kind == "decimal":
        return decimal.Decimal("21.5")
    if kind == "complex":
        return {"root": complex(0, 2)}
    if kind == "object":
        return Result("setosa", fractions.Fraction(3, 4))
    if kind == "slots":
        return [Point(1, 2)]
    if kind == "big":  # JSON numbers have no size limit; Python's json (Cortex's) wrote them
        return {"id": 2**70, "below": -(2**64), "as_key": {numpy.int64(7): 2**65}}
    if kind == "longdouble":  # its item() is itself, not a Python float
        return [numpy.longdouble(1.5), numpy.clongdouble(2j)]
    if kind == "frame":
        import pandas as pd

        return pd.DataFrame({"mpg": [21.5, 30.0], "cylinders": [6, 4]})
    return {"path": pathlib.PurePosixPath("models") / "iris.onnx"}
"""


def test_answers_json_tricks_wrote(tmp_path: Path, serve: Callable[..., Server]) -> None:
    # Cortex v0.10 encoded answers with json_tricks (primitives=True): a Decimal, a complex
    # number, an instance of the predictor's own class were answers, not a 500.
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: enc\n- kind: api\n  name: any\n  predictor:\n    path: predictor.py\n",
        {"predictor.py": ENCODED_PREDICTOR},
    )
    server = serve(project)
    expected = {
        "decimal": 21.5,
        "complex": {"root": [0.0, 2.0]},
        "object": {"label": "setosa", "score": 0.75},
        "slots": [{"x": 1, "y": 2}],
        "frame": {"index": [0, 1], "mpg": [21.5, 30.0], "cylinders": [6, 4]},
        "path": {"path": "models/iris.onnx"},
        "big": {"id": 2**70, "below": -(2**64), "as_key": {"7": 2**65}},
        "longdouble": [1.5, [0.0, 2.0]],
    }
    for kind, answer in expected.items():
        response = server.post("/enc/any", {"kind": kind})
        assert response.status_code == 200, (kind, response.text)
        assert response.json() == answer


FLOAT32_HANDLER = """def post_inference(prediction, signature, metadata):
    return {"first": prediction[0][0][0], "row": prediction[0][0]}  # a float32 scalar, an array
"""


def test_float32_values_answered_as_json_tricks_wrote_them(
    tmp_path: Path, serve: Callable[..., Server], two_input_model: Path
) -> None:
    # Cortex's encoder wrote NumPy values through tolist()/item(): a float32 is the float64 number
    # it is (0.30000001192092896), so a client comparing the answer with the model's own output
    # (session.run(...)[0].tolist()) finds them equal. Shortest float32 text (0.3) is another number.
    import onnxruntime

    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: add\n"
        "- kind: api\n  name: raw\n  onnx:\n    model: add.onnx\n"
        "- kind: api\n  name: handled\n  onnx:\n    model: add.onnx\n    request_handler: handler.py\n",
        {"handler.py": FLOAT32_HANDLER},
        {"add.onnx": two_input_model},
    )
    sample = {"a": [[0.1, 0.7]], "b": [[0.2, 1.1]]}
    session = onnxruntime.InferenceSession(str(two_input_model))
    outputs = session.run(None, {name: np.array(value, np.float32) for name, value in sample.items()})
    expected = [output.tolist() for output in outputs]
    server = serve(project)
    raw = server.post("/add/raw", sample)
    assert raw.status_code == 200, raw.text
    assert raw.json() == expected
    assert raw.json()[0][0][0] == float(np.float32(0.1) + np.float32(0.2)) != 0.3
    handled = server.post("/add/handled", sample)
    assert handled.status_code == 200, handled.text
    assert handled.json() == {"first": expected[0][0][0], "row": expected[0][0]}


LIBRARY_TYPES_PREDICTOR = """import collections

import numpy
import pandas as pd
import pydantic


class Label(pydantic.BaseModel):
    name: str
    score: float


Pair = collections.namedtuple("Pair", "label score")


def predict(sample, metadata):
    kind = sample["kind"]
    if kind == "namedtuple":  # a tuple: numpy.linalg.eigh's EigResult and torch.max(x, dim) are
        return {"pair": Pair("setosa", 0.5), "eigh": numpy.linalg.eigh(numpy.eye(2))}
    if kind == "pydantic":
        return Label(name="setosa", score=0.5)
    if kind == "view":  # of an array's numbers, not of bytes
        numbers = numpy.arange(4, dtype=numpy.int32).reshape(2, 2)
        return {"view": memoryview(numbers), "bytes": memoryview(b"ab")}
    if kind == "wide key":
        return {2**70: "a", numpy.int64(7): "b"}
    if kind == "timestamp":  # a datetime (subclass): pandas' dates, a DataFrame's date column
        return {"at": pd.Timestamp("2020-01-02 03:04:05"), "none": pd.NaT}
    return pd.DataFrame({"day": pd.to_datetime(["2020-01-02", "2020-01-03"]), "n": [1, 2]})
"""


def test_library_values_are_answered_as_what_they_hold(tmp_path: Path, serve: Callable[..., Server]) -> None:
    # A namedtuple (a tuple subclass, which orjson does not write) was a 500; a pydantic model
    # answered its internals (__pydantic_fields_set__, ...); a pandas Timestamp (a datetime
    # subclass) was answered {}, so a DataFrame's date column was a list of {}.
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: enc\n- kind: api\n  name: lib\n  predictor:\n    path: predictor.py\n",
        {"predictor.py": LIBRARY_TYPES_PREDICTOR},
    )
    server = serve(project)
    expected = {
        "namedtuple": {"pair": ["setosa", 0.5], "eigh": [[1.0, 1.0], [[1.0, 0.0], [0.0, 1.0]]]},
        "pydantic": {"name": "setosa", "score": 0.5},
        "timestamp": {"at": "2020-01-02T03:04:05", "none": None},
        "frame": {"index": [0, 1], "day": ["2020-01-02T00:00:00", "2020-01-03T00:00:00"], "n": [1, 2]},
    }
    for kind, answer in expected.items():
        response = server.post("/enc/lib", {"kind": kind})
        assert response.status_code == 200, (kind, response.text)
        assert response.json() == answer, kind


def test_a_memoryview_of_numbers_or_a_wide_integer_key_is_answered_as_what_it_holds(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    # A memoryview of an int32 array was answered as its bytes, as text ("\u0000\u0000..."); an
    # integer key beyond 64 bits, which Python's json writes as its digits, was a 500.
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: enc\n- kind: api\n  name: lib\n  predictor:\n    path: predictor.py\n",
        {"predictor.py": LIBRARY_TYPES_PREDICTOR},
    )
    server = serve(project)
    view = server.post("/enc/lib", {"kind": "view"})
    assert view.status_code == 200, view.text
    assert view.json() == {"view": [[0, 1], [2, 3]], "bytes": "ab"}
    wide = server.post("/enc/lib", {"kind": "wide key"})
    assert wide.status_code == 200, wide.text
    assert wide.json() == {str(2**70): "a", "7": "b"}


FAILING_ENCODER = """
class Result:
    def __json_encode__(self):  # json_tricks' hook: what the answer holds
        raise ValueError("no label yet")


def predict(sample, metadata):
    return {"result": Result()}
"""


def test_an_encoding_hook_that_raises_is_named_with_its_error(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    # The 500 said only "Type is not JSON serializable: Result", as if __json_encode__ were not
    # read at all; what it raised was in no message and no log.
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: enc\n- kind: api\n  name: hook\n  predictor:\n    path: predictor.py\n",
        {"predictor.py": FAILING_ENCODER},
    )
    server = serve(project)
    response = server.post("/enc/hook", {})
    assert response.status_code == 500
    assert response.json()["error"] == (
        "predict returned a value that is not JSON-serialisable: Type is not JSON serializable: Result "
        "(encoding it raised ValueError: no label yet)"
    )
