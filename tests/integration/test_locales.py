"""Locales: a handler's non-ASCII text reaches its answer and its log whatever the locale is."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import INFERD, make_project, wait_for
from tests.integration.conftest import Inferd

PRINTS = """
def init(model_path, metadata):
    print("init \\u2713 \\U0001f680")


def predict(sample, metadata):
    print("predict \\u00fc \\U0001f40d", sample["name"])
    return {"greeting": "h\\u00e9llo \\U0001f30d " + sample["name"]}
"""

C_LOCALE = {"LANG": "C", "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}


def test_a_handler_printing_emoji_serves_and_logs_under_the_c_locale(inferd: Inferd, tmp_path: Path) -> None:
    inferd.env.update(C_LOCALE)  # the operator's, and so its replicas': stdout in ASCII
    inferd.env.pop("PYTHONIOENCODING", None)
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: loc\n- kind: api\n  name: emoji\n  predictor:\n    path: p.py\n",
        {"p.py": PRINTS},
    )
    inferd.run("deploy", str(project))
    inferd.wait_status("emoji", "live")  # init's print raised UnicodeEncodeError: the API failed
    answer = inferd.post("/loc/emoji", {"name": "Z\u00fcrich"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"greeting": "h\u00e9llo \U0001f30d Z\u00fcrich"}
    log = inferd.home / "logs" / "loc" / "emoji.log"
    wait_for(lambda: "predict \u00fc \U0001f40d Z\u00fcrich" in log.read_text(encoding="utf-8"))
    assert "init \u2713 \U0001f680" in log.read_text(encoding="utf-8")
    # a terminal in Latin-1: what it cannot show is escaped, not a UnicodeEncodeError traceback
    latin = dict(inferd.env, PYTHONIOENCODING="latin-1")
    shown = subprocess.run([str(INFERD), "logs", "emoji"], env=latin, capture_output=True, timeout=60)
    assert shown.returncode == 0, shown.stderr.decode("latin-1")
    assert "predict \u00fc \\U0001f40d Z\u00fcrich" in shown.stdout.decode("latin-1")
    (project / "sample.json").write_text('{"name": "Z\u00fcrich"}', encoding="utf-8")
    tested = subprocess.run([str(INFERD), "test", str(project)], env=latin, capture_output=True, timeout=120)
    assert tested.returncode == 0, tested.stdout.decode("latin-1") + tested.stderr.decode("latin-1")
    assert "init \\u2713 \\U0001f680" in tested.stdout.decode("latin-1")
