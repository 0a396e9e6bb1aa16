"""Under CI a skipped test fails the run (tests/conftest.py): a check that did not run is no pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SKIPPING = (
    "import pytest\n\ndef test_needs_what_this_machine_lacks():\n    pytest.skip('no such tool here')\n"
)
# the suite's own hook, in a folder of its own
HOOK = "from tests.conftest import pytest_sessionfinish  # noqa: F401\n"


@pytest.mark.parametrize(("ci", "code"), [("true", 1), ("", 0)])
def test_a_skipped_test_fails_the_run_under_ci_only(tmp_path: Path, ci: str, code: int) -> None:
    (tmp_path / "conftest.py").write_text(HOOK)
    (tmp_path / "test_probe.py").write_text(SKIPPING)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == code, run.stdout + run.stderr
    assert ("CI: 1 skipped test(s) fail the run" in run.stdout) == (code == 1), run.stdout
