"""How a failure of the user's code is worded: what it raised, and what ``pre_inference``
returned that is no model input whatever the sample (the handler's 500, not the client's 400)."""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Iterator
from typing import Any

from inferd.errors import HandlerError

USER_MODULE_PREFIX = "inferd_user_"  # a handler's module: inferd_user_<api>, in its folder's package


def raised(exc: BaseException) -> str:
    """``ValueError: bad row``, or the bare type when the exception says nothing (``sys.exit()``)."""
    try:
        said = str(exc)
    except Exception:  # an exception whose __str__ fails: still the user's failure, named
        said = "(its message cannot be shown: its __str__ failed)"
    name = type_name(type(exc))
    return f"{name}: {said}" if said else name


def type_name(kind: type[BaseException]) -> str:
    """The exception's class name, with its module when the bare name would mislead: one that
    reads as a builtin's (requests' ``ConnectionError``) or as nothing (``binascii.Error``), as
    Python's own traceback names them (a class of the handler's own file keeps its bare name:
    the message names the file)."""
    name, module = kind.__name__, kind.__module__
    if module.rpartition(".")[2].startswith(USER_MODULE_PREFIX):  # the failure names the file already
        return name
    if module != "builtins" and (name == "Error" or hasattr(builtins, name)):
        return f"{module}.{name}"
    return name


def check_prepared(prepared: Any, file: str) -> None:
    """Refuse what ``pre_inference`` in ``file`` returned when it is the handler's fault."""
    if isinstance(prepared, Iterator):
        raise HandlerError(
            f"pre_inference in {file} returned an iterator: it makes the model's input, so it returns "
            "it whole (only predict or post_inference may yield)"
        )
    if prepared is None:  # a missing return
        raise HandlerError(
            f"pre_inference in {file} returned None: it returns the model's input (is a return "
            "statement missing?)"
        )
    if inspect.iscoroutine(prepared) or inspect.isasyncgen(prepared):
        what = "a coroutine" if inspect.iscoroutine(prepared) else "an async generator"
        if inspect.iscoroutine(prepared):
            prepared.close()  # never awaited: no RuntimeWarning
        raise HandlerError(
            f"pre_inference in {file} returned {what}: inferd calls handlers as plain functions, so it "
            "returns the model's input itself"
        )
