"""Text output of the CLI: tables that fit 80 columns, durations and latencies as people read them."""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by three spaces (Cortex's layout).

    A cell holding a line break or another control character is shown quoted, with escapes: a
    model's input named ``"in\\x1b[31mput\\n"`` turned the terminal red and split its row.
    """
    cells = [[str(h) for h in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(display_width(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "   ".join(cell + " " * (widths[i] - display_width(cell)) for i, cell in enumerate(row)).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def display_width(text: str) -> int:
    """The columns ``text`` takes on a terminal: a CJK character or an emoji two, a combining
    accent none (a text classifier's label "日本" pushed its count two columns right)."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        for ch in text
    )


def fit_screen(text: str, lines: int, columns: int) -> str:
    """``text`` cut to a terminal of ``lines`` by ``columns`` (``inferd get -w``), its last line
    saying how many were left out. Each second's table of 110 APIs scrolled its header and first
    rows off a 40-line terminal, which showed the last 39 rows alone."""
    room = max(lines - 1, 2)  # the line the cursor ends on after the last line's newline

    def height(line: str) -> int:  # a line longer than the terminal is wide wraps
        return max(1, -(-len(line) // max(columns, 1)))

    def note(left: int) -> str:
        return f"... {left} more lines: inferd get without -w prints them all"

    rows = text.split("\n")
    if sum(height(row) for row in rows) <= room:
        return text
    kept: list[str] = []
    used = 0
    for row in rows:  # the note wraps too on a narrow terminal: its lines are kept for it
        if used + height(row) > room - height(note(len(rows))):
            break
        kept.append(row)
        used += height(row)
    kept.append(note(len(rows) - len(kept)))
    return "\n".join(kept)


def _cell(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text if text.isprintable() else json.dumps(text, ensure_ascii=False)


def printable(text: str, keep: str = "") -> str:
    """``text`` with its control characters (but ``keep``) written as escapes: an error or a
    traceback may quote a file name or a model's node name holding one."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch in keep else ch.encode("unicode_escape").decode() for ch in text
    )


def class_label(name: str) -> str:
    """A tracked class as a table cell: quoted, with escapes, when it is blank, has blanks at its
    ends or holds a line break, a tab or another control character (a row of its own, intact)."""
    if name and name.isprintable() and name == name.strip():
        return name
    return json.dumps(name, ensure_ascii=False)


def since(timestamp: float | None, now: float | None = None, ago: float | None = None) -> str:
    """``12s``, ``4m``, ``3h``, ``2d`` since ``timestamp`` (wall-clock seconds), or ``ago``
    seconds when the operator measured them (on its monotonic clock: right after a clock jump)."""
    if not timestamp:
        return "-"
    seconds = max(0, int((now or time.time()) - timestamp if ago is None else ago))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def latency(ms: float | None) -> str:
    """``N ms``, or ``N s`` from a second up (as Cortex printed it); ``-`` when unknown; under
    ten microseconds ``<0.01 ms`` (a request refused at the edge, a 408 or 405, takes a fraction
    of a microsecond of the gateway's: it read "0.000236 ms")."""
    if ms is None:
        return "-"
    if ms < 0.01:
        return "<0.01 ms"
    if ms >= 1000:
        return f"{ms / 1000:.3g} s"
    return f"{ms:.3g} ms"


def count(value: int) -> str:
    return "-" if value == 0 else str(value)


def api_rows(apis: Sequence[dict[str, Any]]) -> str:
    """``inferd get``: one row per API; ``failed`` only when some failed (as Cortex)."""
    show_failed = any(api["failed"] for api in apis)
    headers = ["api", "deployment", "status", "up-to-date", "available", "requested"]
    if show_failed:
        headers.append("failed")
    headers.append("last update")
    rows = []
    for api in apis:
        row = [
            api["name"],
            api["deployment"],
            api["status"],
            api["up_to_date"],
            api["available"],
            _requested(api),
        ]
        if show_failed:
            row.append(api["failed"])
        row.append(since(api["last_update"], ago=api.get("updated_ago")))
        rows.append(row)
    return table(headers, rows)


def api_detail(api: dict[str, Any], verbose: bool = False) -> str:
    """``inferd get API``: status, traffic, tracker, URL and a curl line."""
    parts = []
    headers = ["status", "up-to-date", "available", "requested"]
    row: list[Any] = [api["status"], api["up_to_date"], api["available"], _requested(api)]
    for key, title in (("stale", "stale"), ("failed", "failed"), ("timed_out", "timed out")):
        if api.get(key):
            headers.append(title)
            row.append(api[key])
    headers.append("last update")
    row.append(since(api["last_update"], ago=api.get("updated_ago")))
    parts.append(table(headers, [row]))
    metrics = api.get("metrics") or {}
    requests = metrics.get("requests", {})
    timing = metrics.get("latency", {})
    if api.get("metrics_note"):  # a Ray cluster: no gateway counts there
        parts.append(f"metrics: {api['metrics_note']}")
    else:
        headers = ["requests/s", "avg latency", "p50", "p99", "2XX", "4XX", "5XX"]
        row = [
            f"{metrics.get('requests_per_second', 0):.1f}",
            latency(timing.get("avg_ms")),
            latency(timing.get("p50_ms")),
            latency(timing.get("p99_ms")),
            count(requests.get("2XX", 0)),
            count(requests.get("4XX", 0)),
            count(requests.get("5XX", 0)),
        ]
        if requests.get("shadow"):  # copies of another API's requests it answered, apart
            headers.append("shadow copies")
            row.append(count(requests["shadow"]))
        parts.append(table(headers, [row]))
    shadow = api.get("shadow")
    if shadow:  # copies of its requests go to another API (gateway/shadow.py)
        row = [
            shadow["api"],
            f"{shadow['percent']:g}%",
            shadow["sent"],
            shadow["dropped"],
            shadow["answered"],
            shadow["agreed"],
            shadow["errors"],
        ]
        headers = ["shadow", "percent", "sent", "dropped", "answered", "agreed", "errors"]
        parts.append(table(headers, [row]))
    streams = metrics.get("streams")
    if streams:  # an API whose answers stream
        parts.append(
            table(
                ["streams", "first item p50", "items per stream", "avg stream duration"],
                [
                    [
                        count(streams["count"]),
                        latency(streams["first_item_p50_ms"]),
                        f"{streams['items_per_stream']:.3g}",
                        latency(streams["duration_avg_ms"]),
                    ]
                ],
            )
        )
    tracked = metrics.get("tracker") or {}
    if tracked.get("classes"):
        classes = sorted(tracked["classes"].items(), key=lambda item: (-item[1], item[0]))
        parts.append(table(["class", "count"], [(class_label(name), n) for name, n in classes]))
        if tracked.get("other"):
            other = tracked["other"]
            parts.append(
                f"and {other['predictions']} predictions of other classes (only the first "
                f"{other['classes_counted']} classes are counted one by one)"
            )
    if tracked.get("regression"):
        reg = tracked["regression"]
        parts.append(
            table(["min", "max", "avg"], [[f"{reg['min']:.4g}", f"{reg['max']:.4g}", f"{reg['avg']:.4g}"]])
        )
    configured = (api.get("tracker") or {}).get("model_type")
    if configured and not tracked.get("classes") and not tracked.get("regression"):
        # Cortex's get showed a tracker's table before anything was tracked, a `-` in each cell.
        header = ["class", "count"] if configured == "classification" else ["min", "max", "avg"]
        parts.append(table(header, [["-"] * len(header)]))
    if api.get("error"):
        label = "error" if str(api["status"]).startswith("error") else api["status"]
        parts.append(f"{label}: {printable(api['error'])}")
    replicas = api.get("replicas") or []
    if verbose or any(r.get("gpus") for r in replicas):
        parts.append(replica_table(replicas))
    if verbose and api.get("device"):  # a Ray cluster: one replica's word
        parts.append(f"runs on: {api['device']}")
    if api.get("capacity"):
        capacity = api["capacity"]
        parts.append(
            f"capacity: {capacity['fit']} of {api['requested']} requested replicas fit on this machine "
            f"({capacity['reason']})"
        )
    if api.get("warning"):
        parts.append(f"warning: {printable(api['warning'])}")
    parts.append(f"url: {api['url']}")
    # quoted: zsh (and bash with failglob) would take an unquoted `?` for a file pattern
    key = f' -H "{api["key_header"]}"' if api.get("key_header") else ""
    parts.append(
        f"curl '{api['url']}?debug=true' -X POST -H \"Content-Type: application/json\"{key} -d @sample.json"
    )
    if verbose:
        signature = api.get("signature") or {}
        inputs = signature.get("inputs") or []
        if inputs:
            parts.append(
                table(
                    ["model input", "type", "shape"],
                    [[i["name"], i.get("type") or i["dtype"], _shape(i["shape"])] for i in inputs],
                )
            )
        outputs = signature.get("outputs") or []
        if outputs:
            parts.append(
                table(
                    ["model output", "type", "shape"],
                    [[o["name"], o.get("type") or o["dtype"], _shape(o["shape"])] for o in outputs],
                )
            )
        if api.get("error_detail"):
            parts.append(printable(api["error_detail"], keep="\n"))
        parts.append(_config_yaml(api))
    return "\n\n".join(parts)


def replica_table(replicas: Sequence[dict[str, Any]]) -> str:
    """One row per replica: what its model runs on and, on GPUs, each device's usage."""
    rows: list[list[Any]] = []
    with_gpus = any(r.get("gpus") for r in replicas)
    for replica in replicas:
        row: list[Any] = [replica["id"], replica["state"], replica.get("device")]
        gpus = (replica.get("gpus") or [{}]) if with_gpus else []
        for index, gpu in enumerate(gpus):
            cells = [gpu_name(gpu), percent(gpu.get("utilization")), gpu_memory(gpu)]
            rows.append(row + cells if index == 0 else ["", "", "", *cells])
        if not gpus:
            rows.append(row)
    headers = ["replica", "state", "runs on"]
    if with_gpus:
        headers += ["gpu", "gpu util", "gpu memory"]
    return table(headers, rows)


def gpu_name(gpu: dict[str, Any]) -> str | None:
    if not gpu:
        return None
    index = gpu.get("index")
    return str(gpu.get("uuid", ""))[:12] if index is None else f"{index} ({str(gpu.get('uuid', ''))[:12]})"


def percent(value: float | None) -> str | None:
    return None if value is None else f"{value:.0f}%"


def percents(*fractions: float) -> list[str]:
    """Fractions as percentages with one decimal, or with as many more (up to 6) as it takes for
    none to read as 100% or 0% when it is not, and for different ones to read differently: 3,999
    answers agreeing of 4,000 read "agreement 100.0%, 1 disagreements", and a promote was refused
    as "agreed 100.0%, below --min-agreement 100.0%"."""
    texts: list[str] = []
    for digits in range(1, 7):
        texts = [f"{fraction:.{digits}%}" for fraction in fractions]
        whole, none = f"{1:.{digits}%}", f"{0:.{digits}%}"
        misread = any(
            (fraction < 1 and text == whole) or (fraction > 0 and text == none)
            for fraction, text in zip(fractions, texts, strict=True)
        )
        if not misread and len(set(texts)) == len(set(fractions)):
            break
    return texts


def gpu_memory(gpu: dict[str, Any]) -> str | None:
    used, total = gpu.get("memory_used"), gpu.get("memory_total")
    if used is None:
        return None
    mib = 2**20
    return f"{used / mib:.0f} MiB" if total is None else f"{used / mib:.0f} / {total / mib:.0f} MiB"


def _requested(api: dict[str, Any]) -> str:
    """``requested``, with how many fit when this machine's capacity caps it (``12 (6 fit)``)."""
    capacity = api.get("capacity")
    return f"{api['requested']} ({capacity['fit']} fit)" if capacity else str(api["requested"])


def _shape(shape: list[int] | None) -> str:
    return "?" if shape is None else "(" + ", ".join("?" if d == -1 else str(d) for d in shape) + ")"


def _config_yaml(api: dict[str, Any]) -> str:
    import yaml

    config = dict(api.get("config") or {})
    config["endpoint"] = api["endpoint"]
    # as the user wrote it ("héllo", "猫"), not "h\xE9llo"; control characters stay escaped
    return yaml.dump([config], Dumper=_dumper(), sort_keys=False, allow_unicode=True).rstrip()


def _dumper() -> Any:
    """YAML's safe dumper, but a string holding a character a terminal does not show as it is
    (``str.isprintable``; tabs and line ends aside) is quoted with every escape: with non-ASCII
    text written as it is, YAML wrote as they are a C1 control (NEL), a line separator, a bidi
    override or a zero-width space, which broke the value's line or showed it reversed."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def analyze_scalar(self, scalar: str) -> Any:
            analysis = super().analyze_scalar(scalar)
            if not _shown_as_is(scalar):
                analysis.allow_flow_plain = analysis.allow_block_plain = False
                analysis.allow_single_quoted = analysis.allow_block = False
            return analysis

        def write_double_quoted(self, text: str, split: bool = True) -> None:
            allow_unicode, self.allow_unicode = self.allow_unicode, _shown_as_is(text)
            try:
                super().write_double_quoted(text, split)
            finally:
                self.allow_unicode = allow_unicode

    return Dumper


def _shown_as_is(text: str) -> bool:
    return text.isprintable() or all(ch.isprintable() or ch in "\n\t" for ch in text)
