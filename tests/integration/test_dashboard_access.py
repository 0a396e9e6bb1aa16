"""The dashboard for a user with a keyboard, a screen reader's needs, a dark theme or a phone:
readable contrast, boxes that scroll reachable by keyboard, a focus that refreshes leave alone,
and no sideways scrolling on a 390 px screen. One operator and one Chromium for the module."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import ConsoleMessage, Page

from tests.conftest import example, make_project, wait_for
from tests.integration.conftest import Inferd, stop_operator
from tests.integration.test_dashboard import chromium

# 63 characters, the most a name may have, most of them with no hyphen to break the line at.
NAME = "iris-" + "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv"
PROJECT = f"""\
- kind: deployment
  name: access

- kind: api
  name: {NAME}
  onnx:
    model: models/iris.onnx
    request_handler: handlers/iris.py
  tracker:
    model_type: classification
  payload_log: {{sample: 1.0}}
  compute: {{cpu: 0.1}}
- kind: api
  name: quiet
  predictor: {{path: quiet.py}}
  payload_log: {{sample: 1.0}}
  compute: {{cpu: 0.1}}
"""
QUIET = "def predict(sample, metadata):\n    return sample\n"
SETOSA = {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3}

# WCAG 2.1 AA contrast (1.4.3) of every piece of HTML text shown, over the colours behind it
# (translucent backgrounds composed over what lies under them). SVG text is left out.
LOW_CONTRAST = """() => {
  const rgba = (text) => (text.match(/[\\d.]+/g) || []).map(Number).concat([1]).slice(0, 4);
  const over = (top, under) =>
    top.slice(0, 3).map((c, i) => c * top[3] + under[i] * (1 - top[3])).concat([1]);
  const behind = (node) => {
    const layers = [];
    for (let at = node; at; at = at.parentElement) {
      const colour = rgba(getComputedStyle(at).backgroundColor);
      if (colour[3] > 0) layers.push(colour);
      if (colour[3] === 1) break;
    }
    return layers.reverse().reduce((under, top) => over(top, under), [255, 255, 255, 1]);
  };
  const luminance = (c) => {
    const linear = (v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    const [r, g, b] = c.slice(0, 3).map((v) => linear(v / 255));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const failures = [];
  for (const node of document.querySelectorAll("body *")) {
    if (node.closest("svg") || !node.getClientRects().length) continue;
    const own = [...node.childNodes].some((child) => child.nodeType === 3 && child.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(node);
    const back = behind(node);
    const fore = over(rgba(style.color), back);
    const [light, dark] = [luminance(fore), luminance(back)].sort((a, b) => b - a);
    const ratio = (light + 0.05) / (dark + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const text = node.textContent.slice(0, 30);
    if (ratio < (large ? 3 : 4.5)) failures.push(`${node.className} "${text}" ${ratio.toFixed(2)}`);
  }
  return failures;
}"""
# Boxes that scroll but that a keyboard cannot reach: neither focusable nor holding a control.
UNREACHABLE = """() => [...document.querySelectorAll("body *")].filter((node) => {
  const style = getComputedStyle(node);
  const scrolls = (node.scrollWidth > node.clientWidth && /auto|scroll/.test(style.overflowX))
    || (node.scrollHeight > node.clientHeight && /auto|scroll/.test(style.overflowY));
  return scrolls && node.getClientRects().length && node.tabIndex < 0
    && !node.querySelector("a[href], button, input, select, textarea, [tabindex]");
}).map((node) => `${node.tagName}.${node.className}`)"""


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inferd]:
    root = tmp_path_factory.mktemp("dashboard-access")
    runner = Inferd(root / "home")
    runner.env["INFERD_DASHBOARD_SAMPLE_SECONDS"] = "0.5"
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):  # no display: `inferd dashboard` only prints the link
        runner.env.pop(name, None)
    runner.run("up")
    try:
        source = example("iris-onnx")
        project = make_project(
            root / "project",
            PROJECT,
            files={"handlers/iris.py": (source / "handlers" / "iris.py").read_text(), "quiet.py": QUIET},
            models={"models/iris.onnx": source / "models" / "iris.onnx"},
        )
        runner.run("deploy", str(project))
        _traffic(runner)
        yield runner
    finally:
        stop_operator(runner)
        shutil.rmtree(root / "project", ignore_errors=True)


def _traffic(runner: Inferd) -> None:
    """12 answers and 12 refusals: the logs show both kinds of line, the tracker 12 classes."""
    url = runner.api(NAME)["url"]
    with requests.Session() as session:
        for _ in range(12):
            assert session.post(url, json=SETOSA, timeout=30).status_code == 200
            assert session.post(url, data=b'{"sepal_length": ', timeout=30).status_code == 400


@pytest.fixture(scope="module")
def page(operator: Inferd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """The dashboard, logged in; fails the test on a page error or an error in the console."""
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        opened = context.new_page()
        problems: list[str] = []
        opened.on("pageerror", lambda error: problems.append(str(error)))
        opened.on("console", lambda message: _console(message, problems))
        opened.goto(operator.run("dashboard").stdout.strip())
        wait_for(lambda: _logged(opened), 60, "the dashboard to show the classifier's access lines")
        yield opened
        assert not problems, problems


def _console(message: ConsoleMessage, problems: list[str]) -> None:
    # The browser's own line for a refused connection (the last test stops the operator) aside.
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        problems.append(message.text)


def _logged(page: Page) -> bool:
    lines: int = page.evaluate(
        f"""document.querySelectorAll('pre.logs[data-api="{NAME}"] div.access').length"""
    )
    return lines >= 24


def _refreshes(page: Page) -> int:
    return int(page.evaluate("Number(document.body.dataset.refreshes)"))


def _after_refreshes(page: Page, count: int) -> None:
    seen = _refreshes(page)
    wait_for(lambda: _refreshes(page) >= seen + count, 30, f"{count} refreshes of the page")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_on_the_dashboard_has_aa_contrast(page: Page, scheme: Any) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme=scheme)
    _after_refreshes(page, 1)
    assert page.evaluate(LOW_CONTRAST) == []


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_every_box_that_scrolls_can_be_reached_with_the_keyboard(page: Page, width: int, height: int) -> None:
    page.set_viewport_size({"width": width, "height": height})
    _after_refreshes(page, 1)
    assert page.evaluate(UNREACHABLE) == []


def test_a_phone_screen_shows_the_page_without_sideways_scrolling_or_cut_legends(page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _after_refreshes(page, 1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # Each chart's legend (its latest values) is shown whole, inside its chart.
    cut = page.evaluate("""() => [...document.querySelectorAll(".legend-item")].filter((item) => {
      const box = item.getBoundingClientRect();
      const chart = item.closest("figure").getBoundingClientRect();
      return box.right > chart.right + 0.5 || box.width === 0;
    }).map((item) => item.textContent)""")
    assert cut == []


def test_a_screen_reader_reads_each_charts_latest_values_and_the_predicted_classes(page: Page) -> None:
    def labels() -> dict[str, str] | None:
        found: dict[str, str] = page.evaluate(
            f"""() => Object.fromEntries(
              [...document.querySelectorAll('svg[data-api="{NAME}"][role="img"]')].map(
                (svg) => [svg.dataset.chart, svg.getAttribute("aria-label")]))"""
        )
        return found if "iris-setosa 12" in found.get("classes", "") else None

    found = wait_for(labels, 30, "the tracker to count the 12 answers")
    assert found["classes"] == f"predicted classes of {NAME}: iris-setosa 12"
    legend = page.evaluate(
        f"""() => [...document.querySelectorAll(
          'section[data-api="{NAME}"] figure[data-chart="requests"] .legend-item')]
          .map((item) => item.textContent).join(", ")"""
    )
    assert legend.startswith("2XX ") and found["requests"].startswith(f"Requests/s of {NAME}, over the last ")
    assert found["requests"].endswith(f": {legend}")
    assert set(found) == {"requests", "latency", "queue", "replicas", "classes"}


def test_an_empty_payload_log_says_so_and_no_empty_shadow_column_is_shown(page: Page) -> None:
    quiet = page.locator('.panel.payloads[data-api="quiet"]')
    assert quiet.is_visible() and "No request recorded yet" in (quiet.text_content() or "")
    # An API with records but no shadow: its table has no column for a shadow's answers.
    heads = page.evaluate(
        f"""() => [...document.querySelectorAll('.panel.payloads[data-api="{NAME}"] th')]
          .map((th) => th.textContent)"""
    )
    assert heads == ["status", "latency", "request", "answer"]


def test_the_overviews_requests_per_second_says_its_window_as_the_cli_counts_it(page: Page) -> None:
    # `inferd get`'s requests/s (and the page's, the same number) counts the last 10 s, its p50
    # and p99 the last minute (README, "inferd get").
    titles = page.evaluate(
        "[...document.querySelectorAll('#apis th')].map((th) => [th.textContent, th.title])"
    )
    assert dict(titles)["requests/s"] == "answers over the last 10 s"
    assert dict(titles)["p50"] == dict(titles)["p99"] == "over the last minute"


def test_the_time_of_the_last_update_names_its_time_zone(page: Page) -> None:
    _after_refreshes(page, 1)
    state = page.text_content("#state") or ""
    assert re.fullmatch(r"updated \d\d:\d\d:\d\d [A-Z][\w+:-]*", state), state
    assert page.text_content('[role="status"]') == ""  # a refresh is not read out to a screen reader


def test_a_63_character_name_leaves_the_overviews_numbers_in_view_on_a_laptop(page: Page) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    _after_refreshes(page, 1)
    # The name and its endpoint wrap; the table fits its box, which does not scroll sideways.
    assert page.evaluate(
        "(() => { const box = document.querySelector('section.overview'); "
        "return box.scrollWidth <= box.clientWidth; })()"
    )
    last = page.locator(f'#apis tr[data-api="{NAME}"] td[data-field="last_update"]').bounding_box()
    assert last is not None and last["x"] + last["width"] <= 1280


def test_the_keyboard_focus_stays_on_an_apis_link_while_the_page_refreshes(page: Page) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    page.keyboard.press("Tab")  # the gateway's link, then the first API's in the table
    page.keyboard.press("Tab")
    focused = f"""() => document.activeElement.matches('#apis a[href="#api-{NAME}"]')"""
    assert page.evaluate(focused)
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # the focus shows
    _after_refreshes(page, 2)
    assert page.evaluate(focused)
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == f"#api-{NAME}"
    page.evaluate("() => history.replaceState(null, '', location.pathname)")


def test_a_stopped_operator_is_shown_with_what_to_do(operator: Inferd, page: Page) -> None:
    """It stops the operator. A restarted one listens on another port and knows no session, so
    the page cannot come back by itself: it says how to get a new link. (Afterwards the operator
    is started again and the page follows the new link, for the module's tests after this one.)"""
    _after_refreshes(page, 1)
    operator.run("down")
    try:
        wait_for(
            lambda: page.get_attribute("#state", "data-state") == "offline",
            30,
            "the page to see the operator gone",
        )
        state = page.text_content("#state") or ""
        assert "`inferd up`" in state and "`inferd dashboard` prints a new link" in state, state
        # ... and a screen reader is told (a status region that changes only when the state does)
        assert page.text_content('[role="status"]') == state
        assert page.locator("section.api").count() == 2  # the last data stays on the page
    finally:
        operator.run("up")  # the deployment comes back with it (its tracker empty); the page logs in again
        wait_for(lambda: operator.status(NAME)["status"] == "live", 60, "the classifier to be live again")
        _traffic(operator)
        page.goto(operator.run("dashboard").stdout.strip())
        wait_for(lambda: _logged(page), 60, "the dashboard to show the classifier's access lines again")
