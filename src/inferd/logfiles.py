"""Per-API log files under ``$INFERD_HOME/logs``, rotated by size, and how they are read back.

Two files per API, in a folder per deployment: ``<api>.log`` holds the replicas' output and
inferd's events (what ``inferd logs API`` shows, as Cortex showed a replica's output),
``<api>.access.log`` one JSON line per request. The two share ``INFERD_LOG_MAX_BYTES``
(default 64 MiB): each is rotated by the standard library's ``RotatingFileHandler`` at half of
it, keeping ``INFERD_LOG_BACKUPS`` older files (default 3), so an API's logs never hold more
than ``(1 + backups) x max_bytes`` in all, however much its predictor prints.

Writers hand whole batches of lines to ``RotatingLog.write`` (one record per batch, not per
line): the access log is written from the gateway's hot path. How the files are read back
(across rotations, from a time, the last lines) is ``logreading``'s.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import Any

MAX_BYTES_ENV = "INFERD_LOG_MAX_BYTES"
BACKUPS_ENV = "INFERD_LOG_BACKUPS"
DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_BACKUPS = 3


def log_path(home: Path, api: str) -> Path:
    """The API's replica output and inferd's events; ``api`` is its key, so the file is
    ``logs/<deployment>/<api>.log`` (API names are unique per deployment)."""
    return home / "logs" / f"{api}.log"


def access_path(home: Path, api: str) -> Path:
    """The API's access lines (one JSON object per request); ``api`` is its key."""
    return home / "logs" / f"{api}.access.log"


def _env_int(name: str, default: int, minimum: int) -> int:
    try:
        return max(minimum, int(os.environ.get(name, default)))
    except ValueError:
        return default


def max_bytes() -> int:
    return _env_int(MAX_BYTES_ENV, DEFAULT_MAX_BYTES, 4096)


def api_file_bytes() -> int:
    """Where each of an API's two log files rotates: they share ``max_bytes()``."""
    return max(4096, max_bytes() // 2)


def backups() -> int:
    return _env_int(BACKUPS_ENV, DEFAULT_BACKUPS, 0)


class _Handler(logging.handlers.RotatingFileHandler):
    reported = False  # whether a failure to write this file was said (once) in the operator's log

    def handleError(self, record: logging.LogRecord) -> None:
        # A full disk, or a folder that cannot be written, must not stop serving: the lines are
        # dropped. The first failure is said once, so a log that stays empty has its reason.
        if not self.reported:
            self.reported = True  # first: a failure to write the report itself ends here
            failure = sys.exc_info()[1]
            reason = failure.strerror if isinstance(failure, OSError) else None
            logging.getLogger("inferd").error(
                "cannot write %s (%s): its lines are dropped while it cannot be written",
                self.baseFilename,
                reason or failure,
            )

    def _open(self) -> Any:
        # Owner only, as the token: the files hold what handlers print, clients' addresses and
        # (payload logs) request bodies, also in an $INFERD_HOME that others may read; a file
        # an older inferd made readable to all (0644) is made the owner's when it is opened.
        descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            os.fchmod(descriptor, 0o600)
        return open(descriptor, self.mode, encoding=self.encoding, errors=self.errors)


class RotatingLog:
    """Appends text to one file through a ``RotatingFileHandler`` (one record per write)."""

    def __init__(
        self,
        path: Path,
        limit: int | None = None,
        keep: int | None = None,
        whole_lines: bool = False,
        hold_open: bool = False,
    ) -> None:
        self.path = path
        # Closed after each write unless ``hold_open`` (the payload logs close theirs when idle):
        # an API's log and access log each held a descriptor for good, and an operator with an
        # open-file limit of 256 and 60 APIs ran out of descriptors once each API had answered
        # once: every connection refused, `inferd get` failing, until it was restarted. A write
        # is a batch (the access log flushes a few times a second), so reopening costs little.
        self.hold_open = hold_open
        # A line longer than a piece is cut (logs: every file stays within the limit), or written
        # whole (records that must stay one JSON document a line: that file may pass the limit).
        self.whole_lines = whole_lines
        self.limit = max_bytes() if limit is None else limit
        # A folder that cannot be made (a file in its place, no permission) leaves the log's
        # lines dropped (handleError says so once) instead of stopping what writes them: an
        # operator whose API log folder was a file exited at every start, restarted for ever.
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = _Handler(
            path,
            maxBytes=self.limit,
            backupCount=backups() if keep is None else keep,
            encoding="utf-8",
            errors="replace",
            delay=True,
        )
        # A record may overshoot the limit by its own size: keep records well under it.
        self._chunk = max(1024, self.limit // 8)

    def write(self, text: str) -> None:
        """Append ``text`` (whole lines, the last newline optional), in pieces of whole lines.

        Each piece is sliced once from where the last one ended: the text is never copied again
        (re-slicing the rest made a batch of large records cost its size squared).
        """
        text = text.removesuffix("\n")
        if self.whole_lines and self._handler.stream is None and _ends_inside_a_line(self.path):
            # A writer stopped in the middle of a record (killed, or the disk filled): the next
            # record starts a line of its own instead of being glued to that torn one.
            text = "\n" + text
        start, end, chunk = 0, len(text), self._chunk
        while start < end:
            stop = start + chunk
            skip = 1  # the newline a piece ends at is not written twice
            if stop >= end:
                stop = end
            else:
                cut = text.rfind("\n", start, stop)
                if cut >= start:
                    stop = cut
                elif self.whole_lines:  # one line longer than a piece: to its end
                    cut = text.find("\n", stop)
                    stop = end if cut < 0 else cut
                elif not text.startswith("\n", stop):
                    skip = 0  # cut inside the line: the rest goes on in the next piece
            # handle(), not emit(): under the handler's lock, as threads may share one log
            self._handler.handle(logging.makeLogRecord({"msg": text[start:stop]}))
            start = stop + skip
        if not self.hold_open:
            self._release()

    def _release(self) -> None:
        """Close the file until the next write (which opens it again)."""
        handler = self._handler
        handler.acquire()
        try:
            stream, handler.stream = handler.stream, None
            if stream is not None:
                stream.close()
        finally:
            handler.release()

    def close(self) -> None:
        self._handler.close()


def _ends_inside_a_line(path: Path) -> bool:
    """Whether the file at ``path`` has bytes after its last newline."""
    try:
        with path.open("rb") as file:
            if file.seek(0, os.SEEK_END) == 0:
                return False
            file.seek(-1, os.SEEK_END)
            return file.read(1) != b"\n"
    except OSError:
        return False


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it does not exist); links are not followed,
    and a file hard-linked into several snapshots counts once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for root, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(root, name))
                if info.st_nlink > 1:
                    if (info.st_dev, info.st_ino) in seen:
                        continue
                    seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total
