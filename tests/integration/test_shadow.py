"""Shadow traffic through the real operator: copies recorded, never returned, never in the way."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from inferd.engine.capacity import machine_cpus
from inferd.engine.priority import group_nice_of
from tests.conftest import make_project, wait_for
from tests.integration.conftest import Inferd

PREDICTOR = """
import time

def init(model_path, metadata):
    if metadata.get("broken"):
        raise RuntimeError("this shadow never loads")

def predict(sample, metadata):
    x = sample["x"]
    time.sleep(metadata.get("sleep", 0))
    if metadata.get("fails") and x % 4 == 0:
        raise ValueError("this shadow fails on every fourth input")
    if metadata.get("candidate") and x % 4 == 0:  # wrong on every fourth input
        return {"double": x * 2 + 1, "candidate": True}
    return {"double": x * 2}
"""


def _api(name: str, metadata: str = "{}", extra: str = "") -> str:
    return f"""
- kind: api
  name: {name}
  predictor: {{path: predictor.py, metadata: {metadata}}}
  compute: {{cpu: 0.1}}
{extra}"""


SHADOWED = (
    "- kind: deployment\n  name: shop\n"
    + _api("champion")
    + _api("candidate", "{candidate: true}")
    + """
- kind: traffic_splitter
  name: front
  apis:
    - {name: champion, weight: 100}
    - {name: candidate, weight: 0}
  shadow: {api: candidate, percent: 100}
