"""Traffic splitters through the real operator: requests split by weight, weights changed live."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.conftest import ADD_V2_BODY, Server, make_project, wait_for
from tests.integration.conftest import Inferd

PREDICTOR = """
def predict(sample, metadata):
    return {"api": metadata["name"], "echo": sample}
"""


def _yaml(weights: tuple[int, int]) -> str:
    apis = "".join(
        f"""
- kind: api
  name: {name}
  predictor:
    path: predictor.py
    metadata: {{name: {name}}}
  compute: {{cpu: 0.1, max_replicas: 1}}
"""
        for name in ("champion", "challenger")
    )
    return f"""
- kind: deployment
  name: shop
{apis}
- kind: traffic_splitter
  name: recommend
  apis:
    - {{name: champion, weight: {weights[0]}}}
    - {{name: challenger, weight: {weights[1]}}}
"""


def _send(session: requests.Session, url: str) -> tuple[int, str, str]:
    response = session.post(url, json={"x": 1}, timeout=30)
    answered = response.json().get("api", "") if response.status_code == 200 else response.text
    return response.status_code, response.headers.get("X-Inferd-Api", ""), answered


def test_splitter_routes_by_weight_and_changes_weights_without_failures(
    inferd: Inferd, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "shop", _yaml((80, 20)), {"predictor.py": PREDICTOR})
    inferd.run("deploy", str(project))
    inferd.wait_status("champion", "live")
    inferd.wait_status("challenger", "live")
    url = inferd.url + "/shop/recommend"

    local = threading.local()

    def one(_: int) -> tuple[int, str, str]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return _send(local.session, url)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(2000)))
    assert all(status == 200 for status, _, _ in results)
    assert all(header == answered for _, header, answered in results)  # every answer names its API
    counts = Counter(header for _, header, _ in results)
    assert abs(counts["champion"] / 2000 - 0.80) <= 0.04
    assert abs(counts["challenger"] / 2000 - 0.20) <= 0.04

    table = inferd.run("get").stdout
    assert "recommend" in table and "80%" in table and "20%" in table

    # The same request through V2 names the splitter as its model.
    v2 = requests.post(inferd.url + "/v2/models/recommend/generate", json={"x": 1}, timeout=30)
    assert v2.status_code == 200 and v2.headers["X-Inferd-Api"] in ("champion", "challenger")
    # A browser's script on another origin reads only the answer headers CORS exposes.
    exposed = {h.strip().lower() for h in v2.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-inferd-api", "x-request-id", "traceparent", "server-timing"} <= exposed
    # `inferd predict` takes the splitter's name too (it said "no API named 'recommend'").
    sample = tmp_path / "sample.json"
    sample.write_text('{"x": 2}')
    for name in ("recommend", "shop/recommend"):
        predicted = json.loads(inferd.run("predict", name, str(sample)).stdout)
        assert predicted["api"] in ("champion", "challenger") and predicted["echo"] == {"x": 2}

    # Weights changed by a redeploy under load: no request fails, and all go to the challenger after.
    seen: list[tuple[int, str, str]] = []
    stop = threading.Event()

    def load() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                seen.append(_send(session, url))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(seen) > 100, 60, "traffic before the redeploy")
        replicas = {name: inferd.replica_pids(name) for name in ("champion", "challenger")}
        (project / "cortex.yaml").write_text(_yaml((0, 100)))
        assert inferd.run("deploy", str(project)).stdout.strip() == "deployment updated"
        # only the weights changed: the APIs keep their replicas (no restart of the models; one
        # replica each, so the autoscaler cannot add one under the load meanwhile)
        assert {name: inferd.replica_pids(name) for name in replicas} == replicas
        mark = len(seen)
        wait_for(lambda: len(seen) > mark + 200, 60, "traffic after the redeploy")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert [r for r in seen if r[0] != 200] == []
    assert {header for _, header, _ in seen[mark + 10 :]} == {"challenger"}


THREE_WAY = """
- kind: deployment
  name: lab
- kind: api
  name: one
  onnx: {model: models/add.onnx}
  compute: {cpu: 0.1}
- kind: api
  name: two
  onnx: {model: models/add.onnx}
  compute: {cpu: 0.1}
- kind: api
  name: three
  onnx: {model: models/add.onnx}
  compute: {cpu: 0.1}
