"""Features that work alone, used together: splitters over batching APIs (one scaled to zero),
shadows, payload logs, replay, tracing, streams and rolling updates, through one real operator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from inferd.engine.priority import group_nice_of
from tests.conftest import INFERD, make_project, wait_for
from tests.integration.conftest import Inferd, stop_operator

PREDICTOR = """
VERSION = 1

def predict(sample, metadata):
    if "words" in sample:  # a stream: the same items from every API
        return (word for word in sample["words"])
    return {"x": sample["x"], "api": metadata["name"], "version": VERSION}
"""


def _api(name: str, extra: str = "", compute: str = "cpu: 0.1, max_replicas: 1", path: str = "p.py") -> str:
    return f"""
- kind: api
  name: {name}
  predictor: {{path: {path}, metadata: {{name: {name}}}}}
  compute: {{{compute}}}
{extra}"""


BATCHING = "  batching: {max_batch_size: 4, batch_interval: 0.05}\n"
RECORDED = "  payload_log: {sample: 1.0}\n"
COMBO = (
    "- kind: deployment\n  name: combo\n"
    + _api("gen", RECORDED)
    + _api("gen2")
    + _api("locked", "  auth: {keys_file: keys.txt}\n")
    + _api("plain", RECORDED)
    + _api("warm", BATCHING + RECORDED)
    + _api("cold", BATCHING + RECORDED, "cpu: 0.1, min_replicas: 0, init_replicas: 0, max_replicas: 1")
    + _api("mirror", "  batching: {max_batch_size: 4}\n", "cpu: 0.1")
    + """
- kind: traffic_splitter
  name: talk
  apis:
    - {name: gen, weight: 100}
    - {name: gen2, weight: 0}
  shadow: {api: gen2}
- kind: traffic_splitter
  name: pair
  apis:
    - {name: warm, weight: 50}
    - {name: cold, weight: 50}
  shadow: {api: mirror}
