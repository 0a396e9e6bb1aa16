"""How a config's validation errors are said: pydantic's errors as one line naming the file,
the line and the field (``cortex.yaml:14: api 'classifier': compute.min_replicas: must be >= 1``).
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from inferd.errors import ConfigError, shown

Location = tuple[str | int, ...]


def one_line(message: str) -> str:
    """``message`` with the control characters a config wrote escaped (``"a\\nb"``, a key or a
    path), so the error stays one line."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in message)


_MESSAGES: dict[str, str] = {
    "missing": "required field is missing",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a map",
    "model_type": "must be a map",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "int_parsing_size": "is too large a number",
}
# The names pydantic gives a union's members in an error's location (``compute.mem.str``).
_UNION_MEMBERS = {"str", "int", "float", "bool", "none"}
_MEMBER_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}


def _model_at(model: type[BaseModel], loc: Location) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``loc`` (list indexes and map keys skipped)."""
    found: Any = model
    for part in loc:
        if not isinstance(part, str) or not (isinstance(found, type) and issubclass(found, BaseModel)):
            continue
        field = found.model_fields.get(part)
        if field is None:
            return None
        pending, found = [field.annotation], None
        while pending:  # the first model inside Optional[...], list[...], dict[str, ...]
            candidate = pending.pop(0)
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found = candidate
                break
            pending.extend(typing.get_args(candidate))
        if found is None:
            return None
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


def _unknown_key(model: type[BaseModel] | None, loc: Location) -> str:
    """ "unknown key", with the nearest field's name when the key looks like a typo of one, or the
    block it belongs under when it is a key of one (`metadata:` beside `onnx:`)."""
    holder = _model_at(model, loc[:-1]) if model is not None else None
    if holder is None or not loc or not isinstance(loc[-1], str):
        return "unknown key"
    close = difflib.get_close_matches(loc[-1], list(holder.model_fields), n=1, cutoff=0.7)
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    # `metadata:` beside `onnx:`, not in it: say which blocks have the key
    blocks = [f"{name}:" for name in holder.model_fields if loc[-1] in _fields_of(_model_at(holder, (name,)))]
    if len(blocks) == 1:
        return f"unknown key here (it belongs under {blocks[0]})"
    if blocks:
        return f"unknown key here (it belongs under the api's {', '.join(blocks[:-1])} or {blocks[-1]} block)"
    return "unknown key"


def _fields_of(model: type[BaseModel] | None) -> set[str]:
    return set(model.model_fields) if model is not None else set()


def _union_error(error: Any, errors: list[Any]) -> Any:
    """A value no member of a union took: the error at the field itself, not at ``field.str``.

    The most telling member's error is kept (``must be a whole number`` for 1.5 where an integer
    or a string may be), else one that lists what the field takes.
    """
    loc = tuple(error["loc"])
    if not loc or loc[-1] not in _UNION_MEMBERS:
        return error
    members = [
        other
        for other in errors
        if tuple(other["loc"])[:-1] == loc[:-1] and other["loc"][-1] in _UNION_MEMBERS
    ]
    if len(members) < 2:
        return error
    telling = [other for other in members if not other["type"].endswith("_type")]
    if telling:
        return {**telling[0], "loc": loc[:-1]}
    words = [_MEMBER_WORDS.get(str(other["loc"][-1]), str(other["loc"][-1])) for other in members]
    message = f"must be {', '.join(words[:-1])} or {words[-1]}"
    return {"type": "union", "loc": loc[:-1], "msg": message, "ctx": {}}


def _read_as(value: object) -> str:
    """What YAML 1.1 made of an unquoted ``yes``, ``~``, ``1e3``: ``true (...)``, ``the number 1000.0``."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (yes, no, on and off are true or false in YAML)"
    if value is None:
        return "null"
    return f"the number {value!r}" if isinstance(value, int | float) else shown(value)


def _unquoted(value: bool | int | float) -> str:
    """Why a string field got a YAML 1.1 boolean or number (``name: no``, ``on``, ``1e3``, ``0777``),
    which the user wrote as text: "must be a string" alone left them looking at a string."""
    return f"must be a string: YAML read the unquoted value as {_read_as(value)}; put it in quotes"


def config_error(
    exc: ValidationError,
    name: str,
    label: str,
    base: Location,
    lines: dict[Location, int],
    model: type[BaseModel] | None = None,
) -> ConfigError:
    """The ``ConfigError`` for the first of ``exc``'s errors: ``file:line: label: field: why``
    (``base``: where the validated resource is in the file; ``lines``: each value's line)."""
    errors = exc.errors(include_url=False)
    error = errors[0]
    if error["type"] == "missing":  # `nme: x` reads better as a misspelt name than a missing one
        wanted = str(error["loc"][-1]) if error["loc"] else ""
        for other in errors:
            typed = other["loc"][-1] if other["loc"] else None
            if (
                other["type"] == "extra_forbidden"
                and other["loc"][:-1] == error["loc"][:-1]
                and isinstance(typed, str)
                and difflib.get_close_matches(typed, [wanted], n=1, cutoff=0.7)
            ):
                error = other
                break
    error = _union_error(error, errors)
    loc: Location = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        message = _unknown_key(model, loc)
    elif kind == "invalid_key":  # `yes: 1`, `5: 1`: no field is named by other than text
        key = error.get("input")
        loc = (*loc[:-1], str(key))  # pydantic's is 1 for True: as `_build` named its line
        message = f"unknown key (YAML read the unquoted key as {_read_as(key)})"
    elif kind == "string_type" and isinstance(error.get("input"), bool | int | float):
        message = _unquoted(error["input"])
    elif kind in _MESSAGES:
        message = _MESSAGES[kind]
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }[kind]
        bound = next(iter(ctx.values()), "?")
        message = f"must be {op} {bound}"
    elif kind == "too_short":
        least = ctx.get("min_length", 1)
        message = f"must list at least {least} {'entry' if least == 1 else 'entries'}"
    elif kind == "literal_error":
        message = f"must be one of {ctx.get('expected', '')}"
    elif kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
    else:
        message = error["msg"]
    field = ".".join(str(part) for part in loc)
    full = (*base, *(str(p) if isinstance(p, str) else p for p in loc))
    line = 1
    for cut in range(len(full), -1, -1):
        if full[:cut] in lines:
            line = lines[full[:cut]]
            break
    prefix = f"{name}:{line}: {label}: "
    return ConfigError(one_line(prefix + (f"{field}: {message}" if field else message)))
