"""The evidence README.md and docs/*.md cite exists: every test named, every tests/ path, every
``pytest FILE -k EXPR`` selection, and every option given to an ``inferd`` command.

A renamed or removed test left a sentence pointing at nothing; these checks read the text only.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import click
import pytest

from inferd.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Files the docs name that a command writes (`inferd init my-api` writes this test file).
GENERATED = {"test_my_api_classifier.py"}


@cache
def defined_tests() -> dict[str, list[str]]:
    """Each test file (relative path) and the names of the functions it defines."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        names = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        found[path.relative_to(ROOT).as_posix()] = names
    return found


def selects(expression: str, name: str) -> bool:
    """Whether ``pytest -k expression`` selects the test ``name`` (words: case-insensitive substrings)."""
    words = {"and": " and ", "or": " or ", "not": " not ", "(": "(", ")": ")"}
    code = "".join(
        words.get(token, repr(token.lower() in name.lower()))
        for token in re.findall(r"\(|\)|[^\s()]+", expression)
    )
    return bool(eval(code))  # built above from True/False, and/or/not and parentheses only


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_test_and_test_file_cited_exists(doc: Path) -> None:
    files = defined_tests()
    names = {name for defined in files.values() for name in defined}
    stems = {Path(path).stem for path in files}
    text = doc.read_text()
    missing = [
        cited
        for cited in sorted(set(re.findall(r"\btest_\w+(?:\.py)?", text)))
        if cited not in GENERATED
        and cited.removesuffix(".py") not in stems
        and (cited.endswith(".py") or cited not in names)
    ]
    missing += [
        path for path in sorted(set(re.findall(r"\btests/[\w./-]*\w", text))) if not (ROOT / path).exists()
    ]
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_k_selection_cited_selects_a_test(doc: Path) -> None:
    """`pytest tests/x.py -k words` selects a test of that file; a bare `-k words` in a table
    selects one of the file its section names ("Each row is a test in `tests/...`")."""
    files = defined_tests()
    section: list[str] = []
    empty = []
    for line in doc.read_text().splitlines():
        named = re.search(r"(?:a test in |^)`(tests/[\w/]+\.py)`", line)
        if line.startswith("#"):
            section = []
        if named:
            section = [named.group(1)]
        for before, expression in re.findall(r'`(?:pytest )?([^`]*?)-k ("[^"]+"|[^`\s]+)`', line):
            cited = re.findall(r"tests/[\w/]+\.py", before) or [
                f"tests/integration/{name}" for name in re.findall(r"\btest_\w+\.py", before)
            ]
            expression = expression.strip('"')
            chosen = cited or section
            if not any(selects(expression, name) for path in chosen for name in files.get(path, [])):
                empty.append(f"{chosen} -k {expression}")
    assert empty == []


@cache
def command_options(path: str) -> set[str]:
    """The option names of ``inferd PATH`` (``env add`` is a subcommand), --help included."""
    command: click.Command = cli
    ctx = click.Context(cli, info_name="inferd")
    for word in path.split():
        assert isinstance(command, click.Group)
        found = command.get_command(ctx, word)
        assert found is not None, path
        command = found
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {
        "-h",
        "--help",
    }


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_option_given_to_an_inferd_command_exists(doc: Path) -> None:
    commands = set(cli.list_commands(click.Context(cli)))
    unknown = []
    for match in re.finditer(
        r"\b(?:inferd|cortex) (env (?:add|list|remove)|[a-z]+)([^`\n|#;]*)", doc.read_text()
    ):
        path, rest = match.group(1), match.group(2)
        if path.split()[0] not in commands:
            continue
        for option in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", rest):
            if option not in command_options(path):
                unknown.append(f"inferd {path} {option}")
    assert unknown == []


def cited_scripts() -> dict[str, set[str]]:
    """Each ``bench/*.py`` and ``scripts/*.py`` the docs name, with the options they give it
    (``python bench/startup.py --second``: ``--second``)."""
    cited: dict[str, set[str]] = {}
    for doc in DOCS:
        text = doc.read_text()
        for script in re.findall(r"\b((?:bench|scripts)/\w+\.py)\b", text):
            cited.setdefault(script, set())
        for script, rest in re.findall(r"python ((?:bench|scripts)/\w+\.py)([^`\n|;)]*)", text):
            cited[script] |= set(re.findall(r"(?<![\w-])(--[a-zA-Z][\w-]*)", rest.split(" -- ")[0]))
    return cited


