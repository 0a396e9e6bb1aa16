"""Hostile config files: each is one ConfigError naming the file, quickly and in little memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.config.load import MAX_CONFIG_BYTES, load_project
from inferd.errors import ConfigError


def _bomb() -> str:
    # the "billion laughs": 9 ** 12 values from a few hundred bytes (was: 2.7 GB of memory and
    # minutes in `inferd deploy`, and the same in the operator that loads the project again)
    lines = ["- kind: deployment", "  name: d", "- kind: api", "  name: a", "  metadata:"]
    lines.append("    l0: &l0 [x, x, x, x, x, x, x, x, x]")
    for level in range(1, 12):
        lines.append(f"    l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        pytest.param(_bomb(), "cortex.yaml:6: invalid YAML: more than 200,000 values", id="alias-bomb"),
        pytest.param("- " + "[" * 5_000 + "]" * 5_000 + "\n", "nested too deeply", id="deep"),
        pytest.param("- {" + "a: {" * 20_000 + "}" * 20_001 + "\n", "nested too deeply", id="deep-maps"),
    ],
)
def test_a_hostile_config_is_one_clear_error(tmp_path: Path, text: str, said: str) -> None:
    (tmp_path / "cortex.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"^cortex\.yaml") as caught:
        load_project(tmp_path)
    assert said in str(caught.value)


def test_a_config_file_past_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    # was: a 50 MiB cortex.yaml (one long comment) took minutes
    with (tmp_path / "cortex.yaml").open("w") as out:
        out.write("- kind: deployment\n  name: d\n")
        out.truncate(MAX_CONFIG_BYTES + 1)  # sparse: no need to write it
    with pytest.raises(
        ConfigError, match=r"^cortex.yaml: the file is 4.0 MiB; a config file may be at most 4 MiB"
    ):
        load_project(tmp_path)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # were tracebacks (yaml.reader.ReaderError), exit 1
        pytest.param(
            "- kind: deployment\n  name: d\n  x: a\x07b\n",
            "cortex.yaml:3: invalid YAML: a control character (0x07) YAML does not allow in a file; "
            'write it as "\\x07" in a double-quoted string',
            id="bell",
        ),
        pytest.param(
            "- kind: deployment\n\n  name: d\x00\n",
            "cortex.yaml:3: invalid YAML: a control character (0x00) YAML does not allow in a file; "
            'write it as "\\x00" in a double-quoted string',
            id="nul",
        ),
        # was "line 3: a key must be a scalar", naming no file
        pytest.param(
            "- kind: deployment\n  name: d\n  [a, b]: c\n",
            "cortex.yaml:3: invalid YAML: a key must be a scalar",
            id="key",
        ),
    ],
)
def test_a_config_yaml_cannot_read_names_the_file_and_line(tmp_path: Path, text: str, said: str) -> None:
    (tmp_path / "cortex.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    assert caught.value.message == said


def test_a_config_that_is_not_utf_8_names_the_line(tmp_path: Path) -> None:
    # was: "cortex.yaml: cannot read the file: 'utf-8' codec can't decode byte 0xe9 in position 40:
    # invalid continuation byte" (a Latin-1 editor's save; the position counted in bytes)
    (tmp_path / "cortex.yaml").write_bytes(b"- kind: deployment\n  name: d\n  # caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    assert caught.value.message == (
        "cortex.yaml:3: the file is not UTF-8 text (byte 0xe9 here): save it as UTF-8"
    )
