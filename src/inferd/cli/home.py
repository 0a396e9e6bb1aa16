"""``inferd prune``: remove what no running or previous version uses, and say what was freed."""

from __future__ import annotations

from pathlib import Path

import click

from inferd.cli.options import env_option
from inferd.client import Client
from inferd.operator.prune import human_bytes, usage
from inferd.operator.prune import prune as prune_home
from inferd.operator.state import State


def usage_line(home: Path) -> str:
    """``home: PATH holds 12.0 MiB (projects ..., cache ..., envs ..., logs ...)``."""
    parts = usage(home)
    detail = ", ".join(
        f"{name} {human_bytes(parts[name])}" for name in ("projects", "cache", "envs", "logs", "other")
    )
    return f"home: {home} holds {human_bytes(parts['total'])} ({detail})"


@click.command()
@env_option
def prune() -> None:
    """Remove snapshots, cached models and requirement environments that no running API and no
    API's previous version uses; print what was freed.

    The operator does this after every deploy and delete; run it after changing things by
    hand. Only what inferd created is removed.

    \b
    Example:
      inferd prune
    """
    client = Client()
    if client.running():
        click.echo(client.call("POST", "/prune")["message"])
    else:  # nothing runs: keep what the recorded deployments use
        state = State(client.home).load()
        kept: set[Path] = set()
        for record in state.deployments.values():
            kept.update(record.kept())
        click.echo(prune_home(client.home, kept).summary())
    click.echo(usage_line(client.home))
