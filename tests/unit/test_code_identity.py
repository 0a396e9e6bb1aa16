"""The code identity that tells an operator started before an upgrade from the CLI after it."""

from __future__ import annotations

from pathlib import Path

from inferd.code_identity import source_digest


def test_the_code_identity_is_the_source_s_not_its_bytecode_cache(tmp_path: Path) -> None:
    package = tmp_path / "inferd"
    (package / "operator" / "__pycache__").mkdir(parents=True)
    (package / "operator" / "server.py").write_text("OLD = 1\n")
    before = source_digest(package)
    (package / "operator" / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"\0" * 16)
    assert source_digest(package) == before  # written as modules are imported: not the code
    (package / "operator" / "server.py").write_text("OLD = 2\n")
    assert source_digest(package) != before
