"""``inferd get``'s tables, as the README shows them."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from click.testing import CliRunner

from inferd.cli.main import cli
from inferd.cli.render import api_detail, api_rows, fit_screen, latency
from tests.conftest import ROOT


def readme_output(command: str) -> str:
    """What the README shows after ``$ COMMAND`` in its ``inferd get`` session."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(rf"^\$ {re.escape(command)}\n(.*?)(?=^\$ |^```)", readme, re.M | re.S)
    assert found is not None, command
    return found.group(1).strip()


def test_inferd_get_prints_what_the_readme_shows() -> None:
    api = _live_api({"classes": {"iris-setosa": 20, "iris-virginica": 1}})
    api["last_update"] = time.time() - 1.5
    api["metrics"].update(
        requests_per_second=14.8,
        requests={"2XX": 21, "4XX": 1},
        latency={"avg_ms": 1.13, "p50_ms": 0.285, "p99_ms": 18.3},
    )
    assert api_rows([api]) == readme_output("inferd get")
    assert api_detail(api) == readme_output("inferd get classifier")


def _live_api(tracker: dict[str, Any]) -> dict[str, Any]:
    """`inferd get API`'s data for a live classifier that answered 7 requests, with ``tracker``."""
    return {
        "name": "classifier",
        "deployment": "iris",
        "status": "live",
        "up_to_date": 1,
        "available": 1,
        "requested": 1,
        "failed": 0,
        "last_update": time.time(),
        "url": "http://127.0.0.1:8888/iris/classifier",
        "metrics": {"requests": {"2XX": 7}, "latency": {}, "tracker": tracker},
    }


def test_a_class_label_with_a_line_break_or_blank_keeps_the_tracker_table_whole() -> None:
    """A handler returning "new\\nline", "tab\\there", "" or " " as its class broke `inferd get
    API`'s class table (a row split in two, blank classes) and wrote control bytes to the
    terminal: such a label is shown quoted, with its escapes."""
    classes = {"cat": 2, "new\nline": 1, "tab\there": 1, "": 1, " ": 1, "\x00nul\x1b[31m": 1}
    text = api_detail(_live_api({"classes": classes}))
    table = text[text.index("class ") :].split("\n\n")[0].splitlines()
    assert [row.split("   ")[0].strip() for row in table] == [
        "class",
        "cat",
        '""',
        '"\\u0000nul\\u001b[31m"',
        '" "',
        '"new\\nline"',
        '"tab\\there"',
    ]
    assert not any(ch in text for ch in "\x00\x1b\t")


def test_wide_and_combining_characters_keep_the_columns_aligned() -> None:
    """A text classifier's labels "日本" and "ünïcode-🐍" (each of its CJK characters and the emoji
    two columns wide on a terminal) pushed their count a column or two right of the others'."""
    classes = {"日本": 3, "cafe\u0301": 2, "ünïcode-🐍": 2, "plain": 1}
    text = api_detail(_live_api({"classes": classes}))
    table = text[text.index("class ") :].split("\n\n")[0].splitlines()

    def column_of_count(row: str) -> int:  # the display column where the count starts
        start = row.rstrip().rindex(" ") + 1
        return sum(_display_width(ch) for ch in row[:start])

    assert len({column_of_count(row) for row in table}) == 1, table


def _display_width(ch: str) -> int:
    import unicodedata

    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def test_predictions_past_the_class_limit_are_said() -> None:
    api = _live_api({"classes": {"a": 1}, "other": {"predictions": 6, "classes_counted": 1000}})
    assert "and 6 predictions of other classes (only the first 1000 classes are counted one by one)" in (
        api_detail(api)
    )


def test_failed_shows_in_both_tables_and_timed_out_in_the_api_s_own() -> None:
    # README: failed (shown when not 0); timed out (shown by `inferd get API` when not 0).
    quiet = _live_api({})
    assert "failed" not in api_rows([quiet]) and "failed" not in api_detail(quiet)
    assert "timed out" not in api_detail(quiet)
    troubled = {**_live_api({}), "failed": 2, "timed_out": 3}
    assert api_rows([troubled]).splitlines()[0].split("   ")[-2:] == ["failed", "last update"]
    header, row = api_detail(troubled).split("\n\n")[0].splitlines()
    assert dict(zip(re.split(r"\s{3,}", header), row.split(), strict=False))["timed out"] == "3"
    assert "timed out" not in api_rows([troubled])
    shown = " ".join(CliRunner().invoke(cli, ["get", "--help"]).output.split())
    assert "failed (when not 0)" in shown and "timed out (inferd get API, when not 0)" in shown


def test_a_model_s_input_and_output_names_never_write_control_bytes_to_the_terminal() -> None:
    # was: an ONNX model whose input was named "in\x1b[31mput\nsecond line\r" and output "out\x07"
    # turned `inferd get API -v` red, split the row and rang the bell
    api = {**_live_api({}), "endpoint": "/iris/classifier", "config": {"name": "classifier"}}
    api["signature"] = {
        "inputs": [{"name": "in\x1b[31mput\nsecond line\r", "dtype": "float32", "shape": [-1, 4]}],
        "outputs": [{"name": "out\x07", "dtype": "float32", "shape": [-1, 4]}],
    }
    api["status"], api["error"] = "error", "loading failed: node \x1b]0;owned\x07 failed"
    api["error_detail"] = "Traceback:\n  node \x1b[2J\n"
    text = api_detail(api, verbose=True)
    assert not any(ch in text for ch in "\x1b\r\x07")
    assert "error: loading failed: node \\x1b]0;owned\\x07 failed" in text
    assert "Traceback:\n  node \\x1b[2J\n" in text
    assert '"in\\u001b[31mput\\nsecond line\\r"   float32   (?, 4)' in text
    assert '"out\\u0007"    float32   (?, 4)' in text


def test_the_config_shows_non_ascii_text_as_written() -> None:
    # was: greeting: "h\xE9llo \U0001F30D", labels: ["\u732B"] for what cortex.yaml said as text
    metadata = {"greeting": "h\u00e9llo \U0001f30d", "labels": ["\u732b", "\u0130"], "raw": "a\x1b[2Jb"}
    api = {
        **_live_api({}),
        "endpoint": "/iris/classifier",
        "config": {"name": "classifier", "metadata": metadata},
    }
    text = api_detail(api, verbose=True)
    assert "greeting: h\u00e9llo \U0001f30d" in text
    assert "- \u732b\n" in text and "- \u0130\n" in text
    assert "\x1b" not in text and 'raw: "a\\e[2Jb"' in text


@pytest.mark.parametrize("odd", ["\x85", "\u2028", "\u202e", "\u200b"])
def test_the_config_escapes_text_a_terminal_would_not_show_as_it_is(odd: str) -> None:
    # YAML writes a C1 control (NEL), a line separator, a bidi override or a zero-width space as
    # it is once non-ASCII text is: `inferd get -v` broke the value's line or showed it reversed
    api = {
        **_live_api({}),
        "endpoint": "/iris/classifier",
        "config": {"name": "classifier", "metadata": {"note": f"caf\u00e9{odd}end"}},
    }
    text = api_detail(api, verbose=True)
    assert odd not in text
    assert 'note: "caf' in text  # quoted, with its escapes, as before non-ASCII text was shown


def test_latencies_are_shown_to_three_figures_down_to_ten_microseconds() -> None:
    # a 408's latency (refused at the edge) read "0.000236 ms"
    assert [latency(ms) for ms in (None, 0.000236, 0.0, 0.0123, 0.285, 18.3, 1234.0)] == [
        "-",
        "<0.01 ms",
        "<0.01 ms",
        "0.0123 ms",
        "0.285 ms",
        "18.3 ms",
        "1.23 s",
    ]


def test_a_screen_of_get_w_counts_the_lines_a_long_row_wraps_onto() -> None:
    table = "\n".join(["header", "x" * 150, "short", "y" * 150, "last"])
    assert fit_screen(table, 8, 100) == table  # 7 lines once wrapped, and 7 fit above the cursor's
    cut = fit_screen(table, 6, 100).split("\n")  # 5 fit: 4 of the table's (a wrapped row is 2), the note
    assert cut == ["header", "x" * 150, "short", "... 2 more lines: inferd get without -w prints them all"]


def test_a_screen_of_get_w_on_a_narrow_terminal_counts_the_lines_its_note_wraps_onto() -> None:
    """The note that says what was left out wraps too (2 lines of a 40-column terminal): counted
    as one, the screen was a line too long and the header scrolled away each second."""
    table = "\n".join(["header", *(f"row {i}" for i in range(30))])
    cut = fit_screen(table, 10, 40).split("\n")
    assert sum(-(-len(line) // 40) for line in cut) == 9  # all the lines above the cursor's
    assert cut[:2] == ["header", "row 0"]
    assert cut[-1] == f"... {31 - len(cut) + 1} more lines: inferd get without -w prints them all"
