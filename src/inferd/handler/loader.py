"""Import the user's handler or predictor file and check its functions before anything serves.

A wrong function name or parameter list is a clear error at load time, with the expected
signature in the message, instead of a failure on the first request.
"""

from __future__ import annotations

import _imp
import ast
import contextlib
import difflib
import importlib.machinery
import importlib.util
import inspect
import marshal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from inferd.errors import LoadError
from inferd.handler.cortex_packages import missing_package_hint
from inferd.handler.user_errors import raised

HANDLER_FUNCTIONS = {
    "pre_inference": "pre_inference(sample, signature, metadata)",
    "post_inference": "post_inference(prediction, signature, metadata)",
}
# Cortex v0.9 (the flat api form): the second argument was the model's signature.
V09_HANDLER_FUNCTIONS = {
    "pre_inference": "pre_inference(sample, metadata)",
    "post_inference": "post_inference(prediction, metadata)",
}
PREDICTOR_FUNCTIONS = {
    "init": "init(model_path, metadata)",
    "predict": "predict(sample, metadata)",
}
EXPECTED = {
    "handler": HANDLER_FUNCTIONS,
    "handler-v0.9": V09_HANDLER_FUNCTIONS,
    "predictor": PREDICTOR_FUNCTIONS,
}

UserFunction = Callable[..., Any]


@dataclass(frozen=True)
class UserCode:
    """The checked functions of one user file (absent ones are ``None``)."""

    file: str
    functions: dict[str, UserFunction]

    def get(self, name: str) -> UserFunction | None:
        return self.functions.get(name)


def add_import_paths(project_root: Path, python_path: Path | None, user_file: Path | None = None) -> None:
    """Make the project folder (and ``python_path``) importable, as Cortex's PYTHONPATH did.

    The user file's own folder comes last (``handlers/iris.py`` importing its neighbour
    ``handlers/features.py`` as ``features``, as Python does for a script): it never shadows a
    module found before it.
    """
    for folder in (python_path, project_root):
        if folder is not None and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    if user_file is not None and str(user_file.parent) not in sys.path:
        sys.path.append(str(user_file.parent))


def _package_of(shown: str) -> str:
    """The package a user file in a project subfolder belongs to (``handlers`` for
    ``handlers/iris.py``), so that its relative imports (``from .features import rows``) work
    as in any Python package; empty for a file at the project root or under a folder whose name
    is not a Python identifier."""
    parts = [part for part in Path(shown).parent.parts if part not in ("", ".")]
    if parts and all(part.isidentifier() for part in parts):
        return ".".join(parts)
    return ""


