"""``cortex.lib.log``: the logger of Cortex v0.10's runtime (``pkg/workloads/cortex/lib/log.py``).

Handlers ran in Cortex's image, where this module was importable, and some logged with it:
``logger = get_logger()`` (Cortex v0.9 and v0.10.0) or ``cx_logger().info(...)`` (v0.10.1 on).
Its lines go to stdout, which an inferd replica writes to the API's log, in Cortex's format:
``2019-11-21 08:00:00.123456:cortex:INFO:message``.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

from cortex.lib.stringify import truncate

FORMAT = "%(asctime)s:cortex:%(levelname)s:%(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class _Formatter(logging.Formatter):
    """Cortex's ``MyFormatter``: ``%f`` (microseconds) in the time, which ``time.strftime``
    cannot write."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return dt.datetime.fromtimestamp(record.created).strftime(datefmt or DATE_FORMAT)


def register_logger(name: str) -> logging.Logger:
    """A logger ``name`` writing Cortex's lines to stdout, at every level (as Cortex's did)."""
    logger = logging.getLogger(name)
    if not any(getattr(handler, "_cortex", False) for handler in logger.handlers):
        handler = logging.StreamHandler(stream=sys.stdout)
        handler.setFormatter(_Formatter(fmt=FORMAT, datefmt=DATE_FORMAT))
        handler._cortex = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def refresh_logger() -> logging.Logger:
    """Cortex set its logger up again after user code ran (which may have changed logging)."""
    return register_logger("cortex")


def cx_logger() -> logging.Logger:
    """Cortex v0.10.1+'s logger."""
    return register_logger("cortex")


def get_logger() -> logging.Logger:
    """Cortex v0.9 and v0.10.0's logger."""
    return register_logger("cortex")


def debug_obj(name: str, sample: Any, debug: bool) -> None:
    """Log ``name: sample`` (cut short by Cortex's ``truncate``) when ``debug``."""
    if debug:
        cx_logger().info("%s: %s", name, truncate(sample))
