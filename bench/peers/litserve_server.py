"""LitServe peer: the iris ONNX model behind LitServe, tuned as its docs advise for CPU throughput.

Run with the peer venv's python (bench/.cache/venvs/litserve): `litserve_server.py MODEL PORT`.
One inference worker per core (`workers_per_device=2` on this 2-core box), one API server
process per worker (`num_api_servers=None`), and ZeroMQ between them (`fast_queue=True`, the
docs' switch for ">100 RPS"). Same handler logic as examples/iris-onnx: 4 features in, a
float32 [1, 4] tensor to onnxruntime, the label string out.
"""

from __future__ import annotations

import sys
from typing import Any

import litserve as ls  # type: ignore[import-not-found, unused-ignore]
import numpy as np
import onnxruntime as ort

LABELS = ["iris-setosa", "iris-versicolor", "iris-virginica"]


class IrisAPI(ls.LitAPI):  # type: ignore[misc, unused-ignore]
    def __init__(self, model_path: str) -> None:
        super().__init__(api_path="/iris/classifier")
        self.model_path = model_path

    def setup(self, device: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            self.model_path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    # Left unannotated on purpose: LitServe reads this annotation to pick the request type, and
    # with none it hands over the JSON body as a dict.
    def decode_request(self, request) -> Any:  # type: ignore[no-untyped-def]
        features = [
            request["sepal_length"],
            request["sepal_width"],
            request["petal_length"],
            request["petal_width"],
        ]
        return np.array([features], dtype=np.float32)

    def predict(self, x: Any) -> Any:
        return self.session.run(None, {self.input_name: x})

    def encode_response(self, output: Any) -> str:
        label: str = LABELS[output[0][0]]
        return label


if __name__ == "__main__":
    server = ls.LitServer(IrisAPI(sys.argv[1]), accelerator="cpu", workers_per_device=2, fast_queue=True)
    server.run(host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", generate_client_file=False)