"""
)


@pytest.fixture(scope="module")
def combo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inferd]:
    """One operator for the module, serving the deployment ``combo``."""
    root = tmp_path_factory.mktemp("combo")
    runner = Inferd(root / "home")
    project = make_project(root / "combo", COMBO, {"p.py": PREDICTOR, "keys.txt": "sesame\n"})
    try:
        runner.run("deploy", str(project))
        for name in ("gen", "gen2", "locked", "plain", "warm", "mirror"):
            runner.wait_status(name, "live")
        yield runner
    finally:
        stop_operator(runner)


def metric_samples(inferd: Inferd, name: str) -> list[tuple[dict[str, str], float]]:
    text = requests.get(inferd.url + "/metrics", timeout=30).text
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_a_splitter_over_batching_apis_keeps_each_request_its_answer_trace_and_count(
    combo: Inferd,
) -> None:
    # One member is scaled to zero, both batch, the splitter has a batching shadow, and the
    # members keep payload logs.
    assert combo.status("cold")["available"] == 0
    sent = {i: f"00-{i + 1:032x}-{i + 1:016x}-01" for i in range(24)}

    def send(i: int) -> requests.Response:
        headers = {"traceparent": sent[i]}
        return requests.post(combo.url + "/combo/pair", json={"x": i}, headers=headers, timeout=60)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(24)))
    ids: dict[str, int] = {}
    for i, answer in enumerate(answers):
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"x": i, "api": answer.headers["X-Inferd-Api"], "version": 1}
        version, trace, span, flags = answer.headers["traceparent"].split("-")
        assert (version, trace, flags) == ("00", f"{i + 1:032x}", "01") and span != f"{i + 1:016x}"
        ids[answer.headers["X-Request-ID"]] = i
    took = Counter(answer.headers["X-Inferd-Api"] for answer in answers)
    assert set(took) == {"warm", "cold"}  # the cold one started from zero for its share

    # Each request's own answer is recorded (not its batch's), with the shadow's answer beside it.
    def recorded() -> list[dict[str, Any]] | None:
        records = [r for name in ("warm", "cold") for r in combo.json("payloads", name, "-n", "100")]
        return records if len(records) == 24 and all("shadow" in r for r in records) else None

    for record in wait_for(recorded, 60, "24 records with their shadow's answers"):
        i = ids[record["request_id"]]
        assert record["request"] == {"json": {"x": i}} and record["status"] == 200
        assert record["response"]["json"]["x"] == i and record["api"].endswith(
            record["response"]["json"]["api"]
        )
        assert record["shadow"]["response"] == {"json": {"x": i, "api": "mirror", "version": 1}}

    # Each access line carries its own request's trace id.
    def access_lines() -> dict[str, str | None] | None:
        traced = {}
        for name in ("warm", "cold"):
            log = combo.home / "logs" / "combo" / f"{name}.access.log"
            lines = log.read_text().splitlines() if log.exists() else []
            traced.update({(line := json.loads(text))["id"]: line["trace_id"] for text in lines})
        return traced if set(ids) <= set(traced) else None

    traced = wait_for(access_lines, 30, "the access lines of the 24 requests")
    assert {request_id: traced[request_id] for request_id in ids} == {
        request_id: f"{i + 1:032x}" for request_id, i in ids.items()
    }

    # The numbers: each client request counted once for the API that took it, a batch's members
    # each once, the shadow's copies apart from client requests.
    (splitter,) = combo.json("get", "pair")
    assert {entry["name"]: entry["requests"] for entry in splitter["apis"]} == dict(took)
    answered = splitter["shadow"]["answered"]
    assert answered + splitter["shadow"]["dropped"] == 24 and answered == 24
    requests_total = Counter[tuple[str, str, str]]()
    for labels, value in metric_samples(combo, "inferd_requests_total"):
        requests_total[(labels["api"], labels["protocol"], labels["code"])] += int(value)
    assert {api: requests_total[(api, "cortex", "200")] for api in took} == dict(took)
    assert requests_total[("mirror", "shadow", "200")] == answered
    assert requests_total[("mirror", "cortex", "200")] == 0
    # `inferd get` counts the copies apart from the clients' requests, and times only those
    # (they were 2XX beside the clients', a copy's wait behind them in the latency).
    assert combo.status("mirror")["metrics"]["requests"] == {
        "2XX": 0,
        "4XX": 0,
        "5XX": 0,
        "total": 0,
        "shadow": answered,
    }
    assert combo.status("mirror")["metrics"]["latency"] == {"avg_ms": None, "p50_ms": None, "p99_ms": None}
    shown = combo.run("get", "mirror").stdout
    assert "shadow copies" in shown and f" {answered}\n" in shown
    members = Counter[str]()
    for labels, value in metric_samples(combo, "inferd_batches_total"):
        members[labels["api"]] += int(labels["size"]) * int(value)
    assert {api: members[api] for api in took} == dict(took)


def test_a_streaming_api_replayed_against_one_streaming_the_same_items_agrees(combo: Inferd) -> None:
    # Streams through a splitter whose shadow streams too, over the endpoint (NDJSON and SSE)
    # and V2 generate: the payload log records each answer as its items.
    words = [["Beautiful ", "is ", "better"], ["Simple"], ["flat ", "nested"]]
    for sample in words:
        answer = requests.post(combo.url + "/combo/talk", json={"words": sample}, timeout=30)
        assert answer.status_code == 200 and answer.headers["X-Inferd-Api"] == "gen"
        assert [json.loads(line) for line in answer.text.splitlines()] == sample
    events = requests.post(
        combo.url + "/combo/talk",
        json={"words": ["one ", "two"]},
        headers={"Accept": "text/event-stream"},
        timeout=30,
    )
    assert events.text == 'data: "one "\n\ndata: "two"\n\n'
    generated = requests.post(combo.url + "/v2/models/gen/generate", json={"words": ["a ", "b"]}, timeout=30)
    assert generated.json()["text_output"] == "a b"

    def recorded() -> list[dict[str, Any]] | None:
        records: list[dict[str, Any]] = combo.json("payloads", "gen", "-n", "100")
        return records if len(records) == 5 and sum("shadow" in r for r in records) == 4 else None

    records = wait_for(recorded, 30, "the 5 streams recorded, 4 with their shadow's answer")
    # (a record waits for its shadow's answer: the one without a shadow may be written first)
    assert sorted(r["response"]["json"] for r in records) == sorted([*words, ["one ", "two"], ["a ", "b"]])
    compared = combo.json("replay", "gen", "--shadow")
    assert (compared["requests"], compared["agreement"]) == (4, 1.0)
    # Sent again, each stream comes back as its items too, so the same items agree (every
    # stream read as a disagreement: its NDJSON text against the recorded list).
    replayed = combo.json("replay", "gen", "--against", "gen2")
    assert (replayed["requests"], replayed["agreement"], replayed["errors"]) == (5, 1.0, 0), replayed


def test_a_replay_against_an_api_that_takes_keys_needs_its_key(combo: Inferd) -> None:
    # Without one, or with a wrong one, nothing is compared: its 401s read as disagreements
    # (agreement 0%, exit 0), as an API that cannot serve's 503s would.
    assert combo.post("/combo/plain", {"x": 7}).status_code == 200
    wait_for(lambda: combo.json("payloads", "plain"), 30, "the request recorded")
    unkeyed = combo.run("replay", "plain", "--against", "locked", check=False)
    assert unkeyed.returncode == 1 and unkeyed.stderr.strip() == (
        "error: api 'combo/locked' takes API keys (auth:): give one with --key KEY (or "
        "$INFERD_API_KEY); nothing was replayed"
    )
    wrong = combo.run("replay", "plain", "--against", "locked", "--key", "open", check=False)
    assert wrong.returncode == 1 and wrong.stderr.strip() == (
        f"error: {combo.url}/combo/locked refused the key given: wrong API key; the replay stopped"
    )
    keyed = combo.json("replay", "plain", "--against", "locked", "--key", "sesame", "-n", "1")
    assert (keyed["requests"], keyed["errors"], keyed["status_changes"]) == (1, 0, 0)
    assert keyed["first_disagreements"][0]["replayed"] == {
        "status": 200,
        "json": {"x": 7, "api": "locked", "version": 1},
    }


ROLL = (
    "- kind: deployment\n  name: roll\n"
    + _api("main", path="m.py")
    + _api("other")
    + _api("source", "  shadow: {api: main}\n")
    + """
