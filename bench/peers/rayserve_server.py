"""Ray Serve peer: the iris ONNX model as a Ray Serve deployment behind Ray's HTTP proxy.

Run with the peer venv's python (bench/.cache/venvs/ray): `rayserve_server.py MODEL PORT`.
A local Ray cluster sized to this box (`num_cpus=2`, no dashboard), the HTTP proxy on
127.0.0.1:PORT, and REPLICAS (env BENCH_RAY_REPLICAS, default 1) replicas. The runner sets
RAY_SERVE_THROUGHPUT_OPTIMIZED=1 where the installed Ray has it. Same handler logic as
examples/iris-onnx: 4 features in, float32 [1, 4] to onnxruntime, the label string out.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
import onnxruntime as ort
import ray  # type: ignore[import-not-found, unused-ignore]
from ray import serve  # type: ignore[import-not-found, unused-ignore]

LABELS = ["iris-setosa", "iris-versicolor", "iris-virginica"]


class IrisClassifier:
    def __init__(self, model_path: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            model_path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    async def __call__(self, request: Any) -> str:
        sample = await request.json()
        features = [
            sample["sepal_length"],
            sample["sepal_width"],
            sample["petal_length"],
            sample["petal_width"],
        ]
        prediction = self.session.run(None, {self.input_name: np.array([features], dtype=np.float32)})
        label: str = LABELS[prediction[0][0]]
        return label


def main(model_path: str, port: int) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deployment = serve.deployment(
        num_replicas=int(os.environ.get("BENCH_RAY_REPLICAS", "1")),
        ray_actor_options={"num_cpus": 0},  # replicas share the 2 cores with the proxy, unpinned
        max_ongoing_requests=32,
    )(IrisClassifier)
    serve.run(deployment.bind(model_path), route_prefix="/iris/classifier", blocking=False)
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
