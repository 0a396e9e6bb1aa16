"""``inferd get``, ``logs`` and ``predict``: look at deployed APIs and use them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from inferd.cli import render
from inferd.cli.backends import Backend, backend_for, ray_backend
from inferd.cli.options import env_option
from inferd.client import Client, post_sample
from inferd.environments import Environment
from inferd.errors import InferdError, NotFoundError, UsageError


def resolve(client: Backend, name: str) -> str:
    """The API called ``name``, or the only one whose name starts with it (as Cortex)."""
    names = [str(api["name"]) for api in client.apis()]
    if name in names:
        return name
    matches = [n for n in names if n.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"'{name}' matches several APIs: {', '.join(sorted(matches))}")
    raise NotFoundError(f"no API named '{name}' (deployed: {', '.join(sorted(names)) or 'none'})")


@click.command()
@click.argument("api", required=False)
@click.option("-w", "--watch", is_flag=True, help="Re-run every 2 seconds until Ctrl-C.")
@click.option("-v", "--verbose", is_flag=True, help="Also the signature, the error details and the config.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@env_option
def get(api: str | None, watch: bool, verbose: bool, output: str, env: Environment) -> None:
    """Show the APIs: status, replicas, last update; for one API also its traffic and tracker.

    \b
    Columns (as Cortex): up-to-date = ready replicas of the current version; available = all
    ready replicas; requested = the replica count wanted now; failed = replicas that crashed
    or failed to load; timed out = replicas stopped because a request overran its timeout.

    \b
    Examples:
      inferd get
      inferd get classifier -v
      inferd get -o json
    """
    client = backend_for(env)
    while True:
        text = _get_once(client, api, verbose, output)
        if not watch:
            click.echo(text)
            return
        click.clear()
        click.echo(text)
        time.sleep(2)


def _get_once(client: Backend, api: str | None, verbose: bool, output: str) -> str:
    if api is not None:
        detail = client.api(resolve(client, api))
        return json.dumps([detail], indent=2) if output == "json" else render.api_detail(detail, verbose)
    apis = client.apis()
    if output == "json":
        return json.dumps(apis, indent=2)
    if not apis:
        return "no APIs are deployed (inferd deploy PROJECT_DIR)"
    return render.api_rows(apis)


@click.command()
@click.argument("api")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@env_option
def logs(api: str, follow: bool, env: Environment) -> None:
    """Print an API's logs: its replicas' output and inferd's events (load errors, restarts).

    \b
    Examples:
      inferd logs classifier
      inferd logs classifier -f
    """
    if not env.is_local:
        _ray_logs(api, follow, env)
        return
    client = Client()
    name = resolve(client, api)
    offset = 0
    while True:
        text, offset = client.logs(name, offset)
        if text:
            click.echo(text, nl=False)
        if not follow:
            return
        if not text:
            time.sleep(0.25)


def _ray_logs(api: str, follow: bool, env: Environment) -> None:
    """The replicas' stdout and stderr on the Ray cluster (read on their nodes)."""
    backend = ray_backend(env)
    name = resolve(backend, api)
    cursor = None
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
@click.argument("sample", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--debug", is_flag=True, help="Log every stage of the pipeline in the API's log.")
@env_option
def predict(api: str, sample: Path, debug: bool, env: Environment) -> None:
    """Send a JSON sample to an API and print the prediction.

    API may be a unique prefix of the name.

    \b
    Example:
      inferd predict classifier examples/iris-onnx/sample.json
    """
    client = backend_for(env)
    info: dict[str, Any] = client.api(resolve(client, api))
    response = post_sample(info["url"], sample.read_bytes(), debug=debug)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if response.status_code >= 400:
        message = body.get("error") if isinstance(body, dict) else body
        if response.status_code in (502, 503) and info["status"] != "live":
            raise InferdError(f"api '{info['name']}' is not ready ({info['status']}): {message}")
        raise InferdError(f"api '{info['name']}' answered {response.status_code}: {message}")
    click.echo(json.dumps(body, indent=2) if not isinstance(body, str) else json.dumps(body))
    sys.stdout.flush()