- kind: traffic_splitter
  name: split
  apis:
    - {name: main, weight: 50}
    - {name: other, weight: 50}
"""
)


def test_a_rolling_update_of_a_splitter_member_that_is_a_shadow_fails_no_request(
    combo: Inferd, tmp_path: Path
) -> None:
    # 'main' is one of a splitter's APIs, a shadow of another API, and called directly.
    project = make_project(tmp_path / "roll", ROLL, {"p.py": PREDICTOR, "m.py": PREDICTOR})
    combo.run("deploy", str(project))
    for name in ("main", "other", "source"):
        combo.wait_status(name, "live")
    seen: list[tuple[str, int, Any]] = []
    stop = threading.Event()

    def load(path: str) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                answer = session.post(combo.url + path, json={"x": 1}, timeout=60)
                seen.append((path, answer.status_code, answer.json() if answer.ok else answer.text))

    threads = [
        threading.Thread(target=load, args=(path,)) for path in ("/roll/split", "/roll/source", "/roll/main")
    ]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(seen) > 50, 60, "traffic before the update")
        (project / "m.py").write_text(PREDICTOR.replace("VERSION = 1", "VERSION = 2"))
        assert combo.run("deploy", str(project)).stdout.strip() == "deployment updated"
        mark = len(seen)
        wait_for(lambda: len(seen) > mark + 50, 60, "traffic after the update")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert [answer for answer in seen if answer[1] != 200] == []
    after = {(path, body["api"], body["version"]) for path, _, body in seen[mark + 10 :]}
    assert ("/roll/main", "main", 2) in after and ("/roll/main", "main", 1) not in after
    assert ("/roll/split", "main", 1) not in after and ("/roll/source", "source", 1) in after

    # The shadow's copies are answered by the new version too.
    def answered_by_the_new_version() -> bool:
        records = combo.json("payloads", "source", "-n", "5")
        return bool(records) and records[-1]["shadow"]["response"]["json"]["version"] == 2

    wait_for(answered_by_the_new_version, 30, "a shadow copy answered by the new version")
    combo.run("delete", "roll")


PROMOTED = (
    "- kind: deployment\n  name: promo\n"
    + _api("champion")
    + _api("challenger")
    + """