- kind: traffic_splitter
  name: tri
  endpoint: /custom/route
  apis:
    - {name: one, weight: 50}
    - {name: two, weight: 30}
    - {name: three, weight: 20}
  shadow: {api: three, percent: 100}
"""

# THREE_WAY without its third API (and its shadow), and the weights moved to the other two.
TWO_WAY = (
    THREE_WAY.split("- kind: api\n  name: three")[0]
    + """- kind: traffic_splitter
  name: tri
  endpoint: /custom/route
  apis:
    - {name: one, weight: 50}
    - {name: two, weight: 50}
"""
)


def test_a_three_way_splitter_answers_on_every_protocol_route_and_names_the_api(
    inferd: Inferd, tmp_path: Path, two_input_model: Path
) -> None:
    project = tmp_path / "lab"
    make_project(project, "", models={"models/add.onnx": two_input_model})
    (project / "inferd.yaml").write_text(THREE_WAY)  # an inferd.yaml, and an endpoint of its own
    (project / "cortex.yaml").unlink()
    inferd.run("deploy", str(project))
    for name in ("one", "two", "three"):
        inferd.wait_status(name, "live")
    cortex = {"a": [[1, 2]], "b": [[3, 4]]}
    routes = [
        ("/custom/route", cortex, [[[4.0, 6.0]]]),
        ("/v2/models/tri/infer", ADD_V2_BODY, None),
        (
            "/v1/models/tri:predict",
            {"instances": [{"a": [1, 2], "b": [3, 4]}]},
            {"predictions": [[4.0, 6.0]]},
        ),
        ("/v1/models/tri:predict", {"inputs": {"a": [[1, 2]], "b": [[3, 4]]}}, {"outputs": [[4.0, 6.0]]}),
    ]
    answered: Counter[str] = Counter()
    with requests.Session() as session:
        for path, body, expected in routes:
            for _ in range(25):
                response = session.post(inferd.url + path, json=body, timeout=30)
                assert response.status_code == 200, (path, response.text)
                if expected is not None:
                    assert response.json() == expected
                else:
                    assert response.json()["outputs"][0]["data"] == [4.0, 6.0]
                answered[response.headers["X-Inferd-Api"]] += 1
        # Errors name the API that refused too.
        bad_json = session.post(inferd.url + "/custom/route", data=b"{", timeout=30)
        bad_input = session.post(inferd.url + "/v2/models/tri/infer", json={"inputs": []}, timeout=30)
        wrong_method = session.put(inferd.url + "/custom/route", data=b"{}", timeout=30)
        # Descriptions, metadata and readiness name the splitter too, and are not its traffic.
        for path in ("/custom/route", "/v2/models/tri", "/v2/models/tri/ready", "/v1/models/tri"):
            described = session.get(inferd.url + path, timeout=30)
            assert described.status_code == 200 and described.headers["X-Inferd-Api"] in answered, path
        answered.update(r.headers["X-Inferd-Api"] for r in (bad_json, bad_input))  # copied too
        for refused in (bad_json, bad_input, wrong_method):
            assert refused.status_code in (400, 405) and refused.headers["X-Inferd-Api"] in (
                "one",
                "two",
                "three",
            )
    assert set(answered) == {"one", "two", "three"} and answered.total() == 102
    (splitter,) = inferd.json("get", "tri")
    assert splitter["endpoint"] == "/custom/route"
    assert [(a["name"], a["weight"]) for a in splitter["apis"]] == [("one", 50), ("two", 30), ("three", 20)]
    assert sum(a["requests"] for a in splitter["apis"]) == 102  # the predictions, not the rest
    table = inferd.run("get", "tri").stdout
    assert "/custom/route" in table and "50%" in table and "30%" in table and "20%" in table
    # The splitter's shadow copies what 'one' and 'two' answered to 'three', never what 'three'
    # answered itself (that would compare it with itself).
    not_three = sum(count for name, count in answered.items() if name != "three")

    def copied() -> dict[str, int] | None:
        (now,) = inferd.json("get", "tri")
        shadow: dict[str, int] = now["shadow"]
        return shadow if shadow["sent"] + shadow["dropped"] >= not_three else None

    shadow = wait_for(copied, 60, "the shadow's copies")
    assert shadow["sent"] + shadow["dropped"] == not_three
    records = inferd.json("payloads", "three", "-n", "1000")
    assert [r for r in records if "shadow" in r] == []
    # An API leaves with its place in the splitter: the deploy says the deployment changed.
    splitter_of_two = TWO_WAY[TWO_WAY.index("- kind: traffic_splitter") :]
    (project / "inferd.yaml").write_text(THREE_WAY.split("- kind: traffic_splitter")[0] + splitter_of_two)
    assert inferd.run("deploy", str(project)).stdout.strip() == "deployment updated"  # the weights
    (project / "inferd.yaml").write_text(TWO_WAY)
    assert inferd.run("deploy", str(project)).stdout.strip() == "deployment updated"  # an API less
    # The API that left drains its replicas first: `stopping` until they are gone.
    listed = {api["name"]: api["status"] for api in inferd.json("get")}
    assert listed.get("three", "stopping") == "stopping" and {"one", "two"} <= set(listed), listed
    wait_for(lambda: sorted(api["name"] for api in inferd.json("get")) == ["one", "two"], 60, "'three' to go")
    (splitter,) = inferd.json("get", "tri")
    assert [(a["name"], a["weight"]) for a in splitter["apis"]] == [("one", 50), ("two", 50)]


BROKEN = """
- kind: api
  name: broken
  predictor: {path: broken.py}
  compute: {cpu: 0.1}