"""
)


def nice_of(pid: int) -> int:
    """The nice value of process ``pid`` (field 19 of /proc/PID/stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_a_full_shadow_gets_the_requests_is_compared_and_promoted(inferd: Inferd, tmp_path: Path) -> None:
    project = make_project(tmp_path / "shop", SHADOWED, {"predictor.py": PREDICTOR})
    inferd.run("deploy", str(project))
    inferd.wait_status("champion", "live")
    inferd.wait_status("candidate", "live")
    # The shadow's replicas yield the CPU to the champion's (engine/priority.py): 10 nice levels
    # below what inferd runs at (what this test runs at).
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert {nice_of(r["pid"]) for r in inferd.api("candidate")["replicas"]} == {min(19, base + 10)}
    assert {nice_of(r["pid"]) for r in inferd.api("champion")["replicas"]} == {base}
    # ... and so do their autogroups, where the kernel groups each session's processes (each
    # replica leads one, as inferd does): the nice value alone yielded nothing to the gateway then.
    # Below inferd's group, not this test's (whose may be the root group, which reads as none).
    own = inferd.group_nice()
    if own is not None:
        candidates = [r["pid"] for r in inferd.api("candidate")["replicas"]]
        wait_for(
            lambda: {group_nice_of(pid) for pid in candidates} == {min(19, own + 10)} or None,
            30,
            "the shadow's replicas' autogroups to be 10 nice levels down",
        )
        assert {group_nice_of(r["pid"]) for r in inferd.api("champion")["replicas"]} == {own}
    count = 200
    with requests.Session() as session:
        for x in range(count):
            response = session.post(inferd.url + "/shop/front", json={"x": x}, timeout=30)
            # Only the primary answers the client: its header and its (always right) body.
            assert response.status_code == 200 and response.headers["X-Inferd-Api"] == "champion"
            assert response.json() == {"double": 2 * x}

    def shadowed() -> list[dict[str, Any]] | None:
        records = [r for r in inferd.json("payloads", "champion", "-n", "1000") if "shadow" in r]
        (splitter,) = inferd.json("get", "front")
        done = splitter["shadow"]["answered"] + splitter["shadow"]["dropped"] == count
        return records if done and len(records) == splitter["shadow"]["answered"] else None

    # The champion has no payload_log: a shadow records both answers all the same.
    records = wait_for(shadowed, 60, "the shadow's answers to be recorded")
    assert len(records) >= 0.95 * count
    for record in records:
        x = record["request"]["json"]["x"]
        assert record["response"] == {"json": {"double": 2 * x}}
        shadow = record["shadow"]
        assert shadow["api"] == "shop/candidate" and shadow["status"] == 200
        assert shadow["latency_ms"] > 0 and shadow["version"]
        expected = {"double": 2 * x + 1, "candidate": True} if x % 4 == 0 else {"double": 2 * x}
        assert shadow["response"] == {"json": expected}

    # The shadow's own metrics count the copies it answered, apart from its clients' requests.
    (splitter,) = inferd.json("get", "front")
    metrics = requests.get(inferd.url + "/metrics", timeout=30).text
    line = 'inferd_requests_total{api="candidate",code="200",deployment="shop",protocol="shadow"}'
    assert f"{line} {float(splitter['shadow']['answered'])}" in metrics.splitlines()

    # The comparison needs no request: agreement is the share of inputs the candidate gets right.
    compared = inferd.json("replay", "champion", "--shadow")
    wrong = sum(1 for r in records if r["request"]["json"]["x"] % 4 == 0)
    assert compared["requests"] == len(records) and compared["against"] == "shop/candidate"
    assert compared["agreement"] == round((len(records) - wrong) / len(records), 6)
    assert (compared["disagreements"], compared["errors"]) == (wrong, 0)
    # and `inferd get`'s count of the answers that agreed, byte for byte, says the same
    assert (splitter["shadow"]["agreed"], splitter["shadow"]["errors"]) == (len(records) - wrong, 0)
    assert set(compared["latency_ms"]) == {"recorded", "replayed"}
    assert compared["latency_ms"]["replayed"]["p50"] > 0
    text = inferd.run("replay", "champion", "--shadow", "-n", "40").stdout
    assert "40 requests of 'shop/champion' compared with its shadow 'shop/candidate': agreement 75.0%" in text

    # `inferd get` shows the splitter's shadow, and in JSON each API the splitters that route to it;
    # promote judges by the last shadow comparison.
    listed = {api["name"]: api["splitters"] for api in inferd.json("get")}
    assert listed["champion"] == [{"name": "front", "weight": 100, "requests": count}]
    assert listed["candidate"] == [{"name": "front", "weight": 0, "requests": 0}]
    assert "candidate" in inferd.run("get").stdout.split("shadow")[-1]
    refused = inferd.run("promote", "front", "candidate", "--min-agreement", "0.9", check=False)
    assert refused.returncode != 0
    assert "the last shadow comparison of 'shop/champion' against it agreed 75.0% (30 of 40" in refused.stderr
    inferd.run("promote", "front", "candidate", "--min-agreement", "0.7")
    response = requests.post(inferd.url + "/shop/front", json={"x": 4}, timeout=30)
    assert response.headers["X-Inferd-Api"] == "candidate"


TROUBLED = (
    "- kind: deployment\n  name: shop\n"
    + _api("steady", extra="  shadow: {api: slow, percent: 100}\n")
    + _api("slow", "{sleep: 0.5}", "  max_queue_length: 1\n")
    + _api("plain", extra="  shadow: {api: broken}\n  payload_log: {sample: 1.0}\n")
    + _api("broken", "{broken: true}")
    + _api("sturdy", extra="  shadow: {api: failing}\n")
    + _api("failing", "{fails: true}")
    + """
- kind: traffic_splitter
  name: front
  apis:
    - {name: steady, weight: 0}
    - {name: sturdy, weight: 100}
  shadow: {api: sturdy, percent: 100}
"""
)


def test_a_slow_or_broken_shadow_never_changes_the_answers(inferd: Inferd, tmp_path: Path) -> None:
    project = make_project(tmp_path / "shop", TROUBLED, {"predictor.py": PREDICTOR})
    inferd.run("deploy", str(project), check=False)  # 'broken' never loads
    for name in ("steady", "slow", "plain", "sturdy", "failing"):
        inferd.wait_status(name, "live")
    wait_for(lambda: inferd.api("broken")["status"] == "error", 60, "the broken shadow to fail")

    def send(x: int) -> list[tuple[int, Any]]:
        with requests.Session() as session:
            answers = [session.post(f"{inferd.url}/shop/{name}", json={"x": x}, timeout=30) for name in names]
            return [(answer.status_code, answer.json()) for answer in answers]

    names = ("steady", "plain", "sturdy")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(80)))
    for x, answer in enumerate(answers):
        assert answer == [(200, {"double": 2 * x})] * 3

    # The slow shadow's line held one copy: most were dropped, and counted.
    def settled() -> dict[str, Any] | None:
        shadow: dict[str, Any] = inferd.api("steady")["shadow"]
        return shadow if shadow["answered"] + shadow["dropped"] == 80 else None

    slow = wait_for(settled, 60, "the slow shadow's copies to be answered or dropped")
    assert slow["api"] == "slow" and slow["dropped"] > 0 and slow["sent"] == slow["answered"]
    broken = inferd.api("plain")["shadow"]
    assert (broken["sent"], broken["dropped"]) == (0, 80)
    metrics = requests.get(inferd.url + "/metrics", timeout=30).text
    dropped = 'inferd_shadow_dropped_total{deployment="shop",shadow="broken",source="plain"} 80.0'
    assert dropped in metrics
    sent = f'inferd_shadow_sent_total{{deployment="shop",shadow="slow",source="steady"}} {slow["sent"]}.0'
    assert sent in metrics

    # The primary's own payload log still records the requests whose copy was dropped.
    def recorded() -> list[dict[str, Any]] | None:
        records: list[dict[str, Any]] = inferd.json("payloads", "plain", "-n", "1000")
        return records if len(records) >= 80 else None

    records = wait_for(recorded, 30, "80 payload records of 'plain'")
    assert len(records) == 80 and all("shadow" not in r for r in records)
    # Its comparison names the shadow that answered none (it told to set one: it had one).
    compared = inferd.run("replay", "plain", "--shadow", check=False)
    assert compared.returncode == 1 and compared.stderr.strip() == (
        "error: api 'shop/plain' has no recorded shadow answers: its shadow 'broken' answered none of "
        "the copies (0 sent, 80 dropped; see `inferd get shop/broken`)"
    ), compared.stderr
    assert "shadow" in inferd.run("get", "steady").stdout

    # A shadow that fails on a quarter of the inputs: its failures are counted, never returned.
    def failed() -> dict[str, Any] | None:
        shadow: dict[str, Any] = inferd.api("sturdy")["shadow"]
        return shadow if shadow["answered"] + shadow["dropped"] == 80 else None

    failing = wait_for(failed, 60, "the failing shadow's copies to be answered or dropped")
    answered_inputs = [r["request"]["json"]["x"] for r in inferd.json("payloads", "sturdy", "-n", "1000")]
    wrong = sum(1 for x in answered_inputs if x % 4 == 0)
    assert len(answered_inputs) == failing["answered"]
    assert (failing["errors"], failing["agreed"]) == (wrong, failing["answered"] - wrong)
    table = inferd.run("get", "sturdy").stdout
    assert "agreed" in table and "errors" in table
    compared = inferd.json("replay", "sturdy", "--shadow")
    assert (compared["errors"], compared["disagreements"]) == (wrong, wrong)

    # Through a splitter whose shadow is the API that answered, the API's own shadow gets the
    # copies (none was made: the splitter's shadow took the place of the API's).
    for x in range(8):
        assert inferd.post("/shop/front", {"x": x}).headers["X-Inferd-Api"] == "sturdy"

    def copied() -> bool:
        shadow = inferd.api("sturdy")["shadow"]
        return bool(shadow["answered"] + shadow["dropped"] == 88)

    wait_for(copied, 60, "the copies of the splitter's requests to sturdy's own shadow")


