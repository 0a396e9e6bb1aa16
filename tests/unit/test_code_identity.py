"""The code identity that tells an operator started before an upgrade from the CLI after it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import inferd
from inferd.code_identity import restart_hint, source_digest


def test_the_code_identity_is_the_source_s_not_its_bytecode_cache(tmp_path: Path) -> None:
    package = tmp_path / "inferd"
    (package / "operator" / "__pycache__").mkdir(parents=True)
    (package / "operator" / "server.py").write_text("OLD = 1\n")
    before = source_digest(package)
    (package / "operator" / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"\0" * 16)
    assert source_digest(package) == before  # written as modules are imported: not the code
    (package / "operator" / "server.pyc").write_bytes(b"\0" * 16)  # compileall -b, beside it
    assert source_digest(package) == before  # as the docstring says: its source counts
    (package / "operator" / "server.py").write_text("OLD = 2\n")
    assert source_digest(package) != before


def test_a_long_lived_process_compares_the_operator_with_the_code_installed_now(tmp_path: Path) -> None:
    # A notebook's kernel that deployed before `pip install -U inferd` (its digest taken then),
    # then the user ran `inferd down && inferd up` as told: the operator runs the new files, and
    # the kernel's deploy was still refused with the same advice, for good; while an operator
    # left running the replaced code was let through, as its digest matched the kernel's.
    site = tmp_path / "site"
    shutil.copytree(
        Path(inferd.__file__).parent, site / "inferd", ignore=shutil.ignore_patterns("__pycache__")
    )
    script = """
import sys
from pathlib import Path
from inferd.code_identity import code_identity, restart_hint, source_digest
before = code_identity()  # a first deploy of the kernel
render = Path(sys.argv[1]) / "inferd" / "cli" / "render.py"
render.write_text(render.read_text() + "\\n# 0.1.1\\n")  # pip install -U inferd
after = source_digest(render.parent.parent)
restarted = restart_hint({"code": after, "pid": 0})
assert restarted is None, restarted
assert restart_hint({"code": before, "pid": 0}) is not None
"""
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-P", "-c", script, str(site)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_an_operator_of_another_python_environment_is_named_so() -> None:
    # Two virtual environments with different inferd code on one INFERD_HOME: the hint said
    # "inferd was upgraded or reinstalled since it started", which sent the user looking for an
    # upgrade no one made.
    info = {"code": "0" * 16, "pid": 0, "prefix": "/opt/other-venv"}
    hint = restart_hint(info)
    assert hint is not None
    assert "runs the inferd of another Python environment (/opt/other-venv" in hint
    assert f"this command runs {sys.prefix}" in hint
    assert "upgraded" not in hint
    assert "upgraded or reinstalled" in (restart_hint({**info, "prefix": sys.prefix}) or "")
