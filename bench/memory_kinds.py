"""Shared ONNX weights on models of other shapes than bench/memory.py's MatMul layers.

Each model holds about 256 MiB of weights (built here, in a temporary folder): Gemm layers with
``transB=1`` (as PyTorch exports them), Conv layers, a Gather embedding table, weights in Constant
nodes, float16 weights cast to float32, weight-only int8 weights behind DequantizeLinear (64 MiB,
256 MiB as floats), and Gemm layers saved with external data. Each is served by ``inferd serve``
with exactly 1 and 4 replicas (``cpu: 0.1``), weights shared (the default) and not
(``INFERD_SHARE_WEIGHTS=0``); after rounds of concurrent requests the replicas' proportional set
sizes (``/proc/PID/smaps_rollup``) are summed, and the four servers' answers to one request are
compared. ``python bench/memory_kinds.py [KIND ...]`` prints one row per kind; it writes nothing
(its runs are kept in docs/memory-kinds.md, which ``make bench`` does not rewrite).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.memory import Served  # noqa: E402

WIDTH, HIDDEN, CHANNELS, ROWS = 2048, 8192, 1344, 524288
KINDS = ("gemm", "conv", "gather", "constant", "fp16", "int8", "external")
# Also measured on request (``python bench/memory_kinds.py external-many if loop ...``): more of the
# shapes users' models take; see ``build_more``.
MORE = ("external-many", "if", "loop", "dynamic-int8", "qdq-int8", "trees")
FEATURES = 16  # the tree ensemble's inputs


def build(kind: str, path: Path) -> None:
    """The model of ``kind`` at ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if kind in MORE:
        build_more(kind, path)
        return
    rng = np.random.default_rng(0)

    def weights(shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(dtype)

    nodes: list[Any] = []
    inits: list[Any] = []
    names = ["x", "h0", "h1", "h2", "y"]
    dims = [WIDTH, HIDDEN, WIDTH, HIDDEN, WIDTH]
    x_type, x_shape, y_shape = TensorProto.FLOAT, [None, WIDTH], [None, WIDTH]
    for i in range(4):
        a, w, out = names[i], f"w{i}", names[i + 1]
        if kind in ("gemm", "external"):
            inits += [
                numpy_helper.from_array(weights((dims[i + 1], dims[i])), w),
                numpy_helper.from_array(weights((dims[i + 1],)), f"b{i}"),
            ]
            nodes.append(helper.make_node("Gemm", [a, w, f"b{i}"], [out], transB=1))
        elif kind == "conv":
            inits += [
                numpy_helper.from_array(weights((CHANNELS, CHANNELS, 3, 3)) * 0.1, w),
                numpy_helper.from_array(weights((CHANNELS,)), f"b{i}"),
            ]
            nodes.append(helper.make_node("Conv", [a, w, f"b{i}"], [out], pads=[1, 1, 1, 1]))
            x_shape = y_shape = [None, CHANNELS, 4, 4]
        elif kind == "constant":
            value = numpy_helper.from_array(weights((dims[i], dims[i + 1])), w)
            nodes += [
                helper.make_node("Constant", [], [w], value=value),
                helper.make_node("MatMul", [a, w], [out]),
            ]
        elif kind == "fp16":
            inits.append(numpy_helper.from_array(weights((dims[i], dims[i + 1]), np.float16), w))
            nodes += [
                helper.make_node("Cast", [w], [f"{w}f"], to=TensorProto.FLOAT),
                helper.make_node("MatMul", [a, f"{w}f"], [out]),
            ]
        elif kind == "int8":
            inits += [
                numpy_helper.from_array(rng.integers(-127, 127, (dims[i], dims[i + 1]), dtype=np.int8), w),
                numpy_helper.from_array(np.array(0.001, np.float32), f"s{i}"),
                numpy_helper.from_array(np.array(0, np.int8), f"z{i}"),
            ]
            nodes += [
                helper.make_node("DequantizeLinear", [w, f"s{i}", f"z{i}"], [f"{w}f"]),
                helper.make_node("MatMul", [a, f"{w}f"], [out]),
            ]
    if kind == "gather":
        inits = [numpy_helper.from_array(weights((ROWS, 128)), "table")]
        nodes = [
            helper.make_node("Gather", ["table", "x"], ["rows"], axis=0),
            helper.make_node("ReduceMean", ["rows"], ["y"], axes=[1], keepdims=0),
        ]
        x_type, x_shape, y_shape = TensorProto.INT64, [None, None], [None, 128]
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("x", x_type, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "external":
        onnx.save_model(model, str(path), save_as_external_data=True, location=f"{path.name}.data")
    else:
        onnx.save_model(model, str(path))


def build_more(kind: str, path: Path) -> None:
    """The models of ``MORE`` at ``path``: 256 MiB of float32 weights (64 MiB once quantized; the
    tree ensemble: 60 trees of a random forest, a 58 MB file) in the places users' models keep them:
    external data in one file per tensor (``all_tensors_to_one_file=False``), the branches of an
    ``If``, the body of a ``Loop``, onnxruntime's ``quantize_dynamic`` (MatMulInteger) and
    ``quantize_static`` (QDQ) of MatMul layers, skl2onnx's ``RandomForestRegressor``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    floats = helper.make_tensor_value_info
    x_info, y_info = (
        floats("x", TensorProto.FLOAT, [None, WIDTH]),
        floats("y", TensorProto.FLOAT, [None, WIDTH]),
    )

    def matmuls(prefix: str, first: str, last: str) -> tuple[list[Any], list[Any]]:
        """Four MatMul layers WIDTH -> HIDDEN -> WIDTH -> HIDDEN -> WIDTH (256 MiB)."""
        dims, names = (
            [WIDTH, HIDDEN, WIDTH, HIDDEN, WIDTH],
            [first, *(f"{prefix}h{i}" for i in range(3)), last],
        )
        inits = [
            numpy_helper.from_array(
                rng.standard_normal((dims[i], dims[i + 1]), dtype=np.float32) * 0.02, f"{prefix}w{i}"
            )
            for i in range(4)
        ]
        nodes = [helper.make_node("MatMul", [names[i], f"{prefix}w{i}"], [names[i + 1]]) for i in range(4)]
        return nodes, inits

    def save(graph: Any) -> Any:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return model

    if kind == "trees":
        from skl2onnx import to_onnx
        from sklearn.ensemble import RandomForestRegressor

        x = rng.standard_normal((20000, FEATURES)).astype(np.float32)
        y = x[:, 0] * 2 + np.sin(x[:, 1]) + rng.standard_normal(20000) * 0.1
        forest = RandomForestRegressor(n_estimators=60, random_state=0, n_jobs=1).fit(x, y)
        onnx.save_model(to_onnx(forest, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}), str(path))
    elif kind == "if":  # sum(x) > 0 picks one of two branches of 128 MiB each
        nodes, inits = matmuls("", "x", "y")
        branches = [
            helper.make_graph(
                nodes[2 * i : 2 * i + 2],
                f"branch{i}",
                [],
                [floats(f"y{i}", TensorProto.FLOAT, [None, WIDTH])],
                inits[2 * i : 2 * i + 2],
            )
            for i in range(2)
        ]
        branches[0].node[1].output[0], branches[1].node[0].input[0] = "y0", "x"
        branches[1].node[1].output[0] = "y1"
        zero = numpy_helper.from_array(np.array(0, np.float32), "zero")
        top = [
            helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
            helper.make_node("Greater", ["s", "zero"], ["c"]),
            helper.make_node("If", ["c"], ["y"], then_branch=branches[0], else_branch=branches[1]),
        ]
        onnx.save_model(save(helper.make_graph(top, kind, [x_info], [y_info], [zero])), str(path))
    elif kind == "loop":  # two turns of tanh(h @ 4 layers)
        nodes, inits = matmuls("", "h_in", "t")
        nodes += [
            helper.make_node("Tanh", ["t"], ["h_out"]),
            helper.make_node("Identity", ["c_in"], ["c_out"]),
        ]
        scalar = [floats("i", TensorProto.INT64, []), floats("c_in", TensorProto.BOOL, [])]
        body_graph = helper.make_graph(
            nodes, "body", [*scalar, floats("h_in", TensorProto.FLOAT, [None, WIDTH])],
            [floats("c_out", TensorProto.BOOL, []), floats("h_out", TensorProto.FLOAT, [None, WIDTH])], inits,
        )  # fmt: skip
        turns = [
            numpy_helper.from_array(np.array(2, np.int64), "n"),
            numpy_helper.from_array(np.array(True), "c"),
        ]
        loop = helper.make_node("Loop", ["n", "c", "x"], ["y"], body=body_graph)
        onnx.save_model(save(helper.make_graph([loop], kind, [x_info], [y_info], turns)), str(path))
    else:
        nodes, inits = matmuls("", "x", "y")
        model = save(helper.make_graph(nodes, kind, [x_info], [y_info], inits))
        if kind == "external-many":
            onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=False)
            return
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )

        source = path.with_name("float.onnx")
        onnx.save_model(model, str(source))
        if kind == "dynamic-int8":
            quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8)
        else:
            samples = iter([{"x": np.linspace(-1, 1, WIDTH, dtype=np.float32).reshape(1, WIDTH)}])

            class Samples(CalibrationDataReader):  # type: ignore[misc]
                def get_next(self) -> Any:
                    return next(samples, None)

            quantize_static(
                str(source), str(path), Samples(), quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8
            )
        source.unlink()


def body(kind: str) -> bytes:
    """A request of two rows for the model of ``kind``."""
    if kind == "trees":
        x: Any = np.linspace(-1, 1, 2 * FEATURES, dtype=np.float32).reshape(2, FEATURES)
    elif kind == "gather":
        x = (np.arange(64, dtype=np.int64) * 4099 % ROWS).reshape(2, 32)
    elif kind == "conv":
        x = np.linspace(-1, 1, 2 * CHANNELS * 16, dtype=np.float32).reshape(2, CHANNELS, 4, 4)
    else:
        x = np.linspace(-1, 1, 2 * WIDTH, dtype=np.float32).reshape(2, WIDTH)
    return json.dumps(x.tolist()).encode()


def project(root: Path, model: Path, replicas: int) -> Path:
    root.mkdir(parents=True)
    for source in model.parent.iterdir():  # the model with its external data
        os.link(source, root / source.name)
    (root / "cortex.yaml").write_text(
        "- kind: deployment\n  name: bench\n- kind: api\n  name: kind\n  onnx:\n    model: model.onnx\n"
        f"  compute:\n    min_replicas: {replicas}\n    max_replicas: {replicas}\n    cpu: 0.1\n"
        "  timeout: 120\n"
    )
    return root


def serve(work: Path, kind: str, replicas: int, share: bool) -> tuple[float, str]:
    """The replicas' summed PSS (MiB) once each answered, and a digest of one answer."""
    env = dict(os.environ, INFERD_HOME=str(work / "home"), INFERD_SHARE_WEIGHTS="1" if share else "0")
    root = project(work / f"{kind}-{replicas}-{int(share)}", work / kind / "model.onnx", replicas)
    served = Served(root, env, replicas)
    try:
        served.wait("/bench/kind")
        served.load("/bench/kind", body(kind))
        answer = requests.post(served.base + "/bench/kind", data=body(kind), timeout=300)
        digest = (
            hashlib.sha256(answer.content).hexdigest()[:12] if answer.ok else f"HTTP {answer.status_code}"
        )
        return sum(served.pss()[0]), digest
    finally:
        served.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "kinds",
        nargs="*",
        metavar="KIND",
        help=f"any of {', '.join(KINDS + MORE)} (default: {', '.join(KINDS)})",
    )
    kinds = parser.parse_args().kinds or list(KINDS)
    if unknown := sorted(set(kinds) - set(KINDS + MORE)):
        parser.error(f"unknown model kinds: {', '.join(unknown)}")
    work = Path(tempfile.mkdtemp(prefix="inferd-memory-kinds-"))
    try:
        print(
            "| model | 1 replica (MiB) | 4 replicas (MiB) | 4 / 1 "
            "| unshared 1 / 4 (MiB) | unshared 4 / 1 | answers |"
        )
        print("|---|---|---|---|---|---|---|")
        for kind in kinds:
            build(kind, work / kind / "model.onnx")
            runs = {(n, share): serve(work, kind, n, share) for share in (True, False) for n in (1, 4)}
            pss = {key: value[0] for key, value in runs.items()}
            same = "identical" if len({digest for _, digest in runs.values()}) == 1 else "DIFFER"
            print(
                f"| {kind} | {pss[1, True]:.0f} | {pss[4, True]:.0f} | {pss[4, True] / pss[1, True]:.2f}x "
                f"| {pss[1, False]:.0f} / {pss[4, False]:.0f} | {pss[4, False] / pss[1, False]:.2f}x "
                f"| {same} |",
                flush=True,
            )
            shutil.rmtree(work / kind)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
