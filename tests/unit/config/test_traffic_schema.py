"""``kind: traffic_splitter``: weights add up to 100, APIs exist, names and endpoints are free."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.config.load import load_project
from tests.unit.config.test_schema import DEPLOYMENT, api, error_of, project

TWO_APIS = DEPLOYMENT + api(name="champion") + api(name="challenger")


def splitter(entries: str, name: str = "recommend", endpoint: str = "") -> str:
    return f"\n- kind: traffic_splitter\n  name: {name}\n{endpoint}  apis:\n{entries}"


EIGHTY_TWENTY = "    - name: champion\n      weight: 80\n    - name: challenger\n      weight: 20\n"


def test_a_splitter_gets_the_deployment_endpoint_and_its_weights(tmp_path: Path) -> None:
    loaded = load_project(project(tmp_path, TWO_APIS + splitter(EIGHTY_TWENTY)))
    (route,) = loaded.splitters
    assert route.endpoint == "/iris/recommend"
    assert route.weights == {"champion": 80, "challenger": 20}
    custom = splitter(EIGHTY_TWENTY, endpoint="  endpoint: /recommend/\n")
    assert load_project(project(tmp_path, TWO_APIS + custom)).splitters[0].endpoint == "/recommend"
    assert load_project(project(tmp_path, TWO_APIS)).splitters == ()


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (
            "    - name: champion\n      weight: 80\n    - name: challenger\n      weight: 30\n",
            "cortex.yaml:16: traffic_splitter 'recommend': apis: the weights must add up to 100 "
            "(they add up to 110)",
        ),
        (
            "    - name: champion\n      weight: 80\n    - name: nobody\n      weight: 20\n",
            "cortex.yaml:19: traffic_splitter 'recommend': apis: no api named 'nobody' in this "
            "project (apis: challenger, champion)",
        ),
        (
            "    - name: champion\n      weight: 120\n",
            "cortex.yaml:18: traffic_splitter 'recommend': apis.0.weight: must be <= 100",
        ),
        (
            "    - name: champion\n      weight: 50\n    - name: champion\n      weight: 50\n",
            "cortex.yaml:19: traffic_splitter 'recommend': apis: api 'champion' is listed twice",
        ),
        ("    []\n", "cortex.yaml:16: traffic_splitter 'recommend': apis: must list at least 1 entry"),
        ("    3\n", "cortex.yaml:16: traffic_splitter 'recommend': apis: must be a list"),
    ],
)
def test_bad_splitters_are_line_numbered_errors(tmp_path: Path, entries: str, expected: str) -> None:
    assert error_of(tmp_path, TWO_APIS + splitter(entries)) == expected


def test_a_splitter_cannot_take_an_api_name_or_endpoint(tmp_path: Path) -> None:
    named = error_of(tmp_path, TWO_APIS + splitter(EIGHTY_TWENTY, name="champion"))
    assert named.endswith("traffic_splitter 'champion': name: an api or splitter is already named 'champion'")
    taken = error_of(tmp_path, TWO_APIS + splitter(EIGHTY_TWENTY, endpoint="  endpoint: /iris/champion\n"))
    assert taken.endswith("endpoint: /iris/champion is already the endpoint of 'champion'")


def test_a_shadow_names_another_api_with_a_percent(tmp_path: Path) -> None:
    shadowed = DEPLOYMENT + api("  shadow: {api: challenger, percent: 25}\n", name="champion")
    loaded = load_project(project(tmp_path, shadowed + api(name="challenger")))
    shadow = loaded.api("champion").api.shadow
    assert shadow is not None and (shadow.api, shadow.percent) == ("challenger", 25)
    whole = DEPLOYMENT + api("  shadow: {api: challenger}\n", name="champion") + api(name="challenger")
    assert load_project(project(tmp_path, whole)).api("champion").api.shadow.percent == 100  # type: ignore[union-attr]
    on_splitter = TWO_APIS + splitter(EIGHTY_TWENTY) + "  shadow: {api: challenger, percent: 5}\n"
    assert load_project(project(tmp_path, on_splitter)).splitters[0].splitter.shadow is not None


@pytest.mark.parametrize(
    ("shadow", "expected"),
    [
        (
            "{api: nobody}",
            "api 'champion': shadow.api: no api named 'nobody' in this project (apis: champion)",
        ),
        ("{api: champion}", "api 'champion': shadow.api: cannot be 'champion' itself"),
        ("{api: champion, percent: 101}", "api 'champion': shadow.percent: must be <= 100.0"),
        ("{api: champion, percent: -1}", "api 'champion': shadow.percent: must be >= 0.0"),
        ("{api: champion, share: 3}", "api 'champion': shadow.share: unknown key"),
    ],
)
def test_bad_shadows_are_line_numbered_errors(tmp_path: Path, shadow: str, expected: str) -> None:
    message = error_of(tmp_path, DEPLOYMENT + api(f"  shadow: {shadow}\n", name="champion"))
    assert message.startswith("cortex.yaml:") and message.endswith(expected)


def test_a_splitters_shadow_must_be_an_api_of_the_project(tmp_path: Path) -> None:
    text = TWO_APIS + splitter(EIGHTY_TWENTY) + "  shadow: {api: nobody}\n"
    assert error_of(tmp_path, text).endswith(
        "traffic_splitter 'recommend': shadow.api: no api named 'nobody' in this project "
        "(apis: challenger, champion)"
    )


def test_a_splitters_apis_take_the_same_keys(tmp_path: Path) -> None:
    # The splitter picks an API, then checks the key: a client without one was refused on the
    # champion's share of its requests and answered on the challenger's.
    (tmp_path / "keys.txt").write_text("a-key-long-enough\n")
    keyed = "  auth: {keys_file: keys.txt}\n"
    mixed = DEPLOYMENT + api(keyed, name="champion") + api(name="challenger") + splitter(EIGHTY_TWENTY)
    assert error_of(tmp_path, mixed) == (
        "cortex.yaml:20: traffic_splitter 'recommend': apis: api 'challenger' does not take the same "
        "API keys (auth) as 'champion'; a splitter's APIs must, or its clients are refused on some "
        "requests only"
    )
    same = DEPLOYMENT + api(keyed, name="champion") + api(keyed, name="challenger") + splitter(EIGHTY_TWENTY)
    assert load_project(project(tmp_path, same)).splitters[0].weights == {"champion": 80, "challenger": 20}
