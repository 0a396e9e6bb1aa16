"""Model paths a framework takes as UTF-8 text only, from folders whose names are not UTF-8."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from inferd.runtimes.base import utf8_path


def test_a_saved_model_folder_whose_name_is_not_utf8_is_reached_through_its_descriptor(
    tmp_path: Path,
) -> None:
    # TensorFlow's tf.saved_model.load of ".../caf\udce9/1" was "UnicodeEncodeError: 'utf-8'
    # codec can't encode character '\udce9' ...: surrogates not allowed".
    model = tmp_path / os.fsdecode(b"caf\xe9") / "1"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables" / "variables.index").write_bytes(b"index")
    with contextlib.ExitStack() as opened:
        path = utf8_path(model, opened)
        path.encode("utf-8")
        assert (Path(path) / "saved_model.pb").read_bytes() == b"graph"
        assert (Path(path) / "variables" / "variables.index").read_bytes() == b"index"


def test_a_model_file_is_reached_through_its_folders_descriptor_and_a_utf8_path_is_kept(
    tmp_path: Path,
) -> None:
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    folder.mkdir()
    (folder / "m.onnx").write_bytes(b"model")
    (folder / "m.onnx.data").write_bytes(b"weights")  # external data, read beside the model
    with contextlib.ExitStack() as opened:
        path = Path(utf8_path(folder / "m.onnx", opened))
        assert path.read_bytes() == b"model" and (path.parent / "m.onnx.data").read_bytes() == b"weights"
        assert utf8_path(tmp_path / "m.onnx", opened) == str(tmp_path / "m.onnx")
