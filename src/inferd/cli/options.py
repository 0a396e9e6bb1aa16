"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from inferd.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])


def _check_env(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value != "local":
        raise UsageError(f"environment '{value}' does not exist (this version has only 'local')")
    return value


def env_option(function: F) -> F:
    """``-e/--env``: which environment to talk to (``local``: the operator on this machine)."""
    decorated: F = click.option(
        "-e",
        "--env",
        default="local",
        show_default=True,
        callback=_check_env,
        expose_value=False,
        help="Environment to use.",
    )(function)
    return decorated
