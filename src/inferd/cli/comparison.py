"""Answers compared with recorded ones, as ``inferd replay`` reports them: equal answers, numbers
within a tolerance, status changes, errors and the latency of both, with the first
disagreements side by side (sent again with ``compare``, or recorded from a shadow).
"""

from __future__ import annotations

import math
import time
from typing import Any

import orjson

from inferd.cli.api_http import api_headers
from inferd.errors import ForbiddenError, InferdError, UnauthorizedError

SHOWN = 5  # disagreements shown side by side
# V2 infer answers name the model that gave them: compared without these fields.
NAMING = ("model_name", "model_version")
# A key OTHER refused (or none given where it takes one): the replay stops rather than count them.
REFUSED: dict[int, type[InferdError]] = {401: UnauthorizedError, 403: ForbiddenError}


def agree(recorded: Any, replayed: Any, tolerance: float) -> bool:
    """Equal answers, numbers within ``tolerance`` of each other (at any depth)."""
    numbers = (int, float)
    if isinstance(recorded, numbers) and isinstance(replayed, numbers):
        if isinstance(recorded, bool) or isinstance(replayed, bool):
            return recorded is replayed
        # Exact arithmetic: ``math.isclose`` turns whole numbers into floats, which cannot tell
        # 2**60 from 2**60 + 1 (ids, hashes); inf - inf is NaN, so only equal infinities agree.
        return recorded == replayed or abs(recorded - replayed) <= tolerance
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        return recorded.keys() == replayed.keys() and all(
            agree(recorded[k], replayed[k], tolerance) for k in recorded
        )
    if isinstance(recorded, list) and isinstance(replayed, list):
        return len(recorded) == len(replayed) and all(
            agree(a, b, tolerance) for a, b in zip(recorded, replayed, strict=True)
        )
    return bool(recorded == replayed)


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``None`` for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)], 3)


def unnamed(protocol: str, answer: dict[str, Any]) -> dict[str, Any]:
    """An answer (``{"json": ...}``) of a V2 route without the fields that name its model."""
    body = answer.get("json")
    if protocol != "v2" or not isinstance(body, dict):
        return answer
    return {**answer, "json": {k: v for k, v in body.items() if k not in NAMING}}


class Tally:
    """Answers compared with the recorded ones: what ``replay`` reports, sent again or shadowed."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.agreed = self.errors = self.status_changes = 0
        self.examples: list[dict[str, Any]] = []
        self.recorded_ms: list[float] = []
        self.replayed_ms: list[float] = []

    def add(self, record: dict[str, Any], status: int, answer: dict[str, Any], latency_ms: float) -> None:
        """One recorded request answered again with ``status`` and ``answer`` (``{"json": ...}``)."""
        self.recorded_ms.append(float(record["latency_ms"]))
        self.replayed_ms.append(latency_ms)
        if status != record["status"]:
            self.status_changes += 1
            if status >= 400:
                self.errors += 1
        recorded = unnamed(record["protocol"], record["response"])
        answer = unnamed(record["protocol"], answer)
        if status == record["status"] and agree(recorded, answer, self.tolerance):
            self.agreed += 1
        elif len(self.examples) < SHOWN:
            self.examples.append(
                {
                    "request_id": record["request_id"],
                    "request": record["request"].get("json"),
                    "recorded": {"status": record["status"], **recorded},
                    "replayed": {"status": status, **answer},
                }
            )

    def report(self, count: int) -> dict[str, Any]:
        recorded, replayed = self.recorded_ms, self.replayed_ms
        return {
            "requests": count,
            # unrounded: rounded to 6 decimals, 1 disagreement in 2,000,001 read 1.0 (and passed
            # promote --min-agreement 1)
            "agreement": self.agreed / count if count else None,
            "disagreements": count - self.agreed,
            "errors": self.errors,
            "status_changes": self.status_changes,
            "latency_ms": {
                "recorded": {"p50": percentile(recorded, 0.5), "p99": percentile(recorded, 0.99)},
                "replayed": {"p50": percentile(replayed, 0.5), "p99": percentile(replayed, 0.99)},
            },
            "first_disagreements": self.examples,
        }


def gateway_latency(header: str) -> float | None:
    """The gateway's latency in a ``Server-Timing: inferd;dur=MS`` answer header (``None``: none)."""
    name, _, duration = header.partition(";dur=")
    try:
        return float(duration) if name.strip() == "inferd" else None
    except ValueError:
        return None


def refusal(response: Any) -> str:
    """The message of an error answer (its ``error``), else its text."""
    try:
        message = response.json().get("error")
    except (ValueError, AttributeError):
        message = None
    return message if isinstance(message, str) else str(response.text)


def answer_of(response: Any) -> dict[str, Any]:
    """An answer as the payload log records it: its JSON; a streamed answer (NDJSON, the
    endpoint's stream to a client that asks for no events) as the list of its items; else text."""
    if response.headers.get("Content-Type", "").startswith("application/x-ndjson"):
        from inferd.widejson import loads_as_written

        try:
            return {"json": [loads_as_written(line) for line in response.content.splitlines() if line]}
        except orjson.JSONDecodeError:
            pass
    try:
        return {"json": response.json()}
    except ValueError:
        return {"text": response.text}


def compare(
    records: list[tuple[dict[str, Any], str]], tolerance: float, key: str | None = None, mark: bytes = b""
) -> dict[str, Any]:
    """Send each recorded JSON request to its URL (with API key ``key``, and ``mark``, the
    operator's ``X-Inferd-Replay``: gateway/wire.py); count agreements, errors and latencies."""
    import requests

    from inferd import codec

    # The gateway's own latency back (Server-Timing), and no record of these in OTHER's payload log
    headers = {**api_headers(key), "X-Inferd-Timing": "1"}
    if mark:
        headers["X-Inferd-Replay"] = mark.decode()

    tally = Tally(tolerance)
    with requests.Session() as session:
        session.trust_env = False
        for record, url in records:
            body = codec.dumps(record["request"]["json"])  # an integer beyond 64 bits as recorded
            started = time.perf_counter()
            try:
                response = session.post(url, data=body, timeout=60, headers=headers)
            except requests.RequestException:
                tally.errors += 1
                continue
            if response.status_code in REFUSED and record["status"] not in REFUSED:
                # OTHER refused the key: every request would be, each read as a disagreement.
                refused = REFUSED[response.status_code]
                raise refused(f"{url} refused the key given: {refusal(response)}; the replay stopped")
            latency_ms = gateway_latency(response.headers.get("Server-Timing", ""))
            if latency_ms is None:  # a server that does not say: the round trip seen here
                latency_ms = (time.perf_counter() - started) * 1000
            tally.add(record, response.status_code, answer_of(response), latency_ms)
    return tally.report(len(records))


def compare_shadow(records: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Compare each record's answer with its shadow's (recorded beside it): no request is sent."""
    tally = Tally(tolerance)
    for record in records:
        shadow = record["shadow"]
        tally.add(record, shadow["status"], shadow["response"], float(shadow["latency_ms"]))
    return tally.report(len(records))
