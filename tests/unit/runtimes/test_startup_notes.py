"""TensorFlow's C++ start-up notes are held off the terminal; everything else written below Python is not."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile

import pytest

from inferd.runtimes.startup_notes import held_startup_notes

ONEDNN = (
    b"I0000 00:00:1796131545.142733    7448 port.cc:153] oneDNN custom operations are on. You may see "
    b"slightly different numerical results due to floating-point round-off errors.\n"
)
ABSL = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
OTHER = b"E0000 cuda_dnn.cc:8310] Unable to register cuDNN factory\n"


def test_the_start_up_notes_are_dropped_and_other_lines_kept(capfd: pytest.CaptureFixture[str]) -> None:
    with held_startup_notes():
        os.write(2, ABSL + ONEDNN + OTHER + ABSL + ONEDNN)
    assert capfd.readouterr().err == OTHER.decode()


def test_every_line_is_shown_when_the_import_fails(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ImportError), held_startup_notes():
        os.write(2, ABSL + ONEDNN + b"F0000 Illegal instruction: AVX\n")
        raise ImportError("libtensorflow_framework.so.2: cannot open shared object file")
    assert capfd.readouterr().err == (ABSL + ONEDNN + b"F0000 Illegal instruction: AVX\n").decode()


def test_descriptor_2_is_given_back(capfd: pytest.CaptureFixture[str]) -> None:
    with held_startup_notes():
        pass
    os.write(2, ONEDNN)
    assert capfd.readouterr().err == ONEDNN.decode()


def test_kept_lines_go_back_to_descriptor_2_when_sys_stderr_has_no_bytes_below(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # A notebook's sys.stderr (ipykernel's OutStream), or one a caller of load_api redirected to
    # a StringIO, has no `.buffer`: the import of the TensorFlow runtime raised AttributeError
    # whenever TensorFlow wrote a line that is not a note (cuDNN's, on a machine without a GPU)
    shown = io.StringIO()
    with contextlib.redirect_stderr(shown), held_startup_notes():
        os.write(2, ONEDNN + OTHER)
    assert capfd.readouterr().err == OTHER.decode()  # where TensorFlow wrote it: descriptor 2
    assert shown.getvalue() == ""


def test_without_a_writable_temporary_folder_the_import_goes_on_unheld(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # a pod with readOnlyRootFilesystem: holding the notes must never fail TensorFlow's import
    def read_only() -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with held_startup_notes():
        os.write(2, ONEDNN)
    assert capfd.readouterr().err == ONEDNN.decode()
