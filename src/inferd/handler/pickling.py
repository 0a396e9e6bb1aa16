"""The user's handler functions as a handler file: what the Python client (``inferd.sdk``) writes
when it deploys ``pre_inference`` and ``post_inference`` given as functions.

They are pickled with cloudpickle (lambdas and closures too), the user's own modules by value (a
replica could not import them); ``loader.py`` loads the file in the replica as it loads any
handler file.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Callable
from types import ModuleType
from typing import Any

from inferd.errors import UsageError


def pickle_functions(functions: dict[str, Callable[..., Any]]) -> bytes:
    """cloudpickle ``functions``; the user's own modules travel by value.

    cloudpickle sends a function of an importable module by reference, which the replica could
    not import (a script's or a notebook's neighbour module is not on its path). So every module
    of the user's loaded here goes by value, with whatever of it the functions reach: their own
    module, and the neighbours they use (a notebook's ``import utils``, which the replica could
    not import either). Installed packages and the standard library stay by reference, and so
    does a neighbour holding what cannot be pickled (a lock, a connection), as before: the
    replicas may import it (their ``PYTHONPATH``).
    """
    modules = _users_modules()
    try:
        return _dumps(functions, modules)
    except UsageError:
        own = {getattr(function, "__module__", None) for function in functions.values()}
        if all(module.__name__ in own for module in modules):
            raise
        return _dumps(functions, [module for module in modules if module.__name__ in own])


def _dumps(functions: dict[str, Callable[..., Any]], modules: list[ModuleType]) -> bytes:
    import cloudpickle

    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        data: bytes = cloudpickle.dumps(functions)
    except Exception as exc:  # cloudpickle's own TypeError, PicklingError, ...: say which function
        name = next((name for name, function in functions.items() if not _picklable(function)), "")
        raise UsageError(
            f"{name or ' and '.join(functions)} cannot be sent to the replicas: {type(exc).__name__}: "
            f"{exc} (a function travels pickled, with the globals and closure variables it uses: "
            "create such an object inside the function, or import it from a module where the "
            "replicas run)"
        ) from None
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)
    return data


def _picklable(function: Callable[..., Any]) -> bool:
    import cloudpickle

    try:
        cloudpickle.dumps(function)
    except Exception:
        return False
    return True


def _users_modules() -> list[ModuleType]:
    """The modules loaded here that are the user's own: neither of this Python's installed
    folders nor of an installed distribution (one installed editable, or on ``PYTHONPATH``
    with its metadata), nor inferd itself."""
    from importlib.metadata import packages_distributions

    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    installed = tuple(
        {os.path.join(os.path.realpath(root), "") for root in roots}
        | {os.path.join(root, "") for root in roots}
    )
    candidates = [
        module
        for name, module in list(sys.modules.items())
        if name != "__main__"  # cloudpickle sends __main__'s functions by value anyway
        and isinstance(module, ModuleType)
        and isinstance(file := getattr(module, "__file__", None), str)
        and not file.startswith(installed)
        and not os.path.realpath(file).startswith(installed)
    ]
    if not candidates:
        return []
    distributed = set(packages_distributions()) | {"inferd", "cortex"}
    return [module for module in candidates if module.__name__.partition(".")[0] not in distributed]
