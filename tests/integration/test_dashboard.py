"""The web dashboard end to end: a real operator with two APIs, known traffic, real headless Chromium.

The page is read through the data attributes its charts carry (what is plotted, point by
point), and every check waits until the sampled history has caught up with the traffic, so
the 5 s (here 0.5 s) sampling cannot make it flaky.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import BrowserContext, Page, sync_playwright

from tests.conftest import ROOT, example, make_project, wait_for
from tests.integration.conftest import Inferd

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = ROOT / "test-artifacts" / "dashboard.png"

SETOSA = json.loads((example("iris-onnx") / "sample.json").read_text())
VIRGINICA = {"sepal_length": 7.7, "sepal_width": 3.0, "petal_length": 6.1, "petal_width": 2.3}
# pre_inference reads every field: a missing one is a handler error (500, traceback in the log).
MISSING_FIELD = {"sepal_length": 5.0}

SECOND_PROJECT = """\
- kind: deployment
  name: flowers

- kind: api
  name: species
  onnx:
    model: models/iris.onnx
    request_handler: handlers/iris.py
  tracker:
    model_type: classification
"""

# api -> (setosa predictions, virginica predictions, malformed JSON bodies, handler errors)
TRAFFIC = {"classifier": (6, 4, 3, 1), "species": (2, 5, 1, 2)}

# Everything the test reads from the page, in one evaluation.
READ_PAGE = """() => {
  const sum = (values) => values.reduce((a, b) => a + b, 0);
  const result = {};
  for (const row of document.querySelectorAll("#apis tbody tr[data-api]")) {
    const name = row.dataset.api;
    const field = (key) => row.querySelector(`[data-field="${key}"]`).textContent.trim();
    const chart = (id) => document.querySelector(`svg[data-api="${name}"][data-chart="${id}"]`);
    const series = (id, key) => {
      const path = chart(id).querySelector(`path[data-series="${key}"]`);
      return path ? JSON.parse(path.dataset.points) : [];
    };
    const counts = {};
    for (const path of chart("requests").querySelectorAll("path[data-series]")) {
      counts[path.dataset.series] = sum(JSON.parse(path.dataset.counts));
    }
    const classes = {};
    const bars = document.querySelectorAll(`svg[data-api="${name}"][data-chart="classes"] rect[data-class]`);
    for (const bar of bars) {
      classes[bar.dataset.class] = Number(bar.dataset.count);
    }
    const logs = document.querySelector(`pre[data-logs][data-api="${name}"]`);
    const lines = [...logs.querySelectorAll("div")].map((div) => ({
      text: div.textContent,
      error: div.dataset.level === "error",
      status: div.dataset.status ? Number(div.dataset.status) : null,
    }));
    result[name] = {
      row: {
        status: field("status"),
        requested: field("requested"),
        available: field("available"),
        up_to_date: field("up_to_date"),
        failed: field("failed"),
        endpoint: field("endpoint"),
      },
      counts,
      times: JSON.parse(chart("requests").dataset.times || "[]"),
      p50: series("latency", "p50_ms"),
      queue: series("queue", "queue"),
      requested: series("replicas", "requested"),
      available: series("replicas", "available"),
      classes,
      signature: [...document.querySelectorAll(`table.sig[data-api="${name}"] [data-field="name"]`)].map(
        (cell) => cell.textContent,
      ),
      curl: document.querySelector(`section[data-api="${name}"] [data-field="curl"]`).textContent,
      lines,
    };
  }
  return result;
}"""


def second_project(tmp_path: Path) -> Path:
    """Another deployment and API name serving the same model and handler."""
    source = example("iris-onnx")
    return make_project(
        tmp_path / "flowers",
        SECOND_PROJECT,
        files={"handlers/iris.py": (source / "handlers" / "iris.py").read_text()},
        models={"models/iris.onnx": source / "models" / "iris.onnx"},
    )


def send_traffic(inferd: Inferd) -> dict[str, dict[str, Any]]:
    """Send TRAFFIC, checking every answer; what each API should now show."""
    expected: dict[str, dict[str, Any]] = {}
    with requests.Session() as session:
        for api, (setosa, virginica, malformed, failing) in TRAFFIC.items():
            url = inferd.api(api)["url"]
            for body, count, label in (
                (SETOSA, setosa, "iris-setosa"),
                (VIRGINICA, virginica, "iris-virginica"),
            ):
                for _ in range(count):
                    response = session.post(url, json=body, timeout=30)
                    assert (response.status_code, response.json()) == (200, label)
            for _ in range(malformed):
                response = session.post(url, data=b'{"sepal_length": ', timeout=30)
                assert response.status_code == 400, response.text
            for _ in range(failing):
                response = session.post(url, json=MISSING_FIELD, timeout=30)
                assert response.status_code == 500, response.text
            expected[api] = {
                "counts": {"2XX": setosa + virginica, "4XX": malformed, "5XX": failing},
                "classes": {"iris-setosa": setosa, "iris-virginica": virginica},
            }
    return expected


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[BrowserContext]:
    """Debian's headless Chromium with a fresh profile, driven by playwright (no browser download)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def read_page(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(READ_PAGE)
    return result


