"""JSON numbers into a model's numeric dtype: exactly, or an error naming the value and the range.

Two casts would otherwise change a client's numbers without a word. orjson reads an integer
beyond 64 bits as a float, and numpy casts a float to an integer dtype by dropping its
fraction: ``-9223372036854775809`` reached an int64 input as ``-2**63`` and ``1.5`` as ``1``.
So a number for an integer input must be a whole number the dtype holds, and one that arrived
as a float must be exact (a float from 2**53 up stands for several integers). A number beyond a
float input's range is refused too, never made infinite.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

EXACT_IN_FLOAT = 2**53  # below it a float64 is one integer; from it up, one float stands for several
SMALL = 64  # values checked in Python below this many (numpy's min and max cost ~3 us each)
FLOAT_BEYOND_64_BITS = 2.0**63  # orjson reads an integer below -2**63 (or above 2**64 - 1) as a float


class OutOfRange(ValueError):
    """A number the input's dtype cannot hold exactly; the message names it and the range."""


@cache
def ml_float(target: np.dtype[Any]) -> bool:
    """Whether ``target`` is one of ml_dtypes' floats (TensorFlow's bfloat16): numpy's kind for
    it is ``V``, not ``f``, and its cast from Python numbers makes a number beyond its range
    infinite without a word (remembered: ``dtype.name`` costs microseconds)."""
    return target.kind == "V" and "float" in target.name


def _largest(target: np.dtype[Any]) -> Any:
    """The largest finite value of float ``target`` (``None`` for a dtype nobody describes)."""
    try:
        return np.finfo(target).max
    except ValueError:  # ml_dtypes' bfloat16: numpy does not describe it, ml_dtypes does
        try:
            import ml_dtypes

            return ml_dtypes.finfo(target).max  # type: ignore[no-untyped-call]
        except (ImportError, ValueError, TypeError):
            return None


def range_text(target: np.dtype[Any]) -> str:
    """``-128 to 127``, ``-3.4028235e+38 to 3.4028235e+38``: the values ``target`` holds."""
    if target.kind in "iu":
        info = np.iinfo(target)
        return f"{info.min} to {info.max}"
    high = _largest(target)
    if high is None:
        return "the type's range"
    text = str(high)
    if float(text) < float(high):  # float16's shortest text, 6.55e+04, hides its largest: 65504.0
        text = repr(float(high))
    return f"-{text} to {text}"


class NotNumbers(TypeError):
    """null, text or true/false where a typed tensor (V2, TF Serving) holds numbers; ``what``
    says which (``null``, ``text``, ``true/false``), ``item`` the text."""

    def __init__(self, what: str, item: Any = None) -> None:
        self.what, self.item = what, item
        super().__init__(f"text is not a number ({item!r})" if what == "text" else f"{what} is not a number")


@np.errstate(over="raise", invalid="raise")  # as a decorator: a ``with`` block costs ~1 us a call
def typed_numbers(
    value: Any, target: np.dtype[Any], label: str | None = None, *, booleans: Callable[[], bool] | None = None
) -> np.ndarray[Any, Any]:
    """JSON ``value`` of a typed tensor (V2, TF Serving) as an array of numeric ``target``.

    One pass of numpy over the JSON (``np.asarray`` without a dtype) says what it holds, in its
    dtype: numbers are cast and checked as ``cast_numbers`` does, true and false alone (kind
    ``b``) and text (``U``) are refused, and objects (``O``: null, text or true/false among
    numbers, integers beyond 64 bits) are looked at one by one. numpy reads ``[true, 1.5]`` as
    the floats 1.0 and 1.5, so a tensor holding a 0 or a 1 is looked at too, when
    ``booleans()`` (asked of the request's text, ``protocols.booleans``; ``None``: always)
    says it may hide one.
    The Cortex route keeps Cortex's reading (a null is NaN, ``"3"`` is 3): ``cast_numbers``.

    Measured (timeit, best of 5, 4,000 float32 numbers nested [1000, 4]): the lax cast
    ``np.asarray(value, dtype)`` ~225-235 us, this pass and its cast ~250-270 us (the dtype numpy
    finds is what shows text and null, so the lax cast cannot do); checking each element's
    type in Python would add ~80 us, the 0-or-1 test adds ~3 us. A BOOL ``target`` takes true,
    false, 1 and 0.
    """
    found = value if isinstance(value, np.ndarray) else np.asarray(value)
    kind = found.dtype.kind
    wanted = target.kind
    if wanted == "b":
        return _booleans(found, label)
    if kind in "fiu":
        # the 0-or-1 test first: ~0.6 us for 4 numbers, ~3 us for 4,000, less than the text costs
        hides = _holds_zero_or_one(found, value) and (booleans is None or booleans())
        if hides and _holds_boolean(value):
            raise NotNumbers("true/false")
        if wanted == "f":
            try:
                return found.astype(target, copy=False)
            except FloatingPointError:
                raise _out_of_range(_beyond_float(found, target), target, label) from None
        if found.dtype == target:
            return found
        return cast_numbers(found, target, label, source=value)
    if kind == "b":
        raise NotNumbers("true/false")
    if kind in "US":
        raise NotNumbers("text", _first_text(value, found))
    for item in found.flat:
        if item is None:
            raise NotNumbers("null")
        if isinstance(item, str | bytes):
            raise NotNumbers("text", item)
        if isinstance(item, bool):
            raise NotNumbers("true/false")
    return cast_numbers(found, target, label, source=value)  # integers beyond 64 bits among others


