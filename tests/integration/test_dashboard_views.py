"""The dashboard as a user and an attacker see it: what the page shows against what the CLI says,
and what hostile request bodies do to it. One operator and one Chromium for the module."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page

from inferd.operator.dashboard import LOG_LINE_CHARS
from tests.conftest import example, make_project, wait_for
from tests.integration.conftest import Inferd, stop_operator
from tests.integration.test_dashboard import chromium

# Two APIs serving the same model behind a splitter, every request copied to the second.
V2_SHOP = """\
- kind: deployment
  name: vshop

- kind: api
  name: champ
  onnx: {model: models/iris.onnx}
  compute: {cpu: 0.1}
- kind: api
  name: chall
  onnx: {model: models/iris.onnx}
  compute: {cpu: 0.1}
- kind: traffic_splitter
  name: vfront
  apis:
    - {name: champ, weight: 100}
    - {name: chall, weight: 0}
  shadow: {api: chall, percent: 100}
"""
HOSTILE = "</script><script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>"
ROW = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.2, 3.6, 1.4, 0.3]}
READ_SAMPLES = """() => [...document.querySelectorAll('.panel.payloads[data-api="champ"] tbody tr')].map(
  (r) => ({
  agrees: r.dataset.agrees,
  request: r.querySelector('[data-field="request"]').textContent,
  response: r.querySelector('[data-field="response"]').textContent,
  shadow: r.querySelector('[data-field="shadow"]').textContent,
  }),
)"""


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inferd]:
    runner = Inferd(tmp_path_factory.mktemp("dashboard") / "home")
    runner.env["INFERD_DASHBOARD_SAMPLE_SECONDS"] = "0.5"
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):  # no display: `inferd dashboard` only prints the link
        runner.env.pop(name, None)
    runner.run("up")
    try:
        yield runner
    finally:
        stop_operator(runner)


@pytest.fixture(scope="module")
def page(operator: Inferd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """The dashboard, logged in, in a real headless Chromium; fails the test on a page error."""
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        opened = context.new_page()
        problems: list[str] = []
        opened.on("pageerror", lambda error: problems.append(str(error)))
        opened.goto(operator.run("dashboard").stdout.strip())
        yield opened
        assert not problems, problems


def test_v2_answers_shadowed_alike_show_as_agreeing_as_the_cli_counts_them(
    operator: Inferd, page: Page, tmp_path: Path
) -> None:
    models = {"models/iris.onnx": example("iris-onnx") / "models" / "iris.onnx"}
    operator.run("deploy", str(make_project(tmp_path / "vshop", V2_SHOP, models=models)))
    operator.wait_status("champ", "live")
    operator.wait_status("chall", "live")
    count = 4
    with requests.Session() as session:
        for i in range(count):
            # The page shows the request (hostile markup in its id) as text, and runs none of it.
            body = {"id": f"{HOSTILE}{i}", "inputs": [ROW]}
            answer = session.post(f"{operator.url}/v2/models/vfront/infer", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.json()["model_name"] == "champ"

    def counted() -> dict[str, Any] | None:
        (splitter,) = operator.json("get", "vfront")
        shadow: dict[str, Any] = splitter["shadow"]
        return shadow if shadow["answered"] == count else None

    # The two APIs gave the same answers but for the model name in them: the CLI counts agreement.
    assert wait_for(counted, 60, "the shadow to answer every copy")["agreed"] == count

    def shown() -> list[dict[str, str]] | None:
        samples: list[dict[str, str]] = page.evaluate(READ_SAMPLES)
        return samples if len(samples) == count and all(s["shadow"] for s in samples) else None

    samples = wait_for(shown, 60, "the dashboard to show the recorded payloads with the shadow's answers")
    for sample in samples:
        assert HOSTILE in sample["request"] and sample["response"].startswith('{"model_name":"champ"')
        assert sample["shadow"].startswith('200 {"model_name":"chall"')
    # ... and so do the payload log's records and the page: no row marked as a disagreement.
    records = operator.json("payloads", "champ")
    assert [record["shadow"]["agrees"] for record in records] == [True] * count
    assert [sample["agrees"] for sample in samples] == ["true"] * count
    assert page.evaluate("window.__pwned") is None


# Run in a page of another origin: what its script can read of each answer, or the error.
CROSS_SITE = """async ([admin, dashboard]) => {
  const attempt = async (url, options) => {
    try {
      const answer = await fetch(url, options);
      return answer.type === "opaque" ? "opaque" : `${answer.status} ${await answer.text()}`;
    } catch (error) {
      return `refused: ${error.name}`;
    }
  };
  const simple = { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" } };
  return {
    info: await attempt(`${admin}/info`, {}),
    apis: await attempt(`${admin}/apis`, {}),
    overview: await attempt(`${dashboard}/dashboard/api/overview`, { credentials: "include" }),
    delete: await attempt(`${admin}/delete`, { ...simple, body: '{"name": "vshop"}' }),
    down: await attempt(`${admin}/down`, { ...simple, body: "{}" }),
  };
}"""


class _Page(BaseHTTPRequestHandler):
    cookies: list[str] = []  # the Cookie headers the browser sent this other site

    def do_GET(self) -> None:
        self.cookies.append(self.headers.get("Cookie", ""))
        body = b"<!doctype html><title>another site</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


def test_a_page_of_another_origin_can_neither_read_nor_change_the_operator(
    operator: Inferd, page: Page, tmp_path: Path
) -> None:
    """A web page on another loopback port, in the browser that holds a dashboard session: the
    admin API and the dashboard answer nothing it can read, and its simple POSTs change nothing."""
    models = {"models/iris.onnx": example("iris-onnx") / "models" / "iris.onnx"}
    operator.run("deploy", str(make_project(tmp_path / "vshop", V2_SHOP, models=models)))
    operator.wait_status("champ", "live")
    info = json.loads((operator.home / "operator.json").read_text())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    foreign = page.context.new_page()
    try:
        foreign.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        seen = foreign.evaluate(CROSS_SITE, [f"http://127.0.0.1:{info['admin_port']}", info["dashboard"]])
        # Browsers send a host's cookies to all its ports: with Path=/dashboard, this page's own
        # /dashboard/ got the session cookie, which opens the dashboard from any program.
        foreign.goto(f"http://127.0.0.1:{server.server_address[1]}/dashboard/")
    finally:
        foreign.close()
        server.shutdown()
        server.server_close()
        thread.join()
    assert len(_Page.cookies) >= 2 and not any("inferd_dashboard" in sent for sent in _Page.cookies)
    assert seen == {
        "info": "refused: TypeError",
        "apis": "refused: TypeError",
        "overview": "refused: TypeError",
        "delete": "opaque",
        "down": "opaque",
    }
    # Sent, but without the operator's token: refused, so the operator and its APIs are still up.
    assert operator.status("champ")["status"] == "live"
    assert operator.json("get", "vfront")[0]["apis"]


STALLED = "offline the operator has not answered for 10 s"


def _page_state(page: Page) -> str:
    """The page's connection state and what it says of it."""
    state: str = page.evaluate(
        "(node) => `${node.dataset.state} ${node.textContent}`", page.query_selector("#state")
    )
    return state


def _writer(pipe: Path) -> int | None:
    """The write end of ``pipe`` when someone waits to read it (None when nobody does)."""
    try:
        return os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: nobody reads it
        return None


def _opening_a_pipe(pid: int) -> bool:
    """Whether a thread of process ``pid`` waits in ``open`` for a pipe's other end."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "wchan").read_text() == "wait_for_partner":
                return True
    return False


def test_the_gateway_answers_while_the_dashboard_waits_on_a_stalled_disk(
    operator: Inferd, page: Page, tmp_path: Path
) -> None:
    """The page's data reads every API's log and payload log: on a disk that stalls (here a named
    pipe in place of a payload log, read while it stays empty), the dashboard waits, the gateway
    does not."""
    models = {"models/iris.onnx": example("iris-onnx") / "models" / "iris.onnx"}
    operator.run("deploy", str(make_project(tmp_path / "vshop", V2_SHOP, models=models)))
    operator.wait_status("chall", "live")
    stalled = operator.home / "payloads" / "vshop" / "chall.jsonl"  # chall records nothing itself
    stalled.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(stalled)

    def answered(waiting: Future[requests.Response]) -> bool:
        released = _writer(stalled)  # the disk comes back: the pipe reads as empty
        if released is not None:
            os.close(released)
        return waiting.done()

    with requests.Session() as dashboard, ThreadPoolExecutor(1) as pool:
        login = dashboard.get(operator.run("dashboard").stdout.strip(), allow_redirects=False, timeout=30)
        assert login.status_code == 303
        base = json.loads((operator.home / "operator.json").read_text())["dashboard"]
        pages = base + login.headers["Location"]
        waiting = pool.submit(dashboard.get, f"{pages}api/overview", timeout=120)
        try:
            pid = operator.operator_pid()
            assert pid is not None
            wait_for(lambda: _opening_a_pipe(pid), 60, "the dashboard to open the stalled payload log")
            answer = requests.post(
                f"{operator.url}/v2/models/chall/infer", json={"inputs": [ROW]}, timeout=30
            )
            assert answer.status_code == 200, answer.text
            # The open page stops saying "updated" (with the time of its last data) and says why.
            wait_for(lambda: _page_state(page) == STALLED, 60, "the page to say its data has stopped")
        finally:
            wait_for(lambda: answered(waiting), 120, "the dashboard's answer")
            stalled.unlink()
        overview = waiting.result()
    assert overview.status_code == 200
    shown = {api["name"]: api for api in overview.json()["apis"]}
    assert shown["chall"]["payloads"] == [] and shown["chall"]["logs"]
    wait_for(lambda: _page_state(page).startswith("ok updated"), 60, "the page to update again")


def test_a_refresh_lays_the_page_out_once_whatever_the_number_of_apis(
    operator: Inferd, page: Page, tmp_path: Path
) -> None:
    """Each refresh redraws every API; it read the layout after each write (every chart's width,
    every log's scroll), so the browser laid the page out about four times per API, every 2.5 s
    (50 APIs: 200 layouts and over a second of a busy page per refresh on this machine)."""
    models = {"models/iris.onnx": example("iris-onnx") / "models" / "iris.onnx"}
    operator.run("deploy", str(make_project(tmp_path / "vshop", V2_SHOP, models=models)))
    drawn = "() => latest !== null && ['champ', 'chall'].every((n) => latest.apis.some((a) => a.name === n))"
    wait_for(lambda: page.evaluate(drawn), 60, "the page to draw both APIs")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")

    def layouts() -> float:
        metrics = cdp.send("Performance.getMetrics")["metrics"]
        return float(next(metric["value"] for metric in metrics if metric["name"] == "LayoutCount"))

    renders = 5
    before = layouts()
    page.evaluate(f"() => {{ for (let i = 0; i < {renders}; i++) render(latest); }}")
    # one layout a refresh (and one for any frame the browser drew between the counts)
    assert layouts() - before <= 2 * renders
    cdp.detach()
    # The logs still open scrolled to their newest line.
    scrolled = """() => [...document.querySelectorAll('pre[data-logs]')].map(
      (pre) => pre.scrollHeight - pre.scrollTop - pre.clientHeight)"""
    assert all(gap < 8 for gap in page.evaluate(scrolled))


ECHO_PROJECT = """\
- kind: deployment
  name: echo

- kind: api
  name: labeler
  predictor: {path: predictor.py}
  tracker: {model_type: classification}
  compute: {cpu: 0.1}
"""
# The predicted class is whatever the client sent: a client chooses the tracker's labels (and
# what the replica prints).
ECHO_PREDICTOR = """\
def predict(sample, metadata):
    if "say" in sample:
        print(sample["say"])
    return sample["label"]
"""


@pytest.fixture(scope="module")
def labeler(operator: Inferd, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of an API that answers (and tracks) the label each request names."""
    project = tmp_path_factory.mktemp("echo") / "echo"
    operator.run("deploy", str(make_project(project, ECHO_PROJECT, files={"predictor.py": ECHO_PREDICTOR})))
    url: str = operator.wait_status("labeler", "live")["url"]
    return url


def _overview(operator: Inferd) -> dict[str, Any]:
    """The dashboard's data, read over HTTP with a session opened by a fresh login link."""
    with requests.Session() as session:
        login = session.get(operator.run("dashboard").stdout.strip(), timeout=30)
        assert login.status_code == 200, login.text
        answer = session.get(f"{login.url}api/overview", timeout=30)
        assert answer.status_code == 200, answer.text
        overview: dict[str, Any] = answer.json()
        return overview


def test_a_client_chosen_label_of_any_length_neither_stops_the_replica_nor_swells_the_tracker(
    operator: Inferd, labeler: str
) -> None:
    def classes() -> Counter[str]:
        (api,) = [api for api in _overview(operator)["apis"] if api["name"] == "labeler"]
        return Counter(api["metrics"]["tracker"].get("classes", {}))  # none before the first answer

    before = classes()  # what the module's other tests sent the labeler
    with requests.Session() as session:
        for label in ("short", "L" * 70_000, "short"):
            answer = session.post(labeler, json={"label": label}, timeout=30)
            assert (answer.status_code, answer.json()) == (200, label)
    # The long label is not counted (the replica logs why); the short ones are.
    assert classes() - before == {"short": 2}


def test_a_name_that_is_not_loopback_in_host_is_refused_dns_rebinding(operator: Inferd) -> None:
    """A page of rebound.example whose name was pointed at 127.0.0.1 (DNS rebinding) talks to the
    dashboard as its own origin: the listener on loopback answers only loopback names."""
    link = operator.run("dashboard").stdout.strip()
    base = link.split("/dashboard/", 1)[0]
    port = base.rsplit(":", 1)[1]
    rebound = {"Host": f"rebound.example:{port}"}
    with requests.Session() as session:
        refused = session.get(link, headers=rebound, allow_redirects=False, timeout=30)
        assert refused.status_code == 403 and "Set-Cookie" not in refused.headers, refused.text
        assert "rebound.example" not in refused.text  # the name is not echoed back
        # The refused request spent nothing: the link still opens a session.
        opened = session.get(link, timeout=30)
        assert opened.status_code == 200
        pages = opened.url
        assert session.get(f"{pages}api/overview", timeout=30).status_code == 200
        for url in (f"{pages}api/overview", pages):
            answer = session.get(url, headers=rebound, timeout=30)
            assert answer.status_code == 403, answer.text
        # Each loopback spelling is the dashboard's own (the cookie sent as a browser would).
        cookie = "; ".join(f"{name}={value}" for name, value in session.cookies.items())
        for host in (f"127.0.0.1:{port}", f"[::1]:{port}", f"LOCALHOST:{port}", "127.0.0.1"):
            headers = {"Host": host, "Cookie": cookie}
            answer = requests.get(f"{pages}api/overview", headers=headers, timeout=30)
            assert answer.status_code == 200, (host, answer.text)


def test_a_huge_printed_line_is_shown_cut_and_hides_no_line_after_it(operator: Inferd, labeler: str) -> None:
    with requests.Session() as session:
        for say in ("huge " + "H" * 600_000, "printed after the huge line"):
            answer = session.post(labeler, json={"label": "log", "say": say}, timeout=30)
            assert answer.status_code == 200, answer.text

    def shown() -> list[str] | None:
        (api,) = [api for api in _overview(operator)["apis"] if api["name"] == "labeler"]
        lines: list[str] = api["logs"]
        return lines if any(line.endswith("printed after the huge line") for line in lines) else None

    lines = wait_for(shown, 30, "the line printed after the huge one on the dashboard")
    (huge,) = [line for line in lines if "huge HHH" in line]
    assert len(huge) == LOG_LINE_CHARS and max(len(line) for line in lines) == LOG_LINE_CHARS


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("curl") is None, reason="runs curl as user nobody (root only)"
)
def test_a_link_read_from_the_browsers_command_line_is_no_use_to_another_user(operator: Inferd) -> None:
    """`inferd dashboard` opens its link by passing it on a browser's command line, which every
    user of the machine can read (`ps aux`) before the browser has used it: another local user's
    request with it is refused, and spends nothing."""
    link = operator.run("dashboard").stdout.strip()
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*", link]
    other = subprocess.run(command, user="nobody", capture_output=True, text=True, timeout=30, check=False)
    assert other.stdout == "403", other
    with requests.Session() as session:
        opened = session.get(link, timeout=30)
        assert opened.status_code == 200 and "/dashboard/s/" in opened.url


def test_a_shadow_agreement_short_of_whole_never_reads_as_100_percent(page: Page) -> None:
    # Was: 3,999 copies agreeing of 4,000 read "agreement 100.0%" (the CLI's replay too).
    shown = {
        (agreed, answered): page.evaluate(
            "([agreed, answered]) => fmtShadow({api: 'c', percent: 100, sent: answered, dropped: 0, agreed,"
            " answered, errors: 0})",
            [agreed, answered],
        ).split(" · ")[3]
        for agreed, answered in ((3999, 4000), (4000, 4000), (15, 20), (1, 100000), (0, 5))
    }
    assert shown == {
        (3999, 4000): "agreement 99.97%",
        (4000, 4000): "agreement 100%",
        (15, 20): "agreement 75.0%",
        (1, 100000): "agreement 0.001%",
        (0, 5): "agreement 0.0%",
    }