- kind: traffic_splitter
  name: front
  apis:
    - {name: champion, weight: 100}
    - {name: challenger, weight: 0}
  shadow: {api: challenger}
"""
)


def nice_of(pid: int) -> int:
    """The nice value of process ``pid`` (field 19 of /proc/PID/stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def wait_group(pid: int, own: int | None, offset: int) -> None:
    """Wait for the autogroup of replica ``pid`` to be ``offset`` nice levels below the engine's
    (``own``, this test's: None on a kernel without autogroups, where there is none to wait for)."""
    if own is not None:
        wanted = min(19, own + offset)
        wait_for(lambda: group_nice_of(pid) == wanted, 30, f"replica {pid}'s autogroup at nice {wanted}")


def test_a_challenger_promoted_while_it_is_the_shadow_serves_at_full_priority(
    combo: Inferd, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "promo", PROMOTED, {"p.py": PREDICTOR})
    combo.run("deploy", str(project))
    for name in ("champion", "challenger"):
        combo.wait_status(name, "live")
    base = os.getpriority(os.PRIO_PROCESS, 0)
    (shadow,) = combo.replica_pids("challenger")
    assert nice_of(shadow) == min(19, base + 10)  # a shadow yields the CPU to the champion
    group = combo.group_nice()  # its autogroup too, below inferd's
    wait_group(shadow, group, 10)
    combo.run("promote", "front", "challenger")
    wait_group(shadow, group, 0)  # a group's nice value may be raised back without privilege
    answer = combo.post("/promo/front", {"x": 3})
    assert answer.headers["X-Inferd-Api"] == "challenger" and answer.json()["x"] == 3
    # It serves every client of the splitter now: its replicas start at inferd's own priority
    # (they started 10 nice levels down, as a shadow's; the one running is raised where inferd
    # may raise a priority).
    os.kill(shadow, signal.SIGKILL)

    def replaced() -> list[int] | None:
        pids = [pid for pid in combo.replica_pids("challenger") if pid != shadow]
        return pids or None

    (started,) = wait_for(replaced, 60, "the challenger's replica to be replaced")
    assert nice_of(started) == base
    assert combo.post("/promo/front", {"x": 4}).json() == {"x": 4, "api": "challenger", "version": 1}
    # Promoted back, it is the splitter's shadow again (weight 0), and yields the CPU again.
    combo.run("promote", "front", "champion")
    assert nice_of(started) == min(19, base + 10)
    wait_group(started, group, 10)
    combo.run("delete", "promo")


def test_a_challenger_promoted_by_a_user_who_may_not_raise_a_priority_is_replaced_at_full_priority(
    inferd: Inferd, tmp_path: Path
) -> None:
    # Was: an operator that may not raise a priority (a user's: no CAP_SYS_NICE) left the
    # promoted challenger's replica 10 nice levels down, serving every client of the splitter
    # there until something else replaced it, and said nothing.
    project = make_project(tmp_path / "promo", PROMOTED, {"p.py": PREDICTOR})
    up = ["setpriv", "--bounding-set=-sys_nice", str(INFERD), "up"]  # root may raise a priority
    subprocess.run(up, env=inferd.env, check=True, capture_output=True, timeout=120)
    inferd.run("deploy", str(project))
    inferd.wait_status("challenger", "live")
    base = os.getpriority(os.PRIO_PROCESS, 0)
    (shadow,) = inferd.replica_pids("challenger")
    assert nice_of(shadow) == min(19, base + 10)
    inferd.run("promote", "front", "challenger")
    answers = []

    def replaced() -> list[int] | None:
        answers.append(inferd.post("/promo/front", {"x": 6}).status_code)
        pids = inferd.replica_pids("challenger")
        return pids if pids and shadow not in pids else None

    (started,) = wait_for(replaced, 60, "the challenger's replica replaced by one at full priority")
    assert nice_of(started) == base
    assert set(answers) == {200}  # replaced as in a rolling update: the old one served meanwhile
    logs = inferd.run("logs", "challenger").stdout
    assert "keeps the shadow's lower CPU priority" in logs, logs
    inferd.run("delete", "promo")


def test_a_promoted_challenger_kept_low_on_a_full_machine_serves_on_where_it_is(
    inferd: Inferd, tmp_path: Path
) -> None:
    # Was: the replica kept at the shadow's priority counted as an old version's, and on a machine
    # with no room for its replacement it was retired to make room, as in a rolling update: the
    # API served nothing while the new one loaded, for the sake of a nice level.
    project = make_project(tmp_path / "promo", PROMOTED, {"p.py": PREDICTOR})
    up = ["setpriv", "--bounding-set=-sys_nice", str(INFERD), "up"]
    env = dict(inferd.env, INFERD_CPUS="0.2")  # the champion's and the challenger's replicas fill it
    subprocess.run(up, env=env, check=True, capture_output=True, timeout=120)
    inferd.run("deploy", str(project))
    inferd.wait_status("challenger", "live")
    (shadow,) = inferd.replica_pids("challenger")
    inferd.run("promote", "front", "challenger")
    said = "keeps the shadow's lower CPU priority"
    wait_for(lambda: said in inferd.run("logs", "challenger").stdout, 30, "the kept-low replica said")
    time.sleep(1)  # a few engine steps: the replica was retired at the first
    assert inferd.post("/promo/front", {"x": 6}).status_code == 200
    assert inferd.replica_pids("challenger") == [shadow]
    assert inferd.status("challenger")["status"] == "live"
    inferd.run("delete", "promo")


def test_a_promotion_an_operator_restart_brings_back_serves_at_full_priority(
    inferd: Inferd, tmp_path: Path
) -> None:
    # Was: the restarted operator started the promoted challenger's replicas as the splitter's
    # shadow (the file's weights), 10 nice levels down, and promoted it only then: an operator
    # that may not raise a priority (a user's) left every client of the splitter served there.
    project = make_project(tmp_path / "promo", PROMOTED, {"p.py": PREDICTOR})
    # (without zygotes a replica starts as its deployment is applied, not a tick later)
    inferd.env["INFERD_ZYGOTE"] = "0"
    up = ["setpriv", "--bounding-set=-sys_nice", str(INFERD), "up"]  # root may raise a priority
    subprocess.run(up, env=inferd.env, check=True, capture_output=True, timeout=120)
    inferd.run("deploy", str(project))
    inferd.wait_status("challenger", "live")
    inferd.run("promote", "front", "challenger")
    inferd.run("down")
    subprocess.run(up, env=inferd.env, check=True, capture_output=True, timeout=120)
    inferd.wait_status("challenger", "live")
    assert inferd.post("/promo/front", {"x": 5}).json() == {"x": 5, "api": "challenger", "version": 1}
    (started,) = inferd.replica_pids("challenger")
    assert nice_of(started) == os.getpriority(os.PRIO_PROCESS, 0)
