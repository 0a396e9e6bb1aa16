"""A project's ``requirements.txt``, installed once per distinct content into a cached folder.

Replicas append the folder to ``sys.path``, after inferd's own packages, so what Cortex
pre-installed (numpy, boto3, requests, msgpack, dill, the runtimes) stays the version inferd
runs with. Cortex ran ``pip install`` at every replica start; here a scale-up costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from inferd.errors import LoadError
from inferd.storage import CREATED_MARK

PIP_TIMEOUT = 900


def packages_dir(home: Path, requirements: Path) -> Path:
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:24]
    return home / "envs" / digest


def ensure_packages(home: Path, requirements: Path) -> Path:
    """Install ``requirements`` into its cached folder (once); the folder. Raises ``LoadError``."""
    target = packages_dir(home, requirements)
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".installing-"))
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--target",
        str(scratch),
        "-r",
        str(requirements),
    ]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT,
            env=dict(os.environ, PIP_NO_INPUT="1"),
            cwd=str(requirements.parent),
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(scratch, ignore_errors=True)
        raise LoadError(f"installing requirements.txt took longer than {PIP_TIMEOUT}s") from None
    if result.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        message = "; ".join(lines[-3:]) if lines else f"pip exited with status {result.returncode}"
        raise LoadError(f"installing requirements.txt failed: {message}")
    (scratch / ".complete").write_text("")
    (scratch / CREATED_MARK).write_text("")
    if target.exists():  # another deploy finished the same install first
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        scratch.rename(target)
    return target