def test_a_shadow_gives_its_room_to_the_replicas_its_primary_wants(inferd: Inferd, tmp_path: Path) -> None:
    # Room for 4 replicas on any machine: the shadow would start 3, and the primary needs 3.
    cpu = f"{machine_cpus() / 4:g}"
    config = f"""
- kind: deployment
  name: room
- kind: api
  name: candidate
  predictor: {{path: predictor.py, metadata: {{candidate: true}}}}
  compute: {{cpu: {cpu}, init_replicas: 3, min_replicas: 1, max_replicas: 3}}
- kind: api
  name: champion
  predictor: {{path: predictor.py}}
  compute: {{cpu: {cpu}, min_replicas: 3, max_replicas: 3}}
  shadow: {{api: candidate, percent: 100}}
"""
    project = make_project(tmp_path / "room", config, {"predictor.py": PREDICTOR})
    inferd.run("deploy", str(project))
    inferd.wait_status("champion", "live")
    wait_for(lambda: len(inferd.replica_pids("champion")) == 3, 60, "the primary's 3 replicas")
    candidate = inferd.status("candidate")["replicas"]
    assert len(candidate) == 1, candidate  # not 3: the primary's replicas came first
    answer = inferd.post("/room/champion", {"x": 4})
    assert answer.status_code == 200 and answer.json() == {"double": 8}


