"""``inferd dashboard``: a one-time login link to the operator's web dashboard."""

from __future__ import annotations

import os
import webbrowser

import click

from inferd.cli.deploy import _start_operator
from inferd.cli.options import env_option
from inferd.client import Client


def has_display() -> bool:
    """Whether a graphical browser can open here (not over plain SSH, not in a container)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@click.command()
@click.option("--no-browser", is_flag=True, help="Only print the link, even when a display exists.")
@env_option
def dashboard(no_browser: bool) -> None:
    """Open the web dashboard: every API's status, traffic, latency, tracker and logs, live.

    Starts the operator if needed, then prints a loopback link holding a one-time token
    (valid once, for 10 minutes) and opens it in a browser when a display exists. The link
    logs the browser in with a session cookie; run the command again for a new link.

    \b
    Examples:
      inferd dashboard
      inferd dashboard --no-browser     # e.g. over SSH: forward the port, open the link
    """
    client = Client()
    _start_operator(client)
    login = client.dashboard_login()
    url = str(login["url"])
    click.echo(url)
    minutes = round(float(login.get("expires_in", 600)) / 60)
    click.echo(f"the link works once, within {minutes} minutes", err=True)
    if not no_browser and has_display():
        webbrowser.open(url)
