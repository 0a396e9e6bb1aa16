"""A project's APIs in this process: ``inferd test``, and the user's own pytest tests.

    from inferd.testing import load_api

    def test_setosa():
        api = load_api("path/to/project")           # or load_api(folder, "classifier")
        assert api.predict({"sepal_length": 5.2, "sepal_width": 3.6,
                            "petal_length": 1.4, "petal_width": 0.3}) == "iris-setosa"

An API is built as a replica builds it: the same ``Predictor`` (handler checks, the real model,
the real signature objects handed to ``pre_inference`` / ``post_inference``), so a test
exercises exactly the code that serves. No server, no replica process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from inferd import codec
from inferd.config.load import load_project
from inferd.config.schema import ApiConfig, Project, is_remote
from inferd.engine.packages import ensure_packages
from inferd.errors import HandlerError, InferdError, LoadError, UsageError
from inferd.handler.predictor import Predictor, devices_of
from inferd.handler.user_errors import raised
from inferd.project_imports import INFERD_PACKAGE, project_imports
from inferd.replica.streaming import is_stream, unanswerable
from inferd.storage import fetch, inferd_home, local_model_path
from inferd.storage.private import make_private_folders, refuse_a_home_others_control

DEFAULT_TOLERANCE = 1e-6


# A failing handler's traceback travels with the exception raised here (its ``__cause__``); the
# replica's log line of it goes to the handlers the user configured, if any, never to Python's
# last-resort printer (a second traceback on stderr under a notebook's cell).
logging.getLogger("inferd.handler").addHandler(logging.NullHandler())

# One prediction or load at a time in this process, as in a replica: the handler's globals are
# safe, and the working directory each one sets (the project's, process-wide) is put back as
# the caller had it, however many threads call ``predict``. Reentrant: a handler may load or
# call another API.
_ONE_AT_A_TIME = threading.RLock()


class LoadedApi:
    """One API of a project, loaded in this process; ``predict`` answers as the endpoint would."""

    def __init__(self, config: ApiConfig, predictor: Predictor, root: Path) -> None:
        self.config = config
        self.name = config.name
        self.predictor = predictor
        self.root = root  # the working directory of its code, as of a replica's

    def predict(self, sample: Any) -> Any:
        """Run ``sample`` (a parsed JSON body) through the pipeline; the JSON a client receives.

        Raises what the endpoint would answer as an error: ``InputError`` (400) when the sample
        does not fit the model, ``HandlerError`` (500) when user code raised (its ``__cause__``
        is the user's exception, with its traceback).
        """
        with _ONE_AT_A_TIME, _in_folder(self.root), _interrupts():
            result = self.predictor.predict(sample)
            stage = "predict" if self.predictor.runtime is None else "post_inference"
            if is_stream(result):  # a streamed answer: its items, in order
                if self.config.api.batching is not None:  # the endpoint refuses it (replica/worker.py)
                    if callable(close := getattr(result, "close", None)):
                        close()
                    reason = "an iterator streams only without batching (remove the api's batching)"
                    raise HandlerError(f"{stage} returned a value that is not JSON-serialisable: {reason}")
                try:
                    result = list(result)
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # sys.exit() in the generator ends no test run
                    message = f"{stage} failed while streaming: {raised(exc)}"
                    raise HandlerError(message) from exc
        try:
            # json, not orjson: an integer past 64 bits keeps its digits, as the endpoint sends it
            return json.loads(codec.dumps_answer(result))
        except TypeError as exc:
            reason = unanswerable(result) or str(exc)
            raise HandlerError(f"{stage} returned a value that is not JSON-serialisable: {reason}") from exc


def load_api(project: Path | str, api: str | None = None) -> LoadedApi:
    """Load one API of the project folder ``project`` (``api`` may be left out when it has one).

    ``project`` may start with ``~``. Raises ``ConfigError`` for a project that does not load
    (no such folder, a config error), ``UsageError`` when ``api`` is not one of its APIs, and
    ``LoadError`` when its model or code does not load; each is an ``inferd.errors.InferdError``.
    """
    loaded = load_project(Path(project).expanduser())
    return build_api(loaded, select_apis(loaded, api)[0])


def select_apis(project: Project, api: str | None, one: bool = True) -> list[ApiConfig]:
    """The APIs named by ``api`` (all of them when ``None``); ``UsageError`` when none match."""
    names = ", ".join(config.name for config in project.apis)
    if api is None:
        if one and len(project.apis) > 1:
            raise UsageError(f"the project has several APIs ({names}): name the one to load")
        return list(project.apis)
    chosen = [config for config in project.apis if api in (config.name, config.api.name)]
    if not chosen:
        raise UsageError(f"the project has no API '{api}' (it has: {names})")
    return chosen


def build_api(project: Project, config: ApiConfig, warn: Callable[[str], None] | None = None) -> LoadedApi:
    """Load ``config`` (an API of ``project``) in this process, as a replica would.

    ``warn`` receives each warning of its ``requirements.txt`` (a pin inferd's own package
    shadows, a relaxed pin); by default they are logged by the ``inferd.testing`` logger.
    """
    with _ONE_AT_A_TIME:  # the modules, ``sys.path`` and working directory it sets are the process's
        return _build_api(project, config, warn or logging.getLogger("inferd.testing").warning)


def _own_home() -> Path:
    """``$INFERD_HOME``, about to be written (packages, downloaded models), as the operator has it:
    refused when another user controls it (they could put the packages imported there), made the
    owner's only."""
    home = inferd_home()
    refuse_a_home_others_control(home)
    make_private_folders(home)
    return home


def _build_api(project: Project, config: ApiConfig, warn: Callable[[str], None]) -> LoadedApi:
    requirements = project.root / "requirements.txt"
    # installed once, as for replicas, after inferd's own packages (for an API with Python code)
    if requirements.is_file() and config.api.installs_requirements:
        packages = str(ensure_packages(_own_home(), requirements, project.deployment.relax_pins, warn))
        if packages not in sys.path:
            sys.path.append(packages)
    uri = config.api.model_uri
    model_path: Path | None = None
    if uri is not None:
        if is_remote(uri):
            _own_home()  # the cache it downloads into
        model_path = fetch(uri)[0] if is_remote(uri) else local_model_path(uri, project.root)
    # In the developer's process, the model runs where it can: a GPU API is tested on a laptop too.
    devices = dataclasses.replace(devices_of(config.api), cpu_fallback=True)
    root = project.root.resolve()
    api = config.api
    folders = [root]
    if api.python_path is not None:
        folders.append((root / api.python_path).resolve())
    if api.handler_file is not None:
        folders.append((root / api.handler_file).resolve().parent)
    with project_imports(folders):
        try:
            with _in_folder(root), _interrupts():
                predictor = Predictor(api, project.root, model_path, devices)
        except InferdError:
            raise
        except Exception as exc:  # the runtime refused the model: said as a replica says it
            raise LoadError(f"loading failed: {type(exc).__name__}: {exc}") from None
    return LoadedApi(config, predictor, root)


@contextlib.contextmanager
def _in_folder(folder: Path) -> Iterator[None]:
    """``contextlib.chdir(folder)``, also from a working folder removed while the caller was in
    it (``inferd test /abs/project`` in a shell there): it failed to note where to come back to,
    and every load said "No such file or directory"; there is no coming back to that one."""
    try:
        previous: str | None = os.getcwd()
    except FileNotFoundError:
        previous = None
    os.chdir(folder)
    try:
        yield
    finally:
        if previous is not None:
            os.chdir(previous)


@contextlib.contextmanager
def _interrupts() -> Iterator[None]:
    """Ctrl-C in the user's code (an interrupted notebook cell) stops the caller.

    A replica makes a ``KeyboardInterrupt`` of user code the request's error and serves on;
    in the user's own process it is their interrupt, which no ``except HandlerError`` swallows.
    """
    try:
        yield
    except InferdError as error:
        if isinstance(error.__cause__, KeyboardInterrupt):
            raise error.__cause__ from None
        raise


def samples_in(folder: Path) -> list[Path]:
    """The ``sample*.json`` files of a project folder, in name order."""
    return sorted(path for path in folder.glob("sample*.json") if path.is_file())


def expected_for(sample: Path) -> Path | None:
    """``expected<rest>.json`` beside ``sample<rest>.json``, if there is one."""
    if not sample.name.startswith("sample"):
        return None
    candidate = sample.with_name("expected" + sample.name[len("sample") :])
    return candidate if candidate.is_file() else None


def unmatched_expected_in(folder: Path) -> list[Path]:
    """The ``expected*.json`` files of a project folder with no ``sample*.json`` of their name:
    answers that no sample is compared with (a typo, or a sample renamed or deleted)."""
    return sorted(
        path
        for path in folder.glob("expected*.json")
        if path.is_file() and not path.with_name("sample" + path.name[len("expected") :]).is_file()
    )


def differences(actual: Any, expected: Any, tolerance: float = DEFAULT_TOLERANCE, at: str = "") -> list[str]:
    """Where ``actual`` differs from ``expected`` (JSON values), as ``path: got X, expected Y``.

    Numbers match within ``tolerance`` (absolute, or relative to the expected value); every
    other value must be equal, lists in length and order, objects in their keys.
    """
    where = at or "the answer"
    if _is_number(actual) and _is_number(expected):
        if type(actual) is int and type(expected) is int:
            # exactly: math.isclose makes them floats, which cannot tell 2**60 from 2**60 + 1
            distance = abs(actual - expected)
            if distance <= tolerance or distance <= Fraction(tolerance) * abs(expected):
                return []
        elif _close(actual, expected, tolerance):
            return []
        return [f"{where}: got {_show(actual)}, expected {_show(expected)}"]
    if isinstance(actual, list) and isinstance(expected, list):
        if len(actual) != len(expected):
            return [f"{where}: got {len(actual)} items, expected {len(expected)}"]
        found: list[str] = []
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            found += differences(a, e, tolerance, f"{at}[{index}]")
        return found
    if isinstance(actual, dict) and isinstance(expected, dict):
        found = [f"{at}[{_show(k)}]: missing" for k in expected if k not in actual]
        found += [f"{at}[{_show(k)}]: not expected" for k in actual if k not in expected]
        for key in expected:
            if key in actual:
                found += differences(actual[key], expected[key], tolerance, f"{at}[{_show(key)}]")
        return found
    if type(actual) is not type(expected) or actual != expected:
        return [f"{where}: got {_show(actual)}, expected {_show(expected)}"]
    return []


def _close(actual: float, expected: float, tolerance: float) -> bool:
    """Within ``tolerance``, absolute or relative to ``expected`` (math.isclose takes it relative
    to the larger of the two: 1.5 was within 0.4 of an expected 1.0)."""
    if actual == expected:  # infinities too, whose distance is NaN
        return True
    try:
        return abs(actual - expected) <= max(tolerance, tolerance * abs(expected))
    except OverflowError:  # a whole number past a float's range, beside a float: not close to it
        return False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    text = codec.dumps_answer(value).decode()  # an integer beyond 64 bits: orjson's TypeError
    return text if len(text) <= 200 else text[:200] + "..."


def user_traceback(error: BaseException) -> str:
    """The traceback of the user's exception behind ``error``, without inferd's own frames."""
    cause = error.__cause__ or error
    summary = traceback.TracebackException.from_exception(cause)
    frames = [frame for frame in summary.stack if not _ours(frame.filename)]
    summary.stack = traceback.StackSummary.from_list(frames)
    return "".join(summary.format()).rstrip()


def _ours(filename: str) -> bool:
    if filename.startswith("<frozen "):  # importlib's machinery
        return True
    path = Path(filename)
    return path.is_absolute() and INFERD_PACKAGE in path.resolve().parents
