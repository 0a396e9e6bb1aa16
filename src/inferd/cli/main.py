"""``inferd``: the click group, and the one place where errors become messages and exit codes."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import sys
from collections.abc import Mapping
from gettext import gettext
from pathlib import Path
from typing import Any, NoReturn

import click

from inferd import __version__
from inferd.cli.options import env_option
from inferd.errors import InferdError
from inferd.signalmask import unblock_signals

# The commands defined in other modules: name -> (module, first paragraph of the command's help).
# `inferd --help` lists them from here, and a module is imported only when its command runs (or
# shows its own help), so the CLI starts without numpy, requests, pydantic or the gateway.
# Each module's attribute is named as its command; tests/unit/cli/test_lazy.py checks both.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "completion": (
        "inferd.cli.cortex_verbs",
        "Print a shell completion script: source <(inferd completion).",
    ),
    "dashboard": (
        "inferd.cli.dashboard",
        "Open the web dashboard: every API's status, traffic, latency, tracker and logs, live.",
    ),
    "delete": (
        "inferd.cli.deploy",
        "Delete an API, or every API of a deployment; their replicas drain first.",
    ),
    "deploy": (
        "inferd.cli.deploy",
        "Create or update the APIs of a project (starts the operator if needed).",
    ),
    "down": ("inferd.cli.deploy", "Drain every API and stop the operator and all replicas."),
    "env": ("inferd.cli.env", "Manage environments: `local` (this machine's operator) and Ray clusters."),
    "export": ("inferd.cli.export", "Write a Dockerfile and Kubernetes manifests for a project."),
    "get": (
        "inferd.cli.inspect",
        "Show the APIs: status, replicas, last update; for one API also its traffic and tracker; "
        "for a traffic splitter its weights, the requests each API got and its shadow.",
    ),
    "init": ("inferd.cli.develop", "Write a new project folder that `inferd serve` runs at once."),
    "logs": (
        "inferd.cli.logs",
        "Print an API's latest logs: its replicas' output and inferd's events (load errors, restarts); "
        "--access for the access lines.",
    ),
    "payloads": (
        "inferd.cli.traffic",
        "Show the requests and answers an API's payload_log recorded (newest last).",
    ),
    "predict": ("inferd.cli.predict", "Send a JSON sample to an API and print the prediction."),
    "promote": (
        "inferd.cli.replay",
        "Give API weight 100 in SPLITTER (kept until the project is deployed again).",
    ),
    "prune": (
        "inferd.cli.home",
        "Remove snapshots, cached models and requirement environments that no running API and no "
        "API's previous version uses, and deleted APIs' logs and payload logs; print what was freed.",
    ),
    "refresh": (
        "inferd.cli.deploy",
        "Redeploy every API of a project, even if nothing changed (new replicas, models reloaded).",
    ),
    "replay": (
        "inferd.cli.replay",
        "Send API's recorded requests (payload_log) to OTHER and compare the answers; or, with "
        "--shadow, compare API's recorded answers with its shadow's.",
    ),
    "serve": ("inferd.cli.serve", "Serve a project's APIs in the foreground until Ctrl-C."),
    "test": (
        "inferd.cli.develop",
        "Run samples through each API's handlers and model in this process (no server).",
    ),
    "up": ("inferd.cli.deploy", "Start the operator in the background (it brings back every deployed API)."),
}


def usage_error(exc: click.UsageError, ctx: click.Context) -> NoReturn:
    """One line for what click prints on three (usage, a hint, the error), and its exit code 2.

    A group run without a command still prints its help (click 8.2+ raises that as an error).
    """
    if type(exc).__name__ == "NoArgsIsHelpError":
        raise exc
    where = (exc.ctx or ctx).command_path
    click.echo(f"error: {exc.format_message().rstrip('.')} (see `{where} --help`)", err=True)
    ctx.exit(exc.exit_code)


def _os_error_message(exc: OSError) -> str:
    from inferd.storage import os_error_message  # only on an error: every command imports this module

    return os_error_message(exc)


def os_error(exc: OSError, ctx: click.Context) -> NoReturn:
    """The end of a command the machine refused: a home that is a file, a full or read-only disk;
    or what reads our output stopped reading (`inferd get | head`)."""
    if isinstance(exc, BrokenPipeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        ctx.exit(141)  # as a program killed by SIGPIPE: the shell's pipefail sees it
    click.echo(f"error: {_os_error_message(exc)}", err=True)
    try:
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):
        # Output that cannot be written (`> /dev/full`) stays in the buffer, and exit's flush
        # failed on it again: "Exception ignored ... OSError" and status 120 (where stdout is
        # buffered, as it is unless PYTHONUNBUFFERED is set). It is dropped.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    ctx.exit(1)


class InferdGroup(click.Group):
    """Turns ``InferdError`` into one sentence on stderr and its exit code; never a traceback.

    Commands named in ``lazy`` are listed from their summary and imported on first use.
    """

    def __init__(self, *args: Any, lazy: Mapping[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:  # `inferd --bogus`
            usage_error(exc, ctx)
        except OSError as exc:  # `inferd --help | head -1`, `inferd --version > /dev/full`
            os_error(exc, ctx)

    def invoke(self, ctx: click.Context) -> object:
        # Text the terminal's encoding lacks (an emoji a handler printed, on a Latin-1 locale) is
        # escaped as Python's stderr escapes it: `inferd logs` and `inferd test` ended in a
        # UnicodeEncodeError traceback (click.echo makes up only for an ASCII one)
        with contextlib.suppress(AttributeError, ValueError, OSError):
            sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a command's arguments, or a command that does not exist
            usage_error(exc, ctx)
        except InferdError as exc:
            from inferd.cli.render import printable  # a file name may hold a terminal's escapes

            click.echo(f"error: {printable(exc.message, keep=chr(10))}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:  # outside the waits that say what goes on (click: "Aborted!")
            click.echo("error: stopped (Ctrl-C)", err=True)
            ctx.exit(1)
        except OSError as exc:
            os_error(exc, ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # click suggests a near name from the commands imported so far only: not the lazy ones
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            from inferd.cli.cortex_verbs import cortex_only  # Cortex's cluster, configure, ...

            instead = cortex_only(name, ctx.info_name or "inferd")
            if instead is not None:
                ctx.fail(instead)
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean {close[0]!r}?")
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            command = getattr(importlib.import_module(self.lazy[cmd_name][0]), cmd_name)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name][0]}.{cmd_name} is not a click command")
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click's, but a command not imported yet is listed from its summary alone.
        listed = [(name, self._listed(name)) for name in self.list_commands(ctx)]
        rows = [(name, command) for name, command in listed if not command.hidden]
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section(gettext("Commands")):
                formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in rows])

    def _listed(self, name: str) -> click.Command:
        if name in self.commands:
            return self.commands[name]
        return click.Command(name, help=self.lazy[name][1])


@click.group(cls=InferdGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="inferd")
def cli() -> None:
    """Deploy machine-learning models as web APIs.

    A project folder holds a cortex.yaml (or inferd.yaml), the models and optional request
    handlers. Cortex v0.10 projects run as they are, or with the changes the README lists
    (--relax-pins for 2019 pins; no gpu line on a machine without a GPU).

    \b
    Examples:
      inferd serve examples/iris-onnx          # serve in the foreground
      curl -X POST -d @examples/iris-onnx/sample.json http://127.0.0.1:8888/iris/classifier
    """


@cli.command()
@click.argument("project_dir", default=".", type=click.Path(path_type=Path))
def validate(project_dir: Path) -> None:
    """Check a project's configuration and files without serving it.

    Checks cortex.yaml, that the files it names exist (models, handlers, auth.keys_file), the
    handler or predictor functions' names and parameters (from the source: neither the model
    nor the handler's imports are loaded), and that requirements.txt is within inferd's limits.

    \b
    Example:
      inferd validate examples/iris-onnx
    """
    from inferd.config.load import load_project
    from inferd.engine.requirements_file import included_files, local_sources, read_requirements
    from inferd.errors import ConfigError, LoadError
    from inferd.handler.loader import check_source

    project = load_project(project_dir)
    # installed only for the APIs that run the user's Python: ignored, it cannot fail a deploy
    installs = any(config.api.installs_requirements for config in project.apis)
    if installs and (project.root / "requirements.txt").is_file():
        try:
            read_requirements(project.root / "requirements.txt")
            included_files(project.root / "requirements.txt")  # -r/-c files: in the project
            local_sources(project.root / "requirements.txt")  # local packages too
        except LoadError as exc:
            raise ConfigError(exc.message) from None
    for config in project.apis:
        code = config.api.handler_file
        if code is not None:
            if config.api.predictor is not None:
                kind = "predictor"
            else:
                kind = "handler-v0.9" if config.api.v09_handlers else "handler"
            try:
                check_source(project.root / code, kind, code)
            except LoadError as exc:
                raise ConfigError(f"api '{config.name}': {exc.message}") from None
        click.echo(f"api '{config.name}': {config.api.model_format} at {config.endpoint}")
    from inferd.cli.render import printable  # a file name may hold a terminal's escapes
    from inferd.operator.snapshots import LINKED_FOLDERS, absolute_paths, left_out_paths, linked_folders
    from inferd.storage import left_out_reason

    for link in linked_folders(project.root):
        click.echo(
            f"warning: {printable(link)} is a link to a folder: inferd deploy leaves it out "
            f"({LINKED_FOLDERS})",
            err=True,
        )
    for name, field, path, part in left_out_paths(project):
        click.echo(
            f"warning: api '{name}': {field}: {printable(path)} is in {printable(str(part))}, which inferd "
            f"deploy leaves out ({left_out_reason(part)})",
            err=True,
        )
    for name, field, path, relative in absolute_paths(project):
        click.echo(
            f"warning: api '{name}': {field}: {printable(path)} is an absolute path into the project folder, "
            f"which inferd deploy copies: write it relative to the folder ({printable(relative)})",
            err=True,
        )
    click.echo(f"{project.config_file.name} is valid")


@cli.command()
@env_option
def version() -> None:
    """Print the versions of the CLI and of the running operator, and the disk INFERD_HOME holds.

    \b
    Example:
      inferd version     # cli: 0.1.0, operator: 0.1.0 (or not running), home: ... holds 40.1 MiB
    """
    from inferd.client import Client

    click.echo(f"cli: {__version__}")
    client = Client()
    info = client.running_info()
    if info is None:
        click.echo("operator: not running")
    else:
        hint = client.restart_hint()
        click.echo(f"operator: {info['version']}" + (f"; {hint}" if hint else ""))
    from inferd.cli.home import usage_line

    click.echo(usage_line(client.home))


def open_closed_standard_streams() -> None:
    """Open the null device on the standard descriptors a script or supervisor closed
    (``inferd serve >&-``, ``2>&-``, ``<&-``).

    A closed one is the number the next file opened takes: under ``inferd serve`` the event
    loop's epoll took descriptor 1, the replicas were given it as their stdout and each print in
    a handler failed its request; and ``sys.stderr`` was None, so ``inferd deploy 2>&-`` ended
    with status 1 before deploying, without a word.
    """
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)  # the lowest free: fd
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115


def main() -> None:
    unblock_signals()  # a runner's blocked SIGCHLD, SIGTERM... (signalmask.py)
    open_closed_standard_streams()
    # Installed as `inferd` and, for Cortex's docs and scripts, as `cortex`: usage says which.
    cli(prog_name="cortex" if Path(sys.argv[0]).name == "cortex" else "inferd")