def runnable_scripts() -> list[str]:
    """Each ``bench/*.py`` and ``scripts/*.py`` the docs name, and each one run as a program
    (``make demo`` runs scripts/demo.py; bench/servers.py starts bench/b0_server.py)."""
    programs = {
        path.relative_to(ROOT).as_posix()
        for folder in ("bench", "scripts")
        for path in (ROOT / folder).glob("*.py")
        if 'if __name__ == "__main__":' in path.read_text()
    }
    return sorted(programs | set(cited_scripts()))


@pytest.mark.parametrize("script", runnable_scripts())
def test_every_script_cited_answers_help_and_knows_the_options_given_it(script: str) -> None:
    """A measurement the docs cite can be run again: its script exists, `--help` prints its usage
    and runs nothing (bench/startup.py ran its minutes of measurements; scripts/demo.py served
    on port 8888 until Ctrl-C), and the options the docs give it are among its own."""
    path = ROOT / script
    assert path.exists(), script
    done = subprocess.run(
        [sys.executable, str(path), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("usage:"), done.stdout + done.stderr
    unknown = [option for option in cited_scripts().get(script, set()) if option not in done.stdout]
    assert unknown == []


def anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation out, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_link_names_a_file_or_heading_that_exists(doc: Path) -> None:
    """`[Cortex v0.10 projects](#cortex-v010-projects)`, `(docs/benchmarks.md)`: a renamed heading or
    file left a link to nothing."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, fragment = target.partition("#")
        linked = (doc.parent / path) if path else doc
        if not linked.exists():
            broken.append(target)
        elif fragment and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.MULTILINE)
            if fragment not in {anchor(heading) for heading in headings}:
                broken.append(target)
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_a_section_above_or_below_is_there(doc: Path) -> None:
    """A doc that says "as in the section above" has one: docs/memory-kinds.md said it of a
    section left behind in docs/benchmarks.md when its text moved; a section pointed at is a
    heading of this document."""
    text = doc.read_text()
    dangling = []
    for found in re.finditer(r"section (above|below)", text):
        side = text[: found.start()] if found.group(1) == "above" else text[found.end() :]
        if not re.search(r"^##+ ", side, flags=re.MULTILINE):
            dangling.append(text[max(0, found.start() - 40) : found.end()])
    assert dangling == []


def test_the_soak_s_defaults_are_the_ones_docs_give() -> None:
    """docs/reliability.md: `make soak` runs 10 minutes and 6 clients by default (its 20 s figure
    named `make soak SOAK_SECONDS=20` while it was measured with 4 clients, which make soak never
    runs), and SOAK_SECONDS sets the length."""
    text = " ".join((ROOT / "docs" / "reliability.md").read_text().split())
    minutes, clients = map(int, re.findall(r"`make soak` runs .*?\((\d+) minutes and (\d+) clients", text)[0])
    recipe = (ROOT / "Makefile").read_text().split("\nsoak:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/soak.py --duration $${SOAK_SECONDS:-600}" in recipe and "--clients" not in recipe
    soak = (ROOT / "scripts" / "soak.py").read_text()
    assert 'os.environ.get("SOAK_SECONDS", "600")' in soak
    default = re.search(r'"--clients", type=int, default=(\d+)\)', soak)
    assert default is not None and int(default.group(1)) == clients
    assert minutes * 60 == 600


# INFERD_ names in src/ that are no setting for users: set by inferd for its own children
# (the supervisor's pid; the operator adopted), Python names, and a test's knob.
NOT_SETTINGS = {
    "INFERD_SUPERVISOR",
    "INFERD_ADOPT",
    "INFERD_PACKAGE",
    "INFERD_ERROR",
    "INFERD_DASHBOARD_SAMPLE_SECONDS",
}


def test_every_variable_the_docs_name_is_read_and_every_setting_is_documented() -> None:
    """An INFERD_ variable the docs name is one the code reads (a renamed one left the docs
    naming a variable nothing reads), and each the code reads is in the README or docs/."""
    in_code = {
        name
        for path in (ROOT / "src").rglob("*.py")
        for name in re.findall(r"\bINFERD_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())
    }
    in_docs = {name for doc in DOCS for name in re.findall(r"\bINFERD_[A-Z0-9_]*[A-Z0-9]\b", doc.read_text())}
    assert sorted(in_docs - in_code) == []
    assert sorted(in_code - in_docs - NOT_SETTINGS) == []
