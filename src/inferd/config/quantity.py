"""Kubernetes resource quantities (``200m``, ``1.5``, ``512Mi``, ``2G``), as Cortex's compute took."""

from __future__ import annotations

import math
import re

from inferd.errors import shown

_SUFFIXES: dict[str, float] = {
    "": 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
_QUANTITY = re.compile(r"^\s*([+]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Z]{0,2})\s*$")


def parse_quantity(value: object) -> float:
    """The numeric value of a quantity; ``ValueError`` with a readable message otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{shown(value)} is not a quantity (e.g. 200m, 1.5, 512Mi, 2G)")
    number: float | None = None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        if match and match.group(2) in _SUFFIXES:
            number = float(match.group(1)) * _SUFFIXES[match.group(2)]
    if number is None:
        raise ValueError(f"{shown(value)} is not a quantity (e.g. 200m, 1.5, 512Mi, 2G)")
    if not math.isfinite(number):  # YAML's .nan and .inf, or 1e400: no machine has that many
        raise ValueError(f"{shown(value)} is not a finite number")
    return number


def format_bytes(count: float) -> str:
    """A byte count the way people read it: ``512Mi``, ``2Gi``."""
    for suffix, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if count >= size:
            return f"{count / size:.4g}{suffix}"
    return f"{count:.0f}"
