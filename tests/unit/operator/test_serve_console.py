"""What `inferd serve` says on its console of the engine's log records."""

from __future__ import annotations

import logging

from inferd.operator.serve import _replica_events_said


def test_an_engine_error_is_said_with_its_traceback_as_before() -> None:
    # Python's last-resort handler printed an engine error's traceback (a reconcile step that
    # raised); the handler that says replica events printed its first line only.
    said: list[str] = []
    with _replica_events_said(said.append):
        try:
            raise OSError("disk on fire")
        except OSError:
            logging.getLogger("inferd.engine").exception("api '%s': reconcile failed", "d/a")
        logging.getLogger("inferd.engine").info("api 'd/a': replica a-1 exited with code 3")
    assert said[0].startswith("api 'd/a': reconcile failed\nTraceback (most recent call last):")
    assert "OSError: disk on fire" in said[0]
    assert said[1] == "inferd: api 'd/a': replica a-1 exited with code 3"
