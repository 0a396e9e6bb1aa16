"""The operator's home and lifecycle beyond start/stop: ``inferd prune``, the disk the home
holds, and the systemd unit ``inferd up --systemd`` prints."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from inferd.cli.options import env_option
from inferd.client import Client
from inferd.operator.prune import forget_apis, human_bytes, usage
from inferd.operator.prune import prune as prune_home
from inferd.operator.state import State
from inferd.storage import inferd_home


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
    API's previous version uses, and deleted APIs' logs and payload logs; print what was freed.

    The operator removes unused snapshots, models and environments itself after every deploy
    and delete; a deleted API's logs and payload logs (what `inferd payloads` and `inferd
    replay` read) go only with this command. Only what inferd created is removed.

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
        pruned = prune_home(client.home, kept).add(forget_apis(client.home, set(state.deployments)))
        click.echo(pruned.summary())
    click.echo(usage_line(client.home))


# INFERD_* variables that are no setting of the operator's: `inferd predict`'s key, the home
# (written first, resolved), the supervisor's pid that the supervisor itself sets.
NOT_OPERATOR_SETTINGS = frozenset({"INFERD_API_KEY", "INFERD_HOME", "INFERD_SUPERVISOR"})


def _unit_word(text: str) -> str:
    """``text`` as one word of a unit file: quoted, and ``%`` doubled (systemd reads ``%h`` as
    the user's home folder, so ``INFERD_HOME=/data/100%home`` became another folder)."""
    return shlex.quote(text).replace("%", "%%")


def systemd_unit() -> str:
    """A unit running this operator under systemd (which then restarts it, not our supervisor)."""
    environment = {"INFERD_HOME": str(inferd_home().resolve())}
    # Every INFERD_* setting the shell has (the gateway's limits, INFERD_CPUS, the dashboard's
    # port, ...), but a client's API key and what inferd sets for its own processes.
    settings = sorted(
        name for name in os.environ if name.startswith("INFERD_") and name not in NOT_OPERATOR_SETTINGS
    )
    for name in (*settings, "PATH"):
        if os.environ.get(name):
            environment[name] = os.environ[name]
    lines = [
        "# inferd operator: save as ~/.config/systemd/user/inferd.service, then",
        "#   systemctl --user daemon-reload && systemctl --user enable --now inferd",
        "# (system-wide: /etc/systemd/system/inferd.service with User=, and systemctl without --user)",
        "[Unit]",
        "Description=inferd operator (gateway, replicas, admin API)",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        *(f"Environment={_unit_word(f'{key}={value}')}" for key, value in environment.items()),
        # -P: a user unit runs in the home folder, whose stray modules -m would import first
        f"ExecStart={_unit_word(sys.executable)} -P -m inferd.operator.daemon",
        "# `inferd down` exits 0 and stays down; a crash or kill -9 is restarted",
        "Restart=on-failure",
        "RestartSec=1",
        "# SIGTERM drains the operator, which stops its replicas",
        "KillMode=mixed",
        "TimeoutStopSec=60",
        "# lets compute.mem_limit cap replicas with cgroup v2 memory.max",
        "Delegate=yes",
        "",
        "[Install]",
        "WantedBy=default.target",
    ]
    return "\n".join(lines) + "\n"
