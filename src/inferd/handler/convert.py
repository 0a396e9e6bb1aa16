"""Fit JSON-ish values to a model's inputs: cast to the signature dtypes, check their shapes.

Dynamic dimensions take any size (Cortex forced them to 1, so a batch of rows failed), and a
missing leading batch dimension is added (a flat list of 4 for a ``[None, 4]`` input). Other
missing dimensions of size 1 are added when there is only one place for them (a scalar for a
``[None, 1]`` input, a ``[28, 28]`` image for ``[None, 28, 28, 1]``), and extra ones are dropped
the same way (``[[[1.5, 0]]]`` for ``[None, 2]``): Cortex reshaped such values to the signature,
and adding or dropping size-1 dimensions never moves a value. Any other shape is an error
naming both shapes, never a reshape that happens to have as many values.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np

from inferd.errors import InputError
from inferd.handler.numbers import OutOfRange, cast_numbers, ml_float, typed_numbers
from inferd.runtimes.base import TensorSpec

NUMERIC_KINDS = "biuf"
TEXT_KINDS = "OUS"
MAP_TYPE = "map("  # ONNX's map(string,tensor(float)), the input of skl2onnx's DictVectorizer
SEQ_TYPE = "seq("  # ONNX's seq(tensor(float)): a list of tensors of one dtype, each of any shape
MAP_KEYS: dict[str, type[str] | type[int]] = {"string": str, "int64": int}
MAP_VALUES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(string)": np.dtype(object),
}


def shape_text(shape: tuple[int | None, ...] | None) -> str:
    if shape is None:
        return "any shape"
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def describe(spec: TensorSpec) -> str:
    if spec.type_name.startswith((MAP_TYPE, SEQ_TYPE)):
        return spec.type_name
    kind = "string" if spec.dtype.kind in TEXT_KINDS else spec.dtype.name
    return f"{kind} {shape_text(spec.shape)}"


NO_INPUTS = "the model has no inputs: send an empty object ({})"


def inputs_named(names: list[str]) -> str:
    """The model's inputs, as an error message names them."""
    if not names:
        return "the model has no inputs"
    return "the model's inputs are " + ", ".join(f"'{n}'" for n in names)


def _not_inputs(keys: list[Any], shown: int = 5) -> str:
    """``: got the key 'images', which is not an input``: what came instead of a missing input."""
    if not keys:
        return ""
    named = ", ".join(f"'{key}'" for key in keys[:shown])
    if len(keys) == 1:
        return f": got the key {named}, which is not an input"
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return f": got the keys {named}{more}, which are not inputs"


def to_model_inputs(
    prepared: Any, specs: list[TensorSpec], ignore_extra: bool = False
) -> dict[str, np.ndarray[Any, Any]]:
    """Map what pre_inference returned (or the raw sample) to one array per model input.

    Keys that are not inputs are an error, unless ``ignore_extra`` (ONNX, where Cortex took the
    inputs it needed from the object and ignored the rest).
    """
    if isinstance(prepared, dict):
        if len(prepared) == len(specs):  # the common case: exactly the inputs, by name
            try:
                return {spec.name: to_array(prepared[spec.name], spec) for spec in specs}
            except KeyError:
                pass  # a key that is not an input: said below
        names = [spec.name for spec in specs]
        missing = [spec.name for spec in specs if spec.name not in prepared and not spec.optional]
        if len(specs) == 1 and missing and specs[0].type_name.startswith(MAP_TYPE):
            return {names[0]: to_array(prepared, specs[0])}  # the object is the map itself
        extra = [key for key in prepared if key not in names]
        if len(specs) == 1 and missing:
            raise InputError(
                f"missing input '{names[0]}' (expected a value of {describe(specs[0])}, or an "
                f"object with the key '{names[0]}'){_not_inputs(extra)}"
            )
        if missing:
            raise InputError(
                f"missing input '{missing[0]}': expected an object with the keys "
                + ", ".join(f"'{n}'" for n in names)
                + _not_inputs(extra)
            )
        if extra and not ignore_extra:
            raise InputError(f"unexpected input '{extra[0]}': {inputs_named(names)}")
        return {spec.name: to_array(prepared[spec.name], spec) for spec in specs if spec.name in prepared}
    if not specs:
        raise InputError(NO_INPUTS)
    if len(specs) != 1:
        raise InputError(
            "the model has several inputs: expected an object with the keys "
            + ", ".join(f"'{spec.name}'" for spec in specs)
        )
    return {specs[0].name: to_array(prepared, specs[0])}


