"""``inferd serve``: a project's APIs in the foreground, on this machine, until Ctrl-C."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import click

from inferd.cli.options import Seconds, relax_pins_option
from inferd.errors import InferdError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8888


class PortType(click.ParamType[int]):
    """A TCP port, 0 to 65535 (a socket takes 99999 as 34463); one from INFERD_PORT says so."""

    name = "port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value).strip()
        port = int(text) if text.isdigit() else -1
        if 0 <= port <= 65535:
            return port
        source = ctx.get_parameter_source(param.name) if ctx is not None and param and param.name else None
        where = " (from INFERD_PORT)" if source is click.core.ParameterSource.ENVIRONMENT else ""
        self.fail(f"{value!r}{where} is not a port number from 0 to 65535", param, ctx)


def _address(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """An address to listen on: an empty one (``--host "$HOST"`` with HOST unset) listened on
    every interface of the machine."""
    if not value.strip():
        raise click.BadParameter("give an address to listen on (0.0.0.0: every IPv4 interface)")
    return value


@click.command()
@click.argument("project_dir", default=".", type=click.Path(path_type=Path))
@click.option(
    "--host",
    callback=_address,
    # empty is unset, as click reads INFERD_PORT: `INFERD_HOST=` listened on every interface
    default=lambda: os.environ.get("INFERD_HOST", "").strip() or DEFAULT_HOST,
    show_default="127.0.0.1",
    help="Address to listen on (INFERD_HOST).",
)
@click.option(
    "--port",
    type=PortType(),
    default=DEFAULT_PORT,
    envvar="INFERD_PORT",
    show_default=True,
    help="Port to listen on (INFERD_PORT; 0: any free port).",
)
@click.option(
    "--grace",
    type=Seconds(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to let accepted requests finish on Ctrl-C / SIGTERM / SIGHUP.",
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
    type=Seconds(min=0, min_open=True),
    help="Seconds a client has to send a request's headers (and the longest pause inside a body) "
    "[default: 10; INFERD_HEADER_TIMEOUT].",
)
@click.option(
    "--keepalive-timeout",
    type=Seconds(min=0, min_open=True),
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
    "--max-body-buffer",
    type=click.IntRange(min=1),
    help="Bytes of request bodies still arriving or waiting for a replica, all connections "
    "together; the request that "
    "crosses it gets a 503 [default: 1 GiB; INFERD_MAX_BODY_BUFFER].",
)
@click.option(
    "--max-answer-buffer",
    type=click.IntRange(min=1),
    help="Bytes of answers written to clients that do not read them, all connections together; "
    "beyond, the one that stopped reading first is disconnected "
    "[default: 1 GiB; INFERD_MAX_ANSWER_BUFFER].",
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
    max_body_buffer: int | None,
    max_answer_buffer: int | None,
    relax_pins: bool,
    replicas: int | None,
) -> None:
    """Serve a project's APIs in the foreground until Ctrl-C.

    Each API gets its replicas (compute.init_replicas: by default min_replicas, and 1 where that
    is 0); each replica loads the model and handler once and answers one request at a time.

    \b
    Examples:
      inferd serve examples/iris-onnx
      inferd serve . --port 9000
      inferd serve . --reload   # edits roll out at once; a broken edit keeps the old code
    """

    from inferd.cli.pid1 import serve_under_an_init
    from inferd.config.load import load_project
    from inferd.gateway.edge import EdgeLimits
    from inferd.operator.serve import ListenError, exit_now, run_leaving_threads, serve_project

    limits = EdgeLimits.from_env(
        max_header_bytes=max_header_bytes,
        header_timeout=header_timeout,
        keepalive_timeout=keepalive_timeout,
        max_connections=max_connections,
        max_pipeline=max_pipeline,
        max_body_buffer=max_body_buffer,
        max_answer_buffer=max_answer_buffer,
    )
    project = load_project(project_dir)
    if relax_pins:
        project = project.relaxed()
    serve_under_an_init()  # as a container's PID 1, which reaps what the container orphans
    try:
        code = run_leaving_threads(
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
    except ListenError as exc:
        hint = "; choose another with --port" if exc.errno == errno.EADDRINUSE else ""
        raise InferdError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    exit_now(code)  # a download a Ctrl-C cut short may still run in a thread: not waited for
