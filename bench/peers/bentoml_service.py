"""BentoML peer: the iris ONNX model as a BentoML service, configured as its docs advise.

Served by `bentoml serve bentoml_service:IrisClassifier --working-dir bench/peers` from the
peer venv (bench/.cache/venvs/bentoml); the model path comes in BENCH_MODEL. One worker
process per core (`workers="cpu_count"`, the workers guide's advice for CPU models), no
concurrency cap (BentoML's default). Same handler logic as examples/iris-onnx: the JSON body's
4 features become a float32 [1, 4] tensor, the label string goes out.
"""

from __future__ import annotations

import os

import bentoml  # type: ignore[import-not-found, unused-ignore]
import numpy as np
import onnxruntime as ort

LABELS = ["iris-setosa", "iris-versicolor", "iris-virginica"]


@bentoml.service(workers="cpu_count", resources={"cpu": "2"}, logging={"access": {"enabled": False}})
class IrisClassifier:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.environ["BENCH_MODEL"], sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    @bentoml.api(route="/iris/classifier")  # type: ignore[untyped-decorator, unused-ignore]
    def classify(
        self, sepal_length: float, sepal_width: float, petal_length: float, petal_width: float
    ) -> str:
        features = [sepal_length, sepal_width, petal_length, petal_width]
        prediction = self.session.run(None, {self.input_name: np.array([features], dtype=np.float32)})
        label: str = LABELS[prediction[0][0]]
        return label
