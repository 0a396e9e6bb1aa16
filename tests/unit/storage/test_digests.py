"""Content digests of model folders and projects: any file name the file system allows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inferd.errors import ConfigError
from inferd.storage import project_digest


def test_a_folder_with_a_file_name_that_is_not_utf_8_has_a_digest(tmp_path: Path) -> None:
    # Was: UnicodeEncodeError, and `inferd deploy` of a project holding `caf\xe9.txt` failed
    # with "operator error: UnicodeEncodeError: ... surrogates not allowed".
    (tmp_path / "model.onnx").write_bytes(b"weights")
    before = project_digest(tmp_path)
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt"), "wb") as out:
        out.write(b"x")
    after = project_digest(tmp_path)
    assert len(after) == 64 and after != before


def test_bytecode_a_replica_writes_beside_a_handler_is_not_part_of_the_project(tmp_path: Path) -> None:
    # Was: with Python writing bytecode (its default), a replica's import of handlers/h.py put
    # handlers/__pycache__/h.cpython-311.pyc into the project's snapshot, so the next deploy of
    # the unchanged project was a new version and restarted every replica.
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "h.py").write_text("def pre_inference(sample, signature, metadata): ...\n")
    (tmp_path / "cortex.yaml").write_text("- kind: deployment\n  name: d\n")
    before = project_digest(tmp_path, {tmp_path / "cortex.yaml"})
    (tmp_path / "handlers" / "__pycache__").mkdir()
    (tmp_path / "handlers" / "__pycache__" / "h.cpython-311.pyc").write_bytes(b"bytecode")
    (tmp_path / "cortex.yaml").write_text("- kind: deployment\n  name: d\n# another API's edit\n")
    assert project_digest(tmp_path, {tmp_path / "cortex.yaml"}) == before
    (tmp_path / "handlers" / "h.py").write_text("def pre_inference(sample, signature, metadata): 1\n")
    assert project_digest(tmp_path, {tmp_path / "cortex.yaml"}) != before


def test_a_file_that_cannot_be_read_is_named_in_one_sentence(tmp_path: Path) -> None:
    # /proc/self/mem is a regular file that no read succeeds on: as a file of another user is to
    # anyone but root. Was: the bare OSError, which `inferd serve` reported as "cannot listen".
    (tmp_path / "model.onnx").write_bytes(b"weights")
    (tmp_path / "unreadable").symlink_to("/proc/self/mem")
    with pytest.raises(ConfigError, match=r"^cannot read the project's file unreadable: .+"):
        project_digest(tmp_path)
