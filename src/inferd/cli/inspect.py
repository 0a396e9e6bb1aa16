"""``inferd get``, ``logs`` and ``predict``: look at deployed APIs and use them."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from inferd.cli import render
from inferd.cli.api_http import post_sample
from inferd.cli.backends import Backend, backend_for, key_of, ray_backend
from inferd.cli.options import deployment_option, env_option, folder_deployment, in_deployment, key_option
from inferd.cli.traffic import find_splitter, splitter_rows
from inferd.client import Client
from inferd.errors import InferdError, NotFoundError, OperatorError, UsageError, in_several_deployments

if TYPE_CHECKING:
    from collections.abc import Iterator

    import requests

    from inferd.environments import Environment


def _read_by_apis(body: bytes) -> bool:
    """Whether an API reads ``body`` although orjson does not (NaN, Infinity: Python's json)."""
    from inferd import codec
    from inferd.errors import InputError

    try:
        codec.loads(body)
    except InputError:
        return False
    return True


def resolve(client: Backend, name: str) -> str:
    """The key (``deployment/api``) of the API that ``name`` names.

    ``name`` is ``API`` or ``DEPLOYMENT/API``; API may be a unique prefix of the name (as Cortex).
    A name that several deployments use means the one of the project in the current folder (as
    Cortex read it from ``./cortex.yaml``); elsewhere it is an error that lists them.
    """
    keys = sorted(key_of(api) for api in client.apis())
    deployment, _, api = name.rpartition("/")
    candidates = [key for key in keys if not deployment or key.partition("/")[0] == deployment]
    exact = [key for key in candidates if key.partition("/")[2] == api]
    matches = exact or [key for key in candidates if key.partition("/")[2].startswith(api)]
    if len(matches) == 1:
        return matches[0]
    here = None if deployment or len(matches) < 2 else folder_deployment()
    if here is not None:
        ours = [key for key in matches if key.partition("/")[0] == here]
        if len(ours) == 1:
            return ours[0]
    if exact:
        raise in_several_deployments("api", name, exact)
    if matches:
        raise UsageError(f"'{name}' matches several APIs: {', '.join(matches)}")
    raise NotFoundError(f"no API named '{name}' (deployed: {', '.join(keys) or 'none'})")


@click.command()
@click.argument("api", required=False)
@click.option(
    "-w",
    "--watch",
    is_flag=True,
    help="Re-run every 2 seconds until Ctrl-C (with -o json: one JSON document per line).",
)
@click.option("-v", "--verbose", is_flag=True, help="Also the signature, the error details and the config.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "-d", "--deployment", default=None, metavar="NAME", help="Only the APIs of this deployment (Cortex's -d)."
)
@click.option(
    "-a",
    "--all-deployments",
    is_flag=True,
    help="The APIs of every deployment, also in a project folder (Cortex's -a).",
)
@click.option("-s", "--summary", is_flag=True, help="One line: how many APIs have each status (Cortex's -s).")
@env_option
def get(
    api: str | None,
    watch: bool,
    verbose: bool,
    output: str,
    deployment: str | None,
    all_deployments: bool,
    summary: bool,
    env: Environment,
) -> None:
    """Show the APIs: status, replicas, last update; for one API also its traffic and tracker;
    for a traffic splitter its weights, the requests each API got and its shadow.

    \b
    Columns (as Cortex): up-to-date = ready replicas of the current version; available = all
    ready replicas; requested = the replica count wanted now; failed = replicas that crashed
    or failed to load; timed out = replicas stopped because a request overran its timeout.

    \b
    API is a name, or DEPLOYMENT/API when several deployments have an API of that name.
    In a project folder whose deployment is up, inferd get shows that deployment (as Cortex
    did); -a shows every one.

    \b
    Examples:
      inferd get
      inferd get classifier -v
      inferd get iris/classifier
      inferd get -o json
      inferd get -d iris -s          # Cortex's flags: one deployment, a one-line summary
    """
    if deployment is not None and all_deployments:
        raise UsageError("give -d/--deployment or -a/--all-deployments, not both")
    if api is not None:
        api = in_deployment(api, deployment)
    client = backend_for(env)
    here = None if api or deployment or all_deployments else folder_deployment()
    if not watch:
        click.echo(_get_once(client, api, verbose, output, None if api else deployment, summary, here))
        return
    # JSON Lines: each line parses alone (a stream of indented documents parsed as nothing)
    lines = "json-lines" if output == "json" else output
    with until_ctrl_c():
        while True:
            text = _get_once(client, api, verbose, lines, None if api else deployment, summary, here)
            if output != "json":
                click.clear()  # on a terminal; piped, each table follows the last
            click.echo(text)
            sys.stdout.flush()
            time.sleep(2)


@contextlib.contextmanager
def until_ctrl_c() -> Iterator[None]:
    """Ctrl-C ends a -w/-f loop as the help says it does: quietly, exit 0 (not click's "Aborted!")."""
    try:
        yield
    except KeyboardInterrupt:
        sys.stdout.flush()


def _get_once(
    client: Backend,
    api: str | None,
    verbose: bool,
    output: str,
    deployment: str | None = None,
    summary: bool = False,
    here: str | None = None,
) -> str:
    """One ``inferd get``: a table, or with ``output`` json (indented) or json-lines (one line)."""

    def dumps(data: object) -> str:
        return json.dumps(data) if output == "json-lines" else json.dumps(data, indent=2)

    if api is not None and isinstance(client, Client):
        deployment, _, name = api.rpartition("/")
        found = [s for s in client.splitters() if s["name"] == name and deployment in ("", s["deployment"])]
        # An API of that very name wins, as on the V2 route and in `inferd predict`.
        named = [a for a in client.apis() if a["name"] == name and deployment in ("", a["deployment"])]
        if found and not named:  # a traffic splitter: its weights, requests per API and shadow
            return dumps(found) if output != "table" else splitter_rows(found)
    if api is not None:
        detail = client.api(resolve(client, api))
        return dumps([detail]) if output != "table" else render.api_detail(detail, verbose)
    apis = client.apis()
    splitters = client.splitters() if isinstance(client, Client) else []
    others = 0
    if here is not None and any(entry["deployment"] == here for entry in [*apis, *splitters]):
        # The project folder's deployment, as Cortex's get in a folder with a cortex.yaml.
        others = len({entry["deployment"] for entry in apis} - {here})
        apis = [entry for entry in apis if entry["deployment"] == here]
        splitters = [entry for entry in splitters if entry["deployment"] == here]
    if deployment is not None:
        apis = [entry for entry in apis if entry["deployment"] == deployment]
        splitters = [entry for entry in splitters if entry["deployment"] == deployment]
        if not apis and not splitters:
            raise NotFoundError(f"no deployment named '{deployment}'")
    if summary:
        return dumps(_status_counts(apis)) if output != "table" else _summary(apis)
    if output != "table":
        if isinstance(client, Client):  # each API names the splitters that route to it
            for entry in apis:
                entry["splitters"] = [
                    {"name": s["name"], "weight": a["weight"], "requests": a["requests"]}
                    for s in splitters
                    if s["deployment"] == entry["deployment"]
                    for a in s["apis"]
                    if a["name"] == entry["name"]
                ]
        return dumps(apis)
    lost = _unrestored(client, deployment)
    if not apis:
        return "\n\n".join([*lost, "no APIs are deployed (inferd deploy PROJECT_DIR)"])
    text = render.api_rows(apis)
    if splitters:
        text += "\n\n" + splitter_rows(splitters)
    if others:
        text += f"\n\nonly deployment '{here}', this folder's: inferd get -a shows all {others + 1}"
    return "\n\n".join([text, *lost])


def _unrestored(client: Backend, deployment: str | None) -> list[str]:
    """A line for each deployment the operator could not bring back when it started."""
    if not isinstance(client, Client):
        return []
    lost: dict[str, dict[str, str]] = client.info().get("unrestored") or {}
    return [
        f"deployment '{name}' was not restored when the operator started: {lost[name]['reason']}; "
        f"deploy it again (inferd deploy {lost[name]['source']}) or delete it (inferd delete {name})"
        for name in sorted(lost)
        if deployment in (None, name)
    ]


def _status_counts(apis: list[dict[str, Any]]) -> dict[str, int]:
    """How many APIs have each status (``get -s -o json``: ``{"live": 2}``)."""
    counts: dict[str, int] = {}
    for entry in apis:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return counts


def _summary(apis: list[dict[str, Any]]) -> str:
    """Cortex's ``get -s``: ``apis: 2 live | 1 updating``."""
    if not apis:
        return "apis: none deployed"
    counts = _status_counts(apis)
    return "apis: " + " | ".join(f"{count} {status}" for status, count in counts.items())


DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: a duration back from now (``30s``, ``10m``, ``2h``, ``1d``) or a local time
    (``2026-11-29 08:00``, ``2026-11-29T08:00:00``); epoch seconds."""
    found = DURATION.match(text.strip())
    if found is not None:
        return (time.time() if now is None else now) - float(found.group(1)) * SECONDS[found.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UsageError(
            f"--since {text!r} must be a duration (30s, 10m, 2h, 1d) or a time (2026-11-29 08:00)"
        ) from None


@click.command()
@click.argument("api")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option(
    "-n",
    "--tail",
    type=click.IntRange(min=0),
    default=None,
    help="Start with the last N lines (default 100 unless --since is given; 0 with -f: new lines only).",
)
@click.option("--since", default=None, help="Only lines written since: 30s, 10m, 2h, 1d or a local time.")
@click.option("--access", is_flag=True, help="The access lines (one JSON line per request) instead.")
@deployment_option
@env_option
def logs(
    api: str,
    follow: bool,
    tail: int | None,
    since: str | None,
    access: bool,
    deployment: str | None,
    env: Environment,
) -> None:
    """Print an API's latest logs: its replicas' output and inferd's events (load errors,
    restarts); --access for the access lines.

    Shows the last 100 lines (--tail N, or --since), newest last; -f then follows. Logs are
    rotated by size (the API's two logs share INFERD_LOG_MAX_BYTES, default 64 MiB;
    INFERD_LOG_BACKUPS older files, default 3), and older files are read when --tail or
    --since reach into them.

    API is a name, or DEPLOYMENT/API when several deployments have an API of that name.

    \b
    Examples:
      inferd logs classifier
      inferd logs iris/classifier -f
      inferd logs classifier --since 10m
      inferd logs classifier --access --tail 20
    """
    api = in_deployment(api, deployment)
    if not env.is_local:
        if tail is not None or since is not None or access:
            raise UsageError("--tail, --since and --access work with the local environment only")
        _ray_logs(api, follow, env)
        return
    start = parse_since(since) if since is not None else None
    client = Client()
    if not client.running():  # after `inferd down` the files are still there: read them
        from inferd.operator.logs import offline_key, read_logs

        home, key = client.home, offline_key(client.home, api)

        def fetch(cursor: str | None) -> dict[str, Any]:
            return read_logs(home, key, access=access, cursor=cursor, tail=tail, since=start)

    else:
        try:
            name = resolve(client, api)
        except NotFoundError as exc:
            name = api  # a deleted API's log stays readable
            try:
                client.logs(name, tail=0)
            except NotFoundError:
                raise exc from None

        def fetch(cursor: str | None) -> dict[str, Any]:
            if cursor is None:
                return client.logs(name, tail=tail, since=start, access=access)
            return client.logs(name, cursor=cursor, access=access)

    cursor: str | None = None
    with until_ctrl_c():
        while True:
            result = fetch(cursor)
            cursor = str(result["cursor"])
            if result["text"]:
                click.echo(result["text"], nl=False)
            if result["more"]:
                continue
            if not follow:
                return
            time.sleep(0.25)


def _ray_logs(api: str, follow: bool, env: Environment) -> None:
    """The replicas' stdout and stderr on the Ray cluster (read on their nodes)."""
    backend = ray_backend(env)
    name = resolve(backend, api)
    cursor = None
    with until_ctrl_c():
        while True:
            text, cursor = backend.logs(name, cursor)
            if text:
                click.echo(text, nl=False)
            if not follow:
                return
            if not text:
                time.sleep(1)


@click.command()
@click.argument("api")
@click.argument("sample", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--debug", is_flag=True, help="Log every stage of the pipeline in the API's log.")
@key_option
@deployment_option
@env_option
def predict(
    api: str, sample: Path, debug: bool, api_key: str | None, deployment: str | None, env: Environment
) -> None:
    """Send a JSON sample to an API and print the prediction.

    API is a name (or a unique prefix of one), or DEPLOYMENT/API when several deployments have
    an API of that name; or a traffic splitter's name (the API it picks answers). SAMPLE is a
    JSON file, or - for standard input.

    \b
    Examples:
      inferd predict classifier examples/iris-onnx/sample.json
      echo '[5.1, 3.5, 1.4, 0.2]' | inferd predict classifier -
      inferd predict iris/classifier examples/iris-onnx/sample.json
      inferd predict classifier sample.json -d iris   # Cortex's -d
      inferd predict guarded sample.json --key "$MY_KEY"   # an API with auth:
    """
    stdin = str(sample) == "-"
    body = sys.stdin.buffer.read() if stdin else sample.read_bytes()
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # say so here, not as the API's 400 about "its" input
        if not _read_by_apis(body):
            where = "stdin" if stdin else sample
            raise UsageError(f"{where} is not JSON ({exc}): a sample is a JSON request body") from None
    api = in_deployment(api, deployment)
    client = backend_for(env)
    info = _target(client, api)
    response = post_sample(info["url"], body, debug=debug, key=api_key, stream=True)
    name = response.headers.get("X-Inferd-Api", info["name"])  # through a splitter: the API that answered
    with response:
        if response.ok and response.headers.get("content-type") == "application/x-ndjson":
            _print_stream(name, response)
            return
        _print_answer(name, response)


def _print_answer(name: str, response: requests.Response) -> None:
    import requests

    try:
        response.content  # noqa: B018 (read whole here: a cut-off answer is said as one line)
    except requests.RequestException as exc:
        raise OperatorError(f"cannot reach {response.url}: {exc}") from None
    answer: Any
    try:
        answer = response.json()
    except ValueError:
        answer = response.text
    if response.status_code >= 400:
        message = str(answer.get("error") if isinstance(answer, dict) else answer)
        if message.startswith(f"api '{name}' "):  # the gateway named the API already
            raise InferdError(f"{message} ({response.status_code})")
        raise InferdError(f"api '{name}' answered {response.status_code}: {message}")
    click.echo(json.dumps(answer, indent=2) if not isinstance(answer, str) else json.dumps(answer))
    sys.stdout.flush()


def _target(client: Backend, name: str) -> dict[str, Any]:
    """What ``inferd predict NAME`` posts to: the API ``name`` names, or the traffic splitter of
    that very name (which beats an API whose name only begins with it)."""
    try:
        key = resolve(client, name)
    except NotFoundError:
        splitter = _splitter(client, name) if isinstance(client, Client) else None
        if splitter is None:
            raise
        return splitter
    if key.partition("/")[2] != name.rpartition("/")[2] and isinstance(client, Client):
        splitter = _splitter(client, name)
        if splitter is not None:
            return splitter
    return client.api(key)


def _splitter(client: Client, name: str) -> dict[str, Any] | None:
    """The name and URL of the traffic splitter ``name`` names (``None``: none does)."""
    try:
        deployment, bare, apis = find_splitter(client, name)
    except NotFoundError:
        return None
    endpoint = next(
        s["endpoint"] for s in client.splitters() if (s["deployment"], s["name"]) == (deployment, bare)
    )
    first = client.api(f"{deployment}/{apis[0]}")  # the gateway's address, from one of its APIs
    return {"name": bare, "url": str(first["url"])[: -len(first["endpoint"])] + endpoint}


def _print_stream(name: str, response: requests.Response) -> None:
    """A streamed answer (NDJSON): each item on its line as it arrives; a last ``{"error": ...}``
    line fails."""
    import requests

    try:
        for line in response.iter_lines():
            if not line:
                continue
            item = json.loads(line)
            if isinstance(item, dict) and list(item) == ["error"]:
                raise InferdError(f"api '{name}' failed mid-stream: {item['error']}")
            click.echo(json.dumps(item))
            sys.stdout.flush()
    except requests.RequestException as exc:
        raise InferdError(f"api '{name}': the stream was cut off: {exc}") from None
