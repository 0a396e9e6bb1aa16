"""Adaptive batching: order, per-sample errors, the size limit, and no waiting when idle."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server, make_project, wait_for

Serve = Callable[..., Server]
# A sample with a "gate" waits until that file exists: it holds the replica while the test
# queues requests behind it, however long that takes on a busy machine.
HANDLER = """
import os, time

def pre_inference(sample, signature, metadata):
    if sample.get("fail"):
        raise ValueError("sample %d asked to fail" % sample["i"])
    while sample.get("gate") and not os.path.exists(sample["gate"]):
        time.sleep(0.01)
    i = sample["i"]
    return {"a": [[i, i]], "b": [[0.5, 1]]}

def post_inference(prediction, signature, metadata):
    total = prediction[0]
    return {"rows": len(total), "sum": total[0].tolist()}
"""


def batch_sizes(server: Server) -> dict[int, float]:
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    return {
        int(sample.labels["size"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "inferd_batches_total"
    }


def replicas(server: Server, path: str) -> dict[str, int]:
    """The API's replica counts: ready, busy (requests running) and queued (waiting)."""
    counts: dict[str, int] = requests.get(f"{server.url}{path}", timeout=10).json()["replicas"]
    return counts


def hold_and_queue(
    server: Server,
    path: str,
    pool: ThreadPoolExecutor,
    gate: Path,
    blocker: object,
    bodies: list[object],
    headers: dict[str, str] | None = None,
) -> tuple[Future[requests.Response], list[Future[requests.Response]]]:
    """The blocker holds the replica until ``gate`` exists; ``bodies`` are sent (with
    ``headers``) and queued behind it; then the gate opens. Every body waits: batches must
    form, whatever the timing."""
    url = f"{server.url}{path}"
    held = pool.submit(requests.post, url, json=blocker, timeout=60)
    wait_for(lambda: replicas(server, path)["busy"] == 1, 60, "the blocker running")
    sent = [pool.submit(requests.post, url, json=body, headers=headers, timeout=60) for body in bodies]
    wait_for(lambda: replicas(server, path)["queued"] == len(bodies), 60, "the requests queued")
    gate.touch()
    return held, sent


def project(root: Path, model: Path, interval: float = 0.0) -> Path:
    # One replica: the autoscaler cannot add an idle one that takes lone requests.
    return make_project(
        root,
        "- kind: deployment\n  name: b\n- kind: api\n  name: add\n  onnx:\n    model: add.onnx\n"
        f"    request_handler: h.py\n  batching:\n    max_batch_size: 4\n    batch_interval: {interval}\n"
        "  compute:\n    max_replicas: 1\n",
        {"h.py": HANDLER},
        {"add.onnx": model},
    )


def test_batches_keep_order_and_fail_samples_alone(
    serve: Serve, tmp_path: Path, two_input_model: Path
) -> None:
    server = serve(project(tmp_path / "p", two_input_model))
    bodies: list[object] = [{"i": i} for i in range(1, 15)]
    bodies[3] = {"i": 4, "fail": True}  # a handler error
    bodies[6] = {"i": "not a number"}  # a value that does not fit the model
    bodies[9] = "not an object"
    gate = tmp_path / "go"
    with ThreadPoolExecutor(16) as pool:
        blocker, sent = hold_and_queue(server, "/b/add", pool, gate, {"i": 0, "gate": str(gate)}, bodies)
        answers = [future.result() for future in sent]
        assert blocker.result().json() == {"rows": 1, "sum": [0.5, 1.0]}
    for i, (body, answer) in enumerate(zip(bodies, answers, strict=True), start=1):
        if i == 4:
            assert answer.status_code == 500
            assert (
                answer.json()["error"] == "pre_inference in h.py failed: ValueError: sample 4 asked to fail"
            )
        elif i in (7, 10):
            assert answer.status_code in (400, 500), (body, answer.text)
        else:
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"rows": 1, "sum": [i + 0.5, i + 1.0]}  # its own answer, in order
    sizes = batch_sizes(server)
    assert max(sizes) <= 4  # never above max_batch_size
    assert max(sizes) > 1  # the queued requests did go as batches
    assert sum(size * count for size, count in sizes.items()) == 15


