"""``cortex.lib.stringify``: Cortex v0.10's ``truncate`` (``pkg/workloads/cortex/lib/stringify.py``),
which its ``debug_obj`` logged values with: strings in double quotes, at most ``max_elements``
items of a dict or sequence (then ``...``), text cut at ``max_str_len`` characters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def truncate(item: Any, max_elements: int = 10, max_str_len: int = 500) -> str:
    """``item`` as Cortex's logs showed it: ``{"a": [1, 2, ...]}``."""
    if isinstance(item, str):
        text = item
        if max_str_len > 3 and len(text) > max_str_len:
            text = text[: max_str_len - 3] + "..."
        return f'"{text}"'
    if isinstance(item, dict):
        parts = []
        for count, key in enumerate(item):
            if max_elements > 0 and count >= max_elements:
                parts.append("...")
                break
            shown = truncate(item[key], max_elements, max_str_len)
            parts.append(f"{truncate(key, max_elements, max_str_len)}: {shown}")
        return "{" + ", ".join(parts) + "}"
    if isinstance(item, Iterable) and hasattr(item, "__getitem__"):
        parts = [truncate(element, max_elements, max_str_len) for element in item[:max_elements]]
        if max_elements > 0 and len(item) > max_elements:  # type: ignore[arg-type]
            parts.append("...")
        return "[" + ", ".join(parts) + "]"
    text = str(item)
    if max_str_len > 3 and len(text) > max_str_len:
        text = text[: max_str_len - 3] + "..."
    return text
