"""B0: the server a user would write by hand instead of inferd.

One uvicorn process (uvloop + httptools), a Starlette route, orjson, onnxruntime, and the
same handler logic as examples/iris-onnx (request-handlers.md).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

LABELS = ["iris-setosa", "iris-versicolor", "iris-virginica"]


def build(model_path: str) -> Starlette:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    async def predict(request: Request) -> Response:
        sample: Any = orjson.loads(await request.body())
        features = [
            sample["sepal_length"],
            sample["sepal_width"],
            sample["petal_length"],
            sample["petal_width"],
        ]
        prediction = session.run(None, {name: np.array([features], dtype=np.float32)})
        return Response(orjson.dumps(LABELS[prediction[0][0]]), media_type="application/json")

    async def noop(request: Request) -> Response:
        await request.body()
        return Response(b'"ok"', media_type="application/json")

    return Starlette(
        routes=[Route("/iris/classifier", predict, methods=["POST"]), Route("/noop", noop, methods=["POST"])]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="the ONNX model (examples/iris-onnx/models/iris.onnx)")
    parser.add_argument("port", type=int, help="the loopback port to listen on")
    args = parser.parse_args()
    uvicorn.run(
        build(args.model),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