def test_a_lone_request_goes_at_once(serve: Serve, tmp_path: Path, two_input_model: Path) -> None:
    server = serve(project(tmp_path / "p", two_input_model, interval=10.0))
    # With a 10 s batch_interval (the most allowed), a request that waited for company would
    # miss this deadline; one that did not has 9 s, however busy the machine.
    answer = requests.post(f"{server.url}/b/add", json={"i": 3}, timeout=9)
    assert answer.json() == {"rows": 1, "sum": [3.5, 4.0]}
    assert batch_sizes(server) == {1: 1.0}


def test_batches_form_oldest_first_with_an_interval_under_concurrent_clients(
    serve: Serve, tmp_path: Path, two_input_model: Path
) -> None:
    server = serve(project(tmp_path / "p", two_input_model, interval=0.01))
    url = f"{server.url}/b/add"

    def client(start: int) -> list[tuple[int, requests.Response]]:
        with requests.Session() as session:
            return [(i, session.post(url, json={"i": i}, timeout=30)) for i in range(start, start + 12)]

    with ThreadPoolExecutor(16) as pool:
        answers = [pair for batch in pool.map(client, range(0, 16 * 100, 100)) for pair in batch]
    for i, answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"rows": 1, "sum": [i + 0.5, i + 1.0]}
    sizes = batch_sizes(server)
    assert max(sizes) > 1  # batches did form (the held replica is not taken by a newcomer alone)
    assert sum(size * count for size, count in sizes.items()) == len(answers)


RAGGED = """
def pre_inference(sample, signature, metadata):
    import os, time
    with open("calls.txt", "a") as calls:
        calls.write("%d\\n" % sample["i"])
    while sample.get("gate") and not os.path.exists(sample["gate"]):
        time.sleep(0.01)
    return sample["x"]

def post_inference(prediction, signature, metadata):
    return prediction[0].tolist()
"""


def test_ragged_samples_each_get_their_own_answer_and_one_pre_inference(serve: Serve, tmp_path: Path) -> None:
    from onnx import TensorProto, helper, save_model

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None])
    total = helper.make_tensor_value_info("total", TensorProto.FLOAT, [None])
    node = helper.make_node("ReduceSum", ["x"], ["total"], axes=[1], keepdims=0)
    model = helper.make_model(
        helper.make_graph([node], "rowsum", [x], [total]), opset_imports=[helper.make_opsetid("", 11)]
    )
    model.ir_version = 8
    save_model(model, str(tmp_path / "rowsum.onnx"))
    root = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: b\n- kind: api\n  name: sum\n  onnx:\n    model: rowsum.onnx\n"
        "    request_handler: h.py\n  batching:\n    max_batch_size: 8\n  compute:\n    max_replicas: 1\n",
        {"h.py": RAGGED},
        {"rowsum.onnx": tmp_path / "rowsum.onnx"},
    )
    server = serve(root)
    rows = [[[1, 2]], [[1, 2, 3]], [[4, 5]], [[1, 2, 3, 4]], [[10, 20], [30, 40]], [[7]], [[2, 2, 2]]]
    gate = tmp_path / "go"
    bodies: list[object] = [{"i": i, "x": x} for i, x in enumerate(rows, 1)]
    with ThreadPoolExecutor(8) as pool:
        blocker, sent = hold_and_queue(
            server, "/b/sum", pool, gate, {"i": 0, "x": [[1.0]], "gate": str(gate)}, bodies
        )
        answers = [future.result() for future in sent]
        assert blocker.result().json() == [1.0]
    for sample, answer in zip(rows, answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert answer.json() == [float(sum(row)) for row in sample]
    calls = sorted(int(line) for line in (root / "calls.txt").read_text().split())
    assert calls == list(range(len(rows) + 1))  # pre_inference exactly once per sample
    assert max(batch_sizes(server)) > 1


def test_a_streaming_predictor_with_batching_is_refused_alone_as_in_a_batch(
    serve: Serve, tmp_path: Path
) -> None:
    # A batch cannot stream, so an iterator is refused whether the request went alone or not:
    # a lone request that streamed would make the same client fail only under load.
    root = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: s\n- kind: api\n  name: gen\n  predictor:\n    path: p.py\n"
        "  batching:\n    max_batch_size: 4\n",
        {"p.py": "def predict(sample, metadata):\n    yield {'i': 0}\n    yield {'i': 1}\n"},
    )
    server = serve(root)
    for accept in ("text/event-stream", "application/x-ndjson"):
        answer = requests.post(f"{server.url}/s/gen", json={}, headers={"Accept": accept}, timeout=30)
        assert answer.status_code == 500
        assert "an iterator streams only without batching" in answer.json()["error"]


