"""``inferd logs``: an API's replicas' output, inferd's events and its access lines."""

from __future__ import annotations

import re
import select
import sys
import time
from datetime import datetime, timedelta
from datetime import time as dt_time
from typing import TYPE_CHECKING, Any

import click

from inferd.cli.backends import ray_backend
from inferd.cli.inspect import resolve, until_ctrl_c
from inferd.cli.options import deployment_option, env_option, in_deployment
from inferd.client import Client
from inferd.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from inferd.environments import Environment


# One or more amounts with their units: 30s, 1.5h, 1h30m.
DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhd])+$")
PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(?::\d{2})?$")


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: a duration back from now (``30s``, ``10m``, ``2h``, ``1d``, ``1h30m``), a time
    of day (``08:00``: its last time, today's or, when that is still to come, yesterday's) or a
    local time (``2026-11-29 08:00``, ``2026-11-29T08:00:00``); epoch seconds."""
    given = text.strip()
    at = time.time() if now is None else now
    if DURATION.match(given):
        return at - sum(float(amount) * SECONDS[unit] for amount, unit in PART.findall(given))
    try:
        if TIME_OF_DAY.match(given):  # was refused, though --help says "a local time"
            clock = datetime.strptime(given, "%H:%M:%S" if given.count(":") == 2 else "%H:%M").time()
            return _last(clock, at)
        return datetime.fromisoformat(given).timestamp()
    except ValueError:
        raise UsageError(
            f"--since {text!r} must be a duration (30s, 10m, 2h, 1d, 1h30m) or a time (08:00, "
            "2026-11-29 08:00)"
        ) from None


def _last(clock: dt_time, at: float) -> float:
    """The last moment before ``at`` that the local clock read ``clock``: today's or yesterday's,
    the later of a time the clocks went back over, and never one they skipped (compared as
    wall-clock times, a fall-back day's second 01:15 gave the first, an hour early, and a
    skipped 02:30 gave 03:30, still to come)."""
    day = datetime.fromtimestamp(at).date()
    for back in (0, 1, 2):
        for fold in (1, 0):  # a time that came twice: its later one first
            moment = datetime.combine(day - timedelta(days=back), clock).replace(fold=fold)
            stamp = moment.timestamp()
            if stamp <= at and datetime.fromtimestamp(stamp) == moment:  # == : same wall clock
                return stamp
    return datetime.combine(day - timedelta(days=1), clock).timestamp()


@click.command()
@click.argument("api")
@click.option(
    "--follow/--no-follow",
    "-f",
    default=None,
    help="Keep printing new lines until Ctrl-C (the default of `cortex logs` on a terminal).",
)
@click.option(
    "-n",
    "--tail",
    type=click.IntRange(min=0),
    default=None,
    help="Start with the last N lines (default 100 unless --since is given; 0 with -f: new lines only).",
)
@click.option(
    "--since",
    default=None,
    help="Only lines written since: 30s, 10m, 2h, 1d, 1h30m, or a local time (08:00, '2026-11-29 08:00').",
)
@click.option("--access", is_flag=True, help="The access lines (one JSON line per request) instead.")
@deployment_option
@env_option
def logs(
    api: str,
    follow: bool | None,
    tail: int | None,
    since: str | None,
    access: bool,
    deployment: str | None,
    env: Environment,
) -> None:
    """Print an API's latest logs: its replicas' output and inferd's events (load errors,
    restarts); --access for the access lines.

    Shows the last 100 lines (--tail N, or --since), newest last; -f then follows (run as
    `cortex logs` on a terminal, it follows unless --no-follow, as Cortex's streamed). Logs are
    rotated by size (the API's two logs share INFERD_LOG_MAX_BYTES, default 64 MiB;
    INFERD_LOG_BACKUPS older files, default 3), and older files are read when --tail or
    --since reach into them.

    API is a name, or DEPLOYMENT/API when several deployments have an API of that name.

    \b
    Examples:
      inferd logs classifier
      inferd logs iris/classifier -f
      inferd logs classifier --since 10m
      inferd logs classifier --access --tail 20
    """
    api = in_deployment(api, deployment)
    if follow is None:  # Cortex's `cortex logs` streamed until Ctrl-C (docs/cluster/cli.md),
        # on a terminal: a script reading `cortex logs` through a pipe gets the lines and an end
        follow = click.get_current_context().find_root().info_name == "cortex" and sys.stdout.isatty()
    if not env.is_local:
        if tail is not None or since is not None or access:
            raise UsageError("--tail, --since and --access work with the local environment only")
        _ray_logs(api, follow, env)
        return
    start = parse_since(since) if since is not None else None
    client = Client()
    if not client.running():  # after `inferd down` the files are still there: read them
        from inferd.operator.logs import offline_key, read_logs

        home, key = client.home, offline_key(client.home, api)

        def fetch(cursor: str | None) -> dict[str, Any]:
            return read_logs(home, key, access=access, cursor=cursor, tail=tail, since=start)

    else:
        try:
            name = resolve(client, api)
        except NotFoundError as exc:
            name = api  # a deleted API's log stays readable
            try:
                client.logs(name, tail=0)
            except NotFoundError:
                raise exc from None

        def fetch(cursor: str | None) -> dict[str, Any]:
            if cursor is None:
                return client.logs(name, tail=tail, since=start, access=access)
            return client.logs(name, cursor=cursor, access=access)

    cursor: str | None = None
    with until_ctrl_c():
        while True:
            result = fetch(cursor)
            cursor = str(result["cursor"])
            if result["text"]:
                click.echo(result["text"], nl=False)
            if result["more"]:
                continue
            if not follow:
                return
            _reader_gone_is_an_end()
            time.sleep(0.25)


def _reader_gone_is_an_end() -> None:
    """BrokenPipeError when what reads stdout went away (``inferd logs -f | head -1``, a pager
    quit): a follow with nothing new to write never found out, and waited for ever on an API
    with nothing to say. A pipe or socket whose reader is gone reports it to ``poll``."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a descriptor (CliRunner's stream)
        return
    poller = select.poll()
    poller.register(fd, 0)  # no event asked for: errors and hang-ups are reported anyway
    if any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0)):
        raise BrokenPipeError(32, "the reader of stdout went away")


def _ray_logs(api: str, follow: bool, env: Environment) -> None:
    """The replicas' stdout and stderr on the Ray cluster (read on their nodes)."""
    backend = ray_backend(env)
    name = resolve(backend, api)
    cursor = None
    with until_ctrl_c():
        while True:
            text, cursor = backend.logs(name, cursor)
            if text:
                click.echo(text, nl=False)
            if not follow:
                return
            _reader_gone_is_an_end()
            if not text:
                time.sleep(1)
