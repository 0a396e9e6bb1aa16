"""JSON in and out of the data path: orjson, numpy-aware, with one readable error for bad input."""

from __future__ import annotations

import base64
import datetime
import json
import math
import numbers
import re
from pathlib import PurePath
from types import ModuleType
from typing import Any

import numpy as np
import orjson

from inferd.errors import InputError
from inferd.widejson import wide_integers_as_written

OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
ANSWER_OPTIONS = orjson.OPT_NON_STR_KEYS  # NumPy values through _fallback: tolist() / item()


def _weights(accept: str) -> dict[str, float]:
    """An ``Accept`` header's media ranges (lower-cased) and their ``q`` weights."""
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = part.split(";")
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 1.0
        weights.setdefault(media.strip().lower(), weight)
    return weights


def wants_events(accept: str) -> bool:
    """Whether a streamed answer is Server-Sent Events for a client that sent this ``Accept``.

    Only a client that names ``text/event-stream`` (with a weight above 0) gets events, and not
    when it weighs NDJSON (or a range that covers it, the most specific one counting) higher.
    """
    weights = _weights(accept)
    events = weights.get("text/event-stream", 0.0)
    if events <= 0:
        return False
    ndjson = next(
        (weights[media] for media in ("application/x-ndjson", "application/*", "*/*") if media in weights),
        0.0,
    )
    return events >= ndjson