def _one_replica_batching(tmp_path: Path, name: str, graph: Any, handler: str) -> Path:
    """A project of one API ``b/NAME`` serving ``graph`` (opset 13) with ``handler``, batches of
    up to 4 on exactly one replica."""
    from onnx import helper, save_model

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save_model(model, str(tmp_path / f"{name}.onnx"))
    return make_project(
        tmp_path / "p",
        f"- kind: deployment\n  name: b\n- kind: api\n  name: {name}\n  onnx:\n    model: {name}.onnx\n"
        "    request_handler: h.py\n  batching:\n    max_batch_size: 4\n  compute:\n    max_replicas: 1\n",
        {"h.py": handler},
        {f"{name}.onnx": tmp_path / f"{name}.onnx"},
    )


LABELLED = """
import os, time

def pre_inference(sample, signature, metadata):
    while sample.get("gate") and not os.path.exists(sample["gate"]):
        time.sleep(0.01)
    return [[sample["i"], sample["i"]]]

def post_inference(prediction, signature, metadata):
    return {"rows": prediction[0].tolist(), "labels": prediction[1].tolist()}
"""


def test_an_output_of_fixed_length_is_never_cut_between_the_samples_of_a_batch(
    serve: Serve, tmp_path: Path
) -> None:
    # rows [N, 2] and the model's 3 labels [3]: three samples run together had 3 rows of labels,
    # and each got one label as if it were its row
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    names = np.array(["setosa", "versicolor", "virginica"], dtype=np.object_)
    labels = numpy_helper.from_array(names, "names")
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["rows"]),
            helper.make_node("Constant", [], ["labels"], value=labels),
        ],
        "labelled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [
            helper.make_tensor_value_info("rows", TensorProto.FLOAT, [None, 2]),
            helper.make_tensor_value_info("labels", TensorProto.STRING, [3]),
        ],
    )
    server = serve(_one_replica_batching(tmp_path, "labelled", graph, LABELLED))
    gate = tmp_path / "go"
    bodies: list[object] = [{"i": i} for i in (1, 2, 3)]
    with ThreadPoolExecutor(4) as pool:
        blocker, sent = hold_and_queue(server, "/b/labelled", pool, gate, {"i": 0, "gate": str(gate)}, bodies)
        answers = [future.result() for future in sent]
        assert blocker.result().status_code == 200
    for i, answer in zip((1, 2, 3), answers, strict=True):
        assert answer.json() == {"rows": [[i, i]], "labels": ["setosa", "versicolor", "virginica"]}, (
            answer.text
        )
    assert max(batch_sizes(server)) == 3  # the three went to the replica as one batch


WHERE = """
import os, time

def pre_inference(sample, signature, metadata):
    while sample.get("gate") and not os.path.exists(sample["gate"]):
        time.sleep(0.01)
    return sample["x"]

def post_inference(prediction, signature, metadata):
    return prediction[0].tolist()
"""