def test_a_copy_that_waited_in_the_shadows_queue_never_gets_its_replica_replaced(
    inferd: Inferd, tmp_path: Path
) -> None:
    # A slow shadow's copies wait behind one another: the fourth of eight copies taken together
    # waited 0.9 s of the shadow's 1 s timeout in its queue, and its replica, 0.1 s into it, was
    # stopped and replaced as stuck (a soak with a slow shadow: 291 replicas replaced in 25 s).
    config = (
        "- kind: deployment\n  name: lag\n"
        + _api("primary", extra="  shadow: {api: candidate, percent: 100}")
        + _api("candidate", "{sleep: 0.3}", "  timeout: 1")
    ).replace("compute: {cpu: 0.1}", "compute: {cpu: 0.1, min_replicas: 1, max_replicas: 1}")
    project = make_project(tmp_path / "lag", config, {"predictor.py": PREDICTOR})
    inferd.run("deploy", str(project))
    inferd.wait_status("candidate", "live")
    (pid,) = inferd.replica_pids("candidate")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda x: inferd.post("/lag/primary", {"x": x}).status_code, range(8)))
    assert answers == [200] * 8

    def settled() -> dict[str, Any] | None:
        shadow: dict[str, Any] = inferd.api("primary")["shadow"]
        return shadow if shadow["answered"] + shadow["dropped"] == 8 else None

    shadow = wait_for(settled, 60, "the copies to be answered or dropped")
    assert shadow["errors"] == 0, shadow  # no copy was cut short: those that ran, ran to the end
    assert inferd.status("candidate")["timed_out"] == 0
    assert inferd.replica_pids("candidate") == [pid]


def test_a_request_that_waited_most_of_its_timeout_never_gets_its_replica_replaced(
    inferd: Inferd, tmp_path: Path
) -> None:
    # The same for clients' requests: the fourth of five sent at once to a replica taking 0.3 s
    # each reached it 0.9 s into the API's 1 s timeout, and its healthy replica was stopped and
    # replaced 0.1 s later. Now that client is answered 504 at its deadline, the replica kept.
    config = ("- kind: deployment\n  name: lag\n" + _api("slow", "{sleep: 0.3}", "  timeout: 1")).replace(
        "compute: {cpu: 0.1}", "compute: {cpu: 0.1, min_replicas: 1, max_replicas: 1}"
    )
    project = make_project(tmp_path / "lag", config, {"predictor.py": PREDICTOR})
    inferd.run("deploy", str(project))
    inferd.wait_status("slow", "live")
    (pid,) = inferd.replica_pids("slow")

    def two_on_one_connection(x: int) -> list[requests.Response]:
        with requests.Session() as session:  # the second must not get the first's late answer
            return [session.post(inferd.url + "/lag/slow", json={"x": y}, timeout=30) for y in (x, x + 100)]

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(two_on_one_connection, range(5)))
    firsts = {first.status_code for first, _ in answers}
    assert firsts <= {200, 504} and 504 in firsts
    for x, (first, second) in enumerate(answers):
        if first.status_code == 200:
            assert first.json() == {"double": 2 * x}
        assert second.status_code in (200, 504)
        if second.status_code == 200:
            assert second.json() == {"double": 2 * (x + 100)}
    assert inferd.status("slow")["timed_out"] == 0
    assert inferd.replica_pids("slow") == [pid]


def test_an_api_that_is_a_shadow_is_not_deleted_alone(inferd: Inferd, tmp_path: Path) -> None:
    # Was: deleted, and from then on every copy of its primary's requests was dropped, while
    # `inferd get` went on naming it as the shadow (its `dropped` growing, with no reason given).
    yaml = (
        "- kind: deployment\n  name: shop\n"
        + _api("champion", extra="  shadow: {api: mirror}\n")
        + _api("mirror")
        + _api("echo")
        + """
- kind: traffic_splitter
  name: front
  apis:
    - {name: champion, weight: 100}
  shadow: {api: echo, percent: 100}
"""
    )
    project = make_project(tmp_path / "shop", yaml, {"predictor.py": PREDICTOR})
    inferd.run("deploy", str(project))
    refusals = {
        "mirror": "error: api 'shop/mirror' is the shadow of api 'champion': deploy the project "
        "without that shadow first, or delete deployment 'shop'",
        "echo": "error: api 'shop/echo' is the shadow of traffic splitter 'front': deploy the "
        "project without that shadow first, or delete deployment 'shop'",
    }
    for name, message in refusals.items():
        result = inferd.run("delete", name, check=False)
        assert (result.returncode, result.stderr.strip()) == (1, message), result.stderr
        assert inferd.api(name)["status"] == "live"
    # Nothing else harmed: the copies of a request through the splitter are still answered.
    assert inferd.post("/shop/front", {"x": 3}).json() == {"double": 6}
    assert inferd.post("/shop/champion", {"x": 5}).json() == {"double": 10}

    def answered() -> bool:
        return bool(
            inferd.api("front")["shadow"]["answered"] == 1
            and inferd.api("champion")["shadow"]["answered"] == 1
        )

    wait_for(answered, 30, "both copies to be answered")