def to_array(
    value: Any, spec: TensorSpec, strict: bool = False, booleans: Callable[[], bool] | None = None
) -> np.ndarray[Any, Any]:
    """Cast ``value`` to ``spec.dtype`` and fit it to ``spec.shape`` or raise ``InputError``.

    ``strict``: a TF Serving tensor, where null, text and true/false are no numbers
    (``typed_numbers``; ``booleans`` says whether the request's text may hide true or false)."""
    if value is None:
        raise InputError(f"input '{spec.name}': expected {describe(spec)}, got null")
    if spec.type_name.startswith(MAP_TYPE):
        return to_map(value, spec)
    if spec.type_name.startswith(SEQ_TYPE):
        return to_sequence(value, spec, strict, booleans)
    try:
        if strict and _numeric(spec.dtype) and not isinstance(value, np.ndarray):
            array = typed_numbers(value, spec.dtype, booleans=booleans)
        else:
            array = _cast_checked(value, spec.dtype)
    except (ValueError, TypeError, OverflowError, FloatingPointError) as exc:
        raise InputError(f"input '{spec.name}': expected {describe(spec)} values: {reason(exc)}") from None
    return fit_shape(array, spec, drop_units=not strict)


def to_map(value: Any, spec: TensorSpec) -> np.ndarray[Any, Any]:
    """A JSON object for an ONNX map input, its keys and values cast to the map's types, held in
    a 0-d object array (the runtime hands onnxruntime the dict inside)."""
    key_name, _, value_name = spec.type_name[len(MAP_TYPE) : -1].partition(",")
    key_type, value_type = MAP_KEYS.get(key_name), MAP_VALUES.get(value_name)
    if not isinstance(value, dict) or key_type is None or value_type is None:
        raise InputError(
            f"input '{spec.name}': expected {spec.type_name} (a JSON object), got {_json_kind(value)}"
        )
    if not value:  # onnxruntime makes no empty map: "the model failed" (500) for the client's {}
        raise InputError(f"input '{spec.name}': expected {spec.type_name} with one key or more, got {{}}")
    try:
        keys = [key_type(key) for key in value]
    except ValueError:
        raise InputError(
            f"input '{spec.name}': expected {spec.type_name}: its keys are {key_name}s"
        ) from None
    wanted = "a string" if value_type.kind in TEXT_KINDS else "a number"
    for key, item in value.items():
        if not (isinstance(item, str) if value_type.kind in TEXT_KINDS else _is_number(item)):
            raise InputError(
                f"input '{spec.name}': expected {spec.type_name} values: '{key}' got "
                f"{_json_kind(item)}, not {wanted}"
            )
        try:  # onnxruntime's UTF-8 encoding refused a lone surrogate: "the model failed" (500)
            for text in (key, item) if isinstance(item, str) else (key,):
                _check_utf8(text)
        except ValueError as exc:
            raise InputError(f"input '{spec.name}': expected {spec.type_name}: {exc}") from None
    values = list(value.values())
    if value_type.kind not in TEXT_KINDS:
        try:
            values = _cast_checked(values, value_type).tolist()
        except (ValueError, TypeError, OverflowError, FloatingPointError) as exc:
            raise InputError(
                f"input '{spec.name}': expected {spec.type_name} values: {reason(exc)}"
            ) from None
    held = np.empty((), dtype=object)
    held[()] = dict(zip(keys, values, strict=True))
    return held


def to_sequence(
    value: Any, spec: TensorSpec, strict: bool = False, booleans: Callable[[], bool] | None = None
) -> np.ndarray[Any, Any]:
    """A JSON list for an ONNX sequence input, each item a tensor of its element type (any
    shape), held in a 0-d object array (the runtime hands onnxruntime the list inside)."""
    if not isinstance(value, list):
        raise InputError(
            f"input '{spec.name}': expected {spec.type_name} (a list of tensors), got {_json_kind(value)}"
        )
    element = TensorSpec(spec.name, spec.dtype, None, spec.type_name[len(SEQ_TYPE) : -1])
    held = np.empty((), dtype=object)
    held[()] = [to_array(item, element, strict, booleans) for item in value]
    return held


