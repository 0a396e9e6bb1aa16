"""The error tree: each class fixes the HTTP status it maps to and the CLI exit code.

HTTP error responses are built from these in one place (``gateway``), CLI messages and exit
codes in one place (``cli``). Errors cross process boundaries as ``(type name, message)``
pairs, never as pickled exceptions: :func:`error_type` maps the name back to the class.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class InferdError(Exception):
    """Base of every error inferd raises on purpose."""

    status_code: int = 500
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(InferdError):
    """The project's configuration is invalid; the message names file, line and field."""

    status_code = 400
    exit_code = 2


class UsageError(InferdError):
    """The command line was used wrongly."""

    status_code = 400
    exit_code = 2


def in_several_deployments(kind: str, name: str, keys: list[str], was: bool = False) -> UsageError:
    """A bare name that several deployments' APIs or splitters (``kind``) have: name one."""
    return UsageError(
        f"{kind} '{name}' {'was' if was else 'is'} in several deployments ({', '.join(keys)}); "
        f"name one as DEPLOYMENT/{kind.upper()}"
    )


SHOWN_NAMES = 10  # an unknown name's error names this many deployed APIs at most, the nearest


def body_too_large(limit: int) -> str:
    """The 413's error: it names the setting, as an image's 20 MB of JSON meets it first."""
    return f"the request body is larger than {limit} bytes, the API's max_body_size"


def deployed_hint(name: str, keys: Iterable[str]) -> str:
    """What an error for an API ``name`` that is not deployed says is: every ``deployment/api``
    while there are few, else the nearest (most characters in common at the start, as the
    gateway's 404) and where the rest are listed (110 APIs were a line of 1.8 KB)."""
    known = sorted(keys)
    if len(known) <= SHOWN_NAMES:
        return f"deployed: {', '.join(known) or 'none'}"

    def shared(one: str, other: str) -> int:
        return next(
            (i for i, (a, b) in enumerate(zip(one, other, strict=False)) if a != b), min(len(one), len(other))
        )

    api = name.rpartition("/")[2]

    def near(key: str) -> int:  # by the API's name, or by the whole key (a deployment's name, say)
        return max(shared(api, key.partition("/")[2]), shared(name, key))

    nearest = heapq.nsmallest(SHOWN_NAMES, known, key=lambda key: (-near(key), key))
    return f"{len(known)} apis deployed, the nearest: {', '.join(nearest)}; inferd get lists them all"


def apis_named(names: list[str]) -> str:
    """``api 'a'``, or ``apis 'a', 'b' and 'c'``: as a sentence names them."""
    quoted = [f"'{name}'" for name in names]
    if len(quoted) == 1:
        return f"api {quoted[0]}"
    return f"apis {', '.join(quoted[:-1])} and {quoted[-1]}"


def shown(value: object) -> str:
    """A user's value as an error quotes it: its repr, cut after 60 characters (a 3,000-character
    value made a 3,000-character sentence)."""
    if isinstance(value, str):
        return repr(f"{value[:60]}..." if len(value) > 60 else value)
    text = repr(value)
    return f"{text[:60]}..." if len(text) > 60 else text


class InputError(InferdError):
    """The client's input does not fit: malformed JSON, wrong dtype or shape, missing input."""

    status_code = 400


class UnauthorizedError(InferdError):
    """No credentials (API key, or the operator's token)."""

    status_code = 401


class ForbiddenError(InferdError):
    """Wrong credentials."""

    status_code = 403


class ConflictError(InferdError):
    """The operation conflicts with one in progress (a deploy of the same deployment)."""

    status_code = 409


class DeployFailedError(InferdError):
    """A deployed version did not become live (or a deleted API did not drain) in time."""


class ReplaceError(ConflictError):
    """A deploy would remove APIs that another project folder deployed under the same name."""


class OperatorError(InferdError):
    """The operator is not running, cannot start, or cannot be reached."""


class NotFoundError(InferdError):
    """No API (or route, or model) by that name."""

    status_code = 404


class MethodNotAllowedError(InferdError):
    status_code = 405


class HandlerError(InferdError):
    """User code (pre_inference, post_inference, predict, init) raised; names the function."""

    status_code = 500


class ModelError(InferdError):
    """The model itself failed on inputs that fitted its signature."""

    status_code = 500


class LoadError(InferdError):
    """A replica could not load its model or handler; the API cannot serve."""

    status_code = 503


class UnreachableError(LoadError):
    """A model's origin could not be reached (refused, timed out, or a 5xx), after retries."""


class ModelGoneError(LoadError):
    """A model's origin answered that it has no such object, prefix or bucket (deleted)."""


def _all_subclasses(cls: type[InferdError]) -> list[type[InferdError]]:
    found: list[type[InferdError]] = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


def error_type(name: str) -> type[InferdError]:
    """The error class called ``name`` (the base class when unknown)."""
    for cls in _all_subclasses(InferdError):
        if cls.__name__ == name:
            return cls
    return InferdError
