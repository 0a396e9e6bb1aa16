"""Traffic in the CLI: the splitters ``inferd get`` lists, with weights and what each API got."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inferd.cli.render import table


def splitter_rows(splitters: Sequence[dict[str, Any]]) -> str:
    """One row per API of each splitter: its weight, requests routed to it and their share."""
    rows: list[list[Any]] = []
    for splitter in splitters:
        total = sum(entry["requests"] for entry in splitter["apis"])
        for position, entry in enumerate(splitter["apis"]):
            share = f"{100 * entry['requests'] / total:.1f}%" if total else "-"
            name = splitter["name"] if position == 0 else ""
            endpoint = splitter["endpoint"] if position == 0 else ""
            rows.append([name, endpoint, entry["name"], f"{entry['weight']}%", entry["requests"], share])
    return table(["splitter", "endpoint", "api", "weight", "requests", "share"], rows)