def _fallback(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # non-contiguous, object or exotic dtypes
        return value.tolist()
    if isinstance(value, np.generic):
        item = value.item()
        if isinstance(item, np.generic):  # longdouble's item() is itself: json_tricks wrote a float
            return [float(item.real), float(item.imag)] if np.iscomplexobj(item) else float(item)
        return item
    if isinstance(value, memoryview) and value.format not in ("B", "b", "c"):
        try:
            return np.asarray(value).tolist()  # a view of numbers (an array's): them, not their bytes
        except (ValueError, TypeError):  # a format NumPy has no type for (ctypes' pointers, '<P')
            pass  # its bytes, as any other view's
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, set | frozenset):  # json_tricks' json_set_encode: sorted where it sorts
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if isinstance(value, tuple):  # a namedtuple (EigResult, torch.max's): a list, as Python's json
        return list(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return _as_cortex_wrote_it(value)


def _as_cortex_wrote_it(value: Any) -> Any:
    """What Cortex's encoder (json_tricks, primitives on) wrote for values JSON has no type for.

    Off the hot path: reached only for such a value. A complex number is [real, imag], other
    numbers (Decimal, Fraction) a float, a path its text, a pandas DataFrame its index and
    columns, and an instance of the user's own class its attributes (``__json_encode__()`` when
    it defines one, else ``__dict__`` / ``__slots__``).
    """
    if isinstance(value, complex):
        return [value.real, value.imag]
    if isinstance(value, numbers.Number):
        return float(value)  # type: ignore[arg-type]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime.date | datetime.time):  # a subclass: pandas' Timestamp, NaT
        return None if value != value else value.isoformat()
    if hasattr(value, "columns") and hasattr(value, "index") and hasattr(value, "items"):
        # a pandas DataFrame: its index, then each column by name, as json_tricks laid it out
        return {"index": value.index.tolist(), **{name: column.tolist() for name, column in value.items()}}
    if isinstance(value, type | ModuleType) or callable(value):
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
    encode = getattr(value, "__json_encode__", None)
    if encode is not None:
        return encode()
    attributes = dict(getattr(value, "__dict__", {}))
    for slot in _slots(type(value)):
        if hasattr(value, slot):
            attributes[slot] = getattr(value, slot)
    if attributes or hasattr(value, "__dict__"):
        return attributes
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dunder(name: str) -> bool:
    """A slot of Python's or a library's own (``__weakref__``, pydantic's ``__pydantic_extra__``),
    not one of the attributes a value holds."""
    return name.startswith("__") and name.endswith("__")


def _slots(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else [s for s in slots if not _dunder(s)]
    return names


def dumps(value: Any) -> bytes:
    """Encode a handler's result (numpy arrays and scalars included) as JSON bytes."""
    return _dumps(value, OPTIONS)


def _dumps(value: Any, options: int) -> bytes:
    try:
        return orjson.dumps(value, default=_fallback, option=options)
    except TypeError as exc:
        # orjson's default never sees dict keys: numpy scalars as keys (``dict(zip(
        # model.classes_, probabilities))``) are made Python values, then encoded once more;
        # nor integers beyond 64 bits, which JSON (and Cortex's encoder) writes as they are.
        try:
            try:
                plain = _plain_keys(value, options)
                if plain is value:
                    raise
                return orjson.dumps(plain, default=_fallback, option=options)
            except (TypeError, RecursionError) as again:
                raise TypeError(_why_not_json(value, again)) from exc
        except TypeError:
            raise
        except Exception as odd:
            # the value's own code (a dict key's __hash__, its __repr__) raised on this slow path:
            # the value's error too, never the caller's (it ended a streaming replica)
            raise TypeError(f"encoding it raised {type(odd).__name__}: {odd}") from odd


def _why_not_json(value: Any, exc: BaseException) -> str:
    """orjson's reason in words a handler's author reads (off the hot path: an error)."""
    said = str(exc)
    if isinstance(exc, RecursionError) or said.startswith("Recursion limit"):
        # a dict or list that holds itself (``d["self"] = d``), or nesting past orjson's 254 levels
        return f"lists and dicts nested more than {NESTING_LIMIT} levels deep (or one that contains itself)"
    if said.startswith("Dict key must"):
        key = _bad_key(value)
        shown = "" if key is None else f"{_repr(key)} of type {type(key).__name__}"
        return f"a dict key{shown}: JSON keys are strings (numbers, booleans and None are written as text)"
    cause = exc.__cause__
    if cause is not None and not (
        isinstance(cause, TypeError) and str(cause).endswith(" is not JSON serialisable")
    ):
        # the user's own code (``__json_encode__``, ``tolist()``, a property) raised while
        # ``_fallback`` encoded the value: orjson's message alone said it had no way to
        return f"{said} (encoding it raised {type(cause).__name__}: {cause})"
    return said


def _repr(key: Any) -> str:
    """A space and ``repr(key)``, or nothing when the user's ``__repr__`` raises (the message
    names the key's type either way)."""
    try:
        return f" {key!r}"
    except Exception:
        return ""


NESTING_LIMIT = 254  # orjson's: deeper values are refused


def _writes_as_key(key: Any) -> bool:
    try:
        orjson.dumps(
            {key.item() if isinstance(key, np.generic) else key: None}, option=orjson.OPT_NON_STR_KEYS
        )
    except TypeError:
        return False
    return True


def _bad_key(value: Any) -> Any:
    """The first dict key (breadth first, within orjson's depth) that JSON cannot hold as text."""
    level = [value]
    for _ in range(NESTING_LIMIT + 1):
        below: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                for key, child in item.items():
                    if not _writes_as_key(key):
                        return key
                    below.append(child)
            elif isinstance(item, list | tuple):
                below.extend(item)
        if not below:
            break
        level = below
    return None


def dumps_answer(value: Any) -> bytes:
    """Encode a prediction as Cortex answered it: NumPy arrays and scalars through ``tolist()`` /
    ``item()`` as json_tricks did, so float32 values are the float64 numbers they are
    (``0.5989422798156738``), not float32's shortest text (``0.5989423``), which a client reads
    back as another number. Python values cost nothing more; arrays cost a ``tolist()``."""
    return _dumps(value, ANSWER_OPTIONS)


def _plain_keys(value: Any, options: int) -> Any:
    """``value`` with numpy scalar dict keys (at any depth) made Python values, integers beyond
    64 bits made JSON fragments of their digits, and text holding a lone surrogate (JSON's
    ``"\\ud800"``, read from a request and echoed) its ``\\u`` escape, as Python's ``json`` writes
    it (and Cortex answered), in a dict key too; the same object if there are none."""
    if type(value) is str:
        return value if _utf8(value) else orjson.Fragment(json.dumps(value))
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        try:
            return orjson.Fragment(str(value))
        except ValueError:  # beyond Python's 4300-digit limit for int-to-text
            raise TypeError("an integer of more than 4300 digits") from None
    if isinstance(value, dict):
        items = [(_plain_key(key), _plain_keys(v, options)) for key, v in value.items()]
        if any(type(key) is str and not _utf8(key) for key, _ in items):  # no orjson key holds it
            return orjson.Fragment(
                b"{"
                + b",".join(_key_text(key, options) + b":" + _dumps(v, options) for key, v in items)
                + b"}"
            )
        if all(
            k is old_key and v is old for (k, v), (old_key, old) in zip(items, value.items(), strict=True)
        ):
            return value
        return dict(items)
    if isinstance(value, list | tuple):
        converted = [_plain_keys(item, options) for item in value]
        if all(new is old for new, old in zip(converted, value, strict=True)):
            return value
        return converted
    return value


def _plain_key(key: Any) -> Any:
    """A dict key as orjson writes it: a NumPy scalar its Python value, an integer beyond 64 bits
    its digits (as Python's json writes it)."""
    if isinstance(key, np.generic):
        return key.item()
    if isinstance(key, int) and not isinstance(key, bool) and not -(2**63) <= key < 2**64:
        return str(key)
    return key


def shown(value: Any, limit: int = 40) -> str:
    """A client's value as JSON text in an error message, cut to ``limit`` characters; an integer
    beyond 64 bits or text holding a lone surrogate too, which orjson refuses to write (its
    ``TypeError`` made the client's 400 a 500)."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        try:
            text = json.dumps(value)
        except (ValueError, RecursionError):
            text = f"a {type(value).__name__}"
    return text[:limit]


def echoed(text: str) -> str | orjson.Fragment:
    """Client text to write back in an answer (a V2 request's ``id``): itself, or, when it holds a
    lone surrogate (JSON's ``"\\ud800"``, which orjson refuses to write), its ``\\u`` escape."""
    return text if _utf8(text) else orjson.Fragment(json.dumps(text))


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _key_text(key: Any, options: int) -> bytes:
    """``key`` as JSON writes it as a dict key: a lone surrogate as its escape."""
    if type(key) is str and not _utf8(key):
        return json.dumps(key).encode()
    return orjson.dumps({key: 0}, option=options)[1:-3]


def loads(body: bytes) -> Any:
    """Decode a request body; ``InputError`` (400) when it is not JSON."""
    if not body.strip():
        raise InputError("malformed JSON: the request body is empty")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        problem = exc
    else:
        return wide_integers_as_written(body, value)
    # Cortex parsed bodies with Python's json (Flask), which reads NaN, Infinity and -Infinity:
    # what Python's json.dumps writes for a missing feature (float("nan")). orjson refuses them,
    # so a body it refuses is read once more that way (never on the hot path of valid JSON);
    # a number too large for a float (1e999) stays refused, as orjson refuses it.
    try:
        return json.loads(body, parse_float=_finite)
    except UnicodeDecodeError as exc:  # Latin-1 text, say: orjson's message spoke of surrogates
        raise InputError(
            f"malformed JSON: the body is not UTF-8 text (byte 0x{body[exc.start]:02x} at offset "
            f"{exc.start}); JSON is sent as UTF-8"
        ) from None
    except (ValueError, RecursionError):
        raise InputError(f"malformed JSON: {problem}{_form_hint(body)}") from None


# ``key=value&...``: what requests' ``data={...}`` and an HTML form send.
_FORM = re.compile(rb"[\w.~%+-]+=[^&=]*(?:&[\w.~%+-]+=[^&=]*)*")


def _form_hint(body: bytes) -> str:
    """Why a body that is not JSON is not, when it is a form (a common client mistake)."""
    if body.lstrip()[:2] == b"--" and b"content-disposition: form-data" in body[:1024].lower():
        return (
            " (the body is a multipart form, as requests' files= or curl -F send: "
            "send the JSON document itself as the body)"
        )
    if len(body) <= 65536 and _FORM.fullmatch(body.strip()):
        return " (the body is a form, key=value&...: send JSON, as requests' json= or curl -d '{...}' do)"
    return ""


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range for a float")
    return value


# An error message quoting the input (numpy's "could not convert string to float: '...'") is cut:
# a 10 MiB body must not come back as a 10 MiB error.
MAX_ERROR_CHARS = 8192


def error_body(message: str, kind: str | None = None) -> bytes:
    """The JSON body of an error response: ``{"error": message}``."""
    if len(message) > MAX_ERROR_CHARS:
        message = f"{message[:MAX_ERROR_CHARS]}... ({len(message) - MAX_ERROR_CHARS} more characters)"
    document = {"error": message} if kind is None else {"error": message, "type": kind}
    try:
        return orjson.dumps(document)
    except TypeError:
        # the message quotes the client's text holding a lone surrogate (JSON's "\ud800" as an
        # input's name): its escape, as Python's json writes it; orjson's refusal ended a replica
        return json.dumps(document).encode()
