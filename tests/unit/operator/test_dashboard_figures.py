"""The figures README's "Dashboard" section gives: a refresh every 2.5 s, charts over the last
15 minutes sampled every 5 s, the last 50 log lines cut to 2,000 characters, a login link good
for 10 minutes, a session of 32 random bytes."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from inferd.operator import dashboard, history, sessions


def test_the_page_refreshes_every_2_5_s() -> None:
    script = (Path(dashboard.__file__).parent / "static" / "dashboard.js").read_text()
    assert re.search(r"^const REFRESH_MS = 2500;$", script, re.MULTILINE)


def test_charts_hold_15_minutes_sampled_every_5_s() -> None:
    assert (history.WINDOW, history.PERIOD) == (15 * 60, 5)


def test_the_last_50_log_lines_cut_to_2000_characters() -> None:
    assert (dashboard.LOG_LINES, dashboard.LOG_LINE_CHARS) == (50, 2000)


def test_a_login_link_lasts_10_minutes_and_a_session_is_32_random_bytes() -> None:
    assert sessions.LOGIN_TTL == 600
    store = sessions.Sessions()
    session = store.redeem(store.new_login())
    assert session is not None
    assert len(base64.urlsafe_b64decode(session + "=" * (-len(session) % 4))) == 32
