"""The value a tracker counts, and its warnings when it cannot count one."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from inferd.config.blocks import Tracker
from inferd.replica.tracking import LimitedWarnings, tracked_value

CLASSIFY = Tracker(model_type="classification")


def test_cortex_s_rules() -> None:
    assert tracked_value("cat", CLASSIFY) == "cat"
    assert tracked_value([[np.int64(2)]], CLASSIFY) == 2
    assert tracked_value({"label": "dog"}, Tracker(model_type="classification", key="label")) == "dog"
    assert tracked_value(np.float32(1.5), Tracker(model_type="regression")) == 1.5
    assert tracked_value(True, CLASSIFY) is None
    assert tracked_value("x" * 300, CLASSIFY) is None
    assert tracked_value("cat", None) is None


def test_an_untrackable_answer_is_warned_about_once_a_minute_and_shown_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A tracker every answer misses logged the whole answer on every request: 1,000 requests
    with 1 MiB answers wrote 1,000 warnings of a MiB each into the API's log."""
    now = [0.0]
    warnings = LimitedWarnings(every=60.0, clock=lambda: now[0])
    answer = {"probabilities": [0.25] * 200_000}
    caplog.set_level(logging.WARNING, logger="inferd.replica")
    for _ in range(1000):
        assert tracked_value(answer, CLASSIFY, warnings) is None
    tracked_value({"p": 1}, Tracker(model_type="regression", key="score"), warnings)  # another reason
    now[0] = 61.0
    tracked_value(answer, CLASSIFY, warnings)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3
    assert messages[0].startswith("unable to record prediction metric: {'probabilities': [0.25, ")
    assert messages[0].endswith("is not a classification value")
    assert all(len(message) < 400 for message in messages)
    assert messages[1] == "unable to record prediction metric: the response has no key 'score'"
    assert messages[2].endswith("is not a classification value (999 more since the last such warning)")


def test_a_tracker_key_on_an_answer_that_is_no_object_says_what_the_answer_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a post_inference answering [{"label": ...}] (a list of one row) logged "the response has no
    # key 'label'", of an answer whose row holds it
    caplog.set_level(logging.WARNING, logger="inferd.replica")
    label = Tracker(model_type="classification", key="label")
    assert tracked_value([{"label": "skip"}], label, LimitedWarnings()) is None
    assert tracked_value("skip", label, LimitedWarnings()) is None
    assert [record.getMessage() for record in caplog.records] == [
        "unable to record prediction metric: the response is a list, not an object: tracker.key 'label' "
        "names a key of an object answer",
        "unable to record prediction metric: the response is a str, not an object: tracker.key 'label' "
        "names a key of an object answer",
    ]
