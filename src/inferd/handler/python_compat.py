"""What Python 3.6 had that Python 3.11 removed, for projects read from ``cortex.yaml``.

Cortex v0.10's images ran Python 3.6, and 2019 handlers used what it still had: the abstract
base classes on ``collections`` (``isinstance(sample, collections.Mapping)``; removed in 3.10),
``time.clock()`` (3.8), ``base64.decodestring`` / ``encodestring`` (3.9; base64-encoded images),
and ``inspect.getargspec`` (3.11). They come back with their old meanings (``time.clock`` was
the process's CPU time on Linux); nothing present is replaced.
"""

from __future__ import annotations

import base64
import collections
import collections.abc
import inspect
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, NamedTuple

ABCS = (
    "Awaitable", "Coroutine", "AsyncIterable", "AsyncIterator", "AsyncGenerator", "Hashable",
    "Iterable", "Iterator", "Generator", "Reversible", "Sized", "Container", "Callable",
    "Collection", "Set", "MutableSet", "Mapping", "MutableMapping", "MappingView", "KeysView",
    "ItemsView", "ValuesView", "Sequence", "MutableSequence", "ByteString",
)  # fmt: skip


class ArgSpec(NamedTuple):
    args: list[str]
    varargs: str | None
    keywords: str | None
    defaults: tuple[Any, ...] | None


def getargspec(func: Callable[..., Any]) -> ArgSpec:
    """Python 3.10's ``inspect.getargspec``, which refused keyword-only arguments and annotations."""
    spec = inspect.getfullargspec(func)
    if spec.kwonlyargs or spec.annotations:
        raise ValueError(
            "Function has keyword-only parameters or annotations, use inspect.signature() API "
            "which can support them"
        )
    return ArgSpec(spec.args, spec.varargs, spec.varkw, spec.defaults)


def _removed() -> Iterator[tuple[ModuleType, str, Any]]:
    for name in ABCS:
        value = getattr(collections.abc, name, None)
        if value is not None:
            yield collections, name, value
    yield time, "clock", time.process_time
    yield base64, "decodestring", base64.decodebytes
    yield base64, "encodestring", base64.encodebytes
    yield inspect, "getargspec", getargspec


def install() -> list[str]:
    """Add the removed names this Python lacks; the names added (``module.name``)."""
    added = []
    for module, name, value in _removed():
        if name not in vars(module):
            setattr(module, name, value)
            added.append(f"{module.__name__}.{name}")
    return added