- kind: traffic_splitter
  name: risky
  apis:
    - {name: champion, weight: 50}
    - {name: broken, weight: 50}
"""


def test_misused_traffic_commands_are_one_sentence_errors(inferd: Inferd, tmp_path: Path) -> None:
    recorded = _yaml((80, 20)).replace(
        "  name: challenger\n", "  name: challenger\n  payload_log: {sample: 1.0}\n"
    )
    # An API that cannot serve (its replicas exit while loading: status error) in a splitter.
    recorded += BROKEN
    files = {"predictor.py": PREDICTOR, "broken.py": "import os\nos._exit(3)\n"}
    project = make_project(tmp_path / "shop", recorded, files)
    inferd.run("deploy", str(project), check=False)
    inferd.wait_status("broken", "error")
    # The broken API's share goes to the one that can answer (was: half the requests 503).
    with requests.Session() as session:
        answers = [_send(session, f"{inferd.url}/shop/risky") for _ in range(40)]
    assert answers == [(200, "champion", "champion")] * 40
    (risky,) = inferd.json("get", "risky")
    assert {a["name"]: a["requests"] for a in risky["apis"]} == {"champion": 40, "broken": 0}
    # A mistyped path lists the splitters' endpoints beside the APIs' (it listed only the APIs').
    typo = inferd.post("/shop/recommnd", {"x": 1})
    assert typo.status_code == 404 and "/shop/recommend, /shop/risky" in typo.json()["error"]
    refusals = {
        ("promote", "nosuch", "champion"): "no traffic splitter named 'nosuch' (splitters: recommend, risky)",
        ("promote", "nosuch", "champion", "--min-agreement", "0.5"): "no traffic splitter named 'nosuch'",
        ("promote", "recommend", "nosuch"): "splitter 'recommend' has no api 'nosuch'",
        (
            "promote",
            "recommend",
            "nosuch",
            "--min-agreement",
            "0.5",
        ): "splitter 'recommend' has no api 'nosuch'",
        ("promote", "recommend", "challenger", "--min-agreement", "0.5"): "has no replay to judge it by",
        ("promote", "recommend", "challenger", "--min-agreement", "2"): "not in the range",
        # NaN passed the range (every comparison with it is false) and promoted
        ("promote", "recommend", "challenger", "--min-agreement", "nan"): "nan is not a fraction",
        ("replay", "champion"): "give either --against OTHER or --shadow",
        ("replay", "champion", "--against", "nosuch"): "no API named 'nosuch'",
        ("replay", "champion", "--against", "challenger"): "has no recorded JSON requests",
        ("replay", "champion", "--shadow"): "has no recorded shadow answers",
        # every client of the splitter would get 503 (was: promoted)
        ("promote", "risky", "broken"): (
            "not promoting 'broken': it cannot serve (a replica exited with code 3 while loading"
        ),
        ("replay", "recommend", "--against", "champion"): (
            "'recommend' is a traffic splitter, not an API: name one of its APIs (champion, challenger)"
        ),
        ("replay", "champion", "--against", "recommend"): "'recommend' is a traffic splitter",
        ("payloads", "recommend"): "'recommend' is a traffic splitter",
        ("payloads", "nosuch"): "no API named 'nosuch'",
        # an API a splitter sends requests to stays until the splitter no longer lists it
        ("delete", "challenger"): "api 'shop/challenger' is one of the APIs of traffic splitter 'recommend'",
        # was: "no API or deployment named 'recommend'"
        ("delete", "recommend"): "'recommend' is a traffic splitter of deployment 'shop': remove it",
    }
    for args, message in refusals.items():
        result = inferd.run(*args, check=False)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
        if result.returncode == 1:  # inferd's own errors: one line, one sentence
            assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert inferd.wait_status("challenger", "live")["status"] == "live"
    # A streamed request is recorded, and not replayed (nor are V2 binary tensors).
    generate = inferd.post("/v2/models/challenger/generate_stream", {"x": 1})
    assert generate.status_code == 200
    wait_for(lambda: inferd.json("payloads", "challenger") != [], 30, "the V2 request's record")
    result = inferd.run("replay", "challenger", "--against", "champion", check=False)
    assert result.returncode == 1 and result.stderr.strip() == (
        "error: none of the last 1 requests recorded for api 'shop/challenger' can be sent again "
        "(replay sends JSON requests to its endpoint, V2 infer and generate, and TF Serving "
        "predict; not V2 binary tensors, V2 generate_stream, or TF Serving classify and regress)"
    )
    # A V2 generate request is sent again (its body is the predictor's sample, as on the endpoint).
    assert inferd.post("/v2/models/challenger/generate", {"x": 1}).status_code == 200
    wait_for(lambda: len(inferd.json("payloads", "challenger")) == 2, 30, "the generate request's record")
    replayed = inferd.json("replay", "challenger", "--against", "champion")
    assert (replayed["requests"], replayed["agreement"]) == (1, 0.0)  # each answers its own name
    (shown,) = replayed["first_disagreements"]
    assert shown["recorded"]["json"] == {"api": "challenger", "echo": {"x": 1}}
    assert shown["replayed"]["json"] == {"api": "champion", "echo": {"x": 1}}
    # An API that cannot serve is not replayed against: its 503s are no answers of its model (was:
    # agreement 0%, recorded as the last replay against it).
    result = inferd.run("replay", "challenger", "--against", "broken", check=False)
    assert result.returncode == 1 and result.stderr.strip().startswith(
        "error: api 'shop/broken' cannot serve (a replica exited with code 3 while loading"
    ), result.stderr
    inferd.run("delete", "shop")  # the whole deployment: its splitters go with it
    wait_for(lambda: inferd.json("get") == [], 60, "the deployment to be deleted")
    assert inferd.post("/shop/recommend", {"x": 1}).status_code == 404
    for command in ("payloads", "replay", "promote"):
        assert "Examples:" in inferd.run(command, "--help").stdout


MALL = """
- kind: deployment
  name: mall
