"""User files are imported and their functions checked before an API serves."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import dill
import pytest

from inferd.errors import LoadError
from inferd.handler.loader import FreshSourceLoader, check_source, load_user_code


def load(tmp_path: Path, source: str, kind: str = "handler") -> object:
    path = tmp_path / "handler.py"
    path.write_text(source)
    return load_user_code(path, kind, f"test_handler_{abs(hash(source))}", "handler.py")


def test_both_functions_are_found(tmp_path: Path) -> None:
    code = load(
        tmp_path,
        "def pre_inference(sample, signature, metadata): pass\n"
        "def post_inference(prediction, signature, metadata): pass\n",
    )
    assert sorted(code.functions) == ["post_inference", "pre_inference"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "def pre_inference(sample, metadata): pass\n",
            r"handler.py: pre_inference\(sample, metadata\) must take 3 arguments: "
            r"pre_inference\(sample, signature, metadata\)",
        ),
        (
            "def post_inference(prediction): pass\n",
            r"must take 3 arguments: post_inference\(prediction, signature",
        ),
        (
            "def preinference(sample, signature, metadata): pass\n",
            r"defines preinference\(\); did you mean pre_inference\(sample, signature, metadata\)\?",
        ),
        ("import not_a_module_anywhere\n", "importing it failed: ModuleNotFoundError"),
        ("pre_inference = 3\n", "pre_inference must be a function"),
        ("def broken(:\n", "importing it failed: SyntaxError"),
        ("import sys\nsys.exit()\n", "importing it failed: SystemExit\n"),  # not "SystemExit: "
        ("import sys\nsys.exit('no GPU here')\n", "importing it failed: SystemExit: no GPU here\n"),
    ],
)
def test_bad_handlers_are_refused_at_load(tmp_path: Path, source: str, message: str) -> None:
    with pytest.raises(LoadError, match=message):
        load(tmp_path, source)


def test_a_handler_defining_neither_hook_is_accepted_as_in_cortex(tmp_path: Path) -> None:
    code = load(tmp_path, "import math\nlabels = ['a', 'b']\ndef helper(): pass\n")
    assert code.functions == {}  # type: ignore[attr-defined]


def test_predictor_needs_predict(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"must define predict\(sample, metadata\)"):
        load(tmp_path, "def init(model_path, metadata): pass\n", kind="predictor")
    with pytest.raises(LoadError, match=r"init\(model_path\) must take 2 arguments"):
        load(tmp_path, "def init(model_path): pass\ndef predict(sample, metadata): pass\n", kind="predictor")


def test_a_predict_method_of_a_class_is_no_predictor_at_load_nor_for_validate(tmp_path: Path) -> None:
    # Cortex v0.12's class form: `inferd validate` said "cortex.yaml is valid" (the method's name,
    # bound inside the class, counted as the module's), then the deploy failed to load.
    source = (
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n"
        "    def predict(self, payload):\n        return 1\n"
    )
    said = r"must define predict\(sample, metadata\) \(a class PythonPredictor is Cortex v0\.12's form"
    with pytest.raises(LoadError, match=said):
        load(tmp_path, source, kind="predictor")
    with pytest.raises(LoadError, match=said):
        check_source(tmp_path / "handler.py", "predictor", "handler.py")
    names_in_bodies = "def helper():\n    predict = 1\nlabels = [init for init in 'ab']\n"
    with pytest.raises(LoadError, match=r"must define predict\(sample, metadata\)$"):
        (tmp_path / "other.py").write_text(names_in_bodies)
        check_source(tmp_path / "other.py", "predictor", "other.py")
    (tmp_path / "bound.py").write_text(
        "if True:\n    predict = print\n"
    )  # bound at run time: the replica checks
    check_source(tmp_path / "bound.py", "predictor", "bound.py")


@pytest.mark.parametrize(
    ("source", "kind", "name"),
    [
        ("async def predict(sample, metadata):\n    return 1\n", "predictor", "predict"),
        ("async def predict(sample, metadata):\n    yield 1\n", "predictor", "predict"),
        (
            "async def post_inference(prediction, signature, metadata):\n    yield 1\n",
            "handler",
            "post_inference",
        ),
    ],
)
def test_async_functions_are_refused_at_load_and_by_validate(
    tmp_path: Path, source: str, kind: str, name: str
) -> None:
    # They were served, and every request was a 500 "predict returned a value that is not
    # JSON-serialisable: Type is not JSON serializable: coroutine" (or async_generator).
    message = (
        rf"handler.py: {name} is an async def: inferd calls it as a plain function, .* define it with def"
    )
    with pytest.raises(LoadError, match=message):
        load(tmp_path, source, kind=kind)
    with pytest.raises(LoadError, match=message):
        check_source(tmp_path / "handler.py", kind, "handler.py")


def test_defaults_and_varargs_that_accept_the_call_are_fine(tmp_path: Path) -> None:
    code = load(tmp_path, "def pre_inference(*args): pass\ndef post_inference(p, s, m=None, x=1): pass\n")
    assert len(code.functions) == 2  # type: ignore[attr-defined]


def test_dill_pickle_of_functions(tmp_path: Path) -> None:
    def post_inference(prediction: object, signature: object, metadata: object) -> str:
        return "from pickle"

    path = tmp_path / "request_handler.pickle"
    path.write_bytes(dill.dumps({"post_inference": post_inference}, recurse=True))
    code = load_user_code(path, "handler", "test_pickle_handler", "request_handler.pickle")
    assert code.functions["post_inference"](None, None, None) == "from pickle"


def test_a_binary_handler_is_said_to_be_no_python_source(tmp_path: Path) -> None:
    # was "handler.py:None: invalid syntax: source code string cannot contain null bytes"
    (tmp_path / "handler.py").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    with pytest.raises(LoadError) as caught:
        check_source(tmp_path / "handler.py", "handler", "handler.py")
    assert caught.value.message == (
        "handler.py is not Python source: it holds NUL bytes (a binary file saved under a .py name?)"
    )


def test_an_edit_of_the_same_size_within_the_second_is_the_code_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: the file was imported through Python's bytecode cache, which trusts a .pyc whose
    # source has the same size and the same mtime in whole seconds. An edit saved within the
    # second of the previous one (a notebook cell writing the handler, then load_api) kept the
    # old code, in `load_api`, `inferd test` and `inferd serve` alike, until the next edit.
    monkeypatch.setattr("sys.dont_write_bytecode", False)  # as for a user without PYTHONDONTWRITEBYTECODE
    path = tmp_path / "handlers" / "classify.py"
    path.parent.mkdir()
    source = "def post_inference(prediction, signature, metadata):\n    return 'old'\n"
    path.write_text(source)
    first = load_user_code(path, "handler", "test_same_size_1", "handlers/classify.py")
    assert first.functions["post_inference"](None, None, None) == "old"
    stat = path.stat()
    path.write_text(source.replace("old", "new"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # saved within the same second
    again = load_user_code(path, "handler", "test_same_size_2", "handlers/classify.py")
    assert again.functions["post_inference"](None, None, None) == "new"


def test_an_unchanged_file_is_loaded_from_its_bytecode_cache_not_compiled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compiling at every load (the fix above, first made) cost a 15,000-line handler 0.4-0.5 s
    # at each replica start: a cache checked against the source's bytes costs a hash.
    monkeypatch.setattr("sys.dont_write_bytecode", False)
    compiled: list[str] = []
    compile_source = FreshSourceLoader.source_to_code

    def counted(self: FreshSourceLoader, data: Any, path: Any) -> Any:
        compiled.append(str(path))
        return compile_source(self, data, path)

    monkeypatch.setattr(FreshSourceLoader, "source_to_code", counted)
    path = tmp_path / "handler.py"
    path.write_text("def post_inference(prediction, signature, metadata):\n    return 'one'\n")
    for name in ("test_cached_1", "test_cached_2"):
        code = load_user_code(path, "handler", name, "handler.py")
        assert code.functions["post_inference"](None, None, None) == "one"
    assert compiled == [str(path)]
    path.write_text("def post_inference(prediction, signature, metadata):\n    return 'two'\n")
    code = load_user_code(path, "handler", "test_cached_3", "handler.py")
    assert code.functions["post_inference"](None, None, None) == "two"
    assert compiled == [str(path)] * 2


def test_a_copied_folders_cached_bytecode_names_the_copy_in_tracebacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``cp -r project project-v2`` copies its __pycache__: the cached code named the first
    # folder's file, so a traceback in the copy showed the lines of the original (edited since).
    monkeypatch.setattr("sys.dont_write_bytecode", False)
    source = "def post_inference(prediction, signature, metadata):\n    raise ValueError('here')\n"
    first = tmp_path / "project" / "handler.py"
    first.parent.mkdir()
    first.write_text(source)
    load_user_code(first, "handler", "test_copied_1", "handler.py")
    copy = tmp_path / "project-v2"
    shutil.copytree(first.parent, copy)
    assert any((copy / "__pycache__").iterdir())
    first.write_text("# edited\n" + source)
    code = load_user_code(copy / "handler.py", "handler", "test_copied_2", "handler.py")
    function = code.functions["post_inference"]
    assert function.__code__.co_filename == str(copy / "handler.py")
    with pytest.raises(ValueError) as raised:
        function(None, None, None)
    assert raised.traceback[-1].path == copy / "handler.py"


@pytest.mark.parametrize(
    ("module", "says"),
    [
        ("tensor2tensor", "Cortex v0.10's predictor image pre-installed tensor2tensor==1.14.1"),
        ("flask_api.status", "Cortex v0.10's predictor image pre-installed flask-api==1.1"),
    ],
)
def test_a_package_cortex_pre_installed_and_missing_here_is_named(
    tmp_path: Path, module: str, says: str
) -> None:
    # docs/deployments/predictor.md:128: "The following packages have been pre-installed and
    # can be used in your implementations"; inferd has some of them only through requirements.txt
    if importlib.util.find_spec(module.split(".")[0]) is not None:
        pytest.skip(f"{module} is installed here")
    with pytest.raises(LoadError) as failed:
        load(tmp_path, f"import {module}\n\ndef predict(sample, metadata):\n    return 1\n", "predictor")
    first = str(failed.value).splitlines()[0]
    assert f"No module named '{module.split('.')[0]}'" in first
    assert says in first and "add it to requirements.txt" in first, first
