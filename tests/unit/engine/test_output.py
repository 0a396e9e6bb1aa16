"""A replica's output in its API's log: every line says which replica wrote it."""

from __future__ import annotations

from pathlib import Path

from inferd.engine.output import ReplicaOutput
from inferd.logfiles import RotatingLog


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_a_line_the_handler_stamped_itself_still_names_its_replica(tmp_path: Path) -> None:
    """A handler printing its own time (a logging format of its own, a print of a date) had
    its line passed through as a replica record: neither the API nor the replica was named, so
    with two replicas nobody could tell which one printed it."""
    log = RotatingLog(tmp_path / "noisy.log", 1 << 20)
    output = ReplicaOutput(log, "obs/noisy", "noisy-3")
    output.data_received(b"2026-12-01 01:58:02 my own stamped line\n")
    output.data_received(b"2026-12-01 01:58:02,458 noisy [noisy-3] INFO replica is ready (pid 7)\n")
    output.data_received(b"2026-12-01 01:58:02,459 noisy [noisy-4] INFO another replica's record\n")
    output.data_received(b"plain\n")
    log.close()
    first, record, foreign, plain = _lines(tmp_path / "noisy.log")
    assert first.endswith(" obs/noisy [noisy-3] 2026-12-01 01:58:02 my own stamped line")
    assert record == "2026-12-01 01:58:02,458 noisy [noisy-3] INFO replica is ready (pid 7)"
    assert " obs/noisy [noisy-3] 2026-12-01 01:58:02,459 noisy [noisy-4]" in foreign
    assert plain.endswith(" obs/noisy [noisy-3] plain")


def test_control_bytes_a_handler_prints_are_written_as_escapes(tmp_path: Path) -> None:
    """One NUL byte a handler printed made `grep` call the API's whole log a binary file ("binary
    file matches"), and escape sequences in it reached the terminal of `inferd logs`: control
    characters but tab and line ends are written as ``\\xNN``; invalid UTF-8 as U+FFFD."""
    log = RotatingLog(tmp_path / "noisy.log", 1 << 20)
    output = ReplicaOutput(log, "obs/noisy", "noisy-3")
    output.data_received(b"\x00\xff binary\t\x1b[31mred\x1b[0m\x7f\r\n")
    log.close()
    data = (tmp_path / "noisy.log").read_bytes()
    assert data.endswith(b" obs/noisy [noisy-3] \\x00\xef\xbf\xbd binary\t\\x1b[31mred\\x1b[0m\\x7f\r\n")
