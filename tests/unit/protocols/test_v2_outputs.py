"""V2 and TF Serving answers of bfloat16 outputs (TensorFlow's; numpy's kind "V", and orjson
cannot write them): asked for as V2 JSON, one was a 500 'internal error: TypeError: unsupported
datatype in numpy array'; on TF Serving its NaN was null."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inferd.protocols.tfserving import encode_predict
from inferd.protocols.v2 import encode_response


def test_a_bf16_output_is_written_as_numbers_in_json_and_as_raw_bytes_in_binary() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")  # TensorFlow's bfloat16 (it installs the package)
    values = np.array([[1.5, -2.0], [np.nan, np.inf]], dtype=ml_dtypes.bfloat16)
    body, header = encode_response("m", "1", {}, {"y": values})
    assert header is None
    text = body.decode()
    assert '"data":[1.5,-2.0,NaN,Infinity]' in text, text  # NaN and Infinity as Triton writes them
    assert json.loads(text.replace("NaN", "0").replace("Infinity", "0"))["outputs"][0]["datatype"] == "BF16"
    body, header = encode_response("m", "1", {"parameters": {"binary_data_output": True}}, {"y": values})
    assert header is not None
    assert np.frombuffer(body[header:], dtype=ml_dtypes.bfloat16).tobytes() == values.tobytes()


def test_a_bf16_output_keeps_nan_on_tf_serving_and_is_classified_on_v2() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.array([[0.5, np.nan, np.inf, 2.0]], dtype=ml_dtypes.bfloat16)
    # TF Serving writes NaN and Infinity as it takes them: a bfloat16 NaN was null
    assert encode_predict({"y": values}, False) == b'{"outputs":[[0.5,NaN,Infinity,2.0]]}'
    values = np.array([[0.5, 3.0, 2.0]], dtype=ml_dtypes.bfloat16)
    request = {"outputs": [{"name": "y", "parameters": {"classification": 2}}]}
    body, _ = encode_response("m", "1", request, {"y": values})  # was a 400 'needs a numeric output'
    assert json.loads(body)["outputs"][0]["data"] == ["3.0:1", "2.0:2"]
