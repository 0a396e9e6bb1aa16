"""Locales: a handler's non-ASCII text reaches its answer and its log whatever the locale is."""

from __future__ import annotations

import os
import subprocess
import zipfile
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


def test_requirements_install_under_the_c_locale_into_a_path_that_is_not_ascii(tmp_path: Path) -> None:
    # was: "installing requirements.txt failed: ... UnicodeEncodeError: 'utf-8' codec can't encode
    # characters ...: surrogates not allowed", pip writing the path in its records
    root = tmp_path / "jos\u00e9"
    project = make_project(
        root / "project",
        "- kind: deployment\n  name: loc\n- kind: api\n  name: lib\n  predictor:\n    path: p.py\n",
        {
            "p.py": "import mylib\n\n\ndef predict(sample, metadata):\n    return mylib.VALUE\n",
            "requirements.txt": "./mylib-0.1-py3-none-any.whl\n-c constraints.txt\n",
            "constraints.txt": "mylib==0.1\n",  # its absolute path goes to pip's listing
            "sample.json": "{}",
        },
    )
    with zipfile.ZipFile(project / "mylib-0.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr("mylib/__init__.py", "VALUE = 'gr\\u00fc\\u00df'\n")
        wheel.writestr("mylib-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: mylib\nVersion: 0.1\n")
        wheel.writestr(
            "mylib-0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr("mylib-0.1.dist-info/RECORD", "")
    env = dict(os.environ, **C_LOCALE, INFERD_HOME=str(root / "home"))
    env.pop("PYTHONIOENCODING", None)
    tested = subprocess.run([str(INFERD), "test", str(project)], env=env, capture_output=True, timeout=300)
    shown = tested.stdout.decode("utf-8", "replace") + tested.stderr.decode("utf-8", "replace")
    assert tested.returncode == 0, shown
    assert "1 passed" in shown


def test_a_project_in_a_folder_named_in_latin_1_bytes_deploys_and_serves(
    inferd: Inferd, tmp_path: Path
) -> None:
    # was: `inferd deploy` "error: malformed JSON: invalid high surrogate" (the admin API's reader),
    # and `inferd serve` "the engine cannot run this API: PydanticSerializationError" (the spec)
    project = make_project(
        tmp_path / os.fsdecode(b"caf\xe9"),
        "- kind: deployment\n  name: loc\n- kind: api\n  name: latin\n  predictor:\n    path: p.py\n",
        {"p.py": "def predict(sample, metadata):\n    return {'got': sample}\n"},
    )
    inferd.run("deploy", str(project))
    inferd.wait_status("latin", "live")
    assert inferd.post("/loc/latin", {"x": 1}).json() == {"got": {"x": 1}}
