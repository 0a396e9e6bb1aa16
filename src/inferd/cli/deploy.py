"""``inferd deploy``, ``refresh``, ``delete``, ``up`` and ``down``: the operator's lifecycle."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from inferd.cli.backends import backend_for, ray_backend
from inferd.cli.options import (
    drain_timeout_option,
    env_option,
    not_empty,
    project_folder,
    relax_pins_option,
    timeout_option,
    wait_option,
)
from inferd.cli.outcome import (
    STILL_DRAINING,
    STILL_STOPPING,
    STOPPED_PREPARING,
    STOPPED_WAITING,
    wait_deleted,
    wait_outcome,
)
from inferd.client import Client
from inferd.errors import InferdError, ReplaceError, UsageError

if TYPE_CHECKING:
    from inferd.environments import Environment


def _start_operator(client: Client) -> None:
    if client.start():
        info = client.info()
        click.echo(f"started the inferd operator (pid {info['pid']}), serving on {info['gateway']}", err=True)


def _warn_of_other_s3_settings(client: Client) -> None:
    """The operator reads s3:// with the AWS settings it started with: say so when this shell set
    one to another value (an endpoint exported after `inferd up`), not when it leaves one unset
    (`AWS_PROFILE=prod inferd up`, then deploys from any shell, as the README says)."""
    from inferd.storage.remote import s3_settings

    theirs = client.info().get("s3_settings")
    if not isinstance(theirs, dict):  # an operator from before it said
        return
    differ = [
        f"{name} ({mine}) is not the operator's ({theirs.get(name) or 'unset'})"
        for name, mine in s3_settings().items()
        if theirs.get(name) != mine
    ]
    if differ:
        click.echo(
            f"warning: this shell's {', '.join(differ)}: it reads s3:// models with the AWS settings "
            "it started with; to read them with this shell's: inferd down && inferd up",
            err=True,
        )


def _deploy(
    project_dir: Path,
    force: bool,
    refresh: bool,
    wait: bool,
    env: Environment,
    relax_pins: bool = False,
    timeout: float = 600,
) -> None:
    from inferd.config.load import load_project

    project = load_project(project_dir)  # validate here first: errors with file and line, exit 2
    if not env.is_local:
        names = [c.name for c in project.apis]
        if force:
            click.echo(
                "warning: --force is ignored on a Ray cluster: Serve takes every deploy at once", err=True
            )
        _deploy_ray(project_dir, project.deployment.name, names, refresh, wait, env, timeout, relax_pins)
        return
    client = Client()
    _start_operator(client)
    names = [config.name for config in project.apis]
    if any((config.api.model_uri or "").startswith("s3://") for config in project.apis):
        _warn_of_other_s3_settings(client)
    if sys.stderr.isatty():
        click.echo("preparing (models, packages)...", err=True)
    variables = {
        variable
        for config in project.apis
        for variable in (config.api.auth.keys_from_env if config.api.auth else [])
    }
    environ = {variable: os.environ[variable] for variable in variables if os.environ.get(variable)}

    def send(replace: bool) -> dict[str, Any]:
        try:
            return client.deploy(
                project.root,
                force=force,
                refresh=refresh,
                environ=environ,
                replace=replace,
                relax_pins=relax_pins,
            )
        except KeyboardInterrupt:  # the operator has the request: it goes on with it
            raise InferdError(STOPPED_PREPARING) from None

    try:
        result = send(replace=force)
    except ReplaceError as exc:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise
        click.confirm(f"{exc.message.partition(' (use --force')[0]}. Replace it?", abort=True, err=True)
        result = send(replace=True)
    try:  # from here on, Ctrl-C leaves the deploy to the operator (the wait says so too)
        click.echo(result["message"])
        if wait:
            versions: dict[str, str | None] = dict(result.get("versions") or dict.fromkeys(names))
            results = result.get("apis") or {}
            unchanged = [name for name in versions if results.get(name) == "unchanged"]
            wait_outcome(client, versions, timeout, deployment=project.deployment.name, unchanged=unchanged)
    except KeyboardInterrupt:
        raise InferdError(STOPPED_WAITING) from None


def _deploy_ray(
    project_dir: Path,
    deployment: str,
    names: list[str],
    refresh: bool,
    wait: bool,
    env: Environment,
    timeout: float,
    relax_pins: bool = False,
) -> None:
    backend = ray_backend(env)
    if sys.stderr.isatty():
        click.echo(f"uploading the project to {env.describe()}...", err=True)
    result = backend.deploy(project_dir, refresh=refresh, relax_pins=relax_pins)
    try:
        for warning in result.get("warnings", []):
            click.echo(f"warning: {warning}", err=True)
        click.echo(result["message"])
        if wait:
            wait_outcome(backend, dict.fromkeys(names), timeout, deployment=deployment)
    except KeyboardInterrupt:
        raise InferdError(STOPPED_WAITING) from None


@click.command()
@click.argument("project_dir", default=".", type=click.Path(path_type=Path))
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Deploy even while a previous deploy is updating, or over APIs another folder deployed.",
)
@wait_option
@timeout_option
@relax_pins_option
@env_option
def deploy(
    project_dir: Path, force: bool, wait: bool, timeout: float, relax_pins: bool, env: Environment
) -> None:
    """Create or update the APIs of a project (starts the operator if needed).

    Validates cortex.yaml first. Prints "deployment started", "deployment updated" or
    "deployment is up-to-date". Changed APIs roll out with no failed requests: new replicas
    start, take traffic once ready, then the old ones drain. APIs no longer in the config are
    deleted. Waits until every API's new version is live (exit 0) or has failed (exit 1, with
    the reason; a failed update leaves the previous version serving).

    \b
    Examples:
      inferd deploy examples/iris-onnx
      inferd deploy            # the project in the current folder
    """
    _deploy(project_dir, force, refresh=False, wait=wait, env=env, relax_pins=relax_pins, timeout=timeout)


@click.command()
@click.argument("project_dir", default=".", type=click.Path(path_type=Path))
@click.option("-f", "--force", is_flag=True, help="Refresh even while a previous deploy is updating.")
@wait_option
@timeout_option
@relax_pins_option
@env_option
def refresh(
    project_dir: Path, force: bool, wait: bool, timeout: float, relax_pins: bool, env: Environment
) -> None:
    """Redeploy every API of a project, even if nothing changed (new replicas, models reloaded).

    \b
    Example:
      inferd refresh examples/iris-onnx
    """
    _deploy(project_dir, force, refresh=True, wait=wait, env=env, relax_pins=relax_pins, timeout=timeout)


@click.command()
@click.argument("name", required=False)
@click.option("-f", "--force", is_flag=True, help="Do not wait for the replicas to drain.")
@click.option(
    "-c",
    "--keep-cache",
    is_flag=True,
    help="Accepted for Cortex's delete --keep-cache; inferd frees what nothing deployed uses "
    "either way (a model is fetched again on its next deploy).",
)
@drain_timeout_option
@env_option
def delete(name: str | None, force: bool, keep_cache: bool, timeout: float, env: Environment) -> None:
    """Delete an API, or every API of a deployment; their replicas drain first.

    NAME defaults to the deployment of the project the current folder is in (its cortex.yaml
    here or in a folder above).

    \b
    Examples:
      inferd delete classifier        # one API (when no other deployment has one of that name)
      inferd delete iris/classifier   # one API of deployment iris
      inferd delete iris              # a whole deployment
    """
    if name is not None:
        not_empty(name)
    if name is None:
        from inferd.config.load import load_project

        root = project_folder()  # this folder's project, or the one it is in, as Cortex found it
        if root is None:
            raise UsageError(
                "name the API or deployment to delete (`inferd get` lists them): "
                "this folder (and those above it) has no cortex.yaml to take the deployment from"
            )
        name = load_project(root).deployment.name
    client = backend_for(env)
    result = client.delete(name)
    try:
        click.echo(result["message"])
        if not force:
            wait_deleted(client, list(result["apis"]), timeout, draining=result.get("draining") is True)
    except KeyboardInterrupt:
        raise InferdError(STILL_DRAINING) from None


@click.command()
@click.option(
    "--systemd", is_flag=True, help="Print a systemd unit that runs the operator instead of starting it."
)
@env_option
def up(systemd: bool) -> None:
    """Start the operator in the background (it brings back every deployed API).

    A small supervisor starts it and starts it again if it dies (crash, kill -9), restoring
    every API; `inferd down` stops both. With --systemd, print a unit file for systemd instead.

    \b
    Examples:
      inferd up
      inferd up --systemd > ~/.config/systemd/user/inferd.service
    """
    if systemd:
        from inferd.cli.home import systemd_unit

        click.echo(systemd_unit(), nl=False)
        return
    client = Client()
    if not client.start():
        info: dict[str, Any] = client.info()
        click.echo(f"the inferd operator is already running (pid {info['pid']}) on {info['gateway']}")
        hint = client.restart_hint()
        if hint is not None:  # started before an upgrade: `inferd up` is what a user tries
            click.echo(f"note: {hint}", err=True)
        return
    info = client.info()
    click.echo(f"the inferd operator is running (pid {info['pid']}) on {info['gateway']}")


@click.command()
@env_option
def down() -> None:
    """Drain every API and stop the operator and all replicas.

    \b
    Example:
      inferd down
    """
    try:
        stopped = Client().stop()
    except KeyboardInterrupt:
        raise InferdError(STILL_STOPPING) from None
    click.echo("the inferd operator stopped" if stopped else "the inferd operator is not running")
