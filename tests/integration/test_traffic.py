"""Traffic splitters through the real operator: requests split by weight, weights changed live."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.conftest import make_project, wait_for
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
  compute: {{cpu: 0.1}}
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
        (project / "cortex.yaml").write_text(_yaml((0, 100)))
        # (the project's files changed, so its APIs roll to a new version too)
        assert inferd.run("deploy", str(project)).stdout.strip() == "deployment updated"
        mark = len(seen)
        wait_for(lambda: len(seen) > mark + 200, 60, "traffic after the redeploy")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert [r for r in seen if r[0] != 200] == []
    assert {header for _, header, _ in seen[mark + 10 :]} == {"challenger"}
