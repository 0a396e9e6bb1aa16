"""``inferd``: the click group, and the one place where errors become messages and exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from inferd import __version__
from inferd.cli.options import env_option, relax_pins_option
from inferd.errors import InferdError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8888


class InferdGroup(click.Group):
    """Turns ``InferdError`` into one sentence on stderr and its exit code; never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except InferdError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=InferdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="inferd")
def cli() -> None:
    """Deploy machine-learning models as web APIs.

    A project folder holds a cortex.yaml (or inferd.yaml), the models and optional request
    handlers. Cortex v0.10 projects run unchanged.

    \b
    Examples:
      inferd serve examples/iris-onnx          # serve in the foreground
      curl -X POST -d @examples/iris-onnx/sample.json http://127.0.0.1:8888/iris/classifier
    """


@cli.command()
@click.argument("project_dir", default=".", type=click.Path(path_type=Path))
@click.option(
    "--host",
    default=lambda: os.environ.get("INFERD_HOST", DEFAULT_HOST),
    show_default="127.0.0.1",
    help="Address to listen on (INFERD_HOST).",
)
@click.option(
    "--port",
    type=int,
    default=lambda: int(os.environ.get("INFERD_PORT", DEFAULT_PORT)),
    show_default="8888",
    help="Port to listen on (INFERD_PORT).",
)
@click.option(
    "--grace",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to let accepted requests finish on Ctrl-C / SIGTERM.",
)
@click.option("--access-log", is_flag=True, help="Print one JSON line per request on stderr.")
@click.option(
    "--metrics/--no-metrics",
    default=True,
    show_default=True,
    help="Count requests for /metrics (off only to measure what metrics cost).",
)
@click.option("--reload", is_flag=True, help="Roll the APIs over to the new code when project files change.")
@click.option(
    "--max-header-bytes",
    type=click.IntRange(min=1),
    help="Largest request line + headers; beyond: 431 [default: 65536; INFERD_MAX_HEADER_BYTES].",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a client has to send a request's headers (and the longest pause inside a body) "
    "[default: 10; INFERD_HEADER_TIMEOUT].",
)
@click.option(
    "--keepalive-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds an idle keep-alive connection stays open [default: 60; INFERD_KEEPALIVE_TIMEOUT].",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    help="Open connections at most; beyond, accepting pauses [default: 10000; INFERD_MAX_CONNECTIONS].",
)
@click.option(
    "--max-pipeline",
    type=click.IntRange(min=1),
    help="Pipelined requests buffered per connection; beyond, reading pauses "
    "[default: 8; INFERD_MAX_PIPELINE].",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=None,
    help="Run exactly N replicas per API, autoscaling off (an exported Kubernetes pod runs "
    "--replicas 1 and its HorizontalPodAutoscaler scales pods).",
)
@relax_pins_option
def serve(
    project_dir: Path,
    host: str,
    port: int,
    grace: float,
    access_log: bool,
    metrics: bool,
    reload: bool,
    max_header_bytes: int | None,
    header_timeout: float | None,
    keepalive_timeout: float | None,
    max_connections: int | None,
    max_pipeline: int | None,
    relax_pins: bool,
    replicas: int | None,
) -> None:
    """Serve a project's APIs in the foreground until Ctrl-C.

    Each API gets its replicas (compute.init_replicas, default min_replicas); each replica
    loads the model and handler once and answers one request at a time.

    \b
    Examples:
      inferd serve examples/iris-onnx
      inferd serve . --port 9000
      inferd serve . --reload   # edits roll out at once; a broken edit keeps the old code
    """
    import uvloop

    from inferd.config.load import load_project
    from inferd.gateway.edge import EdgeLimits
    from inferd.operator.serve import serve_project

    limits = EdgeLimits.from_env(
        max_header_bytes=max_header_bytes,
        header_timeout=header_timeout,
        keepalive_timeout=keepalive_timeout,
        max_connections=max_connections,
        max_pipeline=max_pipeline,
    )
    project = load_project(project_dir)
    if relax_pins:
        project = project.relaxed()
    try:
        code = uvloop.run(
            serve_project(
                project,
                host,
                port,
                grace,
                access_log=access_log,
                metrics=metrics,
                reload=reload,
                limits=limits,
                replicas=replicas,
            )
        )
    except OSError as exc:
        raise InferdError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sys.exit(code)


@cli.command()
@click.argument("project_dir", default=".", type=click.Path(path_type=Path))
def validate(project_dir: Path) -> None:
    """Check a project's configuration and files without serving it.

    Checks cortex.yaml, that the files it names exist (models, handlers, auth.keys_file), and
    the handler or predictor functions' names and parameters (from the source: neither the
    model nor the handler's imports are loaded).

    \b
    Example:
      inferd validate examples/iris-onnx
    """
    from inferd.config.load import load_project
    from inferd.errors import ConfigError, LoadError
    from inferd.handler.loader import check_source

    project = load_project(project_dir)
    for config in project.apis:
        code = config.api.handler_file
        if code is not None:
            kind = "predictor" if config.api.predictor is not None else "handler"
            try:
                check_source(project.root / code, kind, code)
            except LoadError as exc:
                raise ConfigError(f"api '{config.name}': {exc.message}") from None
        click.echo(f"api '{config.name}': {config.api.model_format} at {config.endpoint}")
    click.echo(f"{project.config_file.name} is valid")


@cli.command()
@env_option
def version() -> None:
    """Print the versions of the CLI and of the running operator, and the disk INFERD_HOME holds."""
    from inferd.client import Client

    click.echo(f"cli: {__version__}")
    client = Client()
    click.echo(f"operator: {client.info()['version'] if client.running() else 'not running'}")
    from inferd.cli.home import usage_line

    click.echo(usage_line(client.home))


def _register() -> None:
    from inferd.cli.deploy import delete, deploy, down, refresh, up
    from inferd.cli.inspect import get, logs, predict

    for command in (deploy, refresh, get, predict, logs, delete, up, down):
        cli.add_command(command)
    from inferd.cli.dashboard import dashboard

    cli.add_command(dashboard)
    from inferd.cli.env import env
    from inferd.cli.export import export

    cli.add_command(env)
    cli.add_command(export)
    from inferd.cli.home import prune

    cli.add_command(prune)
    from inferd.cli.replay import promote, replay
    from inferd.cli.traffic import payloads

    cli.add_command(payloads)
    cli.add_command(replay)
    cli.add_command(promote)
    from inferd.cli.develop import init, test

    cli.add_command(test)
    cli.add_command(init)


_register()


def main() -> None:
    cli(prog_name="inferd")
