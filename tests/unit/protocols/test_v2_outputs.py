"""V2 answers of outputs whose dtype orjson cannot write: a TensorFlow model's bfloat16 output
asked for as JSON was a 500 'internal error: TypeError: unsupported datatype in numpy array'."""

from __future__ import annotations

import json

import numpy as np
import pytest

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
