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
import orjson

from inferd.cli.api_http import api_headers
from inferd.cli.backends import backend_for
from inferd.cli.options import env_option, key_option
from inferd.cli.traffic import find_splitter, recorded_api, resolve_api
from inferd.client import Client
from inferd.errors import ConflictError, NotFoundError, OperatorError, UsageError
from inferd.storage import write_private

if TYPE_CHECKING:
    from inferd.environments import Environment

SHOWN = 5  # disagreements shown side by side
# V2 infer answers name the model that gave them: compared without these fields.
NAMING = ("model_name", "model_version")


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


def route_of(record: dict[str, Any], info: dict[str, Any]) -> str | None:
    """Where a recorded request goes again: the other API's route (``info``: what ``inferd get``
    says of it) for the protocol the request came by; ``None`` when it is not sent again (a
    body that is not JSON, V2 binary tensors, a stream, TF Serving's classify or regress)."""
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
            "agreement": round(self.agreed / count, 6) if count else None,
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


def compare(
    records: list[tuple[dict[str, Any], str]], tolerance: float, key: str | None = None
) -> dict[str, Any]:
    """Send each recorded JSON request to its URL (with API key ``key``); count agreements,
    errors and latencies."""
    import requests

    # The gateway's own latency back (Server-Timing), and no record of these in OTHER's payload log
    headers = {**api_headers(key), "X-Inferd-Timing": "1", "X-Inferd-Replay": "1"}

    tally = Tally(tolerance)
    with requests.Session() as session:
        session.trust_env = False
        for record, url in records:
            body = orjson.dumps(record["request"]["json"])
            started = time.perf_counter()
            try:
                response = session.post(url, data=body, timeout=60, headers=headers)
            except requests.RequestException:
                tally.errors += 1
                continue
            latency_ms = gateway_latency(response.headers.get("Server-Timing", ""))
            if latency_ms is None:  # a server that does not say: the round trip seen here
                latency_ms = (time.perf_counter() - started) * 1000
            try:
                answer: dict[str, Any] = {"json": response.json()}
            except ValueError:
                answer = {"text": response.text}
            tally.add(record, response.status_code, answer, latency_ms)
    return tally.report(len(records))


def compare_shadow(records: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Compare each record's answer with its shadow's (recorded beside it): no request is sent."""
    tally = Tally(tolerance)
    for record in records:
        shadow = record["shadow"]
        tally.add(record, shadow["status"], shadow["response"], float(shadow["latency_ms"]))
    return tally.report(len(records))


def _shadowed(client: Client, key: str, count: int) -> tuple[str, list[dict[str, Any]]]:
    """The shadow API of ``key``'s last shadowed record, and the last ``count`` records it answered."""
    from inferd.operator.payloads import read_payloads

    records = [r for r in read_payloads(client.home, key) if isinstance(r.get("shadow"), dict)]
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
        recorded = read_payloads(client.home, key, count)
        info = client.api(against)
        if info.get("status") == "error" and not info.get("available"):
            # Its 503s at once are no answers of its model: they would read as disagreements.
            raise ConflictError(
                f"api '{against}' cannot serve ({info.get('error')}): nothing was replayed (see "
                f"`inferd logs {against}`, deploy it again, then replay)"
            )
        routed = [(r, route_of(r, info)) for r in recorded]
        records = [(r, url) for r, url in routed if url is not None]
        if not records and recorded:
            raise NotFoundError(
                f"none of the last {len(recorded)} requests recorded for api '{key}' can be sent again "
                "(replay sends JSON requests to its endpoint, V2 infer and generate, and TF Serving "
                "predict; not V2 binary tensors, streams, or TF Serving classify and regress)"
            )
        if not records:
            raise NotFoundError(
                f"api '{key}' has no recorded JSON requests (set payload_log: {{sample: 0.1}} on it)"
            )
        compared = compare(records, tolerance, api_key)
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
    click.echo(
        f"{result['requests']} requests of '{key}' {how} '{against}': agreement "
        f"{result['agreement']:.1%}, {result['disagreements']} disagreements, {result['errors']} errors, "
        f"{result['status_changes']} status changes"
    )
    click.echo(
        f"latency p50/p99: recorded {latency['recorded']['p50']}/{latency['recorded']['p99']} ms, "
        f"{'shadow' if shadow else 'replayed'} {latency['replayed']['p50']}/{latency['replayed']['p99']} ms"
    )
    for example in result["first_disagreements"]:
        sides = f"{json.dumps(example['recorded'])} -> {json.dumps(example['replayed'])}"
        click.echo(f"  {json.dumps(example['request'])}: {sides}")


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
    client = backend_for(env)
    if not isinstance(client, Client):
        raise UsageError("traffic splitters run on the local operator; use an environment of provider local")
    # The splitter and its API first (the operator would refuse them, after the replay's check).
    deployment, splitter, names = find_splitter(client, splitter)
    if api not in names:
        raise NotFoundError(f"splitter '{splitter}' has no api '{api}' (it has: {', '.join(names)})")
    if min_agreement is not None:
        path = replay_path(client.home, f"{deployment}/{api}")
        if not path.is_file():
            raise ConflictError(
                f"api '{api}' has no replay to judge it by; run `inferd replay API --against {api}` "
                f"(or `inferd replay API --shadow` where {api} is API's shadow) first"
            )
        last = json.loads(path.read_text())
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
                f"requests, so it cannot show --min-agreement {min_agreement:.1%}"
            )
        if last["agreement"] < min_agreement:
            raise ConflictError(
                f"not promoting '{api}': the last {which} '{last['api']}' against it agreed "
                f"{last['agreement']:.1%} ({last['requests'] - last['disagreements']} of {last['requests']} "
                f"requests), below --min-agreement {min_agreement:.1%}"
            )
    click.echo(client.promote(f"{deployment}/{splitter}", api)["message"])