def test_dashboard_shows_apis_traffic_tracker_and_logs(inferd: Inferd, tmp_path: Path) -> None:
    inferd.env["INFERD_DASHBOARD_SAMPLE_SECONDS"] = "0.5"
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):  # no display: the command only prints the link
        inferd.env.pop(name, None)

    # `inferd dashboard` starts the operator when none runs, and prints a one-time link.
    result = inferd.run("dashboard")
    assert "started the inferd operator" in result.stderr
    login = result.stdout.strip()
    found = re.fullmatch(r"(http://127\.0\.0\.1:\d+)/dashboard/login\?token=[\w-]{43}", login)
    assert found, login
    base = found.group(1)
    operator_info = json.loads((inferd.home / "operator.json").read_text())
    assert operator_info["dashboard"] == base
    assert {"pid", "admin_port", "gateway"} <= set(operator_info)

    inferd.run("deploy", str(example("iris-onnx")))
    inferd.run("deploy", str(second_project(tmp_path)))
    expected = send_traffic(inferd)

    # Without the session cookie (or with a wrong token) every route is 401 JSON.
    for path in (
        "/dashboard/",
        "/dashboard/api/overview",
        "/dashboard/dashboard.js",
        "/",
        "/dashboard/login",
        "/dashboard/login?token=not-a-token",
        "/dashboard/s/",
        "/dashboard/s/AAAAAAAAAAAAAAAAAAAAAAAA/",
    ):
        response = requests.get(base + path, timeout=10, allow_redirects=False)
        assert response.status_code == 401, path
        assert response.json()["error"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer "), path  # RFC 9110 15.5.2
    refused = requests.post(base + "/dashboard/api/overview", timeout=10)  # RFC 9110 15.5.6
    assert (refused.status_code, refused.headers.get("Allow")) == (405, "GET")

    with chromium(tmp_path / "chromium-profile") as context:
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(login)
        pages = page.url  # the session's own path: its cookie is sent there only
        assert re.fullmatch(re.escape(base) + r"/dashboard/s/[\w-]{24}/", pages), pages

        (cookie,) = [c for c in context.cookies() if c["name"].startswith("inferd_dashboard")]
        assert cookie.get("httpOnly") is True
        assert cookie.get("sameSite") == "Strict"
        assert pages.endswith(cookie["path"])
        # The link was spent; the cookie, on the session's path, is what opens the dashboard now.
        assert requests.get(login, timeout=10, allow_redirects=False).status_code == 401
        jar = {cookie["name"]: cookie["value"]}
        overview = requests.get(pages + "api/overview", cookies=jar, timeout=10)
        assert overview.status_code == 200
        # Was: Path=/dashboard, and browsers send a cookie to every port of a host: a program on
        # another 127.0.0.1 port that the browser visited under /dashboard got it. Neither the
        # cookie without the path nor the path without the cookie opens anything now.
        assert requests.get(base + "/dashboard/api/overview", cookies=jar, timeout=10).status_code == 401
        assert requests.get(pages + "api/overview", timeout=10).status_code == 401
        # as `inferd get` lists them: by deployment (flowers, iris), then API
        assert [api["name"] for api in overview.json()["apis"]] == ["species", "classifier"]
        assert all(api["gpus"] == [] for api in overview.json()["apis"])  # no GPU panel on CPUs

        def caught_up() -> dict[str, Any] | None:
            shown = read_page(page)
            if set(shown) != set(TRAFFIC):
                return None
            for api, want in expected.items():
                if shown[api]["counts"] != want["counts"] or shown[api]["classes"] != want["classes"]:
                    return None
                # the access log and the replica's traceback reach the log a moment after the answer
                lines = shown[api]["lines"]
                if not any(line["status"] == 500 for line in lines) or not any(
                    "Traceback" in line["text"] and line["error"] for line in lines
                ):
                    return None
            return shown

        shown = wait_for(caught_up, 60, "the dashboard to show all the traffic sent")
        assert page.locator(".panel.gpus[data-api='classifier']").is_hidden()
        for api, endpoint in (("classifier", "/iris/classifier"), ("species", "/flowers/species")):
            page_api = shown[api]
            assert page_api["row"] == {
                "status": "live",
                "requested": "1",
                "available": "1",
                "up_to_date": "1",
                "failed": "0",
                "endpoint": endpoint,
            }
            points = len(page_api["times"])
            assert points >= 1
            assert all(len(page_api[key]) == points for key in ("p50", "queue", "requested", "available"))
            assert any(value is not None and value > 0 for value in page_api["p50"])
            assert all(isinstance(value, int) and value >= 0 for value in page_api["queue"])
            assert page_api["requested"][-1] == 1
            assert page_api["available"][-1] == 1
            assert page_api["signature"] == ["input", "output_label", "output_probability"]
            assert page_api["curl"] == (
                f'curl {inferd.url}{endpoint} -X POST -H "Content-Type: application/json" -d @sample.json'
            )
            # The handler error's traceback is in the last lines, highlighted, like every ERROR line
            # and every 5XX access line; answered requests are not.
            lines = page_api["lines"]
            assert 0 < len(lines) <= 50
            assert any("Traceback" in line["text"] and line["error"] for line in lines)
            assert all(line["error"] for line in lines if "ERROR" in line["text"])
            assert any(line["status"] == 500 for line in lines)
            assert all(line["error"] for line in lines if (line["status"] or 0) >= 500)
            assert not any(line["error"] for line in lines if line["status"] == 200)

        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        copy = page.locator('section[data-api="classifier"] button.copy')
        copy.click()
        wait_for(lambda: copy.text_content() == "Copied", 30, "the copy button to confirm")
        assert page.evaluate("() => navigator.clipboard.readText()") == shown["classifier"]["curl"]

        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.mouse.move(0, 0)
        page.screenshot(path=str(SCREENSHOT))
        assert not problems, problems


SHOP = """\
- kind: deployment
  name: shop
- kind: api
  name: champion
  predictor: {path: predictor.py}
  compute: {cpu: 0.1}
- kind: api
  name: candidate
  predictor: {path: predictor.py, metadata: {candidate: true}}
  compute: {cpu: 0.1}
- kind: traffic_splitter
  name: front
  apis:
    - {name: champion, weight: 100}
    - {name: candidate, weight: 0}
  shadow: {api: candidate, percent: 100}
"""
SHOP_PREDICTOR = """
def predict(sample, metadata):
    x = sample["x"]
    return {"double": x * 2 + (1 if metadata.get("candidate") and x % 4 == 0 else 0)}
"""
READ_TRAFFIC = """() => {
  const rows = [...document.querySelectorAll("#splitters tbody tr[data-splitter]")];
  const samples = document.querySelectorAll('.panel.payloads[data-api="champion"] tbody tr');
  const cell = (row, field) => row.querySelector(`[data-field="${field}"]`).textContent;
  return {
    visible: !document.getElementById("traffic").hidden,
    weights: Object.fromEntries(rows.map((r) => [r.dataset.api, cell(r, "weight")])),
    requests: Object.fromEntries(rows.map((r) => [r.dataset.api, cell(r, "requests")])),
    shadow: rows.length ? cell(rows[0], "shadow") : "",
    samples: [...samples].map((r) => ({
      request: cell(r, "request"),
      shadow: cell(r, "shadow"),
      agrees: r.dataset.agrees,
    })),
  };
}"""


def test_dashboard_shows_splitters_shadow_agreement_and_payloads(inferd: Inferd, tmp_path: Path) -> None:
    inferd.env["INFERD_DASHBOARD_SAMPLE_SECONDS"] = "0.5"
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        inferd.env.pop(name, None)
    login = inferd.run("dashboard").stdout.strip()
    inferd.run("deploy", str(make_project(tmp_path / "shop", SHOP, {"predictor.py": SHOP_PREDICTOR})))
    inferd.wait_status("champion", "live")
    inferd.wait_status("candidate", "live")
    with requests.Session() as session:
        for x in range(20):
            assert session.post(inferd.url + "/shop/front", json={"x": x}, timeout=30).json() == {
                "double": 2 * x
            }

    with chromium(tmp_path / "chromium-profile") as context:
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(login)

        latest = [f'{{"x":{x}}}' for x in range(19, 11, -1)]

        def caught_up() -> dict[str, Any] | None:  # every copy answered, the last one recorded
            shown: dict[str, Any] = page.evaluate(READ_TRAFFIC)
            samples = [s["request"] for s in shown["samples"]]
            return shown if "sent 20" in shown["shadow"] and samples == latest else None

        shown = wait_for(caught_up, 60, "the dashboard to show the splitter, its shadow and the payloads")
        assert shown["visible"]
        assert shown["weights"] == {"champion": "100%", "candidate": "0%"}
        assert shown["requests"] == {"champion": "20", "candidate": "0"}
        # 5 of the 20 inputs (x % 4 == 0) get another answer from the shadow.
        assert shown["shadow"] == "→ candidate 100% · sent 20 · dropped 0 · agreement 75.0% · errors 0"
        # The latest records first, each with the shadow's answer beside the champion's.
        assert [s["request"] for s in shown["samples"]] == latest
        for sample, x in zip(shown["samples"], range(19, 11, -1), strict=True):
            expected = 2 * x + (1 if x % 4 == 0 else 0)
            assert sample["shadow"] == f'200 {{"double":{expected}}}'
            assert sample["agrees"] == ("false" if x % 4 == 0 else "true")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.locator('.panel.payloads[data-api="champion"]').scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOT.with_name("dashboard-traffic.png")), full_page=True)
        assert not problems, problems