def _import(path: Path, module_name: str, shown: str) -> ModuleType:
    if path.suffix == ".pickle":
        return _from_pickle(path, module_name, shown)
    package = _package_of(shown)
    if package:
        module_name = f"{package}.{module_name}"  # its __package__: relative imports resolve there
    spec = importlib.util.spec_from_file_location(
        module_name, path, loader=FreshSourceLoader(module_name, str(path))
    )
    if spec is None or spec.loader is None:
        raise LoadError(f"{shown}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        detail = "".join(traceback.format_exception(exc)).rstrip()
        hint = missing_package_hint(exc)
        raise LoadError(f"{shown}: importing it failed: {raised(exc)}{hint}\n{detail}") from exc
    return module


class FreshSourceLoader(importlib.machinery.SourceFileLoader):
    """Loads the user's file as its source is now: its bytecode cache is trusted only when it
    was compiled from the same bytes (a checked-hash ``.pyc``, PEP 552), never by size and mtime.

    Python's default cache trusts a ``.pyc`` whose source has the same size and the same mtime
    in whole seconds: an edit saved within the second of the previous one (a notebook cell
    writing the handler, then ``load_api``; two quick saves under ``serve --reload``) kept the
    old code until the next edit. Compiling at every load instead cost each replica start the
    compile: a 15,000-line handler loaded in 258 ms compiled, 18-24 ms from this cache.
    """

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        source = self.get_data(path)
        key = importlib.util.source_hash(source)
        cached = importlib.util.cache_from_source(path)
        head = importlib.util.MAGIC_NUMBER + CHECKED_HASH + key
        with contextlib.suppress(OSError, ValueError, EOFError, TypeError), open(cached, "rb") as file:
            if file.read(len(head)) == head:
                code = marshal.loads(file.read())
                if isinstance(code, CodeType):
                    # compiled in another folder (``cp -r`` copies __pycache__): its tracebacks name
                    # this file, as Python's own importer makes them
                    _imp._fix_co_filename(code, path)  # type: ignore[attr-defined]
                    return code
        code = self.source_to_code(source, path)
        if not sys.dont_write_bytecode:
            self.set_data(cached, head + marshal.dumps(code))  # atomic; a read-only folder is skipped
        return code


# A ``.pyc``'s flags (PEP 552): hash-based (bit 0), checked against the source (bit 1); Python's
# own importer checks such a file the same way.
CHECKED_HASH = (0b11).to_bytes(4, "little")


def _from_pickle(path: Path, module_name: str, shown: str) -> ModuleType:
    # Cortex's Python client shipped handlers as a dill pickle of {name: function}. The file
    # is part of the user's own project folder, never something received over the network.
    import dill

    try:
        with path.open("rb") as handle:
            functions = dill.load(handle)
    except Exception as exc:
        raise LoadError(f"{shown}: cannot unpickle it: {type(exc).__name__}: {exc}") from exc
    if not isinstance(functions, dict):
        raise LoadError(f"{shown}: the pickle must hold a dict of function name -> function")
    module = ModuleType(module_name)
    for name, value in functions.items():
        setattr(module, str(name), value)
    return module


def _check(module: ModuleType, expected: dict[str, str], shown: str) -> dict[str, UserFunction]:
    functions: dict[str, UserFunction] = {}
    defined = [
        n for n, v in vars(module).items() if callable(v) and not n.startswith("_") and n not in expected
    ]
    for name, usage in expected.items():
        function = getattr(module, name, None)
        if function is None:
            close = difflib.get_close_matches(name, defined, n=1, cutoff=0.8)
            if close:
                raise LoadError(f"{shown}: defines {close[0]}(); did you mean {usage}?")
            continue
        if not callable(function):
            raise LoadError(f"{shown}: {name} must be a function: {usage}")
        if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
            raise _not_async(name, shown)
        with contextlib.suppress(ValueError):  # builtins without a signature: trust them
            _check_arity(name, inspect.signature(function), usage, shown)
        functions[name] = function
    return functions


def _not_async(name: str, shown: str) -> LoadError:
    """An ``async def`` hook: each replica runs one request at a time in plain calls, so its
    coroutine (or async generator) would reach the client as a value that is no answer."""
    return LoadError(
        f"{shown}: {name} is an async def: inferd calls it as a plain function, one request at a "
        "time per replica (a streaming answer is a generator: yield from a plain def); define it with def"
    )


def _check_arity(name: str, signature: inspect.Signature, usage: str, shown: str) -> None:
    arity = usage.count(",") + 1
    try:
        signature.bind(*range(arity))
    except TypeError:
        raise LoadError(f"{shown}: {name}{signature} must take {arity} arguments: {usage}") from None


def _signature_of(node: ast.FunctionDef | ast.AsyncFunctionDef) -> inspect.Signature:
    """The parameters a ``def`` declares, as ``inspect`` would see them once imported."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    parameters = [
        inspect.Parameter(
            arg.arg,
            inspect.Parameter.POSITIONAL_ONLY
            if i < len(args.posonlyargs)
            else inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=None if i >= first_default else inspect.Parameter.empty,
        )
        for i, arg in enumerate(positional)
    ]
    if args.vararg is not None:
        parameters.append(inspect.Parameter(args.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        empty = inspect.Parameter.empty
        parameters.append(
            inspect.Parameter(
                arg.arg, inspect.Parameter.KEYWORD_ONLY, default=empty if default is None else None
            )
        )
    if args.kwarg is not None:
        parameters.append(inspect.Parameter(args.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(parameters)


def _bound_names(node: ast.AST) -> set[str]:
    """The module-level names a top-level statement binds: not those bound inside the bodies of
    the functions and classes it defines (a class's ``predict`` method is no module function)."""
    names: set[str] = set()
    stack = [node]
    while stack:
        child = stack.pop()
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(child.name)
            continue
        if isinstance(child, ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            continue  # a scope of its own
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
            names.add(child.id)
        elif isinstance(child, ast.alias):
            names.add(child.asname or child.name.partition(".")[0])
        stack.extend(ast.iter_child_nodes(child))
    return names


def _must_define_predict(shown: str, names: set[str]) -> LoadError:
    # Cortex v0.12 made predictors a class; v0.10 (and inferd) take module functions.
    hint = (
        " (a class PythonPredictor is Cortex v0.12's form: a Cortex v0.10 predictor defines "
        "init and predict as module functions)"
        if "PythonPredictor" in names
        else ""
    )
    return LoadError(f"{shown}: must define {PREDICTOR_FUNCTIONS['predict']}{hint}")


def check_source(path: Path, kind: str, shown: str) -> None:
    """Check a handler or predictor file's syntax and function signatures without running it.

    What ``load_user_code`` checks after importing, as far as the source alone tells (functions
    made at run time are left to the replica): ``inferd validate`` needs neither the model nor
    the packages of ``requirements.txt``.
    """
    if path.suffix == ".pickle":
        return
    try:
        source = path.read_bytes()
        if b"\0" in source:
            raise LoadError(
                f"{shown} is not Python source: it holds NUL bytes (a binary file saved under a .py name?)"
            )
        tree = ast.parse(source, filename=shown)
    except SyntaxError as exc:
        where = f"{shown}:{exc.lineno}" if exc.lineno else shown
        raise LoadError(f"{where}: invalid syntax: {exc.msg}") from None
    except (OSError, ValueError) as exc:
        raise LoadError(f"{shown}: cannot be read: {exc}") from None
    expected = EXPECTED[kind]
    defined: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    assigned: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            defined[node.name] = node
        else:  # bound some other way (assigned, imported, defined under an if): known at run time
            assigned.update(_bound_names(node))
    found = [name for name in expected if name in defined or name in assigned]
    for name, usage in expected.items():
        if name in defined and name not in assigned:
            if isinstance(defined[name], ast.AsyncFunctionDef):
                raise _not_async(name, shown)
            _check_arity(name, _signature_of(defined[name]), usage, shown)
        elif name not in found:
            others = [n for n in defined if not n.startswith("_") and n not in expected]
            close = difflib.get_close_matches(name, others, n=1, cutoff=0.8)
            if close:
                raise LoadError(f"{shown}: defines {close[0]}(); did you mean {usage}?")
    # A handler defining neither hook is served, as Cortex v0.10 served it (load_user_code).
    if kind == "predictor" and "predict" not in found:
        raise _must_define_predict(shown, assigned | set(defined))


def load_user_code(path: Path, kind: str, module_name: str, shown: str) -> UserCode:
    """Import ``path`` and check it as a request handler (``kind="handler"``, or
    ``"handler-v0.9"`` for Cortex v0.9's two arguments) or a predictor (``"predictor"``)."""
    module = _import(path, module_name, shown)
    if kind != "predictor":
        # Both hooks are optional in Cortex v0.10, so a file defining neither is accepted (the
        # sample goes straight to the model and the raw prediction comes back); a near-miss
        # name such as ``preinference`` is still refused above.
        functions = _check(module, EXPECTED[kind], shown)
    else:
        functions = _check(module, PREDICTOR_FUNCTIONS, shown)
        if "predict" not in functions:
            raise _must_define_predict(shown, set(vars(module)))
    return UserCode(file=shown, functions=functions)
