"""The code identity that tells an operator started before an upgrade from the CLI after it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import inferd
from inferd.code_identity import restart_hint, source_digest
from inferd.operator.state import STATE_FORMAT
from tests.conftest import wait_for


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
restarted = restart_hint({"code": after, "pid": 0}, 1)
assert restarted is None, restarted
assert restart_hint({"code": before, "pid": 0}, 1) is not None
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
    hint = restart_hint(info, STATE_FORMAT)
    assert hint is not None
    assert "runs the inferd of another Python environment (/opt/other-venv" in hint
    assert f"this command runs {sys.prefix}" in hint
    assert "upgraded" not in hint
    assert "upgraded or reinstalled" in (restart_hint({**info, "prefix": sys.prefix}, STATE_FORMAT) or "")


def test_an_operator_started_by_inferd_up_in_a_shell_of_a_systemd_service_is_not_named_a_unit() -> None:
    # A JupyterHub (or tmux) run as a systemd service passes INVOCATION_ID to every terminal it
    # opens: `inferd up` typed there starts an operator under inferd's own supervisor, which
    # the hint told to restart with `systemctl --user restart inferd`, a unit no one wrote.
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, "INVOCATION_ID": "0123456789abcdef"},
    )
    try:
        wait_for(lambda: b"INVOCATION_ID" in Path(f"/proc/{process.pid}/environ").read_bytes(), 10, "it")
        shell = restart_hint({"code": "0" * 16, "pid": process.pid, "supervisor": os.getpid()}, STATE_FORMAT)
        assert shell is not None and "restart it: `inferd down && inferd up`" in shell
        unit = restart_hint({"code": "0" * 16, "pid": process.pid, "supervisor": None}, STATE_FORMAT)
        assert unit is not None and "restart its systemd unit: `systemctl --user restart inferd`" in unit
    finally:
        process.kill()
        process.wait()


def test_an_older_command_does_not_tell_a_newer_operator_to_restart_on_it() -> None:
    # After a downgrade, `inferd down && inferd up` on the older inferd: it refuses the newer
    # state.json, and no API comes back. The hint said to do just that.
    newer = {"code": "0" * 16, "pid": 7, "state_format": STATE_FORMAT + 1}
    hint = restart_hint(newer, STATE_FORMAT) or ""
    assert "runs a newer inferd than this command" in hint and "pip install -U inferd" in hint
    assert "inferd down" not in hint
    assert "restart it" in (restart_hint({**newer, "state_format": STATE_FORMAT}, STATE_FORMAT) or "")