def test_an_output_whose_free_first_dimension_is_not_the_batch_never_hands_a_sample_anothers_rows(
    serve: Serve, tmp_path: Path
) -> None:
    # NonZero then Transpose: [k, 2], the (row, column) of each non-zero value. Two samples of one
    # row with one non-zero each gave k = 2 rows, as many as the batch: the second sample got
    # [1, 0] (its value's place in the batch) instead of [0, 0] (its place in its own input)
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("NonZero", ["x"], ["nz"]),
            helper.make_node("Transpose", ["nz"], ["where"], perm=[1, 0]),
        ],
        "where",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("where", TensorProto.INT64, [None, 2])],
    )
    server = serve(_one_replica_batching(tmp_path, "where", graph, WHERE))
    gate = tmp_path / "go"
    bodies: list[object] = [{"x": [[0, 1]]}, {"x": [[1, 0]]}]
    with ThreadPoolExecutor(4) as pool:
        blocker, sent = hold_and_queue(
            server, "/b/where", pool, gate, {"x": [[1, 1]], "gate": str(gate)}, bodies
        )
        answers = [future.result() for future in sent]
        assert blocker.result().json() == [[0, 0], [0, 1]]
    assert [answer.json() for answer in answers] == [[[0, 1]], [[0, 0]]]
    assert max(batch_sizes(server)) == 2  # the two went to the replica as one batch


PREDICTOR = """
import os, time

from inferd import tracecontext

def predict(sample, metadata):
    if sample.get("trace"):
        return {"i": sample["i"], "trace": tracecontext.trace_id()}
    with open("calls.txt", "a") as calls:
        calls.write("%d\\n" % sample["i"])
    while sample.get("gate") and not os.path.exists(sample["gate"]):
        time.sleep(0.01)
    if sample.get("fail"):
        raise ValueError("sample %d asked to fail" % sample["i"])
    return {"i": sample["i"]}
"""


def batched_behind_one(
    serve: Serve, tmp_path: Path, predictor: str, bodies: list[object]
) -> tuple[Path, Server, list[requests.Response]]:
    """Serve ``predictor`` (a Python predictor, batches of up to 4, one replica) and send
    ``bodies`` while a first request (``{"i": 0}``, answered as itself) holds the replica, so they
    reach it as one batch; the project, the server and their answers."""
    root = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: b\n- kind: api\n  name: py\n  predictor:\n    path: p.py\n"
        "  batching:\n    max_batch_size: 4\n  compute:\n    max_replicas: 1\n",
        {"p.py": predictor},
    )
    server = serve(root)
    gate = tmp_path / "go"
    with ThreadPoolExecutor(4) as pool:
        blocker, sent = hold_and_queue(server, "/b/py", pool, gate, {"i": 0, "gate": str(gate)}, bodies)
        answers = [future.result() for future in sent]
        assert blocker.result().json() == {"i": 0}
    return root, server, answers


def test_a_python_predictor_with_batching_gets_each_sample_alone_and_answers_each_its_own(
    serve: Serve, tmp_path: Path
) -> None:
    root, server, answers = batched_behind_one(
        serve, tmp_path, PREDICTOR, [{"i": i, "fail": i == 2} for i in (1, 2, 3)]
    )
    assert [answer.status_code for answer in answers] == [200, 500, 200]
    assert answers[0].json() == {"i": 1} and answers[2].json() == {"i": 3}
    assert "sample 2 asked to fail" in answers[1].json()["error"]
    assert sorted(int(line) for line in (root / "calls.txt").read_text().split()) == [0, 1, 2, 3]
    assert max(batch_sizes(server)) == 3  # the three went to the replica as one batch

    # README: tracecontext is None for a batched request (a lone request has its trace).
    trace = "0af7651916cd43dd8448eb211c80319c"
    traced = {"traceparent": f"00-{trace}-b7ad6b7169203331-01"}
    alone = requests.post(server.url + "/b/py", json={"i": 9, "trace": True}, headers=traced, timeout=60)
    assert alone.json() == {"i": 9, "trace": trace}
    gate = tmp_path / "go-again"
    bodies: list[object] = [{"i": i, "trace": True} for i in (4, 5)]
    with ThreadPoolExecutor(3) as pool:
        blocker, sent = hold_and_queue(
            server, "/b/py", pool, gate, {"i": 0, "gate": str(gate)}, bodies, traced
        )
        assert [future.result().json() for future in sent] == [
            {"i": 4, "trace": None},
            {"i": 5, "trace": None},
        ]
        assert blocker.result().json() == {"i": 0}
    assert batch_sizes(server).get(2) == 1  # the two traced ones went as one batch