- kind: api
  name: store
  predictor:
    path: predictor.py
    metadata: {name: store}
  compute: {cpu: 0.1}
- kind: traffic_splitter
  name: recommend
  apis:
    - {name: store, weight: 100}
"""


def test_two_deployments_may_each_have_a_splitter_of_the_same_name(inferd: Inferd, tmp_path: Path) -> None:
    shop = make_project(tmp_path / "shop", _yaml((100, 0)), {"predictor.py": PREDICTOR})
    mall = make_project(tmp_path / "mall", MALL, {"predictor.py": PREDICTOR})
    inferd.run("deploy", str(shop))
    inferd.run("deploy", str(mall))
    for name in ("champion", "store"):
        inferd.wait_status(name, "live")
    # Each deployment's splitter keeps its endpoint: the second did not replace the first.
    with requests.Session() as session:
        assert _send(session, inferd.url + "/shop/recommend")[:2] == (200, "champion")
        assert _send(session, inferd.url + "/mall/recommend")[:2] == (200, "store")
        # As a V2 model name, the bare name is ambiguous; deployment.splitter is not.
        v2 = inferd.url + "/v2/models/{}/generate"
        ambiguous = session.post(v2.format("recommend"), json={"x": 1}, timeout=30)
        assert ambiguous.status_code == 404
        assert "ambiguous: name one of mall.recommend, shop.recommend" in ambiguous.json()["error"]
        named = session.post(v2.format("mall.recommend"), json={"x": 1}, timeout=30)
        assert named.status_code == 200 and named.headers["X-Inferd-Api"] == "store"
    listed = {api["name"]: api["splitters"] for api in inferd.json("get")}
    assert listed["store"] == [{"name": "recommend", "weight": 100, "requests": 2}]  # its own only
    assert len(inferd.json("get", "recommend")) == 2
    # A splitter named as another deployment's API: `inferd get NAME` means the API, as the V2
    # route and `inferd predict` do (it showed the splitter); DEPLOYMENT/NAME the splitter.
    # A splitter's exact name beats an API's name it is a prefix of (`champ`, not `champion`).
    (mall / "cortex.yaml").write_text(
        MALL
        + "".join(
            f"- kind: traffic_splitter\n  name: {name}\n  apis: [{{name: store, weight: 100}}]\n"
            for name in ("champion", "champ")
        )
    )
    inferd.run("deploy", str(mall))
    assert [a.get("key") for a in inferd.json("get", "champion")] == ["shop/champion"]
    assert [s["deployment"] for s in inferd.json("get", "mall/champion")] == ["mall"]
    sample = tmp_path / "sample.json"
    sample.write_text('{"x": 3}')
    assert json.loads(inferd.run("predict", "champ", str(sample)).stdout)["api"] == "store"
    assert json.loads(inferd.run("predict", "champion", str(sample)).stdout)["api"] == "champion"
    (mall / "cortex.yaml").write_text(MALL)
    inferd.run("deploy", str(mall))
    assert [s["deployment"] for s in inferd.json("get", "mall/recommend")] == ["mall"]
    refused = inferd.run("promote", "recommend", "challenger", check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip() == (
        "error: splitter 'recommend' is in several deployments (mall/recommend, shop/recommend); "
        "name one as DEPLOYMENT/SPLITTER"
    )
    promoted = inferd.run("promote", "shop/recommend", "challenger").stdout.strip()
    assert promoted == "splitter 'recommend' now sends 100% of its requests to api 'challenger'"
    with requests.Session() as session:
        assert _send(session, inferd.url + "/shop/recommend")[:2] == (200, "challenger")
        assert _send(session, inferd.url + "/mall/recommend")[:2] == (200, "store")
    # Deploying the project again ends the promotion, and says so even when nothing else changed.
    again = inferd.run("deploy", str(shop)).stdout.strip().splitlines()[0]
    assert again == (
        "deployment is up-to-date; splitter 'recommend' has the weights of cortex.yaml again "
        "(promote had given 'challenger' 100%)"
    )
    with requests.Session() as session:
        assert _send(session, inferd.url + "/shop/recommend")[:2] == (200, "champion")
    assert inferd.run("deploy", str(shop)).stdout.strip() == "deployment is up-to-date"
    # An endpoint another deployment's API or splitter serves is refused, as between two APIs.
    taken = {
        "endpoint: /shop/champion": (
            "endpoint /shop/champion is already served by api 'champion' of deployment 'shop'"
        ),
        "endpoint: /shop/recommend": (
            "endpoint /shop/recommend is already served by traffic splitter 'recommend' of deployment 'shop'"
        ),
    }
    for endpoint, message in taken.items():
        (mall / "cortex.yaml").write_text(
            MALL.replace("  name: recommend\n", f"  name: recommend\n  {endpoint}\n")
        )
        refused = inferd.run("deploy", str(mall), check=False)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr
        (mall / "cortex.yaml").write_text(MALL.replace("  name: store\n", f"  name: store\n  {endpoint}\n"))
        refused = inferd.run("deploy", str(mall), check=False)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    with requests.Session() as session:  # both deployments serve as before
        assert _send(session, inferd.url + "/shop/recommend")[:2] == (200, "champion")
        assert _send(session, inferd.url + "/mall/recommend")[:2] == (200, "store")


STREAMING = """
- kind: deployment
  name: talk
