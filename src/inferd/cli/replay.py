"""``inferd replay``: send an API's recorded requests to another API and compare the answers, or
(``--shadow``) compare them with the answers its shadow gave, recorded beside them.

The result of the last replay (or shadow comparison) against each API is kept under
``$INFERD_HOME/replays`` so that ``inferd promote`` can refuse a candidate that agreed too little.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from inferd.cli.backends import backend_for
from inferd.cli.comparison import compare, compare_shadow
from inferd.cli.options import env_option, key_option, not_empty
from inferd.cli.render import percents
from inferd.cli.traffic import find_splitter, recorded_api, resolve_api
from inferd.client import Client
from inferd.errors import (
    ConflictError,
    InferdError,
    NotFoundError,
    OperatorError,
    UnauthorizedError,
    UsageError,
)
from inferd.storage import write_private

if TYPE_CHECKING:
    from inferd.environments import Environment


def route_of(record: dict[str, Any], info: dict[str, Any]) -> str | None:
    """Where a recorded request goes again: the other API's route (``info``: what ``inferd get``
    says of it) for the protocol the request came by; ``None`` when it is not sent again (a
    body that is not JSON, V2 binary tensors, V2 generate_stream, TF Serving's classify or regress)."""
    request = record["request"]
    if "json" not in request:
        return None
    protocol, url = record["protocol"], str(info["url"])
    if protocol in ("cortex", "generate"):  # a generate body is the sample, as on the endpoint,
        return url  # and its record keeps the answer as the endpoint gives it
    base = url[: len(url) - len(info["endpoint"])]
    model = f"{info['deployment']}.{info['name']}"  # the V2 / TF Serving name that never clashes
    if protocol == "v2":
        return f"{base}/v2/models/{model}/infer"
    body = request["json"]
    if protocol == "tfserving" and isinstance(body, dict) and ("instances" in body or "inputs" in body):
        return f"{base}/v1/models/{model}:predict"
    return None


def _finite_distance(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    """A tolerance ``-o json`` can print: NaN and infinity are not JSON numbers."""
    if not 0 <= value < math.inf:
        raise click.BadParameter(f"{value} is not a distance: give a finite number 0 or above")
    return value


def _fraction(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    """An agreement a replay can reach: NaN passed ``FloatRange(0, 1)`` (every comparison with it
    is false) and promoted whatever the last replay agreed."""
    if value is not None and math.isnan(value):
        raise click.BadParameter(f"{value} is not a fraction: give a number from 0 to 1")
    return value


def replay_path(home: Path, key: str) -> Path:
    """The last replay against API ``key``."""
    return home / "replays" / f"{key}.json"


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _answered(holder: object) -> bool:
    """Whether a record (or its shadow) has the status, answer and latency the gateway writes."""
    return (
        isinstance(holder, dict)
        and isinstance(holder.get("status"), int)
        and isinstance(holder.get("response"), dict)
        and _number(holder.get("latency_ms"))
    )


def replayable(record: dict[str, Any]) -> bool:
    """Whether a payload log's record has every field replay reads: a line another tool wrote,
    or edited by hand (``{"shadow": {}}``), ended replay in a KeyError traceback."""
    shadow = record.get("shadow")
    return (
        _answered(record)
        and isinstance(record.get("request"), dict)
        and isinstance(record.get("protocol"), str)
        and (shadow is None or (_answered(shadow) and isinstance(shadow.get("api"), str)))
    )


def _shadowed(client: Client, key: str, count: int) -> tuple[str, list[dict[str, Any]]]:
    """The shadow API of ``key``'s last shadowed record, and the last ``count`` records it answered."""
    from inferd.operator.payloads import read_payloads

    records = [r for r in read_payloads(client.home, key) if replayable(r) and r.get("shadow") is not None]
    if not records:
        try:  # the operator's count of the copies (none under `inferd serve`, or a deleted API)
            shadow = client.api(key).get("shadow")
        except (OperatorError, NotFoundError):
            shadow = None
        if isinstance(shadow, dict) and shadow.get("api"):
            deployment = key.partition("/")[0]
            raise NotFoundError(
                f"api '{key}' has no recorded shadow answers: its shadow '{shadow['api']}' answered none "
                f"of the copies ({shadow.get('sent', 0)} sent, {shadow.get('dropped', 0)} dropped; see "
                f"`inferd get {deployment}/{shadow['api']}`)"
            )
        raise NotFoundError(
            f"api '{key}' has no recorded shadow answers (set shadow: {{api: OTHER, percent: 10}} on it, "
            "or on a splitter that sends it requests)"
        )
    against = str(records[-1]["shadow"]["api"])
    return against, [r for r in records if r["shadow"]["api"] == against][-count:]


def judged_version(shadowed: list[dict[str, Any]]) -> str:
    """The shadow's version that answered last: ``""`` in a record whose shadow replica was gone
    when its answer was recorded, or whose copy never reached one (a 503 while queued)."""
    return next((str(v) for record in reversed(shadowed) if (v := record["shadow"].get("version"))), "")


@click.command()
@click.argument("api")
@click.option("--against", "other", default=None, help="The API to send the recorded requests to.")
@click.option(
    "--shadow",
    is_flag=True,
    help="Compare the answers API's shadow gave (recorded beside API's) instead of replaying.",
)
@click.option("-n", "count", type=click.IntRange(min=1), default=1000, show_default=True, help="The last N.")
@click.option(
    "--tolerance",
    type=float,
    callback=_finite_distance,
    default=0.0,
    show_default=True,
    help="Numbers agree within it (absolute: a finite number, 0 or above).",
)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@key_option
@env_option
def replay(
    api: str,
    other: str | None,
    shadow: bool,
    count: int,
    tolerance: float,
    output: str,
    api_key: str | None,
    env: Environment,
) -> None:
    """Send API's recorded requests (payload_log) to OTHER and compare the answers; or, with
    --shadow, compare API's recorded answers with its shadow's.

    \b
    Examples:
      inferd replay champion --against challenger
      inferd replay champion --against challenger -n 200 --tolerance 1e-6 -o json
      inferd replay champion --shadow
      inferd replay champion --against challenger --key "$MY_KEY"   # OTHER has auth:
    """
    from inferd.operator.payloads import read_payloads

    if (other is None) == (not shadow):
        raise UsageError("give either --against OTHER or --shadow")
    client = backend_for(env)
    if not isinstance(client, Client):
        raise UsageError("payload logs are kept by the local operator; use an environment of provider local")
    if shadow:  # files only: this works while only `inferd serve` runs too
        key = recorded_api(client, api)
        against, shadowed = _shadowed(client, key, count)
        compared = compare_shadow(shadowed, tolerance)
        version = judged_version(shadowed)
    else:
        assert other is not None
        key = recorded_api(client, api)  # a deleted API's payload log is replayed too
        against = resolve_api(client, other)
        recorded = [r for r in read_payloads(client.home, key, count) if replayable(r)]
        info = client.api(against)
        if info.get("status") == "error" and not info.get("available"):
            # Its 503s at once are no answers of its model: they would read as disagreements.
            raise ConflictError(
                f"api '{against}' cannot serve ({info.get('error')}): nothing was replayed (see "
                f"`inferd logs {against}`, deploy it again, then replay)"
            )
        if info.get("key_header") and not api_key:
            # Its 401s would read as disagreements, as an API that cannot serve's 503s would.
            raise UnauthorizedError(
                f"api '{against}' takes API keys (auth:): give one with --key KEY (or $INFERD_API_KEY); "
                "nothing was replayed"
            )
        routed = [(r, route_of(r, info)) for r in recorded]
        records = [(r, url) for r, url in routed if url is not None]
        if not records and recorded:
            raise NotFoundError(
                f"none of the last {len(recorded)} requests recorded for api '{key}' can be sent again "
                "(replay sends JSON requests to its endpoint, V2 infer and generate, and TF Serving "
                "predict; not V2 binary tensors, V2 generate_stream, or TF Serving classify and regress)"
            )
        if not records:
            raise NotFoundError(
                f"api '{key}' has no recorded JSON requests (set payload_log: {{sample: 0.1}} on it)"
            )
        from inferd.gateway.wire import replay_mark
        from inferd.operator.state import TOKEN_FILE

        # the operator's mark on replayed requests (gateway/wire.py), from its token
        mark = replay_mark((client.home / TOKEN_FILE).read_text().strip())
        compared = compare(records, tolerance, api_key, mark)
        version = str(info.get("version") or "")
    result = {
        "api": key,
        "against": against,
        "version": version,  # of `against`: promote judges by this replay only while it runs it
        "shadow": shadow,
        "tolerance": tolerance,
        **compared,
    }
    write_private(replay_path(client.home, against), json.dumps({**result, "time": time.time()}))
    if output == "json":
        click.echo(json.dumps(result, indent=2))
        return
    latency = result["latency_ms"]
    how = "compared with its shadow" if shadow else "replayed against"
    (agreement,) = percents(result["agreement"]) if result["agreement"] is not None else ("-",)
    click.echo(
        f"{result['requests']} requests of '{key}' {how} '{against}': agreement "
        f"{agreement}, {result['disagreements']} disagreements, {result['errors']} errors, "
        f"{result['status_changes']} status changes"
    )
    click.echo(
        f"latency p50/p99: recorded {latency['recorded']['p50']}/{latency['recorded']['p99']} ms, "
        f"{'shadow' if shadow else 'replayed'} {latency['replayed']['p50']}/{latency['replayed']['p99']} ms"
    )
    for example in result["first_disagreements"]:
        sides = f"{json.dumps(example['recorded'])} -> {json.dumps(example['replayed'])}"
        click.echo(f"  {json.dumps(example['request'])}: {sides}")


def _last_replay(path: Path, api: str) -> dict[str, Any]:
    """The last replay against ``api`` as ``inferd replay`` wrote it to ``path``; one cut off (a
    disk that filled) or of another shape ended ``inferd promote`` in a traceback."""
    try:
        last = json.loads(path.read_text(encoding="utf-8"))
        numbers = (
            last["requests"],
            last["disagreements"],
            *([last["agreement"]] if last["agreement"] else []),
        )
        if not isinstance(last["api"], str) or not all(isinstance(n, (int, float)) for n in numbers):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        raise ConflictError(
            f"not promoting '{api}': the last replay against it ({path}) cannot be read; replay it again "
            f"(`inferd replay API --against {api}`)"
        ) from None
    return dict(last)


@click.command()
@click.argument("splitter")
@click.argument("api")
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    callback=_fraction,
    default=None,
    help="Refuse when the last replay against API (or shadow comparison with it) agreed less (0..1).",
)
@env_option
def promote(splitter: str, api: str, min_agreement: float | None, env: Environment) -> None:
    """Give API weight 100 in SPLITTER (kept until the project is deployed again).

    SPLITTER may be DEPLOYMENT/SPLITTER, and must be when several deployments have a splitter of
    that name. With --min-agreement, the last `inferd replay ... --against API` (or shadow
    comparison with API) must have agreed at least that much, with the version of API running now.

    \b
    Examples:
      inferd replay champion --against challenger
      inferd promote recommend challenger --min-agreement 0.99
    """
    not_empty(splitter, "traffic splitter")
    not_empty(api)
    client = backend_for(env)
    if not isinstance(client, Client):
        raise UsageError("traffic splitters run on the local operator; use an environment of provider local")
    # The splitter and its API first (the operator would refuse them, after the replay's check).
    deployment, splitter, names = find_splitter(client, splitter)
    if api not in names:
        raise NotFoundError(f"splitter '{splitter}' has no api '{api}' (it has: {', '.join(names)})")
    judged: str | None = None  # the version the last replay saw, with --min-agreement
    if min_agreement is not None:
        path = replay_path(client.home, f"{deployment}/{api}")
        if not path.is_file():
            raise ConflictError(
                f"api '{api}' has no replay to judge it by; run `inferd replay API --against {api}` "
                f"(or `inferd replay API --shadow` where {api} is API's shadow) first"
            )
        last = _last_replay(path, api)
        which = "shadow comparison of" if last.get("shadow") else "replay of"
        judged, now = last.get("version"), client.api(f"{deployment}/{api}").get("version")
        if not judged:  # promoting on answers of an unknown version would skip the check below
            how = "--shadow" if last.get("shadow") else f"--against {api}"
            raise ConflictError(
                f"not promoting '{api}': the last {which} '{last['api']}' against it does not say which "
                f"version of '{api}' answered (none of the answers came from a replica running when they "
                f"were recorded); replay it again (`inferd replay {last['api']} {how}`)"
            )
        if now and judged != now:
            how = "--shadow" if last.get("shadow") else f"--against {api}"
            raise ConflictError(
                f"not promoting '{api}': the last {which} '{last['api']}' against it judged its version "
                f"{judged}, and it runs {now} now; replay it again (`inferd replay {last['api']} {how}`)"
            )
        if last["agreement"] is None:  # nothing was compared (no recorded requests)
            raise ConflictError(
                f"not promoting '{api}': the last {which} '{last['api']}' against it compared no "
                f"requests, so it cannot show --min-agreement {percents(min_agreement)[0]}"
            )
        if last["agreement"] < min_agreement:
            agreed, least = percents(last["agreement"], min_agreement)
            raise ConflictError(
                f"not promoting '{api}': the last {which} '{last['api']}' against it agreed "
                f"{agreed} ({last['requests'] - last['disagreements']} of {last['requests']} "
                f"requests), below --min-agreement {least}"
            )
    # (checked again by the operator: a promote waits for a deploy in progress, which may bring
    # the API a version this replay never saw)
    try:
        result = client.promote(f"{deployment}/{splitter}", api, judged)
    except KeyboardInterrupt:  # the operator has the request, and may be waiting to apply it
        raise InferdError(
            "stopped waiting (Ctrl-C); the promote goes on in the operator (once a deploy of "
            f"deployment '{deployment}' in progress ends): see `inferd get {splitter}`"
        ) from None
    click.echo(result["message"])
