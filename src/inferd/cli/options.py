"""Options shared by several commands."""

from __future__ import annotations

import inspect
import math
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from inferd.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from inferd.environments import Environment

F = TypeVar("F", bound=Callable[..., Any])

# inferd.environments.LOCAL, spelled out so that --help does not import environments (pydantic).
LOCAL = "local"


def _check_env(ctx: click.Context, param: click.Parameter, value: str) -> Environment:
    from inferd.environments import EnvironmentStore

    environment = EnvironmentStore().get(value)  # UsageError (exit 2) naming `inferd env list`
    if not environment.is_local and not param.expose_value:
        raise UsageError(f"`inferd {ctx.info_name}` works on the local environment only ('{value}' is not)")
    return environment


def env_option(function: F) -> F:
    """``-e/--env NAME``: which environment to talk to (``local``: the operator on this machine).

    The name is checked against ``inferd env list``. A command with an ``env`` parameter gets
    the ``Environment``; any other command works on ``local`` only and refuses another name.
    """
    decorated: F = click.option(
        "-e",
        "--env",
        "env",
        default=LOCAL,
        show_default=True,
        callback=_check_env,
        expose_value="env" in inspect.signature(function).parameters,
        help="Environment to use (see `inferd env list`).",
    )(function)
    return decorated


def _check_key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A key an HTTP header can carry: requests refused a line break only as it sent the sample
    ("cannot reach ..."), after the API was looked up. Any other character is sent as UTF-8 (a
    no-break space, a zero-width one: a keys_file may hold them), but no byte that is no text
    (``\\udcff``, from an environment variable of bytes that are not UTF-8)."""
    if value is not None and any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        raise click.BadParameter(
            "an API key is one line of text, without control characters (a line break, a tab)",
            ctx,
            param,
        )
    return value


key_option = click.option(
    "--key",
    "api_key",
    envvar="INFERD_API_KEY",
    default=None,
    callback=_check_key,
    help="API key for an API with auth: (sent as Authorization: Bearer KEY); default $INFERD_API_KEY.",
)

relax_pins_option = click.option(
    "--relax-pins",
    is_flag=True,
    help="Install the nearest installable version of a requirements.txt pin that cannot install "
    "on this Python (2019 pins), with a warning per relaxed pin.",
)


class Seconds(click.FloatRange):
    """A number of seconds in a range; NaN is not one. It passed every bound (each comparison
    with it is false), and a wait or limit of NaN seconds never ended: ``--timeout nan`` waited
    for ever, ``--header-timeout nan`` let a client take as long as it liked."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


wait_option = click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until every API's new version is live (exit 0) or has failed (exit 1).",
)

timeout_option = click.option(
    "--timeout",
    type=Seconds(min=1),
    default=600,
    show_default=True,
    metavar="SECONDS",
    help="Stop waiting after this long (exit 1); the operator goes on with the rollout.",
)

drain_timeout_option = click.option(
    "--timeout",
    type=Seconds(min=1),
    default=600,
    show_default=True,
    metavar="SECONDS",
    help="Stop waiting for the replicas to drain after this long (exit 1); the operator goes on "
    "draining them.",
)


def project_folder() -> Path | None:
    """The project the current folder is in: the nearest folder, this one or a parent, holding
    a ``cortex.yaml`` (or ``inferd.yaml``), as Cortex's CLI found it (``appRootOrBlank`` in
    cli/cmd/lib_config_reader.go), so ``cortex logs`` run in a project's ``src/`` means it."""
    from inferd.config import CONFIG_NAMES

    try:
        folder = Path.cwd()
    except OSError:  # the folder was removed while the shell was in it: no project
        return None
    for candidate in (folder, *folder.parents):
        if any((candidate / name).is_file() for name in CONFIG_NAMES):
            return candidate
    return None


def folder_deployment() -> str | None:
    """The deployment the project the current folder is in names (see ``project_folder``).

    Cortex took the deployment from the project's ``cortex.yaml`` when no ``-d`` was given, so
    in a project folder a bare API name meant that deployment's API (Cortex's examples all name
    theirs ``classifier``). Read leniently: a folder whose config does not parse names none.
    """
    from inferd.config import CONFIG_NAMES

    root = project_folder()
    if root is None:
        return None
    for name in CONFIG_NAMES:
        config = root / name
        if not config.is_file():
            continue
        from inferd.config.load import parse_yaml  # only in a project folder: it imports pydantic

        try:
            data, _ = parse_yaml(config.read_text(encoding="utf-8", errors="replace"), name)
        except (ConfigError, OSError):
            return None
        for item in data if isinstance(data, list) else []:
            if (
                isinstance(item, dict)
                and item.get("kind") == "deployment"
                and isinstance(item.get("name"), str)
            ):
                return str(item["name"])
        return None
    return None


def not_empty(name: str, what: str = "API") -> str:
    """An API (or deployment, or splitter) name as given; an empty one is a usage error, not a
    prefix of every name."""
    if not name.strip():
        raise UsageError(f"the {what} name is empty")
    return name


def api_name(name: str) -> str:
    """``API`` or ``DEPLOYMENT/API`` as given; one whose API is empty (``iris/``) names none, and
    is no prefix of every name: `inferd predict iris/` posted to iris's only API."""
    not_empty(name)
    if not name.rpartition("/")[2].strip():
        raise UsageError(f"'{name}' names no API: give API or DEPLOYMENT/API (`inferd get` lists them)")
    return name


def in_deployment(api: str, deployment: str | None) -> str:
    """``-d/--deployment`` (Cortex's flag) folded into an API name: ``DEPLOYMENT/API``."""
    api_name(api)
    if deployment is None:
        return api
    not_empty(deployment, "deployment")  # `-d ''` meant any deployment's API of that name
    named, _, name = api.rpartition("/")
    if named and named != deployment:
        raise UsageError(f"'{api}' names deployment '{named}', but -d says '{deployment}'")
    return f"{deployment}/{name}"


deployment_option = click.option(
    "-d",
    "--deployment",
    default=None,
    metavar="NAME",
    help="The deployment the API belongs to, as Cortex's -d (same as DEPLOYMENT/API).",
)
