"""Rotated log files: bounded size, and reading the newest lines across rotations."""

from __future__ import annotations

import asyncio
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from inferd import logfiles, logreading
from inferd.engine.output import ApiLogs
from inferd.gateway.access import AccessLog
from inferd.logfiles import RotatingLog
from inferd.logreading import files_of, read_after, since_cursor, tail_cursor, tail_lines
from inferd.operator.logs import logged_keys


def write_lines(log: RotatingLog, first: int, count: int, batch: int = 50) -> None:
    for start in range(first, first + count, batch):
        log.write("\n".join(f"line {n}" for n in range(start, min(first + count, start + batch))))


def test_rotation_keeps_the_newest_lines_within_the_bound(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "api.log", limit=4096, keep=3)
    write_lines(log, 0, 20_000)
    log.close()
    files = files_of(tmp_path / "api.log")
    assert [f.name for f in files] == ["api.log.3", "api.log.2", "api.log.1", "api.log"]
    assert all(f.stat().st_size <= 4096 for f in files)
    text = "".join(f.read_text() for f in files)
    numbers = [int(line.split()[1]) for line in text.splitlines()]
    assert numbers == list(range(numbers[0], 20_000))  # in order, nothing lost in what is kept


def test_a_line_longer_than_a_piece_is_cut_in_a_log_and_kept_whole_for_records(tmp_path: Path) -> None:
    lines = ["a" * 3000, "short", "b" * 1500]  # pieces of 1024 (an eighth of the limit, at least 1 KiB)
    cut = RotatingLog(tmp_path / "api.log", limit=8192, keep=1)
    cut.write("\n".join(lines))
    cut.close()
    written = (tmp_path / "api.log").read_text().splitlines()
    assert all(len(line) <= 1024 for line in written) and "".join(written) == "".join(lines)
    whole = RotatingLog(tmp_path / "records.jsonl", limit=8192, keep=1, whole_lines=True)
    whole.write("\n".join(lines))
    whole.close()
    assert (tmp_path / "records.jsonl").read_text().splitlines() == lines


