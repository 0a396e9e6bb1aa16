"""The sources compile on every Python that pyproject.toml's ``requires-python`` lets pip install
inferd on (3.11 and later), not only on the 3.11 the suite runs on."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("src", "tests", "examples", "scripts", "bench")
# A backslash escape of a surrogate (U+D800 to U+DFFF): only a file holding one is parsed
SURROGATE_ESCAPE = re.compile(rb"\\(u[dD][89a-fA-F]|U0000[dD][89a-fA-F])")


def docstrings(tree: ast.Module) -> list[tuple[int, str]]:
    """Each docstring in ``tree``, with the line it starts on."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                found.append((first.lineno, first.value.value))
    return found


def test_no_docstring_holds_a_lone_surrogate() -> None:
    # Python 3.13's compiler strips the indentation of docstrings through UTF-8: a docstring
    # holding ``\udcff`` (an unescaped backslash escape) fails the import with UnicodeEncodeError,
    # and a module of the CLI that did so ended every ``inferd`` command on 3.13.
    faults = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_bytes()
            if not SURROGATE_ESCAPE.search(source):
                continue
            for line, doc in docstrings(ast.parse(source, str(path))):
                try:
                    doc.encode()
                except UnicodeEncodeError:
                    faults.append(f"{path.relative_to(ROOT)}:{line}")
    assert faults == []
