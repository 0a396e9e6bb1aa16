"""``inferd get``: the deployed APIs, their status and traffic (``logs`` and ``predict`` are
in their own modules and use ``resolve`` from here)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from inferd.cli import render
from inferd.cli.backends import Backend, backend_for, key_of
from inferd.cli.options import api_name, env_option, folder_deployment, in_deployment, not_empty
from inferd.cli.traffic import splitter_rows
from inferd.client import Client
from inferd.errors import NotFoundError, UsageError, deployed_hint, in_several_deployments

if TYPE_CHECKING:
    from collections.abc import Iterator

    from inferd.environments import Environment


def resolve(client: Backend, name: str) -> str:
    """The key (``deployment/api``) of the API that ``name`` names.

    ``name`` is ``API`` or ``DEPLOYMENT/API``; API may be a unique prefix of the name (as Cortex).
    A name that several deployments use means the one of the project in the current folder (as
    Cortex read it from ``./cortex.yaml``); elsewhere it is an error that lists them.
    """
    deployment, _, api = api_name(name).rpartition("/")
    keys = sorted(key_of(api) for api in client.apis())
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
    raise NotFoundError(f"no API named '{name}' ({deployed_hint(name, keys)})")


@click.command()
@click.argument("api", required=False)
@click.option(
    "-w",
    "--watch",
    is_flag=True,
    help="Re-run every second (as Cortex) until Ctrl-C (with -o json: one JSON document per line).",
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
    ready replicas; requested = the replica count wanted now; failed (when not 0) = replicas
    that crashed, failed to load or ran out of memory; timed out (inferd get API, when not 0)
    = replicas stopped because a request overran its timeout.

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
    if deployment is not None:
        not_empty(deployment, "deployment")
    if api is not None:
        api = in_deployment(api, deployment)
    client = backend_for(env)
    here = None if api or deployment or all_deployments else folder_deployment()
    if not watch:
        click.echo(_get_once(client, api, verbose, output, None if api else deployment, summary, here))
        hint = client.restart_hint() if isinstance(client, Client) else None
        if hint is not None:  # it answers, but with its old code (an API failing to load, say)
            click.echo(f"note: {hint}", err=True)
        return
    # JSON Lines: each line parses alone (a stream of indented documents parsed as nothing)
    lines = "json-lines" if output == "json" else output
    with until_ctrl_c():
        while True:
            text = _get_once(client, api, verbose, lines, None if api else deployment, summary, here)
            if output != "json":
                click.clear()  # on a terminal; piped, each table follows the last
                if sys.stdout.isatty():
                    size = _screen_size()
                    text = render.fit_screen(text, size.lines, size.columns)
            click.echo(text)
            sys.stdout.flush()
            time.sleep(1)


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
        if not apis and not splitters and not _unrestored(client, deployment)[0]:
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
    restoring, lost = _unrestored(client, deployment)
    lost = restoring + lost
    if not apis:
        return "\n\n".join(lost if restoring else [*lost, "no APIs are deployed (inferd deploy PROJECT_DIR)"])
    text = render.api_rows(apis)
    if splitters:
        text += "\n\n" + splitter_rows(splitters)
    if others:
        text += f"\n\nonly deployment '{here}', this folder's: inferd get -a shows all {others + 1}"
    return "\n\n".join([text, *lost])


def _unrestored(client: Backend, deployment: str | None) -> tuple[list[str], list[str]]:
    """A line for each deployment the operator is still bringing back since it started, and one
    for each it could not bring back."""
    if not isinstance(client, Client):
        return [], []
    info = client.info()
    lost: dict[str, dict[str, str]] = info.get("unrestored") or {}
    restoring = [
        f"deployment '{name}' is being restored (the operator started again): its APIs are shown once it is"
        for name in info.get("restoring") or []
        if deployment in (None, name)
    ]
    return restoring, [
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


def _screen_size() -> os.terminal_size:
    """The terminal's size as it is now: asked of the terminal itself, where LINES and COLUMNS
    (which ``shutil`` prefers) can be stale after a resize or set for another window (a test
    runner's workers export 24 and 80)."""
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except (AttributeError, ValueError, OSError):
        return shutil.get_terminal_size()
    return size if size.lines > 0 and size.columns > 0 else shutil.get_terminal_size()  # 0: unset
