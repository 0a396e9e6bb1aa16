"""The verbs of Cortex v0.10's CLI that have no inferd command (``cluster``, ``configure``,
``support``) say what does their work here; ``completion`` prints a completion script, as
Cortex's did (``source <(cortex completion)``)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from inferd.cli.main import cli


@pytest.mark.parametrize(
    ("args", "instead"),
    [
        (["cluster", "up"], "`cortex up` starts the operator"),
        (["cluster", "down", "-c", "cluster.yaml"], "`cortex down` stops it"),
        # docs/dependencies/system-packages.md: a custom image in cluster.yaml, then this
        (["cluster", "update", "--config=cluster.yaml"], "are this machine's: install them on it"),
        (["configure", "--print"], "the local operator needs neither"),
        (["support"], "inferd has no such service"),
    ],
)
def test_cortex_only_verbs_say_what_does_their_work_here(args: list[str], instead: str) -> None:
    # was: "error: No such command 'cluster'", the first command of Cortex's install guide
    result = CliRunner().invoke(cli, args, prog_name="cortex")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: `cortex {args[0]}` ")
    assert instead in result.output and "Traceback" not in result.output


def test_completion_prints_a_script_that_completes_commands_and_flags() -> None:
    script = CliRunner().invoke(cli, ["completion"], prog_name="cortex")
    assert script.exit_code == 0
    assert "_CORTEX_COMPLETE=bash_complete" in script.output
    assert "complete -o nosort -F _cortex_completion cortex" in script.output

    def complete(*words: str) -> list[str]:
        env = {**os.environ, "COMP_WORDS": " ".join(words), "COMP_CWORD": str(len(words) - 1)}
        env["_CORTEX_COMPLETE"] = "bash_complete"
        # the installed CLI, as the script's shell function calls it
        done = subprocess.run(
            [str(Path(sys.executable).with_name("cortex"))],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout.split()

    assert complete("cortex", "de") == ["plain,delete", "plain,deploy"]
    assert "plain,--watch" in complete("cortex", "get", "--w")


def test_cortex_completion_adds_the_cx_alias(tmp_path: Path) -> None:
    # docs/cluster/cli.md (completion): "This will also add the "cx" alias."
    script = CliRunner().invoke(cli, ["completion"], prog_name="cortex").output
    (tmp_path / "completion.sh").write_text(script)
    shell = (
        f"source {shlex.quote(str(tmp_path / 'completion.sh'))}\n"  # (a TMPDIR with a space)
        "alias cx\n"
        "COMP_WORDS=(cx de); COMP_CWORD=1\n"
        "$(complete -p cx | sed -E 's/.* -F ([^ ]+) cx$/\\1/') cx de cx\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", shell], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["alias cx='cortex'", "delete", "deploy"]
    assert "cx" not in CliRunner().invoke(cli, ["completion"], prog_name="inferd").output
