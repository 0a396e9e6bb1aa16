"""A short soak: mixed traffic with replicas killed and updates rolled, nothing lost or leaked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_short_soak(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "soak.py"),
            "--duration",
            "25",
            "--clients",
            "4",
            "--work",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads((tmp_path / "soak.json").read_text())
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["problems"] == []
    assert report["outcomes"].get("ok", 0) > 500
    assert report["kills"] >= 3 and report["updates"] >= 1