- kind: api
  name: words
  predictor: {path: predictor.py}
  compute: {cpu: 0.1}
- kind: traffic_splitter
  name: chat
  apis:
    - {name: words, weight: 100}
"""
WORDS = """
def predict(sample, metadata):
    for word in ("hello", "there"):
        yield {"text_output": word}
"""


def test_a_streamed_answer_through_a_splitter_names_its_api_and_trace(inferd: Inferd, tmp_path: Path) -> None:
    project = make_project(tmp_path / "talk", STREAMING, {"predictor.py": WORDS})
    inferd.run("deploy", str(project))
    inferd.wait_status("words", "live")
    given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with requests.Session() as session:
        for path in ("/talk/chat", "/v2/models/chat/generate_stream", "/v2/models/chat/generate"):
            answer = session.post(inferd.url + path, json={}, headers={"traceparent": given}, timeout=30)
            assert answer.status_code == 200 and "there" in answer.text, path
            assert answer.headers["X-Inferd-Api"] == "words", path
            assert answer.headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-"), path
            if "/v2/" in path:  # as infer's answers do, the extension's name the API that answered
                assert '"model_name":"words"' in answer.text.replace(" ", ""), (path, answer.text)


MIXED = """
- kind: deployment
  name: mixed
- kind: api
  name: tensors
  onnx: {model: models/add.onnx}
  compute: {cpu: 0.1}
