"""What the dashboard's page shows, in one JSON answer per refresh: the operator, and each API's
status, replicas, metrics, history columns, GPUs, shadow and a curl line to call it.

The dashboard (``dashboard.py``) serves it and adds each API's latest log lines and payload
records, read off the event loop; everything here reads the operator's state in memory, once
per API (the event loop that builds it also runs the gateway).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson

from inferd import __version__
from inferd.operator.history import History

if TYPE_CHECKING:
    from inferd.operator.server import Operator


def overview(operator: Operator, history: History) -> dict[str, Any]:
    """Everything the page shows but the files (the dashboard's ``_read_files``), in one answer per
    refresh; ``history``: the dashboard's samples."""
    # how many deployments have an API of each name (asked of every API for each, 138 APIs'
    # overview took 140-240 ms of the event loop that runs the gateway)
    names = Counter(state.config.name for state in operator.engine.apis.values())
    return {
        "operator": {
            "version": __version__,
            "gateway": operator.gateway_url,
            "started": operator.started,
        },
        "now": time.time(),
        "sample_seconds": history.period,
        "window_seconds": history.window,
        "apis": [_api(operator, history, name, names) for name in sorted(operator.engine.apis)],
        "splitters": operator.gateway.splitters.describe(),
    }


def _api(operator: Operator, history: History, name: str, names: Counter[str]) -> dict[str, Any]:
    info = operator.api_info(name)
    keys = (
        "name",
        "deployment",
        "endpoint",
        "url",
        "model_format",
        "status",
        "requested",
        "available",
        "up_to_date",
        "stale",
        "failed",
        "in_flight",
        "last_update",
        "updated_ago",
        "error",
        "metrics",
        "signature",
    )
    result = {key: info.get(key) for key in keys}
    # Shown (and keyed in the page) by name, or by deployment/api while two deployments share it.
    if names[info["name"]] > 1:
        result["name"] = info["key"]
    tracker = info.get("tracker") or {}
    result["tracker_type"] = tracker.get("model_type")
    key = f' -H "{info["key_header"]}"' if info.get("key_header") else ""
    result["curl"] = f'curl {info["url"]} -X POST -H "Content-Type: application/json"{key} -d @sample.json'
    result["history"] = orjson.Fragment(history.columns_json(name))
    result["gpus"] = [
        {"replica": replica["id"], "device": replica.get("device"), **gpu}
        for replica in info.get("replicas") or []
        for gpu in replica.get("gpus") or []
    ]
    result["shadow"] = info.get("shadow")
    # whether the API records its requests: the page shows an empty payload log as such
    result["payload_log"] = bool((info.get("config") or {}).get("payload_log"))
    result["key"] = name  # whose files the dashboard's ``_send_overview`` adds
    return result
