"""A splitter's API that cannot serve passes its share to the others that can, by their weights."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from inferd.config.schema import SplitterConfig, TrafficSplitter
from inferd.gateway.traffic import Splitter


@dataclass
class FakeQueue:
    """What ``Splitter.pick`` reads of an API's queue."""

    key: str
    error: str | None = None
    ready: bool = True
    tensors: bool = True  # an ONNX or TensorFlow API (False: a Python predictor)


def splitter(weights: dict[str, int]) -> Splitter:
    block = TrafficSplitter.model_validate(
        {
            "kind": "traffic_splitter",
            "name": "front",
            "apis": [{"name": name, "weight": weight} for name, weight in weights.items()],
        }
    )
    return Splitter(SplitterConfig(splitter=block, deployment="d", endpoint="/d/front"))


def picks(
    front: Splitter, queues: dict[str, FakeQueue], times: int = 4000, tensors: bool = False
) -> Counter[str]:
    got: Counter[str] = Counter()
    for _ in range(times):
        queue = cast(Any, front.pick(cast(Any, queues), tensors=tensors))
        got[queue.key] += 1
    return got


def test_a_failing_apis_share_goes_to_the_others_by_their_weights() -> None:
    front = splitter({"a": 50, "b": 30, "c": 20})
    queues = {f"d/{name}": FakeQueue(f"d/{name}") for name in "abc"}
    queues["d/a"].error, queues["d/a"].ready = "its replicas keep stopping", False
    got = picks(front, queues)
    assert got["d/a"] == 0
    # b and c share everything 30:20 (2,400 and 1,600 expected; 5 sigma is about 150)
    assert abs(got["d/b"] - 2400) < 200 and got["d/b"] + got["d/c"] == 4000
    # the splitter's counts are of the APIs that took the requests
    assert front.counts == {"a": 0, "b": got["d/b"], "c": got["d/c"]}


def test_an_api_in_error_with_a_ready_replica_keeps_its_share() -> None:
    # (an error of a new version while the old one still serves: its requests are answered)
    front = splitter({"a": 50, "b": 50})
    queues = {"d/a": FakeQueue("d/a", error="version 2 failed", ready=True), "d/b": FakeQueue("d/b")}
    assert picks(front, queues)["d/a"] > 1500


def test_when_none_can_serve_the_weights_stand() -> None:
    # Every API failing: the request goes where the weights send it and gets that API's 503.
    front = splitter({"a": 80, "b": 20})
    queues = {key: FakeQueue(key, error="broken", ready=False) for key in ("d/a", "d/b")}
    got = picks(front, queues)
    assert got["d/a"] > got["d/b"] > 0
    # A weight of 0 takes nothing, even from a failing API.
    front = splitter({"a": 100, "b": 0})
    queues = {"d/a": FakeQueue("d/a", error="broken", ready=False), "d/b": FakeQueue("d/b")}
    assert picks(front, queues, 200) == Counter({"d/a": 200})


def test_a_predictors_share_of_tensor_requests_goes_to_the_models_by_their_weights() -> None:
    front = splitter({"a": 50, "b": 30, "c": 20})
    queues = {f"d/{name}": FakeQueue(f"d/{name}") for name in "abc"}
    queues["d/c"].tensors = False
    got = picks(front, queues, tensors=True)
    # a and b share everything 50:30 (2,500 and 1,500 expected; 5 sigma is about 150)
    assert got["d/c"] == 0 and abs(got["d/a"] - 2500) < 200 and got["d/a"] + got["d/b"] == 4000
    assert picks(front, queues)["d/c"] > 600  # JSON requests: the predictor keeps its 20%
    # Only predictors: the weights stand (and the one picked says it answers JSON only).
    for queue in queues.values():
        queue.tensors = False
    assert picks(front, queues, 400, tensors=True)["d/c"] > 30


def test_a_tensor_request_while_the_models_fail_gets_their_503_not_a_predictors_400() -> None:
    # A splitter's ONNX API in error, its predictor fine: the predictor's share of V2 infer and
    # TF Serving requests got the predictor's 400 ("answers JSON only"), which a client does not
    # retry, for an outage of the model; now all of them reach the model and its 503.
    front = splitter({"a": 50, "b": 50})
    queues = {"d/a": FakeQueue("d/a", error="broken", ready=False), "d/b": FakeQueue("d/b", tensors=False)}
    assert picks(front, queues, 400, tensors=True) == Counter({"d/a": 400})
    assert picks(front, queues, 400)["d/b"] == 400  # JSON requests: the predictor takes them all