STUCK = """
import os, time

def pre_inference(sample, signature, metadata):
    while sample.get("gate") and not os.path.exists(sample["gate"]):
        time.sleep(0.01)
    if sample.get("crash"):
        os._exit(3)
    i = sample["i"]
    return {"a": [[i, i]], "b": [[0.5, 1]]}
"""


def test_a_sample_that_kills_or_holds_its_replica_answers_every_request_of_its_batch_with_a_5xx(
    serve: Serve, tmp_path: Path, two_input_model: Path
) -> None:
    root = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: b\n- kind: api\n  name: add\n  onnx:\n    model: add.onnx\n"
        "    request_handler: h.py\n  batching:\n    max_batch_size: 4\n  timeout: 8\n"
        "  compute:\n    max_replicas: 1\n",
        {"h.py": STUCK},
        {"add.onnx": two_input_model},
    )
    server = serve(root)
    never = str(tmp_path / "never")  # a gate that never opens: that sample holds its replica
    odds: tuple[dict[str, object], ...] = ({"crash": True}, {"gate": never})
    for n, odd in enumerate(odds):
        gate = tmp_path / f"go{n}"
        bodies: list[object] = [{"i": 1}, {"i": 2, **odd}, {"i": 3}]
        with ThreadPoolExecutor(4) as pool:
            blocker, sent = hold_and_queue(server, "/b/add", pool, gate, {"i": 0, "gate": str(gate)}, bodies)
            assert blocker.result().status_code == 200
            answers = [future.result() for future in sent]  # none hangs
        expected = 503 if n == 0 else 504
        assert [answer.status_code for answer in answers] == [expected] * 3, [a.text for a in answers]
        wait_for(lambda: replicas(server, "/b/add")["ready"] == 1, 120, "a new replica")
    answer = requests.post(f"{server.url}/b/add", json={"i": 4}, timeout=30)
    assert answer.json() == [[[4.5, 5.0]]]


UNSHOWABLE_KEY = """
import os, time


class Key:  # hashable, but neither JSON text nor showable
    def __repr__(self):
        raise RuntimeError("no repr")


def predict(sample, metadata):
    while sample.get("gate") and not os.path.exists(sample["gate"]):
        time.sleep(0.01)
    return {Key(): 1} if sample.get("bad") else {"i": sample["i"]}
"""


def test_an_answer_that_fails_to_encode_fails_alone_in_its_batch(serve: Serve, tmp_path: Path) -> None:
    # Naming the key JSON cannot hold quoted its repr(), which raised: in a batch that escaped the
    # replica's loop, the replica died, and every other request of the batch was a 503.
    _, server, answers = batched_behind_one(
        serve, tmp_path, UNSHOWABLE_KEY, [{"i": 1}, {"i": 2, "bad": True}, {"i": 3}]
    )
    assert [answer.status_code for answer in answers] == [200, 500, 200]
    assert answers[0].json() == {"i": 1} and answers[2].json() == {"i": 3}
    assert answers[1].json()["error"] == (
        "predict returned a value that is not JSON-serialisable: a dict key of type Key: "
        "JSON keys are strings (numbers, booleans and None are written as text)"
    )
    assert max(batch_sizes(server)) == 3  # the three went to the replica as one batch
    # the replica lived on: the one that started is the only one (its own "ready" line may be
    # written after serve's "is live", so the log is not cut there)
    assert server.log().count("replica is ready") == 1