def test_a_large_batch_is_written_without_copying_its_rest_again(tmp_path: Path) -> None:
    """Each piece is sliced once: memory stays near one piece (re-slicing the rest after every
    piece copied the batch again and again: a 180 MiB batch of payload records took 26 s)."""
    text = "\n".join("x" * (2 << 20) for _ in range(16))  # 32 MiB, pieces of 1 MiB
    log = RotatingLog(tmp_path / "big.jsonl", limit=8 << 20, keep=1, whole_lines=True)
    tracemalloc.start()
    try:
        log.write(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        log.close()
    assert peak < 16 << 20  # a few records' worth, never the whole batch again


def test_the_environment_sets_size_and_backups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERD_LOG_MAX_BYTES", "8192")
    monkeypatch.setenv("INFERD_LOG_BACKUPS", "1")
    log = RotatingLog(tmp_path / "api.log")
    write_lines(log, 0, 10_000)
    log.close()
    assert [f.name for f in files_of(tmp_path / "api.log")] == ["api.log.1", "api.log"]
    monkeypatch.setenv("INFERD_LOG_MAX_BYTES", "lots")
    assert logfiles.max_bytes() == logfiles.DEFAULT_MAX_BYTES


def test_the_defaults_are_64_mib_and_3_backups(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the README promises when neither variable is set."""
    monkeypatch.delenv("INFERD_LOG_MAX_BYTES", raising=False)
    monkeypatch.delenv("INFERD_LOG_BACKUPS", raising=False)
    assert logfiles.max_bytes() == 64 * 1024 * 1024
    assert logfiles.backups() == 3


def test_tail_reaches_into_older_files(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    assert tail_lines(path, 10) == []  # no log yet
    log = RotatingLog(path, limit=4096, keep=3)
    write_lines(log, 0, 1000)
    assert tail_lines(path, 3) == ["line 997", "line 998", "line 999"]
    newest = path.read_text().count("\n")
    lines = tail_lines(path, newest + 5)  # five lines from the rotated file, then the newest
    assert lines[0] == f"line {1000 - newest - 5}" and lines[-1] == "line 999" and len(lines) == newest + 5
    text, _ = read_after(path, tail_cursor(path, 0))
    assert text == ""
    log.close()


def test_a_huge_line_hides_neither_the_lines_after_it_nor_its_start(tmp_path: Path) -> None:
    """The dashboard's view: a long line is shown cut to ``width``, and the lines written after it
    are shown at once (they were hidden until 50 more lines had pushed the long one out); one
    that starts over ``TAIL_SCAN_BYTES`` back is passed over, not read to its start."""
    path = tmp_path / "api.log"
    path.write_bytes(b"before\n" + b"start " + b"A" * 500_000 + b"\nafter 1\nafter 2\nbeing writ")
    assert tail_lines(path, 50, 20) == ["before", "start AAAAAAAAAAAAAA", "after 1", "after 2"]
    assert tail_lines(path, 2, 20) == ["after 1", "after 2"]
    path.write_bytes(b"before\n" + b"start " + b"A" * 5_000_000 + b"\nafter 1\nafter 2\n")
    assert tail_lines(path, 50, 20) == ["after 1", "after 2"]
    path.write_bytes("é".encode() * 20 + b"\n")  # cut by characters, not bytes
    assert tail_lines(path, 5, 3) == ["ééé"]


def test_a_cursor_follows_the_file_through_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    log = RotatingLog(path, limit=4096, keep=3)
    write_lines(log, 0, 10)
    text, cursor = read_after(path, tail_cursor(path, 2))
    assert text == "line 8\nline 9\n"
    write_lines(log, 10, 400)  # several rotations
    seen: list[str] = []
    while True:
        text, cursor = read_after(path, cursor, limit=1000)
        if not text:
            break
        seen.extend(text.splitlines())
    log.close()
    kept = "".join(f.read_text() for f in files_of(path)).splitlines()
    assert seen == kept[kept.index(seen[0]) :] and seen[-1] == "line 409"


def test_since_starts_at_the_first_recent_line(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    path.write_text(
        "2020-01-01 10:00:00 api [inferd] old\n"
        "an old traceback line\n"
        "2020-01-01 10:05:00 api [inferd] recent\n"
        "a recent traceback line\n"
    )
    since = time.mktime(time.strptime("2020-01-01 10:03:00", "%Y-%m-%d %H:%M:%S"))
    text, _ = read_after(path, since_cursor(path, since))
    assert text.startswith("2020-01-01 10:05:00 api [inferd] recent\n") and "old" not in text
    assert read_after(path, since_cursor(path, time.time() + 60))[0] == ""


def test_since_passes_over_older_lines_without_reading_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # was: every line's time read (strptime) from the file's start, on the operator's event loop:
    # `inferd logs API --since 1m` on a full 32 MiB log stalled every API's requests for 2.4 s
    path = tmp_path / "api.log"
    first = time.mktime(time.strptime("2020-01-01 10:00:00", "%Y-%m-%d %H:%M:%S"))
    lines = []
    for n in range(30_000):  # 100 lines a second, a traceback line now and then, two long lines
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first + n // 100))
        lines.append(f"{stamp} api [api-1] line {n}" + ("x" * 100_000 if n in (7_000, 7_001) else ""))
        if n % 37 == 0:
            lines.append(f"  traceback line after {n}")
    path.write_text("\n".join(lines) + "\n")

    times, when = [], 0.0  # each line's time as `--since` reads it
    for line in lines:
        when = logreading.line_time(line.encode(), when)
        times.append(when)

    def shown(since: float) -> str:  # from the first line at or after since
        later = [index for index, when in enumerate(times) if when >= since]
        return "\n".join(lines[later[0] :]) + "\n" if later else ""

    for second in (0, 1, 69, 70, 71, 150, 299, 300):
        assert read_after(path, since_cursor(path, first + second), 1 << 30)[0] == shown(first + second)
    read = []
    real = logreading.line_time

    def line_time(line: bytes, default: float) -> float:
        read.append(line)
        return real(line, default)

    monkeypatch.setattr(logreading, "line_time", line_time)
    assert read_after(path, since_cursor(path, first + 295))[0] == shown(first + 295)
    assert len(read) < 1_000  # of the 30,800 lines


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The local time zone is America/New_York (its clock showed 01:00-01:59 twice on 2026-11-01)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("new_york")
def test_since_finds_lines_of_the_hour_daylight_saving_time_ends_twice(tmp_path: Path) -> None:
    # was: the second 01:xx read as the first (EDT), an hour older: `--since` found none of them
    path = tmp_path / "api.log"
    path.write_text(
        "2026-10-31 23:00:00 api [inferd] the evening before (EDT)\n"
        "2026-11-01 01:40:00 api [inferd] first 01:40 (EDT)\n"
        "2026-11-01 01:50:00 api [inferd] first 01:50 (EDT)\n"
        "2026-11-01 01:05:00 api [inferd] second 01:05 (EST)\n"
        "2026-11-01 01:20:00 api [inferd] second 01:20 (EST)\n"
        "2026-11-01 02:10:00 api [inferd] 02:10 (EST)\n"
    )
    est_01_00 = 1793512800.0  # 2026-11-01 06:00 UTC
    text, _ = read_after(path, since_cursor(path, est_01_00 + 10 * 60))
    assert text.startswith("2026-11-01 01:20:00 api [inferd] second 01:20 (EST)\n")


class FakeConnection:
    request_id = b"0123456789abcdef"
    path = b"/iris/classifier"
    protocol = "cortex"
    replica_id = "classifier-1"
    extra_headers = b""


def test_fifty_thousand_access_lines_stay_within_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERD_LOG_MAX_BYTES", str(1 << 20))
    folder = tmp_path / "logs"
    conn: Any = FakeConnection()

    async def traffic() -> None:
        access = AccessLog(folder=folder)
        for _batch in range(50):
            for _ in range(1000):
                access.record("classifier", conn, 200, 0.0012)
            await asyncio.sleep(0)
            access.flush()
        access.close()

    asyncio.run(traffic())
    assert logfiles.folder_bytes(folder) <= 5 << 20
    files = files_of(folder / "classifier.access.log")
    assert len(files) == 4 and all(f.stat().st_size <= 1 << 19 for f in files)  # half each
    assert not (folder / "classifier.log").exists()  # access lines have a file of their own

    # a predictor that prints a line per request: its output and access lines share the bound
    output = ApiLogs(folder)
    for start in range(0, 50_000, 500):
        output.file("classifier").write(
            "\n".join(f"handled request {n} " + "x" * 60 for n in range(start, start + 500))
        )
    output.close()
    assert logfiles.folder_bytes(folder) <= 5 << 20
    assert tail_lines(folder / "classifier.log", 1)[0].startswith("handled request 49999 ")


def test_a_deleted_api_s_log_is_found_by_its_bare_name(tmp_path: Path) -> None:
    for key in ("iris/classifier", "garden/classifier", "iris/other"):
        (tmp_path / "logs" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "logs" / f"{key}.log").write_text("a line\n")
    (tmp_path / "logs" / "iris" / "classifier.access.log").write_text("{}\n")
    assert logged_keys(tmp_path, "other") == ["iris/other"]
    assert logged_keys(tmp_path, "classifier") == ["garden/classifier", "iris/classifier"]
    assert logged_keys(tmp_path, "gone") == []


def test_log_files_are_the_owners_only(tmp_path: Path) -> None:
    """Logs hold what handlers print and payload logs hold request bodies: mode 0600, as the
    token, also after a rotation (they were 0644, readable in a home that others may read)."""
    log = logfiles.RotatingLog(tmp_path / "api.log", limit=4096, keep=1)
    for line in range(2000):
        log.write(f"line {line}")
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["api.log", "api.log.1"]
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    # A log an older inferd left readable to all (0644) stayed so after an upgrade wrote into it.
    older = tmp_path / "older.log"
    older.write_text("2026-11-29 08:00:00 d/api [api-1] a line of the older inferd\n")
    older.chmod(0o644)
    log = logfiles.RotatingLog(older)
    log.write("a line of this one")
    log.close()
    assert older.stat().st_mode & 0o777 == 0o600
    assert older.read_text().endswith("older inferd\na line of this one\n")


def test_a_log_whose_folder_cannot_be_made_drops_its_lines_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Was: NotADirectoryError out of RotatingLog(): an operator whose $INFERD_HOME/logs/<deployment>
    # was a file (or not the user's) exited at every start, its supervisor restarting it for ever.
    (tmp_path / "logs").write_text("a file where the folder goes")
    log = logfiles.RotatingLog(tmp_path / "logs" / "d" / "api.log")
    for line in range(3):
        log.write(f"line {line}")
    log.close()
    said = [record.getMessage() for record in caplog.records if "api.log" in record.getMessage()]
    assert len(said) == 1 and "Not a directory" in said[0] and "dropped" in said[0], said


def test_a_log_that_cannot_be_read_is_said_not_empty(tmp_path: Path) -> None:
    # Was: `inferd logs API` printed nothing and exited 0 for a log this user cannot read (made
    # by `sudo inferd deploy` once), as if the API had printed nothing.
    from inferd.operator.logs import read_logs
    from inferd.operator.state import StateError

    logfiles.log_path(tmp_path, "d/api").mkdir(
        parents=True
    )  # root reads any file: a folder stands for one it cannot
    with pytest.raises(StateError, match=r"cannot read the log .*api\.log \(Is a directory\)"):
        read_logs(tmp_path, "d/api")


def test_a_first_read_without_tail_or_since_shows_the_last_100_lines(tmp_path: Path) -> None:
    # README: `inferd logs classifier` shows "the last 100 lines (older files read when needed)".
    from inferd.operator.logs import read_logs

    path = logfiles.log_path(tmp_path, "d/api")
    path.parent.mkdir(parents=True)
    log = RotatingLog(path, limit=512, keep=5)  # 150 lines span several rotated files
    write_lines(log, 0, 150, batch=10)
    log.close()
    assert len(files_of(path)) > 1
    lines = read_logs(tmp_path, "d/api")["text"].splitlines()
    assert lines == [f"line {n}" for n in range(50, 150)]


def test_logs_hold_no_file_descriptor_between_writes(tmp_path: Path) -> None:
    # Each API's log and access log held a descriptor for good: an operator with an open-file
    # limit of 256 and 60 APIs ran out once each API had answered once, and refused every
    # connection (`inferd get` too) until it was restarted.
    before = len(os.listdir("/proc/self/fd"))
    logs = [RotatingLog(tmp_path / f"api{i}.access.log", 4096, 1) for i in range(50)]
    for rounds in range(3):  # rotations included
        for log in logs:
            log.write(f"line {rounds}\n" * 300)
    assert len(os.listdir("/proc/self/fd")) - before < 5
    assert (tmp_path / "api7.access.log").read_text().endswith("line 2\n")
    for log in logs:
        log.close()