def _holds_zero_or_one(found: np.ndarray[Any, Any], value: Any) -> bool:
    """Whether a number is 0 or 1: only then may numpy have made one of true or false."""
    if found.size <= SMALL:
        flat = value if found.ndim == 1 and type(value) is list else found.ravel().tolist()
        return 0 in flat or 1 in flat
    return bool((found == 0).any() or (found == 1).any())


def _holds_boolean(value: Any) -> bool:
    """Whether nested JSON lists ``value`` hold true or false (the slow, exact look)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is list:
            stack.extend(item)
        elif type(item) is bool:
            return True
    return False


def cast_numbers(
    value: Any, target: np.dtype[Any], label: str | None = None, *, source: Any = None
) -> np.ndarray[Any, Any]:
    """``value`` (a number or nested lists of them) as an array of numeric ``target``.

    Call it under ``np.errstate(over="raise", invalid="raise")``. Raises ``OutOfRange`` for a
    number ``target`` cannot hold exactly (``label`` names the type in the message, V2's ``INT64``;
    by default numpy's ``int64``, looked up only then: ``dtype.name`` costs microseconds), and
    numpy's ``ValueError``/``TypeError`` for what is not a number. ``source`` is the JSON that
    ``value`` was made from, when ``value`` is already its array.
    """
    if target.kind == "b":
        return _booleans(value, label)
    if target.kind not in "iu":
        try:
            if ml_float(target):
                return _narrowed(np.asarray(value, dtype=np.float64), target, label)
            return np.asarray(value, dtype=target)
        except (FloatingPointError, OverflowError):
            raise _out_of_range(_beyond_float(value, target), target, label) from None
    found = np.asarray(value)  # what the JSON holds: ints, floats, or objects (ints beyond 64 bits)
    kind = found.dtype.kind
    if kind in "iu":
        if found.dtype == target:  # the common case (ints for an int64 input): nothing to check
            return found
        if found.size and not _widens(found.dtype, target):
            if found.size <= SMALL:  # a few values: Python's min and max, not two reductions
                flat = found.ravel().tolist()
                _check_integers(min(flat), max(flat), target, label)
            else:
                _check_integers(found.min(), found.max(), target, label)
        return found.astype(target)
    if kind == "f":
        try:
            _check_floats(found, target, label)
        except OutOfRange:
            json = value if source is None and not isinstance(value, np.ndarray) else source
            if json is None:
                raise
            # numpy reads integers on both sides of int64's maximum ([0, 2**64 - 1]), or beside
            # a float, as floats: check each number as the JSON wrote it
            return _each(np.asarray(json, dtype=object), json, target, label)
        return found.astype(target)
    if kind == "O":
        return _each(found, value, target, label)
    return np.asarray(value, dtype=target)  # booleans; text numpy may parse ("3") or refuse


def _each(
    found: np.ndarray[Any, Any], value: Any, target: np.dtype[Any], label: str | None
) -> np.ndarray[Any, Any]:
    """Mixed numbers (an object array) for an integer ``target``, each checked as it is."""
    for item in found.flat:
        if isinstance(item, int) and not isinstance(item, bool):
            _check_integers(item, item, target, label)
        elif isinstance(item, float):
            _check_floats(np.array([item]), target, label)
    return np.asarray(value, dtype=target)


def _first_text(value: Any, found: np.ndarray[Any, Any]) -> Any:
    """The first string in nested JSON ``value`` (numpy made its numbers text too; error path)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            stack.extend(reversed(item))
        elif isinstance(item, str | bytes):
            return item
    return found.flat[0].item()


def _booleans(value: Any, label: str | None) -> np.ndarray[Any, Any]:
    """JSON true and false, or the numbers 1 and 0, as booleans. numpy would make any other
    number and any text True (2, 0.5, "false"): those are refused."""
    found = np.asarray(value)
    kind = found.dtype.kind
    if kind == "b":
        return found
    name = label or "bool"
    if kind not in "iuf":
        for item in found.flat if kind == "O" else ():  # an integer beyond 64 bits is a number
            if type(item) is int and item not in (0, 1):
                raise OutOfRange(f"{item!r} is not a {name} value (true, false, 1 or 0)")
        what = "text" if kind in "US" else "null or objects"
        raise TypeError(f"{name} takes true, false, 1 or 0, not {what}")
    other = found[(found != 0) & (found != 1)]
    if other.size:
        raise OutOfRange(f"{other.flat[0].item()!r} is not a {name} value (true, false, 1 or 0)")
    return found.astype(np.bool_)


def _narrowed(values: np.ndarray[Any, Any], target: np.dtype[Any], label: str | None) -> np.ndarray[Any, Any]:
    """float64 ``values`` as ml_dtypes' float ``target``: a finite value that became infinite
    (3.4e38 as bfloat16, whose largest is 3.39e38) is out of its range, not Infinity."""
    cast = values.astype(target)
    beyond = np.isinf(cast) & np.isfinite(values)
    if beyond.any():
        raise _out_of_range(repr(values[beyond].flat[0].item()), target, label)
    return cast


def _out_of_range(value: Any, target: np.dtype[Any], label: str | None) -> OutOfRange:
    return OutOfRange(f"{value} is out of {label or target.name}'s range ({range_text(target)})")


@cache
def _widens(found: np.dtype[Any], target: np.dtype[Any]) -> bool:
    """Every value of ``found`` is one of ``target`` (``np.can_cast``, ~1 us a call, remembered)."""
    return bool(np.can_cast(found, target))


@cache
def _bounds(target: np.dtype[Any]) -> tuple[int, int, float]:
    """The least and greatest integer ``target`` holds, and the greatest float that fits in it."""
    info = np.iinfo(target)
    high = float(info.max)
    if high > info.max:  # int64's and uint64's maxima round up to the next power of two
        high = float(np.nextafter(high, 0))
    return int(info.min), int(info.max), high


def _check_integers(low: Any, high: Any, target: np.dtype[Any], label: str | None = None) -> None:
    least, greatest, _ = _bounds(target)
    if low < least or high > greatest:
        raise _out_of_range(low if low < least else high, target, label)


def _check_floats(found: np.ndarray[Any, Any], target: np.dtype[Any], label: str | None = None) -> None:
    """Floats for an integer input: within the range, whole, and exact."""
    least, _, high = _bounds(target)
    with np.errstate(invalid="ignore"):  # NaN and infinity (TF Serving's JSON allows them)
        outside = ~np.isfinite(found) | (found < least) | (found > high) | (found <= -FLOAT_BEYOND_64_BITS)
    if outside.any():
        raise _out_of_range(repr(found[outside].flat[0].item()), target, label)
    fraction = found != np.floor(found)
    if fraction.any():
        raise OutOfRange(
            f"{found[fraction].flat[0].item()!r} is not a whole number, as {label or target.name} needs"
        )
    # 2**53 itself stands for 2**53 + 1 too: a list mixing 9007199254740993 with 0.0 arrives so
    inexact = np.abs(found) >= EXACT_IN_FLOAT
    if inexact.any():
        raise OutOfRange(
            f"{found[inexact].flat[0].item()!r} is not exact as {label or target.name}: write a whole "
            "number beyond 2**53 in plain digits, without a fraction or an exponent"
        )


def _beyond_float(value: Any, target: np.dtype[Any]) -> str:
    """The first number in ``value`` beyond float ``target``'s range, as text (error path only)."""
    largest = _largest(target)
    high = float(np.finfo(np.float32).max if largest is None else largest)
    stack = [value.tolist() if isinstance(value, np.ndarray) else value]  # a handler's array
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            stack.extend(reversed(item))
            continue
        try:
            if abs(float(item)) > high:
                return repr(item)
        except OverflowError:  # an integer beyond float64 itself
            return str(item) if len(str(item)) <= 40 else f"a {len(str(item))}-digit number"
        except (TypeError, ValueError):
            continue
    return "a number"
