"""Content digests of model folders and projects: any file name the file system allows."""

from __future__ import annotations

import os
from pathlib import Path

from inferd.storage import tree_digest


def test_a_folder_with_a_file_name_that_is_not_utf_8_has_a_digest(tmp_path: Path) -> None:
    # Was: UnicodeEncodeError, and `inferd deploy` of a project holding `caf\xe9.txt` failed
    # with "operator error: UnicodeEncodeError: ... surrogates not allowed".
    (tmp_path / "model.onnx").write_bytes(b"weights")
    before = tree_digest(tmp_path)
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt"), "wb") as out:
        out.write(b"x")
    after = tree_digest(tmp_path)
    assert len(after) == 64 and after != before
