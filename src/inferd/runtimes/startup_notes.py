"""TensorFlow's C++ start-up notes, kept off the user's terminal while it loads.

TensorFlow's libraries write notes to file descriptor 2 as they load, below Python: absl's "All
log messages before absl::InitializeLog() is called ...", "oneDNN custom operations are on",
the CPU instructions it could use. ``TF_CPP_MIN_LOG_LEVEL=2`` silenced them until TensorFlow
2.21, which writes the oneDNN note whatever it says on a CPU with AVX-512 BF16 or AMX (twice per
import): `inferd init --tensorflow` and `inferd test` printed four lines a user reads as errors.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

NOTES = (
    b"absl::InitializeLog() is called are written to STDERR",
    b"] oneDNN custom operations are on.",
    b"] This TensorFlow binary is optimized to use available CPU instructions",
    b"To enable the following instructions:",
)


@contextmanager
def held_startup_notes() -> Iterator[None]:
    """Hold what is written to descriptor 2 during the block; then write back every line but the
    notes above (every line, notes included, when the block raised: they may say why)."""
    _flush_stderr()
    try:
        saved = os.dup(2)
    except OSError:  # descriptor 2 closed (a daemon's): nothing would show anyway
        yield
        return
    try:
        held_file = tempfile.TemporaryFile()  # noqa: SIM115 (entered below, once made)
    except OSError:  # no writable temporary folder (a read-only root file system): shown as written
        os.close(saved)
        yield
        return
    failed = False
    with held_file as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(keepends=True) if failed or not is_note(line)]
            _write_back(b"".join(kept))


def _flush_stderr() -> None:
    """Python's text in ``sys.stderr`` onto descriptor 2 (None, closed: nothing to flush)."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.flush()


def _write_back(data: bytes) -> None:
    """``data`` on descriptor 2, where TensorFlow wrote it: ``sys.stderr`` may be no file (a
    notebook's has no ``.buffer``, nor has a ``StringIO`` a caller redirected it to), and the
    import raised AttributeError then. A reader gone: the lines are lost, not the import."""
    view = memoryview(data)
    with contextlib.suppress(OSError):
        while view:
            view = view[os.write(2, view) :]


def is_note(line: bytes) -> bool:
    return any(note in line for note in NOTES)