- kind: api
  name: python
  predictor: {path: predictor.py}
  compute: {cpu: 0.1}
- kind: traffic_splitter
  name: front
  apis:
    - {name: tensors, weight: 50}
    - {name: python, weight: 50}
"""
ADDS = """
def predict(sample, metadata):
    return {"sum": [[a + b for a, b in zip(sample["a"][0], sample["b"][0])]]}
"""


def test_a_splitter_over_an_onnx_api_and_a_predictor_answers_every_tensor_request(
    serve: Callable[..., Server], tmp_path: Path, two_input_model: Path
) -> None:
    # A Python predictor answers only JSON: on the V2 infer and TF Serving routes its share of
    # a splitter's requests goes to the splitter's ONNX and TensorFlow APIs (half of them got a
    # 400 saying it "is a Python predictor"); V2 generate and the endpoint still reach both.
    project = make_project(
        tmp_path / "mixed", MIXED, {"predictor.py": ADDS}, {"models/add.onnx": two_input_model}
    )
    server = serve(project)
    tensor_routes = [
        ("/v2/models/front/infer", ADD_V2_BODY),
        ("/v1/models/front:predict", {"instances": [{"a": [1, 2], "b": [3, 4]}]}),
        ("/v1/models/front:predict", {"inputs": {"a": [[1, 2]], "b": [[3, 4]]}}),
    ]
    for path, body in tensor_routes:
        answers = [server.post(path, body) for _ in range(30)]
        assert {(a.status_code, a.headers["X-Inferd-Api"]) for a in answers} == {(200, "tensors")}, path
    described = {
        requests.get(server.url + "/v2/models/front", timeout=30).json()["platform"] for _ in range(20)
    }
    assert described == {"onnx_onnxv1"}  # the metadata of the API that answers its infer requests
    either = {"a": [[1, 2]], "b": [[3, 4]]}
    for path in ("/mixed/front", "/v2/models/front/generate"):
        answers = [server.post(path, either) for _ in range(40)]
        assert {a.status_code for a in answers} == {200}
        assert {a.headers["X-Inferd-Api"] for a in answers} == {"tensors", "python"}, path


SHARES = """
- kind: deployment
  name: odds
{apis}
- kind: traffic_splitter
  name: thirds
  apis: [{{name: one, weight: 33}}, {{name: two, weight: 33}}, {{name: three, weight: 34}}]
- kind: traffic_splitter
  name: rare
  apis: [{{name: one, weight: 1}}, {{name: two, weight: 99}}, {{name: three, weight: 0}}]
""".format(
    apis="".join(
        f"- kind: api\n  name: {name}\n  predictor: {{path: predictor.py, metadata: {{name: {name}}}}}\n"
        for name in ("one", "two", "three")
    )
)


def test_three_way_and_lopsided_splits_keep_their_weights(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve(make_project(tmp_path / "odds", SHARES, {"predictor.py": PREDICTOR}))
    local = threading.local()

    def shares(path: str, count: int) -> Counter[str]:
        def one(_: int) -> str:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            status, header, answered = _send(local.session, server.url + path)
            assert status == 200 and header == answered
            return header

        with ThreadPoolExecutor(4) as pool:
            return Counter(pool.map(one, range(count)))

    thirds = shares("/odds/thirds", 3000)  # each share's sigma is under 0.9 points: 4 is 4.5 sigma
    weights = {"one": 0.33, "two": 0.33, "three": 0.34}
    assert all(abs(thirds[name] / 3000 - weight) <= 0.04 for name, weight in weights.items()), thirds
    rare = shares("/odds/rare", 2000)  # 'one' expects 20 (sigma 4.4); 'three' (weight 0) none
    assert rare["three"] == 0 and 1 <= rare["one"] <= 45 and rare["one"] + rare["two"] == 2000, rare
