"""``inferd env add / list / remove``: the environments ``-e NAME`` can name."""

from __future__ import annotations

import json

import click

from inferd.cli import render
from inferd.environments import DEFAULT_HTTP_PORT, Environment, EnvironmentStore, check_address


@click.group()
def env() -> None:
    """Manage environments: `local` (this machine's operator) and Ray clusters.

    \b
    Examples:
      inferd env add prod --provider ray --address ray://head.example.com:10001
      inferd deploy examples/iris-onnx -e prod
      inferd env list
    """


@env.command("add")
@click.argument("name")
@click.option(
    "--provider", type=click.Choice(["ray"]), default="ray", show_default=True, help="Kind of environment."
)
@click.option(
    "--address",
    required=True,
    help="What ray.init takes: ray://HEAD:10001 from outside the cluster, HEAD:6379 on a cluster node.",
)
@click.option(
    "--http-port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_HTTP_PORT,
    show_default=True,
    help="Port of Ray Serve's HTTP proxy on the head node.",
)
def add(name: str, provider: str, address: str, http_port: int) -> None:
    """Add (or replace) an environment.

    \b
    Examples:
      inferd env add prod --provider ray --address ray://10.0.0.5:10001
      inferd env add lab --provider ray --address 127.0.0.1:6379 --http-port 8000
    """
    environment = Environment(name=name, provider="ray", address=check_address(address), http_port=http_port)
    replaced = EnvironmentStore().add(environment)
    click.echo(f"{'replaced' if replaced else 'added'} environment '{name}': {environment.describe()}")


@env.command("list")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_(output: str) -> None:
    """List the environments.

    \b
    Example:
      inferd env list
    """
    environments = EnvironmentStore().all()
    if output == "json":
        click.echo(json.dumps([e.as_dict() for e in environments], indent=2))
        return
    rows = [
        [e.name, e.provider, e.address or "-", e.http_url if not e.is_local else "-"] for e in environments
    ]
    click.echo(render.table(["name", "provider", "address", "http"], rows))


@env.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Forget an environment (its cluster and APIs are left as they are).

    \b
    Example:
      inferd env remove prod
    """
    EnvironmentStore().remove(name)
    click.echo(f"removed environment '{name}'")
