"""Traffic in the CLI: the splitters ``inferd get`` lists, with weights and what each API got."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from inferd.cli.backends import backend_for
from inferd.cli.options import env_option, not_empty
from inferd.cli.render import table
from inferd.client import Client
from inferd.errors import NotFoundError, OperatorError, UsageError, in_several_deployments

if TYPE_CHECKING:
    from inferd.environments import Environment


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
    text = table(["splitter", "endpoint", "api", "weight", "requests", "share"], rows)
    shadows = [
        [
            s["name"],
            s["shadow"]["api"],
            f"{s['shadow']['percent']:g}%",
            s["shadow"]["sent"],
            s["shadow"]["dropped"],
            s["shadow"]["answered"],
            s["shadow"]["agreed"],
            s["shadow"]["errors"],
        ]
        for s in splitters
        if s.get("shadow")
    ]
    if shadows:
        headers = ["splitter", "shadow", "percent", "sent", "dropped", "answered", "agreed", "errors"]
        text += "\n\n" + table(headers, shadows)
    return text


def resolve_api(client: Client, name: str) -> str:
    """The key of the API ``name`` names; naming a traffic splitter instead is an error that
    lists its APIs (payload logs and replays are an API's)."""
    from inferd.cli.inspect import resolve

    try:
        return resolve(client, name)
    except NotFoundError:
        for splitter in client.splitters():
            if splitter["name"] == name.rpartition("/")[2]:
                apis = ", ".join(entry["name"] for entry in splitter["apis"])
                raise UsageError(
                    f"'{name}' is a traffic splitter, not an API: name one of its APIs ({apis})"
                ) from None
        raise


def recorded_api(client: Client, name: str) -> str:
    """The key of the API ``name`` names, as ``resolve_api`` finds it; else (no operator runs, as
    under ``inferd serve``, which writes payload logs too; or the API was deleted, and its payload
    log stays until ``inferd prune``) the API of that name with a payload log."""
    not_empty(name)
    try:
        return resolve_api(client, name)
    except (OperatorError, NotFoundError):
        deployment, _, api = name.rpartition("/")
        logs = (
            path.relative_to(client.home / "payloads") for path in client.home.glob("payloads/*/*.jsonl*")
        )
        keys = sorted({f"{log.parent}/{log.name.partition('.jsonl')[0]}" for log in logs})
        found = [
            key for key in keys if key.partition("/")[2] == api and deployment in ("", key.partition("/")[0])
        ]
        if not found:
            raise
        if len(found) > 1:
            raise in_several_deployments("api", name, found) from None
        return found[0]


def find_splitter(client: Client, name: str) -> tuple[str, str, list[str]]:
    """The deployment, name and APIs of the splitter ``name`` (``SPLITTER`` or
    ``DEPLOYMENT/SPLITTER``) names; an error when none or several do."""
    splitters = client.splitters()
    deployment, _, bare = name.rpartition("/")
    found = [s for s in splitters if s["name"] == bare and deployment in ("", s["deployment"])]
    if not found:
        known = ", ".join(sorted({s["name"] for s in splitters})) or "none"
        raise NotFoundError(f"no traffic splitter named '{name}' (splitters: {known})")
    if len(found) > 1:
        raise in_several_deployments(
            "splitter", name, sorted(f"{s['deployment']}/{s['name']}" for s in found)
        )
    return found[0]["deployment"], bare, [entry["name"] for entry in found[0]["apis"]]


def _shown(body: object) -> str:
    if not isinstance(body, dict):  # a record another tool wrote, or edited by hand
        return ""
    text = json.dumps(body["json"]) if "json" in body else "base64:" + str(body.get("base64", ""))
    return text if len(text) <= 40 else text[:37] + "..."


def _latency(record: dict[str, Any]) -> str:
    latency = record.get("latency_ms")
    return f"{latency:.1f} ms" if isinstance(latency, int | float) and not isinstance(latency, bool) else ""


@click.command()
@click.argument("api")
@click.option("-n", "count", type=click.IntRange(min=1), default=20, show_default=True, help="The last N.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@env_option
def payloads(api: str, count: int, output: str, env: Environment) -> None:
    """Show the requests and answers an API's payload_log recorded (newest last).

    The payload logs are files: they are read while only `inferd serve` runs too, and after
    the API is deleted (until `inferd prune`).

    \b
    Examples:
      inferd payloads classifier
      inferd payloads classifier -n 100 -o json
    """
    from inferd.operator.payloads import read_payloads

    client = backend_for(env)
    if not isinstance(client, Client):
        raise UsageError("payload logs are kept by the local operator; use an environment of provider local")
    key = recorded_api(client, api)
    records = read_payloads(client.home, key, count)
    if output == "json":
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo(f"no payloads recorded for api '{key}' (set payload_log: {{sample: 0.1}} on it)")
        return
    rows = [
        [
            str(r.get("request_id", "")),
            str(r.get("status", "")),
            _latency(r),
            str(r.get("version", "")),
            _shown(r.get("request")),
            _shown(r.get("response")),
        ]
        for r in records
    ]
    click.echo(table(["request id", "status", "latency", "version", "request", "response"], rows))