def _is_number(item: Any) -> bool:
    return isinstance(item, int | float | np.number) and not isinstance(item, bool | np.bool_)


def _cast(value: Any, target: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """``value`` as an array of ``target``; numbers out of its range raise (no silent inf)."""
    if isinstance(value, np.ndarray):
        if (target.kind in TEXT_KINDS) != (value.dtype.kind in TEXT_KINDS):
            raise ValueError(f"cannot cast {value.dtype} values to {target}")
        if value.dtype.kind in "cmM" and target.kind in NUMERIC_KINDS:
            # astype would drop an imaginary part, or make dates a count of days, without a word
            raise ValueError(f"cannot cast {value.dtype} values to {target}")
        if value.dtype == target:
            return value
        if value.dtype.kind in NUMERIC_KINDS and _numeric(target):
            # astype would wrap 300 to 44 in a uint8, drop 1.5's fraction, make 2.0 a True
            return cast_numbers(value, target)
        return value.astype(target)
    if target.kind in TEXT_KINDS:
        array = np.array(value, dtype=object)
        for item in array.flat:  # JSON null, numbers or objects would reach the model as text
            if not isinstance(item, str | bytes):
                if isinstance(item, list | tuple):
                    raise ValueError("inhomogeneous")  # a ragged nesting: its lists became items
                raise TypeError(f"got {_json_kind(item)} where a string belongs")
            if isinstance(item, str) and not item.isascii():
                _check_utf8(item)
        return array
    if _numeric(target):
        return cast_numbers(value, target)
    return np.asarray(value, dtype=target)


def _numeric(target: np.dtype[Any]) -> bool:
    """A number dtype: numpy's, or ml_dtypes' floats (TensorFlow's bfloat16, numpy's kind ``V``)."""
    return target.kind in NUMERIC_KINDS or ml_float(target)


def _check_utf8(text: str) -> None:
    """A string the runtime can encode: JSON's ``"\\ud800"`` is a lone surrogate, which
    onnxruntime's UTF-8 encoding refused as "the model failed" (a 500 for the client's input)."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"a string holds a lone surrogate (\\u{ord(text[exc.start]):04x} without its pair), "
            "which is not UTF-8 text"
        ) from None


def _json_kind(item: Any) -> str:
    if item is None:
        return "null"
    if isinstance(item, bool | np.bool_):
        return "true or false"
    if isinstance(item, int | float | np.number):
        return f"a number ({item!r})"
    return "an object" if isinstance(item, dict) else type(item).__name__


# Numbers out of the type's range raise instead of becoming inf (the decorator form of errstate
# costs the hot path less than a ``with`` block per call).
_cast_checked = np.errstate(over="raise", invalid="raise")(_cast)


def reason(exc: Exception) -> str:
    """A cast's error in the words of the client's JSON (ragged lists, a range)."""
    text = str(exc)
    if isinstance(exc, OutOfRange):
        return text
    if "maximum number of dimension" in text:  # nested deeper than numpy's 64 (32 before numpy 2)
        limit = text.rstrip(".").rsplit(" ", 1)[-1]
        return f"the lists are nested more than {limit} deep (an array has at most {limit} dimensions)"
    if "inhomogeneous" in text or "sequence" in text:
        return "the nested lists are ragged (rows of different lengths)"
    if isinstance(exc, FloatingPointError | OverflowError):
        return f"a number is out of the type's range ({text})"
    return text


def _fits(shape: tuple[int, ...], target: tuple[int | None, ...]) -> bool:
    if len(shape) != len(target):
        return False
    for size, wanted in zip(shape, target, strict=True):
        if wanted is not None and size != wanted:
            return False
    return True


def _with_unit_dimensions(shape: tuple[int, ...], target: tuple[int | None, ...]) -> tuple[int, ...] | None:
    """``shape`` with size-1 dimensions added where ``target`` allows 1, if that fits one way only."""
    missing = len(target) - len(shape)
    free = [i for i, wanted in enumerate(target) if wanted is None or wanted == 1]
    if missing <= 0 or len(free) < missing:
        return None
    found: set[tuple[int, ...]] = set()
    for added in combinations(free, missing):
        sizes = iter(shape)
        candidate = tuple(1 if i in added else next(sizes) for i in range(len(target)))
        if _fits(candidate, target):
            found.add(candidate)
    return found.pop() if len(found) == 1 else None


def _without_unit_dimensions(
    shape: tuple[int, ...], target: tuple[int | None, ...]
) -> tuple[int, ...] | None:
    """``shape`` with extra size-1 dimensions dropped, if that fits ``target`` one way only."""
    extra = len(shape) - len(target)
    ones = [i for i, size in enumerate(shape) if size == 1]
    if extra <= 0 or len(ones) < extra:
        return None
    found = {
        candidate
        for dropped in combinations(ones, extra)
        if _fits(candidate := tuple(size for i, size in enumerate(shape) if i not in dropped), target)
    }
    return found.pop() if len(found) == 1 else None


def fit_shape(array: np.ndarray[Any, Any], spec: TensorSpec, drop_units: bool = True) -> np.ndarray[Any, Any]:
    """Return ``array`` if it fits ``spec.shape``, with a missing leading batch dimension added,
    or other missing size-1 dimensions added (extra ones dropped) when that fits in one way only.

    Nothing else is reshaped: the same number of values in another shape (``[[1, 2], [3, 4]]``
    for ``[-1, 4]``, eight flat values for two rows) is a guess at the user's data, so a 400.
    """
    target = spec.shape
    if target is None or _fits(array.shape, target):
        return array
    if len(target) == array.ndim + 1 and target[0] in (None, 1) and _fits(array.shape, target[1:]):
        return array.reshape((1, *array.shape))
    unit = _with_unit_dimensions(array.shape, target)
    if unit is None and drop_units:  # Cortex's route only: a TF Serving tensor keeps its rank
        unit = _without_unit_dimensions(array.shape, target)
    if unit is not None:
        return array.reshape(unit)
    raise InputError(
        f"input '{spec.name}': expected shape {shape_text(target)} ({describe(spec).split()[0]}), "
        f"got shape {list(array.shape)}"
    )


DimensionGroups = tuple[tuple[str, tuple[tuple[str, int, int], ...]], ...]


def dimension_groups(specs: list[TensorSpec]) -> DimensionGroups:
    """Each dimension name (ONNX's ``batch``) that stands in more than one place of the inputs,
    with those places: (input, its rank, axis), in the inputs' order. Empty: none to check."""
    places: dict[str, list[tuple[str, int, int]]] = {}
    for spec in specs:
        for axis, name in enumerate(spec.dim_names or ()):
            if name is not None:
                places.setdefault(name, []).append((spec.name, len(spec.dim_names or ()), axis))
    return tuple((name, tuple(where)) for name, where in places.items() if len(where) > 1)


def check_dimension_names(arrays: dict[str, np.ndarray[Any, Any]], groups: DimensionGroups) -> None:
    """Dimensions the model names alike have one size: onnxruntime does not check, and a model
    that adds ``a`` [n, 2] to ``b`` [n, 2] would broadcast one row of ``a`` over two of ``b``.
    ``groups`` is ``dimension_groups`` of the model's inputs, made once (a name in one place
    only cannot disagree: the check costs a look per shared name, not per dimension)."""
    for name, places in groups:
        first = ""
        known = 0
        for input_name, rank, axis in places:
            array = arrays.get(input_name)
            if array is None or array.ndim != rank:
                continue
            size = array.shape[axis]
            if not first:
                first, known = input_name, size
            elif size != known:
                raise InputError(
                    f"input '{input_name}': dimension '{name}' is {size}, but input '{first}' has it "
                    f"{known} (the model names both '{name}', so they must be equal)"
                )


def stacks_by_rows(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> bool:
    """Whether samples may run as one batch: every input's first dimension is dynamic, and every
    output's too, so the answer can be cut back into one part per sample. An output of fixed
    length (the model's list of its 3 class names) would be cut into one name per sample when
    3 samples ran together. A ZipMap's list has one map per row."""
    for spec in inputs:
        if spec.shape is not None and (not spec.shape or spec.shape[0] is not None):
            return False
    for spec in outputs:
        # A shape of [] may be onnxruntime's for an output of open rank: its rows (like those of
        # an unknown shape or a ZipMap) are counted when the answer comes.
        if spec.shape and spec.shape[0] is not None and not spec.type_name.startswith(("seq(", "map(")):
            return False
    return True
