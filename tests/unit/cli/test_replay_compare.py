"""How replay decides that two answers agree, and its percentiles."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from inferd.cli.comparison import Tally, agree, compare, percentile, unnamed
from inferd.cli.main import cli
from inferd.cli.render import percents
from inferd.cli.replay import judged_version, route_of
from inferd.gateway.shadow import unnamed as shadow_unnamed


def test_numbers_agree_within_the_tolerance_at_any_depth() -> None:
    assert agree({"p": [0.5, 0.25], "label": "cat"}, {"p": [0.5001, 0.25], "label": "cat"}, 1e-3)
    assert not agree({"p": [0.5, 0.25]}, {"p": [0.51, 0.25]}, 1e-3)
    assert not agree({"p": [0.5]}, {"p": [0.5, 0.1]}, 1.0)
    assert not agree({"label": "cat"}, {"label": "dog"}, 1.0)
    assert not agree({"a": 1}, {"b": 1}, 1.0)
    assert not agree(True, 1, 0.0) and agree(1, 1.0, 0.0)
    # Infinity, as TF Serving and V2 answers carry it: the same one agrees, the other does not
    assert agree([float("inf")], [float("inf")], 1e-3) and not agree(float("inf"), float("-inf"), 1.0)


def test_whole_numbers_beyond_a_float_are_compared_exactly() -> None:
    # Two ids 1 apart are one float apart from nothing: at tolerance 0 they differ.
    assert not agree(2**60, 2**60 + 1, 0.0)
    assert agree(2**60, 2**60 + 1, 1.0)
    assert not agree([{"id": 2**63 - 1}], [{"id": 2**63 - 2}], 0.0)


@pytest.mark.parametrize("tolerance", ["nan", "inf", "-1"])
def test_a_tolerance_that_json_cannot_hold_is_a_usage_error(tolerance: str) -> None:
    # -o json prints the tolerance: NaN or Infinity would make the output invalid JSON.
    result = CliRunner().invoke(
        cli, ["replay", "a", "--against", "b", "--tolerance", tolerance, "-o", "json"]
    )
    assert result.exit_code == 2, result.output
    assert "--tolerance" in result.output


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99)) == (50.0, 99.0)
    assert percentile([], 0.5) is None


def test_one_disagreement_in_millions_never_reads_as_whole_agreement() -> None:
    # Was: the agreement was rounded to 6 decimals, so 1 disagreement in 2,000,001 answers read
    # 1.0 ("agreement 100.0%, 1 disagreements"), and promote --min-agreement 1 promoted its API;
    # 1 agreement in as many read 0.0.
    tally = Tally(0.0)
    tally.agreed = 2_000_000  # a payload_log with a large max_size holds that many
    one_short = tally.report(2_000_001)
    assert one_short["disagreements"] == 1 and one_short["agreement"] < 1
    assert percents(one_short["agreement"]) == ["99.99995%"]
    tally.agreed = 1
    assert tally.report(2_000_001)["agreement"] > 0


def test_each_recorded_request_goes_again_to_the_route_of_its_protocol() -> None:
    info = {"url": "http://h:1/custom/route", "endpoint": "/custom/route", "deployment": "d", "name": "b"}

    def route(protocol: str, request: dict[str, object]) -> str | None:
        return route_of({"protocol": protocol, "request": request}, info)

    assert route("cortex", {"json": {"x": 1}}) == "http://h:1/custom/route"
    assert route("generate", {"json": {"x": 1}}) == "http://h:1/custom/route"
    assert route("v2", {"json": {"inputs": []}}) == "http://h:1/v2/models/d.b/infer"
    assert route("tfserving", {"json": {"instances": []}}) == "http://h:1/v1/models/d.b:predict"
    assert route("tfserving", {"json": {"inputs": {}}}) == "http://h:1/v1/models/d.b:predict"
    assert route("tfserving", {"json": {"examples": []}}) is None  # classify or regress: unknown
    assert route("v2", {"base64": "AAAA"}) is None  # binary tensors
    assert route("generate_stream", {"json": {"x": 1}}) is None


def test_v2_answers_are_compared_without_the_model_they_name() -> None:
    answer = {"json": {"model_name": "a", "model_version": "1", "outputs": [1]}}
    assert unnamed("v2", answer) == {"json": {"outputs": [1]}}
    assert unnamed("cortex", answer) == answer
    assert shadow_unnamed(b'{"model_name":"a","model_version":"1","outputs":[1]}') == b',"outputs":[1]}'
    assert shadow_unnamed(b'{"x":1}') == b'{"x":1}'


class _Timed(BaseHTTPRequestHandler):
    """An API behind a slow network: 50 ms on the wire, 0.5 ms in its gateway (Server-Timing)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.05)
        asked = self.headers.get("X-Inferd-Timing") == "1"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        if asked:
            self.send_header("Server-Timing", "inferd;dur=0.5")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def timed_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Timed)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/d/other"
    server.shutdown()
    server.server_close()


def test_replayed_latency_is_the_gateways_as_the_recorded_one_is(timed_url: str) -> None:
    # A record's latency is the gateway's (request in to answer out): the replayed one must be
    # too, not the replay client's round trip (an identical copy looked 8x slower).
    record = {"request_id": "r", "protocol": "cortex", "request": {"json": {}}, "response": {"json": {}}}
    report = compare([({**record, "status": 200, "latency_ms": 0.4}, timed_url)] * 2, 0.0)
    assert report["agreement"] == 1.0
    assert report["latency_ms"]["replayed"] == {"p50": 0.5, "p99": 0.5}


def test_a_shadow_comparison_judges_the_last_version_a_replica_named() -> None:
    # "" is a record whose shadow replica was gone when its answer was recorded: taking it as the
    # version judged let promote skip its check that the same version still runs
    def shadowed(*versions: str) -> list[dict[str, Any]]:
        return [{"shadow": {"api": "candidate", "version": v}} for v in versions]

    assert judged_version(shadowed("v1", "v2", "")) == "v2"
    assert judged_version(shadowed("", "")) == ""
    assert judged_version([{"shadow": {"api": "candidate"}}]) == ""


def test_a_payload_log_line_that_is_no_record_is_left_out_of_a_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A line another tool wrote, or edited by hand: JSON, a map, but without the fields replay
    # reads. `inferd replay API --shadow` ended in a traceback (KeyError: 'api'); the records
    # around it are compared.
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    log = tmp_path / "home" / "payloads" / "d" / "a.jsonl"
    log.parent.mkdir(parents=True)
    answer = {"json": {"label": "setosa"}}
    shadow: dict[str, Any] = {"api": "b", "status": 200, "latency_ms": 2.5, "response": answer}
    record: dict[str, Any] = {
        "request_id": "r1",
        "status": 200,
        "latency_ms": 1.5,
        "protocol": "cortex",
        "request": {"json": {"x": 1}},
        "response": answer,
        "shadow": shadow,
    }
    odd = [
        {"shadow": {}},
        {"shadow": {"api": "b"}},
        {**record, "shadow": {**shadow, "latency_ms": "slow"}},
        {**record, "response": 5},
        {**record, "status": None},
    ]
    lines = [record, *odd, {**record, "request_id": "r2"}]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = CliRunner().invoke(cli, ["replay", "d/a", "--shadow", "-o", "json"], prog_name="inferd")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["against"], report["requests"], report["agreement"]) == ("b", 2, 1.0)
