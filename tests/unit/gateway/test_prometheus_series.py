"""Series a Prometheus alert needs are there before the event they count (a series that
appears only with its first event is a query's "no data", never its 0)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from inferd.config.load import load_project
from inferd.gateway.app import Gateway
from inferd.gateway.prometheus import SEEDED_CODES, exposition
from inferd.replica.handle import ReplicaHandle


def samples(gateway: Gateway, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition(gateway).decode())
        for sample in family.samples
        if sample.name == name
    }


def test_an_api_with_no_ready_replica_says_0_ready() -> None:
    # `inferd_replicas{state="ready"} == 0` is how an alert asks for an API that cannot serve;
    # with no line for an API whose replicas all failed to load, it never fired
    gateway = Gateway()
    gateway.replica_states = lambda: {"shop/broken": {}, "shop/ok": {"ready": 1, "starting": 1}}
    replicas = samples(gateway, "inferd_replicas")
    states = ("starting", "ready", "retiring", "failed", "closed")
    for api, ready, starting in (("broken", 0, 0), ("ok", 1, 1)):
        counts = {
            dict(labels)["state"]: value for labels, value in replicas.items() if dict(labels)["api"] == api
        }
        assert counts == {state: 0 for state in states} | {"ready": ready, "starting": starting}


def test_an_api_s_requests_are_counted_from_0_before_its_first_error(tmp_path: Path) -> None:
    # Prometheus' rate() and increase() start a series at its first sample: the 7 errors that made
    # `inferd_requests_total{code="500"}` appear at 7 read as an increase of 0, so the first
    # errors of an API never fired an alert on them
    (tmp_path / "cortex.yaml").write_text(
        "- kind: deployment\n  name: shop\n- kind: api\n  name: a\n  predictor: {path: p.py}\n"
    )
    (tmp_path / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    gateway = Gateway()
    for config in load_project(tmp_path).apis:
        gateway.add_api(config)

    def key(protocol: str, code: int) -> tuple[tuple[str, str], ...]:
        return (("api", "a"), ("code", str(code)), ("deployment", "shop"), ("protocol", protocol))

    fresh = samples(gateway, "inferd_requests_total")
    assert fresh == {key("cortex", code): 0 for code in SEEDED_CODES}
    assert {"200", "400", "500", "503", "504"} <= {str(code) for code in SEEDED_CODES}
    gateway.apis["shop/a"].stats.add("cortex", 500, 1.0, 0.01, 0.0, b"")
    gateway.apis["shop/a"].stats.add("v2", 200, 1.0, 0.01, 0.0, b"")
    after = samples(gateway, "inferd_requests_total")
    # a protocol's first answers make its series appear; from then on its errors count from 0 too
    v2 = {key("v2", code): 0 for code in SEEDED_CODES}
    assert after == {**fresh, **v2, key("cortex", 500): 1, key("v2", 200): 1}


def test_a_regression_tracker_s_counts_start_at_0(tmp_path: Path) -> None:
    # `rate(inferd_prediction_value_sum[1m]) / rate(inferd_prediction_value_count[1m])` (the mean
    # prediction) read no data for the predictions that made the summary appear
    (tmp_path / "cortex.yaml").write_text(
        "- kind: deployment\n  name: shop\n- kind: api\n  name: a\n  predictor: {path: p.py}\n"
        "  tracker: {model_type: regression}\n"
    )
    (tmp_path / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    gateway = Gateway()
    for config in load_project(tmp_path).apis:
        gateway.add_api(config)
    ids = (("api", "a"), ("deployment", "shop"))
    assert samples(gateway, "inferd_prediction_value_count") == {ids: 0}
    assert samples(gateway, "inferd_prediction_value_sum") == {ids: 0}
    assert samples(gateway, "inferd_prediction_value_min") == {}  # no value yet: no smallest


def test_an_api_known_to_stream_counts_its_streams_from_0(tmp_path: Path) -> None:
    # `increase(inferd_streams_total[5m])` read 0 for the streams that made the family appear
    (tmp_path / "cortex.yaml").write_text(
        "- kind: deployment\n  name: text\n- kind: api\n  name: gen\n  predictor: {path: p.py}\n"
        "- kind: api\n  name: plain\n  predictor: {path: p.py}\n"
    )
    (tmp_path / "p.py").write_text("def predict(sample, metadata):\n    yield sample\n")
    gateway = Gateway()
    for config in load_project(tmp_path).apis:
        gateway.add_api(config)
    for api, pipeline in (("gen", False), ("plain", True)):  # as their replicas said when ready
        replica = ReplicaHandle(f"text/{api}", f"{api}-1", "v1", events=None)  # type: ignore[arg-type]
        replica.pipeline = pipeline
        gateway.replica_ready(f"text/{api}", replica)
    ids = (("api", "gen"), ("deployment", "text"))
    assert samples(gateway, "inferd_streams_total") == {ids: 0}
    assert samples(gateway, "inferd_stream_items_total") == {ids: 0}
    assert samples(gateway, "inferd_stream_duration_seconds_count") == {ids: 0}
    assert samples(gateway, "inferd_stream_first_item_seconds_count") == {ids: 0}


def test_a_shadow_api_counts_the_copies_it_answers_from_0(tmp_path: Path) -> None:
    # the copies a shadow answered between two scrapes made its `protocol="shadow"` series appear
    # at their count: `increase()` read 0 for them
    (tmp_path / "cortex.yaml").write_text(
        "- kind: deployment\n  name: shop\n"
        "- kind: api\n  name: a\n  predictor: {path: p.py}\n  shadow: {api: b}\n"
        "- kind: api\n  name: b\n  predictor: {path: p.py}\n"
    )
    (tmp_path / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    gateway = Gateway()
    for config in load_project(tmp_path).apis:
        gateway.add_api(config)
    shadow = {
        dict(labels)["code"]: value
        for labels, value in samples(gateway, "inferd_requests_total").items()
        if dict(labels)["protocol"] == "shadow"
    }
    assert shadow == {str(code): 0 for code in SEEDED_CODES}  # b's, the shadow's, only
