"""What the index lookups before pip make of valid requirements: a pre-release pin, a pin of a
package the file's own index (``--extra-index-url``, ``--find-links``) serves."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from inferd.engine import package_index
from inferd.engine.requirement_plan import plan


@pytest.fixture(autouse=True)
def _index_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """An index found unanswered by one test is not by the others."""
    monkeypatch.setattr(package_index, "_unanswered", [float("-inf")])


def _wheel(folder: Path, name: str, version: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")


def test_a_pre_release_pin_is_not_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # was: `pip index versions` leaves pre-releases out unless asked with --pre, so a pin pip
    # installs (`==2.0rc1` names a pre-release: PEP 440 allows it) was refused before pip ran:
    # "inferdprerelease==2.0rc1 cannot be installed on Python 3.11; the nearest installable version is 1.0"
    _wheel(tmp_path / "index", "inferdprerelease", "1.0")
    _wheel(tmp_path / "index", "inferdprerelease", "2.0rc1")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")  # the wheels above are the whole index
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    # a URL: pip splits PIP_FIND_LINKS at spaces, which a TMPDIR may put in tmp_path
    monkeypatch.setenv("PIP_FIND_LINKS", (tmp_path / "index").as_uri())
    assert plan("inferdprerelease==2.0rc1\n", relax=False).lines == ["inferdprerelease==2.0rc1"]
    # a pin naming no pre-release still relaxes to a release, never to a pre-release
    relaxed = plan("inferdprerelease==1.5\n", relax=True)
    assert relaxed.lines == ["inferdprerelease==1.0"]


@pytest.mark.parametrize(
    "option",
    [
        "--extra-index-url https://pypi.example.invalid/simple",
        "--index-url https://x.invalid/simple",
        "-f ./wheels",
    ],
)
@pytest.mark.parametrize("relax", [False, True])
def test_a_pin_the_files_own_index_serves_goes_to_pip(option: str, relax: bool) -> None:
    # was: the lookups ask pip's default index only, so a private package whose name PyPI has
    # too, in versions the private index's one is not (`utils==1.5`: PyPI's 1.0 and 2.0), was
    # refused ("cannot be installed on Python 3.11; the nearest installable version is 2.0"), and
    # with --relax-pins replaced by PyPI's package of that name
    def public(name: str) -> list[Version]:
        return [Version("1.0"), Version("2.0")]

    checked = plan(f"{option}\nutils==1.5\n", relax=relax, versions_of=public, sources_of=public)
    assert checked.lines == [option, "utils==1.5"]
    assert checked.warnings == []


def test_an_index_that_does_not_answer_is_not_said_to_lack_the_packages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # was: "requirements.txt: tabulate==0.9.0: the index has no package tabulate (a conda package,
    # or one of a private index: ...)", and so for every pin, on a laptop offline or behind a
    # proxy: pip's "No matching distribution found" came after its index did not answer
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:1/simple")  # nothing listens there
    monkeypatch.setenv("PIP_RETRIES", "1")
    checked = plan("inferd-review-unreachable==0.9.0\n", relax=False)
    assert checked.lines == ["inferd-review-unreachable==0.9.0"]  # pip says why when it installs
    # a pin of a package inferd runs with, in another version: the warning said online (was
    # "numpy==1.26.4 cannot be installed on Python 3.11; --relax-pins uses numpy ...")
    numpy = __import__("numpy").__version__
    other = "1.26.4" if numpy != "1.26.4" else "1.26.3"
    checked = plan(f"numpy=={other}\n", relax=False)
    assert checked.lines == []
    assert checked.warnings == [
        f"requirements.txt: numpy=={other} conflicts with numpy {numpy}, which inferd itself runs with; "
        "handlers import that version"
    ]


def test_an_index_that_never_answers_is_waited_for_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # was: each pin was a lookup of pip's full wait (15 s a try, 6 tries: about 97 s), three times
    # over (a batch, then alone, then its sources): a 5-pin file waited about 5 minutes for an
    # index that accepts connections and never answers before pip ran and said why, a 30-pin
    # freeze about 15; once one lookup finds the index unanswered, the others are not asked
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])  # and never a byte back
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.getsockname()[1]}/simple")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "1")
    monkeypatch.setenv("PIP_RETRIES", "1")  # two tries a lookup
    try:
        names = [f"inferd-review-silent-{n}" for n in range(10)]
        checked = plan("".join(f"{name}==1.0\n" for name in names), relax=False)
        assert checked.lines == [f"{name}==1.0" for name in names]  # pip says why
        # at most the first lookup of each batch process, two tries each (was 40: 10 pins x 2 lookups)
        assert len(held) <= 2 * package_index.MANY_PROCESSES
    finally:
        server.close()
        for connection in held:
            connection.close()
